"""One directory per run: ``<out>/<command>-<env or dataset>-s<seed>-<time>/``.

It holds ``config.json`` (the resolved configuration), ``provenance.json`` (the commit, command line, device and
time of each session that started or resumed the run), ``progress.csv`` and TensorBoard events (see
:mod:`rlgen.common.logger`), ``checkpoints/`` and whatever the command produces (models, sample grids); a run that
failed before its first checkpoint holds ``failed.json`` (see :func:`discard_unstarted_runs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlgen.common.checkpoint import atomic_write_json, load_json
from rlgen.common.config import deep_merge
from rlgen.common.errors import UserError
from rlgen.common.options import lookup, option_string_of

log = logging.getLogger("rlgen")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def run_name(command: str, tag: str, seed: int) -> str:
    """The start of a run directory's name, ``<command>-<env or dataset>-s<seed>``: a run's is followed by its start
    time, a best-of-starts folder's by ``-best-of-R``."""
    return f"{_slug(command)}-{_slug(tag)}-s{seed}"


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` and prove we can write there, or raise a :class:`UserError` saying so."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".rlgen-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output directory {path} ({exc.strerror or exc}); "
                        "pass --out with a writable directory") from exc


#: Options added after runs were already being written whose packaged default changes the model, per command, with
#: the value that reproduces the older runs' model. A saved config without the key gets this value, not today's
#: default, so an older run still resumes and evaluates as the model it trained (nested sections merge key by key).
OPTIONS_ADDED_LATER: dict[str, dict[str, Any]] = {
    "pixelrnn": {"skip_connections": False},
    "vime": {"vime": {"max_normalised_gain": None}},
    "infogan": {"restarts": 1},  # (a run kept from several starts says so in its selection.json)
}


def saved_run_config(path: Path, command: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of the run directory ``path`` that ``--resume`` names (completed with
    :data:`OPTIONS_ADDED_LATER`), or a :class:`UserError` saying that ``path`` is not one (or, given ``command``,
    not a run of that command)."""
    if not path.exists():
        raise UserError(f"--resume {path} does not exist; pass the run directory printed when the run started")
    if not (path / "config.json").is_file():
        raise UserError(f"--resume {path} is not an rlgen run directory (no config.json in it); "
                        "pass the directory printed when the run started")
    config = load_json(path / "config.json", what="run config")
    made_by = config.get("command")
    if command is not None and made_by is not None and made_by != command:
        raise UserError(f"--resume {path} is a run of 'rlgen {made_by}', not of 'rlgen {command}'; resume it with "
                        f"'rlgen {made_by} --resume {path}'")
    return deep_merge(OPTIONS_ADDED_LATER.get(made_by, {}), config)


_CREATED: list[Path] = []  # run directories made by this process, inside discard_unstarted_runs blocks
FAILED = "failed.json"  # marks a run that failed before its first checkpoint


@contextlib.contextmanager
def discard_unstarted_runs() -> Iterator[None]:
    """If the block fails (any exception but an interrupt, which checkpoints and resumes), each run directory made
    in it without a checkpoint or summary is removed when it logged nothing yet, and otherwise marked ``failed``
    (its logs kept for a post-mortem): either way ``--resume`` never picks it."""
    start = len(_CREATED)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        for path in _CREATED[start:]:
            if (path / "checkpoints" / "latest.json").is_file() or (path / "summary.json").is_file():
                continue
            if (path / "progress.csv").is_file():
                atomic_write_json(path / FAILED, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
            else:
                shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        del _CREATED[start:]


@dataclass
class RunDir:
    """A run's directory and its resolved configuration."""

    path: Path
    config: dict[str, Any]
    resumed: bool = False

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def create(cls, out: str | Path, command: str, tag: str, seed: int, config: dict[str, Any]) -> RunDir:
        root = Path(out)
        ensure_writable_dir(root)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{run_name(command, tag, seed)}-{stamp}"
        path = root / base
        n = 1
        while path.exists():  # two runs started in the same second
            n += 1
            path = root / f"{base}-{n}"
        path.mkdir()
        (path / "checkpoints").mkdir()
        _CREATED.append(path)
        run = cls(path=path, config=dict(config))
        run.save_config()
        run.record_session()
        return run

    @classmethod
    def open_for_resume(cls, resume: str, out: str | Path, command: str, tag: str, seed: int) -> RunDir:
        """An earlier run, read but not yet written to (:meth:`begin_session` does that): ``resume`` is its
        directory, or ``latest`` for the newest run of the same command, env/dataset and seed under ``out``."""
        if resume == "latest":
            pattern = f"{run_name(command, tag, seed)}-*"
            candidates = sorted((p for p in Path(out).glob(pattern)
                                 if (p / "config.json").is_file() and not (p / FAILED).is_file()),
                                key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise UserError(f"--resume found no earlier run matching {Path(out) / pattern}; "
                                "give the run directory explicitly or start without --resume")
            path = candidates[-1]
        else:
            path = Path(resume)
        return cls(path=path, config=saved_run_config(path, command), resumed=True)

    def begin_session(self) -> None:
        """Go on with a resumed run: its (merged) config saved, this session in its provenance, a failed mark
        removed (it was named explicitly, or it had not failed). Called once every input has been checked, so a
        resume that fails on its data or options leaves the run as it was."""
        ensure_writable_dir(self.path)
        self.checkpoints.mkdir(exist_ok=True)
        (self.path / FAILED).unlink(missing_ok=True)
        self.save_config()
        self.record_session()

    def save_config(self) -> None:
        atomic_write_json(self.path / "config.json", self.config)

    def record_session(self) -> None:
        """Append this session (the code's commit, the command line, host, device, UTC start) to
        ``provenance.json``: a run resumed across commits says which code made which part of it."""
        from rlgen.common.provenance import command_line, device_description, git_commit, hostname, utc_now

        path = self.path / "provenance.json"
        sessions = load_json(path, what="run provenance").get("sessions", []) if path.is_file() else []
        sessions.append({"started": utc_now(), "commit": git_commit(), "resumed": self.resumed,
                         "command": command_line(), "host": hostname(),
                         "device": device_description()})
        atomic_write_json(path, {"sessions": sessions})


BUDGET_OPTIONS = ("steps", "epochs", "stop_return")
#: What may change when a run is resumed: its budget, the wall-clock budget of the resuming process, and where and
#: how it runs (checkpoints load on any device, so a run started on a GPU can go on where there is none; a run that
#: shared the CPU with others can use every core once it runs alone).
RESUME_OPTIONS = (*BUDGET_OPTIONS, "max_minutes", "device", "torch_threads")


@dataclass(frozen=True)
class Resume:
    """What ``--resume`` asks for: the run (its directory, or ``latest`` for the newest run of the same command,
    task and seed under ``out``) and the options given with it that change a resumed run (:data:`RESUME_OPTIONS`;
    the run's saved config wins for every other option)."""

    run: str = "latest"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: the other options typed with --resume (e.g. the run's whole command line again) or set by its --config file:
    #: where one differs from the run's saved value, it is ignored, and the user is told
    typed: Mapping[str, Any] = field(default_factory=dict)
    file: str | None = None  # the --config file given with --resume
    from_file: tuple[str, ...] = ()  # the keys of ``typed`` and ``overrides`` that the file set (not a flag)


def _same_value(typed: Any, saved: Any) -> bool:
    """A typed option and a run's saved value (JSON: lists for tuples, absolute paths) say the same."""
    if isinstance(typed, (list, tuple)) and isinstance(saved, (list, tuple)):
        return len(typed) == len(saved) and all(_same_value(a, b) for a, b in zip(typed, saved))
    if isinstance(typed, str) and isinstance(saved, str) and typed != saved:
        return Path(typed).expanduser().resolve() == Path(saved).expanduser().resolve()
    return typed == saved  # (1 == 1.0; True == 1 cannot arise: a switch's saved value is a bool)


def _shown(value: Any) -> str:
    """A value as typed: ``64 64`` for a list, ``on``/``off`` for a switch."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def open_run(cfg: dict[str, Any], tag: str, resume: Resume | None = None) -> RunDir:
    """A new run directory for ``cfg``, or the earlier run that ``resume`` names, its session begun
    (:func:`resumed_run`, then :meth:`RunDir.begin_session`). A device this machine lacks fails before a run
    directory is made or a run's config is rewritten."""
    if resume is not None:
        run = resumed_run(cfg, tag, resume)
        run.begin_session()
        return run
    from rlgen.common.device import resolve_device

    resolve_device(cfg["device"])
    return RunDir.create(cfg.get("out", "runs"), cfg["command"], tag, cfg["seed"], cfg)


def resumed_run(cfg: dict[str, Any], tag: str, resume: Resume) -> RunDir:
    """The earlier run that ``resume`` names, with its resolved config, nothing written yet: its saved config wins,
    except the ``resume.overrides``; keys it lacks, e.g. options added since it was written, come from ``cfg``.
    Options typed with ``--resume`` that differ from the run's are ignored with a warning."""
    from rlgen.common.device import resolve_device

    resolve_device(cfg["device"])
    unknown = sorted(set(resume.overrides) - set(RESUME_OPTIONS))
    if unknown:
        raise ValueError(f"a resumed run cannot change {', '.join(unknown)}")
    run = RunDir.open_for_resume(resume.run, cfg.get("out", "runs"), cfg["command"], tag, cfg["seed"])
    for key, value in resume.typed.items():
        saved = lookup(run.config, key)
        if saved is not None and not _same_value(value, saved):
            given = f"{key}: {_shown(value)} in {resume.file}" if key in resume.from_file else \
                f"{option_string_of(key)} {_shown(value)}"
            log.warning("%s is ignored: a resumed run keeps its saved %s (only %s may change); start a new run to "
                        "change it", given, _shown(saved), ", ".join(map(option_string_of, RESUME_OPTIONS)))
    run.config = deep_merge(cfg, run.config)
    run.config.update(resume.overrides)
    return run
