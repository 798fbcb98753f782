"""The Diagonal BiLSTM's change of layout as one gather each way.

The recurrence (:func:`rlgen.vision.likelihood.recurrence.lstm_recurrence`) wants both directions' input maps
skewed (row ``i`` shifted right by ``i``, so each diagonal becomes a column) and laid out step-major with a zero in
front of each column, ``(W + H - 1 steps, 2 directions, C, N, 1 + H)``; the right-to-left direction is the
left-to-right one on the horizontally flipped map. Done with flips, pads, reshapes and a permute, that took ~10 passes
over memory with poor locality each way (forward and backward, into and out of the recurrence): about a third of a
training step. Every element of the new layout is one element of the old one (or a zero), so each change of layout
is one ``index_select`` with a precomputed index, and its gradient the ``index_select`` of the transposed index.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class _Gather(torch.autograd.Function):
    """``out = src[index]`` (flattened), where ``index`` may point one past the source for a zero; the backward sums
    the gradient over the ``R`` places each source element went to (``transpose`` ``(R, src.numel())``, pointing one
    past the gradient where there are fewer). The zero costs a copy of the whole tensor, so it is appended only where
    an index needs it (``zero_in``, ``zero_back``)."""

    @staticmethod
    def forward(ctx, src: torch.Tensor, index: torch.Tensor,  # type: ignore[override]
                transpose: torch.Tensor, zero_in: bool, zero_back: bool):
        ctx.save_for_backward(transpose)
        ctx.src_shape, ctx.zero_back = src.shape, zero_back
        return _flat(src, zero_in).index_select(0, index.view(-1)).view(index.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (transpose,) = ctx.saved_tensors
        flat = _flat(grad, ctx.zero_back)
        out = flat.index_select(0, transpose[0])
        for row in transpose[1:]:
            out += flat.index_select(0, row)
        return out.view(ctx.src_shape), None, None, None, None


def _flat(x: torch.Tensor, zero: bool) -> torch.Tensor:
    """``x`` flattened, with a zero appended if ``zero``."""
    return torch.cat([x.reshape(-1), x.new_zeros(1)]) if zero else x.reshape(-1)


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


def _step_index(n: int, c: int, height: int, width: int) -> torch.Tensor:
    """For the step-major layout ``(S, 2, C, N, 1 + H)``, the flat position in an ``(N, C, H, W)`` map of each
    element (``N C H W``, the zero, for the pads and off the image)."""
    steps = height + width - 1
    s = torch.arange(steps).view(steps, 1, 1, 1, 1)
    d = torch.arange(2).view(1, 2, 1, 1, 1)
    ch = torch.arange(c).view(1, 1, c, 1, 1)
    image = torch.arange(n).view(1, 1, 1, n, 1)
    row = torch.arange(height + 1).view(1, 1, 1, 1, height + 1) - 1  # position 0 is the pad
    column = s - row  # in the skewed map of this direction
    column_in_map = torch.where(d == 0, column, width - 1 - column)  # right-to-left: the flipped map's column
    inside = (row >= 0) & (column >= 0) & (column < width)
    flat = ((image * c + ch) * height + row.clamp(min=0)) * width + column_in_map.clamp(0, width - 1)
    return torch.where(inside, flat, n * c * height * width).to(torch.int32)


def _map_index(n: int, h: int, height: int, width: int) -> torch.Tensor:
    """For each element of the ``(N, 2, h, H, W)`` maps, its flat position in the states ``(S, 2, h, N, 1 + H)``."""
    image = torch.arange(n).view(n, 1, 1, 1, 1)
    d = torch.arange(2).view(1, 2, 1, 1, 1)
    ch = torch.arange(h).view(1, 1, h, 1, 1)
    row = torch.arange(height).view(1, 1, 1, height, 1)
    column = torch.arange(width).view(1, 1, 1, 1, width)
    step = row + torch.where(d == 0, column, width - 1 - column)
    return ((((step * 2 + d) * h + ch) * n + image) * (height + 1) + row + 1).to(torch.int32)


class DiagonalLayout:
    """The gathers between an ``(N, C, H, W)`` map and the recurrence's step-major layout, and from the
    recurrence's states ``(S, 2, h, N, 1 + H)`` back to ``(N, 2, h, H, W)`` maps (right-to-left unflipped)."""

    def __init__(self, n: int, c: int, h: int, height: int, width: int, device: torch.device):
        into, back = _step_index(n, c, height, width), _map_index(n, h, height, width)
        assert back.max() < (height + width - 1) * 2 * h * n * (height + 1)  # every map element is a state
        self.into = into.to(device)
        self.into_transpose = _transpose(into, n * c * height * width).to(device)
        assert self.into_transpose.shape[0] == 2 and self.into_transpose.max() < into.numel()  # each pixel twice
        self.back = back.to(device)
        self.back_transpose = _transpose(back, (height + width - 1) * 2 * h * n * (height + 1)).to(device)
        #: (S, 1 + H): where a step's column holds a pixel of the image (not a pad, not off the image)
        self.inside = (into[:, 0, 0, 0] < n * c * height * width).to(device)

    def to_steps(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(S, 2, C, N, 1 + H)``: both directions, skewed, step-major, zero-padded. (Every pixel
        goes to one place in each direction: the backward needs no zero.)"""
        return _Gather.apply(x, self.into, self.into_transpose, True, False)

    def to_maps(self, states: torch.Tensor) -> torch.Tensor:
        """``(S, 2, h, N, 1 + H)`` -> ``(N, 2, h, H, W)``, the right-to-left direction flipped back. (The states at
        the pads and off the image get a zero gradient.)"""
        return _Gather.apply(states, self.back, self.back_transpose, False, True)


_LAYOUTS: OrderedDict[tuple, DiagonalLayout] = OrderedDict()


def diagonal_layout(n: int, c: int, h: int, height: int, width: int, device: torch.device) -> DiagonalLayout:
    """The layout for these sizes, kept for the next call (the few most recent: a training batch, the last smaller
    one, the evaluation and sampling batches)."""
    key = (n, c, h, height, width, str(device))
    if key not in _LAYOUTS:
        _LAYOUTS[key] = DiagonalLayout(n, c, h, height, width, device)
        while len(_LAYOUTS) > 6:
            _LAYOUTS.popitem(last=False)
    _LAYOUTS.move_to_end(key)
    return _LAYOUTS[key]
