"""`secpolicy replay`: evaluate event rules over recorded events (JSONL or audit logs) and
write alerts as JSON lines, or a summary of what was read (aureport's counts for audit logs)."""

from __future__ import annotations

import sys
from typing import Any

import click

from secpolicy.cli.outputs import format_output_stats, format_redaction, output_options
from secpolicy.cli.progress import file_read_progress
from secpolicy.errors import EXIT_INVALID_INPUT, EXIT_NONCOMPLIANT
from secpolicy.terminal import inert

__all__ = ["COMMANDS", "format_summary", "replay_cmd"]


def _table(title: str, counts: dict[str, int]) -> list[str]:
    lines = [title, "=" * len(title)]
    if not counts:
        lines.append("<none>")
    width = max((len(str(v)) for v in counts.values()), default=1)
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{n:>{width}}  {inert(name)}")  # audit keys come from the log
    lines.append("")
    return lines


def _aureport_lines(report: dict[str, Any]) -> list[str]:
    from secpolicy.events.aureport import SUMMARY_LINES

    numbers = report["summary"]
    lines = ["Audit summary (as aureport --summary counts)", "============================================"]
    lines += [f"{label}: {numbers[key]}" for key, label in SUMMARY_LINES]
    lines.append("")
    lines += _table("Audit events per key (aureport -k --summary)", report["keys"])
    lines.insert(len(lines) - 1, f"Audit events with a key (rows of aureport -k): {report['keyed_events']}")
    return lines


def format_summary(result: Any) -> str:
    """The text of `replay --summary`: what was read and raised; for audit logs, the numbers of
    `aureport --summary` and `aureport -k` and counts per record and audit event type."""
    d = result.to_dict()
    lines = ["Replay Summary", "==============", f"Events evaluated: {d['events']}",
             f"Alerts: {d['alerts']}", f"Bad input lines: {d['bad_lines']}",
             f"Events later than the reorder window: {d['late_events']}"]
    corr = d["engine"].get("correlation", {})
    lines.append(
        f"Correlation state: {corr.get('evictions', 0)} evictions, {corr.get('expired', 0)} expired keys/runs"
    )
    lines.append("")
    audit = d.get("auditd")
    if audit is not None:
        records = audit["records"]
        if len(audit["files"]) > 1:
            lines.append("Audit logs, in the order read: " + ", ".join(audit["files"]))
        lines.append(f"Audit records: {sum(records.values())}")
        lines.append(f"Audit events (as aureport counts them): {sum(audit['audit_events'].values())}")
        if audit["audit_events_aureport_skips"]:
            lines.append(
                f"Audit events aureport skips as malformed (read here): {sum(audit['audit_events_aureport_skips'].values())}"
            )
        lines.append("")
        if "aureport" in audit:
            lines += _aureport_lines(audit["aureport"])
        lines += _table("Audit records by type", records)
        lines += _table("Audit events by type (aureport -e --summary)", audit["audit_events"])
        if audit["unmapped_audit_events"]:
            lines += _table("Audit events with no Event type (counted, not evaluated)", audit["unmapped_audit_events"])
    lines += _table("Events by type", d["events_by_type"])
    lines += _table("Alerts by rule", d["alerts_by_rule"])
    return "\n".join(lines)


MAX_WINDOW = 86_400  # seconds: a day; auditd closes events 2-3 s late, and every event of the window is held


def _seconds(value: float, name: str, most: int) -> float:
    """A number of seconds from 0 to `most` (not NaN, not infinite: the time arithmetic of the
    reorder window would fail deep inside the replay)."""
    if not 0 <= value <= most:  # False for NaN too
        raise click.BadParameter(f"{value} is not a number of seconds from 0 to {most}", param_hint=f"'{name}'")
    return value


@click.command(name="replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--input-format", type=click.Choice(["auto", "jsonl", "auditd"]), default="auto", show_default=True,
              help="Format of FILES: JSON lines of Events, or Linux audit logs (RAW or ENRICHED).")
@click.option("--policy", "policies", multiple=True, metavar="PATH",
              help="Policy file or directory (repeatable); default: the bundled policies.")
@click.option("--output", "-o", metavar="FILE", help="Write alerts (JSON lines) here instead of stdout.")
@click.option("--summary", is_flag=True,
              help="Print counts per record type, audit event type, Event type and rule, and for audit logs "
                   "aureport's summary and key counts (alerts then go only to --output).")
@click.option("--fail-on-alert", is_flag=True, help="Exit 1 when any alert fired.")
@click.option("--strict", is_flag=True, help="Exit 2 when any input line was bad (after replaying the rest).")
@click.option("--window", default=5.0, show_default=True, type=float, metavar="SECONDS",
              callback=lambda ctx, param, value: _seconds(value, "--window", MAX_WINDOW),
              help=f"Reorder window: how late (in event time) an event may arrive and still be sorted in "
                   f"(0 to {MAX_WINDOW}).")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Name users of audit logs written without names (RAW format) from ROOT/etc/passwd.")
@output_options
def replay_cmd(
    files: tuple[str, ...],
    input_format: str,
    policies: tuple[str, ...],
    output: str | None,
    summary: bool,
    fail_on_alert: bool,
    strict: bool,
    window: float,
    root: str,
    audit_log: str | None,
    store_path: str | None,
    sink_uris: tuple[str, ...],
    sink_format: str,
    dedup_window: float | None,
    rate_limit: str | None,
    redaction: str | None,
) -> None:
    """Evaluate event rules over recorded events, in timestamp order, with correlation.

    Audit logs given together (rotated logs, in any order) are read in the order of their
    content. Alerts also go to --sink URIs, events and alerts to the --store, and the run
    (policies loaded, every alert, failures) to the --audit-log. Everything written is
    redacted first (--redaction); the rules see the events as they were."""
    from secpolicy.app.outputs import OutputOptions
    from secpolicy.app.replay import ReplayRequest, run_replay

    request = ReplayRequest(files, input_format, policies, output, summary, window, root)
    options = OutputOptions(audit_log, store_path, sink_uris, sink_format, dedup_window, rate_limit, redaction)
    run = run_replay(request, options, on_error=_warn, reading=file_read_progress)
    result = run.result
    if summary:
        click.echo(format_summary(result) + "\n" + format_redaction(run.stats.redaction))
    line = format_output_stats(run.stats, run.settings)
    if line:
        click.echo(f"secpolicy: {line}", err=True)
    if run.stats.redaction["records"] and not summary:
        click.echo(f"secpolicy: {format_redaction(run.stats.redaction)}", err=True)
    for where in result.bad_where[:20]:
        click.echo(f"secpolicy: bad input line {where}", err=True)
    if result.bad_lines > 20:
        click.echo(f"secpolicy: ... {result.bad_lines - 20} more bad input lines", err=True)
    if strict and result.bad_lines:
        click.echo(f"secpolicy: {result.bad_lines} bad input line(s) (--strict)", err=True)
        sys.exit(EXIT_INVALID_INPUT)
    if fail_on_alert and result.alerts:
        sys.exit(EXIT_NONCOMPLIANT)


def _warn(message: str) -> None:
    click.echo(f"secpolicy: {message}", err=True)


COMMANDS = [replay_cmd]
