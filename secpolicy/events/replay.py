"""Replay of recorded events (JSONL or audit logs) through the event engine in timestamp
order, writing alerts as JSON lines and counting what was read (aureport-like summary)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from secpolicy.errors import InputError
from secpolicy.events.auditd import AuditdSource, AuditSummary
from secpolicy.events.engine import EventEngine
from secpolicy.events.model import canonical_json
from secpolicy.events.sources import JsonlSource, OrderStats, detect_format, merge_sources

__all__ = ["INPUT_FORMATS", "ReplayResult", "open_sources", "replay", "write_alert", "write_jsonl_event"]

INPUT_FORMATS = ("auto", "jsonl", "auditd")


def write_jsonl_event(out: IO[str], event: dict[str, Any]) -> None:
    """One canonical JSON line per event (sorted keys): the recording format replay reads."""
    out.write(canonical_json(event))
    out.write("\n")


def write_alert(out: IO[str], alert: dict[str, Any]) -> None:
    out.write(canonical_json(alert))
    out.write("\n")


@dataclass
class ReplayResult:
    """What one replay read and raised."""

    events: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    garbled: int = 0
    garbled_where: list[str] = field(default_factory=list)
    late_events: int = 0
    audit: AuditSummary | None = None
    engine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "events_by_type": dict(sorted(self.events_by_type.items())),
            "alerts": self.alerts,
            "alerts_by_rule": dict(sorted(self.alerts_by_rule.items())),
            "garbled_lines": self.garbled,
            "late_events": self.late_events,
            "engine": self.engine,
        }
        if self.audit is not None:
            out["auditd"] = self.audit.to_dict()
        return out


def open_sources(paths: Sequence[Path | str], input_format: str = "auto") -> list[Any]:
    """One source per JSONL file; all audit logs go to one AuditdSource, read in the order
    given (rotated logs: oldest first), so records of an event split across files regroup."""
    if input_format not in INPUT_FORMATS:
        raise InputError(f"unknown input format {input_format!r} (one of {', '.join(INPUT_FORMATS)})")
    jsonl: list[Any] = []
    audit: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise InputError("no such file" if not path.exists() else "not a regular file", str(path))
        fmt = detect_format(path) if input_format == "auto" else input_format
        if fmt == "jsonl":
            jsonl.append(JsonlSource(path))
        else:
            audit.append(path)
    sources = list(jsonl)
    if audit:
        sources.append(AuditdSource(audit))
    return sources


def replay(
    sources: Iterable[Any],
    engine: EventEngine,
    out: IO[str] | None,
    *,
    window: float = 5.0,
) -> ReplayResult:
    """Evaluate every event of `sources`, merged in timestamp order, writing each alert as a
    JSON line to `out` (when given)."""
    sources = list(sources)
    # Events and alerts are acyclic dicts freed by reference counting; the cyclic collector
    # would rescan the thousands of events held in the reorder window again and again
    # (measured: about a third of replay time), so it is paused for the loop.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _replay(sources, engine, out, window)
    finally:
        if gc_was_enabled:
            gc.enable()


def _replay(sources: list[Any], engine: EventEngine, out: IO[str] | None, window: float) -> ReplayResult:
    result = ReplayResult()
    order = OrderStats()
    process = engine.process
    by_type = result.events_by_type
    by_rule = result.alerts_by_rule
    n = 0
    for ev in merge_sources(sources, window, order):
        n += 1
        by_type[ev["type"]] += 1
        alerts = process(ev)
        if alerts:
            for a in alerts:
                by_rule[a["rule_id"]] += 1
                if out is not None:
                    write_alert(out, a)
    result.events = n
    result.alerts = sum(by_rule.values())
    result.late_events = order.late
    for s in sources:
        if isinstance(s, JsonlSource):
            result.garbled += s.garbled.count
            result.garbled_where.extend(s.garbled.where)
        elif isinstance(s, AuditdSource):
            result.audit = s.summary
            result.garbled += s.summary.garbled
            result.garbled_where.extend(f"{w}: not an audit record" for w in s.summary.garbled_where)
    result.engine = engine.stats()
    return result
