"""`monitor` as a run: live eBPF events (and, optionally, live file integrity) through the event
rules until stopped, every alert and event leaving through the run's outputs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.app.outputs import OutputOptions, OutputSettings, RunOutputs, RunStats
from secpolicy.errors import InputError, SecpolicyError

if TYPE_CHECKING:
    from secpolicy.fim.live import LiveFim

__all__ = ["FimOptions", "MonitorRequest", "MonitorRun", "MonitorStarted", "run_monitor"]


@dataclass(frozen=True)
class FimOptions:
    """Live file integrity beside the rules: a FIM configuration and its sealed baseline."""

    config: str | None = None
    db: str | None = None
    key_file: str | None = None
    key_env: str | None = None
    no_key: bool = False
    severity: str = "high"
    settle: float = 0.5

    def check(self) -> None:
        keys = [x for x in (self.key_file, self.key_env, self.no_key) if x]
        if self.config is None:
            if self.db or keys:
                raise InputError("--fim-db, --fim-key-file, --fim-key-env and --fim-no-key need --fim CONFIG")
            return
        if len(keys) != 1:
            raise InputError("--fim needs one of --fim-key-file, --fim-key-env or --fim-no-key "
                             "(the key its baseline was sealed with)")

    def open(self) -> LiveFim:
        """The configuration loaded and the baseline verified, before any probe is attached."""
        from secpolicy.fim import Key, load_config
        from secpolicy.fim.live import LiveFim

        assert self.config is not None
        config = load_config(self.config)
        if self.key_file:
            key = Key.from_file(self.key_file)
        elif self.key_env:
            key = Key.from_env(self.key_env)
        else:
            key = Key.none()
        fim = LiveFim(config, self.db, key, severity=self.severity, settle=self.settle)
        fim.verify()
        return fim


@dataclass(frozen=True)
class MonitorRequest:
    policies: tuple[str, ...] = ()
    duration: float | None = None  # seconds; None: until stopped
    output: str = "-"  # alerts as JSON lines
    events: str | None = None  # every delivered event as JSON lines (what replay reads)
    summary_json: str | None = None
    ready_file: str | None = None  # created once the probes are attached
    ringbuf_pages: int = 4096
    queue_max: int = 1 << 18
    aggregate_window: float = 5.0  # storm control, see events/live/storm.py
    aggregate_burst: int = 3
    fim: FimOptions = dataclasses.field(default_factory=FimOptions)


@dataclass(frozen=True)
class MonitorStarted:
    """Told once the probes are attached: what is being watched, and how to stop."""

    rules: int
    probes: int
    fim_paths: int | None
    fim_generation: int | None
    fim_entries: int | None
    stop: Callable[[], None]


@dataclass(frozen=True)
class MonitorRun:
    summary: dict[str, Any]  # MonitorSummary.to_dict() with "outputs" and "redaction"
    stats: RunStats
    settings: OutputSettings
    fim_failure: SecpolicyError | None  # the baseline stopped verifying mid-run


def run_monitor(req: MonitorRequest, options: OutputOptions, *, on_error: Callable[[str], None],
                on_started: Callable[[MonitorStarted], None] | None = None) -> MonitorRun:
    """Monitor until `stop` (handed to `on_started`) or `req.duration`. Every output and the
    FIM options are checked before the audit log records the start; the summary JSON is
    written last."""
    if req.ringbuf_pages < 1 or req.ringbuf_pages & (req.ringbuf_pages - 1):
        raise InputError(f"--ringbuf-pages must be a power of two, got {req.ringbuf_pages}")
    req.fim.check()
    settings = options.settings(alerts=req.output, events=req.events, files=(req.summary_json, req.ready_file),
                                stream=True)
    run = RunOutputs(settings, "monitor", overflow="drop", on_error=on_error)
    run.begin(duration=req.duration, ringbuf_pages=req.ringbuf_pages, queue_max=req.queue_max)
    try:
        summary, fim_failure = _monitor(run, req, on_started)
        extra = {"fim": summary["fim"]} if "fim" in summary else {}
        stats = run.finish(summary["loss_windows"], events=summary["events"], alerts=summary["alerts"],
                           lost=summary["lost"], lost_by_type=summary["lost_by_type"],
                           alerts_by_rule=summary["alerts_by_rule"], **extra)
    except BaseException as exc:
        run.fail(exc)
        raise
    summary["outputs"] = stats.outputs.to_dict()
    summary["redaction"] = stats.redaction
    if req.summary_json:
        from secpolicy import outfile

        outfile.write_text(req.summary_json, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return MonitorRun(summary, stats, settings, fim_failure)


def _monitor(run: RunOutputs, req: MonitorRequest,
             on_started: Callable[[MonitorStarted], None] | None) -> tuple[dict[str, Any], SecpolicyError | None]:
    from secpolicy.app.policies import load_policy_set
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine
    from secpolicy.events.live.storm import StormControl

    storm = StormControl(window=req.aggregate_window, burst=req.aggregate_burst)
    ps = load_policy_set(req.policies, only="event")  # the monitor runs event rules alone, as replay does
    run.policies_loaded(ps.policies)
    rules = list(ps.event_rules)
    fim = req.fim.open() if req.fim.config is not None else None
    if not rules and fim is None:
        raise InputError("the policies hold no event rules (rules with `when:` or `sequence:`)")
    if fim is not None:
        assert req.fim.config is not None
        run.config_loaded(req.fim.config)
    engine = EventEngine(rules)
    mon = Monitor(rules, engine, fim=fim, storm=storm, ringbuf_pages=req.ringbuf_pages, queue_max=req.queue_max)
    # Compiled, loaded and attached before any output is opened: a monitor that cannot start
    # (not root, no tracefs, a program the kernel refuses) leaves the outputs as they were (a
    # live alerts file is written in place, from the start). Events wait in the ring meanwhile.
    mon.start()
    try:
        run.open(lambda: [w.to_dict() for w in mon.source.loss_windows()])
        if on_started is not None:
            status = fim.status if fim is not None else None
            on_started(MonitorStarted(len(rules), len(mon.source.attached), len(fim.prefixes) if fim else None,
                                      status.generation if status else None, status.entries if status else None,
                                      mon.stop))
        if req.ready_file:
            from secpolicy import outfile

            try:
                outfile.write_text(req.ready_file, "ready\n")
            except OSError as exc:
                raise InputError(f"cannot write the ready file: {exc.strerror}", req.ready_file) from None
    except BaseException:
        mon.stop()
        raise
    summary = mon.run(None, None, duration=req.duration, on_alert=run.alert, on_event=run.on_event,
                      on_flush=run.flush).to_dict()
    return summary, fim.failure if fim is not None else None
