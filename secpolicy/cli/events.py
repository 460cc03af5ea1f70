"""`secpolicy replay`: evaluate event rules over recorded events (JSONL or audit logs) and
write alerts as JSON lines, or a summary of what was read (aureport's counts for audit logs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

import click

from secpolicy import outfile
from secpolicy.auditlog.outputs import OutputStats
from secpolicy.cli.outputs import OutputSettings, RunRecorder, format_output_stats, output_options
from secpolicy.cli.progress import file_read_progress
from secpolicy.errors import EXIT_INVALID_INPUT, EXIT_NONCOMPLIANT, InputError

__all__ = ["COMMANDS", "format_summary", "replay_cmd"]


def _table(title: str, counts: dict[str, int]) -> list[str]:
    lines = [title, "=" * len(title)]
    if not counts:
        lines.append("<none>")
    width = max((len(str(v)) for v in counts.values()), default=1)
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{n:>{width}}  {name}")
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
              help="Reorder window: how late (in event time) an event may arrive and still be sorted in.")
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
) -> None:
    """Evaluate event rules over recorded events, in timestamp order, with correlation.

    Audit logs given together (rotated logs, in any order) are read in the order of their
    content. Alerts also go to --sink URIs, events and alerts to the --store, and the run
    (policies loaded, every alert, failures) to the --audit-log."""
    outfile.check_writable(output)
    settings = OutputSettings.from_options(audit_log, store_path, sink_uris, sink_format, dedup_window, rate_limit)
    if settings.stdout_sink and not output and not summary:
        raise InputError("--sink - and the alerts of replay would both go to stdout: give --output FILE "
                         "or --summary")
    run = RunRecorder(settings, "replay", overflow="block", on_error=_warn)
    run.begin(inputs=[str(f) for f in files], input_format=input_format)
    try:
        result, stats = _replay(run, files, input_format, policies, output, summary, window, root)
    except BaseException as exc:
        run.fail(exc)
        raise
    if summary:
        click.echo(format_summary(result))
    line = format_output_stats(stats, settings)
    if line:
        click.echo(f"secpolicy: {line}", err=True)
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


def _replay(run: RunRecorder, files: tuple[str, ...], input_format: str, policies: tuple[str, ...],
            output: str | None, summary: bool, window: float, root: str) -> tuple[Any, OutputStats]:
    from secpolicy.events.auditd import AccountNames
    from secpolicy.events.engine import EventEngine
    from secpolicy.events.replay import open_sources, replay

    if not Path(root).is_dir():
        raise InputError("--root: not a directory", root)
    ps = _event_rules(policies)
    run.policies_loaded(ps.policies)
    engine = EventEngine(ps.event_rules)
    sources = open_sources([Path(f) for f in files], input_format, names=AccountNames(root), aureport=summary)
    out: IO[bytes] | None
    close = False
    if output:
        out = outfile.open_output(output, binary=True)  # temp file renamed over OUTPUT when closed below
        close = True
    elif summary:
        out = None
    else:
        sys.stdout.flush()
        out = sys.stdout.buffer
    try:
        outputs = run.start_outputs()
        with file_read_progress([str(f) for f in files]):
            result = replay(sources, engine, out, window=window,
                            on_event=outputs.on_event if outputs is not None else None,
                            on_alert=outputs.alert if outputs is not None else None)
    finally:
        if close and out is not None:
            out.close()
        elif out is not None:
            out.flush()
    stats = run.finish(events=result.events, alerts=result.alerts, alerts_by_rule=dict(result.alerts_by_rule),
                       bad_lines=result.bad_lines, bad_where=result.bad_where[:20],
                       late_events=result.late_events)
    return result, stats


def _event_rules(policies: tuple[str, ...]) -> Any:
    """The event rules of the policies (the bundled ones by default), compiled alone; loaded
    here rather than through the scan command's module, whose imports replay does not need."""
    import os

    from secpolicy.resources import policies_dir
    from secpolicy.vocabulary import builtin_registry, load_policies

    paths = [Path(p) for p in policies] or [policies_dir()]
    cache = None
    if not os.environ.get("SECPOLICY_NO_CACHE"):  # the compile cache `scan` and `lint` use
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache = Path(base) / "secpolicy" / "policies"
    return load_policies(paths, builtin_registry(), cache_dir=cache, only="event")


COMMANDS = [replay_cmd]
