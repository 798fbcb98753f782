"""Output distributions of the likelihood models and the units likelihoods are reported in.

* Binarised images (MNIST): each pixel is Bernoulli; the likelihood is reported as the negative log-likelihood in
  **nats per image** (the sum over the 784 pixels), as in the PixelRNN and IAF papers.
* 8-bit images (Fashion-MNIST, CIFAR-10): each sub-pixel is one of 256 levels, modelled by a 256-way softmax
  (PixelCNN, PixelRNN) or a discretised logistic (the VAEs, as in openai/iaf); the likelihood is reported in
  **bits per dimension**: ``nats / (C * H * W * ln 2)``. Both models are discrete, so no dequantisation term is needed.

Every ``*_nll`` returns one value per image, in nats, computed in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("rlgen")

LN2 = math.log(2.0)
LEVELS = 256
OUTPUTS = ("bernoulli", "softmax", "logistic")


def nats_to_bits_per_dim(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Negative log-likelihood per image in nats -> bits per dimension (``dims`` = C * H * W)."""
    return nats / (dims * LN2)


def bits_per_dim_to_nats(bits: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Bits per dimension -> negative log-likelihood per image in nats."""
    return bits * dims * LN2


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (as the data loader gives them) -> integer levels 0..255."""
    return (x.float() * (LEVELS - 1)).round_().clamp_(0, LEVELS - 1).long()


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x)`` per image for independent Bernoulli pixels with ``logits`` (same shape as ``x``, x in {0, 1})."""
    nll = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    return nll.flatten(1).sum(1)


def softmax_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x)`` per image for a 256-way softmax per sub-pixel: ``logits`` ``(N, 256, C, H, W)``, ``x`` in [0, 1]
    ``(N, C, H, W)`` (its levels are ``round(255 x)``)."""
    nll = F.cross_entropy(logits.float(), to_levels(x), reduction="none")
    return nll.flatten(1).sum(1)


def discretized_logistic_nll(mean: torch.Tensor, log_scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log p(x)`` per image for a logistic per sub-pixel discretised to 256 bins (openai/iaf's
    ``discretized_logistic``, with the two edge bins extended to -inf and +inf so the 256 probabilities sum to one).

    ``mean`` and ``log_scale`` live on the [-1, 1] scale of the data (level ``l`` sits at ``2 l / 255 - 1``, bins are
    ``2 / 255`` wide); ``log_scale`` broadcasts against ``mean``."""
    levels = to_levels(x)
    mean = mean.float()
    log_scale = log_scale.float().expand_as(mean)
    centred = (levels.float() * (2.0 / (LEVELS - 1)) - 1.0) - mean
    inv_scale = torch.exp(-log_scale)
    half_bin = 1.0 / (LEVELS - 1)
    plus, minus = inv_scale * (centred + half_bin), inv_scale * (centred - half_bin)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus), for the lowest bin
    log_sf_minus = -F.softplus(minus)  # log(1 - sigmoid(minus)), for the highest bin
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    # Where the bin mass underflows in float32, use the density at the bin centre times the bin width.
    mid = inv_scale * centred
    log_mid = mid - log_scale - 2.0 * F.softplus(mid) + math.log(2 * half_bin)
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), log_mid)
    logp = torch.where(levels == 0, log_cdf_plus, torch.where(levels == LEVELS - 1, log_sf_minus, inner))
    return -logp.flatten(1).sum(1)


def sample_discretized_logistic(mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Draw images in [0, 1] (multiples of 1/255) from :func:`discretized_logistic_nll`'s distribution."""
    u = torch.rand_like(mean, dtype=torch.float32).clamp_(1e-5, 1 - 1e-5)
    value = mean.float() + torch.exp(log_scale.float()) * (torch.log(u) - torch.log1p(-u))
    return ((value.clamp(-1, 1) + 1) / 2 * (LEVELS - 1)).round() / (LEVELS - 1)


class PixelHead:
    """How a pixel model's final ``(N, out_channels, H, W)`` map is read: Bernoulli logits (``out = C``) or 256-way
    softmax logits (``out = 256 C``, channel ``c``'s logits in block ``c``, so the colour masks line up)."""

    def __init__(self, kind: str, channels: int):
        if kind not in ("bernoulli", "softmax"):
            raise ValueError(f"pixel models output bernoulli or softmax, not {kind!r}")
        self.kind, self.channels = kind, channels

    @property
    def out_channels(self) -> int:
        return self.channels if self.kind == "bernoulli" else LEVELS * self.channels

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` Bernoulli logits or ``(N, 256, C, H, W)`` softmax logits."""
        if self.kind == "bernoulli":
            return out
        n, _, h, w = out.shape
        return out.view(n, self.channels, LEVELS, h, w).transpose(1, 2)

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Nats per image."""
        logits = self.logits(out)
        return bernoulli_nll(logits, x) if self.kind == "bernoulli" else softmax_nll(logits, x)

    def sample_channel(self, out: torch.Tensor, c: int) -> torch.Tensor:
        """Draw channel ``c`` of one pixel from ``out`` ``(N, out_channels)`` (the map at that pixel); values in
        [0, 1]."""
        if self.kind == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out[:, c].float()))
        probs = torch.softmax(out[:, c * LEVELS:(c + 1) * LEVELS].float(), dim=1)
        return torch.multinomial(probs, 1).squeeze(1).float() / (LEVELS - 1)


# ------------------------------------------------------------------------------------------- run configuration
def binary_pixels(cfg: Mapping[str, Any]) -> bool:
    """Binary pixels (Bernoulli likelihoods, nats per image): binarised by rlgen or already binary."""
    from rlgen.vision.datasets import BINARY_DATASETS

    return cfg.get("binarize") in ("static", "dynamic") or cfg.get("dataset") in BINARY_DATASETS


def pixel_likelihood(cfg: Mapping[str, Any], eight_bit: str) -> str:
    """The output distribution of a run, said once: Bernoulli (nats per image) for binary pixels, else
    ``eight_bit`` (bits per dimension) -- so that an .npz of MNIST, which the per-dataset defaults do not
    recognise, does not train 8-bit unannounced."""
    if binary_pixels(cfg):
        log.info("binary pixels: Bernoulli likelihood, in nats per image")
        return "bernoulli"
    log.info("8-bit pixels (--binarize none): %s likelihood, in bits per dimension; --binarize dynamic for the "
             "binarised-MNIST protocol (nats per image)", "discretised logistic" if eight_bit == "logistic" else
             "256-way softmax")
    return eight_bit


def likelihood_report(model: Any, cfg: Mapping[str, Any], evaluation: Mapping[str, float]) -> dict[str, Any]:
    """A likelihood model's figures for ``summary.json``: the last evaluation as ``test_<metric>`` (logged in the
    run's unit) and the time the last sample grid took."""
    result: dict[str, Any] = {"binarize": cfg.get("binarize")}
    if getattr(model, "last_sample_seconds", None) is not None:
        result["sample_seconds"] = round(model.last_sample_seconds, 3)
        result["sample_images"] = cfg.get("n_samples")
    if evaluation:
        result.update({f"test_{k}": float(v) for k, v in evaluation.items()})
        unit = "nats/image" if binary_pixels(cfg) else "bits/dim"
        figures = [f"loss {evaluation['loss']:.4g} {unit}"]
        if "nll_iw_nats" in evaluation:
            iw = (f"{evaluation['nll_iw_nats']:.2f} nats/image" if binary_pixels(cfg)
                  else f"{evaluation['nll_iw_bits_per_dim']:.4f} bits/dim")
            figures.append(f"-log p(x) from {cfg.get('iw_samples')} importance samples {iw}")
        log.info("%s split after the last epoch: %s", cfg.get("eval_split", "test"), "; ".join(figures))
    return result
