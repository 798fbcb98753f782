"""The options of ``rlgen gan|ssgan|infogan|vae|pixelcnn|pixelrnn`` and their resolution into the run configuration
that :func:`rlgen.vision.train.train` runs.

Every image command takes the data options (:class:`DataOptions`), the trainer's
(:class:`~rlgen.vision.trainer.TrainerConfig`) and its model's (the model's ``options_class`` and
``extra_options``, :data:`rlgen.vision.models.MODELS`); each is declared once, as a dataclass field whose default
is the option's. ``rlgen/configs/vision.yaml`` holds only what a command or a dataset sets otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgen.common.config import keyword_defaults
from rlgen.common.errors import UserError
from rlgen.common.options import Flag, flags_of, option
from rlgen.common.resolve import resolve_config, resume_request, run_flags

WHERE = "rlgen/configs/vision.yaml"


@dataclass
class DataOptions:
    """Which images a model trains and is evaluated on."""

    dataset: str | None = option(None, "mnist, fashion-mnist, cifar10, binarized_mnist (Larochelle & Murray's fixed "
                                 "binarisation), or a path to an .npz file with x/y (or x_train/y_train) arrays")
    data_dir: str | None = option(None, "folder holding the dataset files (default: $RLGEN_DATA, else "
                                  "~/.cache/rlgen/data)", metavar="DIR")
    download: bool = option(False, "download missing official files into --data-dir (checked against their MD5s)")
    verify_checksums: bool = option(True, "refuse official-looking files whose checksums do not match")
    limit_images: int | None = option(None, "train on the first N images only", minimum=1, metavar="N")
    train_split: str = option("train", "the split to train on (train+valid: the binarised MNIST's final models)",
                              choices=("train", "train+valid"))
    eval_split: str = option("test", "the split evaluated after each epoch (valid on the binarised MNIST, whose test "
                             "split is for the final report)", choices=("test", "valid"))
    evaluate: bool = option(True, "evaluate the evaluation split after each epoch (off: train without it)")


def _skipped(command: str) -> tuple[str, ...]:
    """Options that ``command``'s model does not take: the evaluation of a model scored only after training, the
    binarisation of a model without a likelihood."""
    from rlgen.vision.models import model_class
    from rlgen.vision.trainer import LikelihoodModel

    model = model_class(command)
    return ("evaluate",) * (not model.evaluated) + ("binarize",) * (not issubclass(model, LikelihoodModel))


#: options-dataclass fields that come from the data or the trainer, not from the run configuration's model options
DERIVED_FIELDS = ("image_shape", "output", "num_classes")


def _option_classes(command: str) -> list[tuple[str, type, tuple[str, ...]]]:
    """``(help group, options dataclass, fields it leaves out)`` of each dataclass that ``command`` takes options from:
    the data's and the trainer's (but what the model does not take), its model's."""
    from rlgen.vision.models import model_class
    from rlgen.vision.trainer import TrainerConfig

    model, skip = model_class(command), _skipped(command)
    return [("data", DataOptions, skip), ("training", TrainerConfig, skip),
            *((model.title, options, DERIVED_FIELDS) for options in (model.options_class, *model.extra_options))]


def option_defaults(command: str) -> dict[str, Any]:
    """The defaults of ``command``'s option dataclasses (data, trainer, model), as a config file holds them."""
    out: dict[str, Any] = {}
    for _, options, skip in _option_classes(command):
        out.update(keyword_defaults(options, exclude=skip))
    return out


def flag_groups(command: str) -> list[tuple[str, list[Flag]]]:
    """``command``'s options in the groups of its --help (with ``--preset`` where its section has presets)."""
    groups: dict[str, list[Flag]] = {}
    for title, options, skip in _option_classes(command):
        groups.setdefault(title, []).extend(flags_of(options, skip=skip))
    presets = _section(command).get("presets")
    if presets:
        groups[_option_classes(command)[-1][0]].insert(0, Flag(
            "preset", f"a named set of this command's options ({WHERE})", choices=tuple(presets)))
    return [*groups.items(), ("run options", run_flags("epochs"))]


def _section(command: str) -> dict[str, Any]:
    from rlgen.common.config import packaged_config

    return packaged_config("vision.yaml")[command]


def declared(command: str) -> list[Flag]:
    """Every option of ``command``."""
    return [flag for _, group in flag_groups(command) for flag in group]


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``command``'s defaults (the option dataclasses' fields, then its section of vision.yaml, then its default
    preset's options: what --help quotes), the section and its file."""
    section = _section(command)
    defaults = _command_defaults(command, section)
    return {**defaults, **section.get("presets", {}).get(defaults.get("preset"), {})}, section, WHERE


def _command_defaults(command: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """The option dataclasses' defaults, then the command's section of vision.yaml (no preset applied)."""
    return {**option_defaults(command), **section["defaults"]}


def resolve(command: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The run configuration of ``rlgen <command>`` with ``flags``: the packaged defaults for the command and dataset,
    then --config, then flags; the dataset name made canonical and the data location absolute, so that a resumed
    run finds its data from any working directory. (``--resume RUN_DIR`` alone is enough: the dataset is the run's.)"""
    from rlgen.vision.datasets import BINARIZED_MNIST, canonical_name, data_root, dataset_splits

    section = _section(command)
    defaults = _command_defaults(command, section)
    cfg = resolve_config(flags, dict(defaults, command=command), declared(command), section.get("tasks", {}),
                         task_key="dataset", presets=section.get("presets"), canonical=canonical_name)
    cfg["dataset"] = canonical_name(str(cfg["dataset"]))
    if cfg["dataset"].endswith(".npz"):
        path = Path(cfg["dataset"]).expanduser()
        if not path.is_file() and (data_root(cfg["data_dir"]) / path).is_file():
            path = data_root(cfg["data_dir"]) / path
        cfg["dataset"] = str(path.resolve())
    cfg["data_dir"] = str(data_root(cfg["data_dir"]).resolve())
    splits = dataset_splits(cfg["dataset"])
    for key in ("train_split", "eval_split"):
        if key in cfg and cfg[key] not in splits:
            raise UserError(f"--{key.replace('_', '-')} {cfg[key]!r}: {Path(cfg['dataset']).name} has the splits "
                            f"{', '.join(splits)}" + ("" if cfg["dataset"] == BINARIZED_MNIST else
                                                      " (valid is the binarised MNIST's: --dataset binarized_mnist)"))
    return cfg


def run(command: str, flags: Mapping[str, Any]) -> None:
    """``rlgen <command>`` with ``flags`` (the options the user gave, by key)."""
    from rlgen.vision.train import train

    train(resolve(command, flags), resume_request(flags, declared(command)))
