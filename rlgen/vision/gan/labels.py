"""The discriminator's targets: one-sided label smoothing and label noise.

One-sided label smoothing (Salimans et al. 2016, section 3.4): the target of real examples is ``1 - smoothing``
(e.g. 0.9) while fakes keep target 0 -- smoothing the fake targets too would reinforce the generator's mistakes
(the paper's argument, also in the comment of ``build_model.py`` in openai/improved-gan). The original code uses a
"sigmoid KL" that subtracts the constant entropy of the target; that constant does not change any gradient, so plain
binary cross-entropy with the smoothed target is used here.

Label noise: each target is flipped with probability ``flip_prob`` (a real example gets the fake target 0, a fake one
gets the real target ``1 - smoothing``), a common trick that keeps the discriminator from becoming too confident.
"""

from __future__ import annotations

import torch


def discriminator_targets(n_real: int, n_fake: int, smoothing: float = 0.0, flip_prob: float = 0.0,
                          device: torch.device | str = "cpu",
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``(n_real,)`` for real examples and ``(n_fake,)`` for fakes."""
    if not 0.0 <= smoothing < 1.0 or not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"label smoothing must be in [0, 1) and label noise in [0, 1], got {smoothing}, {flip_prob}")
    real_value = 1.0 - smoothing
    t_real = torch.full((n_real,), real_value, device=device)
    t_fake = torch.zeros(n_fake, device=device)
    if flip_prob > 0:
        flip = torch.rand(n_real + n_fake, device=device, generator=generator) < flip_prob
        t_real = torch.where(flip[:n_real], torch.zeros_like(t_real), t_real)
        t_fake = torch.where(flip[n_real:], torch.full_like(t_fake, real_value), t_fake)
    return t_real, t_fake
