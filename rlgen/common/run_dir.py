"""One directory per run: ``<out>/<command>-<env or dataset>-s<seed>-<time>/``.

It holds ``config.json`` (the resolved configuration), ``provenance.json`` (the commit, command line, device and
time of each session that started or resumed the run), ``progress.csv`` and TensorBoard events (see
:mod:`rlgen.common.logger`), ``checkpoints/`` and whatever the command produces (models, sample grids).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgen.common.checkpoint import atomic_write_json, load_json
from rlgen.common.config import deep_merge
from rlgen.common.errors import UserError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


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
}


def saved_run_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of the run directory ``path`` that ``--resume`` names (completed with
    :data:`OPTIONS_ADDED_LATER`), or a :class:`UserError` saying that ``path`` is not one."""
    if not (path / "config.json").is_file():
        raise UserError(f"--resume {path} is not an rlgen run directory (no config.json in it); "
                        "pass the directory printed when the run started")
    config = load_json(path / "config.json", what="run config")
    return deep_merge(OPTIONS_ADDED_LATER.get(config.get("command"), {}), config)


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
        base = f"{_slug(command)}-{_slug(tag)}-s{seed}-{stamp}"
        path = root / base
        n = 1
        while path.exists():  # two runs started in the same second
            n += 1
            path = root / f"{base}-{n}"
        path.mkdir()
        (path / "checkpoints").mkdir()
        run = cls(path=path, config=dict(config))
        run.save_config()
        run.record_session()
        return run

    @classmethod
    def open_for_resume(cls, resume: str, out: str | Path, command: str, tag: str, seed: int) -> RunDir:
        """Open an earlier run: ``resume`` is its directory, or ``latest`` for the newest run of the same command,
        env/dataset and seed under ``out``."""
        if resume == "latest":
            pattern = f"{_slug(command)}-{_slug(tag)}-s{seed}-*"
            candidates = sorted((p for p in Path(out).glob(pattern) if (p / "config.json").is_file()),
                                key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise UserError(f"--resume found no earlier run matching {Path(out) / pattern}; "
                                "give the run directory explicitly or start without --resume")
            path = candidates[-1]
        else:
            path = Path(resume)
        config = saved_run_config(path)
        if config.get("command") != command:
            raise UserError(f"--resume {path} is a {config.get('command')!r} run, not {command!r}; "
                            f"resume it with 'rlgen {config.get('command')} --resume {path}'")
        ensure_writable_dir(path)
        (path / "checkpoints").mkdir(exist_ok=True)
        run = cls(path=path, config=config, resumed=True)
        run.record_session()
        return run

    def save_config(self) -> None:
        atomic_write_json(self.path / "config.json", self.config)

    def record_session(self) -> None:
        """Append this session (the code's commit, the command line, host, device, UTC start) to
        ``provenance.json``: a run resumed across commits says which code made which part of it."""
        from rlgen.bench.provenance import command_line, device_description, git_commit, hostname, utc_now

        path = self.path / "provenance.json"
        sessions = load_json(path, what="run provenance").get("sessions", []) if path.is_file() else []
        sessions.append({"started": utc_now(), "commit": git_commit(), "resumed": self.resumed,
                         "command": command_line(), "host": hostname(),
                         "device": device_description()})
        atomic_write_json(path, {"sessions": sessions})
