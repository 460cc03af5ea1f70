"""The SQLite event store and the forensic timeline over it and over replay files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from secpolicy.auditlog.store import (
    EventStore,
    JsonLines,
    Retention,
    event_resource,
    event_row,
    normalize_ts,
)
from secpolicy.auditlog.timeline import (
    TimelineQuery,
    build_timeline,
    read_replay,
    render_html,
    render_table,
)
from secpolicy.errors import InputError, RuntimeFailure
from secpolicy.redaction import Redactor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "auditlog"
EVENTS = FIXTURES / "events.jsonl"


def loaded(tmp_path: Path) -> EventStore:
    store = EventStore(tmp_path / "events.db")
    items = list(read_replay([EVENTS]))
    store.add_events(o for k, o in items if k == "event")
    store.add_alerts(o for k, o in items if k == "alert")
    return store


def test_store_is_wal_with_the_promised_indexes(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0]: r[1] for r in store.conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'")}
    assert {"events_ts", "events_user_ts", "events_type_ts", "alerts_rule_ts", "alerts_ts"} <= set(indexes)
    plan = " ".join(r[-1] for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT json FROM events WHERE user = 'admin' AND ts >= '2026' ORDER BY ts"))
    assert "events_user_ts" in plan


def test_events_round_trip_with_query_columns(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    assert store.count_events() == 10
    assert store.count_events(type="auth", result="failure") == 2
    # "Who" is the login user: admin read /etc/shadow, acting as root after sudo.
    row = store.conn.execute("SELECT user, euid, resource, result, session FROM events WHERE type='open'").fetchone()
    assert row == ("admin", 0, "/etc/shadow", "success", "42")
    first = json.loads(EVENTS.read_text().splitlines()[0])
    assert next(store.events(type="auth")) == first


def test_queries_window_is_half_open(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    got = [e["ts"] for e in store.events(since="2026-11-21T10:02:00Z", until="2026-11-21T10:04:40Z")]
    assert got == ["2026-11-21T10:02:00.000000000Z", "2026-11-21T10:02:00.500000000Z",
                   "2026-11-21T10:03:15.250000000Z"]


def test_timezone_offsets_are_normalised_to_utc() -> None:
    assert normalize_ts("2026-11-21T12:00:00.123456789+02:00") == "2026-11-21T10:00:00.123456789Z"
    assert normalize_ts("2026-11-21T10:00:00+00:00") == "2026-11-21T10:00:00.000000000Z"
    assert normalize_ts("2026-11-21T10:00:00.5Z") == "2026-11-21T10:00:00.500000000Z"
    # Fixed width keeps text order equal to time order.
    assert normalize_ts("2026-11-21T10:00:00Z") < normalize_ts("2026-11-21T10:00:00.000000001Z")
    with pytest.raises(InputError, match="no time zone"):
        normalize_ts("2026-11-21T10:00:00.000")
    with pytest.raises(InputError):
        normalize_ts("yesterday")


@pytest.mark.parametrize("ts", ["2026-11-21T0\u00b2:00:00.000000000Z", "2026-11-21T10:00:00.00000000\u00b2Z",
                                "2026-11-21T10:00:00.00000000\u0663Z"])
def test_a_time_in_stored_shape_with_digits_of_other_scripts_is_refused(ts: str) -> None:
    """Stored times are compared as text: only ASCII digits keep that order the time order."""
    event = {"type": "exec", "ts": "2026-11-21T10:00:00.000000000Z"}
    assert event_row(event)[0] == event["ts"]  # the second is known now: the short way is taken
    with pytest.raises(InputError, match="ISO 8601"):
        normalize_ts(ts)
    with pytest.raises(InputError, match="ISO 8601"):
        event_row({**event, "ts": ts})


def test_bad_events_are_refused_and_nothing_half_stored(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    with pytest.raises(InputError, match="no type"):
        store.add_events([{"ts": "2026-11-21T10:00:00Z", "type": "exec"}, {"ts": "2026-11-21T10:00:00Z"}])
    assert store.count_events() == 0


def test_not_a_database_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a usable event store"):
        EventStore(bad)
    with pytest.raises(InputError, match="no such event store"):
        EventStore(tmp_path / "absent.db", create=False)


def _take_companion_name(path: Path, kind: str) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path.parent / "elsewhere")


@pytest.mark.parametrize("suffix", ["-journal", "-wal", "-shm"])
@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink"])
def test_a_companion_name_taken_beside_a_database_is_refused_by_name(tmp_path: Path, suffix: str, kind: str) -> None:
    """SQLite opens `<db>-journal`, `-wal` and `-shm` by name: a FIFO there hung `replay
    --store`, a directory gave "disk I/O error". Every store refuses it first, naming it."""
    from secpolicy.fleet import open_store

    EventStore(tmp_path / "e.db").close()
    _take_companion_name(tmp_path / f"e.db{suffix}", kind)
    why = f"e.db{suffix} beside the database is not a regular file"
    for read_only in (False, True):
        with pytest.raises(InputError, match=why):
            EventStore(tmp_path / "e.db", read_only=read_only)
    _take_companion_name(tmp_path / f"f.db{suffix}", kind)
    with pytest.raises(InputError, match=f"f.db{suffix} beside the database is not a regular file"):
        open_store(str(tmp_path / "f.db"))


def test_retention_by_age_and_count(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    store.retention = Retention(days=1)
    now = datetime(2026, 11, 22, 10, 5, 0, tzinfo=UTC)
    assert store.prune(now) == (6, 1)  # everything before 10:05 the day before
    store.retention = Retention(days=None, max_events=2)
    assert store.prune(now) == (2, 0)
    assert [e["ts"] for e in store.events()] == ["2026-11-21T10:06:01.000000000Z",
                                                  "2026-11-21T10:16:00.000000000Z"]


def test_resources_per_event_kind() -> None:
    assert event_resource({"type": "connect", "net": {"dst_ip": "203.0.113.5", "dst_port": 22}}) == "203.0.113.5:22"
    assert event_resource({"type": "rename", "file": {"path": "/a", "target": "/b"}}) == "/a -> /b"
    assert event_resource({"type": "module_load", "module": {"name": "evil"}}) == "evil"
    assert event_resource({"type": "exec", "proc": {"cmdline": "sudo -i"}}) == "sudo -i"


# -- timeline ------------------------------------------------------------------------------

WINDOW = TimelineQuery(since="2026-11-21T10:00:00Z", until="2026-11-21T10:15:00Z", user="admin")


def test_user_window_rows_from_store_and_replay_agree(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    from_store = build_timeline(WINDOW, store=store)
    from_replay = build_timeline(WINDOW, replay=read_replay([EVENTS]))
    assert from_store.rows == from_replay.rows
    assert [(r.ts[11:19], r.user, r.type, r.resource, r.result) for r in from_store.rows] == [
        ("10:01:00", "admin", "exec", "-bash", "success"),
        # What admin did as root after sudo is admin's too: the login user stays through sudo.
        ("10:02:00", "admin as root", "exec", "sudo -i", "success"),
        ("10:02:00", "admin as root", "setuid", "euid=0", "success"),
        ("10:03:15", "admin as root", "open", "/etc/shadow", "success"),
        ("10:04:40", "admin as root", "connect", "203.0.113.50:80", "success"),
        ("10:04:40", "admin", "alert", "sudo, shadow read, outbound connection", "critical"),
        ("10:06:01", "admin", "auth", "sshd 203.0.113.9", "failure"),
        ("10:06:01", "admin", "alert", "SSH brute force", "high"),
    ]
    assert from_store.chains == from_replay.chains


def test_chains_from_sequence_alerts_and_sessions(tmp_path: Path) -> None:
    timeline = build_timeline(WINDOW, store=loaded(tmp_path))
    assert [(c.origin, c.title) for c in timeline.chains] == [
        ("sequence", "sudo, shadow read, outbound connection"),
        ("session", "admin: escalated to root, read a sensitive file, connected out"),
    ]
    session = timeline.chains[1]
    assert [(s.user, s.type, s.resource) for s in session.steps] == [
        ("admin as root", "exec", "sudo -i"),
        ("admin as root", "setuid", "euid=0"),
        ("admin as root", "open", "/etc/shadow"),
        ("admin as root", "connect", "203.0.113.50:80"),
    ]
    assert [s.type for s in timeline.chains[0].steps] == ["exec", "open", "connect"]


def test_type_and_rule_filters(tmp_path: Path) -> None:
    store = loaded(tmp_path)
    auth = build_timeline(TimelineQuery(type="auth"), store=store)
    assert [(r.user, r.result) for r in auth.rows] == [("admin", "success"), ("root", "failure"),
                                                       ("admin", "failure")]
    rule = build_timeline(TimelineQuery(rule="fim.etc_change"), store=store)
    assert [(r.type, r.rule_id, r.user) for r in rule.rows] == [("alert", "fim.etc_change", "root")]


def test_limit_marks_truncation(tmp_path: Path) -> None:
    timeline = build_timeline(TimelineQuery(limit=3), store=loaded(tmp_path))
    assert len(timeline.rows) == 3 and timeline.truncated


def test_bad_queries_and_replay_lines() -> None:
    with pytest.raises(InputError, match="not before"):
        TimelineQuery(since="2026-11-21T11:00:00Z", until="2026-11-21T10:00:00Z")
    with pytest.raises(InputError):
        build_timeline(TimelineQuery())


HOSTILE = [
    b'{"type": "exec", "ts": "2026-11-21T10:00:00Z"}',  # good
    b'{"type": ',  # not JSON
    b'{"type": "exec", "ts": "2024-02-30T10:00:00.000000000Z"}',  # the right shape, no such day
    b'{"type": "exec", "ts": "2024-02-30T10:00:00Z"}',
    b'{"type": "auth", "ts": "2026-11-21T10:00:01Z", "auth": {"rhost": {"ip": "x"}, "result": "failure"}}',
    b'{"type": "exec", "ts": "2026-11-21T10:00:02Z", "x": "\xff\xfe"}'.replace(b"\\xff\\xfe", b"\xff\xfe"),
    b'{"type": "exec", "ts": "2026-11-21T10:00:03Z", "proc": {"pid": ' + b"9" * 5000 + b"}}",
    b'{"type": "exec", "ts": "2026-11-21T10:00:04Z", "proc": {"pid": 99999999999999999999}}',
    b'{"type": "exec", "ts": "2026-11-21T10:00:05Z", "proc": [1]}',
    b'{"type": "exec", "ts": "2026-11-21T10:00:06Z", "n": NaN}',
    b'[1, 2]',
    b'{"type": "exec", "ts": "2026-11-21T10:00:06Z", "proc": {"comm": "\\ud800"}, "pad": "' + b"p" * 5000 + b'"}',
    b'{"rule_id": "r", "severity": "high", "ts": "2026-11-21T10:00:07Z", "event": {"auth": {"rhost": [1]}}}',
    b'{"rule_id": "r", "severity": "high", "ts": "2026-11-21T10:00:08Z"}',  # good
]


def hostile(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(HOSTILE) + b"\n")
    return path


def test_each_hostile_line_is_one_counted_located_bad_line(tmp_path: Path) -> None:
    path = hostile(tmp_path)
    assert b"\xff\xfe" in path.read_bytes()
    reader = read_replay([path])
    items = list(reader)
    assert [k for k, _ in items] == ["event", "alert"]
    assert reader.bad == len(HOSTILE) - 2
    where = [w.split(": ", 1)[0] for w in reader.bad_where]
    assert where == [f"{path}:{n}" for n in range(2, len(HOSTILE))]
    why = dict(w.split(": ", 1) for w in reader.bad_where)
    assert "not JSON" in why[f"{path}:2"]
    assert "date and time that exists" in why[f"{path}:3"] and "no such day" in why[f"{path}:3"]
    assert "auth.rhost is not text" in why[f"{path}:5"]
    assert "not UTF-8" in why[f"{path}:6"]
    assert "not JSON" in why[f"{path}:7"]  # a 5,000-digit integer
    assert "64-bit" in why[f"{path}:8"]
    assert "'proc' is not an object" in why[f"{path}:9"]
    assert "not JSON" in why[f"{path}:10"]  # NaN
    # The store takes the same lines the same way: the good ones stored, the others counted.
    store = EventStore(tmp_path / "events.db")
    rows = JsonLines([path])
    assert store.ingest(rows.rows()) == (1, 1)
    assert rows.bad == reader.bad and rows.bad_where == reader.bad_where
    store.close()
    # Screened for redaction a batch at a time, the lines are still reported in their order.
    screened = JsonLines([path], redactor=Redactor())
    assert len(list(screened.rows())) == 2
    assert screened.bad_where == reader.bad_where


def test_ingest_commits_batch_by_batch_and_stops_at_a_failed_one(tmp_path: Path) -> None:
    """Every batch before a failed one is stored, the failure is raised as a runtime failure
    naming the rows, and nothing after it is read."""
    rows = [event_row(o) for k, o in read_replay([EVENTS]) if k == "event"]
    read = 0

    def source() -> Iterator[tuple[str, tuple[object, ...]]]:
        nonlocal read
        for i in range(40):
            read += 1
            yield "event", rows[i % len(rows)] if i != 9 else (1, 2)  # the fifth batch of two fails
    store = EventStore(tmp_path / "events.db")
    with pytest.raises(RuntimeFailure, match="cannot store 2 rows"):
        store.ingest(source(), batch=2)
    assert store.count_events() == 8
    assert read == 10
    # The store goes on taking rows after the failure; a record stored before is not stored again.
    again = store.ingest(iter([("event", rows[0])] * 5), batch=2)
    assert again == (0, 0) and again.duplicate_events == 5
    assert store.count_events() == 8


def test_dashboard_counts_read_small_partial_indexes(tmp_path: Path) -> None:
    """Failed authentications, privileged commands and brute-force sources come from partial
    indexes holding only those events, so a frame does not grow with all the other events."""
    from datetime import UTC, datetime

    from secpolicy.auditlog import dashboard

    store = loaded(tmp_path)
    plans: list[str] = []
    execute = store.conn.execute

    class Spy:
        def execute(self, sql: str, args: tuple = ()) -> object:
            plans.append(" ".join(r[-1] for r in execute("EXPLAIN QUERY PLAN " + sql, args)))
            return execute(sql, args)

    store.conn = Spy()  # type: ignore[assignment]
    snap = dashboard.collect(store, None, datetime(2026, 11, 21, 12, tzinfo=UTC))
    assert (snap.failed_auth, snap.privileged_commands) == (2, 1), plans
    assert sum("COVERING INDEX events_failed_auth" in p for p in plans) == 2, plans
    assert sum("COVERING INDEX events_privileged" in p for p in plans) == 1
    assert not any("SCAN events" in p for p in plans)


def test_html_is_autoescaped(tmp_path: Path) -> None:
    evil = tmp_path / "evil.jsonl"
    evil.write_text(json.dumps({"type": "open", "ts": "2026-11-21T10:00:00Z", "user": {"name": "<script>x</script>"},
                                "file": {"path": "/tmp/<img src=x onerror=alert(1)>"}}) + "\n")
    html = render_html(build_timeline(TimelineQuery(), replay=read_replay([evil])))
    assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x" in html


def test_table_renders_all_rows(tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=200)
    for part in render_table(build_timeline(WINDOW, store=loaded(tmp_path))):
        console.print(part)
    text = console.export_text()
    assert "chain: admin: escalated to root" in text
    assert text.count("sudo -i") == 2  # session chain step and timeline row
