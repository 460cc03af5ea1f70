"""`replay` as a run: recorded events (JSON lines, audit logs) through the event rules in
time order, every alert and event leaving through the run's outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.app.outputs import OutputOptions, OutputSettings, RunOutputs, RunStats
from secpolicy.errors import InputError

if TYPE_CHECKING:
    from secpolicy.events.replay import ReplayResult

__all__ = ["ReplayRequest", "ReplayRun", "run_replay"]


@dataclass(frozen=True)
class ReplayRequest:
    files: tuple[str, ...]
    input_format: str = "auto"
    policies: tuple[str, ...] = ()
    output: str | None = None  # alerts as JSON lines; standard output when None (unless summary)
    summary: bool = False  # count what was read (aureport's counts for audit logs)
    window: float = 5.0  # reorder window, seconds of event time
    root: str = "/"  # names users of audit logs written without names


@dataclass(frozen=True)
class ReplayRun:
    result: ReplayResult
    stats: RunStats
    settings: OutputSettings


Reading = Callable[[list[str]], contextlib.AbstractContextManager[Any]]


def run_replay(req: ReplayRequest, options: OutputOptions, *, on_error: Callable[[str], None],
               reading: Reading | None = None) -> ReplayRun:
    """Replay `req.files`. Every output is checked before anything is read; the audit log
    records the run's start first and its end (or failure) last. `reading` wraps the reading
    (the CLI's progress on the files)."""
    settings = options.settings(alerts=req.output if req.output is not None else (None if req.summary else "-"))
    run = RunOutputs(settings, "replay", overflow="block", on_error=on_error)
    run.begin(inputs=[str(f) for f in req.files], input_format=req.input_format)
    try:
        result = _replay(run, req, reading)
        stats = run.finish(events=result.events, alerts=result.alerts, alerts_by_rule=dict(result.alerts_by_rule),
                           bad_lines=result.bad_lines, bad_where=result.bad_where[:20],
                           late_events=result.late_events)
    except BaseException as exc:
        run.fail(exc)
        raise
    return ReplayRun(result, stats, settings)


def _replay(run: RunOutputs, req: ReplayRequest, reading: Reading | None) -> ReplayResult:
    from secpolicy.app.policies import load_policy_set
    from secpolicy.events.auditd import AccountNames
    from secpolicy.events.engine import EventEngine
    from secpolicy.events.replay import open_sources, replay

    if not Path(req.root).is_dir():
        raise InputError("--root: not a directory", req.root)
    # The event rules alone, compiled without the check rules' imports.
    ps = load_policy_set(req.policies, only="event", relative=False)
    run.policies_loaded(ps.policies)
    engine = EventEngine(ps.event_rules)
    sources = open_sources([Path(f) for f in req.files], req.input_format, names=AccountNames(req.root, warn=run.on_error),
                           aureport=req.summary)
    run.open()
    alone = run.alert_output_alone()
    with reading([str(f) for f in req.files]) if reading is not None else contextlib.nullcontext():
        if alone is not None:
            # Alerts go to the alert output only: written as lines (no alert dicts), each
            # checked for redaction.
            return replay(sources, engine, alone, window=req.window, on_event=run.on_event,
                          on_lines=run.checked_lines)
        return replay(sources, engine, None, window=req.window, on_event=run.on_event, on_alert=run.alert)
