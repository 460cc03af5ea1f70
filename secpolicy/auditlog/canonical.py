"""Canonical JSON bytes for audit log lines and checkpoints: sorted keys, no spaces, UTF-8,
no NaN, so that a line's hash and MAC depend only on its content."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from secpolicy.errors import InputError

__all__ = ["canonical", "loads", "now_iso", "parse_canonical"]


def now_iso() -> str:
    """The current time as ISO 8601 UTC with microseconds and an explicit offset."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def canonical(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"value cannot be written to the audit log: {exc}") from exc
    except RecursionError:
        raise InputError("value cannot be written to the audit log: nested too deeply") from None
    return text.encode("utf-8")


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def loads(data: str | bytes) -> Any:
    """JSON as the audit log writes it: NaN and Infinity (which Python's json accepts) are
    refused, and nesting too deep for the parser is a ValueError (json.JSONDecodeError), not a
    RecursionError, so that a hostile file is named as such instead of crashing its reader."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        text = data if isinstance(data, str) else ""
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def parse_canonical(line: bytes) -> tuple[Any, bool]:
    """The parsed value and whether `line` is exactly its canonical form."""
    obj = loads(line.decode("utf-8"))
    try:
        return obj, canonical(obj) == line
    except InputError:
        return obj, False
