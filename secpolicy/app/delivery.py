"""The writer thread of a run's outputs: events (redacted here, off the hot loop) to the event
recording and the store, redacted alerts to the store, the audit trail and the sinks, in batches."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from secpolicy.errors import InputError, RuntimeFailure, SecpolicyError
from secpolicy.events.model import canonical_line
from secpolicy.redaction import Redactor

if TYPE_CHECKING:  # the callers open these: a run without outputs imports none of them
    from secpolicy.auditlog.sinks.uri import SinkChain
    from secpolicy.auditlog.store import EventStore
    from secpolicy.auditlog.trail import AuditTrail

__all__ = ["Delivery", "OutputStats", "merge_windows", "undelivered_message"]

LossWindows = Callable[[], Sequence[Mapping[str, Any]]]


@dataclass
class OutputStats:
    """What reached each destination, and what did not."""

    events_stored: int = 0
    events_recorded: int = 0
    alerts_stored: int = 0
    alerts_sent: int = 0
    alerts_recorded: int = 0
    loss_windows_recorded: int = 0
    store_dropped: int = 0  # events the writer could not keep up with (live only), counted
    store_rejected: int = 0  # events the store refused (malformed), counted
    store_failures: int = 0
    # events and alerts the store held already (the same record: an overlapping replay)
    store_duplicates: int = 0
    sink_failures: Counter[str] = field(default_factory=Counter)
    # per sink URI: alerts still undelivered when the sinks closed, and the spool keeping them
    sink_pending: dict[str, tuple[int, str | None, str]] = field(default_factory=dict)
    trail_error: str | None = None
    batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "events_stored": self.events_stored,
            "events_recorded": self.events_recorded,
            "alerts_stored": self.alerts_stored,
            "alerts_sent": self.alerts_sent,
            "alerts_recorded": self.alerts_recorded,
            "loss_windows_recorded": self.loss_windows_recorded,
            "store_dropped": self.store_dropped,
            "store_rejected": self.store_rejected,
            "store_failures": self.store_failures,
            "store_duplicates": self.store_duplicates,
            "sink_failures": dict(self.sink_failures),
            "sink_pending": {uri: {"alerts": n, "spool": where, "last_error": error}
                             for uri, (n, where, error) in self.sink_pending.items()},
            "trail_error": self.trail_error,
            "batches": self.batches,
        }


class Delivery:
    """Takes events (`on_event`, a bare `deque.append` when live) and already redacted alerts
    (`alert`) from the loop that produces them; a writer thread wakes every `interval` seconds
    (at once for an alert) and hands what queued up, in order and in batches, to the event
    recording, the store, the trail and the sinks. Events are redacted here, once, for both
    the recording and the store. With `overflow="block"` (replay) the producer waits when
    `max_pending` events are queued; with `"drop"` (live) the writer discards the excess,
    counts it and records it as lost: the rules still saw every event. A failing sink or
    store becomes a `failure` record; a failing audit log stops recording and is reported by
    `close()`; a failing recording ends the run (its error is raised by `close()`)."""

    def __init__(self, *, store: Callable[[], EventStore] | None = None, sinks: SinkChain | None = None,
                 trail: AuditTrail | None = None, recording: IO[bytes] | None = None,
                 loss_windows: LossWindows | None = None,
                 batch: int = 5000, interval: float = 0.25, max_pending: int = 200_000,
                 overflow: str = "drop", on_error: Callable[[str], None] | None = None,
                 redactor: Redactor | None = None) -> None:
        if overflow not in ("drop", "block"):
            raise InputError(f"overflow must be 'drop' or 'block', not {overflow!r}")
        if batch < 1 or interval <= 0 or max_pending < batch:
            raise InputError("outputs need batch >= 1, a positive interval and max_pending >= batch")
        self._open_store = store
        self.store: EventStore | None = None
        self.sinks = sinks
        self.trail = trail
        self.recording = recording
        self.loss_windows = loss_windows
        self.batch = batch
        self.interval = interval
        self.max_pending = max_pending
        self.overflow = overflow
        self.on_error = on_error
        self.redactor = redactor or Redactor()
        self.stats = OutputStats()
        self._events: deque[Mapping[str, Any]] = deque()
        self._alerts: deque[Mapping[str, Any]] = deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._ready = threading.Event()
        self._final_windows: Sequence[Mapping[str, Any]] | None = None
        self._windows_seen = 0
        # Events are only queued when something wants them: without a store or a recording,
        # the producer is given no event callback at all.
        self.wants_events = store is not None or recording is not None
        if overflow == "drop":
            self.on_event: Callable[[Mapping[str, Any]], None] = self._events.append
        else:
            self.on_event = self._event_blocking

    # -- producer side ---------------------------------------------------------------------

    def _event_blocking(self, event: Mapping[str, Any]) -> None:
        self._events.append(event)
        if len(self._events) >= self.max_pending:
            with self._room:
                while len(self._events) >= self.max_pending and self._thread is not None and self._crash is None:
                    self._wake.set()
                    self._room.wait(0.5)

    def alert(self, alert: Mapping[str, Any]) -> None:
        """Queue a redacted alert for the store, the trail and the sinks."""
        self._alerts.append(alert)
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer; the store is opened (and later closed) in its thread, because an
        SQLite connection belongs to the thread that made it. Raises what opening it raised."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="secpolicy-outputs", daemon=True)
            self._thread.start()
            self._ready.wait()
            if self._crash is not None:
                self._thread.join()
                self._thread = None
                crash, self._crash = self._crash, None
                self._stopping = True
                raise crash

    def close(self, final_loss_windows: Sequence[Mapping[str, Any]] | None = None) -> OutputStats:
        """Deliver everything still queued (and loss windows not recorded yet), close the store
        and the sinks. The trail and the recording stay open: they belong to the caller."""
        self._final_windows = final_loss_windows
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        elif not self._ready.is_set():
            self._run()  # never started: one final cycle, here
        if self.sinks is not None:
            try:
                self.sinks.close()
                self._sink_failures()
                self._delivery_problems()  # an error first met while draining is said too
            except SecpolicyError as exc:
                self._fail("sink", f"closing the sinks: {exc.render()}")
            self.stats.sink_pending = self.sinks.pending()
        if self._crash is not None:
            raise RuntimeFailure(f"delivering events and alerts failed: {type(self._crash).__name__}: "
                                 f"{self._crash}") from self._crash
        return self.stats

    def _delivery_problems(self) -> None:
        assert self.sinks is not None
        for uri, error, waiting in self.sinks.delivery_problems():
            # Queued, not lost: one record and one warning per new error, not per retry.
            self._fail("sink", f"delivery failing, {waiting} alerts queued: {error}", sink=uri,
                       alerts_queued=waiting)

    # -- writer ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._open_store is not None:
                self.store = self._open_store()
        except BaseException as exc:  # noqa: BLE001 - start() raises it
            self._crash = exc
            return
        finally:
            self._ready.set()
        try:
            while not self._stopping:
                self._wake.wait(self.interval)
                self._wake.clear()
                self._cycle(final=False, windows=None)
            self._cycle(final=True, windows=self._final_windows)
        except BaseException as exc:  # noqa: BLE001 - surfaced by close() and on_error
            self._crash = exc
            self._report(f"delivery stopped: {type(exc).__name__}: {exc}")
        finally:
            if self.store is not None:
                self.store.close()
            with self._room:
                self._room.notify_all()

    def _cycle(self, final: bool, windows: Sequence[Mapping[str, Any]] | None) -> None:
        self.stats.batches += 1
        if self.wants_events:
            self._deliver_events(final)
        alerts = _drain(self._alerts, len(self._alerts))
        if alerts:
            self._deliver_alerts(alerts)
        if self.sinks is not None:
            self.sinks.tick()
            self._sink_failures()
            self._delivery_problems()
        if windows is None and self.loss_windows is not None:
            windows = self.loss_windows()
        if windows:
            self._record_losses(windows)
        if self.trail is not None and self.stats.trail_error is None:
            self._with_trail(self.trail.sync)

    def _deliver_events(self, final: bool) -> None:
        pending = len(self._events)
        if self.overflow == "drop" and pending > self.max_pending:
            self._drop(pending - self.max_pending // 2)
            pending = len(self._events)
        # What queued up before this cycle, not what arrives during it: alerts are not held
        # up behind a busy producer.
        while pending > 0 or (final and self._events):
            chunk = _drain(self._events, self.batch)
            if not chunk:
                break
            pending -= len(chunk)
            with self._room:
                self._room.notify_all()
            events, lines = self._redacted(chunk)
            if self.recording is not None:
                self.recording.write(b"".join(lines))
                self.stats.events_recorded += len(lines)
            if self.store is not None:
                self._add_events(events, lines)
        if self.recording is not None:
            self.recording.flush()

    def _redacted(self, chunk: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[bytes]]:
        """Each event redacted once, with its canonical JSON line (the recording's line, and
        the store's copy of the event): most are decided clean on the line alone."""
        lines = [canonical_line(e) for e in chunk]
        events = list(chunk)
        for i, clean in enumerate(self.redactor.certainly_clean_many(chunk, lines)):
            if not clean:
                red = self.redactor.event(chunk[i])
                if red is not chunk[i]:
                    events[i], lines[i] = red, canonical_line(red)
        return events, lines

    def _drop(self, n: int) -> None:
        # The oldest go: discarding costs little next to storing, so the writer catches up.
        dropped = _drain(self._events, n)
        by_type = Counter(str(e.get("type")) for e in dropped)
        self.stats.store_dropped += len(dropped)
        where = "store (writer behind)" if self.recording is None else (
            "event recording" + (" and store" if self.store is not None else "") + " (writer behind)")
        window = {"start": dropped[0].get("ts", ""), "end": dropped[-1].get("ts", ""),
                  "count": len(dropped), "where": where, "by_type": dict(by_type)}
        trail = self.trail
        if trail is not None and self.stats.trail_error is None:
            self._with_trail(lambda: trail.lost([window], component="store"))
        what = "event store" if self.recording is None else where.replace(" (writer behind)", "")
        self._report(f"{what} behind: {len(dropped)} events not {'stored' if self.recording is None else 'kept'} "
                     f"({window['start']} .. {window['end']}); the rules still saw them")

    def _add_events(self, chunk: list[Mapping[str, Any]], lines: list[bytes]) -> None:
        from secpolicy.auditlog.store import event_row

        assert self.store is not None
        rows = []
        for ev, line in zip(chunk, lines, strict=True):
            try:
                rows.append(event_row(ev, line[:-1].decode("utf-8")))
            except InputError as exc:  # a malformed event is rejected alone
                self.stats.store_rejected += 1
                self._fail("store", f"event not stored: {exc.render()}", ts=str(ev.get("ts", "")))
        try:
            stored = self.store.add_event_rows(rows, len(rows) or 1)
            self.stats.events_stored += stored
            self.stats.store_duplicates += len(rows) - stored
        except RuntimeFailure as exc:
            self.stats.store_failures += 1
            self._fail("store", exc.render(), events=len(rows))

    def _deliver_alerts(self, alerts: list[Mapping[str, Any]]) -> None:
        if self.store is not None:
            try:
                stored = self.store.add_alerts(alerts, len(alerts))
                self.stats.alerts_stored += stored
                self.stats.store_duplicates += len(alerts) - stored
            except SecpolicyError as exc:
                self.stats.store_failures += 1
                self._fail("store", f"{len(alerts)} alerts not stored: {exc.render()}")
        if self.trail is not None and self.stats.trail_error is None:
            trail = self.trail
            for a in alerts:
                if not self._with_trail(partial(trail.alerts, [a])):
                    break
                self.stats.alerts_recorded += 1
        if self.sinks is not None:
            for a in alerts:
                self.sinks.emit(a)
            self.stats.alerts_sent += len(alerts)

    def _sink_failures(self) -> None:
        assert self.sinks is not None
        by_sink: dict[str, list[str]] = {}
        for uri, msg in self.sinks.take_failures():
            by_sink.setdefault(uri, []).append(msg)
        for uri, msgs in by_sink.items():
            self.stats.sink_failures[uri] += len(msgs)
            # One record per sink and batch, however many alerts it failed to take.
            self._fail("sink", msgs[-1], sink=uri, alerts_failed=len(msgs))

    def _record_losses(self, windows: Sequence[Mapping[str, Any]]) -> None:
        new = list(windows[self._windows_seen:])
        if not new:
            return
        self._windows_seen = len(windows)
        if self.trail is not None and self.stats.trail_error is None:
            trail = self.trail
            merged = merge_windows(new)
            if self._with_trail(lambda: trail.lost(merged)):
                self.stats.loss_windows_recorded += len(new)

    def _fail(self, component: str, message: str, **details: Any) -> None:
        if self.trail is not None and self.stats.trail_error is None:
            trail = self.trail
            self._with_trail(lambda: trail.failure(message, component=component, **details))
        self._report(f"{component}: {message}")

    def _with_trail(self, fn: Callable[[], Any]) -> bool:
        try:
            fn()
            return True
        except (SecpolicyError, OSError) as exc:
            text = exc.render() if isinstance(exc, SecpolicyError) else str(exc)
            self.stats.trail_error = text
            self._report(f"audit log: {text}; no further records are written")
            return False

    def _report(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(message)


def undelivered_message(uri: str, count: int, spool: str | None, error: str = "") -> str:
    """What the operator and the audit log are told about alerts a sink still holds at the end."""
    why = f" (last error: {error})" if error else ""
    if spool is not None:
        return (f"{count} alerts not delivered to {uri} before the run ended: they stay in the spool {spool} "
                f"and go out with the next run that uses it{why}")
    return (f"{count} alerts not delivered to {uri} before the run ended: lost (give the sink spool=DIR to keep "
            f"them){why}")


def merge_windows(windows: Sequence[Mapping[str, Any]], keep: int = 50) -> list[dict[str, Any]]:
    """The loss windows of one writer cycle, one per place of loss (kernel, queue, ...): a
    flood of losses gives a few records a second, each spanning its windows, with the first
    `keep` windows listed in full."""
    out: dict[str, dict[str, Any]] = {}
    for w in windows:
        where = str(w.get("where", ""))
        m = out.get(where)
        if m is None:
            m = out[where] = {"where": where, "start": w.get("start", ""), "end": w.get("end", ""),
                              "count": 0, "by_type": Counter(), "windows": []}
        m["count"] += int(w.get("count", 0))
        m["start"] = min(m["start"], w.get("start", m["start"]))
        m["end"] = max(m["end"], w.get("end", m["end"]))
        m["by_type"].update(w.get("by_type") or {})
        if len(m["windows"]) < keep:
            m["windows"].append(dict(w))
    for m in out.values():
        m["by_type"] = dict(m["by_type"])
        m["windows_total"] = len([w for w in windows if str(w.get("where", "")) == m["where"]])
    return list(out.values())


def _drain(q: deque[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    # popleft is atomic against the producer's append; len() may only grow meanwhile.
    pop = q.popleft
    return [pop() for _ in range(min(n, len(q)))]

