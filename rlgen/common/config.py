"""Run configuration: built-in defaults < per-task defaults < ``--config FILE`` < command-line flags."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rlgen.common.errors import UserError


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping; a missing, unreadable or non-mapping file is a :class:`UserError`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a directory; pass a YAML or JSON file to --config")
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; check the path given to --config")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)  # YAML's position of the error (JSON's message has its own)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"config file {path} could not be parsed{where} ({first_line}); fix its YAML/JSON "
                        "syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of option names to values, not {type(data).__name__}")
    return data


def packaged_config(name: str) -> dict[str, Any]:
    """A defaults file shipped in ``rlgen/configs/`` (e.g. ``vime.yaml``)."""
    text = resources.files("rlgen.configs").joinpath(name).read_text()
    return yaml.safe_load(text) or {}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (nested dicts merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_known_keys(config: Mapping[str, Any], known: Mapping[str, Any], source: str) -> None:
    """Reject top-level keys the command does not know, so a typo in a config file is not silently ignored."""
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise UserError(f"{source} has unknown option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}")


def keyword_defaults(function: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword arguments of ``function`` (a class: its constructor) with their defaults, as a config file holds
    them (lists for tuples): where a config section's options are a class's arguments, the class's defaults are the
    one place those defaults are written and the section only overrides them."""
    import inspect

    return {name: list(p.default) if isinstance(p.default, tuple) else p.default
            for name, p in inspect.signature(function).parameters.items()
            if name not in exclude and p.default is not inspect.Parameter.empty}
