"""One trainer for every image generative model (GANs, VAEs, autoregressive models), in the style of
pytorch-generative: the model is an ``nn.Module`` that knows its losses; the trainer owns everything else.

A model subclasses :class:`GenerativeModel` and implements

* ``training_step(batch, opt) -> metrics``: compute the losses of one batch (inside the trainer's autocast) and
  call ``opt.step(name, loss)`` for each optimiser it wants stepped (a GAN steps ``"d"`` then ``"g"``);
* ``sample(n) -> images``: ``n`` images ``(n, C, H, W)`` in [0, 1] (the trainer fixes the random seed, so a run's
  grids across epochs use the same noise);
* optionally ``optimizer_groups()`` (default: one Adam over all parameters, named ``"model"``),
  ``evaluation_step(batch) -> metrics`` (run on the test split each epoch when the trainer is given one) and
  ``console_keys`` (metrics printed to the console);
* to be trained from the command line (:mod:`rlgen.vision.train`): ``from_config(cfg, data, test)``, which builds
  the model of a resolved run configuration, ``evaluated`` (whether it wants the evaluation split) and
  ``report(run, evaluation)``, its final figures for ``summary.json``.

:class:`LikelihoodModel` is the shortcut for models with one loss (VAE, PixelCNN): implement ``loss(batch)``.

The trainer runs epochs of Adam updates on the device with mixed precision where it helps
(:mod:`rlgen.common.device`), logs through :func:`rlgen.common.logger.make_logger` (``progress.csv`` +
TensorBoard), writes PNG sample grids to ``samples/``, and writes a checkpoint after every epoch atomically with
``torch.save`` (and one mid-epoch when interrupted: Ctrl-C, or SIGTERM through the CLI), in the shared scheme of
:class:`~rlgen.common.checkpoint.CheckpointFolder`; checkpoints hold only tensors/numbers/dicts and load with
``weights_only=True``. Resuming restores model, optimisers, RNG state and the step counter, and skips the batches
of the current epoch already trained on, so a resumed CPU run matches an uninterrupted one (for an interrupt inside a training step, up to that one step, which may be half done or
repeated).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm import tqdm

from rlgen.common.checkpoint import CheckpointFolder, atomic_write_json, load_json, load_torch
from rlgen.common.device import autocast
from rlgen.common.errors import UserError
from rlgen.common.interrupts import signals_held
from rlgen.common.logger import make_logger
from rlgen.common.options import option
from rlgen.common.progress import progress
from rlgen.common.run_dir import RunDir
from rlgen.vision.datasets import Batch, BatchLoader, ImageDataset
from rlgen.vision.images import make_grid, save_image_grid

log = logging.getLogger("rlgen")

Metrics = Mapping[str, "torch.Tensor | float"]


class Optimizers:
    """The model's named optimisers; ``step(name, loss)`` is one update of that group."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], device: torch.device):
        self.optimizers = optimizers
        self.device = device

    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self.optimizers[name]

    def step(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """Zero the group's gradients, backpropagate ``loss`` and take one optimiser step.

        Only this group's gradients are zeroed first: a GAN's generator loss also fills the discriminator's
        ``.grad``, which the discriminator's next ``step`` clears."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        # Backward outside autocast (PyTorch's advice); bf16 needs no loss scaling.
        with torch.autocast(self.device.type, enabled=False):
            loss.backward(retain_graph=retain_graph)
        opt.step()
        # Autocast keeps the low-precision copy of each weight it cast until the trainer's autocast region ends, and
        # does not see the step change the weight: without this, a GAN's generator step would run the
        # discriminator as it was before its own step (stale bf16 weights), not the updated one.
        torch.clear_autocast_cache()

    def state_dict(self) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in self.optimizers.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = set(self.optimizers) - set(state)
        if missing:
            raise UserError(f"checkpoint has no optimiser state for {', '.join(sorted(missing))}; it was written by a "
                            "different model configuration")
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state[k])


class GenerativeModel(nn.Module, ABC):
    """What :class:`Trainer` runs. See the module docstring for the contract."""

    #: metric names (without the ``train/`` prefix) printed on the console at each log line
    console_keys: tuple[str, ...] = ()
    #: evaluated on the evaluation split after every epoch (``evaluate: false`` in a run's config turns it off)
    evaluated: ClassVar[bool] = True
    #: the dataclass of the model's options, whose field defaults are the run configuration's (rlgen.vision.models)
    options_class: ClassVar[type | None] = None
    #: more option dataclasses the model reads from the run configuration (e.g. the labelled subset of a SSGAN)
    extra_options: ClassVar[tuple[type, ...]] = ()
    #: the title of the model's group of flags in --help
    title: ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data: ImageDataset, test: ImageDataset | None) -> GenerativeModel:
        """The model of a resolved run configuration, given the training data and the evaluation split (None when
        the model is not evaluated)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a run configuration")

    @classmethod
    def selection_metrics(cls, cfg: Mapping[str, Any]) -> tuple[str, ...]:
        """The training metrics :meth:`selection_score` reads for the run ``cfg``; none where the model has no score
        to choose among starts by (:mod:`rlgen.vision.restarts`)."""
        return ()

    @classmethod
    def selection_score(cls, cfg: Mapping[str, Any], metrics: Mapping[str, float]) -> float:
        """An unsupervised loss to choose among starts of the run ``cfg`` by (lower is better), from the mean training
        ``metrics`` of an epoch (holding :meth:`selection_metrics`)."""
        raise NotImplementedError(f"{cls.__name__} has no score to choose among starts by")

    def report(self, run: RunDir, evaluation: Mapping[str, float]) -> dict[str, Any]:
        """Final figures for ``summary.json`` (logged as they are made). ``evaluation`` is the trainer's last
        evaluation in this process: empty when it trained nothing, and the figures of the run's earlier
        summary stay."""
        return {}

    def optimizer_groups(self) -> dict[str, Iterable[nn.Parameter] | dict[str, Any]]:
        """Named parameter groups, each optimised by its own Adam. A value is the parameters, or a dict with
        ``params`` and Adam overrides (``lr``, ``betas``, ``weight_decay``)."""
        return {"model": self.parameters()}

    @abstractmethod
    def training_step(self, batch: Batch, opt: Optimizers) -> Metrics:
        """One training update on ``batch``; return scalar metrics (tensors are fine: the trainer averages them
        and only syncs with the device when it logs)."""

    def evaluation_step(self, batch: Batch) -> Metrics:
        """Metrics on a held-out batch (under ``torch.no_grad``, in eval mode); optional."""
        raise NotImplementedError

    @abstractmethod
    def sample(self, n: int) -> torch.Tensor:
        """``n`` samples ``(n, C, H, W)`` with values in [0, 1]."""


class LikelihoodModel(GenerativeModel):
    """A model trained by minimising one loss (e.g. negative log-likelihood): implement :meth:`loss`."""

    console_keys = ("loss",)

    @abstractmethod
    def loss(self, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        """The scalar loss to minimise and extra metrics."""

    def training_step(self, batch: Batch, opt: Optimizers) -> Metrics:
        loss, metrics = self.loss(batch)
        opt.step("model", loss)
        return {"loss": loss.detach(), **metrics}

    def evaluation_step(self, batch: Batch) -> Metrics:
        loss, metrics = self.loss(batch)
        return {"loss": loss.detach(), **metrics}


@dataclass
class TrainerConfig:
    """The trainer's part of a run configuration (other keys of the run's config are ignored); its :func:`option`
    fields are the image commands' training flags."""

    epochs: int = 25  # (its flag is every run's budget: rlgen.common.resolve.run_flags)
    batch_size: int = option(64, "images per training step", minimum=1)
    lr: float = option(2e-4, "Adam learning rate", minimum=0, strict=True)
    lr_decay_fraction: float = option(0.0, "the learning rate falls linearly to 0 over the last F of the epochs "
                                      "(0: constant)", minimum=0, maximum=1, metavar="F")
    beta1: float = option(0.5, "Adam beta1", minimum=0, maximum=1)
    beta2: float = 0.999
    amp: bool = option(True, "bf16 mixed precision, used on CUDA and on CPUs with native bf16 (AVX-512 BF16 or AMX)")
    log_every: int = option(100, "training steps between log lines", minimum=1, metavar="STEPS")
    sample_every: int = option(1, "epochs between PNG sample grids in samples/ (the last epoch always gets one)",
                               minimum=1, metavar="EPOCHS")
    n_samples: int = option(64, "images per grid", minimum=1)
    keep_checkpoints: int = 2
    # "dynamic" re-binarises each batch ("static" is done by the dataset loader); a flag of the likelihood models only
    binarize: str | None = option(None, "dynamic: a fresh Bernoulli draw of every training batch (likelihoods in "
                                  "nats/image); static: one fixed draw; none: 8-bit data (256-way softmax or "
                                  "discretised logistic; likelihoods in bits/dim)", choices=("dynamic", "static", "none"))
    seed: int = 0
    max_minutes: float | None = option(None, "wall-clock budget of this process: stop after the first epoch that ends "
                                       "past it, with the run's checkpoint and summary written (--resume goes on)",
                                       minimum=0, strict=True, metavar="MINUTES")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TrainerConfig:
        return cls(**{f.name: cfg[f.name] for f in fields(cls) if f.name in cfg})


def make_optimizers(model: GenerativeModel, lr: float, betas: tuple[float, float],
                    fused: bool = True) -> dict[str, torch.optim.Optimizer]:
    """One Adam per group of ``model.optimizer_groups()``, with the group's overrides. ``fused``: one kernel for the
    whole update (on a CPU core, 5x faster than PyTorch's default per-tensor loop)."""
    out = {}
    for name, group in model.optimizer_groups().items():
        settings: dict[str, Any] = {"lr": lr, "betas": betas}
        if isinstance(group, Mapping):
            settings.update({k: v for k, v in group.items() if k != "params"})
            params = list(group["params"])
        else:
            params = list(group)
        out[name] = torch.optim.Adam(params, fused=fused, **settings)
    return out


def lr_factor(epoch: int, epochs: int, decay_fraction: float) -> float:
    """Multiplier of the base learning rate in epoch ``epoch`` (0-based) of ``epochs``: 1, then a linear fall to 0
    over the last ``decay_fraction`` of the epochs (improved-gan's MNIST schedule, ``min(3 - epoch / 100, 1)`` for
    300 epochs, is ``decay_fraction`` 1/3). A schedule of epochs, so that a resumed run with a new --epochs
    budget stretches it."""
    if decay_fraction <= 0 or epochs <= 0:
        return 1.0
    return float(min(1.0, max(0.0, (epochs - epoch) / (decay_fraction * epochs))))


def _mean_metrics(history: dict[str, list[torch.Tensor | float]],
                  sizes: dict[str, list[int]] | None = None) -> dict[str, float]:
    """Mean of each metric over a window; one device-to-host copy per metric. With ``sizes`` (per metric, the
    images behind each entry) the mean is per image, so a short last test batch counts for its size only."""
    out = {}
    for key, values in history.items():
        if values:
            tensors = [v.detach().float().reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                       for v in values]
            stacked = torch.stack([t.to(tensors[0].device) for t in tensors])
            if sizes is None:
                out[key] = stacked.mean().item()
            else:
                weights = torch.tensor(sizes[key], dtype=stacked.dtype, device=stacked.device)
                out[key] = (stacked * weights).sum().div(weights.sum()).item()
    return out


class Trainer:
    """Train ``model`` on ``train_data`` inside ``run`` (a :class:`~rlgen.common.run_dir.RunDir`).

    ``fit()`` resumes from the newest checkpoint when ``run.resumed`` and returns the summary it writes to
    ``summary.json``. Files: ``checkpoints/epoch_<n>.pt`` (+ ``latest.json``), ``samples/epoch_<n>.png``,
    ``progress.csv``, ``tb/``, ``summary.json``."""

    def __init__(self, model: GenerativeModel, run: RunDir, train_data: ImageDataset, config: TrainerConfig,
                 device: torch.device | str = "cpu", eval_data: ImageDataset | None = None):
        self.model = model
        self.run = run
        self.cfg = config
        self.device = torch.device(device)
        self.model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed image sizes: let cuDNN pick its fastest kernels
        self.loader = BatchLoader(train_data, config.batch_size, self.device, shuffle=True, drop_last=True,
                                  binarize=config.binarize, seed=config.seed)
        self.eval_loader = None
        if eval_data is not None:
            self.eval_loader = BatchLoader(eval_data, config.batch_size, self.device, shuffle=False, drop_last=False,
                                           binarize=config.binarize, seed=config.seed + 1)
        self.opt = Optimizers(self._make_optimizers(), self.device)
        self.checkpoints = CheckpointFolder(run.checkpoints, ("epoch_*.pt",), keep=config.keep_checkpoints)
        self.epoch = 0  # epochs completed
        self.step = 0  # training steps completed
        self.elapsed = 0.0  # training seconds before this process (from the checkpoint)
        self._start = time.time()

    # -- setup ---------------------------------------------------------------------------------------------------

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return make_optimizers(self.model, self.cfg.lr, (self.cfg.beta1, self.cfg.beta2))

    def _schedule_lr(self) -> None:
        """Set every optimiser group's learning rate for the current epoch: its initial rate (a group's own, kept
        in the optimiser's state, so that a resume has it) times :func:`lr_factor`."""
        factor = self._lr_factor()
        for opt in self.opt.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def _lr_factor(self) -> float:
        """:func:`lr_factor` of the epoch being trained (``self.epoch`` counts the epochs completed)."""
        return lr_factor(self.epoch, self.cfg.epochs, self.cfg.lr_decay_fraction)

    @property
    def ckpt_dir(self) -> Path:
        return self.run.checkpoints

    # -- checkpoints ---------------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/epoch_<n>.pt`` (``n`` epochs completed) and ``latest.json`` (with ``epoch``, ``step``
        and ``steps_per_epoch``, so that readers can tell how far into an epoch it is), keeping the newest
        ``keep_checkpoints`` (:class:`~rlgen.common.checkpoint.CheckpointFolder`). An interrupted run saves
        ``epoch_<n>_step_<s>.pt`` instead."""
        steps_per_epoch = len(self.loader)
        mid_epoch = self.step != self.epoch * steps_per_epoch
        state = {
            "epoch": self.epoch, "step": self.step, "elapsed": self.elapsed + self._since_start(),
            "model": self.model.state_dict(), "optimizers": self.opt.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    **({"cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {})},
        }
        name = f"epoch_{self.epoch}_step_{self.step}.pt" if mid_epoch else f"epoch_{self.epoch}.pt"
        self.checkpoints.save({"file": (name, lambda tmp: torch.save(state, tmp))}, epoch=self.epoch,
                              step=self.step, steps_per_epoch=steps_per_epoch)
        return self.ckpt_dir / name

    def load_checkpoint(self, path: Path) -> None:
        state = load_torch(path, map_location=self.device)
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizers"])
            self.epoch, self.step, self.elapsed = int(state["epoch"]), int(state["step"]), float(state["elapsed"])
            torch.set_rng_state(state["rng"]["torch"].cpu())
            if self.device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UserError(f"checkpoint {path} does not match this model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]}); resume with the run's own configuration") from exc

    def resume(self) -> bool:
        """Load the newest checkpoint of a resumed run; False when there is none (the run starts over)."""
        latest = self.checkpoints.latest()
        if latest is None:
            return False
        self.load_checkpoint(self.checkpoints.file(latest, "file"))
        log.info("resuming %s after epoch %d (step %d)", self.run.path, self.epoch, self.step)
        return True

    # -- the loop ------------------------------------------------------------------------------------------------

    def _since_start(self) -> float:
        return time.time() - self._start

    def _out_of_time(self) -> bool:
        """This process has trained (and evaluated) for ``max_minutes``: a wall-clock budget, e.g. a cluster job's."""
        return self.cfg.max_minutes is not None and self._since_start() >= 60 * self.cfg.max_minutes

    @contextlib.contextmanager
    def _fixed_seed(self, seed: int) -> Iterator[None]:
        """Fixed noise for the sample grids, without disturbing the training RNG stream."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def save_samples(self, epoch: int) -> Path:
        """The sample grid ``samples/epoch_<epoch>.png`` (fixed noise: grids of different epochs compare)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._fixed_seed(self.cfg.seed + 12345), autocast(self.device, self.cfg.amp):
                images = self.model.sample(self.cfg.n_samples).float().clamp(0, 1)
        finally:
            self.model.train(was_training)
        path = save_image_grid(images, self.run.path / "samples" / f"epoch_{epoch:04d}.png")
        from stable_baselines3.common.logger import Image

        grid = make_grid(images)
        self.logger.record("samples", Image(grid, "HWC" if grid.ndim == 3 else "HW"),
                           exclude=("stdout", "log", "json", "csv"))
        return path

    def evaluate(self) -> dict[str, float]:
        if self.eval_loader is None:
            return {}
        self.model.eval()
        history: dict[str, list] = {}
        sizes: dict[str, list[int]] = {}  # a metric may come only with some batches (e.g. once per pass)
        try:
            with torch.no_grad(), autocast(self.device, self.cfg.amp):
                for batch in progress(self.eval_loader.epoch(0), len(self.eval_loader), "evaluating", "batches"):
                    for k, v in self.model.evaluation_step(batch).items():
                        history.setdefault(k, []).append(v)
                        sizes.setdefault(k, []).append(len(batch))
        except NotImplementedError:
            return {}
        finally:
            self.model.train()
        return _mean_metrics(history, sizes)

    def fit(self) -> dict[str, Any]:
        if self.run.resumed:
            self.resume()
        console = ("time/epoch", *(f"train/{k}" for k in self.model.console_keys))
        self.logger = make_logger(self.run.path, console, resume_step=self.step if self.run.resumed else None)
        self._start = time.time()
        steps_per_epoch = len(self.loader)
        images_this_run = 0
        evaluation: dict[str, float] = {}
        self.model.train()
        try:
            while self.epoch < self.cfg.epochs:
                epoch_start = time.time()
                self._schedule_lr()
                history: dict[str, list] = {}
                window_start, window_images = time.time(), 0
                # Batches of this epoch trained before an interrupted run stopped (0 at an epoch's start).
                done = min(max(0, self.step - self.epoch * steps_per_epoch), steps_per_epoch)
                bar = tqdm(self.loader.epoch(self.epoch, start=done), total=steps_per_epoch, initial=done,
                           unit="batch", dynamic_ncols=True, disable=None, leave=False,
                           desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}")
                for i, batch in enumerate(bar, start=done):
                    with autocast(self.device, self.cfg.amp):
                        metrics = self.model.training_step(batch, self.opt)
                    for k, v in metrics.items():
                        history.setdefault(k, []).append(v)
                    self.step += 1
                    window_images += len(batch)
                    images_this_run += len(batch)
                    # The epoch's last window is logged with the epoch's row (one row per step in progress.csv).
                    last = i == steps_per_epoch - 1
                    if self.cfg.log_every > 0 and self.step % self.cfg.log_every == 0 and not last:
                        self._log(history, window_images / max(time.time() - window_start, 1e-9))
                        history, window_start, window_images = {}, time.time(), 0
                bar.close()
                # self.epoch moves on only after the epoch's evaluation, samples and row: a run interrupted before
                # then resumes with every batch trained and does them again.
                finished = self.epoch + 1
                if history:
                    self._log(history, window_images / max(time.time() - window_start, 1e-9), dump=False)
                evaluation = self.evaluate()
                for k, v in evaluation.items():
                    self.logger.record(f"eval/{k}", v)
                self.logger.record("time/epoch", finished)
                self.logger.record("time/epoch_seconds", time.time() - epoch_start)
                out_of_time = self._out_of_time()
                if finished % max(1, self.cfg.sample_every) == 0 or finished == self.cfg.epochs or out_of_time:
                    self.save_samples(finished)
                self.logger.dump(self.step)
                self.epoch = finished
                self.save_checkpoint()
                if out_of_time and self.epoch < self.cfg.epochs:
                    log.info("--max-minutes %g reached after epoch %d of %d; go on with --resume %s",
                             self.cfg.max_minutes, self.epoch, self.cfg.epochs, self.run.path)
                    break
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the batches trained so far
            with signals_held():  # a second signal must not cut this checkpoint short
                path = self.save_checkpoint()
            log.info("interrupted at step %d: checkpoint %s", self.step, path)
            raise
        finally:
            self.logger.close()
        wall = self._since_start()
        images_per_s = round(images_this_run / wall, 1) if wall > 0 and images_this_run else None
        summary_path = self.run.path / "summary.json"
        summary: dict[str, Any] = {}
        if not images_this_run and summary_path.is_file():  # resumed with nothing left to train: keep its figures
            summary = load_json(summary_path, what="run summary")
        summary.update({"epochs": self.epoch, "steps": self.step, "wall_clock_s": round(self.elapsed + wall, 2),
                        "images_per_s": summary.get("images_per_s") if images_per_s is None else images_per_s,
                        "finished": self.epoch >= self.cfg.epochs, "device": str(self.device),
                        "checkpoint": (self.checkpoints.latest() or {}).get("file")})
        summary.update(self.model.report(self.run, evaluation))
        atomic_write_json(summary_path, summary)
        return summary

    def _log(self, history: dict[str, list], images_per_s: float, dump: bool = True) -> None:
        means = _mean_metrics(history)
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:  # checked here, not every step, so a GPU run does not sync with the host at each step
            raise UserError(f"training diverged at step {self.step}: {', '.join(bad)} is not finite; lower --lr or "
                            "resume from the last checkpoint")
        for k, v in means.items():
            self.logger.record(f"train/{k}", v)
        self.logger.record("train/lr", self.cfg.lr * self._lr_factor())  # --lr now (groups with their own scale alike)
        self.logger.record("time/images_per_s", images_per_s)
        if dump:
            self.logger.dump(self.step)
