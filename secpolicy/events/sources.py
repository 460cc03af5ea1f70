"""Event sources: the one `EventSource` interface (live eBPF, JSONL replay and auditd replay
all implement it), the JSONL reader, an in-memory twin for tests, and time ordering."""

from __future__ import annotations

import heapq
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from secpolicy.errors import InputError
from secpolicy.events.auditd import AuditdSource, BadLines
from secpolicy.events.model import EVENT_TYPES, TS_RE, format_ts, ts_exists, ts_seconds

__all__ = [
    "AuditdSource",
    "EventSource",
    "Garbled",
    "JsonlSource",
    "MemorySource",
    "detect_format",
    "merge_sources",
    "ordered",
]

_TYPES = frozenset(EVENT_TYPES)


@runtime_checkable
class EventSource(Protocol):
    """Anything that yields normalised events (plain dicts)."""

    def events(self) -> Iterator[dict[str, Any]]: ...


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

    def events(self) -> Iterator[dict[str, Any]]:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the with below; OSError translated here
        except OSError as exc:
            raise InputError(f"cannot read events: {exc.strerror}", str(self.path)) from None
        loads = orjson.loads  # 3-4x faster than json.loads: decoding dominates replay
        ts_ok = TS_RE.match
        types = _TYPES
        name = str(self.path)
        bad = self.garbled.add
        out_of_range = _out_of_range
        longest = MAX_JSONL_LINE
        read_line = partial(fh.readline, longest + 1)  # never more than a line's limit at once
        lineno = read = 0
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
                    if type(ev) is not dict:
                        bad(f"{name}:{lineno}", "not a JSON object")
                        continue
                    t = ev.get("type")
                    ts = ev.get("ts")
                    if type(t) is not str or t not in types:
                        bad(f"{name}:{lineno}", f"unknown event type {str(t)[:40]!r}")
                        continue
                    if type(ts) is not str or not ts_ok(ts):
                        bad(f"{name}:{lineno}", f"ts {str(ts)[:40]!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")
                        continue
                    if not ts_exists(ts):
                        bad(f"{name}:{lineno}", f"ts {ts!r} names no such date and time")
                        continue
                    why = out_of_range(ev)
                    if why is not None:
                        bad(f"{name}:{lineno}", why)
                        continue
                    read += 1
                    yield ev
        except OSError as exc:
            raise InputError(f"cannot read events: {exc.strerror}", name) from None
        finally:
            self.read += read


MAX_JSONL_LINE = 1 << 20  # bytes; a longer line is a bad line, skipped without being held whole


def _out_of_range(ev: dict[str, Any], limit: int = _INT_MAX) -> str | None:
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

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        self._events = list(events)

    def events(self) -> Iterator[dict[str, Any]]:
        return iter(self._events)


@dataclass
class OrderStats:
    """Events that arrived later than the reorder window allowed (processed anyway)."""

    late: int = 0


def ordered(
    events: Iterable[dict[str, Any]], window: float = 5.0, stats: OrderStats | None = None
) -> Iterator[dict[str, Any]]:
    """Re-emit events in timestamp order, assuming none arrives more than `window` seconds
    after a later-stamped one (auditd closes events up to 2-3 s late). Ties keep input order.
    An event later than the window is emitted at once and counted in `stats.late`."""
    # Events already in order (the common case) queue in `run` in O(1); only stragglers go
    # through the heap. Releasing takes the smaller head of the two. Canonical timestamps
    # compare as strings, so the window test needs no parsing.
    run: deque[tuple[str, int, dict[str, Any]]] = deque()
    heap: list[tuple[str, int, dict[str, Any]]] = []
    seq = 0
    newest = ""
    second_end = ""  # the last timestamp of the second of `newest`: the limit moves after it
    limit = ""
    released = ""
    push, pop, popleft = heapq.heappush, heapq.heappop, run.popleft
    for ev in events:
        ts = ev["ts"]
        if ts < released:
            if stats is not None:
                stats.late += 1
            yield ev
            continue
        seq += 1
        if ts >= newest:
            run.append((ts, seq, ev))
            newest = ts
            if ts <= second_end:
                continue  # same second, same limit: nothing new to release
            second_end = ts[:19] + ".999999999Z"
            cut = ts_seconds(ts) - window
            whole = int(cut)
            limit = format_ts(whole, round((cut - whole) * 1e9) % 1_000_000_000)
        else:
            push(heap, (ts, seq, ev))
            if ts >= limit:
                continue
        while True:
            if heap:
                h = heap[0]
                if run:
                    r = run[0]
                    from_heap = h[0] < r[0] or (h[0] == r[0] and h[1] < r[1])
                else:
                    from_heap = True
            elif run:
                from_heap = False
            else:
                break
            if from_heap:
                if heap[0][0] >= limit:
                    break
                released, _, out = pop(heap)
            else:
                if run[0][0] >= limit:
                    break
                released, _, out = popleft()
            yield out
    rest = sorted(list(run) + heap, key=lambda x: x[:2])
    for released, _, out in rest:
        yield out


def merge_sources(
    sources: Iterable[EventSource], window: float = 5.0, stats: OrderStats | None = None
) -> Iterator[dict[str, Any]]:
    """All events of several sources in one timestamp order."""
    streams = [ordered(s.events(), window, stats) for s in sources]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda e: e["ts"])


def detect_format(path: Path | str) -> str:
    """`jsonl` or `auditd`, from the first non-blank line of the file."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                if line.startswith(b"{"):
                    return "jsonl"
                if line.startswith((b"type=", b"node=")):
                    return "auditd"
                break
    except OSError as exc:
        raise InputError(f"cannot read events: {exc.strerror}", str(path)) from None
    raise InputError(
        "cannot tell the input format (neither JSON lines nor an audit log); use --input-format",
        str(path),
    )
