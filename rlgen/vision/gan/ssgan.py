"""Semi-supervised GAN (Salimans et al. 2016, section 5) with the permutation-invariant MNIST model of
openai/improved-gan (``mnist_svhn_cifar10/train_mnist_feature_matching.py`` and ``nn.py``).

The formulation
    The discriminator is a K-class classifier with logits ``l_1..l_K``; "fake" is an implicit class K+1 with logit 0,
    so ``D(x) = Z(x) / (Z(x) + 1)`` with ``Z(x) = sum_k exp(l_k(x))``: the real/fake logit is ``lse(x) =
    logsumexp_k l_k(x)`` (:func:`real_fake_logit`). The losses, as in the original (:func:`ssgan_losses`)::

        loss_lab = -mean(l_y(x_lab)) + mean(lse(x_lab))                       (cross-entropy on labelled data)
        loss_unl = -0.5 mean(lse(x_unl)) + 0.5 mean(softplus(lse(x_unl))) + 0.5 mean(softplus(lse(G(z))))

    (``loss_unl`` is ``0.5 * (BCE(lse(x_unl), real) + BCE(lse(G(z)), fake))``). The discriminator minimises
    ``loss_lab + unlabeled_weight * loss_unl``; the generator is trained by feature matching
    (:func:`~rlgen.vision.gan.feature_matching.feature_matching_loss`) on the last hidden layer of the discriminator.

The MNIST model
    * Generator: ``z ~ U(0, 1)^100`` -> dense 500 -> batch norm (no scale, learnt shift) -> softplus -> dense 500 ->
      batch norm -> softplus -> weight-normalised dense 784 with a learnt scale per unit -> sigmoid.
    * Discriminator: Gaussian noise (std 0.3 on the input, 0.5 after every hidden layer), weight-normalised dense
      layers 1000-500-250-250-250 with ReLU, and a weight-normalised dense layer to the 10 class logits (whose scale
      is trained; the hidden layers' scales are fixed after the data-dependent initialisation).
    * :class:`WeightNormDense`: ``W[j] = scale[j] * theta[j] / ||theta[j]||``, ``theta ~ N(0, 0.1)``, and the
      original's data-dependent initialisation (:meth:`SSGAN.initialize`, on 500 training images): each layer's
      pre-activations are standardised on that batch by setting ``scale = 1 / std`` and ``bias = -mean / std``.
    * Adam(lr 0.003, beta1 0.5) for both players; the learning rate falls linearly to 0 over the last third of
      the epochs (the older improved-gan MNIST script: the last 100 of 300 epochs; the trainer's
      ``lr_decay_fraction``, 1/3 in the ssgan section of ``rlgen/configs/vision.yaml``).
      The original's Adam (``nn.adam_updates``) divides by ``sqrt(v + 1e-8)``, not ``sqrt(v) + 1e-8``: parameters
      with gradients below about 1e-4 (most of the generator's hidden weights) take proportionally smaller steps.
      ``adam_eps = 1e-4`` in PyTorch's Adam reproduces that within a factor of sqrt(2).
    * Each step draws ``batch_size`` labelled examples from a stream of random permutations of the labelled subset
      (with 100 labels and batches of 100, every labelled example in every step, as in the original) while the
      trainer supplies shuffled unlabelled batches of the whole training set for the discriminator step.
    * The generator step, as in the original's ``train_batch_gen``, draws fresh noise (``gen_dat`` is a new sample
      in each Theano call) and matches the features of a second, independently shuffled stream of the unlabelled
      data (``trainx_unl2``), not the images of the discriminator step.
    * Test error: the arg-max of the class logits (no noise) over the full test set, with the discriminator as
      trained (``test_error``) and with its exponential moving average (``test_error_ema``, rate 1e-4, as the
      original's evaluation does).

Deviations from the original, all small: the moving average starts at 0 like the original's but is divided by
``1 - (1 - rate)^t`` (bias correction), so short runs are not evaluated with weights shrunk towards 0; the second
unlabelled stream runs on across epochs instead of restarting with each (no image is left out when the training set
is not a multiple of the batch size); without ``unlabelled_x`` (unit tests, other callers) the generator matches
the features of the discriminator step's batch; the output layer of the generator is this module's
weight-normalised layer (Glorot-initialised direction, learnt scale, eps 1e-6 as in ``nn.l2normalize``).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.common.errors import UserError
from rlgen.common.options import option
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, ImageDataset
from rlgen.vision.gan.dcgan import frozen
from rlgen.vision.gan.feature_matching import feature_matching_loss
from rlgen.vision.trainer import GenerativeModel, Optimizers

# ----------------------------------------------------------------------------------------------------------------
# Layers


log = logging.getLogger("rlgen")


class GaussianNoise(nn.Module):
    """Adds ``N(0, std^2)`` noise in training mode; the identity in eval mode (the original's ``deterministic``)."""

    def __init__(self, std: float):
        super().__init__()
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return torch.randn_like(x).mul_(self.std).add_(x)  # in place on the fresh noise: one tensor, not three

    def extra_repr(self) -> str:
        return f"std={self.std}"


class WeightNormDense(nn.Module):
    """A dense layer with weight normalisation (Salimans & Kingma 2016), as ``nn.DenseLayer`` of improved-gan:
    ``y = act(x W^T + b)`` with ``W[j] = scale[j] * theta[j] / ||theta[j]||``.

    ``train_scale=False`` keeps ``scale`` fixed by gradient descent (only the data-dependent initialisation sets
    it); ``init_std=None`` initialises ``theta`` Glorot-uniform instead of ``N(0, init_std^2)``; ``eps`` is added to
    the squared norm (``nn.l2normalize`` uses 1e-6, ``nn.DenseLayer`` nothing)."""

    def __init__(self, in_features: int, out_features: int, activation: str | None = "relu",
                 train_scale: bool = False, init_std: float | None = 0.1, eps: float = 0.0):
        super().__init__()
        if activation not in (None, "relu", "sigmoid"):
            raise ValueError(f"unknown activation {activation!r}")
        self.activation, self.eps = activation, eps
        self.theta = nn.Parameter(torch.empty(out_features, in_features))
        if init_std is None:
            nn.init.xavier_uniform_(self.theta)
        else:
            nn.init.normal_(self.theta, 0.0, init_std)
        self.scale = nn.Parameter(torch.ones(out_features), requires_grad=train_scale)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def unit_scale(self) -> torch.Tensor:
        """``scale / ||theta[j]||`` per output unit, in fp32."""
        # vector_norm, not theta.square().sum(): its backward is one pass over theta instead of three (theta is
        # up to 1000 x 784 and memory-bound on a CPU).
        norm = torch.linalg.vector_norm(self.theta, dim=1)
        if self.eps:
            norm = (norm.square() + self.eps).sqrt()
        return self.scale / norm

    @property
    def weight(self) -> torch.Tensor:
        return self.theta * self.unit_scale()[:, None]

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        # x W^T = (x theta^T) * scale / ||theta||: the normalisation scales the (batch, out) output instead of
        # building W, an (out, in) matrix, and its gradient at every call (the discriminator's first W is 1000 x
        # 784), and theta stays a leaf whose bf16 copy autocast makes once per step.
        return torch.addcmul(self.bias, F.linear(x.flatten(1), self.theta), self.unit_scale())

    def _activate(self, a: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return F.relu(a)
        if self.activation == "sigmoid":
            return torch.sigmoid(a)
        return a

    def forward(self, x: torch.Tensor, init: bool = False) -> torch.Tensor:
        if init:
            return self._activate(self.initialize(x))
        return self._activate(self.pre_activation(x))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> torch.Tensor:
        """Data-dependent initialisation on the batch ``x``: set ``scale`` and ``bias`` so that the pre-activations
        have mean 0 and standard deviation 1 over the batch, and return them."""
        a = F.linear(x.flatten(1), self.weight)
        mean = a.mean(dim=0)
        std = (a - mean).square().mean(dim=0).sqrt().clamp_min(1e-8)
        self.scale.div_(std)
        self.bias.copy_(-mean / std)
        return (a - mean) / std

    def extra_repr(self) -> str:
        return (f"in_features={self.theta.shape[1]}, out_features={self.theta.shape[0]}, "
                f"activation={self.activation}, train_scale={self.scale.requires_grad}")


class ShiftOnlyBatchNorm(nn.BatchNorm1d):
    """Batch norm without a learnt scale and with a learnt shift (``nn.batch_norm(..., g=None)`` of improved-gan):
    eps 1e-6, running statistics with momentum 0.1."""

    def __init__(self, num_features: int):
        super().__init__(num_features, eps=1e-6, momentum=0.1, affine=False)
        self.shift = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.shift


# ----------------------------------------------------------------------------------------------------------------
# The networks


class SSGenerator(nn.Module):
    """``z (N, z_dim) ~ U(0, 1) -> images (N, C, H, W)`` in [0, 1]."""

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int = 100, hidden: Sequence[int] = (500, 500)):
        super().__init__()
        self.image_shape, self.z_dim = tuple(image_shape), z_dim
        sizes = [z_dim, *hidden]
        self.linears = nn.ModuleList(nn.Linear(i, o, bias=False) for i, o in itertools.pairwise(sizes))
        for linear in self.linears:
            nn.init.xavier_uniform_(linear.weight)  # lasagne's default
        self.norms = nn.ModuleList(ShiftOnlyBatchNorm(o) for o in hidden)
        self.out = WeightNormDense(sizes[-1], math.prod(image_shape), "sigmoid", train_scale=True, init_std=None,
                                   eps=1e-6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for linear, norm in zip(self.linears, self.norms):
            h = F.softplus(norm(linear(h)))
        return self.out(h).reshape(z.shape[0], *self.image_shape)


class SSDiscriminator(nn.Module):
    """``images -> class logits (N, K)``; ``with_features=True`` also returns the last hidden layer (before its
    noise), which feature matching compares. Permutation-invariant: the image is flattened."""

    def __init__(self, in_features: int, num_classes: int = 10, hidden: Sequence[int] = (1000, 500, 250, 250, 250),
                 input_noise: float = 0.3, hidden_noise: float = 0.5):
        super().__init__()
        if not hidden:
            raise ValueError("the discriminator needs at least one hidden layer (feature matching uses the last)")
        sizes = [in_features, *hidden]
        self.input_noise = GaussianNoise(input_noise)
        self.hidden = nn.ModuleList(WeightNormDense(i, o) for i, o in itertools.pairwise(sizes))
        self.noises = nn.ModuleList(GaussianNoise(hidden_noise) for _ in hidden)
        self.out = WeightNormDense(sizes[-1], num_classes, activation=None, train_scale=True)

    def forward(self, x: torch.Tensor, with_features: bool = False,
                init: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.input_noise(x.flatten(1))
        features = h
        for dense, noise in zip(self.hidden, self.noises):
            features = dense(h, init=init)
            h = noise(features)
        logits = self.out(h, init=init)
        return (logits, features) if with_features else logits


# ----------------------------------------------------------------------------------------------------------------
# The losses and the labelled subset


def real_fake_logit(class_logits: torch.Tensor) -> torch.Tensor:
    """``logsumexp_k l_k``: the logit of ``D(x) = Z / (Z + 1)``, the fake class having logit 0."""
    return torch.logsumexp(class_logits.float(), dim=1)


def ssgan_losses(logits_lab: torch.Tensor, labels: torch.Tensor, logits_unl: torch.Tensor,
                 logits_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss_lab, loss_unl)`` of the original (see the module docstring)."""
    logits_lab = logits_lab.float()
    loss_lab = -logits_lab.gather(1, labels[:, None]).mean() + real_fake_logit(logits_lab).mean()
    lse_unl, lse_fake = real_fake_logit(logits_unl), real_fake_logit(logits_fake)
    loss_unl = -0.5 * lse_unl.mean() + 0.5 * F.softplus(lse_unl).mean() + 0.5 * F.softplus(lse_fake).mean()
    return loss_lab, loss_unl


def class_balanced_subset(labels: np.ndarray, count: int, seed: int = 0, num_classes: int | None = None) -> np.ndarray:
    """Indices of ``count`` examples, ``count / K`` of each class, chosen by ``seed`` (as the original: permute
    the training set with the data seed, then take the first examples of each class). Sorted by class."""
    labels = np.asarray(labels)
    k = num_classes or int(labels.max()) + 1
    if count <= 0 or count % k:
        raise UserError(f"--labels must be a positive multiple of the number of classes ({k}), got {count}")
    per_class = count // k
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = []
    for c in range(k):
        of_class = order[labels[order] == c]
        if len(of_class) < per_class:
            raise UserError(f"--labels {count} needs {per_class} examples of class {c}, the training data has "
                            f"{len(of_class)}; lower --labels")
        chosen.append(of_class[:per_class])
    return np.concatenate(chosen).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# The model


@dataclass
class SSGANOptions:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    z_dim: int = option(100, "noise dimension", minimum=1)
    d_hidden: tuple[int, ...] = option((1000, 500, 250, 250, 250), "discriminator hidden layers", minimum=1,
                                       metavar="UNITS")
    g_hidden: tuple[int, ...] = option((500, 500), "generator hidden layers", minimum=1, metavar="UNITS",
                                       optional_list=True)
    input_noise: float = option(0.3, "Gaussian noise on the discriminator's input", minimum=0, metavar="STD")
    hidden_noise: float = option(0.5, "Gaussian noise after each hidden layer", minimum=0, metavar="STD")
    unlabeled_weight: float = option(1.0, "weight of the unlabelled (real/fake) loss", minimum=0)
    ema: float = option(1e-4, "moving-average rate of the discriminator weights behind test_error_ema (0: off)",
                        minimum=0, maximum=1, metavar="RATE")
    adam_eps: float = option(1e-4, "Adam's epsilon (1e-4 mimics the original's sqrt(v + 1e-8))", minimum=0,
                             metavar="EPS")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], image_shape: tuple[int, int, int], num_classes: int) -> SSGANOptions:
        values = {f.name: cfg[f.name] for f in fields(cls) if f.name in cfg}
        for key in ("d_hidden", "g_hidden"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        values.update(image_shape=tuple(image_shape), num_classes=int(num_classes))
        return cls(**values)

    def check(self) -> None:
        if self.num_classes < 2:
            raise UserError(f"a semi-supervised GAN needs at least 2 classes, the labels have {self.num_classes}")
        if not self.d_hidden or min(self.d_hidden) <= 0 or (self.g_hidden and min(self.g_hidden) <= 0):
            raise UserError("--d-hidden needs at least one layer, and every layer size must be positive")
        if self.z_dim <= 0 or min(self.input_noise, self.hidden_noise, self.unlabeled_weight, self.ema) < 0:
            raise UserError("--z-dim must be positive; noise levels, --unlabeled-weight and --ema must be >= 0")
        if self.ema >= 1 or self.adam_eps <= 0:
            raise UserError("--ema must be in [0, 1) and --adam-eps positive")


@dataclass
class LabelledSubset:
    """Which training images keep their labels (and seed the data-dependent initialisation)."""

    labels: int = option(100, "labelled training examples, the same number of each class", minimum=1, metavar="N")
    labels_seed: int | None = option(None, "seed that draws the labelled subset and the initialisation batch "
                                     "(default: --seed)", metavar="SEED")
    init_size: int = option(500, "training images for the data-dependent initialisation (0: none)", minimum=0,
                            metavar="N")


class SSGAN(GenerativeModel):
    """The semi-supervised GAN for :class:`~rlgen.vision.trainer.Trainer`. ``labelled_x`` (uint8 or floats in
    [0, 1]) and ``labelled_y`` are the labelled subset; ``eval_size`` is the size of the evaluation set, so that
    the test error is accumulated over the whole pass and reported once, exactly (see :meth:`evaluation_step`);
    ``unlabelled_x`` (the whole training set, uint8 or floats in [0, 1]) feeds the generator's feature-matching
    target from its own shuffled stream, as the original's ``trainx_unl2``."""

    console_keys = ("loss_lab", "loss_unl", "loss_gen", "train_error")
    options_class = SSGANOptions
    extra_options = (LabelledSubset,)
    title = "semi-supervised GAN (Salimans et al. 2016; the improved-gan MNIST model)"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> SSGAN:
        """The labelled subset is ``labels`` images, as many of each class, drawn with ``labels_seed`` (default:
        the run's seed), which also draws the ``init_size`` images of the data-dependent initialisation."""
        if data.labels is None:
            raise UserError(f"ssgan needs labelled training data; {cfg['dataset']} has no labels (an .npz needs y "
                            "or y_train)")
        seed = cfg["seed"] if cfg.get("labels_seed") is None else int(cfg["labels_seed"])
        classes = int(data.num_classes)
        chosen = class_balanced_subset(data.labels, int(cfg["labels"]), seed, classes)
        options = SSGANOptions.from_config(cfg, data.image_shape, classes)
        eval_size = len(test) if test is not None and test.labels is not None else None
        # The whole training set also feeds the generator's own stream of real batches (the original's trainx_unl2).
        model = cls(options, torch.from_numpy(data.images[chosen]), torch.from_numpy(data.labels[chosen]), eval_size,
                    unlabelled_x=torch.from_numpy(data.images))
        if cfg.get("init_size"):
            pick = np.random.default_rng(seed).permutation(len(data))[:int(cfg["init_size"])]
            model.initialize(torch.from_numpy(data.images[pick]))
        log.info("labelled subset: %d images (%d per class), drawn with seed %d", len(chosen),
                 len(chosen) // classes, seed)
        return model

    def report(self, run: RunDir, evaluation: Mapping[str, float]) -> dict[str, Any]:
        """The labelled-subset size and the last evaluation's test error (and that of the averaged weights)."""
        result = {"labels": int(run.config["labels"]), **self.last_evaluation}
        if "test_error" in self.last_evaluation:
            ema = self.last_evaluation.get("test_error_ema")
            log.info("test error %.2f%%%s on %d test images with %d labels", 100 * self.last_evaluation["test_error"],
                     f" (moving average of the weights: {100 * ema:.2f}%)" if ema is not None else "",
                     self.last_evaluation["test_images"], result["labels"])
        return result

    def __init__(self, options: SSGANOptions, labelled_x: torch.Tensor, labelled_y: torch.Tensor,
                 eval_size: int | None = None, unlabelled_x: torch.Tensor | None = None):
        super().__init__()
        options.check()
        self.options = o = options
        if len(labelled_x) != len(labelled_y) or len(labelled_y) == 0:
            raise UserError(f"{len(labelled_x)} labelled images but {len(labelled_y)} labels")
        self.generator = SSGenerator(o.image_shape, o.z_dim, o.g_hidden)
        self.discriminator = SSDiscriminator(math.prod(o.image_shape), o.num_classes, o.d_hidden, o.input_noise,
                                             o.hidden_noise)
        # The labelled subset travels with the model (and its checkpoints): 100 MNIST images are 78 KB.
        self.register_buffer("labelled_x", torch.as_tensor(labelled_x).clone())
        self.register_buffer("labelled_y", torch.as_tensor(labelled_y, dtype=torch.long).clone())
        self.register_buffer("label_order", torch.arange(len(labelled_y)))
        self.label_cursor = len(labelled_y)  # the next step starts a new permutation
        # The training set is the trainer's data too: not saved with the model (persistent=False), only the order
        # of its stream (8 bytes an image) and the cursor, so that a resumed run draws the same batches.
        if unlabelled_x is not None and len(unlabelled_x) == 0:
            raise UserError("no unlabelled images for the generator's feature matching")
        self.register_buffer("unlabelled_x", None if unlabelled_x is None else torch.as_tensor(unlabelled_x),
                             persistent=False)
        n_unl = 0 if unlabelled_x is None else len(unlabelled_x)
        self.register_buffer("unlabelled_order", torch.arange(n_unl))
        self.unlabelled_cursor = n_unl
        self.num_steps = 0
        self.averaged: SSDiscriminator | None = None
        if o.ema > 0:
            # The moving average starts at 0 (as in the original) and is bias-corrected when used.
            self.averaged = SSDiscriminator(math.prod(o.image_shape), o.num_classes, o.d_hidden, 0.0, 0.0)
            for p in self.averaged.parameters():
                p.requires_grad_(False)
                p.zero_()
        self.eval_size = eval_size
        self._reset_evaluation()
        self.last_evaluation: dict[str, float] = {}

    # -- state kept as plain numbers (checkpointed through get_extra_state, read without a device sync) ------------

    def get_extra_state(self) -> dict[str, int]:
        return {"num_steps": self.num_steps, "label_cursor": self.label_cursor,
                "unlabelled_cursor": self.unlabelled_cursor}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.num_steps, self.label_cursor = int(state["num_steps"]), int(state["label_cursor"])
        self.unlabelled_cursor = int(state["unlabelled_cursor"])

    def optimizer_groups(self) -> dict[str, Any]:
        eps = self.options.adam_eps
        return {"d": {"params": self.discriminator.parameters(), "eps": eps},
                "g": {"params": self.generator.parameters(), "eps": eps}}

    # -- pieces ----------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """The original's data-dependent initialisation of the discriminator on training images ``x`` (noise on,
        as in the original's ``init_param``)."""
        was_training = self.discriminator.training
        self.discriminator.train()
        self.discriminator(_to_float(x).to(self.labelled_y.device), init=True)
        self.discriminator.train(was_training)

    def noise(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.rand(n, self.options.z_dim, device=device or self.labelled_y.device)

    def labelled_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``n`` labelled examples of a stream of random permutations of the labelled subset."""
        self.label_order, self.label_cursor, idx = _permutation_stream(self.label_order, self.label_cursor, n)
        return _to_float(self.labelled_x[idx]), self.labelled_y[idx]

    def unlabelled_batch(self, n: int) -> torch.Tensor | None:
        """The next ``n`` images of the generator's own stream of random permutations of the training set (the
        original's ``trainx_unl2``); None without ``unlabelled_x``."""
        if self.unlabelled_x is None:
            return None
        self.unlabelled_order, self.unlabelled_cursor, idx = _permutation_stream(self.unlabelled_order,
                                                                                 self.unlabelled_cursor, n)
        return _to_float(self.unlabelled_x[idx])

    def discriminator_loss(self, x_lab: torch.Tensor, y_lab: torch.Tensor, x_unl: torch.Tensor,
                           fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # One pass over the three batches: the discriminator has no batch statistics, so this is the same
        # computation as three passes (noise is drawn per image either way), with larger, faster matrix products.
        n_lab, n_unl = len(x_lab), len(x_unl)
        logits = self.discriminator(torch.cat([x_lab.flatten(1), x_unl.flatten(1), fake.flatten(1).to(x_lab.dtype)]))
        logits_lab, logits_unl, logits_fake = logits.split([n_lab, n_unl, len(fake)])
        loss_lab, loss_unl = ssgan_losses(logits_lab, y_lab, logits_unl, logits_fake)
        loss = loss_lab + self.options.unlabeled_weight * loss_unl
        train_error = (logits_lab.detach().argmax(1) != y_lab).float().mean()
        return loss, {"loss_lab": loss_lab.detach(), "loss_unl": loss_unl.detach(), "train_error": train_error,
                      "d_real": torch.sigmoid(real_fake_logit(logits_unl.detach())).mean(),
                      "d_fake": torch.sigmoid(real_fake_logit(logits_fake.detach())).mean()}

    def generator_loss(self, x_unl: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Feature matching on the discriminator's last hidden layer."""
        with torch.no_grad():
            _, real_features = self.discriminator(x_unl, with_features=True)
        _, fake_features = self.discriminator(fake, with_features=True)
        return feature_matching_loss(real_features, fake_features)

    @torch.no_grad()
    def update_average(self) -> None:
        if self.averaged is None:
            return
        rate = self.options.ema
        for avg, p in zip(self.averaged.parameters(), self.discriminator.parameters()):
            avg.lerp_(p.detach(), rate)  # avg += rate * (p - avg), the original's update

    def averaged_discriminator(self) -> SSDiscriminator:
        """The bias-corrected moving average of the discriminator (the discriminator itself when ``ema`` is 0 or
        before the first step)."""
        if self.averaged is None or self.num_steps == 0:
            return self.discriminator
        correction = 1.0 - (1.0 - self.options.ema) ** self.num_steps
        corrected = SSDiscriminator(math.prod(self.options.image_shape), self.options.num_classes,
                                    self.options.d_hidden, 0.0, 0.0).to(self.labelled_y.device)
        with torch.no_grad():
            for c, avg in zip(corrected.parameters(), self.averaged.parameters()):
                c.copy_(avg / correction)
        return corrected.eval()

    @torch.no_grad()
    def classify(self, x: torch.Tensor, averaged: bool = False) -> torch.Tensor:
        """Class logits of images ``x`` in [0, 1] without noise (what the test error uses)."""
        d = self.averaged_discriminator() if averaged else self.discriminator
        was_training = d.training
        d.eval()
        try:
            return d(x).float()
        finally:
            d.train(was_training)

    # -- the trainer's interface -----------------------------------------------------------------------------------

    def training_step(self, batch: Batch, opt: Optimizers) -> dict[str, torch.Tensor]:
        x_unl = batch.x
        x_lab, y_lab = self.labelled_batch(len(x_unl))
        with torch.no_grad():  # the discriminator step needs no gradient of the generator
            fake = self.generator(self.noise(len(x_unl), x_unl.device))

        d_loss, metrics = self.discriminator_loss(x_lab, y_lab, x_unl, fake)
        opt.step("d", d_loss)
        self.num_steps += 1
        self.update_average()

        # As the original's train_batch_gen: new noise, and real images from the generator's own stream.
        x_real = self.unlabelled_batch(len(x_unl))
        fake = self.generator(self.noise(len(x_unl), x_unl.device))
        with frozen(self.discriminator):
            g_loss = self.generator_loss(x_unl if x_real is None else x_real, fake)
        opt.step("g", g_loss)
        return {**metrics, "loss_gen": g_loss.detach()}

    def _reset_evaluation(self) -> None:
        # A plain dict, not attributes: a module stored as an attribute would become part of the state dict.
        self._eval: dict[str, Any] = {"test_error": 0, "test_error_ema": 0, "seen": 0, "averaged": None}

    def train(self, mode: bool = True) -> SSGAN:
        if not mode:  # the trainer switches to eval mode before each evaluation pass: start a new count
            self._reset_evaluation()
        return super().train(mode)

    def evaluation_step(self, batch: Batch) -> dict[str, float]:
        """Errors of the class logits on ``batch``, counted over the evaluation pass; the exact error over the
        whole evaluation set is returned once, with its last batch (every batch when ``eval_size`` is unknown)."""
        if batch.y is None:
            return {}
        counts = {"test_error": (self.classify(batch.x).argmax(1) != batch.y).sum()}
        if self.averaged is not None:
            if self._eval["averaged"] is None:  # built once per pass
                self._eval["averaged"] = self.averaged_discriminator()
            with torch.no_grad():
                logits = self._eval["averaged"](batch.x).float()
            counts["test_error_ema"] = (logits.argmax(1) != batch.y).sum()
        if self.eval_size is None:
            return {k: v.float() / len(batch) for k, v in counts.items()}
        for k, v in counts.items():
            self._eval[k] += int(v)
        self._eval["seen"] += len(batch)
        if self._eval["seen"] < self.eval_size:
            return {}
        seen = self._eval["seen"]
        result = {k: self._eval[k] / seen for k in counts}
        self.last_evaluation = dict(result, test_images=seen)
        self._reset_evaluation()
        return result

    def sample(self, n: int) -> torch.Tensor:
        return self.generator(self.noise(n)).float()


def _permutation_stream(order: torch.Tensor, cursor: int, n: int) -> tuple[torch.Tensor, int, torch.Tensor]:
    """The next ``n`` indices of a stream of random permutations of ``range(len(order))``, starting at ``cursor``
    of the current permutation ``order`` and drawing a new one whenever it is used up: ``(order, cursor, idx)``."""
    total, parts = len(order), []
    while n > 0:
        if cursor >= total:
            order, cursor = torch.randperm(total, device=order.device), 0
        take = min(n, total - cursor)
        parts.append(order[cursor:cursor + take])
        cursor, n = cursor + take, n - take
    return order, cursor, torch.cat(parts)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
