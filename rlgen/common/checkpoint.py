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


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and then move ``tmp_path`` onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
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
