"""Options declared once. A :class:`Flag` is one option a user sets: its config key, type, bounds, choices and help.
The command line turns each into a flag (``--key-with-dashes``), a config file's value under the same key is checked
by the same rules (:func:`check_file_values`), and the help quotes the packaged default -- one declaration each.

Options that a class takes are fields of its options dataclass, declared with :func:`option` (the field's default is
the option's); :func:`flags_of` lists them. Options whose defaults live in a packaged YAML file (per env or preset)
are declared as :class:`Flag` values beside the code that resolves them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rlgen.common.errors import UserError

MAX_COUNT = 10**12  # budgets, sizes and counts beyond this are typos (1e12 env steps is years of CPU)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One option. ``kind`` is int, float, str or bool (a switch); ``many``: one or more values (a list;
    ``optional_list``: also none); ``minimum``/``maximum`` bound a number (``strict``: the minimum itself excluded);
    ``const`` is the value of the flag given with no value; ``flag`` names the switch when it is not ``--key`` (e.g. ``--stochastic``, which
    stores ``const``); a dotted ``key`` (``vime.eta``) sets a key of a config section; ``positional``: an argument
    without a flag (bench's suite). A ``str`` without choices is a name or a path, checked where it is used."""

    key: str
    help: str
    kind: type = str
    minimum: float | None = None
    maximum: float | None = None
    strict: bool = False
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    many: bool = False
    optional_list: bool = False
    const: Any = None
    flag: str | None = None
    positional: bool = False

    @property
    def option_string(self) -> str:
        return self.flag or option_string_of(self.key)


def option_string_of(key: str) -> str:
    """The flag of a config key unless its declaration names another: ``--`` and the key's last part, dashed
    (``discriminator.gradient_penalty``: ``--gradient-penalty``)."""
    return "--" + key.rpartition(".")[2].replace("_", "-")


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
           strict: bool = False, choices: Sequence[Any] | None = None, metavar: str | None = None,
           optional_list: bool = False, const: Any = None, flag: str | None = None) -> Any:
    """A dataclass field with a default and the metadata of its :class:`Flag` (see there)."""
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "strict": strict,
                "choices": tuple(choices) if choices is not None else None, "metavar": metavar,
                "optional_list": optional_list, "const": const, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


def flags_of(options: type, skip: Sequence[str] = ()) -> list[Flag]:
    """The :class:`Flag` of every :func:`option` field of the dataclass ``options`` but those in ``skip`` (a tuple
    field takes a list)."""
    hints = typing.get_type_hints(options)
    out = []
    for field in dataclasses.fields(options):
        if "help" not in field.metadata or field.name in skip:
            continue
        kind = hints[field.name]
        many = typing.get_origin(kind) is tuple
        kind = typing.get_args(kind)[0] if many else kind
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # `int | None`: an option off unless given
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        out.append(Flag(field.name, kind=kind, many=many, **field.metadata))
    return out


def _whole_number(text: str) -> int | None:
    """``text`` as an integer where it is a whole number written as a float (``1e6``), else None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def parse_value(flag: Flag, text: str) -> Any:
    """One value of ``flag`` from its text; a ValueError says what is wrong with it."""
    if flag.kind is int:
        try:
            value: Any = int(text)
        except ValueError:
            value = _whole_number(text)  # 1e6 or 2.5e5, as budgets are often written
            if value is None:
                raise ValueError(f"expected an integer, got {text!r}") from None
        if flag.minimum is not None and flag.minimum >= 1 and not 0 < value <= MAX_COUNT:
            raise ValueError(f"must be a positive integer up to {MAX_COUNT:.0e}, got {value}")
    elif flag.kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {text}")
    else:
        value = text
    if flag.choices is not None and value not in flag.choices:
        raise ValueError(f"expected one of {', '.join(map(str, flag.choices))}, got {value!r}")
    low, high = flag.minimum, flag.maximum
    if low is not None and (value < low or (flag.strict and value == low)):
        number = "a finite number" if flag.kind is float else "an integer"
        raise ValueError(f"must be {number} {'>' if flag.strict else '>='} {low:g}, got {text}")
    if high is not None and value > high:
        bound = (lambda x: f"{x:,}") if flag.kind is int else (lambda x: f"{x:g}")
        raise ValueError(f"must be {'at most' if low is None else f'between {bound(low)} and'} {bound(high)}, "
                         f"got {text}")
    return value


def check_value(flag: Flag, value: Any) -> Any:
    """A config file's ``value`` for ``flag``: what the flag would accept, in the file's types (a ValueError if not),
    returned with its numbers in the flag's type (YAML reads ``3e-4`` and ``1e6`` as text, ``2.0`` is a float)."""
    if flag.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if isinstance(value, list) != flag.many:
        raise ValueError(f"expected {'a list' if flag.many else 'one value'}, got {value!r}")
    checked = []
    for item in value if flag.many else [value]:
        if isinstance(item, bool) and flag.kind is not str:
            raise ValueError(f"expected a number, got {item!r}")
        if not isinstance(item, str) and flag.kind is str and flag.choices is None:
            checked.append(item)  # a free-form value (a path, a name): checked where it is used
            continue
        parsed = parse_value(flag, str(item))
        checked.append(parsed if flag.kind in (int, float) else item)
    return checked if flag.many else checked[0]


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """``config[key]``, where a dotted key (``vime.eta``) names a key of a section; None where absent."""
    for part in key.split("."):
        if not isinstance(config, Mapping):
            return None
        config = config.get(part)  # type: ignore[assignment]
    return config


def nest(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Flags by key, with dotted keys (``vime.eta``) turned into sections (``{"vime": {"eta": ...}}``)."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        *sections, name = key.split(".")
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return out


def check_file_values(values: dict[str, Any], flags: Iterable[Flag], source: str, fix: str = "fix the file") -> None:
    """Check a config file's values (or a Python caller's options) with the rules of the flags that set the same
    keys, so that a value a flag would refuse (NaN, a zero learning rate, a count in words) is refused there too,
    before any run directory exists, and store each number in its flag's type (:func:`check_value`). Keys without a
    flag (``algo_kwargs``, ...) are checked where they are used."""
    for flag in flags:
        value = lookup(values, flag.key)
        if value is None or flag.positional:
            continue
        try:
            checked = check_value(flag, value)
        except ValueError as exc:
            raise UserError(f"{source}: {flag.key}: {exc}; {fix}") from None
        *sections, name = flag.key.split(".")
        section = values
        for part in sections:
            section = section[part]
        section[name] = checked


def argv_of(flags: Mapping[str, Any], declared: Iterable[Flag]) -> list[str]:
    """The command-line arguments that give the options ``flags`` (by key), for the record of what ran."""
    by_key = {flag.key: flag for flag in declared}
    argv: list[str] = []
    for key, value in flags.items():
        flag = by_key.get(key, Flag(key, ""))
        if flag.positional:
            argv.append(str(value))
        elif flag.kind is bool and flag.const is None:
            argv.append(flag.option_string if value else "--no-" + flag.option_string[2:])
        elif value is True or (flag.const is not None and value == flag.const):
            argv.append(flag.option_string)
        else:
            argv += [flag.option_string, *(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])]
    return argv
