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
    nonnegative_float,
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
    g = parser.add_argument_group("DCGAN")
    g.add_argument("--z-dim", dest="z_dim", type=positive_int, default=S, help="noise dimension")
    g.add_argument("--ngf", type=positive_int, default=S, help="generator width")
    g.add_argument("--ndf", type=positive_int, default=S, help="discriminator width")
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
                   help="step size of the unrolled discriminator updates")
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
    g.add_argument("--unlabeled-weight", dest="unlabeled_weight", type=nonnegative_float, default=S,
                   help="weight of the unlabelled (real/fake) loss")
    g.add_argument("--z-dim", dest="z_dim", type=positive_int, default=S, help="noise dimension")
    g.add_argument("--d-hidden", dest="d_hidden", type=positive_int, nargs="+", default=S, metavar="UNITS",
                   help="discriminator hidden layers")
    g.add_argument("--g-hidden", dest="g_hidden", type=positive_int, nargs="*", default=S, metavar="UNITS",
                   help="generator hidden layers")
    g.add_argument("--input-noise", dest="input_noise", type=nonnegative_float, default=S, metavar="STD",
                   help="Gaussian noise on the discriminator's input")
    g.add_argument("--hidden-noise", dest="hidden_noise", type=nonnegative_float, default=S, metavar="STD",
                   help="Gaussian noise after each hidden layer")
    g.add_argument("--ema", type=probability, default=S, metavar="RATE",
                   help="moving-average rate of the discriminator weights behind test_error_ema (0: off)")
    g.add_argument("--lr-decay-fraction", dest="lr_decay_fraction", type=probability, default=S, metavar="F",
                   help="the learning rate falls linearly to 0 over the last F of the epochs (0: off)")
    g.add_argument("--init-size", dest="init_size", type=nonnegative_int, default=S, metavar="N",
                   help="training images for the data-dependent initialisation (0: none)")
    g.add_argument("--adam-eps", dest="adam_eps", type=nonnegative_float, default=S, metavar="EPS",
                   help="Adam's epsilon (1e-4 mimics the original's sqrt(v + 1e-8))")
    add_evaluation_option(parser)


def add_infogan_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("InfoGAN (Chen et al. 2016; the paper's MNIST model)")
    g.add_argument("--noise-dim", dest="noise_dim", type=nonnegative_int, default=S,
                   help="incompressible noise dimension")
    g.add_argument("--categorical", type=positive_int, nargs="*", default=S, metavar="K",
                   help="categorical codes, by number of values (no value: none)")
    g.add_argument("--continuous", type=nonnegative_int, default=S, metavar="N",
                   help="continuous codes, each U(-1, 1)")
    g.add_argument("--learn-std", dest="learn_std", action=argparse.BooleanOptionalAction, default=S,
                   help="Q learns the standard deviation of the continuous codes (default: fixed to 1)")
    g.add_argument("--info-weight", dest="info_weight", type=nonnegative_float, default=S, metavar="LAMBDA",
                   help="weight of the mutual-information term of the categorical codes")
    g.add_argument("--info-weight-continuous", dest="info_weight_continuous", type=nonnegative_float, default=S,
                   metavar="LAMBDA", help="the same for the continuous codes")
    g.add_argument("--g-lr", dest="g_lr", type=positive_float, default=S,
                   help="generator learning rate (--lr is the discriminator's)")
    g.add_argument("--ngf", type=positive_int, default=S, help="generator up-convolution width")
    g.add_argument("--ndf", type=positive_int, default=S, help="discriminator convolution width")
    g.add_argument("--fc-dim", dest="fc_dim", type=positive_int, default=S, help="dense layer width")
    g.add_argument("--q-dim", dest="q_dim", type=positive_int, default=S, help="Q head width")
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
    g.add_argument("--z-dim", dest="z_dim", type=positive_int, default=S,
                   help="latent dimensions (with --bidirectional: latent feature maps per layer)")
    g.add_argument("--hidden", type=positive_int, default=S, help="convolution channels")
    g.add_argument("--res-blocks", dest="res_blocks", type=nonnegative_int, default=S,
                   help="residual blocks per resolution in encoder and decoder")
    g.add_argument("--iaf-steps", dest="iaf_steps", type=nonnegative_int, default=S, metavar="N",
                   help="IAF steps on the posterior, ordering reversed between steps")
    g.add_argument("--iaf-hidden", dest="iaf_hidden", type=positive_int, default=S,
                   help="units per MADE hidden layer")
    g.add_argument("--iaf-depth", dest="iaf_depth", type=positive_int, default=S,
                   help="hidden layers per IAF step")
    g.add_argument("--context-dim", dest="context_dim", type=positive_int, default=S,
                   help="size of the encoder's context h fed to every IAF step")
    g.add_argument("--free-bits", dest="free_bits", type=nonnegative_float, default=S, metavar="NATS",
                   help="free bits: minimum KL per latent dimension (per feature map with --bidirectional), averaged "
                        "over the minibatch")
    g.add_argument("--iw-samples", dest="iw_samples", type=nonnegative_int, default=S, metavar="K",
                   help="importance samples of the test log p(x) reported besides the ELBO after each epoch "
                        "(0: off)")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=S,
                   help="the paper's deeper ResNet VAE: several stochastic layers, bidirectional inference")
    g.add_argument("--levels", type=positive_int, default=S,
                   help="--bidirectional: resolutions")
    g.add_argument("--blocks-per-level", dest="blocks_per_level", type=positive_int, default=S,
                   help="--bidirectional: stochastic layers per resolution")
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
