"""The live monitor: LiveSource events through the EventEngine (and, optionally, live FIM), alerts
and every event written as JSON lines, lost events reported per type and window, a summary."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from secpolicy.events.bpf_plan import KernelPlan, plan_for_rules, with_watched_paths
from secpolicy.events.live import LiveSource, LossWindow, available_types
from secpolicy.events.model import canonical_json

__all__ = ["FileWatcher", "Monitor", "MonitorSummary", "coverage_for"]


class FileWatcher(Protocol):
    """What the monitor needs of live file integrity monitoring (`secpolicy.fim.live.LiveFim`):
    the paths to let through the kernel, a cheap `observe` on the event loop, and a worker that
    emits alerts from its own thread until `close()`."""

    prefixes: tuple[str, ...]

    def observe(self, event: dict[str, Any]) -> None: ...

    def start(self, emit: Callable[[dict[str, Any]], None]) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass
class MonitorSummary:
    """What one monitor run saw, raised and lost."""

    started: str = ""
    ended: str = ""
    duration: float = 0.0
    events_by_type: Counter[str] = field(default_factory=Counter)
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    lost_by_type: dict[str, int] = field(default_factory=dict)
    kernel_lost: dict[str, int] = field(default_factory=dict)
    queue_dropped: dict[str, int] = field(default_factory=dict)
    kernel_sent: dict[str, int] = field(default_factory=dict)
    loss_windows: list[LossWindow] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # rules some of whose event types this kernel cannot produce (and whether they can fire)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    internal: dict[str, int] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    fim: dict[str, Any] | None = None

    @property
    def lost(self) -> int:
        return sum(self.lost_by_type.values())

    def to_dict(self) -> dict[str, Any]:
        out = {
            "started": self.started,
            "ended": self.ended,
            "duration_s": round(self.duration, 3),
            "events": sum(self.events_by_type.values()),
            "events_by_type": dict(sorted(self.events_by_type.items())),
            "alerts": sum(self.alerts_by_rule.values()),
            "alerts_by_rule": dict(sorted(self.alerts_by_rule.items())),
            "lost": self.lost,
            "lost_by_type": dict(sorted(self.lost_by_type.items())),
            "kernel_lost": dict(sorted(self.kernel_lost.items())),
            "queue_dropped": dict(sorted(self.queue_dropped.items())),
            "kernel_sent": dict(sorted(self.kernel_sent.items())),
            "loss_windows": [w.to_dict() for w in self.loss_windows],
            "probes": list(self.probes),
            "kernel_filter": self.plan,
            "notes": list(self.notes),
            "rules_not_covered": list(self.coverage),
            "rules_cannot_fire": [c["rule_id"] for c in self.coverage if not c["can_fire"]],
            "internal": dict(sorted(self.internal.items())),
            "engine": self.engine,
        }
        if self.fim is not None:
            out["fim"] = self.fim
        return out


def coverage_for(alert: dict[str, Any], windows: Iterable[LossWindow]) -> dict[str, Any] | None:
    """The coverage note of an alert: events lost in windows overlapping its own, or None."""
    ctx = alert.get("context") or {}
    span = ctx.get("window") or [alert.get("ts"), alert.get("ts")]
    start, end = span[0], span[-1]
    lost = 0
    by_type: Counter[str] = Counter()
    first = last = None
    for w in windows:
        if w.start <= end and w.end >= start:
            lost += w.count
            by_type.update(w.by_type)
            first = w.start if first is None or w.start < first else first
            last = w.end if last is None or w.end > last else last
    if not lost:
        return None
    return {"lost": lost, "lost_by_type": dict(by_type), "window": [first, last]}


class Monitor:
    """Run the live source through an engine until `stop()` (or `duration` seconds)."""

    def __init__(
        self,
        rules: list[Any],
        engine: Any,
        *,
        plan: KernelPlan | None = None,
        source: LiveSource | None = None,
        fim: FileWatcher | None = None,
        **source_options: Any,
    ) -> None:
        self.rules = rules
        self.engine = engine
        self.fim = fim
        if plan is None:
            avail = [t for t, why in available_types().items() if why is None]
            plan = plan_for_rules(rules, avail)
            if fim is not None:
                plan = with_watched_paths(plan, fim.prefixes, avail)
        self.plan = plan
        self.source = source or LiveSource(plan, **source_options)
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        """Compile and attach; after this returns, events are being recorded."""
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    def run(
        self,
        alerts_out: IO[str] | None,
        events_out: IO[str] | None = None,
        *,
        duration: float | None = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> MonitorSummary:
        """Deliver events to the engine until stopped. `on_event` sees every event before the
        engine does and `on_alert` every alert once its coverage note is set; both run on this
        loop (and `on_alert` also on the FIM worker, one alert at a time), so they must only
        hand over (e.g. `deque.append`), never do I/O. With `fim`, file events also go to its
        `observe`, and what is still pending is re-checked before the summary is made."""
        src = self.source
        if not src.started:
            src.start()
        summary = MonitorSummary(started=src.now(), probes=list(src.attached),
                                 plan=self.plan.to_dict(), notes=list(self.plan.notes),
                                 coverage=[{"rule_id": c.rule_id, "missing": list(c.missing), "can_fire": c.can_fire}
                                           for c in self.plan.coverage])
        t0 = time.monotonic()
        if duration is not None:
            self._timer = threading.Timer(duration, src.stop)
            self._timer.daemon = True
            self._timer.start()
        process = self.engine.process
        by_type = summary.events_by_type
        by_rule = summary.alerts_by_rule
        fim = self.fim
        observe = fim.observe if fim is not None else None
        # Rule alerts come from this loop, FIM alerts from the FIM worker: one at a time.
        emitting = threading.Lock()

        def emit(alerts: list[dict[str, Any]]) -> None:
            windows = src.loss_windows()
            with emitting:
                for a in alerts:
                    if windows:
                        cov = coverage_for(a, windows)
                        if cov is not None:
                            a["coverage"] = cov
                    by_rule[a["rule_id"]] += 1
                    if alerts_out is not None:
                        alerts_out.write(canonical_json(a))
                        alerts_out.write("\n")
                        alerts_out.flush()
                    if on_alert is not None:
                        on_alert(a)

        if fim is not None:
            fim.start(lambda a: emit([a]))
        try:
            for ev in src.events():
                by_type[ev["type"]] += 1
                if on_event is not None:
                    on_event(ev)
                if observe is not None:
                    observe(ev)
                if events_out is not None:
                    events_out.write(canonical_json(ev))
                    events_out.write("\n")
                alerts = process(ev)
                if alerts:
                    emit(alerts)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            try:
                if fim is not None:
                    fim.close()
            finally:
                stats = src.stats()
                src.close()
        summary.ended = src.now()
        summary.duration = time.monotonic() - t0
        summary.kernel_lost = stats.kernel_lost
        summary.queue_dropped = stats.queue_dropped
        summary.kernel_sent = stats.kernel_sent
        summary.lost_by_type = stats.lost()
        summary.loss_windows = list(stats.windows)
        summary.internal = stats.internal
        if src.decode_error is not None:
            summary.notes.append(f"{stats.internal.get('decode_errors', 0)} records could not be decoded "
                                 f"(first: {src.decode_error}); they reached no rule")
        summary.engine = self.engine.stats()
        if fim is not None:
            summary.fim = fim.stats()
        return summary
