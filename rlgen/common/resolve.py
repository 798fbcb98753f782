"""A command's run configuration from what the user gave: packaged defaults < the preset < the task's entry <
``--config FILE`` < flags, checked before anything is made. Each command family's ``resolve(command, flags)``
(:mod:`rlgen.vision.config`, :mod:`rlgen.imitation.config`, :mod:`rlgen.agents.rl_config`) calls
:func:`resolve_config` and adds what is its own; the command line only parses the flags."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlgen.common.config import check_known_keys, deep_merge, load_config_file
from rlgen.common.device import DEVICE_CHOICES
from rlgen.common.errors import UserError
from rlgen.common.options import Flag, check_file_values, lookup, nest
from rlgen.common.run_dir import RESUME_OPTIONS, Resume, saved_run_config

#: the largest seed: numpy's and gymnasium's seeds are below 2**32, and runs add offsets to theirs (evaluation envs,
#: a best-of's further starts)
MAX_SEED = 2**31 - 1


def run_flags(budget: str = "steps", **help: str) -> list[Flag]:
    """The options of every run: --seed, --device, --torch-threads, the budget (``steps`` or ``epochs``), --out,
    --resume, --config (``help`` rewords some of them for a command)."""
    texts = {"seed": "random seed; fixes a run on a given CPU type", "device": "auto picks CUDA when present",
             "torch_threads": "torch's intra-op threads; 0: as torch sets them (OMP_NUM_THREADS, else one per core)",
             "steps": "training budget in env steps", "epochs": "training budget in epochs",
             "out": "parent directory of run directories",
             "resume": "continue an interrupted run from its last checkpoint: its directory, or nothing for the newest "
                       "run of the same command, env/dataset and seed under --out",
             "config": "YAML or JSON file of options; flags override it", **help}
    return [Flag("seed", texts["seed"], kind=int, minimum=0, maximum=MAX_SEED),
            Flag("device", texts["device"], choices=DEVICE_CHOICES),
            Flag("torch_threads", texts["torch_threads"], kind=int, minimum=0, metavar="N"),
            Flag(budget, texts[budget], kind=int, minimum=1),
            Flag("out", texts["out"], metavar="DIR"),
            Flag("resume", texts["resume"], metavar="RUN_DIR", const="latest"),
            Flag("config", texts["config"], metavar="FILE")]


def resolve_config(flags: Mapping[str, Any], defaults: Mapping[str, Any], declared: Sequence[Flag],
                   tasks: Mapping[str, Mapping[str, Any]] | None = None, task_key: str = "env",
                   presets: Mapping[str, Mapping[str, Any]] | None = None,
                   canonical: Callable[[str], str] = str) -> dict[str, Any]:
    """The configuration of a run of ``defaults["command"]`` from ``flags`` (the options the user typed, by key,
    with ``config`` and ``resume``); ``declared``: the command's flags, whose rules a config file's values meet.

    ``tasks[config[task_key]]`` is the task's entry. With ``presets``, the ``preset`` key (a flag, the file, the
    task's entry or the defaults, in that order) names one of them: a set of options over the defaults (e.g.
    GAIL's ``paper`` settings). ``canonical`` turns a task as typed into the name a run saves (dataset aliases)."""
    flags = dict(flags)
    path = flags.pop("config", None)
    file_cfg = load_config_file(path) if path is not None else {}
    if path is not None:
        _check_options_file(Path(path), file_cfg, defaults.get("command"))
    resume = flags.pop("resume", None)
    flags = nest(flags)
    check_known_keys(flags, defaults, "options")  # (a Python caller's options are checked like a file's)
    check_file_values(flags, declared, "options", fix="fix the option")
    source = f"config file {path}"
    check_known_keys(file_cfg, defaults, source)
    check_file_values(file_cfg, declared, source)
    task = flags.get(task_key, file_cfg.get(task_key, defaults.get(task_key)))
    if resume not in (None, "latest"):
        saved_task = _check_resumed_run(Path(resume), defaults.get("command"), task, task_key, canonical)
        if task is None:  # `--resume RUN_DIR` alone: the run names its own task
            task = flags[task_key] = saved_task
    if task is None:
        example = next(iter(tasks or {}), "...")
        raise UserError(f"no --{task_key.replace('_', '-')} given; pass one (e.g. --{task_key} {example}) or set "
                        "it in --config")
    task_cfg = (tasks or {}).get(str(task), {})
    cfg = dict(defaults)
    if presets:
        preset = flags.get("preset", file_cfg.get("preset", task_cfg.get("preset", defaults.get("preset"))))
        if preset not in presets:
            raise UserError(f"unknown preset {preset!r}; use one of {', '.join(presets)}")
        cfg = deep_merge(cfg, presets[preset])
        cfg["preset"] = preset
    for layer in (task_cfg, file_cfg, flags):
        cfg = deep_merge(cfg, layer)
    for key in ("steps", "epochs"):
        if key in cfg and (not isinstance(cfg[key], int) or cfg[key] <= 0):
            raise UserError(f"{key} must be a positive integer, got {cfg[key]!r}; fix --{key} or the config file")
    return cfg


def _check_options_file(path: Path, values: dict[str, Any], command: str | None) -> None:
    """A ``--config`` file holds options for this command: not a run's resolved ``config.json`` (with the keys the
    run derives), nor another command's options (its ``command`` key, which is then dropped, may name this one)."""
    if path.name == "config.json" and (path.parent / "provenance.json").is_file():
        raise UserError(f"{path} is a run's resolved configuration, not an options file; continue that run with "
                        f"--resume {path.parent}, or write the options to repeat into a file of their own")
    made_for = values.pop("command", command)
    if made_for != command:
        raise UserError(f"config file {path} is for 'rlgen {made_for}' (its command key), not 'rlgen {command}'; "
                        f"run 'rlgen {made_for} --config {path}', or remove the key")


def _check_resumed_run(path: Path, command: str | None, task: Any, task_key: str,
                       canonical: Callable[[str], str]) -> Any:
    """The task of the run ``--resume RUN_DIR`` names, once it is known to be a run of this ``command`` and, where a
    task was given too, of that task (its name as typed, its id or its file); else a one-line error saying which."""
    saved = saved_run_config(path, command)
    names = {str(saved.get(f"{task_key}_name")), str(saved.get(task_key))}
    saved_task = saved.get(f"{task_key}_name") or saved.get(task_key)
    if task is None or str(task) in names or canonical(str(task)) in names:
        return saved_task
    if str(task).endswith(".npz") and Path(task).name in {Path(name).name for name in names}:
        return saved_task  # a file, perhaps typed relative to --data-dir: the run saved it resolved
    flag = f"--{task_key.replace('_', '-')}"
    raise UserError(f"--resume {path} is a run on {saved_task}, not on {task}; give it its own {flag} (or none), or "
                    f"leave out --resume to start a run on {task}")


#: options that find the run to resume (``--resume`` alone: the newest of this command, task and seed under --out)
#: or that name data by a path the run saved resolved; they are not compared with the run's saved values
LOCATING = ("resume", "config", "out", "env", "dataset", "data_dir")


def resume_request(flags: Mapping[str, Any], declared: Sequence[Flag] = ()) -> Resume | None:
    """``--resume``, the options given with it that change a resumed run and the others typed with it or set by
    ``--config FILE`` (the file's values of the ``declared`` options, checked as :func:`resolve_config` checks them;
    flags over the file), or None for a new run. Each is compared with the run's saved value."""
    if "resume" not in flags:
        return None
    given: dict[str, Any] = {}
    if flags.get("config") is not None:
        file_cfg = load_config_file(flags["config"])
        check_file_values(file_cfg, declared, f"config file {flags['config']}")
        given = {flag.key: lookup(file_cfg, flag.key) for flag in declared if lookup(file_cfg, flag.key) is not None}
    from_file = sorted(set(given) - set(flags))
    given.update(flags)
    return Resume(flags["resume"], {key: given[key] for key in RESUME_OPTIONS if key in given},
                  {key: value for key, value in given.items() if key not in (*RESUME_OPTIONS, *LOCATING)},
                  file=flags.get("config"), from_file=tuple(from_file))
