"""Forensic timelines: what a user did in a time window, from the event store or replay files,
as rows (time, user, event type, resource, result) plus correlated chains shown together."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.auditlog.store import (
    EventStore,
    JsonLines,
    event_resource,
    event_result,
    event_user,
    normalize_ts,
)
from secpolicy.errors import InputError
from secpolicy.terminal import inert

if TYPE_CHECKING:
    from secpolicy.redaction import Redactor

__all__ = [
    "SENSITIVE_PATHS",
    "Chain",
    "Timeline",
    "TimelineQuery",
    "TimelineRow",
    "build_timeline",
    "read_replay",
    "session_chains",
]

# Reads of these mark the "took something" step of a privilege-escalation chain.
SENSITIVE_PATHS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/security/opasswd",
                   "/root/.ssh/", "/.ssh/id_", "/etc/ssh/ssh_host_")
_ESCALATION_EXES = ("sudo", "su", "pkexec", "doas")


@dataclass(frozen=True)
class TimelineQuery:
    since: str | None = None
    until: str | None = None
    user: str | None = None
    type: str | None = None
    rule: str | None = None
    limit: int | None = 10_000

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, normalize_ts(value))
        if self.since and self.until and self.since >= self.until:
            raise InputError(f"--since {self.since} is not before --until {self.until}")
        if self.limit is not None and self.limit < 1:
            raise InputError("--limit must be at least 1")


@dataclass(frozen=True)
class TimelineRow:
    ts: str
    user: str
    type: str
    resource: str
    result: str
    host: str = ""
    pid: int | None = None
    session: str = ""
    rule_id: str = ""
    severity: str = ""
    title: str = ""

    @property
    def is_alert(self) -> bool:
        return bool(self.rule_id)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


@dataclass(frozen=True)
class Chain:
    """Events that belong together: a sequence alert's events, or a session's escalation."""

    title: str
    origin: str  # "sequence" (from a correlation alert) or "session" (heuristic)
    user: str
    session: str
    steps: tuple[TimelineRow, ...]
    rule_id: str = ""
    severity: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "origin": self.origin, "user": self.user, "session": self.session,
            "rule_id": self.rule_id, "severity": self.severity,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Timeline:
    query: TimelineQuery
    rows: tuple[TimelineRow, ...]
    chains: tuple[Chain, ...] = ()
    truncated: bool = False
    sources: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": {k: v for k, v in self.query.__dict__.items() if v is not None},
            "rows": [r.to_dict() for r in self.rows],
            "chains": [c.to_dict() for c in self.chains],
            "truncated": self.truncated,
        }


def _who(event: Mapping[str, Any]) -> str:
    """The login user, and the acting user where they differ: `admin as root` after sudo."""
    who = event_user(event) or ""
    login, user = event.get("login"), event.get("user")
    acting = user.get("name") if isinstance(user, Mapping) else None
    if isinstance(login, Mapping) and isinstance(acting, str) and acting and acting != who:
        return f"{who} as {acting}"
    return who


def event_to_row(event: Mapping[str, Any]) -> TimelineRow:
    proc = event.get("proc") or {}
    session = proc.get("session")
    return TimelineRow(
        ts=normalize_ts(event.get("ts")),
        user=_who(event),
        type=str(event.get("type", "")),
        resource=event_resource(event),
        result=event_result(event),
        host=str(event.get("host") or ""),
        pid=proc.get("pid"),
        session="" if session is None else str(session),
    )


def alert_to_row(alert: Mapping[str, Any]) -> TimelineRow:
    event = alert.get("event") or {}
    base = event_to_row(event) if event.get("ts") else None
    return TimelineRow(
        ts=normalize_ts(alert.get("ts") or event.get("ts")),
        user=base.user if base else "",
        type="alert",
        resource=str(alert.get("title") or alert.get("rule_id")),
        result=str(alert.get("severity", "")),
        host=base.host if base else "",
        pid=base.pid if base else None,
        session=base.session if base else "",
        rule_id=str(alert["rule_id"]),
        severity=str(alert.get("severity", "")),
        title=str(alert.get("title") or ""),
    )


def read_replay(paths: Sequence[str | Path]) -> JsonLines:
    """("event" | "alert", dict) pairs from JSON-lines files; bad lines are skipped and counted
    in the returned reader's `bad` and `bad_where`."""
    return JsonLines(paths)


def _in_window(ts: str, q: TimelineQuery) -> bool:
    return (q.since is None or ts >= q.since) and (q.until is None or ts < q.until)


def build_timeline(query: TimelineQuery, store: EventStore | None = None,
                   replay: Iterable[tuple[str, Mapping[str, Any]]] | None = None,
                   redactor: Redactor | None = None) -> Timeline:
    """The timeline for `query` from a store, or from replayed (kind, dict) pairs. With a
    `redactor`, what was selected is redacted before the rows are made (a store written by
    secpolicy holds redacted records already; older ones or other files may not)."""
    if (store is None) == (replay is None):
        raise InputError("give either an event store or replay files")
    events: list[Mapping[str, Any]] = []
    alerts: list[Mapping[str, Any]] = []
    pool: list[Mapping[str, Any]] = []  # replay: every event in the window, for session chains
    fetch = None if query.limit is None else query.limit + 1
    want_events = query.rule is None and query.type != "alert"
    want_alerts = query.type in (None, "alert")
    if store is not None:
        if want_events:
            events = list(store.events(query.since, query.until, query.user, query.type, fetch))
        if want_alerts:
            alerts = list(store.alerts(query.since, query.until, query.rule, query.user, limit=fetch))
    else:
        assert replay is not None
        for kind, obj in replay:
            if kind == "event":
                if not want_events:
                    continue
                ts = normalize_ts(obj.get("ts"))
                if not _in_window(ts, query):
                    continue
                pool.append(obj)
                if ((query.type is None or obj.get("type") == query.type)
                        and (query.user is None or event_user(obj) == query.user)):
                    events.append(obj)
            elif want_alerts and (query.rule is None or obj.get("rule_id") == query.rule):
                ev = obj.get("event") or {}
                ts = normalize_ts(obj.get("ts") or ev.get("ts"))
                if _in_window(ts, query) and (query.user is None or (ev and event_user(ev) == query.user)):
                    alerts.append(obj)
    chain_events: list[Mapping[str, Any]] = events
    if query.user is not None or query.type is not None:
        # A user's chain goes on under root after sudo: follow the user's sessions whoever acts.
        sessions = {(str(e.get("host") or ""), str((e.get("proc") or {}).get("session")))
                    for e in events if _escalates(e) and (e.get("proc") or {}).get("session") is not None}
        if store is not None:
            chain_events = list(store.session_events(sessions, query.since, query.until))
        else:
            chain_events = [e for e in pool if (str(e.get("host") or ""),
                                                str((e.get("proc") or {}).get("session"))) in sessions]
    if redactor is not None:
        events, alerts = [redactor.event(e) for e in events], [redactor.alert(a) for a in alerts]
        chain_events = [redactor.event(e) for e in chain_events]
    rows = [event_to_row(e) for e in events] + [alert_to_row(a) for a in alerts]
    rows.sort(key=lambda r: (r.ts, r.is_alert))
    truncated = query.limit is not None and len(rows) > query.limit
    if truncated:
        rows = rows[: query.limit]
    chains = sequence_chains(alerts) + session_chains(chain_events)
    return Timeline(query=query, rows=tuple(rows), chains=tuple(chains), truncated=truncated)


def sequence_chains(alerts: Iterable[Mapping[str, Any]]) -> list[Chain]:
    """Correlation alerts (`context.kind == "sequence"`) with their events in order."""
    out = []
    for alert in alerts:
        if (alert.get("context") or {}).get("kind") != "sequence":
            continue
        steps = tuple(sorted((event_to_row(e) for e in alert.get("events") or [] if e.get("ts")),
                             key=lambda r: r.ts))
        first = steps[0] if steps else None
        out.append(Chain(
            title=str(alert.get("title") or alert.get("rule_id")), origin="sequence",
            user=first.user if first else "", session=first.session if first else "",
            steps=steps, rule_id=str(alert.get("rule_id")), severity=str(alert.get("severity", "")),
        ))
    return out


def _escalates(event: Mapping[str, Any]) -> bool:
    proc = event.get("proc") or {}
    kind = event.get("type")
    if kind == "exec":
        exe = str(proc.get("exe") or proc.get("comm") or "")
        if exe.rsplit("/", 1)[-1] in _ESCALATION_EXES:
            return True
        return proc.get("euid") == 0 and proc.get("uid") not in (0, None)
    if kind == "setuid":
        return (event.get("cred") or {}).get("euid") == 0
    return False


def _failed(event: Mapping[str, Any]) -> bool:
    outcome = event.get("outcome")
    return isinstance(outcome, Mapping) and outcome.get("result") == "failure"


def _sensitive_read(event: Mapping[str, Any]) -> bool:
    """A read of a sensitive file that was not refused (a denied open read nothing)."""
    if event.get("type") != "open" or _failed(event):
        return False
    file = event.get("file")
    path = file.get("path") if isinstance(file, Mapping) else None
    if not isinstance(path, str):
        return False
    # Absolute entries are where the file is (not /tmp/x/etc/shadow); "/.ssh/id_" is in any home.
    return any(path.startswith(p) if p[:2] != "/." else p in path for p in SENSITIVE_PATHS)


def _outbound(event: Mapping[str, Any]) -> bool:
    """A connection out of the host that was made: to an IP address that is not loopback, not
    refused. A local (unix) socket, such as the nscd socket every libc lookup tries, is not."""
    if event.get("type") != "connect" or _failed(event):
        return False
    net = event.get("net")
    if not isinstance(net, Mapping) or net.get("family") == "unix":
        return False
    dst = net.get("dst_ip")
    if not isinstance(dst, str) or not dst:
        return False
    try:
        return not ipaddress.ip_address(dst).is_loopback
    except ValueError:
        return True  # an address of another form: still a connection out


def session_chains(events: Iterable[Mapping[str, Any]]) -> list[Chain]:
    """Per (host, session): privilege escalation, then a sensitive read and/or an outbound
    connection, in that order. "admin ran sudo, became root, read /etc/shadow, connected out"."""
    by_session: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for e in events:
        session = (e.get("proc") or {}).get("session")
        if session is None:
            continue
        by_session.setdefault((str(e.get("host") or ""), str(session)), []).append(e)
    chains = []
    for (_, session), evs in sorted(by_session.items()):
        # By the time each names, in UTC: as written, 03:30+02:00 would sort after 02:00Z.
        evs.sort(key=lambda e: normalize_ts(e.get("ts")))
        steps: list[Mapping[str, Any]] = []
        seen_read = seen_connect = False
        for e in evs:
            if not steps:
                if _escalates(e):
                    steps.append(e)
                continue
            if _escalates(e) and len(steps) == 1:
                steps.append(e)  # sudo exec followed by the setuid to root
            elif _sensitive_read(e) and not seen_read:
                steps.append(e)
                seen_read = True
            elif _outbound(e) and not seen_connect:
                steps.append(e)
                seen_connect = True
        if steps and (seen_read or seen_connect):
            rows = tuple(event_to_row(e) for e in steps)
            who = [event_user(e) or "" for e in steps]
            user = next((w for w in who if w and not w.startswith("uid:0")), who[0])
            what = ["escalated to root"]
            if seen_read:
                what.append("read a sensitive file")
            if seen_connect:
                what.append("connected out")
            chains.append(Chain(title=f"{user}: " + ", ".join(what), origin="session", user=user,
                                session=session, steps=rows))
    return chains


def render_html(timeline: Timeline) -> str:
    """The timeline as a standalone HTML page (autoescaped: event data is attacker-controlled)."""
    import jinja2

    from secpolicy.resources import templates_dir

    env = jinja2.Environment(autoescape=True, loader=jinja2.FileSystemLoader(str(templates_dir())))
    try:
        template = env.get_template("timeline.html.j2")
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template {exc.name} not found in {templates_dir()}") from exc
    query = {k: v for k, v in timeline.query.__dict__.items() if v is not None and k != "limit"}
    return template.render(query=query, rows=timeline.rows, chains=timeline.chains,
                           truncated=timeline.truncated)


def _short(ts: str) -> str:
    # Tables show milliseconds; json and html keep the full nanosecond stamp.
    return f"{ts[:10]} {ts[11:23]}"


def render_table(timeline: Timeline) -> list[Any]:
    """Rich renderables: the chains first (each a small table), then the timeline table."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    for chain in timeline.chains:
        t = Table(title=Text(inert(f"chain: {chain.title}" + (f" [{chain.rule_id}]" if chain.rule_id else ""))),
                  title_justify="left", show_edge=False)
        for col in ("time (UTC)", "user", "event type", "resource", "result"):
            t.add_column(col, overflow="fold", no_wrap=col.startswith("time"))
        for s in chain.steps:
            t.add_row(Text(_short(s.ts)), *(Text(inert(v)) for v in (s.user, s.type, s.resource, s.result)))
        out.append(t)
    table = Table(title="timeline" + (" (truncated)" if timeline.truncated else ""), title_justify="left",
                  show_edge=False)
    for col in ("time (UTC)", "user", "event type", "resource", "result"):
        table.add_column(col, overflow="fold", no_wrap=col.startswith("time"))
    for r in timeline.rows:
        style = "bold red" if r.severity in ("high", "critical") else ("yellow" if r.is_alert else "")
        kind = f"alert {r.rule_id}" if r.is_alert else r.type
        table.add_row(Text(_short(r.ts)), *(Text(inert(v)) for v in (r.user, kind, r.resource, r.result)), style=style)
    out.append(table)
    return out
