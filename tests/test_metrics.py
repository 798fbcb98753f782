"""Offline metrics: the Hungarian matching, the Frechet distance, the Inception-score analogue, classification error
and the metrics classifier (trained, saved and loaded weights-only)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rlgen.common.errors import UserError
from rlgen.vision.classifier import Classifier, cached_classifier, load_classifier, save_classifier, train_classifier
from rlgen.vision.datasets import ImageDataset
from rlgen.vision.metrics import (
    classification_error,
    classifier_outputs,
    confusion_matrix,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    generative_scores,
    inception_score,
    linear_sum_assignment,
    matched_accuracy,
    sqrtm_psd,
    unsupervised_accuracy,
)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------------------------
# Assignment


def brute_force_min(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(cost[list(range(n)), list(p)].sum() for p in itertools.permutations(range(m), n))
    return min(cost[list(p), list(range(m))].sum() for p in itertools.permutations(range(n), m))


def test_hungarian_matches_brute_force_on_random_matrices():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, m = (int(v) for v in rng.integers(1, 7, 2))
        # integer costs make ties, which a greedy or buggy solver gets wrong
        cost = rng.integers(0, 5, (n, m)).astype(float) if trial % 2 else rng.normal(size=(n, m))
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(n, m) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert list(rows) == sorted(rows)
        assert cost[rows, cols].sum() == pytest.approx(brute_force_min(cost), abs=1e-9)
        r_max, c_max = linear_sum_assignment(cost, maximize=True)
        assert cost[r_max, c_max].sum() == pytest.approx(-brute_force_min(-cost), abs=1e-9)


def test_hungarian_agrees_with_scipy_when_installed():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    for shape in ((10, 10), (30, 30), (8, 13), (13, 8)):
        cost = rng.random(shape)
        ours = linear_sum_assignment(cost)
        theirs = scipy_optimize.linear_sum_assignment(cost)
        assert cost[ours].sum() == pytest.approx(cost[theirs].sum(), abs=1e-12)


def test_matching_finds_the_known_optimum_of_a_constructed_confusion_matrix():
    # 10 codes that are a relabelling of 10 classes, with confusions; greedy matching is misled by code 0, whose
    # largest count (class 0) belongs to code 1 in the optimum.
    rng = np.random.default_rng(2)
    true_map = rng.permutation(10)  # code k mostly holds class true_map[k]
    confusion = np.zeros((10, 10), np.int64)
    for k in range(10):
        confusion[k, true_map[k]] = 90
        confusion[k] += rng.integers(0, 5, 10)
    # a trap for greedy: code 0 has even more of code 1's class than of its own...
    confusion[0, true_map[1]] = 95
    # ...but code 1 has nothing else it could take.
    confusion[1] = 0
    confusion[1, true_map[1]] = 100
    accuracy, mapping = matched_accuracy(confusion)
    assert mapping == {k: int(true_map[k]) for k in range(10)}
    expected = sum(confusion[k, true_map[k]] for k in range(10)) / confusion.sum()
    assert accuracy == pytest.approx(expected)
    # the same through predictions and labels
    codes = np.repeat(np.arange(10), confusion.sum(1))
    labels = np.concatenate([np.repeat(np.arange(10), confusion[k]) for k in range(10)])
    assert np.array_equal(confusion_matrix(codes, labels), confusion)
    assert unsupervised_accuracy(torch.from_numpy(codes), labels)[0] == pytest.approx(expected)


def test_unsupervised_accuracy_of_permuted_and_rectangular_codes():
    labels = np.arange(100) % 5
    codes = (labels * 3 + 1) % 7  # an injective relabelling into 7 codes
    assert unsupervised_accuracy(codes, labels) == (1.0, {int((c * 3 + 1) % 7): c for c in range(5)})
    # two classes merged into one code: at most one of them can be matched
    merged = np.where(labels == 4, 0, labels)
    assert unsupervised_accuracy(merged, labels)[0] == pytest.approx(0.8)
    assert np.isnan(matched_accuracy(np.zeros((3, 3)))[0])


# ----------------------------------------------------------------------------------------------------------------
# Frechet distance


def random_covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_psd_square_root():
    rng = np.random.default_rng(0)
    s = random_covariance(rng, 6)
    root = sqrtm_psd(s)
    assert np.allclose(root @ root, s, atol=1e-10) and np.allclose(root, root.T)
    singular = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # rank 1
    assert np.allclose(sqrtm_psd(singular) @ sqrtm_psd(singular), singular, atol=1e-10)


def test_fid_is_zero_for_identical_features_and_grows_with_a_mean_shift():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-6)
    previous = 0.0
    for shift in (0.5, 1.0, 2.0):
        moved = features + shift  # the same covariance: FID = ||shift||^2 exactly
        fid = fid_from_features(features, moved)
        assert fid == pytest.approx(16 * shift ** 2, rel=1e-6) and fid > previous
        previous = fid
    # more features than samples: a singular covariance still gives a finite, real, ~0 distance
    few = rng.normal(size=(10, 40))
    assert fid_from_features(few, few) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(3)
    d = 5
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    # tr (S1 S2)^{1/2} = sum of square roots of the eigenvalues of S1 S2 (real, positive): an independent route
    expected = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # diagonal covariances: sum (sigma1 - sigma2)^2 + ||mu1 - mu2||^2
    v1, v2 = rng.random(d) + 0.5, rng.random(d) + 0.5
    diagonal = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(diagonal, rel=1e-9)
    # from samples: the estimate converges to the closed form
    n = 200_000
    a = rng.multivariate_normal(mu1, s1, n)
    b = rng.multivariate_normal(mu2, s2, n)
    assert fid_from_features(a, b) == pytest.approx(expected, rel=0.02)
    mu, sigma = feature_statistics(torch.from_numpy(a))
    assert np.allclose(mu, mu1, atol=0.02) and np.allclose(sigma, s1, atol=0.03)
    with pytest.raises(ValueError):
        frechet_distance(mu1, s1, mu2[:3], s2)


# ----------------------------------------------------------------------------------------------------------------
# Inception-score analogue


def test_inception_score_is_one_for_constant_and_k_for_confident_uniform_predictions():
    k = 7
    constant = np.tile(np.random.default_rng(0).dirichlet(np.ones(k)), (50, 1))
    assert inception_score(constant)[0] == pytest.approx(1.0)
    confident = np.eye(k)[np.arange(70) % k]  # one-hot, each class equally often
    assert inception_score(confident) == (pytest.approx(k), 0.0)
    assert inception_score(confident, splits=10)[0] == pytest.approx(k)  # each split holds every class once
    uncertain = np.full((70, k), 1.0 / k)  # spread but not confident: no information
    assert inception_score(uncertain)[0] == pytest.approx(1.0)
    half = np.eye(k)[np.arange(70) % 2]  # confident, two classes
    assert inception_score(torch.from_numpy(half))[0] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        inception_score(np.full((4, 3), 0.5))


# ----------------------------------------------------------------------------------------------------------------
# The classifier and the scores built on it


def two_blobs(n: int, seed: int = 0) -> ImageDataset:
    """Class 0: a blob on the left; class 1: on the right."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    yy, xx = np.mgrid[:28, :28]
    cx = np.where(y == 0, 8, 20) + rng.normal(0, 1.5, n)
    cy = rng.uniform(8, 20, n)
    x = 255 * np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 12)
    return ImageDataset("blobs", x.astype(np.uint8)[:, None], y.astype(np.int64))


def test_classifier_trains_saves_and_loads_weights_only(tmp_path):
    train, test = two_blobs(256), two_blobs(100, seed=1)
    model, info = train_classifier(train, test, epochs=5, batch_size=32, lr=3e-3, width=8, feature_dim=16, seed=0)
    assert info["test_error"] < 0.05 and info["train_error"] < 0.05
    assert classification_error(model, test) == pytest.approx(info["test_error"])
    path = save_classifier(model, tmp_path / "clf.pt", info)
    torch.load(path, weights_only=True)  # only tensors and plain values inside
    loaded, loaded_info = load_classifier(path)
    assert loaded_info["test_error"] == info["test_error"] and not loaded.training
    x = torch.rand(5, 1, 28, 28)
    assert torch.allclose(loaded(x), model(x)) and loaded.features(x).shape == (5, 16)
    cached, _ = cached_classifier(path, train)  # the same data: loaded, not trained again
    assert torch.allclose(cached(x), model(x))
    features, probs = classifier_outputs(loaded, test)
    assert features.shape == (100, 16) and probs.shape == (100, 2) and np.allclose(probs.sum(1), 1)

    # FID/IS with this classifier: real vs real ~ 0 FID and IS near 2 (two classes, fairly confident); one class only: IS near 1
    scores = generative_scores(loaded, torch.from_numpy(test.images).float() / 255, test, splits=1)
    assert scores["fid"] == pytest.approx(0.0, abs=1e-6) and scores["inception_score"] > 1.5
    left = test.images[test.labels == 0]
    one_class = generative_scores(loaded, left, test, splits=1)
    assert one_class["inception_score"] < 1.1 and one_class["fid"] > 0.1

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an rlgen metrics classifier"):
        load_classifier(tmp_path / "other.pt")


def test_classification_error_counts_every_example():
    data = ImageDataset("d", np.zeros((7, 1, 4, 4), np.uint8), np.array([0, 1, 0, 1, 0, 1, 1]))
    always_zero = lambda x: torch.tensor([[1.0, 0.0]]).repeat(len(x), 1)
    assert classification_error(always_zero, data, batch_size=3) == pytest.approx(4 / 7)
    with pytest.raises(UserError, match="divisible by 4"):
        Classifier((1, 30, 30), 10)
