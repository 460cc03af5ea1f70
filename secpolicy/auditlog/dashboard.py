"""The security dashboard: last-24-hour figures from the event store and compliance from the
last scan results, collected into one frozen snapshot and laid out with rich for the terminal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from secpolicy.auditlog.store import PRIVILEGED_EXEC, EventStore, iso_utc
from secpolicy.errors import InputError
from secpolicy.terminal import inert

__all__ = ["FrameworkStatus", "Snapshot", "collect", "load_results", "render"]



@dataclass(frozen=True)
class FrameworkStatus:
    name: str
    passed: int
    failed: int
    errors: int
    compliance_pct: float | None


@dataclass(frozen=True)
class Snapshot:
    now: str
    since: str
    events: int
    alerts: int
    alerts_by_severity: dict[str, int]
    critical: int
    failed_auth: int
    fim_violations: int
    privileged_commands: int
    frameworks: tuple[FrameworkStatus, ...]
    scan_finished: str | None
    recent_critical: tuple[dict[str, Any], ...]
    chains: tuple[dict[str, Any], ...]
    brute_force: tuple[tuple[str, int, int], ...]  # (source ip, failures, distinct users)


def load_results(path: str | Path) -> tuple[tuple[FrameworkStatus, ...], str | None]:
    """Per-framework compliance from a scan results JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read scan results: {exc.strerror}", str(path)) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"scan results are not JSON: {exc.msg} at line {exc.lineno}", str(path)) from exc
    try:
        frameworks = (data.get("summary") or {}).get("frameworks") or {}
        out = tuple(
            FrameworkStatus(
                name=str(name), passed=int(f.get("pass", 0)), failed=int(f.get("fail", 0)),
                errors=int(f.get("error", 0)),
                compliance_pct=None if f.get("compliance_pct") is None else float(f["compliance_pct"]),
            )
            for name, f in sorted(frameworks.items())
        )
        finished = (data.get("scan") or {}).get("finished_at")
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"scan results are malformed: {exc}", str(path)) from exc
    return out, finished


def collect(store: EventStore, results: str | Path | None = None, now: datetime | None = None,
            brute_force_min: int = 5, recent: int = 8) -> Snapshot:
    moment = now or datetime.now(UTC)
    try:
        since = iso_utc(moment - timedelta(hours=24))
    except OverflowError:  # within a day of the first time there is: the window starts there
        since = iso_utc(datetime.min.replace(tzinfo=UTC))
    until = iso_utc(moment)
    q = store.conn.execute

    def one(sql: str, *args: Any) -> int:
        return int(q(sql, (since, until, *args)).fetchone()[0])

    window = "ts >= ? AND ts < ?"
    events = one(f"SELECT COUNT(*) FROM events WHERE {window}")
    by_sev = {sev: n for sev, n in q(f"SELECT severity, COUNT(*) FROM alerts INDEXED BY alerts_ts_severity WHERE "
                                     f"{window} GROUP BY severity",
                                     (since, until))}
    # Each count reads one small covering index (store.py), never the events themselves: a
    # frame stays fast however many events the last 24 hours hold.
    failed_auth = one(f"SELECT COUNT(*) FROM events INDEXED BY events_failed_auth WHERE type = 'auth' AND {window} "
                      "AND result = 'failure'")
    fim = one(
        f"SELECT COUNT(*) FROM alerts WHERE {window} AND (rule_id LIKE 'fim%' OR EXISTS "
        "(SELECT 1 FROM json_each(alerts.json, '$.tags') WHERE value = 'fim'))"
    )
    privileged = one(f"SELECT COUNT(*) FROM events INDEXED BY events_privileged WHERE type = 'exec' AND {window} "
                     f"AND {PRIVILEGED_EXEC}")
    recent_rows = tuple(store.alert_record(t) for (t,) in q(
        f"SELECT json FROM alerts WHERE {window} AND severity IN ('critical', 'high') ORDER BY ts DESC, id DESC "
        "LIMIT ?", (since, until, recent)))
    chains = tuple(store.alert_record(t) for (t,) in q(
        f"SELECT json FROM alerts WHERE {window} AND kind = 'sequence' ORDER BY ts DESC, id DESC LIMIT ?",
        (since, until, recent)))
    brute = tuple((str(ip), int(n), int(u)) for ip, n, u in q(
        f"SELECT src_ip, COUNT(*), COUNT(DISTINCT user) FROM events INDEXED BY events_failed_auth "
        f"WHERE type = 'auth' AND {window} "
        "AND result = 'failure' AND src_ip IS NOT NULL GROUP BY src_ip HAVING COUNT(*) >= ? "
        "ORDER BY COUNT(*) DESC, src_ip LIMIT 10", (since, until, brute_force_min)))
    frameworks: tuple[FrameworkStatus, ...] = ()
    finished = None
    if results is not None:
        frameworks, finished = load_results(results)
    return Snapshot(
        now=until, since=since, events=events, alerts=sum(by_sev.values()), alerts_by_severity=by_sev,
        critical=by_sev.get("critical", 0), failed_auth=failed_auth, fim_violations=fim,
        privileged_commands=privileged, frameworks=frameworks, scan_finished=finished,
        recent_critical=recent_rows, chains=chains, brute_force=brute,
    )


def render(snap: Snapshot) -> Any:
    """One frame of the dashboard as a rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    totals = Table.grid(padding=(0, 3))
    for _ in range(6):
        totals.add_column(justify="right")
    totals.add_row("events (24h)", "alerts (24h)", "critical", "failed auth", "FIM violations", "privileged cmds")
    totals.add_row(*(Text(str(v), style="bold") for v in (snap.events, snap.alerts, snap.critical,
                                                           snap.failed_auth, snap.fim_violations,
                                                           snap.privileged_commands)))
    sev = "  ".join(f"{k}: {snap.alerts_by_severity.get(k, 0)}" for k in ("critical", "high", "medium", "low", "info"))

    comp = Table(title="compliance (last scan" + (f", {snap.scan_finished})" if snap.scan_finished else ")"),
                 title_justify="left", show_edge=False)
    for col in ("framework", "pass", "fail", "error", "compliance"):
        comp.add_column(col, justify="left" if col == "framework" else "right")
    for f in snap.frameworks:
        pct = "-" if f.compliance_pct is None else f"{f.compliance_pct:.1f}%"
        style = "" if f.compliance_pct is None else ("green" if f.compliance_pct >= 90 else
                                                      "yellow" if f.compliance_pct >= 70 else "red")
        comp.add_row(Text(inert(f.name)), str(f.passed), str(f.failed), str(f.errors), Text(pct, style=style))
    if not snap.frameworks:
        comp.add_row(Text("no scan results given (--results)"), "", "", "", "")

    crit = Table(title="recent critical and high alerts", title_justify="left", show_edge=False)
    for col in ("time", "severity", "rule", "title"):
        crit.add_column(col, overflow="fold")
    for a in snap.recent_critical:
        crit.add_row(Text(str(a.get("ts", ""))[:19]), Text(inert(str(a.get("severity"))),
                     style="bold red" if a.get("severity") == "critical" else "red"),
                     Text(inert(str(a.get("rule_id")))), Text(inert(str(a.get("title", "")))))

    chains = Table(title="detected chains", title_justify="left", show_edge=False)
    for col in ("time", "rule", "steps"):
        chains.add_column(col, overflow="fold")
    for a in snap.chains:
        steps = " -> ".join(f"{e.get('type')}" + (f" {(e.get('file') or {}).get('path')}" if (e.get("file") or {}).get("path") else "")
                            for e in a.get("events") or [])
        chains.add_row(Text(str(a.get("ts", ""))[:19]), Text(inert(str(a.get("rule_id")))), Text(inert(steps)))

    brute = Table(title="brute-force sources (24h)", title_justify="left", show_edge=False)
    for col in ("source", "failures", "users"):
        brute.add_column(col, justify="left" if col == "source" else "right")
    for ip, n, users in snap.brute_force:
        brute.add_row(Text(inert(ip)), str(n), str(users))

    header = Text(f"secpolicy dashboard   {snap.since[:19]}Z .. {snap.now[:19]}Z", style="bold")
    return Group(header, Panel(Group(totals, Text(sev)), title="last 24 hours"), comp, crit, chains, brute)
