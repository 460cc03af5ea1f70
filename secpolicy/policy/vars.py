"""Policy vars: named, typed, documented values with defaults that expressions read by bare
name, and the scan context (`scan.kind`, `scan.live`, `scan.root`) every check may read."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from secpolicy.dsl import parse_duration, parse_size
from secpolicy.dsl.types import (
    BOOL,
    DURATION,
    FLOAT,
    INT,
    MODE,
    SIZE,
    STR,
    ListType,
    ObjectType,
    Type,
    format_value,
)

__all__ = [
    "SCAN",
    "SCAN_KINDS",
    "SCAN_VAR",
    "VAR_TYPES",
    "VarDecl",
    "bounds_allowed",
    "convert_value",
    "did_you_mean",
    "merged_values",
    "scan_context",
]

# The types a var may have, as written in `type:`.
VAR_TYPES: dict[str, Type] = {
    "string": STR,
    "int": INT,
    "float": FLOAT,
    "bool": BOOL,
    "mode": MODE,
    "duration": DURATION,
    "size": SIZE,
    "list[string]": ListType(STR),
    "list[int]": ListType(INT),
}
_ORDERED = frozenset({"int", "float", "mode", "duration", "size"})

# The scan context, a reserved name: what is being scanned, so applicability can say "not on
# a mounted root" or, for container images, "no kernel to check".
SCAN_VAR = "scan"
SCAN_KINDS = ("host", "root", "image", "remote")
SCAN = ObjectType(
    "scan",
    {"kind": STR, "live": BOOL, "root": STR},
    doc="what this scan looks at",
    dict_access=True,
    field_docs={
        "kind": "host (the running system), root (a mounted file tree, --root); image and remote are reserved",
        "live": "true when the running system is scanned: processes, loaded modules and the kernel are its own",
        "root": "the directory scanned as / (\"/\" on the running system)",
    },
)


def scan_context(root: str, live: bool, kind: str | None = None) -> dict[str, Any]:
    """The value of `scan` for one scan."""
    return {"kind": kind or ("host" if live else "root"), "live": live, "root": root}


_MODE = re.compile(r"^0o[0-7]+$")


def _scalar(type_name: str, raw: Any) -> Any:
    if type_name == "string":
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {_kind(raw)}")
        return raw
    if type_name == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"expected an integer, got {_kind(raw)}")
        return raw
    if type_name == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"expected a number, got {_kind(raw)}")
        return float(raw)
    if type_name == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {_kind(raw)}")
        return raw
    if type_name == "mode":
        if not isinstance(raw, str) or not _MODE.match(raw):
            raise ValueError(f"expected a mode written in octal like 0o640, got {_kind(raw)}")
        return int(raw, 0)
    if type_name == "duration":
        if not isinstance(raw, str):
            raise ValueError(f"expected a duration with its unit like 15m or 90d, got {_kind(raw)}")
        return parse_duration(raw)
    if type_name == "size":
        if not isinstance(raw, str):
            raise ValueError(f"expected a size with its unit like 10MB or 4KiB, got {_kind(raw)}")
        return parse_size(raw)
    raise ValueError(f"unknown type {type_name!r}")  # pragma: no cover - the schema lists them


def _kind(raw: Any) -> str:
    if raw is None:
        return "nothing (null)"
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    if isinstance(raw, (int, float)):
        return f"the number {raw}"
    if isinstance(raw, str):
        return f"the string {raw!r}"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "a mapping"
    return type(raw).__name__


def convert_value(type_name: str, raw: Any) -> Any:
    """The run-time value of `raw` (as read from YAML) for a var of `type_name`.
    Raises ValueError saying what was expected; lists become tuples."""
    if type_name.startswith("list["):
        if not isinstance(raw, list):
            raise ValueError(f"expected a list, got {_kind(raw)}")
        elem = type_name[5:-1]
        out = []
        for i, item in enumerate(raw):
            try:
                out.append(_scalar(elem, item))
            except ValueError as e:
                raise ValueError(f"item {i + 1}: {e}") from None
        return tuple(out)
    return _scalar(type_name, raw)


@dataclass(frozen=True)
class VarDecl:
    """A declared var: its type, default and documentation, and the bounds a tailoring
    file must respect (`min`/`max` for numbers, modes, durations, sizes; `choices`)."""

    name: str
    type_name: str
    default: Any
    description: str
    source: str  # file:line of the declaration
    minimum: Any = None
    maximum: Any = None
    choices: tuple[Any, ...] | None = None

    @property
    def type(self) -> Type:
        return VAR_TYPES[self.type_name]

    @property
    def elem_type(self) -> str:
        return self.type_name[5:-1] if self.type_name.startswith("list[") else self.type_name

    def show(self, value: Any) -> str:
        """A value in the notation a policy author writes (0o640, 15m, 10MB, "text")."""
        return format_value(value, self.type)

    def check(self, raw: Any) -> Any:
        """Convert and check a value (from a tailoring file or a test). Raises ValueError."""
        value = convert_value(self.type_name, raw)
        self.check_bounds(value)
        return value

    def check_bounds(self, value: Any) -> None:
        items = value if isinstance(value, tuple) else (value,)
        elem = VAR_TYPES[self.elem_type]
        for v in items:
            if self.minimum is not None and v < self.minimum:
                raise ValueError(f"{format_value(v, elem)} is below the minimum {format_value(self.minimum, elem)} of {self.name}")
            if self.maximum is not None and v > self.maximum:
                raise ValueError(f"{format_value(v, elem)} is above the maximum {format_value(self.maximum, elem)} of {self.name}")
            if self.choices is not None and v not in self.choices:
                allowed = ", ".join(format_value(c, elem) for c in self.choices)
                raise ValueError(f"{format_value(v, elem)} is not one of the choices of {self.name}: {allowed}")

    def to_dict(self) -> dict[str, Any]:
        elem = VAR_TYPES[self.elem_type]
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type_name,
            "default": self.show(self.default),
            "description": self.description,
            "source": self.source,
        }
        if self.minimum is not None:
            out["min"] = format_value(self.minimum, elem)
        if self.maximum is not None:
            out["max"] = format_value(self.maximum, elem)
        if self.choices is not None:
            out["choices"] = [format_value(c, elem) for c in self.choices]
        return out


def bounds_allowed(type_name: str) -> bool:
    """Whether `min`/`max` make sense for the (element) type."""
    elem = type_name[5:-1] if type_name.startswith("list[") else type_name
    return elem in _ORDERED


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a known name is close, else an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def merged_values(decls: Mapping[str, VarDecl], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of `decls`, with the overrides that name one of them."""
    values = {n: d.default for n, d in decls.items()}
    if overrides:
        values.update((k, v) for k, v in overrides.items() if k in decls)
    return values
