"""The live monitor: LiveSource events through the EventEngine (and, optionally, live FIM), alerts
and every event written as JSON lines, lost events reported per type and window, a summary."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from secpolicy.events.bpf_plan import KernelPlan, plan_for_rules, with_watched_paths
from secpolicy.events.live import LiveSource, LossWindow, available_types
from secpolicy.events.live.storm import AlertStorm, StormControl
from secpolicy.events.model import canonical_line

__all__ = ["FileWatcher", "Monitor", "MonitorSummary", "StormControl", "coverage_for"]

if TYPE_CHECKING:
    from secpolicy.events.engine import EventEngine
    from secpolicy.models import Alert, AlertCoverage, Event
    from secpolicy.rules import Rule


class FileWatcher(Protocol):
    """What the monitor needs of live file integrity monitoring (`secpolicy.fim.live.LiveFim`):
    the paths to let through the kernel, a cheap `observe` on the event loop, and a worker that
    emits alerts from its own thread until `close()`."""

    prefixes: tuple[str, ...]

    def observe(self, event: Event) -> None: ...

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
    storm: dict[str, Any] = field(default_factory=dict)

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
            "storm": self.storm,
        }
        if self.fim is not None:
            out["fim"] = self.fim
        return out


def coverage_for(alert: Alert, windows: Iterable[LossWindow]) -> AlertCoverage | None:
    """The coverage note of an alert: events lost in windows overlapping its own, or None."""
    ctx = alert.get("aggregate") or alert.get("context") or {}
    span = ctx.get("window") or [alert.get("ts"), alert.get("ts")]
    start, end = span[0], span[-1]
    lost = 0
    by_type: Counter[str] = Counter()
    first: str | None = None
    last: str | None = None
    for w in windows:
        if w.start <= end and w.end >= start:
            lost += w.count
            by_type.update(w.by_type)
            first = w.start if first is None or w.start < first else first
            last = w.end if last is None or w.end > last else last
    if not lost or first is None or last is None:
        return None
    return {"lost": lost, "lost_by_type": dict(by_type), "window": [first, last]}


def json_line(obj: dict[str, Any]) -> str:
    """The canonical JSON line of an event or alert (`canonical_line` as text)."""
    return canonical_line(obj).decode("utf-8")


class _AlertOutput:
    """Where alerts go. Rule alerts come from the event loop, FIM alerts from the FIM worker,
    aggregates from a ticker thread: one writer at a time. Output is flushed by the ticker
    (every 0.1 s) rather than per alert, which lets a burst of alerts through without growing
    lag; `on_alert` sees each alert written, with its coverage note, and `on_flush` is called
    at each of those flushes."""

    def __init__(self, src: LiveSource, storm: AlertStorm, alerts_out: IO[str] | None,
                 on_alert: Callable[[dict[str, Any]], None] | None, by_rule: Counter[str],
                 on_flush: Callable[[], None] | None = None) -> None:
        self.src = src
        self.storm = storm
        self.alerts_out = alerts_out
        self.on_alert = on_alert
        self.on_flush = on_flush
        self.by_rule = by_rule
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="secpolicy-alerts", daemon=True)

    def start(self) -> None:
        self.ticker.start()

    def _write(self, alerts: list[Alert]) -> None:
        windows = self.src.loss_windows()
        out = self.alerts_out
        # json_line and on_alert are declared over plain dicts, which alerts are.
        line_of = cast("Callable[[Alert], str]", json_line)
        on_alert = cast("Callable[[Alert], None] | None", self.on_alert)
        for a in alerts:
            if windows:
                cov = coverage_for(a, windows)
                if cov is not None:
                    a["coverage"] = cov
            if out is not None:
                out.write(line_of(a))
            if on_alert is not None:
                on_alert(a)

    def rule_alerts(self, alerts: list[Alert]) -> None:
        with self.lock:
            for a in alerts:
                self.by_rule[a["rule_id"]] += 1
            self._write([a for a in alerts if self.storm.offer(a)])

    def fim_alert(self, alert: dict[str, Any]) -> None:
        with self.lock:
            self.by_rule[alert["rule_id"]] += 1
            self._write([cast("Alert", alert)])  # live FIM's alerts (fim/live.py builds them as dicts)

    def _flush(self, alerts: list[Alert]) -> None:
        with self.lock:
            self._write(alerts)
            if self.alerts_out is not None:
                self.alerts_out.flush()
            if self.on_flush is not None:
                self.on_flush()

    def _tick(self) -> None:
        while not self.done.wait(0.1):
            with self.lock:
                due = self.storm.due()
            self._flush(due)

    def close(self) -> None:
        """Stop the ticker, write what the storm control still holds, flush."""
        self.done.set()
        if self.ticker.is_alive():
            self.ticker.join()
        with self.lock:
            rest = self.storm.drain()
        self._flush(rest)


class Monitor:
    """Run the live source through an engine until `stop()` (or `duration` seconds)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        engine: EventEngine,
        *,
        plan: KernelPlan | None = None,
        source: LiveSource | None = None,
        fim: FileWatcher | None = None,
        storm: StormControl | None = None,
        **source_options: Any,
    ) -> None:
        self.rules = rules
        self.engine = engine
        self.fim = fim
        # Without storm control given, every alert is written (what replay of the recording
        # gives too); `secpolicy monitor` turns it on by default.
        self.storm = storm or StormControl(window=0)
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
        on_flush: Callable[[], None] | None = None,
    ) -> MonitorSummary:
        """Deliver events to the engine until stopped. `on_event` sees every event before the
        engine does and `on_alert` every alert once its coverage note is set; both run on this
        loop (and `on_alert` also on the FIM worker and the storm-control ticker, one alert at
        a time), so they must only hand over (e.g. `deque.append`) or write to a buffer that
        `on_flush`, called every 0.1 s, makes visible. With `fim`, file events also go to its
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
        # The alert output and the callbacks are declared over plain dicts, which events and
        # alerts are: bound once here, typed as what they are handed.
        event_to = cast("Callable[[Event], None] | None", on_event)
        line_of = cast("Callable[[Event], str]", json_line)
        by_type = summary.events_by_type
        by_rule = summary.alerts_by_rule
        fim = self.fim
        observe = fim.observe if fim is not None else None
        out = _AlertOutput(src, AlertStorm(self.storm), alerts_out, on_alert, by_rule, on_flush)
        out.start()
        if fim is not None:
            fim.start(out.fim_alert)
        try:
            rule_alerts = out.rule_alerts
            for ev in src.events():
                by_type[ev["type"]] += 1
                if event_to is not None:
                    event_to(ev)
                if observe is not None:
                    observe(ev)
                if events_out is not None:
                    events_out.write(line_of(ev))
                alerts = process(ev)
                if alerts:
                    rule_alerts(alerts)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            try:
                if fim is not None:
                    fim.close()
            finally:
                out.close()
                stats = src.stats()
                src.close()
        summary.storm = out.storm.stats()
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
