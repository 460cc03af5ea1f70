"""`secpolicy monitor` (live eBPF events through the rules, alerts as JSON lines) and
`secpolicy doctor` (what the live monitor needs from this machine, with fixes)."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from secpolicy.cli.choices import input_file
from secpolicy.cli.outputs import format_output_stats, format_redaction, output_options
from secpolicy.errors import EXIT_NONCOMPLIANT, EXIT_RUNTIME

if TYPE_CHECKING:
    from secpolicy.app.monitor import MonitorStarted

__all__ = ["COMMANDS", "doctor_cmd", "format_monitor_summary", "monitor_cmd"]


def format_monitor_summary(s: dict[str, Any]) -> str:
    lines = [(f"monitor: {s['duration_s']:.1f} s, {s['events']} events, {s['alerts']} alerts, "
              f"{s['lost']} lost")]
    if s["events_by_type"]:
        lines.append("events per type:")
        lines += [f"  {k:<12} {v}" for k, v in s["events_by_type"].items()]
    if s["alerts_by_rule"]:
        lines.append("alerts per rule:")
        storm = s.get("storm", {}).get("by_rule", {})
        for k, v in s["alerts_by_rule"].items():
            st = storm.get(k, {})
            folded = (f" ({st['folded']} folded into {st['aggregates']} aggregate alerts)"
                      if st.get("folded") else "")
            lines.append(f"  {k:<40} {v}{folded}")
    if s.get("storm", {}).get("alerts_folded"):
        lines.append(f"storm control: {s['storm']['control']['description']}")
    if s["lost"]:
        lines.append("LOST events (not evaluated):")
        lines += [f"  {k:<12} {v}" for k, v in s["lost_by_type"].items()]
        for w in s["loss_windows"][:10]:
            lines.append(f"  {w['count']} lost in the {w['where']} between {w['start']} and {w['end']}")
        if len(s["loss_windows"]) > 10:
            lines.append(f"  ... {len(s['loss_windows']) - 10} more loss windows")
    else:
        lines.append("lost: 0 (kernel ring buffer and user-space queue)")
    fim = s.get("fim")
    if fim is not None:
        kinds = ", ".join(f"{k} {v}" for k, v in fim["alerts_by_kind"].items())
        lines.append(f"fim: {fim['events']} file events under watched paths, {fim['paths_rechecked']} entries "
                     f"re-checked in {fim['rechecks']} re-checks, {fim['alerts']} FIM alerts"
                     + (f" ({kinds})" if kinds else "")
                     + (f", {fim['errors']} not re-checkable" if fim["errors"] else ""))
        if fim["latency_s"]:
            lines.append(f"fim: last change to alert {fim['latency_s']['median']:.2f} s median, "
                         f"{fim['latency_s']['max']:.2f} s max")
        if fim["failure"]:
            lines.append(f"fim: STOPPED: {fim['failure']}")
    for note in s["notes"]:
        lines.append(f"note: {note}")
    if "redaction" in s:
        lines.append(format_redaction(s["redaction"]))
    blind = [c for c in s.get("rules_not_covered", []) if not c["can_fire"]]
    if blind:
        lines.append("rules that CANNOT FIRE live here (their event types are not produced on this machine):")
        lines += [f"  {c['rule_id']:<40} needs {', '.join(c['missing'])}" for c in blind]
    for c in s.get("rules_not_covered", []):
        if c["can_fire"]:
            lines.append(f"note: {c['rule_id']} fires live except on {', '.join(c['missing'])} (not produced here)")
    return "\n".join(lines)


@click.command(name="monitor")
@click.option("--policy", "-p", "policies", multiple=True, metavar="PATH",
              help="Policy file or directory (repeatable). Default: the bundled packs.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after this many seconds (default: until SIGINT or SIGTERM).")
@click.option("--output", "-o", metavar="FILE", default="-", show_default=True,
              help="Write alerts (JSON lines) here.")
@click.option("--events", "events_path", metavar="FILE",
              help="Record every delivered event (JSON lines that `secpolicy replay` reads).")
@click.option("--summary-json", metavar="FILE",
              help="Write the summary (events per type, alerts per rule, lost per type and window) as JSON.")
@click.option("--ready-file", metavar="FILE",
              help="Create this file once the probes are attached (for scripts starting a workload).")
@click.option("--ringbuf-pages", default=4096, show_default=True, type=click.IntRange(min=1),
              help="Ring buffer size in pages (a power of two).")
@click.option("--queue-max", default=1 << 18, show_default=True, type=click.IntRange(min=1),
              help="Records the user-space queue holds before dropping (and counting) more.")
@click.option("--fail-on-alert", is_flag=True, help="Exit 1 when any alert fired.")
@click.option("--aggregate-window", type=click.FloatRange(min=0), default=5.0, show_default=True,
              metavar="SECONDS",
              help="Storm control: per rule, program and user, alerts beyond --aggregate-burst in this "
                   "window are folded into one aggregate alert (count, first and last event) written at its "
                   "end. 0 writes every alert.")
@click.option("--aggregate-burst", type=click.IntRange(min=1), default=3, show_default=True, metavar="N",
              help="Alerts per rule, program and user written one by one in each --aggregate-window.")
@click.option("--fim", "fim_config", type=click.Path(dir_okay=False), metavar="CONFIG",
              callback=input_file("FIM configuration"),
              help="Live file integrity: writes, renames, chmod/chown and unlinks under this FIM "
                   "configuration's watched paths re-check those entries against its baseline.")
@click.option("--fim-db", type=click.Path(dir_okay=False), metavar="DB",
              help="The FIM baseline (default: `database:` in the FIM configuration).")
@click.option("--fim-key-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="File holding the FIM baseline's MAC key.")
@click.option("--fim-key-env", metavar="VAR", help="Environment variable holding the FIM baseline's MAC key.")
@click.option("--fim-no-key", is_flag=True, help="The FIM baseline is unkeyed.")
@click.option("--fim-severity", type=click.Choice(["info", "low", "medium", "high", "critical"]),
              default="high", show_default=True, help="Severity of FIM change alerts.")
@click.option("--fim-settle", type=click.FloatRange(min=0.05, max=10), default=0.5, show_default=True,
              metavar="SECONDS",
              help="Re-check an entry once no event touched it and it did not change for this long.")
@output_options
def monitor_cmd(
    policies: tuple[str, ...],
    duration: float | None,
    output: str,
    events_path: str | None,
    summary_json: str | None,
    ready_file: str | None,
    ringbuf_pages: int,
    queue_max: int,
    fail_on_alert: bool,
    aggregate_window: float,
    aggregate_burst: int,
    fim_config: str | None,
    fim_db: str | None,
    fim_key_file: str | None,
    fim_key_env: str | None,
    fim_no_key: bool,
    fim_severity: str,
    fim_settle: float,
    audit_log: str | None,
    store_path: str | None,
    sink_uris: tuple[str, ...],
    sink_format: str,
    dedup_window: float | None,
    rate_limit: str | None,
    redaction: str | None,
) -> None:
    """Watch the running kernel with eBPF and evaluate event rules live.

    Loads only the probes the rules need, with their cheap filters in the kernel; prints a
    summary on stderr (events per type, alerts per rule, lost events) when stopped by
    SIGINT/SIGTERM or after --duration. Alerts also go to --sink URIs, events and alerts to
    the --store, and the run (policies, alerts, lost events, failures) to the --audit-log.

    With --fim, the FIM baseline is verified first (exit 5 if it does not verify) and file
    events under its watched paths re-check those entries: a change is an alert naming the
    process and user that made it (fim_change records in the audit log). The baseline is not
    modified; `secpolicy fim update` accepts changes.

    Everything written (alerts, the --events recording, the store, sinks, the audit log) is
    redacted first (--redaction); the rules see the events as they were.
    """
    from secpolicy.app.monitor import FimOptions, MonitorRequest, run_monitor
    from secpolicy.app.outputs import OutputOptions

    fim = FimOptions(fim_config, fim_db, fim_key_file, fim_key_env, fim_no_key, fim_severity, fim_settle)
    request = MonitorRequest(policies, duration, output, events_path, summary_json, ready_file, ringbuf_pages,
                             queue_max, aggregate_window, aggregate_burst, fim)
    options = OutputOptions(audit_log, store_path, sink_uris, sink_format, dedup_window, rate_limit, redaction)
    previous: dict[signal.Signals, Any] = {}

    def started(info: MonitorStarted) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: info.stop())
        watching = ""
        if info.fim_paths is not None:
            watching = (f", file integrity of {info.fim_paths} watched paths (baseline generation "
                        f"{info.fim_generation}, {info.fim_entries} entries)")
        click.echo(f"secpolicy: monitoring with {info.rules} event rules, {info.probes} probes attached{watching}",
                   err=True)

    try:
        run = run_monitor(request, options, on_error=_warn, on_started=started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(format_monitor_summary(run.summary), err=True)
    line = format_output_stats(run.stats, run.settings)
    if line:
        click.echo(line, err=True)
    if run.fim_failure is not None:
        raise run.fim_failure  # the baseline stopped verifying mid-run: exit 5 (3 if unusable)
    if fail_on_alert and run.summary["alerts"]:
        sys.exit(EXIT_NONCOMPLIANT)


def _warn(message: str) -> None:
    click.echo(f"secpolicy: {message}", err=True)


@click.command(name="doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--no-load-test", is_flag=True, help="Skip compiling and loading a trivial BPF program.")
def doctor_cmd(as_json: bool, no_load_test: bool) -> None:
    """Check what the live monitor needs here: kernel, BTF, tracefs, headers, bcc, privileges,
    lockdown and which event types are available, with the fix for each missing piece.

    Exits 3 when the live monitor cannot run."""
    from secpolicy.doctor import REQUIRED, run_checks

    checks = run_checks(load_test=not no_load_test)
    blocked = [c for c in checks if c.name in REQUIRED and c.ok is False]
    if as_json:
        click.echo(json.dumps({"ready": not blocked, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        mark = {True: "ok  ", None: "warn", False: "FAIL"}
        for c in checks:
            click.echo(f"[{mark[c.ok]}] {c.name:<21} {c.detail}")
            if c.fix and c.ok is not True:
                click.echo(f"       {'':<21} fix: {c.fix}")
        click.echo("live monitor: " + ("ready" if not blocked else "NOT ready (" + ", ".join(c.name for c in blocked) + ")"))
    if blocked:
        sys.exit(EXIT_RUNTIME)


COMMANDS = [monitor_cmd, doctor_cmd]
