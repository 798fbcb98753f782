"""Inverse autoregressive flow (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, arXiv 1606.04934).

* :class:`MADE` (Germain et al. 2015): an MLP whose outputs for dimension ``d`` depend only on the inputs before
  ``d`` in its ordering (plus an unmasked context ``h`` from the encoder, added to the first hidden layer);
* :class:`IAFStep`: the paper's numerically stable update (algorithm 1 / equation 14):
  ``[m, s] = MADE(z, h)``, ``sigma = sigmoid(s)``, ``z' = sigma * z + (1 - sigma) * m``, with
  ``log |det dz'/dz| = sum log sigma`` (the Jacobian is triangular with ``sigma`` on the diagonal). The bias of ``s``
  starts at +1 so each step starts close to the identity (the paper: "+1 or +2");
* :class:`IAF`: a chain of steps, the ordering reversed between consecutive steps so that every dimension is, in
  some step, conditioned on every other;
* :class:`ARMultiConv2d`: openai/iaf's ``ar_multiconv2d`` for convolutional latents: masked ``3x3`` convolutions
  autoregressive over (pixel in raster order, latent channel), with hidden layers of mask B, outputs of mask A and
  the context added after the first layer; :class:`ConvIAF` chains such steps with openai's update
  ``z' = (z - 0.1 m) / exp(0.1 s)`` (``log q += 0.1 s``), the ordering reversed between steps.

Every step returns its log-determinant *per latent dimension* (same shape as ``z``): free bits group the KL by
dimension or feature map, and the ladder VAE sums them per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.vision.likelihood.masked import MaskedConv2d, contiguous_groups


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask`` buffer ``(out, in)``."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(dim: int, reverse: bool = False) -> torch.Tensor:
    """Input degrees ``1..dim`` (``dim..1`` when reversed): output ``d`` may depend on inputs of smaller degree."""
    degrees = torch.arange(1, dim + 1)
    return degrees.flip(0) if reverse else degrees


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation with ``n_outputs`` outputs per input dimension.

    ``forward(z, context)`` returns ``n_outputs`` tensors shaped like ``z``; output ``d`` depends only on
    ``z_e`` with ``degree(e) < degree(d)`` and on ``context``. Hidden units get degrees ``1..dim-1`` in turn (the
    deterministic assignment of the MADE paper), ELU activations as in openai/iaf. As there, the context only
    enters the first hidden layer, so the first dimension in the ordering (which may see no hidden unit) gets
    learned constants; the reversed ordering of the next step conditions it on everything."""

    def __init__(self, dim: int, hidden: Sequence[int], context_dim: int = 0, n_outputs: int = 2,
                 reverse: bool = False):
        super().__init__()
        self.dim, self.n_outputs = dim, n_outputs
        self.register_buffer("degrees", made_degrees(dim, reverse), persistent=False)
        layers = []
        previous = self.degrees
        for width in hidden:
            degrees = torch.arange(width) % max(1, dim - 1) + 1
            layers.append(MaskedLinear(len(previous), width, (degrees[:, None] >= previous[None, :]).float()))
            previous = degrees
        self.hidden = nn.ModuleList(layers)
        self.context = nn.Linear(context_dim, hidden[0], bias=False) if context_dim and hidden else None
        out_mask = (self.degrees[:, None] > previous[None, :]).float().repeat(n_outputs, 1)
        self.out = MaskedLinear(len(previous), n_outputs * dim, out_mask)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = z
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if i == 0 and self.context is not None and context is not None:
                h = h + self.context(context)
            h = F.elu(h)
        return self.out(h).chunk(self.n_outputs, dim=-1)


class IAFStep(nn.Module):
    """``z' = sigmoid(s) * z + (1 - sigmoid(s)) * m`` with ``[m, s] = MADE(z, h)``; returns ``(z', log sigma)``."""

    def __init__(self, dim: int, hidden: Sequence[int], context_dim: int = 0, reverse: bool = False,
                 forget_bias: float = 1.0):
        super().__init__()
        self.made = MADE(dim, hidden, context_dim, n_outputs=2, reverse=reverse)
        with torch.no_grad():
            self.made.out.bias[dim:].add_(forget_bias)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.made(z, context)
        sigma = torch.sigmoid(s)
        return sigma * z + (1 - sigma) * m, F.logsigmoid(s)


class IAF(nn.Module):
    """A chain of :class:`IAFStep` with the ordering reversed between steps.

    ``forward(z, h)`` returns ``(z_T, log_det)`` with ``log_det`` per dimension (``z``'s shape); the density of
    ``z_T`` is ``log q(z_0) - log_det.sum(-1)``."""

    def __init__(self, dim: int, steps: int, hidden: Sequence[int], context_dim: int = 0):
        super().__init__()
        self.steps = nn.ModuleList(IAFStep(dim, hidden, context_dim, reverse=t % 2 == 1) for t in range(steps))

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros_like(z)
        for step in self.steps:
            z, step_log_det = step(z, context)
            log_det = log_det + step_log_det
        return z, log_det


class ARMultiConv2d(nn.Module):
    """openai/iaf's ``ar_multiconv2d``: ``3x3`` masked convolutions over a latent map ``(N, Z, H, W)``, each latent
    channel its own group; output channel ``c`` at pixel ``p`` depends on latents at earlier pixels and on channels
    ``< c`` at ``p``. ``context`` (``hidden[0]`` channels) is added after the first layer."""

    def __init__(self, z_channels: int, hidden: Sequence[int], n_outputs: int = 2):
        super().__init__()
        z_groups = torch.arange(z_channels)
        layers, previous = [], z_groups
        for width in hidden:
            groups = contiguous_groups(width, z_channels)
            layers.append(MaskedConv2d(len(previous), width, 3, "B", in_group=previous, out_group=groups))
            previous = groups
        self.hidden = nn.ModuleList(layers)
        self.out = nn.ModuleList(MaskedConv2d(len(previous), z_channels, 3, "A", in_group=previous, out_group=z_groups)
                                 for _ in range(n_outputs))

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> list[torch.Tensor]:
        h = z
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if i == 0 and context is not None:
                h = h + context
            h = F.elu(h)
        return [out(h) for out in self.out]


class ConvIAF(nn.Module):
    """IAF on a latent feature map: ``steps`` :class:`ARMultiConv2d` transforms ``z' = (z - 0.1 m) / exp(0.1 s)``
    (openai/iaf's ``down_iaf2_nl`` posterior), the ordering of (pixel, channel) reversed between steps by flipping
    the latent map along channels, rows and columns (the context only along rows and columns)."""

    def __init__(self, z_channels: int, steps: int, hidden: Sequence[int]):
        super().__init__()
        self.steps = nn.ModuleList(ARMultiConv2d(z_channels, hidden) for _ in range(steps))

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z', log_det)`` with ``log_det = log |dz'/dz|`` per latent (``-0.1 s`` summed over steps)."""
        log_det = torch.zeros_like(z)
        for t, step in enumerate(self.steps):
            flip = t % 2 == 1
            zz = z.flip(1, 2, 3) if flip else z
            cc = context.flip(2, 3) if flip and context is not None else context  # align pixels only
            mean, logsd = (0.1 * o for o in step(zz, cc))
            zz = (zz - mean) * torch.exp(-logsd)
            step_log_det = -logsd
            if flip:
                zz, step_log_det = zz.flip(1, 2, 3), step_log_det.flip(1, 2, 3)
            z, log_det = zz, log_det + step_log_det
        return z, log_det
