"""InfoGAN (Chen et al. 2016, arXiv 1606.03657) with the paper's MNIST architecture, as in openai/InfoGAN
(``infogan/models/regularized_gan.py``, ``infogan/algos/infogan_trainer.py``, ``launchers/run_mnist_exp.py``).

Latent input ``[z, c]``: noise ``z ~ U(-1, 1)^62``, categorical codes (one-hot, uniform over ``K``; MNIST: one code
with K = 10) and continuous codes ``c_j ~ U(-1, 1)`` (MNIST: 2).

The game: the usual discriminator loss and the non-saturating generator loss, each minus ``lambda * L_I`` where
``L_I = H(c) - E[-log Q(c | G(z, c))]`` is the variational lower bound of the mutual information ``I(c; G(z, c))``.
``Q`` shares every layer of the discriminator but the last and adds its own head; Q and the shared layers are
trained with the discriminator's optimiser, the generator with its own (as in the original). ``Q(c | x)`` is a
softmax for each categorical code and a factored Gaussian for the continuous codes, with standard deviation fixed
to 1 (the MNIST launcher's ``fix_std=True``) or learnt (``learn_std``: ``std = sqrt(exp(s))`` as in the original).
``lambda`` is 1 for categorical and continuous codes (the original's ``info_reg_coeff``). The entropies ``H(c)``
(``log K`` per categorical code, ``log 2`` per continuous code, the entropy of ``U(-1, 1)``) are constants: they do
not change any gradient, and they make the logged ``mi_cat``/``mi_cont`` lower bounds of the mutual information in
nats. (With the std fixed to 1, ``-log N(c; mu, 1) >= log(2 pi) / 2 > log 2``, so ``mi_cont`` stays below 0: a loose
bound, which still rises as Q recovers the code. The original logs ``H`` under an N(0, 1) prior instead.)

Architecture (the paper's Table 1 for MNIST; ``S`` = 28 or 32, ``C`` channels):
    * D / Q shared: 4x4 conv 64 stride 2, lReLU -> 4x4 conv 128 stride 2, batch norm, lReLU -> dense 1024,
      batch norm, lReLU; D: dense 1; Q: dense 128, batch norm, lReLU, dense to the code parameters.
    * G: dense 1024, batch norm, ReLU -> dense 128 * (S/4)^2, batch norm, ReLU -> 4x4 up-conv 64 stride 2,
      batch norm, ReLU -> 4x4 up-conv C stride 2 -> sigmoid (the original's Bernoulli mean).
    Leaky ReLU slope 0.1 (the paper's text; the code's default was 0.01), weights ~ N(0, 0.02). Adam with beta1 0.5,
    learning rate 2e-4 for D/Q and 1e-3 for G, batches of 128, images in [0, 1].

Evaluation (on the test split, :meth:`InfoGAN.evaluation_step`): the unsupervised accuracy of the first categorical
code -- each real test image is assigned ``argmax Q(c_1 | x)``, and codes are matched one-to-one to labels to
maximise the accuracy (Hungarian algorithm, :func:`rlgen.vision.metrics.matched_accuracy`); the paper reports
5% error on MNIST. Also, on fresh generated samples: how often Q recovers the categorical code it was given, and the
mean squared error of its estimate of the continuous codes. Q is evaluated as it runs in training, with batch norm
using each batch's statistics (:func:`batch_statistics`): the running statistics average the real and generated
batches that the discriminator sees in turn, and normalising with them costs Q much of its accuracy.

Sample grids (:meth:`InfoGAN.sample`) follow the paper's convention: along each row the first categorical code goes
through its values while noise and the other codes stay fixed; rows are different draws.
:meth:`InfoGAN.traversal` gives such a grid for any code (continuous codes from -2 to 2, as in the paper's figures:
beyond the training range) and :meth:`InfoGAN.save_traversals` writes them all as PNG.

Two rlgen variants, both off by default (the paper's recipe) and both unsupervised, train Q on real images as well,
which the paper's Q never sees: ``real_clustering`` rewards the information Q's first categorical code carries about
the real batch (balanced, confident clusters: regularised information maximisation, as in IMSAT), and
``real_consistency`` penalises the KL divergence between that code on a real image and on a slightly rotated,
slanted, zoomed and shifted copy (IMSAT's self-augmentation: a digit's class survives the move, a split by slant or
size does not).

Deviation: the generator step reuses the noise and codes of the discriminator step (the original draws new ones for
each optimiser step); the expectation is the same and it saves a generator pass.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.common.errors import UserError
from rlgen.common.options import option
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset
from rlgen.vision.gan.dcgan import bce, dcgan_init, frozen
from rlgen.vision.images import save_image_grid
from rlgen.vision.metrics import confusion_matrix, matched_accuracy
from rlgen.vision.restarts import RestartOptions
from rlgen.vision.trainer import GenerativeModel, Optimizers

log = logging.getLogger("rlgen")

SIZES = (28, 32)
LOG_2PI = math.log(2 * math.pi)
# How far --real-consistency moves a real image: small enough that a digit stays the digit it was, large enough
# that slant, size and position (styles the continuous codes and the noise should carry) do not decide its code
REAL_AFFINE = {"degrees": 15.0, "scale": 0.1, "shift": 2.0, "shear": 0.3}


@dataclass
class InfoGANOptions:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    noise_dim: int = option(62, "incompressible noise dimension", minimum=0)
    categorical: tuple[int, ...] = option((10,), "categorical codes, by number of values (no value: none)",
                                          minimum=1, metavar="K", optional_list=True)
    continuous: int = option(2, "continuous codes, each U(-1, 1)", minimum=0, metavar="N")
    learn_std: bool = option(False, "Q learns the standard deviation of the continuous codes (off: fixed to 1, as "
                                    "in the MNIST launcher)")
    info_weight: float = option(1.0, "weight of the mutual-information term of the categorical codes", minimum=0,
                                metavar="LAMBDA")
    info_weight_continuous: float = option(1.0, "the same for the continuous codes", minimum=0, metavar="LAMBDA")
    real_clustering: float = option(0.0, "weight of the information Q's first categorical code carries about the "
                                         "real images (0: off, the paper; an rlgen variant, unsupervised)", minimum=0,
                                    metavar="WEIGHT")
    real_consistency: float = option(0.0, "weight of the KL divergence between Q's first categorical code on a real "
                                          "image and on a copy rotated by up to 15 degrees, slanted (sheared) by "
                                          "up to 0.3, zoomed by up to 10% and moved by up to 2 pixels (0: off, the "
                                          "paper; an rlgen variant, unsupervised)", minimum=0, metavar="WEIGHT")
    g_lr: float = option(1e-3, "generator learning rate (--lr is the discriminator's)", minimum=0, strict=True)
    ngf: int = option(64, "generator up-convolution width", minimum=1)
    ndf: int = option(64, "discriminator convolution width", minimum=1)
    fc_dim: int = option(1024, "dense layer width", minimum=1)
    q_dim: int = option(128, "Q head width", minimum=1)
    leak: float = 0.1

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], image_shape: tuple[int, int, int]) -> InfoGANOptions:
        values = {f.name: cfg[f.name] for f in fields(cls) if f.name in cfg and f.name != "image_shape"}
        if "categorical" in values:
            values["categorical"] = tuple(int(k) for k in (values["categorical"] or ()))
        return cls(image_shape=tuple(image_shape), **values)  # type: ignore[arg-type]

    def check(self) -> None:
        c, h, w = self.image_shape
        if c not in (1, 3) or h != w or h not in SIZES:
            raise UserError(f"InfoGAN handles 1- or 3-channel images of {' or '.join(f'{s}x{s}' for s in SIZES)}, "
                            f"not {c}x{h}x{w}")
        if any(k < 2 for k in self.categorical):
            raise UserError(f"every categorical code needs at least 2 values, got --categorical {self.categorical}")
        if not self.categorical and self.continuous <= 0:
            raise UserError("InfoGAN needs at least one code: --categorical K and/or --continuous N")
        for name in ("ngf", "ndf", "fc_dim", "q_dim"):
            if int(getattr(self, name)) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        if self.noise_dim < 0 or self.continuous < 0 or min(self.info_weight, self.info_weight_continuous) < 0:
            raise UserError("--noise-dim, --continuous and the information weights must be >= 0")
        if (self.real_clustering or self.real_consistency) and not self.categorical:
            raise UserError("--real-clustering and --real-consistency (the rlgen preset's) act on the first "
                            "categorical code: give --categorical K, or --preset paper")

    @property
    def code_dim(self) -> int:
        return sum(self.categorical) + self.continuous

    @property
    def latent_dim(self) -> int:
        return self.noise_dim + self.code_dim

    @property
    def q_out(self) -> int:
        return sum(self.categorical) + self.continuous * (2 if self.learn_std else 1)


def _init(module: nn.Module) -> None:
    """DCGAN's N(0, 0.02) initialisation (the original's custom ops), batch-norm scales ~ N(1, 0.02) in 1-D too."""
    dcgan_init(module)
    if isinstance(module, nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Batch norm in ``module`` normalises with each batch's own statistics, as in training, and leaves the running
    statistics untouched (momentum 0; the batch counter is restored)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (training, momentum, count) in zip(norms, saved):
            m.train(training)
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class InfoGenerator(nn.Module):
    """``[z, c] (N, latent_dim) -> images (N, C, S, S)`` in [0, 1]."""

    def __init__(self, o: InfoGANOptions):
        super().__init__()
        c, size, _ = o.image_shape
        self.base = (2 * o.ngf, size // 4, size // 4)
        self.fc = nn.Sequential(
            nn.Linear(o.latent_dim, o.fc_dim, bias=False), nn.BatchNorm1d(o.fc_dim), nn.ReLU(),
            nn.Linear(o.fc_dim, math.prod(self.base), bias=False), nn.BatchNorm1d(math.prod(self.base)), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * o.ngf, o.ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(o.ngf), nn.ReLU(),
            nn.ConvTranspose2d(o.ngf, c, 4, 2, 1))
        self.apply(_init)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.fc(latent).reshape(latent.shape[0], *self.base)
        return torch.sigmoid(self.deconv(h))


class InfoDiscriminator(nn.Module):
    """``images -> (real/fake logits (N,), Q's code parameters (N, q_out))``; Q shares the body."""

    def __init__(self, o: InfoGANOptions):
        super().__init__()
        c, size, _ = o.image_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, o.ndf, 4, 2, 1), nn.LeakyReLU(o.leak),
            nn.Conv2d(o.ndf, 2 * o.ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * o.ndf), nn.LeakyReLU(o.leak),
            nn.Flatten(),
            nn.Linear(2 * o.ndf * (size // 4) ** 2, o.fc_dim, bias=False), nn.BatchNorm1d(o.fc_dim),
            nn.LeakyReLU(o.leak))
        self.d_head = nn.Linear(o.fc_dim, 1)
        self.q_head = nn.Sequential(nn.Linear(o.fc_dim, o.q_dim, bias=False), nn.BatchNorm1d(o.q_dim),
                                    nn.LeakyReLU(o.leak), nn.Linear(o.q_dim, o.q_out))
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.d_head(h).squeeze(1), self.q_head(h)


@dataclass
class Latent:
    """One draw of the generator's input: ``noise (N, noise_dim)``, ``categorical (N, n_codes)`` code values and
    ``continuous (N, continuous)``; :meth:`vector` is what the generator takes."""

    noise: torch.Tensor
    categorical: torch.Tensor
    continuous: torch.Tensor
    sizes: tuple[int, ...]

    def vector(self) -> torch.Tensor:
        one_hots = [F.one_hot(self.categorical[:, i], k).to(self.noise.dtype) for i, k in enumerate(self.sizes)]
        return torch.cat([self.noise, *one_hots, self.continuous], dim=1)


def clustering_information(logits: torch.Tensor) -> torch.Tensor:
    """The information a categorical prediction carries about a batch of images, in nats: the entropy of the batch's
    mean prediction minus the mean entropy of the predictions (regularised information maximisation, Krause et al.
    2010; IMSAT's term). It reaches ``log K`` when the ``K`` values are used equally and each image gets one value
    with certainty: a code that merges two digits or splits one between two values scores lower."""
    log_p = F.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    mean = p.mean(0)
    marginal = -(mean * mean.clamp_min(1e-12).log()).sum()
    return marginal + (p * log_p).sum(1).mean()


def random_affine(n: int, size: tuple[int, int], degrees: float, scale: float, shift: float, shear: float = 0.0,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` random affine maps ``(n, 2, 3)`` in :func:`torch.nn.functional.affine_grid`'s convention (output
    coordinates to input coordinates, both in [-1, 1]): a rotation of up to ``degrees`` either way, a zoom by a
    factor within ``1 +- scale``, a shift of up to ``shift`` pixels along each axis and a horizontal shear of up to
    ``shear`` (a row ``y`` moves by ``shear * y``: the slant of handwriting, which turns the vertical strokes and
    leaves the horizontal ones), each drawn uniformly."""
    u = torch.rand(n, 5, device=device) * 2 - 1
    angle, zoom, slant = u[:, 0] * math.radians(degrees), 1 + u[:, 1] * scale, u[:, 4] * shear
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    h, w = size
    tx, ty = u[:, 2] * 2 * shift / w, u[:, 3] * 2 * shift / h  # a pixel is 2 / width of the [-1, 1] range
    # the rotation and zoom after the shear [[1, slant], [0, 1]]
    return torch.stack([torch.stack([cos, cos * slant - sin, tx], 1), torch.stack([sin, sin * slant + cos, ty], 1)], 1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Images ``x (N, C, H, W)`` under the affine maps ``theta (N, 2, 3)``, bilinear, 0 (black) outside."""
    grid = F.affine_grid(theta.float(), list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def consistency(logits: torch.Tensor, moved_logits: torch.Tensor) -> torch.Tensor:
    """Mean ``KL(p || p_moved)`` of two categorical predictions of the same images, ``p`` held as the target (as
    IMSAT and VAT do): it moves the prediction on the moved copy only."""
    target = F.log_softmax(logits.detach().float(), dim=1)
    return (target.exp() * (target - F.log_softmax(moved_logits.float(), dim=1))).sum(1).mean()


def information_terms(q: torch.Tensor, latent: Latent, o: InfoGANOptions) -> dict[str, torch.Tensor]:
    """The mutual-information lower bounds (nats, averaged over the batch) of the categorical and continuous codes
    from Q's output ``q``: ``mi_cat = sum_i (log K_i - CE_i)``, ``mi_cont = sum_j (log 2 - E[-log N(c_j; mu_j,
    std_j)])``, with the cross-entropies ``ce_cat`` and ``ce_cont``."""
    q = q.float()
    out: dict[str, torch.Tensor] = {}
    offset = 0
    ce_cat = q.new_zeros(())
    for i, k in enumerate(o.categorical):
        ce_cat = ce_cat + F.cross_entropy(q[:, offset:offset + k], latent.categorical[:, i])
        offset += k
    out["ce_cat"] = ce_cat
    out["mi_cat"] = sum(math.log(k) for k in o.categorical) - ce_cat
    if o.continuous:
        mean = q[:, offset:offset + o.continuous]
        if o.learn_std:
            log_var = q[:, offset + o.continuous:offset + 2 * o.continuous]
        else:
            log_var = torch.zeros_like(mean)
        nll = 0.5 * (LOG_2PI + log_var + (latent.continuous.float() - mean).square() / log_var.exp())
        out["ce_cont"] = nll.sum(dim=1).mean()
        out["mi_cont"] = o.continuous * math.log(2.0) - out["ce_cont"]
    else:
        out["ce_cont"] = out["mi_cont"] = q.new_zeros(())
    return out


class InfoGAN(GenerativeModel):
    """InfoGAN for :class:`~rlgen.vision.trainer.Trainer` (see the module docstring). ``eval_size`` is the size of
    the evaluation set, so that the unsupervised accuracy is computed once over the whole pass."""

    console_keys = ("d_loss", "g_loss", "mi_cat", "mi_cont", "code_accuracy")
    options_class = InfoGANOptions
    extra_options = (RestartOptions,)
    title = "InfoGAN (Chen et al. 2016; the paper's MNIST model)"

    @classmethod
    def selection_metrics(cls, cfg: Mapping[str, Any]) -> tuple[str, ...]:
        return ("consistency_real", "mi_real") if cfg.get("real_consistency") else ()

    @classmethod
    def selection_score(cls, cfg: Mapping[str, Any], metrics: Mapping[str, float]) -> float:
        """The real-image part of the discriminator's loss, ``real_consistency * consistency_real - real_clustering
        * mi_real``: on MNIST a start whose code gives two digits two values split by style has twice the consistency
        loss of a clean one by its second epoch (benchmarks/README.md)."""
        return (float(cfg["real_consistency"]) * metrics["consistency_real"]
                - float(cfg.get("real_clustering", 0.0)) * metrics["mi_real"])

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> InfoGAN:
        eval_size = len(test) if test is not None and test.labels is not None else None
        return cls(InfoGANOptions.from_config(cfg, data.image_shape), eval_size)

    def report(self, run: RunDir, evaluation: Mapping[str, float]) -> dict[str, Any]:
        """The latent traversal PNGs and the last evaluation's categorical-code error."""
        paths = self.save_traversals(run.path / "samples")
        log.info("latent traversals: %s", ", ".join(str(p) for p in paths))
        if "categorical_error" in self.last_evaluation:
            log.info("categorical code: %.2f%% error on %d test images (best one-to-one matching of codes to "
                     "labels)", 100 * self.last_evaluation["categorical_error"], self.last_evaluation["test_images"])
        return {"traversals": [p.name for p in paths], **self.last_evaluation}

    def __init__(self, options: InfoGANOptions, eval_size: int | None = None):
        super().__init__()
        options.check()
        self.options = options
        self.generator = InfoGenerator(options)
        self.discriminator = InfoDiscriminator(options)
        self.eval_size = eval_size
        self.last_evaluation: dict[str, float] = {}
        self._reset_evaluation()

    def optimizer_groups(self) -> dict[str, Any]:
        # Q and the layers it shares are the discriminator's (the original's d_net variables).
        return {"d": self.discriminator.parameters(),
                "g": {"params": self.generator.parameters(), "lr": self.options.g_lr}}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- latents ---------------------------------------------------------------------------------------------------

    def latent(self, n: int, device: torch.device | None = None) -> Latent:
        """A draw from the prior: ``z, c_cont ~ U(-1, 1)``, each categorical code uniform."""
        o, device = self.options, device or self.device
        noise = torch.rand(n, o.noise_dim, device=device) * 2 - 1
        cat = torch.stack([torch.randint(0, k, (n,), device=device) for k in o.categorical], dim=1) \
            if o.categorical else torch.zeros(n, 0, dtype=torch.long, device=device)
        cont = torch.rand(n, o.continuous, device=device) * 2 - 1
        return Latent(noise, cat, cont, o.categorical)

    def generate(self, latent: Latent) -> torch.Tensor:
        return self.generator(latent.vector())

    def code_predictions(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q's most likely value of each categorical code ``(N, n_codes)`` and its mean of the continuous codes."""
        o, offset, cats = self.options, 0, []
        for k in o.categorical:
            cats.append(q[:, offset:offset + k].argmax(1))
            offset += k
        cat = torch.stack(cats, 1) if cats else q.new_zeros(len(q), 0, dtype=torch.long)
        return cat, q[:, offset:offset + o.continuous].float()

    def q_network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator and Q on ``x`` as they run in training: batch norm with the batch's own statistics.
        In eval mode the running statistics would be used, and they average real and generated batches (the
        discriminator sees both), which on MNIST-size runs costs Q much of its accuracy. A batch of one example
        falls back to the running statistics."""
        if len(x) < 2:
            return self.discriminator(x)
        with batch_statistics(self.discriminator):
            return self.discriminator(x)

    # -- the losses ------------------------------------------------------------------------------------------------

    def info_loss(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``lambda_cat * mi_cat + lambda_cont * mi_cont`` (to be subtracted from both players' losses)."""
        o = self.options
        return o.info_weight * terms["mi_cat"] + o.info_weight_continuous * terms["mi_cont"]

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                           latent: Latent) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        o = self.options
        logits_real, q_real = self.discriminator(real)
        logits_fake, q = self.discriminator(fake)
        gan = bce(logits_real, torch.ones_like(logits_real)) + bce(logits_fake, torch.zeros_like(logits_fake))
        terms = information_terms(q, latent, o)
        cat, _ = self.code_predictions(q.detach())
        accuracy = (cat == latent.categorical).float().mean() if o.categorical else q.new_zeros(())
        loss = gan - self.info_loss(terms)
        metrics = {"d_gan_loss": gan.detach(), "mi_cat": terms["mi_cat"].detach(), "mi_cont": terms["mi_cont"].detach(),
                   "code_accuracy": accuracy, "d_real": torch.sigmoid(logits_real.detach().float()).mean(),
                   "d_fake": torch.sigmoid(logits_fake.detach().float()).mean()}
        if o.categorical:  # how Q's first code clusters the real images (logged; trained on with real_clustering)
            k = o.categorical[0]
            mi_real = clustering_information(q_real[:, :k])
            if o.real_clustering:
                loss = loss - o.real_clustering * mi_real
            metrics["mi_real"] = mi_real.detach()
            if o.real_consistency:  # a digit moved a little is the same digit: its code should not change
                theta = random_affine(len(real), real.shape[-2:], **REAL_AFFINE, device=real.device)
                _, q_moved = self.discriminator(warp(real, theta))
                kl = consistency(q_real[:, :k], q_moved[:, :k])
                loss = loss + o.real_consistency * kl
                metrics["consistency_real"] = kl.detach()
        return loss, metrics

    def generator_loss(self, fake: torch.Tensor, latent: Latent) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, q = self.discriminator(fake)
        gan = bce(logits, torch.ones_like(logits))
        terms = information_terms(q, latent, self.options)
        return gan - self.info_loss(terms), {"g_gan_loss": gan.detach()}

    # -- the trainer's interface -----------------------------------------------------------------------------------

    def training_step(self, batch: Batch, opt: Optimizers) -> dict[str, torch.Tensor]:
        real = batch.x
        latent = self.latent(len(real), real.device)
        fake = self.generate(latent)
        d_loss, metrics = self.discriminator_loss(real, fake.detach(), latent)
        opt.step("d", d_loss)
        with frozen(self.discriminator):
            g_loss, g_metrics = self.generator_loss(fake, latent)
        opt.step("g", g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **metrics, **g_metrics}

    @torch.no_grad()
    def recover_codes(self, n: int) -> dict[str, float]:
        """How well Q recovers the codes of ``n`` fresh generated samples (in the current mode): the share of
        categorical codes recovered and the mean squared error of the continuous ones (chance: ``1 - 1/K`` error,
        MSE 1/3 when predicting 0)."""
        latent = self.latent(n)
        _, q = self.q_network(self.generate(latent))
        cat, cont = self.code_predictions(q)
        out = {}
        if self.options.categorical:
            out["code_accuracy"] = float((cat == latent.categorical).float().mean())
        if self.options.continuous:
            out["continuous_mse"] = float((cont - latent.continuous).square().mean())
        return out

    def _reset_evaluation(self) -> None:
        k = self.options.categorical[0] if self.options.categorical else 0
        self._eval: dict[str, Any] = {"confusion": None, "seen": 0, "codes": k}

    def train(self, mode: bool = True) -> InfoGAN:
        if not mode:  # the trainer switches to eval mode before each evaluation pass: start a new count
            self._reset_evaluation()
        return super().train(mode)

    def evaluation_step(self, batch: Batch) -> dict[str, float]:
        """Code recovery on generated samples (every batch) and the unsupervised accuracy of the first categorical
        code on the evaluation set's labels: counted over the pass and returned once, with its last batch, when
        ``eval_size`` is known; per batch otherwise."""
        out = self.recover_codes(len(batch))
        if batch.y is None or not self.options.categorical:
            return out
        _, q = self.q_network(batch.x)
        confusion = confusion_matrix(self.code_predictions(q)[0][:, 0], batch.y, n_predicted=self._eval["codes"])
        if self.eval_size is None:
            accuracy = matched_accuracy(confusion)[0]
            return {**out, "unsupervised_accuracy": accuracy, "categorical_error": 1.0 - accuracy}
        previous = self._eval["confusion"]
        if previous is not None:  # the labels seen so far may cover fewer classes: pad to the wider matrix
            width = max(previous.shape[1], confusion.shape[1])
            confusion = (np.pad(confusion, ((0, 0), (0, width - confusion.shape[1])))
                         + np.pad(previous, ((0, 0), (0, width - previous.shape[1]))))
        self._eval["confusion"] = confusion
        self._eval["seen"] += len(batch)
        if self._eval["seen"] < self.eval_size:
            return out
        accuracy, assignment = matched_accuracy(confusion)
        # How the code is used: images per code value and label (rows: codes), and the label each value is
        # matched to -- where a digit is split between two values or two digits share one (issue #21's study).
        self.last_evaluation = {"unsupervised_accuracy": accuracy, "categorical_error": 1.0 - accuracy,
                                "test_images": int(self._eval["seen"]), "code_label_counts": confusion.tolist(),
                                "code_to_label": {int(c): int(label) for c, label in assignment.items()}}
        self._reset_evaluation()
        return {**out, "unsupervised_accuracy": accuracy, "categorical_error": 1.0 - accuracy}

    # -- pictures --------------------------------------------------------------------------------------------------

    def _grid_latent(self, rows: int, cols: int) -> Latent:
        """``rows`` independent draws, each repeated ``cols`` times (rows of a grid)."""
        base = self.latent(rows)
        rep = lambda t: t.repeat_interleave(cols, dim=0)
        return Latent(rep(base.noise), rep(base.categorical), rep(base.continuous), base.sizes)

    def traversal(self, code: str = "categorical", index: int = 0, rows: int = 10, steps: int = 10,
                  span: float = 2.0) -> tuple[torch.Tensor, int]:
        """Images of a latent traversal and the images per row: along each row code ``index`` of the given kind
        (``categorical``: its K values; ``continuous``: ``steps`` values from ``-span`` to ``span``) changes while
        noise and the other codes stay fixed; each row is another draw (for continuous codes row ``r`` has the
        first categorical code set to ``r mod K``, so every category shows)."""
        o = self.options
        if code == "categorical":
            if not 0 <= index < len(o.categorical):
                raise ValueError(f"no categorical code {index}; the model has {len(o.categorical)}")
            cols = o.categorical[index]
            latent = self._grid_latent(rows, cols)
            latent.categorical[:, index] = torch.arange(cols, device=self.device).repeat(rows)
        elif code == "continuous":
            if not 0 <= index < o.continuous:
                raise ValueError(f"no continuous code {index}; the model has {o.continuous}")
            cols = steps
            latent = self._grid_latent(rows, cols)
            latent.continuous[:, index] = torch.linspace(-span, span, steps, device=self.device).repeat(rows)
            if o.categorical:
                latent.categorical[:, 0] = (torch.arange(rows, device=self.device) % o.categorical[0]
                                            ).repeat_interleave(cols)
        else:
            raise ValueError(f"code must be 'categorical' or 'continuous', not {code!r}")
        return self.generate(latent).float(), cols

    @torch.no_grad()
    def save_traversals(self, folder: str | os.PathLike, rows: int = 10, steps: int = 10,
                        span: float = 2.0) -> list[Path]:
        """One PNG per code: ``traversal_categorical_<i>.png`` and ``traversal_continuous_<j>.png``."""
        was_training = self.training
        self.eval()
        paths = []
        try:
            for kind, count in (("categorical", len(self.options.categorical)),
                                ("continuous", self.options.continuous)):
                for i in range(count):
                    images, cols = self.traversal(kind, i, rows, steps, span)
                    paths.append(save_image_grid(images.clamp(0, 1), Path(folder) / f"traversal_{kind}_{i}.png",
                                                 nrow=cols))
        finally:
            self.train(was_training)
        return paths

    def sample(self, n: int) -> torch.Tensor:
        """``n`` samples laid out for the trainer's square grid (``ceil(sqrt(n))`` per row): along each row the
        first categorical code takes its values in turn, noise and other codes fixed; rows are new draws."""
        if not self.options.categorical:
            return self.generate(self.latent(n)).float()
        cols = math.ceil(math.sqrt(n))
        latent = self._grid_latent(math.ceil(n / cols), cols)
        latent.categorical[:, 0] = torch.arange(latent.noise.shape[0], device=self.device) % cols \
            % self.options.categorical[0]
        return self.generate(latent).float()[:n]

