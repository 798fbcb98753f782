"""Masked convolutions for autoregressive image models (van den Oord et al. 2016) and IAF's autoregressive convnets.

Pixels are ordered in raster order (rows top to bottom, then columns left to right) and, within a pixel, by channel
*group* (for colour images R < G < B; for IAF's ``ar_multiconv2d`` one group per latent channel). A mask of type

* ``"A"`` lets an output of group ``g`` at pixel ``p`` see the inputs at pixels before ``p`` and the inputs of groups
  ``< g`` at ``p`` (the first layer: a pixel never sees itself);
* ``"B"`` additionally the inputs of group ``g`` at ``p`` (every later layer).

The mask is a registered buffer multiplied into the weight in ``forward``. Every tap below the centre row, and right
of the centre in a one-row kernel, is zero for both types, so :class:`MaskedConv2d` does not store or compute those
taps at all: a ``7x7`` kernel is stored as ``4x7`` (the rows above and the centre row), a ``1x3`` kernel as ``1x2``,
and the convolution is padded so that output ``(i, j)`` still lines up with input ``(i, j)``. That is the same model
as the full masked kernel (:meth:`MaskedConv2d.full_weight` gives it back) at about half the multiply-adds for the
3x3 and 7x7 kernels of PixelCNN. Groups of channels are given as one group id per channel (contiguous blocks by
default), so LSTM gate layouts (``[o, f, i, g]`` each split into colour groups) can be expressed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MASK_TYPES = ("A", "B")


def contiguous_groups(channels: int, groups: int) -> torch.Tensor:
    """Group id of each of ``channels`` channels split into ``groups`` contiguous blocks (R block, G block, B block)."""
    if groups < 1 or channels < groups or channels % groups:
        raise ValueError(f"{channels} channels cannot be split into {groups} equal colour groups")
    return torch.arange(channels) * groups // channels


def tiled_groups(channels_per_part: int, parts: int, groups: int) -> torch.Tensor:
    """Group ids for ``parts`` stacked blocks of ``channels_per_part`` channels each split into colour groups
    (e.g. the four LSTM gates ``[o, f, i, g]``), so each gate has its own R, G and B channels."""
    return contiguous_groups(channels_per_part, groups).repeat(parts)


def center_mask(in_group: torch.Tensor, out_group: torch.Tensor, mask_type: str,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(out, in)`` mask of the centre tap: group ``g_out`` sees group ``g_in`` if ``g_in < g_out`` (A) or
    ``g_in <= g_out`` (B)."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask type must be A or B, not {mask_type!r}")
    o, i = out_group[:, None], in_group[None, :]
    return ((i < o) if mask_type == "A" else (i <= o)).to(dtype)


def full_mask(in_group: torch.Tensor, out_group: torch.Tensor, kernel_size: tuple[int, int],
              mask_type: str) -> torch.Tensor:
    """The whole ``(out, in, kh, kw)`` mask of a masked ``kh x kw`` convolution (the straightforward form)."""
    kh, kw = kernel_size
    ph, pw = kh // 2, kw // 2
    mask = torch.ones(len(out_group), len(in_group), kh, kw)
    mask[:, :, ph + 1:] = 0  # rows below the centre
    mask[:, :, ph, pw + 1:] = 0  # right of the centre in the centre row
    mask[:, :, ph, pw] = center_mask(in_group, out_group, mask_type)
    return mask


class MaskedConv2d(nn.Module):
    """A ``kh x kw`` convolution (odd sizes, stride 1, "same" output size) that only sees earlier pixels and, at the
    centre, earlier (A) or earlier-or-equal (B) channel groups.

    Only the causal taps are stored: ``weight`` is ``(out, in, kh // 2 + 1, kw)`` for ``kh > 1`` and
    ``(out, in, 1, kw // 2 + 1)`` for one-row kernels; ``mask`` (a buffer, same shape) zeroes the rest of the centre
    row and the centre tap's forbidden channel groups."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], mask_type: str = "B",
                 groups: int = 1, in_group: torch.Tensor | None = None, out_group: torch.Tensor | None = None,
                 bias: bool = True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"masked convolutions need odd kernel sizes, got {kh}x{kw}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask type must be A or B, not {mask_type!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.mask_type = (kh, kw), mask_type
        in_group = contiguous_groups(in_channels, groups) if in_group is None else torch.as_tensor(in_group)
        out_group = contiguous_groups(out_channels, groups) if out_group is None else torch.as_tensor(out_group)
        if in_group.shape != (in_channels,) or out_group.shape != (out_channels,):
            raise ValueError("in_group/out_group need one group id per channel")
        self.register_buffer("in_group", in_group.long(), persistent=False)
        self.register_buffer("out_group", out_group.long(), persistent=False)
        ph, pw = kh // 2, kw // 2
        # Keep rows 0..ph (all rows above plus the centre row); a one-row kernel keeps columns 0..pw.
        self.stored = (ph + 1, kw) if kh > 1 else (1, pw + 1)
        self.padding = (ph, pw)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.stored))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("mask", full_mask(in_group, out_group, (kh, kw), mask_type)[:, :, :self.stored[0],
                                                                                        :self.stored[1]].contiguous())
        # A mask of ones (1x1 type B with one group) costs a multiply for nothing: skip it.
        self.needs_mask = not bool(self.mask.all())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's Conv2d initialisation, with the fan-in of the taps the mask lets through.
        fan_in = max(1.0, float(self.mask.sum()) / self.out_channels)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            nn.init.uniform_(self.weight, -bound, bound)
            self.weight.mul_(self.mask)
            if self.bias is not None:
                nn.init.uniform_(self.bias, -bound, bound)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask if self.needs_mask else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = self.padding
        if self.in_channels <= 4 and (ph or pw):
            # Few input channels (the image itself): padding only up and left, then an unpadded convolution, was
            # ~3x faster on CPU than the symmetric padding below (measured; benchmarks/vision_likelihood.py).
            return F.conv2d(F.pad(x, (pw, pw if self.stored[0] > 1 else 0, ph, 0)), self.masked_weight(), self.bias)
        out = F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)
        # Padding is symmetric but the kernel only reaches up/left: the first H rows and W columns line up.
        if out.shape[-2] != h or out.shape[-1] != w:
            out = out[..., :h, :w]
        return out

    def full_weight(self) -> torch.Tensor:
        """The equivalent full ``(out, in, kh, kw)`` masked kernel (zeros below/right of the centre)."""
        kh, kw = self.kernel_size
        full = self.weight.new_zeros(self.out_channels, self.in_channels, kh, kw)
        full[:, :, :self.stored[0], :self.stored[1]] = self.masked_weight()
        return full

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, mask={self.mask_type}, "
                f"stored={self.stored}, groups={int(self.out_group.max()) + 1}")
