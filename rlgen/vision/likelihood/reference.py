"""Straightforward implementations of the same models, to check the vectorised ones against and to time them.

* :class:`ReferenceMaskedConv2d`: the full ``kh x kw`` kernel, multiplied by the full mask on every forward pass
  (what most PixelCNN code does);
* :class:`ReferenceRowLSTMLayer`: one Python loop over rows that computes each row's input-to-state convolution
  inside the loop;
* :class:`ReferenceDiagonalBiLSTMLayer`: skew and unskew by a Python loop over rows, each direction with its own
  convolutions and its own loop over the columns of the skewed map;
* :func:`reference_log_likelihood`: the importance-sampled ``log p(x)`` with a Python loop over the ``k`` samples.

:func:`to_reference` turns a PixelCNN/PixelRNN into its straightforward twin with the same parameters, so the two
compute the same function (the tests check that) and can be timed on equal terms.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.vision.likelihood.masked import MaskedConv2d, full_mask
from rlgen.vision.likelihood.pixelrnn import DiagonalBiLSTMLayer, RowLSTMLayer


def lstm_update(gates: torch.Tensor, cell: torch.Tensor, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook LSTM step on gates ``(N, 4h, ...)`` laid out ``[o, f, i, g]``."""
    o, f, i, g = gates.split(h, dim=1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class ReferenceMaskedConv2d(nn.Module):
    """A masked convolution with the whole kernel stored and masked on every forward pass."""

    def __init__(self, conv: MaskedConv2d):
        super().__init__()
        self.padding = (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
        self.weight = nn.Parameter(conv.full_weight().detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.register_buffer("mask", full_mask(conv.in_group, conv.out_group, conv.kernel_size, conv.mask_type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ReferenceRowLSTMLayer(nn.Module):
    """Row LSTM computing each row's gates inside the row loop."""

    def __init__(self, layer: RowLSTMLayer):
        super().__init__()
        self.h = layer.h
        self.input_to_state = ReferenceMaskedConv2d(layer.input_to_state)
        self.state_to_state = copy.deepcopy(layer.state_to_state)
        self.output = ReferenceMaskedConv2d(layer.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, rows, width = x.shape
        state = x.new_zeros(n, self.h, width)
        cell = x.new_zeros(n, self.h, width)
        out = []
        for i in range(rows):
            gates = self.input_to_state(x[:, :, i:i + 1])[:, :, 0] + self.state_to_state(state)
            state, cell = lstm_update(gates, cell, self.h)
            out.append(state)
        return x + self.output(torch.stack(out, dim=2))


def loop_skew(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h, w + h - 1)
    for i in range(h):
        out[:, :, i, i:i + w] = x[:, :, i]
    return out


def loop_unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([x[:, :, i, i:i + width] for i in range(x.shape[2])], dim=2)


class ReferenceDiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM with each direction computed separately, loop-based skewing."""

    def __init__(self, layer: DiagonalBiLSTMLayer):
        super().__init__()
        h = self.h = layer.h
        both = ReferenceMaskedConv2d(layer.input_to_state)
        self.input_to_state = nn.ModuleList()
        self.state_to_state = nn.ModuleList()
        for d in range(2):
            conv = copy.deepcopy(both)
            conv.weight = nn.Parameter(both.weight[d * 4 * h:(d + 1) * 4 * h].detach().clone())
            conv.bias = nn.Parameter(both.bias[d * 4 * h:(d + 1) * 4 * h].detach().clone())
            conv.mask = both.mask[d * 4 * h:(d + 1) * 4 * h].clone()
            self.input_to_state.append(conv)
            ss = nn.Conv1d(h, 4 * h, 2, padding=1, bias=False)
            ss.weight = nn.Parameter(layer.state_to_state.weight[d * 4 * h:(d + 1) * 4 * h].detach().clone())
            self.state_to_state.append(ss)
        self.output = ReferenceMaskedConv2d(layer.output)

    def direction(self, x: torch.Tensor, d: int) -> torch.Tensor:
        n, _, rows, width = x.shape
        gates_in = loop_skew(self.input_to_state[d](x))
        state = x.new_zeros(n, self.h, rows)
        cell = x.new_zeros(n, self.h, rows)
        out = []
        for col in range(gates_in.shape[3]):
            gates = gates_in[:, :, :, col] + self.state_to_state[d](state)[:, :, :rows]
            state, cell = lstm_update(gates, cell, self.h)
            out.append(state)
        return loop_unskew(torch.stack(out, dim=3), width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.direction(x, 0)
        right = self.direction(x.flip(3), 1).flip(3)
        shifted = torch.zeros_like(right)
        shifted[:, :, 1:] = right[:, :, :-1]
        return x + self.output(left + shifted)


def to_reference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every masked convolution and LSTM layer replaced by its straightforward twin (same
    parameters, same function)."""
    twin = copy.deepcopy(model)

    def swap(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, MaskedConv2d):
                setattr(module, name, ReferenceMaskedConv2d(child))
            elif isinstance(child, RowLSTMLayer):
                setattr(module, name, ReferenceRowLSTMLayer(child))
            elif isinstance(child, DiagonalBiLSTMLayer):
                setattr(module, name, ReferenceDiagonalBiLSTMLayer(child))
            else:
                swap(child)

    swap(twin)
    return twin


def reference_log_likelihood(vae: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """Importance-sampled ``log p(x)`` of a :class:`~.vae.VAEBase` with one network pass per sample."""
    log_w = torch.stack([vae.elbo(x) for _ in range(k)])
    return torch.logsumexp(log_w, dim=0) - math.log(k)
