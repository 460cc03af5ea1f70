"""`secpolicy monitor` (live eBPF events through the rules, alerts as JSON lines) and
`secpolicy doctor` (what the live monitor needs from this machine, with fixes)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import IO, Any

import click

from secpolicy.auditlog.outputs import OutputStats
from secpolicy.cli.outputs import OutputSettings, RunRecorder, format_output_stats, output_options
from secpolicy.errors import EXIT_NONCOMPLIANT, EXIT_RUNTIME, InputError

__all__ = ["COMMANDS", "doctor_cmd", "format_monitor_summary", "monitor_cmd"]


def _open_write(path: str | None, what: str) -> IO[str] | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {what}: {exc.strerror}", path) from None


def format_monitor_summary(s: dict[str, Any]) -> str:
    lines = [(f"monitor: {s['duration_s']:.1f} s, {s['events']} events, {s['alerts']} alerts, "
              f"{s['lost']} lost")]
    if s["events_by_type"]:
        lines.append("events per type:")
        lines += [f"  {k:<12} {v}" for k, v in s["events_by_type"].items()]
    if s["alerts_by_rule"]:
        lines.append("alerts per rule:")
        lines += [f"  {k:<40} {v}" for k, v in s["alerts_by_rule"].items()]
    if s["lost"]:
        lines.append("LOST events (not evaluated):")
        lines += [f"  {k:<12} {v}" for k, v in s["lost_by_type"].items()]
        for w in s["loss_windows"][:10]:
            lines.append(f"  {w['count']} lost in the {w['where']} between {w['start']} and {w['end']}")
        if len(s["loss_windows"]) > 10:
            lines.append(f"  ... {len(s['loss_windows']) - 10} more loss windows")
    else:
        lines.append("lost: 0 (kernel ring buffer and user-space queue)")
    for note in s["notes"]:
        lines.append(f"note: {note}")
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
    audit_log: str | None,
    store_path: str | None,
    sink_uris: tuple[str, ...],
    sink_format: str,
    dedup_window: float | None,
    rate_limit: str | None,
) -> None:
    """Watch the running kernel with eBPF and evaluate event rules live.

    Loads only the probes the rules need, with their cheap filters in the kernel; prints a
    summary on stderr (events per type, alerts per rule, lost events) when stopped by
    SIGINT/SIGTERM or after --duration. Alerts also go to --sink URIs, events and alerts to
    the --store, and the run (policies, alerts, lost events, failures) to the --audit-log.
    """
    if ringbuf_pages & (ringbuf_pages - 1):
        raise InputError(f"--ringbuf-pages must be a power of two, got {ringbuf_pages}")
    settings = OutputSettings.from_options(audit_log, store_path, sink_uris, sink_format, dedup_window, rate_limit)
    if settings.stdout_sink and output == "-":
        raise InputError("--sink - and --output - would both write alerts to stdout: give --output FILE "
                         "(or --output /dev/null)")
    run = RunRecorder(settings, "monitor", overflow="drop", on_error=_warn)
    run.begin(duration=duration, ringbuf_pages=ringbuf_pages, queue_max=queue_max)
    try:
        summary, stats = _monitor(run, policies, duration, output, events_path, summary_json, ready_file,
                                  ringbuf_pages, queue_max)
    except BaseException as exc:
        run.fail(exc)
        raise
    click.echo(format_monitor_summary(summary), err=True)
    line = format_output_stats(stats, settings)
    if line:
        click.echo(line, err=True)
    if summary_json:
        text = json.dumps(summary, indent=2, sort_keys=True)
        if summary_json == "-":
            click.echo(text)
        else:
            Path(summary_json).write_text(text + "\n", encoding="utf-8")
    if fail_on_alert and summary["alerts"]:
        sys.exit(EXIT_NONCOMPLIANT)


def _warn(message: str) -> None:
    click.echo(f"secpolicy: {message}", err=True)


def _monitor(run: RunRecorder, policies: tuple[str, ...], duration: float | None, output: str,
             events_path: str | None, summary_json: str | None, ready_file: str | None,
             ringbuf_pages: int, queue_max: int) -> tuple[dict[str, Any], OutputStats]:
    from secpolicy.cli.core import load
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine

    ps = load(list(policies))
    run.policies_loaded(ps.policies)
    rules = list(ps.event_rules)
    if not rules:
        raise InputError("the policies hold no event rules (rules with `when:` or `sequence:`)")
    engine = EventEngine(rules)
    mon = Monitor(rules, engine, ringbuf_pages=ringbuf_pages, queue_max=queue_max)
    alerts_out = _open_write(output, "alerts")
    events_out = _open_write(events_path, "events")
    summary_out = _open_write(summary_json, "the summary") if summary_json != "-" else None
    previous: dict[signal.Signals, Any] = {}

    def _stop(signum: int, frame: Any) -> None:
        mon.stop()

    try:
        outputs = run.start_outputs(lambda: [w.to_dict() for w in mon.source.loss_windows()])
        mon.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _stop)
        click.echo(f"secpolicy: monitoring with {len(rules)} event rules, "
                   f"{len(mon.source.attached)} probes attached", err=True)
        if ready_file:
            try:
                Path(ready_file).write_text("ready\n", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"cannot write the ready file: {exc.strerror}", ready_file) from None
        summary = mon.run(alerts_out, events_out, duration=duration,
                          on_alert=outputs.alert if outputs else None,
                          on_event=outputs.on_event if outputs and run.settings.store else None).to_dict()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for fh in (alerts_out, events_out, summary_out):
            if fh is not None and fh is not sys.stdout:
                fh.close()
            elif fh is sys.stdout:
                fh.flush()
    stats = run.finish(summary["loss_windows"], events=summary["events"], alerts=summary["alerts"],
                       lost=summary["lost"], lost_by_type=summary["lost_by_type"],
                       alerts_by_rule=summary["alerts_by_rule"])
    summary["outputs"] = stats.to_dict()
    return summary, stats


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
            click.echo(f"[{mark[c.ok]}] {c.name:<18} {c.detail}")
            if c.fix and c.ok is not True:
                click.echo(f"       {'':<18} fix: {c.fix}")
        click.echo("live monitor: " + ("ready" if not blocked else "NOT ready (" + ", ".join(c.name for c in blocked) + ")"))
    if blocked:
        sys.exit(EXIT_RUNTIME)


COMMANDS = [monitor_cmd, doctor_cmd]
