"""DCGAN (Radford, Metz & Chintala 2016) for 28x28 and 32x32 images with 1 or 3 channels, and the GAN game with the
Improved-GAN techniques (Salimans et al. 2016) and friends switched on by :class:`GANOptions`.

Architecture (the DCGAN guidelines): strided (transposed) convolutions instead of pooling, batch norm in both
networks except the generator's output and the discriminator's input layer, ReLU in the generator with a tanh
output, LeakyReLU(0.2) in the discriminator, no hidden fully connected layers (the discriminator's last block is
flattened into one logit), weights ~ N(0, 0.02), Adam(lr 2e-4, beta1 0.5). Images are scaled to [-1, 1].

* 32x32: z -> 4x4 (4*ngf) -> 8x8 (2*ngf) -> 16x16 (ngf) -> 32x32 (C); discriminator mirrored (16, 8, 4).
* 28x28: z -> 3x3 (4*ngf) -> 7x7 (2*ngf) -> 14x14 (ngf) -> 28x28 (C); discriminator mirrored (14, 7, 3).

The losses are the standard ones: the discriminator minimises binary cross-entropy on real (target 1) and fake
(target 0) images, the generator the non-saturating ``-log D(G(z))``. Noise ``z ~ N(0, I)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.common.errors import UserError
from rlgen.common.options import option
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset
from rlgen.vision.gan.feature_matching import feature_matching_loss
from rlgen.vision.gan.historical_averaging import HistoricalAverage
from rlgen.vision.gan.labels import discriminator_targets
from rlgen.vision.gan.minibatch_discrimination import MinibatchDiscrimination
from rlgen.vision.gan.minibatch_std import MinibatchStdDev
from rlgen.vision.gan.unrolled import call_with, unrolled_parameters
from rlgen.vision.gan.virtual_batch_norm import VirtualBatchNorm
from rlgen.vision.sample_scores import SampleScoreOptions
from rlgen.vision.trainer import GenerativeModel, Optimizers

SIZES = (28, 32)


@dataclass
class GANOptions:
    """The model's options; every technique is off by default (plain DCGAN)."""

    image_shape: tuple[int, int, int] = (1, 28, 28)
    z_dim: int = option(100, "noise dimension", minimum=1)
    ngf: int = option(64, "generator width", minimum=1)
    ndf: int = option(64, "discriminator width", minimum=1)
    feature_matching: bool = option(False, "generator matches the mean discriminator features of real data")
    minibatch_discrimination: int = option(0, "minibatch discrimination layer with KERNELS kernels (100 when no "
                                              "number is given; 0 is off; the original uses 100)", minimum=0,
                                           metavar="KERNELS", const=100)
    minibatch_kernel_dim: int = 5  # C, as in the original
    historical_averaging: float = option(0.0, "penalty WEIGHT * ||theta - mean of past theta||^2 on both players",
                                         minimum=0, metavar="WEIGHT")
    label_smoothing: float = option(0.0, "one-sided: real targets 1 - S, fake targets stay 0 (the paper: 0.1)",
                                    minimum=0, maximum=1, metavar="S")
    label_noise: float = option(0.0, "flip each discriminator label with probability P", minimum=0, maximum=1,
                                metavar="P")
    virtual_batch_norm: bool = option(False, "virtual batch norm (fixed reference batch) instead of batch norm in "
                                             "the generator")
    vbn_reference_size: int = 64
    minibatch_std: bool = option(False, "minibatch standard-deviation feature map in the discriminator")
    minibatch_std_group: int = 4
    unroll_steps: int = option(0, "unrolled GAN: the generator trains against the discriminator after K more steps",
                               minimum=0, metavar="K")
    # SGD step; at DCGAN init 5 such steps lower the D loss about as much as 5 Adam steps
    unroll_lr: float = option(0.01, "step size of the unrolled discriminator updates", minimum=0)
    unroll_second_order: bool = True

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], image_shape: tuple[int, int, int]) -> GANOptions:
        return cls(image_shape=tuple(image_shape), **{f.name: cfg[f.name] for f in fields(cls)  # type: ignore[arg-type]
                                                       if f.name in cfg and f.name != "image_shape"})

    def check(self) -> None:
        c, h, w = self.image_shape
        if c not in (1, 3) or h != w or h not in SIZES:
            raise UserError(f"DCGAN handles 1- or 3-channel images of {' or '.join(f'{s}x{s}' for s in SIZES)}, "
                            f"not {c}x{h}x{w}")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.label_noise <= 1:
            raise UserError("--label-smoothing must be in [0, 1) and --label-noise in [0, 1]")
        for name in ("z_dim", "ngf", "ndf", "minibatch_kernel_dim", "vbn_reference_size", "minibatch_std_group"):
            if int(getattr(self, name)) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        if self.minibatch_discrimination < 0 or self.unroll_steps < 0 or self.historical_averaging < 0:
            raise UserError("--minibatch-discrimination, --unroll-steps and --historical-averaging must be >= 0")


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv and linear weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """``z (N, z_dim) -> images (N, C, S, S)`` in [-1, 1]."""

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int = 100, ngf: int = 64, vbn_reference: int = 0):
        super().__init__()
        c, size, _ = image_shape
        self.z_dim = z_dim
        if size == 32:
            specs = [(z_dim, 4 * ngf, 4, 1, 0), (4 * ngf, 2 * ngf, 4, 2, 1), (2 * ngf, ngf, 4, 2, 1), (ngf, c, 4, 2, 1)]
        else:
            specs = [(z_dim, 4 * ngf, 3, 1, 0), (4 * ngf, 2 * ngf, 3, 2, 0), (2 * ngf, ngf, 4, 2, 1), (ngf, c, 4, 2, 1)]
        last = len(specs) - 1
        self.convs = nn.ModuleList(nn.ConvTranspose2d(i, o, k, s, p, bias=(n == last))
                                   for n, (i, o, k, s, p) in enumerate(specs))
        self.vbn = vbn_reference > 0
        norm: Callable[[int], nn.Module] = VirtualBatchNorm if self.vbn else nn.BatchNorm2d
        self.norms = nn.ModuleList(norm(o) for (_, o, *_rest) in specs[:-1])
        self.apply(dcgan_init)
        if self.vbn:
            # The reference noise is drawn once and saved with the model, so a resumed run keeps it.
            self.register_buffer("z_ref", torch.randn(vbn_reference, z_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.reshape(z.shape[0], self.z_dim, 1, 1)
        n_ref = 0
        if self.vbn:
            n_ref = self.z_ref.shape[0]
            h = torch.cat([self.z_ref.to(h.dtype).reshape(n_ref, self.z_dim, 1, 1), h])
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)
            h = F.relu(norm(h, n_ref) if self.vbn else norm(h))
        return torch.tanh(self.convs[-1](h))[n_ref:]


class Discriminator(nn.Module):
    """``images (N, C, S, S) in [-1, 1] -> logits (N,)``; ``with_features=True`` also returns the flattened output of
    the last convolutional block (the features that feature matching compares)."""

    def __init__(self, image_shape: tuple[int, int, int], ndf: int = 64, minibatch_std: bool = False,
                 minibatch_std_group: int = 4, minibatch_kernels: int = 0, minibatch_kernel_dim: int = 5):
        super().__init__()
        c, size, _ = image_shape
        last_kernel, last_pad, final = (4, 1, 4) if size == 32 else (3, 0, 3)
        self.body = nn.Sequential(
            nn.Conv2d(c, ndf, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ndf, 4 * ndf, last_kernel, 2, last_pad, bias=False), nn.BatchNorm2d(4 * ndf),
            nn.LeakyReLU(0.2),
        )
        self.minibatch_std = MinibatchStdDev(minibatch_std_group) if minibatch_std else None
        features = (4 * ndf + (1 if minibatch_std else 0)) * final * final
        self.minibatch_discrimination = (MinibatchDiscrimination(features, minibatch_kernels, minibatch_kernel_dim)
                                         if minibatch_kernels > 0 else None)
        self.head = nn.Linear(features + minibatch_kernels, 1)
        for m in (self.body, self.head):
            m.apply(dcgan_init)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        features = h.flatten(1)
        if self.minibatch_std is not None:
            h = self.minibatch_std(h)
        h = h.flatten(1)
        if self.minibatch_discrimination is not None:
            h = self.minibatch_discrimination(h)
        logits = self.head(h).squeeze(1)
        return (logits, features) if with_features else logits


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``module`` (the generator's step needs gradients through the discriminator,
    not of it)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


class DCGAN(GenerativeModel):
    """The GAN game for :class:`~rlgen.vision.trainer.Trainer`: one discriminator step then one generator step per
    batch, with the techniques of :class:`GANOptions`."""

    console_keys = ("d_loss", "g_loss", "d_real", "d_fake")
    evaluated = False  # scored once, after training, by its samples (score_samples)
    options_class = GANOptions
    extra_options = (SampleScoreOptions,)
    title = "DCGAN with the Improved-GAN techniques (each technique off unless given)"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> DCGAN:
        return cls(GANOptions.from_config(cfg, data.image_shape))

    def report(self, run: RunDir, evaluation: Mapping[str, float]) -> dict[str, Any]:
        from rlgen.vision.sample_scores import score_samples

        return score_samples(self, run.config)

    def __init__(self, options: GANOptions):
        super().__init__()
        options.check()
        self.options = options
        o = options
        self.generator = Generator(o.image_shape, o.z_dim, o.ngf, o.vbn_reference_size if o.virtual_batch_norm else 0)
        self.discriminator = Discriminator(o.image_shape, o.ndf, o.minibatch_std, o.minibatch_std_group,
                                           o.minibatch_discrimination, o.minibatch_kernel_dim)
        self.d_history = self.g_history = None
        if o.historical_averaging > 0:
            self.d_history = HistoricalAverage(self.discriminator)
            self.g_history = HistoricalAverage(self.generator)

    def optimizer_groups(self) -> dict[str, Any]:
        return {"d": self.discriminator.parameters(), "g": self.generator.parameters()}

    # -- the pieces (public so that each technique can be tested on its own) --------------------------------------

    def noise(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(n, self.options.z_dim, device=device or next(self.parameters()).device)

    def targets(self, n_real: int, n_fake: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return discriminator_targets(n_real, n_fake, self.options.label_smoothing, self.options.label_noise, device)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                           targets: tuple[torch.Tensor, torch.Tensor] | None = None,
                           d: Callable[..., Any] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BCE of real and fake images (both in [-1, 1]) against their targets; ``d`` replaces the discriminator
        (the unrolled one). Real and fake batches go through separately, so minibatch features compare fakes
        with fakes, as in the original code."""
        d = d or self.discriminator
        t_real, t_fake = targets if targets is not None else self.targets(len(real), len(fake), real.device)
        logits_real, logits_fake = d(real), d(fake)
        loss = bce(logits_real, t_real) + bce(logits_fake, t_fake)
        return loss, {"d_real": torch.sigmoid(logits_real.detach().float()).mean(),
                      "d_fake": torch.sigmoid(logits_fake.detach().float()).mean()}

    def generator_loss(self, real: torch.Tensor, fake: torch.Tensor, d: Callable[..., Any] | None = None) -> torch.Tensor:
        """Non-saturating ``-log D(G(z))``, or with feature matching the distance of mean features."""
        d = d or self.discriminator
        if self.options.feature_matching:
            with torch.no_grad():
                _, real_features = d(real, with_features=True)
            _, fake_features = d(fake, with_features=True)
            return feature_matching_loss(real_features, fake_features)
        logits = d(fake)
        return bce(logits, torch.ones_like(logits, dtype=torch.float32))

    def unrolled_discriminator(self, real: torch.Tensor, fake: torch.Tensor,
                               targets: tuple[torch.Tensor, torch.Tensor]) -> Callable[..., Any]:
        """The discriminator after ``unroll_steps`` gradient steps, as a function (see :mod:`.unrolled`)."""
        o = self.options
        fake_in = fake if o.unroll_second_order else fake.detach()
        params, buffers = unrolled_parameters(
            self.discriminator, lambda d: self.discriminator_loss(real, fake_in, targets, d)[0],
            o.unroll_steps, o.unroll_lr, o.unroll_second_order)
        return call_with(self.discriminator, params, buffers)

    # -- the trainer's interface ----------------------------------------------------------------------------------

    def training_step(self, batch: Batch, opt: Optimizers) -> dict[str, torch.Tensor]:
        o = self.options
        real = batch.x * 2.0 - 1.0
        fake = self.generator(self.noise(len(real), real.device))
        targets = self.targets(len(real), len(fake), real.device)

        d_loss, metrics = self.discriminator_loss(real, fake.detach(), targets)
        if self.d_history is not None:
            d_loss = d_loss + o.historical_averaging * self.d_history.penalty()
        opt.step("d", d_loss)
        if self.d_history is not None:
            self.d_history.update()

        if o.unroll_steps > 0:
            g_loss = self.generator_loss(real, fake, self.unrolled_discriminator(real, fake, targets))
        else:
            with frozen(self.discriminator):
                g_loss = self.generator_loss(real, fake)
        if self.g_history is not None:
            g_loss = g_loss + o.historical_averaging * self.g_history.penalty()
        opt.step("g", g_loss)
        if self.g_history is not None:
            self.g_history.update()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **metrics}

    def sample(self, n: int) -> torch.Tensor:
        return (self.generator(self.noise(n)).float() + 1.0) / 2.0
