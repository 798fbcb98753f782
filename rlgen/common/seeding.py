"""Seeding: one call fixes python, numpy and torch; envs are seeded where they are made."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def set_seed(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch (CPU and CUDA) and return a numpy Generator for the caller's own draws."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def rng_stream(seed: int, purpose: str) -> np.random.Generator:
    """A generator for one purpose of a run, independent of ``default_rng(seed)`` and of other purposes' streams
    (so that, e.g., which expert pairs are kept is not correlated with the draws of the algorithm seeded by
    ``seed``)."""
    return np.random.default_rng([int(seed), zlib.crc32(purpose.encode())])
