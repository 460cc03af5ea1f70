"""The type vocabulary of the policy language: scalar types, lists, and object types with
fields and methods. Facts and event fields are declared with these; the checker uses them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ANY",
    "BOOL",
    "CIDR",
    "DURATION",
    "FLOAT",
    "INT",
    "IP",
    "MODE",
    "NULL",
    "REGEX",
    "SIZE",
    "STR",
    "ListType",
    "Method",
    "ObjectType",
    "Scalar",
    "Signature",
    "Type",
    "comparable",
    "format_value",
    "is_numeric",
    "list_of",
]


class Type:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=True)
class Scalar(Type):
    name: str
    doc: str = ""

    def __str__(self) -> str:
        return self.name


STR = Scalar("string")
INT = Scalar("int")
FLOAT = Scalar("float")
BOOL = Scalar("bool")
DURATION = Scalar("duration", "seconds, written 30s 5m 1h 7d")
SIZE = Scalar("size", "bytes, written 10MB 4KiB")
MODE = Scalar("mode", "permission bits, written 0o640")
IP = Scalar("ip")
CIDR = Scalar("cidr")
ANY = Scalar("any")
NULL = Scalar("null")
# A string argument that is a regular expression (RE2 syntax): literals are compiled at load.
REGEX = Scalar("regex", "a regular expression (RE2 syntax), written as a string")


@dataclass(frozen=True, eq=True)
class ListType(Type):
    elem: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"list[{self.elem}]"

    def __str__(self) -> str:
        return self.name


def list_of(t: Type) -> ListType:
    return ListType(t)


@dataclass(frozen=True)
class Method:
    """A method of an object type: `sshd.option("X")`. `params` are the argument types."""

    params: tuple[Type, ...]
    returns: Type
    doc: str = ""


@dataclass(eq=False)
class ObjectType(Type):
    """A record with named fields and methods. `dict_access` objects are plain dicts at run
    time (events); the others are Python objects read with getattr (facts)."""

    name: str
    fields: dict[str, Type] = field(default_factory=dict)
    methods: dict[str, Method] = field(default_factory=dict)
    doc: str = ""
    dict_access: bool = False
    field_docs: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        return id(self)

    def path_type(self, path: str) -> Type | None:
        """The type of a dotted field path such as `auth.rhost`, or None if a part is unknown."""
        t: Type = self
        for part in path.split("."):
            if not isinstance(t, ObjectType) or part not in t.fields:
                return None
            t = t.fields[part]
        return t


@dataclass(frozen=True)
class Signature:
    """What a fact takes and returns: `file(string) -> file`. Facts declare themselves with it;
    the checker resolves calls against it."""

    name: str
    params: tuple[Type, ...]
    returns: Type
    doc: str = ""
    live_only: bool = False


_NUMERIC = {INT, FLOAT, MODE, SIZE}


def is_numeric(t: Type) -> bool:
    return t in _NUMERIC or t == ANY


def comparable(a: Type, b: Type) -> bool:
    """Whether `a == b` / `a < b` makes sense. Modes and sizes are numbers; durations compare
    only with durations so `age > 7` (days? seconds?) is caught at load time."""
    if a == ANY or b == ANY or a == NULL or b == NULL:
        return True
    if a in _NUMERIC and b in _NUMERIC:
        return True
    if isinstance(a, ListType) and isinstance(b, ListType):
        return comparable(a.elem, b.elem)
    if {a, b} == {IP, STR}:  # addresses are strings at run time; "10.0.0.1" reads fine
        return True
    if {a, b} == {REGEX, STR}:
        return True
    return a == b


def _human_size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


def _human_duration(s: float) -> str:
    if math.isnan(s):
        return "unknown"
    whole = int(s)
    if whole != s:
        return f"{s:g}s"
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= factor and whole % factor == 0:
            return f"{whole // factor}{unit}"
    return f"{whole}s"


def format_value(value: object, t: Type | None = None) -> str:
    """Render a run-time value for evidence, in the notation a policy author writes."""
    if value is None:
        return "<absent>"
    if t == MODE and isinstance(value, int) and not isinstance(value, bool):
        return f"0o{value:o}"
    if t == SIZE and isinstance(value, int) and not isinstance(value, bool):
        return _human_size(value)
    if t == DURATION and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _human_duration(float(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        elem = t.elem if isinstance(t, ListType) else None
        items = list(value)
        shown = ", ".join(format_value(v, elem) for v in items[:20])
        if len(items) > 20:
            shown += f", ... ({len(items)} in all)"
        return f"[{shown}]"
    describe: Callable[[], str] | None = getattr(value, "describe", None)
    if callable(describe):
        return describe()
    return str(value)


def _quote(s: str) -> str:
    if len(s) > 200:
        s = s[:200] + "..."
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
