"""``rlgen gan``: DCGAN with the Improved-GAN techniques on MNIST, Fashion-MNIST, CIFAR-10 or an ``.npz`` file.

The data and trainer options (:func:`add_data_options`, :func:`add_trainer_options`) and :func:`train_image_model`
are shared with the other image-model commands: a new command adds its model's flags and a ``build_model``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlgen.cli.options import S, add_common_options, nonnegative_float, open_run, positive_int, resolve_config

log = logging.getLogger("rlgen")


def probability(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=S, help="mnist, fashion-mnist, cifar10, or a path to an .npz file with x/y "
                   "(or x_train/y_train) arrays")
    g.add_argument("--data-dir", dest="data_dir", default=S, metavar="DIR",
                   help="folder holding the dataset files (default: $RLGEN_DATA, else ~/.cache/rlgen/data)")
    g.add_argument("--download", action="store_true", default=S,
                   help="download missing official files into --data-dir (checked against their MD5s)")
    g.add_argument("--no-verify-checksums", dest="verify_checksums", action="store_false", default=S,
                   help="use official-looking files whose checksums do not match")
    g.add_argument("--limit-images", dest="limit_images", type=positive_int, default=S, metavar="N",
                   help="train on the first N images only")


def add_trainer_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--batch-size", dest="batch_size", type=positive_int, default=S, help="default 64")
    g.add_argument("--lr", type=nonnegative_float, default=S, help="Adam learning rate (default 2e-4)")
    g.add_argument("--beta1", type=probability, default=S, help="Adam beta1 (default 0.5)")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=S,
                   help="no mixed precision on CUDA (it is never used on CPU)")
    g.add_argument("--sample-every", dest="sample_every", type=positive_int, default=S, metavar="EPOCHS",
                   help="epochs between PNG sample grids in samples/ (default 1)")
    g.add_argument("--n-samples", dest="n_samples", type=positive_int, default=S, help="images per grid (default 64)")
    g.add_argument("--log-every", dest="log_every", type=positive_int, default=S, metavar="STEPS",
                   help="training steps between log lines (default 100)")


def add_gan_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DCGAN")
    g.add_argument("--z-dim", dest="z_dim", type=positive_int, default=S, help="noise dimension (default 100)")
    g.add_argument("--ngf", type=positive_int, default=S, help="generator width (default 64)")
    g.add_argument("--ndf", type=positive_int, default=S, help="discriminator width (default 64)")
    t = parser.add_argument_group("techniques (each off unless given)")
    t.add_argument("--feature-matching", dest="feature_matching", action=argparse.BooleanOptionalAction, default=S,
                   help="generator matches the mean discriminator features of real data")
    t.add_argument("--minibatch-discrimination", dest="minibatch_discrimination", type=nonnegative_int, nargs="?",
                   const=100, default=S, metavar="KERNELS",
                   help="minibatch discrimination layer with KERNELS kernels (100 when no number is given; 0 is off)")
    t.add_argument("--historical-averaging", dest="historical_averaging", type=nonnegative_float, default=S,
                   metavar="WEIGHT", help="penalty WEIGHT * ||theta - mean of past theta||^2 on both players")
    t.add_argument("--label-smoothing", dest="label_smoothing", type=probability, default=S, metavar="S",
                   help="one-sided: real targets 1 - S, fake targets stay 0 (the paper: 0.1)")
    t.add_argument("--label-noise", dest="label_noise", type=probability, default=S, metavar="P",
                   help="flip each discriminator label with probability P")
    t.add_argument("--virtual-batch-norm", dest="virtual_batch_norm", action=argparse.BooleanOptionalAction,
                   default=S, help="virtual batch norm (fixed reference batch) instead of batch norm in the generator")
    t.add_argument("--minibatch-std", dest="minibatch_std", action=argparse.BooleanOptionalAction, default=S,
                   help="minibatch standard-deviation feature map in the discriminator")
    t.add_argument("--unroll-steps", dest="unroll_steps", type=nonnegative_int, default=S, metavar="K",
                   help="unrolled GAN: the generator trains against the discriminator after K more steps")
    t.add_argument("--unroll-lr", dest="unroll_lr", type=nonnegative_float, default=S,
                   help="step size of the unrolled discriminator updates (default 0.01)")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    add_trainer_options(parser)
    if command == "gan":
        add_gan_options(parser)
    add_common_options(parser, budget="epochs")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Packaged defaults for the command and dataset, then --config, then flags; the dataset name made canonical
    and the data location made absolute, so a resumed run finds its data from any working directory."""
    from rlgen.common.checkpoint import load_json
    from rlgen.common.config import packaged_config
    from rlgen.vision.datasets import canonical_name, data_root

    # `--resume RUN_DIR` alone is enough: the dataset comes from the run's saved config.
    resume = vars(args).get("resume")
    if resume and resume != "latest" and "dataset" not in vars(args) and (Path(resume) / "config.json").is_file():
        saved = load_json(Path(resume) / "config.json", what="run config")
        if saved.get("dataset"):
            args.dataset = saved["dataset"]
    packaged = packaged_config("vision.yaml")[args.command]
    cfg = resolve_config(args, dict(packaged["defaults"], command=args.command), packaged.get("tasks", {}),
                         task_key="dataset")
    cfg["dataset"] = canonical_name(str(cfg["dataset"]))
    if cfg["dataset"].endswith(".npz"):
        path = Path(cfg["dataset"]).expanduser()
        if not path.is_file() and (data_root(cfg["data_dir"]) / path).is_file():
            path = data_root(cfg["data_dir"]) / path
        cfg["dataset"] = str(path.resolve())
    cfg["data_dir"] = str(data_root(cfg["data_dir"]).resolve())
    return cfg


def dataset_tag(dataset: str) -> str:
    return Path(dataset).stem if dataset.endswith(".npz") else dataset


def load_training_data(cfg: dict[str, Any]):
    from rlgen.vision.datasets import load_dataset

    data = load_dataset(cfg["dataset"], "train", cfg["data_dir"], download=bool(cfg.get("download")),
                        verify=bool(cfg.get("verify_checksums", True)), binarize=cfg.get("binarize"),
                        seed=cfg["seed"])
    if cfg.get("limit_images"):
        data = data.take(int(cfg["limit_images"]))
    return data


def train_image_model(args: argparse.Namespace, build_model: Callable[[dict[str, Any], tuple[int, int, int]], Any]) -> None:
    """Resolve the configuration, load the data, open (or resume) the run and train ``build_model(cfg, shape)``."""
    from rlgen.common.device import resolve_device
    from rlgen.common.seeding import set_seed
    from rlgen.vision.trainer import Trainer, TrainerConfig

    cfg = resolve(args)
    device = resolve_device(cfg["device"])
    if "resume" in vars(args):
        run_dir = open_run(args, cfg, tag=dataset_tag(cfg["dataset"]))
        cfg = run_dir.config
        data = load_training_data(cfg)
    else:  # load first: a missing dataset should not leave an empty run directory behind
        data = load_training_data(cfg)
        run_dir = open_run(args, cfg, tag=dataset_tag(cfg["dataset"]))
    log.info("run directory: %s", run_dir.path)
    log.info("%s: %d training images of shape %s on %s", cfg["dataset"], len(data), data.image_shape, device)
    set_seed(cfg["seed"])
    model = build_model(cfg, data.image_shape)
    summary = Trainer(model, run_dir, data, TrainerConfig.from_config(cfg), device).fit()
    log.info("done: %d epochs, %d steps in %.0f s (%s images/s)", summary["epochs"], summary["steps"],
             summary["wall_clock_s"], summary["images_per_s"])
    print(f"results: {run_dir.path} (config.json, progress.csv, tb/, checkpoints/, samples/, summary.json)")


def build_gan(cfg: dict[str, Any], image_shape: tuple[int, int, int]):
    from rlgen.vision.gan import DCGAN, GANOptions

    return DCGAN(GANOptions.from_config(cfg, image_shape))


BUILDERS = {"gan": build_gan}


def run(args: argparse.Namespace) -> None:
    train_image_model(args, BUILDERS[args.command])
