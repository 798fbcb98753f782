"""PixelRNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016): Row LSTM and Diagonal BiLSTM layers with residual
connections, between a ``7x7`` mask-A convolution and two ReLU + ``1x1`` mask-B output convolutions (table 2).

Each LSTM layer takes a ``2h``-feature map; its input-to-state convolution produces the four gates ``[o, f, i, g]``
(``h`` features each), the recurrence gives an ``h``-feature map, a ``1x1`` mask-B convolution brings it back to
``2h`` features and the layer's input is added (the residual connection of section 3.4):

    [o, f, i, g] = [sigmoid, sigmoid, sigmoid, tanh](K_ss * h_prev + K_is * x),  c = f c_prev + i g,  h = o tanh(c)

* **Row LSTM** (section 3.1): rows are processed top to bottom, a whole row per step. ``K_is`` is a ``1x3`` (the
  paper's "k x 1", k = 3) mask-B convolution along the row, computed for the whole map at once; ``K_ss`` is an
  unmasked ``1x3`` convolution of the previous row's state. Python loops over rows only.
* **Diagonal BiLSTM** (section 3.2): the input map is *skewed* (row ``i`` shifted right by ``i``) so that each
  diagonal of the image becomes a column; columns are processed left to right, a whole column (diagonal) per step,
  with ``K_is`` a ``1x1`` mask-B convolution and ``K_ss`` an unmasked ``2x1`` convolution over the previous column
  (the pixel above and the pixel to the left). The right-to-left direction runs on the horizontally flipped map;
  its output is flipped back and **shifted down one row**, so pixel ``(i, j)`` only sees rows above from it, and
  added to the left-to-right output. Both directions run in the same column loop (a grouped ``Conv1d``). Python
  loops over the ``W + H - 1`` columns of the skewed map only.

Besides the residual connections, each layer's output also reaches the output layers through its own learnable
``1x1`` mask-B convolution (the paper's skip connections, ablated in its table 4; ``skip_connections=False`` feeds
the output layers the last layer's map only).

For colour images ``K_is`` and the ``1x1`` convolutions carry the R < G < B masks (each gate's ``h`` features split
into three groups); the state-to-state convolutions need none, since they only see whole earlier pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.common.errors import UserError
from rlgen.common.options import option
from rlgen.vision.datasets import ImageDataset
from rlgen.vision.likelihood.autoregressive import AutoregressivePixelModel
from rlgen.vision.likelihood.diagonal_layout import diagonal_layout
from rlgen.vision.likelihood.masked import MaskedConv2d, contiguous_groups, tiled_groups
from rlgen.vision.likelihood.outputs import pixel_likelihood
from rlgen.vision.likelihood.pixelcnn import check_pixel_options, output_layers
from rlgen.vision.likelihood.recurrence import conv1d_kernel, lstm_recurrence

VARIANTS = ("rowlstm", "diagbilstm")


def _gate_bias(conv: MaskedConv2d, h: int, directions: int = 1) -> None:
    """Forget-gate bias 1 (a common LSTM initialisation; the paper does not say)."""
    with torch.no_grad():
        for d in range(directions):
            conv.bias[d * 4 * h + h:d * 4 * h + 2 * h].fill_(1.0)


class RowLSTMLayer(nn.Module):
    """One residual Row LSTM layer on a ``2h``-feature map."""

    def __init__(self, h: int, groups: int = 1):
        super().__init__()
        self.h = h
        self.input_to_state = MaskedConv2d(2 * h, 4 * h, (1, 3), "B", in_group=contiguous_groups(2 * h, groups),
                                           out_group=tiled_groups(h, 4, groups))
        self.state_to_state = nn.Conv1d(h, 4 * h, 3, padding=1, bias=False)
        self.output = MaskedConv2d(h, 2 * h, 1, "B", groups)
        _gate_bias(self.input_to_state, h)

    def recurrence(self, x: torch.Tensor) -> torch.Tensor:
        """The LSTM's ``h``-feature output map for a ``2h``-feature input map."""
        # rows are the steps, position-major (lstm_recurrence's layout): (H, 1 direction, 2h, W, N). The masked
        # 1x3 input-to-state convolution (type B: the pixel to the left and the pixel itself, its stored columns)
        # is the recurrence's input product with two taps (in_left = 1); the 1x3 state-to-state kernel sees the
        # previous row at j - 1, j and j + 1 (left = 1).
        conv = self.input_to_state
        inputs = x.permute(2, 1, 3, 0).unsqueeze(1)
        states = lstm_recurrence(inputs, conv1d_kernel(self.state_to_state.weight, 1), left=1,
                                 in_weight=conv1d_kernel(conv.masked_weight()[:, :, 0].contiguous(), 1),
                                 bias=conv.bias, in_left=1)
        return states[:, 0].permute(3, 1, 0, 2).contiguous()  # (N, h, H, W), contiguous for the 1x1 convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.output(self.recurrence(x))


class DiagonalBiLSTMLayer(nn.Module):
    """One residual Diagonal BiLSTM layer on a ``2h``-feature map."""

    def __init__(self, h: int, groups: int = 1):
        super().__init__()
        self.h = h
        # Both directions' input-to-state maps in one 1x1 convolution (a 1x1 convolution commutes with the flip).
        self.input_to_state = MaskedConv2d(2 * h, 8 * h, 1, "B", in_group=contiguous_groups(2 * h, groups),
                                           out_group=tiled_groups(h, 8, groups))
        # 2x1 state-to-state kernels of both directions as one grouped convolution along the column.
        self.state_to_state = nn.Conv1d(2 * h, 8 * h, 2, padding=1, groups=2, bias=False)
        self.output = MaskedConv2d(h, 2 * h, 1, "B", groups)
        _gate_bias(self.input_to_state, h, directions=2)

    def recurrence(self, x: torch.Tensor) -> torch.Tensor:
        rows, width = x.shape[2:]
        h = self.h
        # Right-to-left = left-to-right on the flipped map. Both directions' input maps are skewed (each diagonal
        # becomes a column) and laid out step-major and position-major, (W + H - 1, 2 directions, 2h, H, N)
        # (lstm_recurrence's layout), by one gather (diagonal_layout). The 1x1 input-to-state convolution commutes
        # with flip and skew: the recurrence applies it step by step. Each step computes only the rows where its
        # column of the skewed map holds a pixel (layout.active): the other positions' states would be 0 (below the
        # diagonal) or never reach a pixel (past the right edge), so the model's output is the same.
        layout = diagonal_layout(2 * h, h, rows, width, x.device)
        inputs = layout.to_steps(x)
        conv = self.input_to_state
        # The 2x1 state-to-state kernel sees the pixel above (s[i - 1]) and the pixel to the left (s[i]) in the
        # previous column: left = 1.
        states = lstm_recurrence(inputs, conv1d_kernel(self.state_to_state.weight, 2), left=1,
                                 in_weight=conv.masked_weight().view(2, 4 * h, 2 * h), bias=conv.bias,
                                 active=layout.active)  # (steps, 2, h, H, N)
        maps = layout.to_maps(states)  # (N, 2, h, H, W), the right-to-left direction flipped back
        # (contiguous: the maps come batch-innermost from the gather, and the 1x1 convolutions are slow on that)
        return (maps[:, 0] + self.shift_down(maps[:, 1])).contiguous()

    @staticmethod
    def shift_down(right: torch.Tensor) -> torch.Tensor:
        """Shift the right-to-left map down one row: pixel ``(i, j)`` gets what ``(i - 1, j)`` saw, which is all
        in rows above; unshifted, it would see the rest of its own row (the future)."""
        return F.pad(right, (0, 0, 1, 0))[:, :, :right.shape[2]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.output(self.recurrence(x))


@dataclass
class PixelRNNOptions:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    variant: str = option("diagbilstm", "Row LSTM or Diagonal BiLSTM layers", choices=VARIANTS)
    hidden: int = option(16, "h: the layers carry 2h features (the paper's MNIST model: h = 16)", minimum=1)
    layers: int = option(7, "LSTM layers (the paper's MNIST model: 7 Diagonal BiLSTM layers)", minimum=1)
    output_hidden: int = option(32, "features of the two 1x1 output convolutions", minimum=1)
    output: str = "bernoulli"
    skip_connections: bool = option(True, "every layer's map, through its own 1x1 mask-B convolution, feeds the "
                                          "output layers besides the residual stream (the paper's)")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], image_shape: tuple[int, int, int], output: str) -> PixelRNNOptions:
        return cls(image_shape=tuple(image_shape), output=output,  # type: ignore[arg-type]
                   **{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg and f.name not in ("image_shape",
                                                                                                   "output")})

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise UserError(f"unknown PixelRNN variant {self.variant!r}; use one of {', '.join(VARIANTS)}")
        check_pixel_options(self.image_shape, self.hidden, self.output_hidden)
        if self.layers < 1:
            raise UserError(f"layers must be >= 1, got {self.layers}")


class PixelRNN(AutoregressivePixelModel):
    """Row LSTM or Diagonal BiLSTM PixelRNN; ``loss(batch)`` is the exact negative log-likelihood."""

    options_class = PixelRNNOptions
    title = "PixelRNN (van den Oord et al. 2016)"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> PixelRNN:
        return cls(PixelRNNOptions.from_config(cfg, data.image_shape, pixel_likelihood(cfg, "softmax")))

    def __init__(self, options: PixelRNNOptions):
        options.check()
        super().__init__(options.image_shape, options.output)
        self.options = options
        c, h = options.image_shape[0], options.hidden
        layer = RowLSTMLayer if options.variant == "rowlstm" else DiagonalBiLSTMLayer
        self.input_conv = MaskedConv2d(c, 2 * h, 7, "A", groups=c)
        self.layers = nn.Sequential(*(layer(h, c) for _ in range(options.layers)))
        self.skips = (nn.ModuleList(MaskedConv2d(2 * h, 2 * h, 1, "B", c) for _ in range(options.layers))
                      if options.skip_connections else None)
        self.output_net = output_layers(2 * h, options.output_hidden, self.head.out_channels, c)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(x)
        if self.skips is None:
            return self.logits_in_fp32(self.output_net, self.layers(x))
        total = None
        for layer, skip in zip(self.layers, self.skips):
            x = layer(x)
            total = skip(x) if total is None else total + skip(x)
        return self.logits_in_fp32(self.output_net, total)
