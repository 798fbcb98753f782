"""Minibatch standard deviation (Karras et al. 2018, "Progressive Growing of GANs", section 3).

Splits the batch into groups of ``group_size``, takes each feature's standard deviation over a group, averages it to
one number per group and appends it as an extra constant feature map. A batch of near-identical fakes shows a small
value, which the discriminator can use against mode collapse. As in the original TensorFlow code, group ``g`` holds
examples ``g, g + N/G, g + 2N/G, ...`` (a reshape to ``(G, N/G, ...)``) and the variance is the biased one; when the
batch is not a multiple of ``group_size`` the group size falls to ``gcd(N, group_size)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MinibatchStdDev(nn.Module):
    """``(N, C, H, W) -> (N, C + 1, H, W)``."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = math.gcd(n, self.group_size)
        y = x.float().reshape(g, n // g, c, h, w)
        std = (y - y.mean(dim=0)).square().mean(dim=0).add(self.eps).sqrt()  # (N/G, C, H, W)
        stat = std.mean(dim=(1, 2, 3)).to(x.dtype)  # (N/G,)
        stat = stat.repeat(g)[:, None, None, None].expand(n, 1, h, w)  # example i gets group i % (N/G)
        return torch.cat([x, stat], dim=1)
