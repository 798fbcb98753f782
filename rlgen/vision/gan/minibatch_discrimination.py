"""Minibatch discrimination (Salimans et al. 2016, section 3.2), as in ``MinibatchLayer`` of openai/improved-gan.

Each example's features ``f`` (length A) are projected by a tensor T (A x B x C) to B kernel rows ``M_i`` of length C;
for kernel b, ``o(x_i)_b = sum_{j != i} exp(-||M_{i,b} - M_{j,b}||_1)`` measures how close the other examples of the
minibatch are. The layer outputs ``[f, o + bias]``, so the discriminator can see a batch that lacks diversity.

Faithful to the original: T is weight-normalised per kernel entry (``theta * exp(log_weight_scale) / ||theta||``
over the input axis), ``theta ~ N(0, 0.05)``, ``log_weight_scale = 0``, ``bias = -1``, and an example is not
compared with itself (the original adds ``1e6 * I`` to the distances; here the diagonal is masked out, which is the
same since ``exp(-1e6) == 0``). Deviation: the original's data-dependent initialisation (``init=True``, which rescales
``log_weight_scale`` and sets ``bias`` from the first batch) is not done.
"""

from __future__ import annotations

import torch
from torch import nn


class MinibatchDiscrimination(nn.Module):
    """``(N, in_features) -> (N, in_features + num_kernels)``."""

    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5):
        super().__init__()
        self.in_features, self.num_kernels, self.kernel_dim = in_features, num_kernels, kernel_dim
        self.theta = nn.Parameter(torch.randn(in_features, num_kernels, kernel_dim) * 0.05)
        self.log_weight_scale = nn.Parameter(torch.zeros(num_kernels, kernel_dim))
        self.bias = nn.Parameter(torch.full((num_kernels,), -1.0))

    @property
    def weight(self) -> torch.Tensor:
        norm = self.theta.square().sum(dim=0).sqrt()
        return self.theta * (self.log_weight_scale.exp() / norm)[None]

    def closeness(self, features: torch.Tensor) -> torch.Tensor:
        """``o(x_i)_b`` without the bias, ``(N, num_kernels)``."""
        # fp32 (also under bf16 autocast): the closeness is exp(-L1 distance), which bf16 would coarsen
        m = torch.tensordot(features.flatten(1).float(), self.weight, dims=([1], [0]))  # (N, B, C)
        l1 = (m[:, None] - m[None, :]).abs().sum(dim=-1)  # (N, N, B): all pairs at once
        n = features.shape[0]
        others = 1.0 - torch.eye(n, device=features.device, dtype=l1.dtype)
        return (torch.exp(-l1) * others[:, :, None]).sum(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        flat = features.flatten(1)
        return torch.cat([flat, self.closeness(flat) + self.bias], dim=1)
