"""The event store holds each event and alert once: a record is known by a digest of its
content, so loading it again (the same file twice, overlapping files, the recording of a run
that stored its events) stores nothing; and retention is not fooled by times in the future."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from secpolicy.auditlog.store import EventStore, JsonLines, Retention, alert_row, event_row
from secpolicy.events.model import canonical_line

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "auditlog"
EVENTS = FIXTURES / "events.jsonl"
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def _lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _auditd_open(serial: int, pid: int = 4242) -> dict[str, Any]:
    """An open as the auditd reader builds it: milliseconds only, the record id in source."""
    return {"type": "open", "ts": "2026-11-21T10:00:00.123000000Z", "host": "h",
            "proc": {"pid": pid, "exe": "/usr/bin/cat", "uid": 0, "euid": 0},
            "file": {"path": "/etc/shadow", "flags": ["O_RDONLY"]},
            "source": {"name": "auditd", "probe": "openat", "records": [f"1795255200.123:{serial}"]}}


def test_the_same_file_ingested_twice_is_stored_once(tmp_path: Path) -> None:
    with EventStore(tmp_path / "e.db") as store:
        first = store.ingest(JsonLines([EVENTS]).rows())
        again = store.ingest(JsonLines([EVENTS, EVENTS]).rows(), batch=4)
        assert first == (10, 3) and (first.duplicate_events, first.duplicate_alerts) == (0, 0)
        assert again == (0, 0) and (again.duplicate_events, again.duplicate_alerts) == (20, 6)
        assert store.count_events() == 10 and len(list(store.alerts())) == 3


def test_overlapping_files_store_what_the_first_did_not(tmp_path: Path) -> None:
    """A rotated log and its successor share lines: those are stored once, the rest in full."""
    lines = EVENTS.read_text().splitlines()
    old = _lines(tmp_path / "events.jsonl.1", lines[:8])
    new = _lines(tmp_path / "events.jsonl", lines[5:])
    with EventStore(tmp_path / "e.db") as store:
        n_old = store.ingest(JsonLines([old]).rows())
        n_new = store.ingest(JsonLines([new]).rows())
        assert n_old[0] + n_old[1] == 8 and n_new[0] + n_new[1] == len(lines) - 8
        assert n_new.duplicate_events + n_new.duplicate_alerts == 3
        assert store.count_events() == 10 and len(list(store.alerts())) == 3


def test_a_record_is_the_same_however_its_line_is_spelled(tmp_path: Path) -> None:
    event = _auditd_open(7)
    spelled = json.dumps(dict(reversed(list(event.items()))), indent=None).replace("/", "\\/")
    with EventStore(tmp_path / "e.db") as store:
        assert store.ingest(JsonLines([_lines(tmp_path / "a.jsonl", [event, spelled])]).rows()) == (1, 0)


def test_events_that_differ_in_any_field_are_two_events(tmp_path: Path) -> None:
    """Two reads of one file by one process in the same millisecond differ only in the audit
    serial; a live event's nanoseconds or thread tell two events apart the same way."""
    live = {"type": "exec", "ts": "2026-11-21T10:00:00.000000001Z", "host": "h",
            "proc": {"pid": 7, "tid": 7, "exe": "/bin/true"}, "source": {"name": "ebpf", "probe": "execve"}}
    records = [_auditd_open(7), _auditd_open(8), _auditd_open(7, pid=4243), live,
               {**live, "ts": "2026-11-21T10:00:00.000000002Z"}, {**live, "proc": {**live["proc"], "tid": 8}},
               # Integers beyond 64 bits, which orjson would read as one float (1e20).
               {**live, "extra": 10**20}, {**live, "extra": 10**20 + 1}]
    with EventStore(tmp_path / "e.db") as store:
        stored = store.ingest(JsonLines([_lines(tmp_path / "a.jsonl", records)]).rows())
        assert stored == (len(records), 0) and stored.duplicate_events == 0
        assert store.count_events() == len(records)


def test_what_a_run_stored_is_not_stored_again_from_its_recording(tmp_path: Path) -> None:
    """`monitor --store` and `replay --store` store a row made from the event and its
    recording line; ingesting the recording (or the alert output) afterwards adds nothing."""
    items = list(JsonLines([EVENTS]))
    events = [o for k, o in items if k == "event"]
    alerts = [o for k, o in items if k == "alert"]
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"".join(canonical_line(e) for e in events))
    output = _lines(tmp_path / "alerts.jsonl", alerts)
    with EventStore(tmp_path / "e.db") as store:
        assert store.add_event_rows(event_row(e, canonical_line(e)[:-1].decode()) for e in events) == 10
        assert store.add_alerts(alerts) == 3
        again = store.ingest(JsonLines([recording, output]).rows())
        assert again == (0, 0) and (again.duplicate_events, again.duplicate_alerts) == (10, 3)
        assert store.add_events(events) == 0 and store.add_alerts(alerts) == 0
        assert store.count_events() == 10


def test_a_schema_1_store_is_converted_keeping_every_row(tmp_path: Path) -> None:
    """A store written before digests (with a record stored twice, the old defect): opened for
    writing it gains them, loses nothing, and takes no third copy; readers open it as it is."""
    db = tmp_path / "old.db"
    rows = [r[:-1] for k, r in JsonLines([EVENTS]).rows() if k == "event"]
    alert_rows = [alert_row(a)[:-1] for k, a in JsonLines([EVENTS]) if k == "alert"]
    with EventStore(tmp_path / "new.db") as new:
        ddl = [sql.replace(",\n    digest BLOB", "") for (sql,) in new.conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'events', 'alerts')")]
    con = sqlite3.connect(db)
    for sql in ddl:
        con.execute(sql)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.executemany(f"INSERT INTO events VALUES (NULL{', ?' * 13})", [*rows, rows[0]])
    con.executemany(f"INSERT INTO alerts VALUES (NULL{', ?' * 10})", alert_rows)
    con.commit()
    con.close()
    with EventStore(db, read_only=True) as reader:
        assert reader.count_events() == 11
    with EventStore(db, create=False) as store:
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
        assert store.count_events() == 11
        assert store.conn.execute("SELECT id FROM events WHERE digest IS NULL").fetchall() == [(11,)]
        again = store.ingest(JsonLines([EVENTS]).rows())
        assert again == (0, 0) and (again.duplicate_events, again.duplicate_alerts) == (10, 3)
    with EventStore(db, read_only=True) as reader:
        assert reader.count_events() == 11


def _dated(ts: str, n: int) -> dict[str, Any]:
    return {"type": "exec", "ts": ts, "host": "h", "proc": {"pid": n, "exe": "/bin/true"}}


def _store_with_forged_times(tmp_path: Path) -> EventStore:
    store = EventStore(tmp_path / "e.db")
    real = [_dated(f"2026-11-2{d}T10:00:00Z", d) for d in range(1, 6)]  # the 21st to the 25th
    forged = [_dated(f"2099-01-01T00:00:0{i}Z", 100 + i) for i in range(3)]
    store.add_events([real[0], *forged, *real[1:]])
    return store


def test_max_events_deletes_events_dated_in_the_future_first(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, 0, 0, 0, tzinfo=UTC)
    with _store_with_forged_times(tmp_path) as store:
        store.retention = Retention(days=None, max_events=6)
        pruned = store.prune(now)
        assert pruned == (2, 0) and pruned.future_events == 2
        assert [e["ts"][:4] for e in store.events()] == ["2026"] * 5 + ["2099"]
        assert store.events().__next__()["ts"].startswith("2026-11-21")
        store.retention = Retention(days=None, max_events=3)
        pruned = store.prune(now)
        assert pruned == (3, 0) and pruned.future_events == 1
        assert [e["ts"][:10] for e in store.events()] == ["2026-11-23", "2026-11-24", "2026-11-25"]


def test_days_count_from_when_an_event_dated_in_the_future_was_stored(tmp_path: Path) -> None:
    """An event dated 2099 is no younger than any other: it is kept for `days` after it was
    stored, then deleted like the rest. One a few hours ahead is a clock a little fast, and
    one whose time has come by the prune is aged by its time."""
    stored_at = datetime.now(UTC)  # the store notes when it stores (to the hour): the real clock
    with EventStore(tmp_path / "e.db") as store:
        real = [_dated((stored_at - timedelta(days=d)).isoformat(), d) for d in range(1, 6)]
        forged = [_dated(f"2099-01-01T00:00:0{i}Z", 100 + i) for i in range(3)]
        fast, ahead = (_dated((stored_at + timedelta(hours=h)).isoformat(), h) for h in (20, 240))
        store.add_events([*real, *forged, fast, ahead])
        store.retention = Retention(days=30)
        pruned = store.prune(stored_at)
        assert pruned == (0, 0) and pruned.future_events == 0
        pruned = store.prune(stored_at + timedelta(days=31, hours=1))
        assert pruned == (9, 0) and pruned.future_events == 3
        assert [e["proc"]["pid"] for e in store.events()] == [240]
