"""The Diagonal BiLSTM's change of layout as one gather each way.

The recurrence (:func:`rlgen.vision.likelihood.recurrence.lstm_recurrence`) wants both directions' input maps
skewed (row ``i`` shifted right by ``i``, so each diagonal becomes a column) and laid out step-major and
position-major, ``(W + H - 1 steps, 2 directions, C, H, N)``; the right-to-left direction is the left-to-right one on
the horizontally flipped map. Done with flips, pads, reshapes and a permute, that took ~10 passes
over memory with poor locality each way (forward and backward, into and out of the recurrence): about a third of a
training step. Every element of the new layout is one element of the old one (or a zero), and both layouts keep
the batch innermost once the maps are read as rows of ``N`` images, so each change of layout is one ``index_select``
of whole rows with a precomputed index, and its gradient the ``index_select`` of the transposed index.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class _ToSteps(torch.autograd.Function):
    """``(N, C, H, W)`` maps -> ``(S, 2, C, H, N)`` steps: the maps as rows of ``N`` (``(C H W, N)``, one transposing
    copy, with a zero row appended for the places off the image), and one ``index_select`` of whole rows. The backward
    sums each pixel's gradient over its two places (``transpose`` ``(2, C H W)``: the rows of the steps that read
    it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, transpose: torch.Tensor):  # type: ignore[override]
        n, c, height, width = x.shape
        rows = x.new_empty(c * height * width + 1, n)
        rows[:-1].view(c, height, width, n).copy_(x.permute(1, 2, 3, 0))
        rows[-1].zero_()
        ctx.save_for_backward(transpose)
        ctx.shape = x.shape
        return rows.index_select(0, index.view(-1)).view(*index.shape, n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (transpose,) = ctx.saved_tensors
        n, c, height, width = ctx.shape
        rows = grad.reshape(-1, n)
        out = rows.index_select(0, transpose[0])
        out += rows.index_select(0, transpose[1])
        return out.view(c, height, width, n).permute(3, 0, 1, 2), None, None


class _ToMaps(torch.autograd.Function):
    """``(S, 2, h, H, N)`` states -> ``(N, 2, h, H, W)`` maps: one ``index_select`` of rows of ``N`` (``index``
    ``(2, h, H, W)``: the row of the states each pixel reads) and a permute. The backward writes the maps' gradient
    as rows of ``N`` with a zero row appended and gathers it back (``transpose`` ``(1, S 2 h H)``: the pixel each
    state row went to, or the zero row for the states off the image)."""

    @staticmethod
    def forward(ctx, states: torch.Tensor, index: torch.Tensor, transpose: torch.Tensor):  # type: ignore[override]
        n = states.shape[-1]
        ctx.save_for_backward(transpose)
        ctx.shape = states.shape
        out = states.reshape(-1, n).index_select(0, index.view(-1)).view(*index.shape, n)
        return out.permute(4, 0, 1, 2, 3)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (transpose,) = ctx.saved_tensors
        n, directions, h, height, width = grad.shape
        rows = grad.new_empty(directions * h * height * width + 1, n)
        rows[:-1].view(directions, h, height, width, n).copy_(grad.permute(1, 2, 3, 4, 0))
        rows[-1].zero_()
        return rows.index_select(0, transpose[0]).view(ctx.shape), None, None


def _transpose(index: torch.Tensor, size: int) -> torch.Tensor:
    """For each of the ``size`` source elements, the positions of ``index`` that read it (``(R, size)``, padded with
    ``index.numel()``, the zero past the gradient)."""
    flat = index.reshape(-1).long()
    positions = torch.arange(flat.numel())
    keep = flat < size
    flat, positions = flat[keep], positions[keep]
    order = torch.argsort(flat, stable=True)
    flat, positions = flat[order], positions[order]
    first = torch.searchsorted(flat, flat)  # the first place of each source element in the sorted list
    rank = torch.arange(flat.numel()) - first
    out = torch.full((int(rank.max()) + 1 if flat.numel() else 1, size), index.numel(), dtype=torch.long)
    out[rank, flat] = positions
    return out.to(torch.int32)


def _step_index(c: int, height: int, width: int) -> torch.Tensor:
    """For the steps ``(S, 2, C, H)`` (each a row of ``N`` images), the row of the maps as rows ``(C H W, N)`` that
    each reads (``C H W``, the zero row, off the image)."""
    steps = height + width - 1
    s = torch.arange(steps).view(steps, 1, 1, 1)
    d = torch.arange(2).view(1, 2, 1, 1)
    ch = torch.arange(c).view(1, 1, c, 1)
    row = torch.arange(height).view(1, 1, 1, height)
    column = s - row  # in the skewed map of this direction
    column_in_map = torch.where(d == 0, column, width - 1 - column)  # right-to-left: the flipped map's column
    inside = (column >= 0) & (column < width)
    flat = (ch * height + row) * width + column_in_map.clamp(0, width - 1)
    return torch.where(inside, flat, c * height * width).to(torch.int32)


def _map_index(h: int, height: int, width: int) -> torch.Tensor:
    """For each pixel of the ``(2, h, H, W)`` maps (a row of ``N`` images), its row in the states ``(S, 2, h, H)``."""
    d = torch.arange(2).view(2, 1, 1, 1)
    ch = torch.arange(h).view(1, h, 1, 1)
    row = torch.arange(height).view(1, 1, height, 1)
    column = torch.arange(width).view(1, 1, 1, width)
    step = row + torch.where(d == 0, column, width - 1 - column)
    return (((step * 2 + d) * h + ch) * height + row).to(torch.int32)


class DiagonalLayout:
    """The gathers between an ``(N, C, H, W)`` map and the recurrence's step-major layout, and from the
    recurrence's states ``(S, 2, h, H, N)`` back to ``(N, 2, h, H, W)`` maps (right-to-left unflipped). The gathers
    move whole rows of ``N`` images: a row is contiguous on both sides."""

    def __init__(self, c: int, h: int, height: int, width: int, device: torch.device):
        into, back = _step_index(c, height, width), _map_index(h, height, width)
        state_rows = (height + width - 1) * 2 * h * height
        assert back.max() < state_rows  # every pixel is a state
        self.into = into.to(device)
        self.into_transpose = _transpose(into, c * height * width).to(device)
        assert self.into_transpose.shape[0] == 2 and self.into_transpose.max() < into.numel()  # each pixel twice
        self.back = back.to(device)
        self.back_transpose = _transpose(back, state_rows).to(device)
        assert self.back_transpose.shape[0] == 1  # each state row goes to one pixel at most
        #: for each step, the rows ``[lo, hi)`` where its column of the skewed map holds a pixel of the image
        self.active = [(max(0, s - width + 1), min(height, s + 1)) for s in range(height + width - 1)]

    def to_steps(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(S, 2, C, H, N)``: both directions, skewed, step-major, zero off the image."""
        return _ToSteps.apply(x, self.into, self.into_transpose)

    def to_maps(self, states: torch.Tensor) -> torch.Tensor:
        """``(S, 2, h, H, N)`` -> ``(N, 2, h, H, W)``, the right-to-left direction flipped back. (The states off
        the image get a zero gradient.)"""
        return _ToMaps.apply(states, self.back, self.back_transpose)


_LAYOUTS: OrderedDict[tuple, DiagonalLayout] = OrderedDict()


def diagonal_layout(c: int, h: int, height: int, width: int, device: torch.device) -> DiagonalLayout:
    """The layout for these sizes (any batch size), kept for the next call (the few most recent)."""
    key = (c, h, height, width, str(device))
    if key not in _LAYOUTS:
        _LAYOUTS[key] = DiagonalLayout(c, h, height, width, device)
        while len(_LAYOUTS) > 6:
            _LAYOUTS.popitem(last=False)
    _LAYOUTS.move_to_end(key)
    return _LAYOUTS[key]
