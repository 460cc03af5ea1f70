"""Canonical JSON bytes for audit log lines and checkpoints: sorted keys, no spaces, UTF-8,
no NaN, so that a line's hash and MAC depend only on its content."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from secpolicy.errors import InputError

__all__ = ["canonical", "loads", "now_iso", "parse_canonical"]


def now_iso() -> str:
    """The current time as ISO 8601 UTC with microseconds and an explicit offset."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


# A lone surrogate: what surrogateescape makes of a byte that is not UTF-8 (a file name, an
# alert field read from hostile input), and what JSON's "\udcff" escape reads back as.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN; a lone surrogate, which UTF-8 cannot hold, is
    written as its JSON escape (lower-case hex), which reads back as the same string."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"value cannot be written to the audit log: {exc}") from exc
    except RecursionError:
        raise InputError("value cannot be written to the audit log: nested too deeply") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    # Two surrogates in a row that form a pair would read back as the one character they
    # encode in UTF-16, not as the two the value holds: no line can say that value.
    if _SURROGATE_PAIR.search(text):
        raise InputError("value cannot be written to the audit log: a string holds a UTF-16 surrogate pair "
                         "as two characters")
    return _SURROGATE.sub(_escape_surrogate, text).encode("utf-8")


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def loads(data: str | bytes) -> Any:
    """JSON as the audit log writes it: NaN and Infinity (which Python's json accepts) are
    refused, and nesting too deep for the parser, or an integer of more digits than Python
    converts, is a json.JSONDecodeError, not a RecursionError or a bare ValueError, so that a
    hostile file is named as such instead of crashing its reader."""
    text = data if isinstance(data, str) else ""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        # An integer of more digits than Python converts (4300): hostile, not a crash.
        raise json.JSONDecodeError(str(exc), text, 0) from None


def parse_canonical(line: bytes) -> tuple[Any, bool]:
    """The parsed value and whether `line` is exactly its canonical form."""
    obj = loads(line.decode("utf-8"))
    try:
        return obj, canonical(obj) == line
    except InputError:
        return obj, False
