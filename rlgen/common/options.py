"""Options declared once, on the dataclass that takes them: ``option(default, help, ...)`` is a dataclass field
whose metadata carries what a command line needs (help text, bounds, choices, a metavar). The command line builds
its flags from these fields (:func:`rlgen.cli.options.add_dataclass_flags`), a config file's values are checked
with the same rules, and the default is the field's own -- one place for each."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
           strict: bool = False, choices: Sequence[Any] | None = None, metavar: str | None = None,
           optional_list: bool = False, const: Any = None) -> Any:
    """A dataclass field with a default and the metadata of its flag: ``minimum``/``maximum`` bound a number
    (``strict``: the minimum itself excluded), ``choices`` a string; ``optional_list``: a tuple field's flag may be
    given with no value (an empty tuple); ``const``: the value of the flag given with no value."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "strict": strict,
                "choices": tuple(choices) if choices is not None else None, "metavar": metavar,
                "optional_list": optional_list, "const": const}
    return dataclasses.field(default=default, metadata=metadata)
