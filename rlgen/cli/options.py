"""Options every command shares, and turning them plus config files into one resolved configuration."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlgen.common.config import check_known_keys, deep_merge, load_config_file
from rlgen.common.device import DEVICE_CHOICES
from rlgen.common.errors import UserError
from rlgen.common.run_dir import RESUME_OPTIONS, Resume, saved_run_config

# Options default to SUPPRESS so that only flags the user typed override the config file.
S = argparse.SUPPRESS


MAX_COUNT = 10**12  # budgets, sizes and counts beyond this are typos (1e12 env steps is years of CPU)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 0 < value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be a positive integer up to {MAX_COUNT:.0e}, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (NaN and infinities are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def probability(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _flag_type(kind: type, meta: Mapping[str, Any]) -> Callable[[str], Any]:
    """The argparse type of an :func:`rlgen.common.options.option` field of type ``kind`` with its bounds."""
    bounds = (meta.get("minimum"), meta.get("maximum"), bool(meta.get("strict")))
    table: dict[tuple[type, tuple[Any, Any, bool]], Callable[[str], Any]] = {
        (int, (None, None, False)): int, (int, (1, None, False)): positive_int, (int, (0, None, False)): nonnegative_int,
        (float, (None, None, False)): finite_float, (float, (0, None, True)): positive_float,
        (float, (0, None, False)): nonnegative_float, (float, (0, 1, False)): probability,
        (str, (None, None, False)): str}
    if (kind, bounds) not in table:
        raise TypeError(f"no flag type for {kind.__name__} with bounds {bounds}")
    return table[(kind, bounds)]


def add_dataclass_flags(group: argparse._ActionsContainer, options: type, only: Sequence[str] | None = None,
                        skip: Sequence[str] = ()) -> None:
    """A flag for every :func:`rlgen.common.options.option` field of the dataclass ``options`` (``--field-name``;
    bool fields get ``--x/--no-x``, tuple fields take one or more values): the field declares its help, bounds and
    choices once, its default is the run configuration's."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(options)
    for field in dataclasses.fields(options):
        meta = field.metadata
        if "help" not in meta or field.name in skip or (only is not None and field.name not in only):
            continue
        kind = hints[field.name]
        kwargs: dict[str, Any] = {"dest": field.name, "default": S, "help": meta["help"]}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            kwargs["type"] = _flag_type(typing.get_args(kind)[0], meta)
            kwargs["nargs"] = "*" if meta.get("optional_list") else "+"
        elif meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        else:
            kwargs["type"] = _flag_type(kind, meta)
            if meta.get("const") is not None:
                kwargs.update(nargs="?", const=meta["const"])
        group.add_argument("--" + field.name.replace("_", "-"), **kwargs)


def add_common_options(parser: argparse.ArgumentParser, budget: str = "steps") -> None:
    """--seed, --device, the budget (--steps or --epochs), --out, --resume, --config."""
    g = parser.add_argument_group("run options")
    g.add_argument("--seed", type=int, default=S, help="random seed; fixes a run on a given CPU type")
    g.add_argument("--device", choices=DEVICE_CHOICES, default=S,
                   help="auto picks CUDA when present")
    if budget == "steps":
        g.add_argument("--steps", type=positive_int, default=S, help="training budget in env steps")
    else:
        g.add_argument("--epochs", type=positive_int, default=S, help="training budget in epochs")
    g.add_argument("--out", default=S, metavar="DIR", help="parent directory of run directories")
    g.add_argument("--resume", nargs="?", const="latest", default=S, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint: its directory, or nothing for "
                        "the newest run of the same command, env/dataset and seed under --out")
    g.add_argument("--config", default=S, metavar="FILE", help="YAML or JSON file of options; flags override it")


def quote_defaults(parser: argparse.ArgumentParser, defaults: Mapping[str, Any], section: Mapping[str, Any],
                   where: str) -> None:
    """Append each flag's packaged default (``where``, the one place it is written) to its help text, unless the
    text already speaks of its default; a value that a task entry (or a preset) of ``section`` changes says so."""
    varies = {key for entry in [*section.get("tasks", {}).values(), *section.get("presets", {}).values()]
              for key in entry}
    for action in parser._actions:  # argparse has no public list of them
        value = defaults.get(action.dest)
        if not action.option_strings or value is None or not action.help or "default" in action.help:
            continue  # (None: an input the user names, or an option off unless given)
        if isinstance(value, bool):
            text = "on" if value else "off"
            if isinstance(action, argparse._StoreFalseAction):  # --no-x says what x is by default
                text = f"{action.option_strings[0].removeprefix('--no-')} {text}"
        elif isinstance(value, list):
            text = " ".join(map(str, value)) or "none"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        action.help = f"{action.help} (default {text}{f', some tasks their own: {where}' if action.dest in varies else ''})"


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user actually typed (dashes become underscores), without the CLI's own fields."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "handler", "parser")}


def check_file_values(values: Mapping[str, Any], parser: argparse.ArgumentParser, source: str) -> None:
    """Check a config file's values with the type, choices and arity of the flag that sets the same key, so that a
    value a flag would refuse (NaN, a zero learning rate, a count in words) is refused in a file too, before any
    run directory exists. Keys without a flag (``algo_kwargs``, ``discriminator``, ...) are checked where they
    are used."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}  # argparse has no public list of them
    for key, value in values.items():
        action = actions.get(key)
        if action is None or value is None:
            continue
        try:
            _check_flag_value(action, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise UserError(f"{source}: {key}: {exc}; fix the file") from None


def _check_flag_value(action: argparse.Action, value: Any) -> None:
    if action.type is None and action.choices is None and action.nargs != 0:
        return  # a free-form value (a path, a name, bench's seeds): checked where it is used
    if action.nargs == 0:  # a switch: store_true/false/const, --x/--no-x
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return
    many = action.nargs in ("*", "+") or isinstance(action.nargs, int)
    if isinstance(value, list) != many:
        raise ValueError(f"expected {'a list' if many else 'one value'}, got {value!r}")
    for item in value if many else [value]:
        if isinstance(item, bool) and action.type not in (None, str):
            raise ValueError(f"expected a number, got {item!r}")
        if action.type is not None:
            action.type(str(item))
        if action.choices is not None and item not in action.choices:
            raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, got {item!r}")


def resolve_config(args: argparse.Namespace, defaults: Mapping[str, Any],
                   task_defaults: Mapping[str, Mapping[str, Any]] | None = None, task_key: str = "env",
                   presets: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """defaults < the preset < per-task defaults (``task_defaults[config[task_key]]``) < ``--config FILE`` < flags.

    With ``presets``, the config's ``preset`` key (a flag, the file, the task's entry or the defaults, in that order
    of precedence) names one of them: a named set of options over the defaults (e.g. GAIL's ``paper`` settings)."""
    flags = flags_of(args)
    file_cfg = load_config_file(flags.pop("config")) if "config" in flags else {}
    resume = flags.pop("resume", None)
    known = dict(defaults)
    source = f"config file {args.config}" if "config" in vars(args) else "config"
    check_known_keys(file_cfg, known, source)
    if "parser" in vars(args):
        check_file_values(file_cfg, args.parser, source)
    task = flags.get(task_key, file_cfg.get(task_key, defaults.get(task_key)))
    if resume not in (None, "latest"):
        _check_same_command(Path(resume), defaults.get("command"))
    if task is None and resume not in (None, "latest"):  # `--resume RUN_DIR` alone: the run names its own task
        task = _task_of_run(Path(resume), task_key)
        if task is not None:
            flags[task_key] = task
    if task is None:
        raise UserError(f"no --{task_key.replace('_', '-')} given; pass one (e.g. --{task_key} ...) or set it in --config")
    task_cfg = (task_defaults or {}).get(str(task), {})
    cfg = dict(defaults)
    if presets:
        preset = flags.get("preset", file_cfg.get("preset", task_cfg.get("preset", defaults.get("preset"))))
        if preset not in presets:
            raise UserError(f"unknown preset {preset!r}; use one of {', '.join(presets)}")
        cfg = deep_merge(cfg, presets[preset])
        cfg["preset"] = preset
    cfg = deep_merge(cfg, task_cfg)
    cfg = deep_merge(cfg, file_cfg)
    cfg = deep_merge(cfg, flags)
    for key in ("steps", "epochs"):
        if key in cfg and (not isinstance(cfg[key], int) or cfg[key] <= 0):
            raise UserError(f"{key} must be a positive integer, got {cfg[key]!r}; fix --{key} or the config file")
    return cfg


def _check_same_command(path: Path, command: str | None) -> None:
    """``rlgen X --resume RUN`` where RUN was made by another command fails here, saying which."""
    if command is None or not (path / "config.json").is_file():
        return  # not a run directory: open_run says so
    made_by = saved_run_config(path).get("command")
    if made_by is not None and made_by != command:
        raise UserError(f"--resume {path} is a run of 'rlgen {made_by}', not of 'rlgen {command}'; resume it with "
                        f"'rlgen {made_by} --resume {path}'")


def _task_of_run(path: Path, task_key: str) -> Any:
    """The env/dataset that the run directory ``path`` was started with (its short name where it saved one)."""
    saved = saved_run_config(path)
    return saved.get(f"{task_key}_name") or saved.get(task_key)


def resume_request(args: argparse.Namespace) -> Resume | None:
    """``--resume`` and the flags given with it that change a resumed run, or None for a new run."""
    if "resume" not in vars(args):
        return None
    return Resume(args.resume, {key: getattr(args, key) for key in RESUME_OPTIONS if key in vars(args)})
