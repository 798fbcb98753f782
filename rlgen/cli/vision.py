"""``rlgen gan``: DCGAN with the Improved-GAN techniques on MNIST, Fashion-MNIST, CIFAR-10 or an ``.npz`` file.

The data and trainer options (:func:`add_data_options`, :func:`add_trainer_options`) and :func:`train_image_model`
are shared with the other image-model commands: a new command adds its model's flags and a ``build_model``.
Commands whose model is evaluated on the test split after every epoch (``ssgan``, ``infogan``, ...) are listed in
``EVALUATED_COMMANDS``, the others in ``BUILDERS``.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlgen.cli.options import (
    S,
    add_common_options,
    nonnegative_float,
    nonnegative_int,
    open_run,
    positive_float,
    positive_int,
    resolve_config,
)

log = logging.getLogger("rlgen")


def probability(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


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
                   help="the split to train on (default train; train+valid: the binarised MNIST's final models)")
    g.add_argument("--eval-split", dest="eval_split", choices=("test", "valid"), default=S,
                   help="the split evaluated after each epoch (default test; valid on the binarised MNIST, whose "
                        "test split is for the final report)")


@functools.cache
def command_defaults(command: str) -> dict[str, Any]:
    """The command's packaged defaults (rlgen/configs/vision.yaml), read once: the help texts quote them."""
    from rlgen.common.config import packaged_config

    return packaged_config("vision.yaml")[command]["defaults"]


def add_trainer_options(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """The shared trainer's flags; ``defaults`` are the command's own (the help shows them)."""
    g = parser.add_argument_group("training")
    g.add_argument("--batch-size", dest="batch_size", type=positive_int, default=S,
                   help=f"default {defaults['batch_size']}")
    g.add_argument("--lr", type=positive_float, default=S, help=f"Adam learning rate (default {defaults['lr']:g})")
    g.add_argument("--beta1", type=probability, default=S, help=f"Adam beta1 (default {defaults['beta1']:g})")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=S,
                   help="no bf16 mixed precision (used on CUDA and on CPUs with native bf16: AVX-512 BF16 or AMX; default "
                   f"{'on' if defaults['amp'] else 'off for this model: its likelihoods need full precision'})")
    g.add_argument("--sample-every", dest="sample_every", type=positive_int, default=S, metavar="EPOCHS",
                   help=f"epochs between PNG sample grids in samples/ (default {defaults['sample_every']})")
    g.add_argument("--n-samples", dest="n_samples", type=positive_int, default=S,
                   help=f"images per grid (default {defaults['n_samples']})")
    g.add_argument("--log-every", dest="log_every", type=positive_int, default=S, metavar="STEPS",
                   help=f"training steps between log lines (default {defaults['log_every']})")
    g.add_argument("--max-minutes", dest="max_minutes", type=positive_float, default=S, metavar="MINUTES",
                   help="wall-clock budget of this process: stop after the first epoch that ends past it, with the "
                   "run's checkpoint and summary written (--resume goes on; default: none)")


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
    m = parser.add_argument_group("sample scores (after training; need a labelled dataset with a test split)")
    m.add_argument("--score-samples", dest="score_samples", type=nonnegative_int, default=S, metavar="N",
                   help="score N samples: Frechet distance to the test images and the Inception-score analogue, on "
                   "the features of a classifier trained on the dataset (default 0: off; the benchmarks use 10000)")
    m.add_argument("--metrics-classifier", dest="metrics_classifier", default=S, metavar="PATH",
                   help="that classifier's checkpoint, trained there if missing (default "
                   "~/.cache/rlgen/classifiers/<dataset>.pt)")
    m.add_argument("--classifier-epochs", dest="classifier_epochs", type=positive_int, default=S,
                   help="epochs of a newly trained metrics classifier (default 5)")


def add_evaluation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false", default=S,
                        help="train without the test split (by default it is loaded and evaluated after each epoch)")


def add_ssgan_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("semi-supervised GAN (Salimans et al. 2016; the improved-gan MNIST model)")
    g.add_argument("--labels", type=positive_int, default=S, metavar="N",
                   help="labelled training examples, the same number of each class (default 100)")
    g.add_argument("--labels-seed", dest="labels_seed", type=int, default=S, metavar="SEED",
                   help="seed that draws the labelled subset and the initialisation batch (default: --seed)")
    g.add_argument("--unlabeled-weight", dest="unlabeled_weight", type=nonnegative_float, default=S,
                   help="weight of the unlabelled (real/fake) loss (default 1)")
    g.add_argument("--z-dim", dest="z_dim", type=positive_int, default=S, help="noise dimension (default 100)")
    g.add_argument("--d-hidden", dest="d_hidden", type=positive_int, nargs="+", default=S, metavar="UNITS",
                   help="discriminator hidden layers (default 1000 500 250 250 250)")
    g.add_argument("--g-hidden", dest="g_hidden", type=positive_int, nargs="*", default=S, metavar="UNITS",
                   help="generator hidden layers (default 500 500)")
    g.add_argument("--input-noise", dest="input_noise", type=nonnegative_float, default=S, metavar="STD",
                   help="Gaussian noise on the discriminator's input (default 0.3)")
    g.add_argument("--hidden-noise", dest="hidden_noise", type=nonnegative_float, default=S, metavar="STD",
                   help="Gaussian noise after each hidden layer (default 0.5)")
    g.add_argument("--ema", type=probability, default=S, metavar="RATE",
                   help="moving-average rate of the discriminator weights behind test_error_ema (default 1e-4; 0: off)")
    g.add_argument("--lr-decay-fraction", dest="lr_decay_fraction", type=probability, default=S, metavar="F",
                   help="the learning rate falls linearly to 0 over the last F of the epochs (default 1/3; 0: off)")
    g.add_argument("--init-size", dest="init_size", type=nonnegative_int, default=S, metavar="N",
                   help="training images for the data-dependent initialisation (default 500; 0: none)")
    g.add_argument("--adam-eps", dest="adam_eps", type=nonnegative_float, default=S, metavar="EPS",
                   help="Adam's epsilon (default 1e-4, which mimics the original's sqrt(v + 1e-8))")
    add_evaluation_option(parser)


def add_infogan_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("InfoGAN (Chen et al. 2016; the paper's MNIST model)")
    g.add_argument("--noise-dim", dest="noise_dim", type=nonnegative_int, default=S,
                   help="incompressible noise dimension (default 62)")
    g.add_argument("--categorical", type=positive_int, nargs="*", default=S, metavar="K",
                   help="categorical codes, by number of values (default: one with 10; no value: none)")
    g.add_argument("--continuous", type=nonnegative_int, default=S, metavar="N",
                   help="continuous codes, each U(-1, 1) (default 2)")
    g.add_argument("--learn-std", dest="learn_std", action=argparse.BooleanOptionalAction, default=S,
                   help="Q learns the standard deviation of the continuous codes (default: fixed to 1)")
    g.add_argument("--info-weight", dest="info_weight", type=nonnegative_float, default=S, metavar="LAMBDA",
                   help="weight of the mutual-information term of the categorical codes (default 1)")
    g.add_argument("--info-weight-continuous", dest="info_weight_continuous", type=nonnegative_float, default=S,
                   metavar="LAMBDA", help="the same for the continuous codes (default 1)")
    g.add_argument("--g-lr", dest="g_lr", type=positive_float, default=S,
                   help="generator learning rate (default 1e-3; --lr is the discriminator's, default 2e-4)")
    g.add_argument("--ngf", type=positive_int, default=S, help="generator up-convolution width (default 64)")
    g.add_argument("--ndf", type=positive_int, default=S, help="discriminator convolution width (default 64)")
    g.add_argument("--fc-dim", dest="fc_dim", type=positive_int, default=S, help="dense layer width (default 1024)")
    g.add_argument("--q-dim", dest="q_dim", type=positive_int, default=S, help="Q head width (default 128)")
    add_evaluation_option(parser)


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    add_trainer_options(parser, command_defaults(command))
    if command == "gan":
        add_gan_options(parser)
    if command == "ssgan":
        add_ssgan_options(parser)
    if command == "infogan":
        add_infogan_options(parser)
    if command in LIKELIHOOD_OPTIONS:
        LIKELIHOOD_OPTIONS[command](parser)
    add_common_options(parser, budget="epochs", device="auto")


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Packaged defaults for the command and dataset, then --config, then flags; the dataset name made canonical
    and the data location made absolute, so a resumed run finds its data from any working directory."""
    from rlgen.common.config import packaged_config
    from rlgen.vision.datasets import canonical_name, data_root

    # `--resume RUN_DIR` alone is enough: resolve_config takes the dataset from the run's saved config.
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

    data = load_dataset(cfg["dataset"], cfg.get("train_split", "train"), cfg["data_dir"],
                        download=bool(cfg.get("download")),
                        verify=bool(cfg.get("verify_checksums", True)), binarize=cfg.get("binarize"),
                        seed=cfg["seed"])
    if cfg.get("limit_images"):
        data = data.take(int(cfg["limit_images"]))
    return data


def train_image_model(args: argparse.Namespace, build_model: Callable[[dict[str, Any], Any, Any], Any],
                      finish: Callable[[Any, Any, dict[str, Any]], dict[str, Any]] | None = None,
                      evaluate: bool = False) -> None:
    """Resolve the configuration, load the data, open (or resume) the run and train ``build_model(cfg, train,
    test)``. With ``evaluate``, ``test`` is the test split (None with the config's ``evaluate: false``), on which
    the trainer evaluates the model after every epoch (``eval/...`` in progress.csv); without, it is None.
    ``finish(model, run_dir, cfg)`` runs after training and returns figures added to ``summary.json``."""
    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.device import resolve_device
    from rlgen.common.seeding import set_seed
    from rlgen.vision.trainer import Trainer, TrainerConfig

    def load_data(cfg: dict[str, Any]):
        return load_training_data(cfg), load_test_data(cfg) if evaluate else None

    cfg = resolve(args)
    if "resume" in vars(args):
        run_dir = open_run(args, cfg, tag=dataset_tag(cfg["dataset"]))
        cfg = run_dir.config
        data, test = load_data(cfg)
    else:  # load first: missing data should not leave an empty run directory behind
        data, test = load_data(cfg)
        run_dir = open_run(args, cfg, tag=dataset_tag(cfg["dataset"]))
    device = resolve_device(cfg["device"])  # a resumed run's own, unless --device moves it
    log.info("run directory: %s", run_dir.path)
    log.info("%s: %d training images of shape %s%s on %s", cfg["dataset"], len(data), data.image_shape,
             f", {len(test)} test images" if test is not None else "", device)
    set_seed(cfg["seed"])
    model = build_model(cfg, data, test)
    summary = Trainer(model, run_dir, data, TrainerConfig.from_config(cfg), device, eval_data=test).fit()
    if finish is not None:
        summary.update(finish(model, run_dir, cfg))
        atomic_write_json(run_dir.path / "summary.json", summary)
    report_done(summary, run_dir)


def report_done(summary: dict[str, Any], run_dir) -> None:
    """The closing lines of a training command: budget, wall clock, speed (unknown when a resumed run had nothing
    left to train) and where the results are."""
    speed = f" ({summary['images_per_s']} images/s)" if summary.get("images_per_s") else ""
    log.info("done: %d epochs, %d steps in %.0f s%s", summary["epochs"], summary["steps"], summary["wall_clock_s"],
             speed)
    print(f"results: {run_dir.path} (config.json, progress.csv, tb/, checkpoints/, samples/, summary.json)")


def build_gan(cfg: dict[str, Any], data, test):
    from rlgen.vision.gan import DCGAN, GANOptions

    return DCGAN(GANOptions.from_config(cfg, data.image_shape))


def score_gan_samples(model, run_dir, cfg: dict[str, Any]) -> dict[str, Any]:
    """With ``score_samples > 0``: the Frechet distance between the classifier features of that many samples and
    of the test images, and the Inception-score analogue of the samples (:mod:`rlgen.vision.metrics`)."""
    import numpy as np
    import torch

    from rlgen.common.device import resolve_device
    from rlgen.vision.classifier import cached_classifier, default_classifier_path
    from rlgen.vision.datasets import load_dataset
    from rlgen.vision.metrics import generative_scores

    n = int(cfg.get("score_samples") or 0)
    if n == 0:
        return {}
    device = resolve_device(cfg["device"])
    # Unlimited data for the classifier: --limit-images shrinks the GAN's training set, not the yardstick.
    load = {"data_dir": cfg["data_dir"], "download": bool(cfg.get("download")),
            "verify": bool(cfg.get("verify_checksums", True))}
    train, test = load_dataset(cfg["dataset"], "train", **load), load_dataset(cfg["dataset"], "test", **load)
    path = cfg.get("metrics_classifier") or default_classifier_path(train)
    classifier, info = cached_classifier(path, train, test, epochs=int(cfg.get("classifier_epochs", 5)),
                                         device=device)
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg["seed"])
        samples = torch.cat([model.sample(min(1000, n - i)).float().clamp(0, 1).cpu() for i in range(0, n, 1000)])
    # As many training images as samples, drawn by the seed: their distance to the test images is the floor.
    real = train.images[np.random.default_rng(cfg["seed"]).permutation(len(train))[:n]]
    scores = generative_scores(classifier, samples, test, splits=10, device=device, real_samples=real)
    log.info("%d samples: Frechet distance %.3f (%d training images: %.3f), Inception-score analogue %.3f "
             "(test images: %.3f)", n, scores["fid"], len(real), scores["fid_real"], scores["inception_score"],
             scores["inception_score_real"])
    return {**scores, "metrics_classifier": str(path), "metrics_classifier_test_error": info.get("test_error")}


BUILDERS = {"gan": (build_gan, score_gan_samples)}


def run(args: argparse.Namespace) -> None:
    if args.command in EVALUATED_COMMANDS:
        train_image_model(args, *EVALUATED_COMMANDS[args.command], evaluate=True)
    else:
        train_image_model(args, *BUILDERS[args.command])


# ----------------------------------------------------------------------------------------------------------------
# ssgan and infogan: models built from the training data and evaluated on the test split


def load_test_data(cfg: dict[str, Any]):
    """The evaluation split (``eval_split``: test, or valid) of the run's dataset (all of it: --limit-images applies
    to training only), or None with ``evaluate: false``."""
    from rlgen.common.errors import UserError
    from rlgen.vision.datasets import load_dataset

    if not cfg.get("evaluate", True):
        return None
    try:
        return load_dataset(cfg["dataset"], cfg.get("eval_split", "test"), cfg["data_dir"],
                            download=bool(cfg.get("download")),
                            verify=bool(cfg.get("verify_checksums", True)), binarize=cfg.get("binarize"),
                            seed=cfg["seed"])
    except UserError as exc:
        raise UserError(f"{exc}; or pass --no-evaluate to train without the test split") from exc


def build_ssgan(cfg: dict[str, Any], data, test):
    import numpy as np
    import torch

    from rlgen.common.errors import UserError
    from rlgen.vision.gan.ssgan import SSGAN, SSGANOptions, class_balanced_subset

    if data.labels is None:
        raise UserError(f"ssgan needs labelled training data; {cfg['dataset']} has no labels (an .npz needs y or "
                        "y_train)")
    seed = cfg["seed"] if cfg.get("labels_seed") is None else int(cfg["labels_seed"])
    classes = int(data.num_classes)
    chosen = class_balanced_subset(data.labels, int(cfg["labels"]), seed, classes)
    options = SSGANOptions.from_config(cfg, data.image_shape, classes, len(data) // int(cfg["batch_size"]))
    eval_size = len(test) if test is not None and test.labels is not None else None
    # The whole training set also feeds the generator's own stream of real batches (the original's trainx_unl2).
    model = SSGAN(options, torch.from_numpy(data.images[chosen]), torch.from_numpy(data.labels[chosen]), eval_size,
                  unlabelled_x=torch.from_numpy(data.images))
    if cfg.get("init_size"):
        pick = np.random.default_rng(seed).permutation(len(data))[:int(cfg["init_size"])]
        model.initialize(torch.from_numpy(data.images[pick]))
    log.info("labelled subset: %d images (%d per class), drawn with seed %d", len(chosen), len(chosen) // classes,
             seed)
    return model


def finish_ssgan(model, run_dir, cfg: dict[str, Any]) -> dict[str, Any]:
    result = {"labels": int(cfg["labels"]), **model.last_evaluation}
    if "test_error" in model.last_evaluation:
        ema = model.last_evaluation.get("test_error_ema")
        log.info("test error %.2f%%%s on %d test images with %d labels", 100 * model.last_evaluation["test_error"],
                 f" (moving average of the weights: {100 * ema:.2f}%)" if ema is not None else "",
                 model.last_evaluation["test_images"], cfg["labels"])
    return result


def build_infogan(cfg: dict[str, Any], data, test):
    from rlgen.vision.gan.infogan import InfoGAN, InfoGANOptions

    eval_size = len(test) if test is not None and test.labels is not None else None
    return InfoGAN(InfoGANOptions.from_config(cfg, data.image_shape), eval_size)


def finish_infogan(model, run_dir, cfg: dict[str, Any]) -> dict[str, Any]:
    paths = model.save_traversals(run_dir.path / "samples")
    log.info("latent traversals: %s", ", ".join(str(p) for p in paths))
    if "categorical_error" in model.last_evaluation:
        log.info("categorical code: %.2f%% error on %d test images (best one-to-one matching of codes to labels)",
                 100 * model.last_evaluation["categorical_error"], model.last_evaluation["test_images"])
    return {"traversals": [p.name for p in paths], **model.last_evaluation}


EVALUATED_COMMANDS = {"ssgan": (build_ssgan, finish_ssgan), "infogan": (build_infogan, finish_infogan)}


# ----------------------------------------------------------------------------------------------------------------
# vae, pixelcnn and pixelrnn (issue #6): likelihood models, evaluated on the test split after every epoch


def add_binarize_option(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--binarize", choices=("dynamic", "static", "none"), default=S,
                        help="dynamic: a fresh Bernoulli draw of every training batch (the default on MNIST; "
                             "likelihoods in nats/image); static: one fixed draw; none: 8-bit data (256-way softmax "
                             "or discretised logistic; likelihoods in bits/dim; the default on other datasets)")


def add_vae_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("VAE (Kingma et al. 2016: inverse autoregressive flow)")
    g.add_argument("--z-dim", dest="z_dim", type=positive_int, default=S,
                   help="latent dimensions (with --bidirectional: latent feature maps per layer; default 32)")
    g.add_argument("--hidden", type=positive_int, default=S, help="convolution channels (default 64)")
    g.add_argument("--res-blocks", dest="res_blocks", type=nonnegative_int, default=S,
                   help="residual blocks per resolution in encoder and decoder (default 1)")
    g.add_argument("--iaf-steps", dest="iaf_steps", type=nonnegative_int, default=S, metavar="N",
                   help="IAF steps on the posterior, ordering reversed between steps (default 0: diagonal Gaussian)")
    g.add_argument("--iaf-hidden", dest="iaf_hidden", type=positive_int, default=S,
                   help="units per MADE hidden layer (default 320)")
    g.add_argument("--iaf-depth", dest="iaf_depth", type=positive_int, default=S,
                   help="hidden layers per IAF step (default 2)")
    g.add_argument("--context-dim", dest="context_dim", type=positive_int, default=S,
                   help="size of the encoder's context h fed to every IAF step (default 64)")
    g.add_argument("--free-bits", dest="free_bits", type=nonnegative_float, default=S, metavar="NATS",
                   help="free bits: minimum KL per latent dimension (per feature map with --bidirectional), averaged "
                        "over the minibatch (default 0: off)")
    g.add_argument("--iw-samples", dest="iw_samples", type=nonnegative_int, default=S, metavar="K",
                   help="importance samples of the test log p(x) reported besides the ELBO after each epoch "
                        "(default 8; 0: off)")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=S,
                   help="the paper's deeper ResNet VAE: several stochastic layers, bidirectional inference")
    g.add_argument("--levels", type=positive_int, default=S,
                   help="--bidirectional: resolutions (default 2)")
    g.add_argument("--blocks-per-level", dest="blocks_per_level", type=positive_int, default=S,
                   help="--bidirectional: stochastic layers per resolution (default 2)")
    add_binarize_option(g)
    add_evaluation_option(parser)


def add_pixel_options(parser: argparse.ArgumentParser, command: str) -> None:
    g = parser.add_argument_group("PixelRNN (van den Oord et al. 2016)" if command == "pixelrnn"
                                  else "PixelCNN (van den Oord et al. 2016)")
    if command == "pixelrnn":
        g.add_argument("--variant", choices=("rowlstm", "diagbilstm"), default=S,
                       help="Row LSTM or Diagonal BiLSTM layers (default diagbilstm)")
    g.add_argument("--hidden", type=positive_int, default=S,
                   help="h: the layers carry 2h features (default 16 for pixelrnn, 32 for pixelcnn)")
    g.add_argument("--layers", type=positive_int, default=S,
                   help="LSTM layers / residual blocks (default 7 for pixelrnn, 12 for pixelcnn)")
    g.add_argument("--output-hidden", dest="output_hidden", type=positive_int, default=S,
                   help="features of the two 1x1 output convolutions (default 32 / 64)")
    if command == "pixelrnn":
        g.add_argument("--skip-connections", dest="skip_connections", action=argparse.BooleanOptionalAction,
                       default=S, help="every layer's map, through its own 1x1 convolution, feeds the output layers "
                       "besides the residual stream (the paper's; default on)")
    add_binarize_option(g)
    add_evaluation_option(parser)


LIKELIHOOD_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "vae": add_vae_options,
    "pixelcnn": lambda parser: add_pixel_options(parser, "pixelcnn"),
    "pixelrnn": lambda parser: add_pixel_options(parser, "pixelrnn"),
}


def binarized(cfg: dict[str, Any]) -> bool:
    """Binary pixels (Bernoulli likelihoods, nats per image): binarised by rlgen or already binary."""
    from rlgen.vision.datasets import BINARY_DATASETS

    return cfg.get("binarize") in ("static", "dynamic") or cfg.get("dataset") in BINARY_DATASETS


def likelihood_output(cfg: dict[str, Any], eight_bit: str) -> str:
    """The pixel likelihood of a run, said once: Bernoulli (nats per image) for binary pixels, else ``eight_bit``
    (bits per dimension) -- so that an .npz of MNIST, which the per-dataset defaults do not recognise, does not
    train 8-bit unannounced."""
    if binarized(cfg):
        log.info("binary pixels: Bernoulli likelihood, in nats per image")
        return "bernoulli"
    log.info("8-bit pixels (--binarize none): %s likelihood, in bits per dimension; --binarize dynamic for the "
             "binarised-MNIST protocol (nats per image)", "discretised logistic" if eight_bit == "logistic" else
             "256-way softmax")
    return eight_bit


def build_vae(cfg: dict[str, Any], data, test):
    from rlgen.vision.likelihood import VAEOptions, make_vae

    return make_vae(VAEOptions.from_config(cfg, data.image_shape, likelihood_output(cfg, "logistic")))


def build_pixelcnn(cfg: dict[str, Any], data, test):
    from rlgen.vision.likelihood import PixelCNN, PixelCNNOptions

    return PixelCNN(PixelCNNOptions.from_config(cfg, data.image_shape, likelihood_output(cfg, "softmax")))


def build_pixelrnn(cfg: dict[str, Any], data, test):
    from rlgen.vision.likelihood import PixelRNN, PixelRNNOptions

    return PixelRNN(PixelRNNOptions.from_config(cfg, data.image_shape, likelihood_output(cfg, "softmax")))


def finish_likelihood(model, run_dir, cfg: dict[str, Any]) -> dict[str, Any]:
    """The last epoch's test figures (from progress.csv) and the time to sample the last grid, for summary.json."""
    import csv

    result: dict[str, Any] = {"binarize": cfg.get("binarize")}
    if getattr(model, "last_sample_seconds", None) is not None:
        result["sample_seconds"] = round(model.last_sample_seconds, 3)
        result["sample_images"] = int(cfg["n_samples"])
    progress = run_dir.path / "progress.csv"
    rows = []
    if progress.is_file():
        with open(progress, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("eval/loss")]
    if rows:
        last = {k[len("eval/"):]: float(v) for k, v in rows[-1].items() if k.startswith("eval/") and v}
        result.update({f"test_{k}": v for k, v in last.items()})
        unit = "nats/image" if binarized(cfg) else "bits/dim"
        figures = [f"loss {last['loss']:.4g} {unit}"]
        if "nll_iw_nats" in last:
            iw = (f"{last['nll_iw_nats']:.2f} nats/image" if binarized(cfg)
                  else f"{last['nll_iw_bits_per_dim']:.4f} bits/dim")
            figures.append(f"-log p(x) from {cfg.get('iw_samples')} importance samples {iw}")
        log.info("test split after epoch %d: %s", int(cfg["epochs"]), "; ".join(figures))
    return result


EVALUATED_COMMANDS.update({"vae": (build_vae, finish_likelihood), "pixelcnn": (build_pixelcnn, finish_likelihood),
                           "pixelrnn": (build_pixelrnn, finish_likelihood)})
