"""A generator's sample scores after training (``score_samples`` in a run's config): the Frechet distance between
the features of its samples and of the test images, and the Inception-score analogue of the samples, both on the
features of rlgen's classifier for the dataset (:mod:`rlgen.vision.metrics`, :mod:`rlgen.vision.classifier`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlgen.common.options import option

log = logging.getLogger("rlgen")


@dataclass
class SampleScoreOptions:
    """Sample scores after training (need a labelled dataset with a test split)."""

    score_samples: int = option(0, "score N samples: Frechet distance to the test images and the Inception-score "
                                "analogue, on the features of a classifier trained on the dataset (the benchmarks use "
                                "10000; 0: off)", minimum=0, metavar="N")
    metrics_classifier: str | None = option(None, "that classifier's checkpoint, trained there if missing (default: "
                                            "~/.cache/rlgen/classifiers/)", metavar="PATH")
    classifier_epochs: int = option(5, "epochs of a newly trained metrics classifier", minimum=1)


def score_samples(model: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The scores of ``cfg["score_samples"]`` samples of ``model`` (``{}`` when that is 0), and the classifier's
    path and test error. The classifier is trained (and cached) on the whole training split: ``limit_images``
    shrinks the generator's training set, not the yardstick."""
    from rlgen.common.device import resolve_device
    from rlgen.vision.classifier import cached_classifier, default_classifier_path
    from rlgen.vision.datasets import load_dataset
    from rlgen.vision.metrics import generative_scores

    n = int(cfg.get("score_samples") or 0)
    if n == 0:
        return {}
    device = resolve_device(cfg["device"])
    load = {"data_dir": cfg["data_dir"], "download": bool(cfg.get("download")),
            "verify": bool(cfg.get("verify_checksums", True))}
    train, test = load_dataset(cfg["dataset"], "train", **load), load_dataset(cfg["dataset"], "test", **load)
    path = cfg.get("metrics_classifier") or default_classifier_path(train)
    classifier, info = cached_classifier(path, train, test, epochs=int(cfg.get("classifier_epochs", 5)),
                                         device=device)
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg["seed"])
        samples = torch.cat([model.sample(min(1000, n - i)).float().clamp(0, 1).cpu() for i in range(0, n, 1000)])
    # As many training images as samples, drawn by the seed: their distance to the test images is the floor.
    real = train.images[np.random.default_rng(cfg["seed"]).permutation(len(train))[:n]]
    scores = generative_scores(classifier, samples, test, splits=10, device=device, real_samples=real)
    log.info("%d samples: Frechet distance %.3f (%d training images: %.3f), Inception-score analogue %.3f "
             "(test images: %.3f)", n, scores["fid"], len(real), scores["fid_real"], scores["inception_score"],
             scores["inception_score_real"])
    return {**scores, "metrics_classifier": str(path), "metrics_classifier_test_error": info.get("test_error")}
