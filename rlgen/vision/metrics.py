"""Offline metrics for the image models: Frechet distance and an Inception-score analogue on the features of a
classifier that rlgen trains on the same dataset (:mod:`rlgen.vision.classifier`), classification error on a full
test set, and the unsupervised accuracy of a categorical code (best one-to-one matching of codes to labels).

Frechet distance (Heusel et al. 2017), on features ``f`` of real and generated images::

    d^2 = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2})

computed in float64 with ``tr((S_1 S_2)^{1/2}) = tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})``: both square roots are of
symmetric positive semi-definite matrices, taken through ``eigh`` with round-off negative eigenvalues clamped to 0,
so a singular covariance (fewer samples than features) gives a finite, real answer where ``scipy.linalg.sqrtm`` of
the non-symmetric product can return complex noise.

Inception-score analogue (Salimans et al. 2016, with rlgen's classifier instead of Inception):
``exp(E_x KL(p(y|x) || p(y)))``, ``p(y)`` the mean prediction over the samples; 1 when every sample gets the same
prediction, ``K`` when predictions are confident and spread evenly over ``K`` classes. As in the original it can be
computed over ``splits`` equal parts and reported as mean and standard deviation.

Unsupervised accuracy (InfoGAN's categorical-code accuracy): the confusion matrix of codes against labels, and the
one-to-one assignment of codes to labels that maximises the matched count, found exactly with the Hungarian
algorithm (:func:`linear_sum_assignment`, a numpy implementation so that scipy is not needed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlgen.vision.datasets import ImageDataset

# ----------------------------------------------------------------------------------------------------------------
# Assignment


def linear_sum_assignment(cost: np.ndarray, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the minimum-cost (or maximum with ``maximize``) one-to-one assignment, as
    ``scipy.optimize.linear_sum_assignment`` returns them: ``cost[rows, cols].sum()`` is optimal, ``rows`` sorted,
    ``min(n, m)`` pairs for an ``n x m`` matrix.

    The Hungarian algorithm with potentials (shortest augmenting paths, O(n^2 m)); the inner loop over columns is
    vectorised, so a 100 x 100 matrix takes milliseconds."""
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("cost matrix has infinite or NaN entries")
    if maximize:
        c = -c
    transposed = c.shape[0] > c.shape[1]
    if transposed:  # the algorithm assigns every row: keep rows <= columns
        c = c.T
    n, m = c.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # 1-based as in the textbook version: column 0 is a virtual column holding the row being inserted.
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: the row matched to column j (0: none)
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = np.nonzero(p[1:])[0]
    rows = p[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def confusion_matrix(predicted: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                     n_predicted: int | None = None, n_labels: int | None = None) -> np.ndarray:
    """``counts[k, c]``: how many examples with prediction (or code) ``k`` have label ``c``."""
    pred = np.asarray(predicted.cpu() if isinstance(predicted, torch.Tensor) else predicted).astype(np.int64).ravel()
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64).ravel()
    if pred.shape != lab.shape:
        raise ValueError(f"{pred.shape[0]} predictions but {lab.shape[0]} labels")
    if len(pred) and (pred.min() < 0 or lab.min() < 0):
        raise ValueError("predictions and labels must be non-negative integers")
    k = n_predicted or (int(pred.max()) + 1 if len(pred) else 0)
    c = n_labels or (int(lab.max()) + 1 if len(lab) else 0)
    counts = np.zeros((k, c), np.int64)
    np.add.at(counts, (pred, lab), 1)
    return counts


def matched_accuracy(confusion: np.ndarray) -> tuple[float, dict[int, int]]:
    """Accuracy of the best one-to-one matching of codes (rows) to labels (columns), and the matching
    ``{code: label}``. Codes left unmatched (more codes than labels) count as errors."""
    confusion = np.asarray(confusion)
    total = confusion.sum()
    if total == 0:
        return float("nan"), {}
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / total), {int(r): int(c) for r, c in zip(rows, cols)}


def unsupervised_accuracy(codes: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                          n_codes: int | None = None, n_labels: int | None = None) -> tuple[float, dict[int, int]]:
    """InfoGAN's metric: accuracy of the categorical code read as a class after the best one-to-one matching of
    codes to labels (Hungarian algorithm on the confusion matrix)."""
    return matched_accuracy(confusion_matrix(codes, labels, n_codes, n_labels))


# ----------------------------------------------------------------------------------------------------------------
# Frechet distance and the Inception-score analogue


def sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (float64; eigenvalues that
    round-off made slightly negative are taken as 0)."""
    a = np.asarray(matrix, dtype=np.float64)
    a = (a + a.T) / 2.0
    eigenvalues, vectors = np.linalg.eigh(a)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors shaped (N, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring)."""
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}")
    root1 = sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean
    return float(max(value, 0.0))  # the distance is >= 0; only round-off can take it below


def fid_from_features(features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def inception_score(probs: np.ndarray | torch.Tensor, splits: int = 1) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` equal parts of the ``(N, K)`` class probabilities;
    returns the mean and standard deviation over the parts (std 0 for one part)."""
    p = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits or splits < 1:
        raise ValueError(f"need (N, K) probabilities with N >= splits >= 1, got {p.shape} and {splits} splits")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("rows of probs must be probability vectors (non-negative, summing to 1)")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0)
        # 0 log 0 = 0: classes that no sample predicts contribute nothing
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(float(np.exp(terms.sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------------------------------------------
# Running a network over a dataset


def _as_float_images(images: ImageDataset | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1]: uint8 (dataset or array) is divided by 255, floats are kept."""
    if isinstance(images, ImageDataset):
        images = images.images
    x = torch.as_tensor(images)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], Any], images: ImageDataset | np.ndarray | torch.Tensor,
            batch_size: int = 500, device: torch.device | str = "cpu") -> list[Any]:
    """``fn`` applied to consecutive batches of ``images`` (moved to ``device`` as floats in [0, 1])."""
    x = _as_float_images(images)
    return [fn(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]


@torch.no_grad()
def classification_error(logits_fn: Callable[[torch.Tensor], torch.Tensor], data: ImageDataset,
                         batch_size: int = 500, device: torch.device | str = "cpu") -> float:
    """Share of ``data``'s examples (all of them) whose arg-max logit is not their label."""
    if data.labels is None:
        raise ValueError(f"{data.name} has no labels")
    predictions = torch.cat([p.cpu() for p in batched(lambda x: logits_fn(x).argmax(1), data, batch_size, device)])
    return float((predictions != torch.from_numpy(data.labels)).double().mean())


@torch.no_grad()
def classifier_outputs(classifier: torch.nn.Module, images: ImageDataset | np.ndarray | torch.Tensor,
                       batch_size: int = 500, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The classifier's penultimate features ``(N, D)`` and class probabilities ``(N, K)`` (float64 numpy)."""
    was_training = classifier.training
    classifier.eval()
    try:
        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = classifier.features(x).float()
            return features.cpu(), torch.softmax(classifier.head(features).float(), dim=1).cpu()

        parts = batched(run, images, batch_size, device)
    finally:
        classifier.train(was_training)
    return (torch.cat([f for f, _ in parts]).double().numpy(), torch.cat([p for _, p in parts]).double().numpy())


def generative_scores(classifier: torch.nn.Module, samples: np.ndarray | torch.Tensor,
                      reference: ImageDataset | np.ndarray | torch.Tensor, splits: int = 10, batch_size: int = 500,
                      device: torch.device | str = "cpu",
                      real_samples: ImageDataset | np.ndarray | torch.Tensor | None = None) -> dict[str, float]:
    """Frechet distance between the classifier features of ``samples`` and of ``reference`` (real images), and the
    Inception-score analogue of ``samples`` (mean and std over ``splits`` parts), plus the score of the reference
    images themselves for scale. With ``real_samples`` (other real images, e.g. as many training images as there
    are samples) also ``fid_real``, their distance to ``reference``: what a perfect generator would score at this
    sample size, since the distance on a custom classifier has no scale of its own."""
    f_fake, p_fake = classifier_outputs(classifier, samples, batch_size, device)
    f_real, p_real = classifier_outputs(classifier, reference, batch_size, device)
    is_mean, is_std = inception_score(p_fake, splits=min(splits, len(p_fake)))
    is_real, _ = inception_score(p_real, splits=min(splits, len(p_real)))
    scores = {"fid": fid_from_features(f_real, f_fake), "inception_score": is_mean, "inception_score_std": is_std,
              "inception_score_real": is_real, "n_samples": len(f_fake), "n_reference": len(f_real)}
    if real_samples is not None:
        f_other, _ = classifier_outputs(classifier, real_samples, batch_size, device)
        scores["fid_real"] = fid_from_features(f_real, f_other)
    return scores
