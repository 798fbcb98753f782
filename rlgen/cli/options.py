"""Flags from the package's option declarations (:class:`rlgen.common.options.Flag`): argparse arguments that
store only what the user typed, with each value checked by its declaration and the packaged default quoted in help."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from rlgen.common.options import Flag, lookup, parse_value


def _argparse_type(flag: Flag):
    def convert(text: str) -> Any:
        try:
            return parse_value(flag, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = flag.kind.__name__  # what argparse names in its own messages
    return convert


def add_flags(group: argparse._ActionsContainer, flags: Iterable[Flag]) -> None:
    """An argparse argument for each flag (``--x/--no-x`` for a switch; ``const`` makes the value optional, or, for a
    switch, is what it stores). Defaults are left out (SUPPRESS), so only typed flags override a config file."""
    for flag in flags:
        # argparse %-formats help texts: a literal "10%" must reach it as "10%%"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": flag.help.replace("%", "%%")}
        if flag.metavar or ("." in flag.key and flag.choices is None):
            kwargs["metavar"] = flag.metavar or flag.key.rpartition(".")[2].upper()
        if flag.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if flag.const is None else "store_const"
            if flag.const is not None:
                kwargs["const"] = flag.const
        else:
            if flag.choices is not None:
                kwargs["choices"] = flag.choices
            if flag.kind is not str or flag.choices is None:
                kwargs["type"] = _argparse_type(flag)
            if flag.many:
                kwargs["nargs"] = "*" if flag.optional_list else "+"
            elif flag.const is not None or flag.positional:
                kwargs["nargs"] = "?"
                if flag.const is not None:
                    kwargs["const"] = flag.const
        if flag.positional:
            group.add_argument(flag.key, **kwargs)
        else:
            group.add_argument(flag.option_string, dest=flag.key, **kwargs)


def quote_defaults(parser: argparse.ArgumentParser, defaults: Mapping[str, Any], section: Mapping[str, Any],
                   where: str) -> None:
    """Append each flag's packaged default (``where``, the one place it is written) to its help text, unless the
    text already speaks of its default; a value that a task entry (or a preset) of ``section`` changes says so."""
    entries = [*section.get("tasks", {}).values(), *section.get("presets", {}).values()]
    for action in parser._actions:  # argparse has no public list of them
        value = lookup(defaults, action.dest)
        if not action.option_strings or not action.help or "default" in action.help:
            continue
        varied = any(lookup(entry, action.dest) is not None for entry in entries)
        if value is None:  # an input the user names, or an option off unless given (or a task sets it)
            if varied:
                action.help = f"{action.help} (some tasks set it: {where})"
            continue
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif isinstance(value, list):
            text = " ".join(map(str, value)) or "none"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        action.help = f"{action.help} (default {text}{f', some tasks their own: {where}' if varied else ''})"
