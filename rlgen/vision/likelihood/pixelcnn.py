"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks", section 3.5 and
table 2): a ``7x7`` mask-A convolution, residual blocks around ``3x3`` mask-B convolutions, then two ReLU + ``1x1``
mask-B convolutions and a Bernoulli (binarised images) or 256-way softmax (8-bit images) output.

Residual block (the paper's figure 5): the block's input has ``2h`` features; ReLU, ``1x1`` conv to ``h``, ReLU,
``3x3`` mask-B conv, ReLU, ``1x1`` conv back to ``2h``, added to the input. For colour images every convolution
carries the R < G < B channel masks (the features are split into three groups), so the ``1x1`` convolutions are
mask-B too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from rlgen.common.errors import UserError
from rlgen.common.options import option
from rlgen.vision.datasets import ImageDataset
from rlgen.vision.likelihood.autoregressive import AutoregressivePixelModel
from rlgen.vision.likelihood.masked import MaskedConv2d
from rlgen.vision.likelihood.outputs import pixel_likelihood


@dataclass
class PixelCNNOptions:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    hidden: int = option(32, "h: the residual stream has 2h features, the 3x3 convolutions h", minimum=1)
    layers: int = option(12, "residual blocks", minimum=0)
    output_hidden: int = option(64, "features of the two 1x1 output convolutions (the paper: 1024 on CIFAR-10)",
                                minimum=1)
    output: str = "bernoulli"  # or "softmax" (8-bit data)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], image_shape: tuple[int, int, int], output: str) -> PixelCNNOptions:
        return cls(image_shape=tuple(image_shape), output=output,  # type: ignore[arg-type]
                   **{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg and f.name not in ("image_shape",
                                                                                                   "output")})

    def check(self) -> None:
        check_pixel_options(self.image_shape, self.hidden, self.output_hidden)
        if self.layers < 0:
            raise UserError(f"layers must be >= 0, got {self.layers}")


def check_pixel_options(image_shape: tuple[int, int, int], hidden: int, output_hidden: int) -> None:
    c = image_shape[0]
    if c not in (1, 3):
        raise UserError(f"pixel models handle 1- or 3-channel images, not {c}")
    for name, value in (("hidden", hidden), ("output_hidden", output_hidden)):
        if value <= 0 or value % c:
            raise UserError(f"{name} must be a positive multiple of the {c} colour channels, got {value}")


class ResidualBlock(nn.Module):
    """ReLU-1x1(2h->h)-ReLU-3x3 mask B-ReLU-1x1(h->2h), plus the input."""

    def __init__(self, h: int, groups: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(), MaskedConv2d(2 * h, h, 1, "B", groups),
            nn.ReLU(), MaskedConv2d(h, h, 3, "B", groups),
            nn.ReLU(), MaskedConv2d(h, 2 * h, 1, "B", groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def output_layers(in_channels: int, hidden: int, out_channels: int, groups: int) -> nn.Sequential:
    """The paper's two ReLU + 1x1 mask-B layers ending in the output logits."""
    return nn.Sequential(nn.ReLU(), MaskedConv2d(in_channels, hidden, 1, "B", groups),
                         nn.ReLU(), MaskedConv2d(hidden, out_channels, 1, "B", groups))


class PixelCNN(AutoregressivePixelModel):
    """PixelCNN; ``loss(batch)`` is the exact negative log-likelihood (nats/image or bits/dim)."""

    options_class = PixelCNNOptions
    title = "PixelCNN (van den Oord et al. 2016)"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> PixelCNN:
        return cls(PixelCNNOptions.from_config(cfg, data.image_shape, pixel_likelihood(cfg, "softmax")))

    def __init__(self, options: PixelCNNOptions):
        options.check()
        super().__init__(options.image_shape, options.output)
        self.options = options
        c, h = options.image_shape[0], options.hidden
        self.input_conv = MaskedConv2d(c, 2 * h, 7, "A", groups=c)
        self.blocks = nn.Sequential(*(ResidualBlock(h, c) for _ in range(options.layers)))
        self.output_net = output_layers(2 * h, options.output_hidden, self.head.out_channels, c)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_in_fp32(self.output_net, self.blocks(self.input_conv(x)))
