"""Every output of a replay or monitor run, checked before the run starts and fed through one
fan-out: each alert redacted once, then written to the alert output and handed to the writer."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import orjson

from secpolicy.app.delivery import Delivery, OutputStats, undelivered_message
from secpolicy.app.redaction import open_redactor
from secpolicy.errors import InputError, RuntimeFailure, SecpolicyError
from secpolicy.events.model import canonical_line
from secpolicy.redaction import Redactor

if TYPE_CHECKING:
    from secpolicy.auditlog.sinks.uri import SinkSpec
    from secpolicy.auditlog.trail import AuditTrail

_ALERT_BATCH = 256

__all__ = ["OutputOptions", "OutputSettings", "RunOutputs", "RunStats"]


@dataclass(frozen=True)
class OutputSettings:
    """The checked outputs of one run: nothing is opened (and no work starts) until every
    one of them is valid. `alerts` is the alert output (a path, `-` for standard output, or
    None for none), `events` the event recording; `files` are other files the run writes
    (a summary, a ready file), checked alike."""

    audit_log: str | None = None
    store: str | None = None
    sinks: tuple[SinkSpec, ...] = ()
    dedup_window: float | None = None
    rate_limit: tuple[int, float] | None = None
    alerts: str | None = None
    events: str | None = None
    files: tuple[str, ...] = ()
    redaction: str | None = None
    # A live record that others follow while it grows (the monitor's) is written in place;
    # otherwise through a temporary file renamed when the run ends.
    stream: bool = False

    @classmethod
    def from_options(cls, audit_log: str | None, store_path: str | None, sink_uris: Sequence[str],
                     sink_format: str, dedup_window: float | None, rate_limit: str | None, *,
                     alerts: str | None = None, events: str | None = None, files: Sequence[str | None] = (),
                     redaction: str | None = None, stream: bool = False) -> OutputSettings:
        # The sink modules only where sinks are asked for: a run without them starts faster.
        if sink_uris or rate_limit is not None:
            from secpolicy.auditlog.sinks.uri import parse_rate_limit, parse_sink_uri
        specs = tuple(parse_sink_uri(u, sink_format) for u in sink_uris)
        if (dedup_window is not None or rate_limit is not None) and not specs:
            raise InputError("--dedup-window and --rate-limit apply to sinks: give --sink URI")
        settings = cls(audit_log, store_path, specs, dedup_window,
                       parse_rate_limit(rate_limit) if rate_limit is not None else None,
                       alerts, events, tuple(f for f in files if f is not None), redaction, stream)
        settings.check()
        return settings

    @property
    def stdout_sink(self) -> bool:
        return any(s.kind == "stdout" for s in self.sinks)

    def check(self) -> None:
        """Refuse, before any work: an output that cannot be written, two outputs on one
        file or on standard output, an audit log that is not one, an unreadable redaction
        policy. (`open_redactor` then reads the policy itself.)"""
        from secpolicy import outfile

        named: list[tuple[str, str]] = [(p, "--output") for p in (self.alerts,) if p is not None]
        named += [(p, "--events") for p in (self.events,) if p is not None]
        named += [(p, "a file the run writes") for p in self.files]
        named += [(s.path, "--sink") for s in self.sinks if s.kind == "file" and s.path]
        if self.store:
            named.append((self.store, "--store"))
        seen: dict[str, str] = {}
        stdout = [what for p, what in named if p in ("-", "/dev/stdout")] + ["--sink -"] * self.stdout_sink
        if len(stdout) > 1:
            raise InputError(f"{' and '.join(stdout)} would all write to standard output: give all but one a FILE "
                             "(or /dev/null)")
        for path, what in named:
            if path in ("-", "/dev/stdout"):
                continue
            outfile.check_writable(path)
            real = _identity(path)
            if real is not None and real in seen:
                raise InputError(f"{seen[real]} and {what} name the same file", path)
            if real is not None:
                seen[real] = what
        if self.audit_log and not os.path.isfile(os.path.join(self.audit_log, "state.json")):
            raise InputError("not an audit log directory (make one with `secpolicy log init`)", self.audit_log)
        if self.redaction is not None:
            outfile.check_readable(self.redaction, "redaction policy")


def _identity(path: str) -> str | None:
    """What makes two paths the same output: the resolved path of a regular file (or of one
    still to be made); devices and FIFOs may be shared (two streams into /dev/null)."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return os.path.realpath(path) if stat.S_ISREG(st.st_mode) else None


@dataclass(frozen=True)
class RunStats:
    """What reached each output, and what redaction changed on the way."""

    outputs: OutputStats
    alerts_written: int
    redaction: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.outputs.to_dict(), "alerts_written": self.alerts_written, "redaction": self.redaction}


class RunOutputs:
    """One run of `component` and everything it writes. `begin` opens the audit trail first
    (so that what fails later is on record); `open` the alert output, the event recording,
    the store and the sinks. Alerts leave through `alert` and events through `on_event`
    (None when no output wants events): the one way out, redacted once by `redactor`.
    `finish` or `fail` records the end and closes everything."""

    def __init__(self, settings: OutputSettings, component: str, *, overflow: str,
                 on_error: Callable[[str], None], redactor: Redactor | None = None) -> None:
        self.settings = settings
        self.component = component
        self.overflow = overflow
        self.on_error = on_error
        self.redactor = redactor or open_redactor(settings.redaction, settings.audit_log)
        self.trail: AuditTrail | None = None
        self.delivery: Delivery | None = None
        self.on_event: Callable[[Mapping[str, Any]], None] | None = None
        self.stats: OutputStats | None = None
        self.alerts_written = 0
        self._batch: list[Mapping[str, Any]] = []
        self._alerts: IO[bytes] | None = None
        self._recording: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def begin(self, **details: Any) -> None:
        if self.settings.audit_log:
            from secpolicy.auditlog.trail import AuditTrail

            self.trail = AuditTrail.open(self.settings.audit_log, self.component, redactor=self.redactor)
            try:
                self.trail.started(command=self.component, **details,
                                   redaction={"policy": self.redactor.settings.source,
                                              "enabled": self.redactor.enabled,
                                              "pseudonym_key": self.redactor.key_source})
            except BaseException:
                self.trail.close()
                self.trail = None
                raise

    def policies_loaded(self, policies: Sequence[Any]) -> None:
        if self.trail is not None:
            for p in policies:
                self.trail.config_loaded(p.path, p.sha256)
            self.trail.sync()

    def config_loaded(self, path: str) -> None:
        if self.trail is not None:
            self.trail.config_loaded(path)
            self.trail.sync()

    def open(self, loss_windows: Callable[[], Sequence[Mapping[str, Any]]] | None = None) -> None:
        """Open every output and start the writer. Standard output, a FIFO or a device is
        written through; a file is created 0600, a symbolic link refused."""
        from secpolicy import outfile

        s = self.settings
        if s.alerts is not None:
            self._alerts = outfile.open_output(s.alerts, binary=True, stream=s.stream)
        if s.events is not None:
            # A recording is followed while it grows: written in place.
            self._recording = outfile.open_output(s.events, binary=True, stream=True)
        if not (s.store or s.sinks or self.trail or self._recording):
            return
        path = s.store
        if path:
            from secpolicy.auditlog.store import EventStore
        if s.sinks:
            from secpolicy.auditlog.sinks.uri import build_chain
        sinks = build_chain(s.sinks, s.dedup_window, s.rate_limit) if s.sinks else None
        delivery = Delivery(store=(lambda: EventStore(path)) if path else None, sinks=sinks, trail=self.trail,
                            recording=self._recording, loss_windows=loss_windows, overflow=self.overflow,
                            on_error=self.on_error, redactor=self.redactor)
        try:
            delivery.start()
        except BaseException:
            if sinks is not None:
                sinks.close()
            raise
        self.delivery = delivery
        if delivery.wants_events:
            self.on_event = delivery.on_event

    # -- the fan-out -----------------------------------------------------------------------

    def alert(self, alert: Mapping[str, Any]) -> None:
        """Redact `alert` once and send the copy everywhere alerts go. Alerts leave in small
        batches, in order: one prefilter search over a batch costs less than one per alert;
        `flush` (a monitor's ticker, the end of the run) sends what is waiting."""
        self._batch.append(alert)
        if len(self._batch) >= _ALERT_BATCH:
            self._send()

    def _send(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        lines = [canonical_line(a) for a in batch]
        clean = self.redactor.certainly_clean_many(batch, lines)
        for alert, line, ok in zip(batch, lines, clean, strict=True):
            red = alert if ok else self.redactor.alert(alert)
            if self._alerts is not None:
                self._alerts.write(line if red is alert else canonical_line(red))
            if self.delivery is not None:
                self.delivery.alert(red)
        self.alerts_written += len(batch)

    def alert_output_alone(self) -> IO[bytes] | None:
        """The alert output, when it is the only place alerts go and redaction needs no
        field-by-field policy: then a run may write alert lines to it itself, each passed
        through `checked_lines` (the store, the sinks and the audit log want dicts)."""
        if self.delivery is not None or self._batch or not self.redactor.line_checkable:
            return None
        return self._alerts

    def checked_lines(self, events: list[dict[str, Any]], lines: list[bytes]) -> list[bytes]:
        """Alert `lines` (each raised by its event) as they may be written: a line that
        certainly holds nothing to redact as it is, any other as the redacted alert's line."""
        self.alerts_written += len(lines)
        clean = self.redactor.certainly_clean_alone(events, lines)
        return [line if ok else canonical_line(self.redactor.alert(orjson.loads(line)))
                for line, ok in zip(lines, clean, strict=True)]

    def flush(self) -> None:
        """Send the alerts waiting and make them visible to whoever follows the output."""
        self._send()
        if self._alerts is not None:
            self._alerts.flush()

    # -- the end ---------------------------------------------------------------------------

    def finish(self, final_loss_windows: Sequence[Mapping[str, Any]] | None = None, **counts: Any) -> RunStats:
        """Deliver what is queued, record the end with `counts`, close everything. A failed
        audit log is a runtime failure (exit 3): the run happened without its record; so are
        alerts a sink could not take and writes the event store failed."""
        self._send()
        stats = self._close_outputs(final_loss_windows)
        self._close_streams()
        trail_error = stats.trail_error if stats else None
        pending = stats.sink_pending if stats else {}
        undelivered = [undelivered_message(uri, n, where, error) for uri, (n, where, error) in pending.items()]
        result = RunStats(stats or OutputStats(), self.alerts_written, self.redactor.summary())
        if self.trail is not None:
            trail, self.trail = self.trail, None
            try:
                if trail_error is None:
                    for text, (uri, (n, where, _)) in zip(undelivered, pending.items(), strict=True):
                        trail.failure(text, component="sink", sink=uri, alerts_undelivered=n, spool=where)
                    trail.finished(None, None, **counts, outputs=(stats or OutputStats()).to_dict(),
                                   redaction=self.redactor.summary())
            finally:
                trail.close()
        if trail_error is not None:
            raise RuntimeFailure(f"the audit log failed during the run: {trail_error}")
        failures = list(undelivered)
        if stats is not None and stats.store_failures:
            failures.append(f"the event store failed {stats.store_failures} time(s): what was not stored "
                            "is reported above and in the audit log")
        if failures:
            # The run ends here: alerts it could not hand over, or events and alerts it could
            # not store, are a failure of the run (exit 3), not a green run with a count.
            raise RuntimeFailure("; ".join(failures))
        return result

    def fail(self, exc: BaseException) -> None:
        """Record the failure that ends the run (best effort: the original error is what the
        user sees) and close everything."""
        text = exc.render() if isinstance(exc, SecpolicyError) else f"{type(exc).__name__}: {exc}"
        try:
            self._send()  # what fired before the failure is kept
            self._close_outputs(None)
        except SecpolicyError as close_exc:
            self.on_error(close_exc.render())
        try:
            self._close_streams(failed=True)
        except SecpolicyError as close_exc:
            self.on_error(close_exc.render())
        if self.trail is not None:
            trail, self.trail = self.trail, None
            try:
                if not (self.stats and self.stats.trail_error):
                    trail.failure(text, exit_code=getattr(exc, "exit_code", None))
                    trail.finished(None, text)
            except (SecpolicyError, OSError) as rec_exc:
                self.on_error(f"audit log: {rec_exc}")
            finally:
                trail.close()

    def _close_outputs(self, windows: Sequence[Mapping[str, Any]] | None) -> OutputStats | None:
        if self.delivery is not None:
            delivery, self.delivery = self.delivery, None
            self.on_event = None
            self.stats = delivery.close(windows)
        return self.stats

    def _close_streams(self, *, failed: bool = False) -> None:
        # A replay's alert file is renamed into place here; what a run wrote before it
        # failed is kept too (as a recording is). An output a failed run never wrote to is
        # left as it was: the last run's alerts are not lost to a run that did not happen.
        from secpolicy import outfile

        for name in ("_alerts", "_recording"):
            stream = getattr(self, name)
            if stream is not None:
                setattr(self, name, None)
                if failed:
                    outfile.close_after_failure(stream)
                else:
                    stream.close()


@dataclass(frozen=True)
class OutputOptions:
    """The output options of a command as given (URIs, paths), before they are checked."""

    audit_log: str | None = None
    store: str | None = None
    sinks: tuple[str, ...] = ()
    sink_format: str = "json"
    dedup_window: float | None = None
    rate_limit: str | None = None
    redaction: str | None = None

    def settings(self, *, alerts: str | None, events: str | None = None, files: Sequence[str | None] = (),
                 stream: bool = False) -> OutputSettings:
        """The checked settings of a run whose own alert output is `alerts`."""
        return OutputSettings.from_options(self.audit_log, self.store, self.sinks, self.sink_format,
                                           self.dedup_window, self.rate_limit, alerts=alerts, events=events,
                                           files=files, redaction=self.redaction, stream=stream)
