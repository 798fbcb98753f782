"""Convolutional VAE with a diagonal-Gaussian posterior, optionally refined by inverse autoregressive flow (the
MNIST model of Kingma et al. 2016, section 5.1: one layer of 32 Gaussian latents, a convolutional encoder and
decoder with optional residual blocks, the encoder also emitting the context ``h`` every IAF step sees).

:class:`VAEBase` holds what every VAE here shares (also the bidirectional ladder of :mod:`.ladder`):

* the ELBO ``log p(x|z) + log p(z) - log q(z|x)`` with a single-sample KL estimate (IAF has no closed-form KL);
* **free bits** (openai/iaf's ``kl_min``, in nats): the KL is grouped (per latent dimension here, per feature map
  of each stochastic layer in the ladder), each group's KL is averaged over the minibatch and the objective uses
  ``sum_groups max(free_bits, mean KL)``; with ``free_bits = 0`` it is the plain KL;
* the importance-sampled ``log p(x) ~= logsumexp_k(log p(x, z_k) - log q(z_k|x)) - log k`` (Burda et al. 2016),
  vectorised over the ``k`` samples (chunked to bound memory) and reported each evaluation besides the ELBO;
* Bernoulli outputs for binarised images (nats/image) and openai/iaf's discretised logistic with a learned scale
  for 8-bit images (bits/dim).
"""

from __future__ import annotations

import logging
import math
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.common.device import at_least_fp32, full_precision
from rlgen.common.errors import UserError
from rlgen.common.options import option
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset
from rlgen.vision.likelihood.iaf import IAF
from rlgen.vision.likelihood.outputs import (
    LN2,
    bernoulli_nll,
    discretized_logistic_nll,
    likelihood_report,
    pixel_likelihood,
)
from rlgen.vision.trainer import LikelihoodModel, Metrics

log = logging.getLogger("rlgen")

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
VAE_OUTPUTS = ("bernoulli", "logistic")


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor | float = 0.0,
                      logsd: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Elementwise ``log N(z; mean, exp(logsd)^2)``."""
    return -HALF_LOG_2PI - logsd - 0.5 * ((z - mean) * torch.exp(-torch.as_tensor(logsd))) ** 2


@dataclass
class VAEOptions:
    """Options of both VAEs (``bidirectional`` picks the ladder of :mod:`.ladder`)."""

    image_shape: tuple[int, int, int] = (1, 28, 28)
    output: str = "bernoulli"  # or "logistic" (8-bit data)
    z_dim: int = option(32, "latent dimensions (with --bidirectional: latent feature maps per layer)", minimum=1)
    hidden: int = option(64, "convolution channels (the ladder: h_size)", minimum=1)
    res_blocks: int = option(0, "residual blocks per resolution in encoder and decoder (0: plain convolutions)",
                             minimum=0)
    iaf_steps: int = option(0, "IAF steps on the posterior, ordering reversed between steps (0: diagonal "
                               "Gaussian)", minimum=0, metavar="N")
    iaf_hidden: int = option(320, "units per MADE hidden layer (the paper's MNIST table: 320 or 1920)", minimum=1)
    iaf_depth: int = option(2, "hidden layers per IAF step (MADE or ar_multiconv2d)", minimum=1)
    context_dim: int = option(64, "size of the encoder's context h fed to every IAF step", minimum=1)
    free_bits: float = option(0.0, "free bits: minimum KL per latent dimension (per feature map with "
                                   "--bidirectional), averaged over the minibatch (openai/iaf kl_min)", minimum=0,
                              metavar="NATS")
    iw_samples: int = option(8, "importance samples of the test log p(x) reported besides the ELBO after each "
                                "epoch (0: off)", minimum=0, metavar="K")
    bidirectional: bool = option(False, "the paper's deeper ResNet VAE: several stochastic layers, bidirectional "
                                        "inference")
    levels: int = option(2, "--bidirectional: resolutions (openai depth)", minimum=1)
    blocks_per_level: int = option(2, "--bidirectional: stochastic layers per resolution (openai num_blocks)",
                                   minimum=1)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], image_shape: tuple[int, int, int], output: str) -> VAEOptions:
        return cls(image_shape=tuple(image_shape), output=output,  # type: ignore[arg-type]
                   **{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg and f.name not in ("image_shape",
                                                                                                   "output")})

    def check(self) -> None:
        c, h, w = self.image_shape
        if self.output not in VAE_OUTPUTS:
            raise UserError(f"VAE output must be one of {', '.join(VAE_OUTPUTS)}, not {self.output!r}")
        if c not in (1, 3):
            raise UserError(f"the VAEs handle 1- or 3-channel images, not {c}")
        for name in ("z_dim", "hidden", "iaf_hidden", "context_dim", "levels", "blocks_per_level"):
            if int(getattr(self, name)) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("res_blocks", "iaf_steps", "iaf_depth", "iw_samples"):
            if int(getattr(self, name)) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.free_bits < 0:
            raise UserError(f"free_bits must be >= 0, got {self.free_bits}")
        if not self.bidirectional and (h % 4 or w % 4):
            raise UserError(f"the convolutional VAE halves the image twice: height and width must be multiples of 4, "
                            f"not {h}x{w}")
        if self.iaf_steps and self.iaf_depth < 1:
            raise UserError("IAF steps need at least one hidden layer (--iaf-depth >= 1)")
        if self.bidirectional and self.iaf_steps and self.hidden % self.z_dim:
            raise UserError(f"with --bidirectional, IAF's autoregressive convolutions split the {self.hidden} hidden "
                            f"channels among the {self.z_dim} latent maps: --hidden must be a multiple of --z-dim")


class VAEBase(LikelihoodModel):
    """ELBO, free bits, importance sampling and the output distribution; subclasses define the networks through
    :meth:`encode_decode` and :meth:`decode_prior`."""

    console_keys = ("loss", "kl")
    options_class = VAEOptions
    title = "VAE (Kingma et al. 2016: inverse autoregressive flow)"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> VAEBase:
        """The VAE of a run configuration: :class:`~rlgen.vision.likelihood.ladder.BidirectionalVAE` with
        ``bidirectional``, else :class:`ConvVAE`."""
        from rlgen.vision.likelihood import make_vae

        return make_vae(VAEOptions.from_config(cfg, data.image_shape, pixel_likelihood(cfg, "logistic")))

    def report(self, run: RunDir, evaluation: Mapping[str, float]) -> dict[str, Any]:
        return likelihood_report(self, run.config, evaluation)

    def __init__(self, options: VAEOptions):
        super().__init__()
        options.check()
        self.options = options
        c, h, w = options.image_shape
        self.dims = c * h * w
        self.binary = options.output == "bernoulli"
        # openai/iaf's dec_log_stdv: one learned log-scale of the discretised logistic.
        self.dec_log_scale = None if self.binary else nn.Parameter(torch.zeros(()))
        self.last_sample_seconds: float | None = None

    # -- what a subclass provides --------------------------------------------------------------------------------

    @abstractmethod
    def encode_decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sample ``z ~ q(z|x)`` and decode: the decoder's output map (logits, or the logistic's mean on [-1, 1])
        and, per stochastic layer, the single-sample ``log q(z|x) - log p(z)`` per latent, shaped ``(N, D)`` or
        ``(N, Z, H, W)``."""

    @abstractmethod
    def decode_prior(self, n: int) -> torch.Tensor:
        """The decoder's output map for ``n`` draws from the prior."""

    # -- likelihood terms ----------------------------------------------------------------------------------------

    def log_px(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` per image, in nats."""
        if self.binary:
            return -bernoulli_nll(out, x)
        return -discretized_logistic_nll(out, self.dec_log_scale, x)

    def terms(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out, kls = self.encode_decode(x)
        return self.log_px(out, x), kls

    @staticmethod
    def group_kl(kl: torch.Tensor) -> torch.Tensor:
        """A layer's KL per free-bits group ``(N, groups)``: per dimension for vectors, per feature map (summed
        over pixels) for maps, as openai/iaf does."""
        return kl.sum((2, 3)) if kl.dim() == 4 else kl.flatten(1)

    def kl_objective(self, kls: list[torch.Tensor]) -> torch.Tensor:
        """The KL term of the training objective averaged over the batch, with free bits when ``free_bits > 0``:
        ``sum_layers sum_groups max(free_bits, batch mean of the group's KL)``."""
        lam = self.options.free_bits
        if lam > 0:
            return sum(torch.clamp(self.group_kl(kl).mean(0), min=lam).sum() for kl in kls)
        return sum(kl.flatten(1).sum(1) for kl in kls).mean()

    def loss(self, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        log_px, kls = self.terms(batch.x)
        kl = sum(k.flatten(1).sum(1) for k in kls)
        objective = -log_px.mean() + self.kl_objective(kls)  # nats per image
        neg_elbo = (kl - log_px).mean().detach()
        loss = objective if self.binary else objective / (self.dims * LN2)
        return loss, {"neg_elbo_nats": neg_elbo, "bits_per_dim": neg_elbo / (self.dims * LN2),
                      "recon_nats": -log_px.mean().detach(), "kl": kl.mean().detach()}

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The single-sample ELBO per image, in nats."""
        log_px, kls = self.terms(x)
        return log_px - sum(k.flatten(1).sum(1) for k in kls)

    def log_likelihood(self, x: torch.Tensor, k: int, max_batch: int | None = None) -> torch.Tensor:
        """Importance-sampled ``log p(x)`` with ``k`` samples from ``q(z|x)`` per image, in nats; ``k = 1`` is the
        ELBO. All samples of a chunk go through the networks as one batch; chunks hold at most ``max_batch``
        images (default 4096 on a GPU; 32 on the CPU, where every op slows down per image once a chunk's
        activations outgrow the cache: chunks of 256 or more were 1.2-1.8x slower than 32 for the default VAEs,
        measured by ``benchmarks/vision_likelihood.py --iw-chunks``, see benchmarks/README.md)."""
        n = x.shape[0]
        if max_batch is None:
            max_batch = 4096 if x.is_cuda else 32
        per_chunk = max(1, min(k, max_batch // max(n, 1)))
        log_w = []
        done = 0
        while done < k:
            m = min(per_chunk, k - done)
            log_w.append(self.elbo(x.repeat(m, 1, 1, 1)).view(m, n))  # sample-major: row s is the s-th sample
            done += m
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)

    def evaluation_step(self, batch: Batch) -> Metrics:
        log_px, kls = self.terms(batch.x)
        neg_elbo = (sum(k.flatten(1).sum(1) for k in kls) - log_px).mean()
        metrics: dict[str, torch.Tensor] = {"neg_elbo_nats": neg_elbo, "bits_per_dim": neg_elbo / (self.dims * LN2)}
        metrics["loss"] = neg_elbo if self.binary else metrics["bits_per_dim"]
        if self.options.iw_samples > 0:
            nll = -self.log_likelihood(batch.x, self.options.iw_samples).mean()
            metrics["nll_iw_nats"] = nll
            metrics["nll_iw_bits_per_dim"] = nll / (self.dims * LN2)
        return metrics

    # -- sampling ------------------------------------------------------------------------------------------------

    def output_mean(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image in [0, 1] (shown in sample grids: pixel noise adds nothing to look at)."""
        if self.binary:
            return torch.sigmoid(out.float())
        return (out.float() + 1) / 2

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        start = time.perf_counter()
        images = self.output_mean(self.decode_prior(n))
        if images.is_cuda:
            torch.cuda.synchronize(images.device)
        self.last_sample_seconds = time.perf_counter() - start
        log.info("%s: sampled %d images in %.3f s", type(self).__name__, n, self.last_sample_seconds)
        return images


def logistic_mean(out: torch.Tensor) -> torch.Tensor:
    """openai/iaf clips the logistic's mean to the centres of the outermost bins."""
    return out.clamp(-1 + 1 / 255, 1 - 1 / 255)


class ResBlock(nn.Module):
    """openai/iaf's ResNet layer: ``x + 0.1 * conv(elu(conv(elu(x))))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.conv2(F.elu(self.conv1(F.elu(x))))


class ConvVAE(VAEBase):
    """One layer of ``z_dim`` Gaussian latents; encoder ``x -> conv -> /2 -> /2 -> (mean, log sd, h)``, decoder
    ``z -> linear -> x2 -> x2 -> conv -> p(x|z)``, ELU throughout, ``res_blocks`` residual blocks at each
    resolution; ``iaf_steps`` IAF steps (MADE with ``iaf_depth`` hidden layers of ``iaf_hidden`` units, context h)."""

    def __init__(self, options: VAEOptions):
        super().__init__(options)
        c, height, width = options.image_shape
        ch, zd = options.hidden, options.z_dim
        self.small = (height // 4, width // 4)

        def stage(layer: nn.Module | None) -> list[nn.Module]:
            # layer, residual blocks (pre-activation), ELU
            return [*([layer] if layer is not None else []), *(ResBlock(ch) for _ in range(options.res_blocks)),
                    nn.ELU()]

        self.encoder = nn.Sequential(
            *stage(nn.Conv2d(c, ch, 3, padding=1)),
            *stage(nn.Conv2d(ch, ch, 3, stride=2, padding=1)),
            *stage(nn.Conv2d(ch, ch, 3, stride=2, padding=1)),
            nn.Flatten())
        flat = ch * self.small[0] * self.small[1]
        self.posterior = nn.Linear(flat, 2 * zd + (options.context_dim if options.iaf_steps else 0))
        self.iaf = IAF(zd, options.iaf_steps, [options.iaf_hidden] * options.iaf_depth, options.context_dim) \
            if options.iaf_steps else None
        self.decoder_in = nn.Linear(zd, flat)
        self.decoder = nn.Sequential(
            *stage(None),
            *stage(nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)),
            *stage(nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)),
            nn.Conv2d(ch, c, 3, padding=1))
        # Its convolutions run channels-last (NHWC): 1.06-1.08x a training step in fp32, 1.10-1.20x under bf16
        # autocast on an AVX-512 CPU; PixelCNN, the Diagonal BiLSTM and InfoGAN are slower so (benchmarks/README.md,
        # "channels_last").
        self.to(memory_format=torch.channels_last)

    # Under bf16 autocast the convolutions of encoder and decoder run in bf16; the posterior's parameters, the flow,
    # the densities and the decoder's last convolution (the logits or the logistic's mean) stay in fp32, so that
    # the likelihood terms summed over 784 pixels and 32 latents are not rounded to bf16.

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        small = self.decoder_in(z).view(z.shape[0], -1, *self.small).contiguous(memory_format=torch.channels_last)
        features = self.decoder[:-1](small)
        with full_precision(features):
            out = self.decoder[-1](at_least_fp32(features))
        return out if self.binary else logistic_mean(out)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z ~ q(z|x)`` and ``log q(z|x)`` per dimension."""
        zd = self.options.z_dim
        features = self.encoder((x - 0.5).contiguous(memory_format=torch.channels_last))
        with full_precision(features):
            params = self.posterior(at_least_fp32(features))
            mean, logsd, context = params[:, :zd], params[:, zd:2 * zd], params[:, 2 * zd:]
            eps = torch.randn_like(mean)
            z = mean + torch.exp(logsd) * eps
            log_q = -HALF_LOG_2PI - logsd - 0.5 * eps ** 2
            if self.iaf is not None:
                z, log_det = self.iaf(z, context)
                log_q = log_q - log_det
        return z, log_q

    def encode_decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z, log_q = self.encode(x)
        return self.decode(z), [log_q - gaussian_log_prob(z)]

    def decode_prior(self, n: int) -> torch.Tensor:
        device = self.decoder_in.weight.device
        return self.decode(torch.randn(n, self.options.z_dim, device=device))
