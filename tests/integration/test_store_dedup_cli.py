"""`store ingest` and `store prune` end to end: loading what the store holds already changes no
count the timeline and the dashboard show, and events dated in the future do not outlive
retention while real events are deleted. The store is checked with SQLite directly."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from auditlog_cli import run

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "fixtures" / "auditlog" / "events.jsonl"


def _counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as con:
        return (con.execute("SELECT COUNT(*) FROM events").fetchone()[0],
                con.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])


def _dashboard(db: Path) -> list[str]:
    """The figures under the dashboard's headline: events, alerts, critical, failed auth, ..."""
    code, out = run("dashboard", "--db", str(db), "--once", "--now", "2026-11-21T12:00:00Z", "--width", "140")
    assert code == 0, out
    return out.split("privileged cmds")[1].split("\n")[1].split()[1:-1]


def test_ingesting_a_file_again_or_an_overlapping_one_changes_no_count(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    code, out = run("store", "ingest", str(db), str(EVENTS))
    assert code == 0 and out.strip() == f"stored 10 events and 3 alerts in {db}", out
    figures = _dashboard(db)
    code, out = run("store", "ingest", str(db), str(EVENTS), str(EVENTS))
    assert code == 0 and out.strip() == (f"stored 0 events and 0 alerts in {db} "
                                         "(skipped 20 events and 6 alerts already stored)"), out
    # A rotated log and its successor: the lines they share are stored once.
    lines = EVENTS.read_text().splitlines()
    extra = json.dumps({"type": "exec", "ts": "2026-11-21T10:30:00.000000000Z", "host": "web1",
                        "proc": {"pid": 4321, "exe": "/usr/bin/id"}, "user": {"uid": 1000, "name": "admin"}})
    successor = tmp_path / "events.jsonl"
    successor.write_text("\n".join([*lines[-4:], extra]) + "\n")
    code, out = run("store", "ingest", str(db), str(successor))
    assert code == 0 and f"stored 1 events and 0 alerts in {db} (skipped " in out, out
    assert _counts(db) == (11, 3)
    after = _dashboard(db)
    assert after[1:] == figures[1:] and int(after[0]) == int(figures[0]) + 1
    code, out = run("timeline", "--db", str(db), "--format", "json")
    assert code == 0 and len(json.loads(out)["rows"]) == 11 + 3


def test_what_replay_stored_is_not_stored_again_from_its_files(tmp_path: Path) -> None:
    """`replay --store` stores the events and alerts; ingesting its input and its alert
    output into the same store afterwards adds nothing."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(line + "\n" for line in EVENTS.read_text().splitlines() if '"rule_id"' not in line))
    db, alerts = tmp_path / "events.db", tmp_path / "alerts.jsonl"
    done = subprocess.run([sys.executable, "-m", "secpolicy", "replay", str(events), "--store", str(db),
                           "-o", str(alerts)], check=False, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    stored = _counts(db)
    assert stored[0] == 10 and stored[1] == len(alerts.read_text().splitlines()) > 0
    code, out = run("store", "ingest", str(db), str(events), str(alerts))
    assert code == 0 and out.strip() == (f"stored 0 events and 0 alerts in {db} (skipped 10 events and "
                                         f"{stored[1]} alerts already stored)"), out
    assert _counts(db) == stored


def _ev(ts: str, pid: int) -> dict[str, Any]:
    return {"type": "exec", "ts": ts, "host": "h", "proc": {"pid": pid, "exe": "/bin/true"}}


def test_events_dated_in_2099_do_not_outlive_the_real_ones(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    src = tmp_path / "e.jsonl"
    real = [_ev(f"2026-11-21T10:0{i}:00Z", i) for i in range(5)]
    forged = [_ev(f"2099-01-01T00:00:0{i}Z", 100 + i) for i in range(3)]
    src.write_text("".join(json.dumps(e) + "\n" for e in [*forged, *real]))
    assert run("store", "ingest", str(db), str(src))[0] == 0
    code, out = run("store", "prune", str(db), "--max-events", "4")
    assert code == 0 and out.strip() == "deleted 4 events and 0 alerts (3 events and 0 alerts of them dated " \
                                        "more than a day after now)", out
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT ts FROM events ORDER BY ts").fetchall() == [
            (f"2026-11-21T10:0{i}:00.000000000Z",) for i in range(1, 5)]
    # Stored just now, forged events are kept by --days as long as real ones stored with them.
    assert run("store", "ingest", str(db), str(src))[0] == 0
    code, out = run("store", "prune", str(db), "--days", "36500")
    assert code == 0 and out.strip() == "deleted 0 events and 0 alerts", out
    assert _counts(db) == (8, 0)


def test_a_second_replay_into_the_same_store_says_its_records_were_there(tmp_path: Path) -> None:
    """The run's summary counts what the store held already, so a second `replay --store` of
    the same file does not read as a run that stored nothing for no reason."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(line + "\n" for line in EVENTS.read_text().splitlines() if '"rule_id"' not in line))
    db = tmp_path / "events.db"
    summaries = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "secpolicy", "replay", str(events), "--store", str(db),
                               "-o", str(tmp_path / "alerts.jsonl")], check=False, capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        summaries.append(done.stderr)
    stored = _counts(db)
    assert f"{stored[0]} events and {stored[1]} alerts stored" in summaries[0]
    assert "already in the store" not in summaries[0]
    assert "0 events and 0 alerts stored" in summaries[1]
    assert f"{stored[0] + stored[1]} events and alerts already in the store (not stored again)" in summaries[1]
