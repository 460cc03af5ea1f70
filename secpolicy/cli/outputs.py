"""Options shared by `monitor` and `replay` for the audit log, the event store and alert sinks,
and the run recorder that opens them, records the run and closes them whatever happens."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from secpolicy.auditlog.outputs import Outputs, OutputStats, undelivered_message
from secpolicy.auditlog.sinks.formats import FORMATS
from secpolicy.errors import InputError, RuntimeFailure, SecpolicyError

if TYPE_CHECKING:  # imported where a run asks for them (start-up of a run without outputs)
    from secpolicy.auditlog.sinks.uri import SinkSpec
    from secpolicy.auditlog.trail import AuditTrail

__all__ = ["OutputSettings", "RunRecorder", "format_output_stats", "output_options"]


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--audit-log", "audit_log", type=click.Path(file_okay=False), metavar="DIR",
                     help="Record the run (policies loaded, every alert, lost events, failures) in this "
                          "tamper-evident audit log (made by `secpolicy log init`)."),
        click.option("--store", "store_path", type=click.Path(dir_okay=False), metavar="DB",
                     help="Keep events and alerts in this SQLite event store (created if absent)."),
        click.option("--sink", "sink_uris", multiple=True, metavar="URI",
                     help="Send alerts here too (repeatable): -, file:///PATH, syslog+udp://HOST:PORT, "
                          "syslog+tcp://...[?spool=DIR], syslog+tls://...?ca=FILE, "
                          "webhook+http(s)://HOST/PATH?spool=DIR. Alerts still undelivered drain=SECONDS (default "
                          "10) after the run make it exit 3, naming how many."),
        click.option("--sink-format", type=click.Choice(sorted(FORMATS)), default="json", show_default=True,
                     help="Wire format of the sinks (a sink URI's format= overrides it)."),
        click.option("--dedup-window", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Sinks: identical alerts within this window become one alert with a count."),
        click.option("--rate-limit", metavar="N/SECONDS",
                     help="Sinks: at most N alerts per rule per period, then one summary with the count."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@dataclass(frozen=True)
class OutputSettings:
    """The checked output options: nothing is opened until every one of them is valid."""

    audit_log: str | None
    store: str | None
    sinks: tuple[SinkSpec, ...]
    dedup_window: float | None
    rate_limit: tuple[int, float] | None

    @classmethod
    def from_options(cls, audit_log: str | None, store_path: str | None, sink_uris: Sequence[str],
                     sink_format: str, dedup_window: float | None, rate_limit: str | None) -> OutputSettings:
        if sink_uris or rate_limit is not None:
            from secpolicy.auditlog.sinks.uri import parse_rate_limit, parse_sink_uri
        specs = tuple(parse_sink_uri(u, sink_format) for u in sink_uris)
        files = [s.path for s in specs if s.kind == "file"]
        if len(set(files)) != len(files):
            raise InputError("--sink: the same file is given twice")
        if sum(s.kind == "stdout" for s in specs) > 1:
            raise InputError("--sink: stdout (-) is given twice")
        if (dedup_window is not None or rate_limit is not None) and not specs:
            raise InputError("--dedup-window and --rate-limit apply to sinks: give --sink URI")
        return cls(audit_log, store_path, specs, dedup_window,
                   parse_rate_limit(rate_limit) if rate_limit is not None else None)

    @property
    def stdout_sink(self) -> bool:
        return any(s.kind == "stdout" for s in self.sinks)


class RunRecorder:
    """One run of `component`: opens the audit trail first (so that what fails later is on
    record), then the store and the sinks; `finish` or `fail` records the end and closes all."""

    def __init__(self, settings: OutputSettings, component: str, *, overflow: str,
                 on_error: Callable[[str], None]) -> None:
        self.settings = settings
        self.component = component
        self.overflow = overflow
        self.on_error = on_error
        self.trail: AuditTrail | None = None
        self.outputs: Outputs | None = None
        self.stats: OutputStats | None = None
        self._closed = False

    def begin(self, **details: Any) -> None:
        if self.settings.audit_log:
            from secpolicy.auditlog.trail import AuditTrail

            self.trail = AuditTrail.open(self.settings.audit_log, self.component)
            try:
                self.trail.started(command=self.component, **details)
            except BaseException:
                self.trail.close()
                self.trail = None
                raise

    def policies_loaded(self, policies: Sequence[Any]) -> None:
        if self.trail is not None:
            for p in policies:
                self.trail.config_loaded(p.path, p.sha256)
            self.trail.sync()

    def start_outputs(self, loss_windows: Callable[[], Sequence[Mapping[str, Any]]] | None = None) -> Outputs | None:
        """Open the store and the sinks and start the writer; None when no output was asked for."""
        s = self.settings
        if not (s.store or s.sinks or self.trail):
            return None
        from secpolicy.auditlog.sinks.uri import build_chain
        from secpolicy.auditlog.store import EventStore

        path = s.store
        sinks = build_chain(s.sinks, s.dedup_window, s.rate_limit) if s.sinks else None
        outputs = Outputs(store=(lambda: EventStore(path)) if path else None, sinks=sinks, trail=self.trail,
                          loss_windows=loss_windows, overflow=self.overflow, on_error=self.on_error)
        try:
            outputs.start()
        except BaseException:
            if sinks is not None:
                sinks.close()
            raise
        self.outputs = outputs
        return outputs

    def finish(self, final_loss_windows: Sequence[Mapping[str, Any]] | None = None, **counts: Any) -> OutputStats:
        """Deliver what is queued, record the end with `counts`, close everything. A failed
        audit log is a runtime failure (exit 3): the run happened without its record."""
        stats = self._close_outputs(final_loss_windows)
        trail_error = stats.trail_error if stats else None
        pending = stats.sink_pending if stats else {}
        undelivered = [undelivered_message(uri, n, where, error) for uri, (n, where, error) in pending.items()]
        if self.trail is not None:
            trail, self.trail = self.trail, None
            try:
                if trail_error is None:
                    for text, (uri, (n, where, _)) in zip(undelivered, pending.items(), strict=True):
                        trail.failure(text, component="sink", sink=uri, alerts_undelivered=n, spool=where)
                    trail.finished(None, None, **counts, outputs=stats.to_dict() if stats else {})
            finally:
                trail.close()
        if trail_error is not None:
            raise RuntimeFailure(f"the audit log failed during the run: {trail_error}")
        if undelivered:
            # A one-shot run ends here: alerts it could not hand over are a failure of the run.
            raise RuntimeFailure("; ".join(undelivered))
        return stats or OutputStats()

    def fail(self, exc: BaseException) -> None:
        """Record the failure that ends the run (best effort: the original error is what the
        user sees) and close everything."""
        text = exc.render() if isinstance(exc, SecpolicyError) else f"{type(exc).__name__}: {exc}"
        try:
            self._close_outputs(None)
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
        if self.outputs is not None:
            outputs, self.outputs = self.outputs, None
            self.stats = outputs.close(windows)
        return self.stats


def format_output_stats(stats: OutputStats, settings: OutputSettings) -> str | None:
    """One line for the run's summary on stderr, or None when no output was asked for."""
    parts = []
    if settings.store:
        parts.append(f"{stats.events_stored} events and {stats.alerts_stored} alerts stored")
        if stats.store_dropped:
            parts.append(f"{stats.store_dropped} events NOT stored (store behind)")
        if stats.store_rejected or stats.store_failures:
            parts.append(f"{stats.store_rejected} rejected, {stats.store_failures} store failures")
    if settings.sinks:
        parts.append(f"{stats.alerts_sent} alerts to {len(settings.sinks)} sink(s)")
        for uri, n in stats.sink_failures.items():
            parts.append(f"{n} failures of {uri}")
    if settings.audit_log:
        parts.append(f"{stats.alerts_recorded} alerts and {stats.loss_windows_recorded} loss windows "
                     f"in the audit log")
    return "outputs: " + "; ".join(parts) if parts else None
