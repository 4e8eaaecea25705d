"""Every field of ``dotwist.config.Limits`` as a ``twistd dotwist`` option and a configuration key,
generated from the dataclass, so that one list drives the options, their help, their checks and
the documentation.

A field ``hibernateAfter: float = 10.0`` with a ``#:`` comment above it becomes the option
``--hibernate-after SECONDS`` whose help is that comment, whose default is the field's default, and
whose value must be a positive number of seconds (a float field) or a positive whole number (an
int field: bytes if the name says ``Size`` or ``Bytes``). A field added to ``Limits`` gets its
option with no change here. Values may carry a unit: ``500ms``, ``10s``, ``2m``, ``1h`` for
seconds; ``64KiB``, ``32MiB``, ``1GiB``, ``100MB`` for bytes.

Pure: no I/O, no reactor. The comments are read from the source of ``dotwist.config`` once, the
way Sphinx reads ``#:`` doc comments; without the source (a zipped install), the options are the
same and their help says only what the value is.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from dataclasses import MISSING, dataclass, fields
from functools import lru_cache
from typing import Any, Mapping, Optional

from . import config
from .config import Limits

__all__ = [
    "ALIASES",
    "LimitOption",
    "LimitValueError",
    "limitOptions",
    "limitsFromConfig",
    "limitsFromOptions",
    "markdownTable",
    "optParameters",
    "parseLimit",
]

#: Option names kept from before the options were generated: old name -> field.
ALIASES: dict[str, str] = {"max-request-body": "maxRequestBodySize", "backlog": "listenBacklog"}

_BYTE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}
_SECOND_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


class LimitValueError(ValueError):
    """A limit's value is not acceptable; the message names the option and what it takes."""


@dataclass(frozen=True)
class LimitOption:
    """One field of ``Limits`` as an option."""

    field: str
    option: str
    kind: type  # int or float
    unit: str  # "seconds", "bytes" or "" (a count)
    default: Any
    help: str

    @property
    def takes(self) -> str:
        """What the value is, for messages: 'a positive number of seconds', ..."""
        if self.unit == "seconds":
            return "a positive number of seconds (or with a unit: 500ms, 10s, 2m, 1h)"
        if self.unit == "bytes":
            return "a positive whole number of bytes (or with a unit: 64KiB, 32MiB, 1GiB, 100MB)"
        return "a positive whole number"

    @property
    def metavar(self) -> str:
        return {"seconds": "SECONDS", "bytes": "BYTES"}.get(self.unit, "N")

    def parse(self, text: Any) -> Any:
        return parseLimit(self, text)


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _unit(name: str, kind: type) -> str:
    if kind is float:
        return "seconds"
    if "Size" in name or "Bytes" in name:
        return "bytes"
    return ""


@lru_cache(maxsize=1)
def _comments() -> dict[str, str]:
    """Each field's ``#:`` comment in ``dotwist.config``, joined into one line."""
    try:
        source = inspect.getsource(config)
    except (OSError, TypeError):  # pragma: no cover - no source (zipped install)
        return {}
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "Limits":
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    parts: list[str] = []
                    index = item.lineno - 2
                    while index >= 0 and lines[index].strip().startswith("#:"):
                        parts.insert(0, lines[index].strip()[2:].strip())
                        index -= 1
                    found[item.target.id] = " ".join(parts)
    return found


def limitOptions() -> list[LimitOption]:
    """Every field of ``Limits``, in the order of the dataclass."""
    comments = _comments()
    out = []
    for f in fields(Limits):
        kind = f.type if isinstance(f.type, type) else {"int": int, "float": float}.get(str(f.type), float)
        default = f.default if f.default is not MISSING else None
        out.append(
            LimitOption(
                field=f.name,
                option=_kebab(f.name),
                kind=kind,
                unit=_unit(f.name, kind),
                default=default,
                help=comments.get(f.name, ""),
            )
        )
    return out


def parseLimit(option: LimitOption, text: Any, name: Optional[str] = None) -> Any:
    """``text`` (a string from the command line, or a number from a configuration file) as the
    field's value; ``LimitValueError`` naming the option (``name``, if it was given under another
    name) if it is not a positive value of the field's kind."""

    def bad() -> LimitValueError:
        return LimitValueError(f"--{name or option.option} must be {option.takes}, not {text!r}")

    if isinstance(text, bool):
        raise bad()
    if isinstance(text, (int, float)):
        number, unit = float(text), ""
    elif isinstance(text, str):
        match = _NUMBER.match(text)
        if match is None:
            raise bad()
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise bad()
    if unit:
        scale = (_SECOND_UNITS if option.unit == "seconds" else _BYTE_UNITS if option.unit == "bytes" else {}).get(unit)
        if scale is None:
            raise bad()
        number *= scale
    if not (0 < number < math.inf):
        raise bad()
    if option.kind is int:
        if number != int(number):
            raise bad()
        return int(number)
    return number


def _byName() -> dict[str, LimitOption]:
    options = limitOptions()
    named = {o.option: o for o in options}
    byField = {o.field: o for o in options}
    for alias, field in ALIASES.items():
        if field in byField:
            named.setdefault(alias, byField[field])
    return named


def optParameters() -> list[list[Any]]:
    """``usage.Options.optParameters`` rows for every limit (defaults None: unset means the
    field's default), aliases included."""
    rows: list[list[Any]] = []
    byField = {}
    for o in limitOptions():
        byField[o.field] = o
        text = o.help or f"The {o.field} limit."
        rows.append([o.option, None, None, f"{text} [{o.metavar}; default {_show(o)}]"])
    for alias, field in ALIASES.items():
        if field in byField:
            rows.append([alias, None, None, f"Same as --{byField[field].option}."])
    return rows


def limitsFromOptions(values: Mapping[str, Any], base: Optional[Limits] = None) -> Limits:
    """The ``Limits`` that parsed options ask for: ``values`` maps option names (as
    ``usage.Options`` keeps them) to strings, None where not given."""
    changes: dict[str, Any] = {}
    for name, option in _byName().items():
        text = values.get(name)
        if text is None:
            continue
        value = parseLimit(option, text, name)
        if option.field in changes and changes[option.field] != value:
            raise LimitValueError(f"--{name} and --{option.option} disagree ({text!r})")
        changes[option.field] = value
    return (base or Limits()).replace(**changes)


def limitsFromConfig(mapping: Mapping[str, Any], base: Optional[Limits] = None) -> Limits:
    """``Limits`` from configuration keys: field names (``hibernateAfter``) or option names
    (``hibernate-after``), values as numbers or strings with units; ``LimitValueError`` names an
    unknown key or a bad value."""
    named = _byName()
    byField = {o.field: o for o in limitOptions()}
    changes: dict[str, Any] = {}
    for key, value in mapping.items():
        option = byField.get(key) or named.get(key)
        if option is None:
            known = ", ".join(sorted(byField))
            raise LimitValueError(f"unknown limit {key!r} (limits: {known})")
        changes[option.field] = option.parse(value)
    return (base or Limits()).replace(**changes)


def _show(option: LimitOption) -> str:
    value = option.default
    if option.unit == "bytes":
        for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value % size == 0:
                return f"{value} = {value // size} {unit}"
        return f"{value}"
    if option.unit == "seconds":
        return f"{value:g} s"
    return f"{value}"


def markdownTable() -> str:
    """The documentation's table of limits (``docs/operating.md`` embeds it; a test keeps the two
    the same)."""
    rows = ["| option | configuration key | default | meaning |", "|---|---|---|---|"]
    for o in limitOptions():
        rows.append(f"| `--{o.option}` | `{o.field}` | {_show(o)} | {o.help} |")
    return "\n".join(rows)
