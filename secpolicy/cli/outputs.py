"""Options shared by the commands that run rules over events (`monitor`, `replay`): the audit
log, the event store, alert sinks and redaction, and the lines that report what reached them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from secpolicy.cli.choices import SINK_FORMATS

if TYPE_CHECKING:
    from secpolicy.app.outputs import OutputSettings, RunStats

__all__ = ["format_output_stats", "format_redaction", "output_options", "redaction_option"]

redaction_option = click.option(
    "--redaction", "redaction", type=click.Path(dir_okay=False), metavar="FILE",
    help="Redaction policy (YAML, `secpolicy schema redaction`) applied to everything written; "
         "default: the built-in policy (credentials and card numbers masked).")


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange lets nan and inf through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds")
    return value


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
        click.option("--sink-format", type=click.Choice(SINK_FORMATS), default="json", show_default=True,
                     help="Wire format of the sinks (a sink URI's format= overrides it)."),
        click.option("--dedup-window", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     callback=_finite,
                     help="Sinks: identical alerts within this window become one alert with a count."),
        click.option("--rate-limit", metavar="N/SECONDS",
                     help="Sinks: at most N alerts per rule per period, then one summary with the count."),
        redaction_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def format_output_stats(stats: RunStats, settings: OutputSettings) -> str | None:
    """One line for the run's summary on stderr, or None when no output was asked for."""
    parts = []
    out = stats.outputs
    if settings.events:
        parts.append(f"{out.events_recorded} events recorded")
    if settings.store:
        parts.append(f"{out.events_stored} events and {out.alerts_stored} alerts stored")
        if out.store_duplicates:
            parts.append(f"{out.store_duplicates} events and alerts already in the store (not stored again)")
        if out.store_dropped:
            parts.append(f"{out.store_dropped} events NOT kept (writer behind)")
        if out.store_rejected or out.store_failures:
            parts.append(f"{out.store_rejected} rejected, {out.store_failures} store failures")
    if settings.sinks:
        parts.append(f"{out.alerts_sent} alerts to {len(settings.sinks)} sink(s)")
        for uri, n in out.sink_failures.items():
            parts.append(f"{n} failures of {uri}")
    if settings.audit_log:
        parts.append(f"{out.alerts_recorded} alerts and {out.loss_windows_recorded} loss windows "
                     f"in the audit log")
    return "outputs: " + "; ".join(parts) if parts else None


def format_redaction(summary: Mapping[str, Any]) -> str:
    """One line saying what redaction did (never a value)."""
    if not summary.get("enabled"):
        return f"redaction: OFF ({summary.get('policy')}): secrets were written as they were"
    fields = ", ".join(f"{k} {n}" for k, n in summary.get("fields", {}).items())
    return (f"redaction: {summary.get('records', 0)} records redacted" + (f" ({fields})" if fields else "")
            + f"; policy {summary.get('policy')}; pseudonym key {summary.get('pseudonym_key')}")
