"""Replay of recorded events (JSONL or audit logs) through the event engine in timestamp
order, writing alerts as JSON lines and counting what was read (aureport-like summary)."""

from __future__ import annotations

import gc
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, cast

import orjson

from secpolicy.errors import InputError
from secpolicy.events.auditd import AccountNames, AuditdSource, AuditSummary, order_audit_logs
from secpolicy.events.engine import EventEngine
from secpolicy.events.sources import (
    EventSource,
    JsonlSource,
    OrderStats,
    detect_format,
    merge_sources,
    ordered_batches,
)
from secpolicy.models import Alert, Event

__all__ = ["INPUT_FORMATS", "ReplayResult", "open_sources", "replay", "write_alert", "write_jsonl_event"]

INPUT_FORMATS = ("auto", "jsonl", "auditd")

_dumps = orjson.dumps
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def write_jsonl_event(out: IO[str], event: Event) -> None:
    """One canonical JSON line per event (sorted keys): the recording format replay reads."""
    out.write(_dumps(event, option=_SORTED).decode("utf-8"))


def write_alert(out: IO[str], alert: Alert) -> None:
    """One alert as a canonical JSON line (sorted keys, no spaces, UTF-8 kept)."""
    out.write(_dumps(alert, option=_SORTED).decode("utf-8"))


@dataclass
class ReplayResult:
    """What one replay read and raised."""

    events: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    bad_lines: int = 0
    bad_where: list[str] = field(default_factory=list)
    late_events: int = 0
    audit: AuditSummary | None = None
    engine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "events_by_type": dict(sorted(self.events_by_type.items())),
            "alerts": self.alerts,
            "alerts_by_rule": dict(sorted(self.alerts_by_rule.items())),
            "bad_lines": self.bad_lines,
            "late_events": self.late_events,
            "engine": self.engine,
        }
        if self.audit is not None:
            out["auditd"] = self.audit.to_dict()
        return out


def open_sources(
    paths: Sequence[Path | str],
    input_format: str = "auto",
    *,
    names: AccountNames | None = None,
    aureport: bool = False,
) -> list[EventSource]:
    """One source per JSONL file; all audit logs go to one AuditdSource, read in the order of
    their content (rotated logs in any order), so records of an event split across files
    regroup. `names` names users of logs written without names; `aureport` makes the audit
    summary hold aureport's own counts."""
    if input_format not in INPUT_FORMATS:
        raise InputError(f"unknown input format {input_format!r} (one of {', '.join(INPUT_FORMATS)})")
    jsonl: list[EventSource] = []
    audit: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError("no such file" if not path.exists() else "not a regular file", str(path))
        fmt = detect_format(path) if input_format == "auto" else input_format
        if fmt == "empty":
            continue  # nothing to read: a rotated log may be empty or hold blank lines only
        if fmt == "jsonl":
            jsonl.append(JsonlSource(path))
        else:
            audit.append(path)
    sources = list(jsonl)
    if audit:
        sources.append(AuditdSource(order_audit_logs(audit), names=names, aureport=aureport))
    return sources


def replay(
    sources: Iterable[EventSource],
    engine: EventEngine,
    out: IO[str] | IO[bytes] | None,
    *,
    window: float = 5.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    on_lines: Callable[[list[dict[str, Any]], list[bytes]], list[bytes]] | None = None,
) -> ReplayResult:
    """Evaluate every event of `sources`, merged in timestamp order, writing each alert as a
    JSON line to `out` (a text or, faster, a binary stream) and handing events and alerts to
    `on_event`/`on_alert`. When the alerts go to `out` alone, `on_lines(events, lines)` may
    replace a batch of lines (each raised by its event) before they are written (redaction)."""
    sources = list(sources)
    # Events and alerts are acyclic dicts freed by reference counting; the cyclic collector
    # would rescan the thousands of events held in the reorder window again and again
    # (measured: about a third of replay time), so it is paused for the loop.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(sources, engine, out, window, on_event, on_alert, on_lines)
    finally:
        if gc_was_enabled:
            gc.enable()


_CHUNK = 256  # alert lines per write


def _write(out: Any, lines: list[bytes], text: bool) -> None:
    chunk = b"".join(lines)
    out.write(chunk.decode("utf-8") if text else chunk)
    lines.clear()


def _replay(sources: list[Any], engine: Any, out: IO[str] | IO[bytes] | None, window: float,
            on_event: Callable[[dict[str, Any]], None] | None,
            on_alert: Callable[[dict[str, Any]], None] | None,
            on_lines: Callable[[list[dict[str, Any]], list[bytes]], list[bytes]] | None = None
            ) -> ReplayResult:
    result = ReplayResult()
    order = OrderStats()
    evaluate, apply = engine.evaluate, engine.apply
    lines = engine.apply_lines if out is not None and on_alert is None else None
    by_type: dict[str, int] = {}
    by_rule = result.alerts_by_rule
    text = isinstance(out, io.TextIOBase)
    # The callbacks' consumers are declared over plain dicts, which events and alerts are.
    event_to = cast("Callable[[Event], None] | None", on_event)
    alert_to = cast("Callable[[Alert], None] | None", on_alert)

    def prepare(ev: Event) -> tuple[Event, list[Any] | None] | None:
        # Conditions read one event, so they are evaluated as it is read. An event no rule
        # holds for raises no alert and moves no correlation: unless the event itself goes
        # somewhere (on_event), it is not kept in the reorder window (the window still
        # moves with it), which keeps what the window holds small.
        t = ev["type"]
        by_type[t] = by_type[t] + 1 if t in by_type else 1
        hits = evaluate(ev)
        if hits is None and on_event is None:
            return None
        return ev, hits

    if len(sources) == 1:
        batches: Iterator[list[Any]] = ordered_batches(sources[0].events(), window, order, prepare)
    else:
        merged = merge_sources(sources, window, order)
        batches = iter(lambda: [prepare(ev) for ev in islice(merged, 256)], [])
    # Alert lines are written in chunks: one write per chunk rather than per alert.
    pending: list[bytes] = []
    keep = pending.append
    sources_of: list[dict[str, Any]] = []  # with on_lines: the event behind each pending line
    raised_by = sources_of.append

    def flush() -> None:
        if on_lines is not None and sources_of:
            pending[:] = on_lines(sources_of, pending)
            sources_of.clear()
        _write(out, pending, text)
    try:
        for batch in batches:
            for item in batch:
                if item is None:
                    continue
                ev, hits = item
                if event_to is not None:
                    event_to(ev)
                if hits is None:
                    continue
                if lines is not None:  # the alerts go to `out` alone: as lines, never dicts
                    for rule_id, line in lines(ev, hits):
                        by_rule[rule_id] += 1
                        keep(line)
                        if on_lines is not None:
                            raised_by(ev)
                    continue
                for a in apply(ev, hits):
                    by_rule[a["rule_id"]] += 1
                    if out is not None:
                        keep(_dumps(a, option=_SORTED))
                    if alert_to is not None:
                        alert_to(a)
            if len(pending) >= _CHUNK:
                flush()
    finally:
        if pending:  # what was raised before a failure is written too
            flush()
    result.events_by_type.update(by_type)
    result.events = sum(by_type.values())
    result.alerts = sum(by_rule.values())
    result.late_events = order.late
    for s in sources:
        if isinstance(s, JsonlSource):
            result.bad_lines += s.garbled.count
            result.bad_where.extend(s.garbled.where)
        elif isinstance(s, AuditdSource):
            result.audit = s.summary
            result.bad_lines += s.summary.bad.count
            result.bad_where.extend(s.summary.bad.where)
    result.engine = engine.stats()
    return result
