"""What PixelCNN and PixelRNN share: the likelihood in the paper's units and raster-order sampling."""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import torch

from rlgen.common.device import at_least_fp32, full_precision
from rlgen.common.progress import progress
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch
from rlgen.vision.likelihood.outputs import LN2, PixelHead, likelihood_report
from rlgen.vision.trainer import LikelihoodModel, Metrics

log = logging.getLogger("rlgen")


class AutoregressivePixelModel(LikelihoodModel):
    """``p(x) = prod_i p(x_i | x_<i)`` over pixels in raster order and, within a pixel, channels R < G < B.

    Subclasses implement :meth:`network`: a map ``(N, C, H, W) -> (N, out, H, W)`` whose output at pixel ``(i, j)``
    for channel group ``c`` depends only on earlier pixels and on channels ``< c`` of pixel ``(i, j)``.

    ``loss`` is the training objective in the unit the papers report: nats per image for Bernoulli (binarised)
    outputs, bits per dimension for the 256-way softmax (8-bit data); both are also returned as metrics
    (``nats``, ``bits_per_dim``)."""

    console_keys = ("loss",)

    def __init__(self, image_shape: tuple[int, int, int], output: str):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.head = PixelHead(output, image_shape[0])
        self.binary = output == "bernoulli"
        self.dims = image_shape[0] * image_shape[1] * image_shape[2]
        self.last_sample_seconds: float | None = None

    def report(self, run: RunDir, evaluation: Mapping[str, float]) -> dict[str, Any]:
        return likelihood_report(self, run.config, evaluation)

    @abstractmethod
    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The causal network on inputs scaled to [-1, 1]."""

    @staticmethod
    def logits_in_fp32(output_net: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
        """``output_net(features)`` outside any autocast: under bf16 the network's body runs in bf16, but the
        logits, whose rounding would blur a likelihood summed over 784 pixels, come from fp32 output layers."""
        with full_precision(features):
            return output_net(at_least_fp32(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw output map ``(N, out_channels, H, W)`` for images ``x`` in [0, 1]."""
        return self.network(x * 2.0 - 1.0)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x)`` in nats, one value per image."""
        return self.head.nll(self(x), x)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        nats = self.nll(batch.x)
        bits = nats / (self.dims * LN2)
        loss = nats.mean() if self.binary else bits.mean()
        return loss, {"nats": nats.mean().detach(), "bits_per_dim": bits.mean().detach()}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` images drawn pixel by pixel (one network pass per sub-pixel; rows below the current one cannot
        influence it, so each pass only sees the rows up to the current one). The time taken is logged."""
        c, h, w = self.image_shape
        device = next(self.parameters()).device
        start = time.perf_counter()
        x = torch.zeros(n, c, h, w, device=device)
        for i in progress(range(h), h, f"sampling {n} images", "rows"):
            for j in range(w):
                for ch in range(c):
                    out = self(x[:, :, :i + 1])[:, :, i, j]
                    x[:, ch, i, j] = self.head.sample_channel(out, ch).to(x.dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.last_sample_seconds = time.perf_counter() - start
        log.info("%s: sampled %d images in %.2f s (%.1f ms per image)", type(self).__name__, n,
                 self.last_sample_seconds, 1000 * self.last_sample_seconds / max(n, 1))
        return x
