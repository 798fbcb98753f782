"""Atomic file writes and pickle-free loading.

Every checkpoint is written to a temporary file in the same directory and moved into place with
:func:`os.replace`, so an interrupted write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlgen.common.errors import UserError


def _file_mode() -> int:
    """The mode a plainly created file gets (``rw-r--r--`` under the usual umask 022): mkstemp makes its file
    readable by its owner only, and a run's results are meant to be read by others too. (Reading the umask sets it
    for a moment: done once, at import, before any thread writes files.)"""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and then move ``tmp_path`` onto ``path`` atomically (with a plain file's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")

    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically. Keep ``obj`` to tensors, numbers, strings, lists and dicts so that it loads
    with ``weights_only=True``."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`atomic_torch_save` without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; check the path or start without --resume")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise UserError(f"checkpoint {path} is corrupt or not an rlgen checkpoint ({type(exc).__name__}); "
                        "delete it to resume from the one before, or start a new run") from exc


def load_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; check the path")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
                        "fix or remove it") from exc


class CheckpointFolder:
    """A run's ``checkpoints/`` folder, the one scheme every trainer uses (SB3 runs, the image trainer, BC).

    A checkpoint is one or more files, each written atomically, and a record naming them (one key per file, besides
    numbers such as ``step``). The record is written last, into ``latest.json``: a checkpoint exists only once it
    is there, so an interrupted save leaves the previous one in force. ``latest.json`` holds the newest record's
    keys and, under ``kept``, the records of the newest ``keep`` checkpoints, whose files stay; every other file
    matching ``patterns`` goes (older checkpoints', and any left by a save cut short). :meth:`latest` is the newest
    record whose files are all there, so deleting a damaged checkpoint resumes from the one before. (An index
    written before ``kept`` existed is its own single record.)"""

    INDEX = "latest.json"

    def __init__(self, path: str | os.PathLike, patterns: tuple[str, ...], keep: int = 1):
        self.path = Path(path)
        self.patterns = patterns
        self.keep = max(1, int(keep))

    @staticmethod
    def _files(record: dict[str, Any]) -> list[str]:
        return [value for value in record.values() if isinstance(value, str)]  # the rest are numbers

    def _records(self) -> list[dict[str, Any]]:
        index_path = self.path / self.INDEX
        if not index_path.is_file():
            return []
        index = load_json(index_path, what="checkpoint index")
        return index.get("kept") or [{k: v for k, v in index.items() if k != "kept"}]

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint whose files are all present (else the newest, whose loading then says what is
        missing), or None when there is none."""
        records = self._records()
        for record in reversed(records):
            if all((self.path / name).is_file() for name in self._files(record)):
                return record
        return records[-1] if records else None

    def file(self, record: dict[str, Any], key: str) -> Path:
        return self.path / record[key]

    def save(self, files: dict[str, tuple[str, Callable[[str], None]]], **numbers: Any) -> dict[str, Any]:
        """Write ``files`` (``key -> (file name, write(tmp_path))``), then the record ``{**numbers, key: file
        name}``; prune. Returns the record."""
        for name, write in files.values():
            atomic_write(self.path / name, write)
        record = {**numbers, **{key: name for key, (name, _) in files.items()}}
        older = [r for r in self._records() if r != record and all((self.path / n).is_file() for n in self._files(r))]
        kept = [*older[-(self.keep - 1):], record] if self.keep > 1 else [record]
        atomic_write_json(self.path / self.INDEX, {**record, "kept": kept})
        keep = {name for r in kept for name in self._files(r)}
        for pattern in self.patterns:
            for path in self.path.glob(pattern):
                if path.name not in keep:
                    path.unlink(missing_ok=True)
        return record
