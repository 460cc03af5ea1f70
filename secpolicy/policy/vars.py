"""Policy vars as the loader and tailoring handle them (the declaration, VarDecl, is part of
the rule model in secpolicy.rules), and the scan context (`scan.kind`, `scan.live`, `scan.root`)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from secpolicy.dsl.types import BOOL, STR, ObjectType
from secpolicy.rules import VarDecl, convert_value

__all__ = [
    "SCAN",
    "SCAN_KINDS",
    "SCAN_VAR",
    "bounds_allowed",
    "checked_value",
    "converted_value",
    "did_you_mean",
    "merged_values",
    "scan_context",
]

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
        "kind": "host (the running system), root (a mounted file tree, --root), image (--image), remote (a host over SSH, --target)",
        "live": "true when the running system is scanned: processes, loaded modules and the kernel are its own",
        "root": "the directory scanned as / (\"/\" on the running system)",
    },
)


def scan_context(root: str, live: bool, kind: str | None = None) -> dict[str, Any]:
    """The value of `scan` for one scan; `kind` defaults to host (live) or root."""
    if kind is not None and kind not in SCAN_KINDS:
        raise ValueError(f"scan kind {kind!r} is not one of {', '.join(SCAN_KINDS)}")
    return {"kind": kind or ("host" if live else "root"), "live": live, "root": root}


def bounds_allowed(type_name: str) -> bool:
    """Whether `min`/`max` make sense for the (element) type."""
    elem = type_name[5:-1] if type_name.startswith("list[") else type_name
    return elem in _ORDERED


def converted_value(type_name: str, raw: Any) -> Any:
    """`convert_value`, but a float that is not finite is refused: every comparison with NaN
    is false, so a NaN default or bound would pass any `min`/`max` and turn checks into passes
    (and an infinite value is no setting either). Raises ValueError."""
    value = convert_value(type_name, raw)
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {v}")
    return value


def checked_value(decl: VarDecl, raw: Any) -> Any:
    """A value for `decl` from a tailoring file or a test: converted (finite), within bounds."""
    value = converted_value(decl.type_name, raw)
    decl.check_bounds(value)
    return value


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
