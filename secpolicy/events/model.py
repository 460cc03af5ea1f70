"""The normalised Event of secpolicy (a plain dict, see docs/contracts.md): timestamp helpers,
the canonical JSON line, field access by dotted path and validation against event.schema.json."""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

from secpolicy.errors import InputError
from secpolicy.events import fields

__all__ = [
    "EVENT_TYPES",
    "TS_RE",
    "canonical_json",
    "canonical_line",
    "event_errors",
    "format_ts",
    "get_field",
    "parse_ts",
    "ts_exists",
    "ts_seconds",
    "validate_event",
]

EVENT_TYPES = fields.EVENT_TYPES

# The one timestamp form: fixed width, so string order is time order. ASCII digits only (a
# str pattern's \d takes any Unicode digit, which the store refuses) and \Z, not $ (which
# matches before a trailing newline).
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z\Z", re.ASCII)


def format_ts(seconds: int, nanos: int = 0) -> str:
    """`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for a Unix time split into whole seconds and nanos."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


@lru_cache(maxsize=4096)
def _minute_epoch(prefix: str) -> int:
    # prefix is "YYYY-MM-DDTHH:MM"; events cluster in few minutes, so this cache hits.
    return calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M"))


def ts_exists(ts: str) -> bool:
    """Whether a timestamp of the canonical form names a time that exists (not 2024-02-30,
    not 25:61); cached per minute, as ts_seconds is."""
    try:
        _minute_epoch(ts[:16])
    except (ValueError, OverflowError):
        return False
    return int(ts[17:19]) <= 60


def ts_seconds(ts: str) -> float:
    """Seconds since the epoch of a canonical timestamp (float; nanoseconds beyond float
    precision do not matter for windows of seconds)."""
    return _minute_epoch(ts[:16]) + int(ts[17:19]) + int(ts[20:29]) * 1e-9


def ts_nanos(ts: str) -> int:
    """Nanoseconds since the epoch of a canonical timestamp, exactly (a float of seconds is
    off by up to a quarter of a microsecond, which moves window boundaries)."""
    return (_minute_epoch(ts[:16]) + int(ts[17:19])) * 1_000_000_000 + int(ts[20:29])


def parse_ts(value: str) -> str:
    """Accept an ISO 8601 UTC timestamp with 0-9 fractional digits (`Z` or `+00:00`) and
    return the canonical form; raise InputError otherwise."""
    m = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|\+00:00|\+0000)", value, re.ASCII
    )
    if not m:
        raise InputError(f"timestamp {value!r} is not ISO 8601 UTC (YYYY-MM-DDTHH:MM:SS[.n]Z)")
    try:
        secs = calendar.timegm(time.strptime(f"{m.group(1)}T{m.group(2)}", "%Y-%m-%dT%H:%M:%S"))
    except ValueError as exc:
        raise InputError(f"timestamp {value!r} is not a valid date: {exc}") from None
    frac = (m.group(3) or "").ljust(9, "0")
    return format_ts(secs, int(frac))


def canonical_json(obj: Mapping[str, Any]) -> str:
    """One JSON line: sorted keys, no spaces, non-ASCII kept (the replay/alert line format)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_line(obj: Mapping[str, Any]) -> bytes:
    """`canonical_json` as a UTF-8 line with its newline, through orjson (ten times faster,
    which a burst of thousands of alerts a second needs). What orjson refuses (an integer
    beyond 64 bits, a lone surrogate from undecodable bytes) goes the slow way, surrogates
    written as their `\\udcXX` escapes."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (canonical_json(obj) + "\n").encode("utf-8", "backslashreplace")


def get_field(event: Mapping[str, Any], path: str | tuple[str, ...]) -> Any:
    """The value at a dotted path (`proc.exe`) or None when any part is missing."""
    parts = path.split(".") if isinstance(path, str) else path
    cur: Any = event
    for p in parts:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
        if cur is None:
            return None
    return cur


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    from secpolicy.resources import load_schema

    schema = load_schema("event")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def event_errors(event: Any) -> list[str]:
    """Schema violations of one event as `path: message` strings (empty when valid)."""
    errors = []
    for err in sorted(_validator().iter_errors(event), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "<event>"
        errors.append(f"{where}: {err.message}")
    return errors


def validate_event(event: Any, where: str = "<event>") -> None:
    """Raise InputError naming the first schema violations of `event`."""
    errors = event_errors(event)
    if errors:
        shown = "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
        raise InputError(f"invalid event: {shown}", where)


def iter_field_paths(event: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    """Every leaf path of an event (used by tests comparing the schema with real events)."""
    for key, value in event.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from iter_field_paths(value, path + ".")
        else:
            yield path
