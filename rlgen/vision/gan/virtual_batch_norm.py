"""Virtual batch normalisation (Salimans et al. 2016, section 3.4), as in ``VBN`` of openai/improved-gan
(``imagenet/model.py``).

Each example is normalised with statistics of a *reference batch* fixed at the start of training, combined with
the example itself, so its output does not depend on the other examples of its minibatch. Per channel, with ``R``
reference examples: ``mean = 1/(R+1) * mean_i + R/(R+1) * mean_ref`` (``mean_i`` over the example's own spatial
positions, ``mean_ref`` over the reference batch and positions; the same for the mean of squares), then
``(x - mean) / sqrt(eps + meansq - mean^2) * gamma + beta``. The reference batch itself is normalised with
``mean_ref`` alone. ``gamma ~ N(1, 0.02)``, ``beta = 0``, ``eps = 1e-5`` as in the original.

The reference batch goes through the network together with the minibatch (the caller puts it first and passes
its size), so it costs a second forward pass, as the paper says; that is why it is used in the generator only.
"""

from __future__ import annotations

import torch
from torch import nn


class VirtualBatchNorm(nn.Module):
    """Input ``[reference; batch]`` along dim 0 (``(R + N, C, ...)``); output the same shape."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(1.0 + 0.02 * torch.randn(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def _normalize(self, x: torch.Tensor, mean: torch.Tensor, meansq: torch.Tensor) -> torch.Tensor:
        std = (meansq - mean.square()).clamp_min(0).add(self.eps).sqrt()
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - mean) / std * self.gamma.view(shape) + self.beta.view(shape)

    def forward(self, x: torch.Tensor, n_ref: int) -> torch.Tensor:
        if not 0 < n_ref <= x.shape[0]:
            raise ValueError(f"virtual batch norm needs the reference batch first: n_ref {n_ref}, input {x.shape[0]}")
        dtype = x.dtype
        x = x.float()  # statistics in float32 under autocast
        spatial = tuple(range(2, x.ndim))
        ref, rest = x[:n_ref], x[n_ref:]
        ref_mean = ref.mean(dim=(0, *spatial), keepdim=True)
        ref_meansq = ref.square().mean(dim=(0, *spatial), keepdim=True)
        out_ref = self._normalize(ref, ref_mean, ref_meansq)
        if rest.shape[0] == 0:
            return out_ref.to(dtype)
        new = 1.0 / (n_ref + 1.0)
        own_mean = rest.mean(dim=spatial, keepdim=True) if spatial else rest
        own_meansq = rest.square().mean(dim=spatial, keepdim=True) if spatial else rest.square()
        mean = new * own_mean + (1.0 - new) * ref_mean
        meansq = new * own_meansq + (1.0 - new) * ref_meansq
        return torch.cat([out_ref, self._normalize(rest, mean, meansq)]).to(dtype)
