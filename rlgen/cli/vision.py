"""``rlgen gan|ssgan|infogan|vae|pixelcnn|pixelrnn``: the image models' flags, resolved into a run configuration
that :func:`rlgen.vision.train.train` runs.

The data and trainer options (:func:`add_data_options`, :func:`add_trainer_options`) are shared; each model adds
its own (:data:`MODEL_OPTIONS`). The model itself is :data:`rlgen.vision.models.MODELS`'s entry for the command.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlgen.cli.options import (
    S,
    add_common_options,
    add_dataclass_flags,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    resolve_config,
    resume_request,
)

log = logging.getLogger("rlgen")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=S, help="mnist, fashion-mnist, cifar10, binarized_mnist (Larochelle & "
                   "Murray's fixed binarisation), or a path to an .npz file with x/y (or x_train/y_train) arrays")
    g.add_argument("--data-dir", dest="data_dir", default=S, metavar="DIR",
                   help="folder holding the dataset files (default: $RLGEN_DATA, else ~/.cache/rlgen/data)")
    g.add_argument("--download", action="store_true", default=S,
                   help="download missing official files into --data-dir (checked against their MD5s)")
    g.add_argument("--no-verify-checksums", dest="verify_checksums", action="store_false", default=S,
                   help="use official-looking files whose checksums do not match")
    g.add_argument("--limit-images", dest="limit_images", type=positive_int, default=S, metavar="N",
                   help="train on the first N images only")
    g.add_argument("--train-split", dest="train_split", choices=("train", "train+valid"), default=S,
                   help="the split to train on (train+valid: the binarised MNIST's final models)")
    g.add_argument("--eval-split", dest="eval_split", choices=("test", "valid"), default=S,
                   help="the split evaluated after each epoch (valid on the binarised MNIST, whose "
                        "test split is for the final report)")


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The command's defaults (its model's options dataclass, then its section of vision.yaml), which the help texts
    quote, the section and its file."""
    from rlgen.common.config import packaged_config
    from rlgen.vision.models import option_defaults

    section = packaged_config("vision.yaml")[command]
    return {**option_defaults(command), **section["defaults"]}, section, "rlgen/configs/vision.yaml"


def add_trainer_options(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """The shared trainer's flags; ``defaults`` are the command's own (the help shows them)."""
    g = parser.add_argument_group("training")
    g.add_argument("--batch-size", dest="batch_size", type=positive_int, default=S,
                   help="images per training step")
    g.add_argument("--lr", type=positive_float, default=S, help="Adam learning rate")
    g.add_argument("--beta1", type=probability, default=S, help="Adam beta1")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=S,
                   help="no bf16 mixed precision (used on CUDA and on CPUs with native bf16: AVX-512 BF16 or AMX; default "
                   f"{'on' if defaults['amp'] else 'off for this model: its likelihoods need full precision'})")
    g.add_argument("--sample-every", dest="sample_every", type=positive_int, default=S, metavar="EPOCHS",
                   help="epochs between PNG sample grids in samples/")
    g.add_argument("--n-samples", dest="n_samples", type=positive_int, default=S,
                   help="images per grid")
    g.add_argument("--log-every", dest="log_every", type=positive_int, default=S, metavar="STEPS",
                   help="training steps between log lines")
    g.add_argument("--max-minutes", dest="max_minutes", type=positive_float, default=S, metavar="MINUTES",
                   help="wall-clock budget of this process: stop after the first epoch that ends past it, with the "
                   "run's checkpoint and summary written (--resume goes on; default: none)")


def add_gan_options(parser: argparse.ArgumentParser) -> None:
    from rlgen.vision.gan.dcgan import GANOptions

    add_dataclass_flags(parser.add_argument_group("DCGAN"), GANOptions, only=("z_dim", "ngf", "ndf"))
    add_dataclass_flags(parser.add_argument_group("techniques (each off unless given)"), GANOptions,
                        skip=("z_dim", "ngf", "ndf"))
    m = parser.add_argument_group("sample scores (after training; need a labelled dataset with a test split)")
    m.add_argument("--score-samples", dest="score_samples", type=nonnegative_int, default=S, metavar="N",
                   help="score N samples: Frechet distance to the test images and the Inception-score analogue, on "
                   "the features of a classifier trained on the dataset (the benchmarks use 10000)")
    m.add_argument("--metrics-classifier", dest="metrics_classifier", default=S, metavar="PATH",
                   help="that classifier's checkpoint, trained there if missing")
    m.add_argument("--classifier-epochs", dest="classifier_epochs", type=positive_int, default=S,
                   help="epochs of a newly trained metrics classifier")


def add_evaluation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false", default=S,
                        help="train without the test split (by default it is loaded and evaluated after each epoch)")


def add_ssgan_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("semi-supervised GAN (Salimans et al. 2016; the improved-gan MNIST model)")
    g.add_argument("--labels", type=positive_int, default=S, metavar="N",
                   help="labelled training examples, the same number of each class")
    g.add_argument("--labels-seed", dest="labels_seed", type=int, default=S, metavar="SEED",
                   help="seed that draws the labelled subset and the initialisation batch (default: --seed)")
    g.add_argument("--init-size", dest="init_size", type=nonnegative_int, default=S, metavar="N",
                   help="training images for the data-dependent initialisation (0: none)")
    from rlgen.vision.gan.ssgan import SSGANOptions

    add_dataclass_flags(g, SSGANOptions)
    add_evaluation_option(parser)


def add_infogan_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("InfoGAN (Chen et al. 2016; the paper's MNIST model)")
    from rlgen.vision.gan.infogan import InfoGANOptions

    add_dataclass_flags(g, InfoGANOptions)
    add_evaluation_option(parser)


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    add_trainer_options(parser, packaged_defaults(command)[0])
    MODEL_OPTIONS[command](parser)
    add_common_options(parser, budget="epochs")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Packaged defaults for the command and dataset, then --config, then flags; the dataset name made canonical
    and the data location made absolute, so a resumed run finds its data from any working directory."""
    from rlgen.vision.datasets import canonical_name, data_root

    # `--resume RUN_DIR` alone is enough: resolve_config takes the dataset from the run's saved config.
    defaults, section, _ = packaged_defaults(args.command)
    cfg = resolve_config(args, dict(defaults, command=args.command), section.get("tasks", {}), task_key="dataset")
    cfg["dataset"] = canonical_name(str(cfg["dataset"]))
    if cfg["dataset"].endswith(".npz"):
        path = Path(cfg["dataset"]).expanduser()
        if not path.is_file() and (data_root(cfg["data_dir"]) / path).is_file():
            path = data_root(cfg["data_dir"]) / path
        cfg["dataset"] = str(path.resolve())
    cfg["data_dir"] = str(data_root(cfg["data_dir"]).resolve())
    return cfg


def run(args: argparse.Namespace) -> None:
    from rlgen.vision.train import train

    train(resolve(args), resume_request(args))


def add_binarize_option(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--binarize", choices=("dynamic", "static", "none"), default=S,
                        help="dynamic: a fresh Bernoulli draw of every training batch (the default on MNIST; "
                             "likelihoods in nats/image); static: one fixed draw; none: 8-bit data (256-way softmax "
                             "or discretised logistic; likelihoods in bits/dim; the default on other datasets)")


def add_vae_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("VAE (Kingma et al. 2016: inverse autoregressive flow)")
    from rlgen.vision.likelihood import VAEOptions

    add_dataclass_flags(g, VAEOptions)
    add_binarize_option(g)
    add_evaluation_option(parser)


def add_pixel_options(parser: argparse.ArgumentParser, command: str) -> None:
    from rlgen.vision.likelihood import PixelCNNOptions, PixelRNNOptions

    g = parser.add_argument_group("PixelRNN (van den Oord et al. 2016)" if command == "pixelrnn"
                                  else "PixelCNN (van den Oord et al. 2016)")
    add_dataclass_flags(g, PixelRNNOptions if command == "pixelrnn" else PixelCNNOptions)
    add_binarize_option(g)
    add_evaluation_option(parser)


MODEL_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "gan": add_gan_options,
    "ssgan": add_ssgan_options,
    "infogan": add_infogan_options,
    "vae": add_vae_options,
    "pixelcnn": lambda parser: add_pixel_options(parser, "pixelcnn"),
    "pixelrnn": lambda parser: add_pixel_options(parser, "pixelrnn"),
}
