"""Event sources: the one `EventSource` interface (live eBPF, JSONL replay and auditd replay
all implement it), the JSONL reader, an in-memory twin for tests, and time ordering."""

from __future__ import annotations

import heapq
import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from secpolicy.errors import InputError
from secpolicy.events.auditd import AuditdSource, BadLines
from secpolicy.events.model import EVENT_TYPES, TS_RE, format_ts, ts_exists, ts_nanos
from secpolicy.models import Event

__all__ = [
    "AuditdSource",
    "EventSource",
    "Garbled",
    "JsonlSource",
    "MemorySource",
    "detect_format",
    "merge_sources",
    "ordered",
    "ordered_batches",
]

_TYPES = frozenset(EVENT_TYPES)


@runtime_checkable
class EventSource(Protocol):
    """Anything that yields normalised events (plain dicts). Every source checks `type` and
    `ts`; JSON lines are not checked field by field, so readers of other fields stay defensive
    (`type(proc) is dict`) rather than trust the shape."""

    def events(self) -> Iterator[Event]: ...


Garbled = BadLines  # unreadable input lines: how many, and where the first ones are

_INT_MAX = (1 << 63) - 1  # what an SQLite INTEGER (the event store) holds


class JsonlSource:
    """Events from a JSON Lines file, one event object per line. Lines that are not JSON, not
    an object, lack a valid `type` and canonical `ts`, hold a process or user id that is not a
    64-bit integer, or are longer than MAX_JSONL_LINE are counted in `garbled` (with
    `file:line: why`) and skipped."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.garbled = Garbled()
        self.read = 0

    def events(self) -> Iterator[Event]:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the with below; OSError translated here
        except OSError as exc:
            raise InputError(f"cannot read events: {exc.strerror}", str(self.path)) from None
        loads = orjson.loads  # 3-4x faster than json.loads: decoding dominates replay
        types = _TYPES
        name = str(self.path)
        bad = self.garbled.add
        why_bad = _why_bad
        limit = _INT_MAX
        low = -_INT_MAX
        longest = MAX_JSONL_LINE
        read_line = partial(fh.readline, longest + 1)  # never more than a line's limit at once
        lineno = read = 0
        # The second ("YYYY-MM-DDTHH:MM:SS") of the last timestamp checked in full: a line of
        # the same second needs only its fraction checked. Lines that are not of the usual
        # shape are checked in full by _why_bad, in the order of its reasons.
        second = "-"
        try:
            with fh:
                for line in iter(read_line, b""):
                    lineno += 1
                    if len(line) > longest and line[-1:] != b"\n":
                        bad(f"{name}:{lineno}", f"line longer than {longest} bytes")
                        piece = line
                        while piece and piece[-1:] != b"\n":
                            piece = read_line()
                        continue
                    try:
                        ev = loads(line)
                    except ValueError as exc:
                        if line.strip():
                            bad(f"{name}:{lineno}", f"not JSON ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON")
                        continue
                    try:
                        proc = ev.get("proc")
                        user = ev.get("user")
                        usual = (
                            ev["type"] in types and (ts := ev["ts"])[:19] == second
                            and len(ts) == 30 and ts[19] == "." and ts[29] == "Z" and ts[20:29].isdecimal() and ts.isascii()
                            and (proc is None or type(proc) is dict and type(pid := proc.get("pid", 0)) is int
                                 and type(uid := proc.get("uid", 0)) is int and type(euid := proc.get("euid", 0)) is int
                                 and low <= pid <= limit and low <= uid <= limit and low <= euid <= limit)
                            and (user is None or type(user) is dict and type(uid := user.get("uid", 0)) is int
                                 and low <= uid <= limit)
                        )
                    except (AttributeError, KeyError, TypeError):  # not an object, or a field missing or odd
                        usual = False
                    if usual:
                        read += 1
                        yield ev
                        continue
                    why = why_bad(ev)
                    if why is not None:
                        bad(f"{name}:{lineno}", why)
                        continue
                    second = ev["ts"][:19]
                    read += 1
                    yield ev
        except OSError as exc:
            raise InputError(f"cannot read events: {exc.strerror}", name) from None
        finally:
            self.read += read


def _why_bad(ev: Any) -> str | None:
    """Why a decoded line is not an event replay can take, if so."""
    if type(ev) is not dict:
        return "not a JSON object"
    t = ev.get("type")
    ts = ev.get("ts")
    if type(t) is not str or t not in _TYPES:
        return f"unknown event type {str(t)[:40]!r}"
    if type(ts) is not str or not TS_RE.match(ts):
        return f"ts {str(ts)[:40]!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"
    if not ts_exists(ts):
        return f"ts {ts!r} names no such date and time"
    return _out_of_range(ev)


MAX_JSONL_LINE = 1 << 20  # bytes; a longer line is a bad line, skipped without being held whole


def _out_of_range(ev: Mapping[str, Any], limit: int = _INT_MAX) -> str | None:
    """Why a number the event store keeps as an integer (proc.pid, proc.euid, proc.uid,
    user.uid) cannot be stored (not an integer, or beyond 64 bits), if so."""
    proc = ev.get("proc")
    if type(proc) is dict:
        for k in ("pid", "euid", "uid"):
            v = proc.get(k)
            if v is not None and (type(v) is not int or not -limit <= v <= limit):
                return f"proc.{k} {str(v)[:24]} is not a 64-bit integer"
    user = ev.get("user")
    if type(user) is dict:
        v = user.get("uid")
        if v is not None and (type(v) is not int or not -limit <= v <= limit):
            return f"user.uid {str(v)[:24]} is not a 64-bit integer"
    return None


class MemorySource:
    """Events from a list: the in-memory twin used by tests and `secpolicy test`."""

    def __init__(self, events: Iterable[Event]) -> None:
        self._events = list(events)

    def events(self) -> Iterator[Event]:
        return iter(self._events)


@dataclass
class OrderStats:
    """Events that arrived later than the reorder window allowed (processed anyway)."""

    late: int = 0


def ordered(
    events: Iterable[Event], window: float = 5.0, stats: OrderStats | None = None
) -> Iterator[Event]:
    """Re-emit events in timestamp order, assuming none arrives more than `window` seconds
    after a later-stamped one (auditd closes events up to 2-3 s late). Ties keep input order.
    An event later than the window is emitted at once and counted in `stats.late`."""
    for batch in ordered_batches(events, window, stats):
        yield from batch


def ordered_batches(
    events: Iterable[Event], window: float = 5.0, stats: OrderStats | None = None,
    prepare: Callable[[Event], Any] | None = None,
) -> Iterator[list[Any]]:
    """`ordered`, in lists: each list holds what one input event let out (often nothing,
    then no list), so a consumer pays for a batch, not for every event.

    With `prepare`, what is handed out for an event is `prepare(event)`, called as the
    event arrives; for None nothing is handed out or kept, though the event still moves the
    window and counts as late exactly as if it were."""
    # Everything not yet let out waits in `pending` as (ts, value), in arrival order after
    # the part sorted at the last release; events that hand out nothing wait as their bare
    # timestamps in `blank`. A release sorts both by timestamp (a stable sort: ties keep
    # arrival order; timsort merges the sorted part and the new tail in about linear time,
    # whatever the disorder of the input) and lets out what is older than the limit; the
    # newest of that is `released`. Canonical timestamps compare as strings.
    pending: list[tuple[str, Any]] = []
    blank: list[str] = []
    newest = ""
    second_end = ""  # the last timestamp of the second of `newest`: the limit moves after it
    limit = ""
    released = ""
    keep = pending.append
    keep_blank = blank.append
    window_ns = round(window * 1e9)
    for ev in events:
        ts = ev["ts"]
        value = ev if prepare is None else prepare(ev)
        if ts < released:
            if stats is not None:
                stats.late += 1
            if value is not None:
                yield [value]
            continue
        if value is None:
            keep_blank(ts)
        else:
            keep((ts, value))
        if ts >= newest:
            newest = ts
            if ts <= second_end:
                continue  # same second, same limit: nothing new to let out
            second_end = ts[:19] + ".999999999Z"
            cut = ts_nanos(ts) - window_ns  # exact: a float of seconds is off by up to 0.25 us
            limit = format_ts(cut // 1_000_000_000, cut % 1_000_000_000)
        elif ts >= limit:
            continue  # a straggler within the window
        if blank:
            blank.sort()
            cut_blank = bisect_left(blank, limit)
            if cut_blank:
                released = max(released, blank[cut_blank - 1])
                del blank[:cut_blank]
        pending.sort(key=_first)
        end = bisect_left(pending, limit, key=_first)
        if end:
            out = list(map(_second, pending[:end]))
            released = max(released, pending[end - 1][0])
            del pending[:end]
            yield out
    if pending:
        pending.sort(key=_first)
        yield list(map(_second, pending))


_first = itemgetter(0)
_second = itemgetter(1)


def merge_sources(
    sources: Iterable[EventSource], window: float = 5.0, stats: OrderStats | None = None
) -> Iterator[Event]:
    """All events of several sources in one timestamp order."""
    streams = [ordered(s.events(), window, stats) for s in sources]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda e: e["ts"])


def detect_format(path: Path | str) -> str:
    """`jsonl` or `auditd`, from the first non-blank line of the file; `empty` for a file
    with no such line (it holds no events, in either format)."""
    try:
        with open(path, "rb") as fh:
            # The first bytes that are not white space, read a block at a time: never a whole
            # line, which in a hostile file can be as long as the file.
            while True:
                block = fh.read(65536)
                if not block:
                    return "empty"
                head = block.lstrip()
                if head:
                    break
            while len(head) < 5 and (more := fh.read(5 - len(head))):
                head += more
            if head.startswith(b"{"):
                return "jsonl"
            if head.startswith((b"type=", b"node=")):
                return "auditd"
    except OSError as exc:
        raise InputError(f"cannot read events: {exc.strerror}", str(path)) from None
    raise InputError(
        "cannot tell the input format (neither JSON lines nor an audit log); use --input-format",
        str(path),
    )
