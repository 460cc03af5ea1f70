"""Probes of `timeline`, `store ingest|export|prune`, `anomaly` and `dashboard`, each answer
checked against a reference outside the code under test: SQLite queried directly, counts and
sorts done by hand here, and what `date -d` says of a time (noted beside each case)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from auditlog_cli import run

from secpolicy.auditlog.store import EventStore


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _ev(ts: str, name: str, kind: str = "exec", **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "type": kind, "host": "h", "user": {"name": name, "uid": 1000}, **extra}


def _sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(query).fetchall()


def _ingest(db: Path, src: Path) -> str:
    code, out = run("store", "ingest", str(db), str(src))
    assert code == 0, out
    return out


def _rows(out: str) -> list[dict[str, Any]]:
    """The rows of a JSON timeline (stderr may follow it in `out`)."""
    return list(json.JSONDecoder().raw_decode(out[out.index("{"):])[0]["rows"])


# -- times ---------------------------------------------------------------------------------


def test_times_before_the_year_1000_are_stored_and_compared_in_one_form(tmp_path: Path) -> None:
    # strftime's %Y wrote the year 999 as "999", which sorts after "2026" as text.
    src = _jsonl(tmp_path / "e.jsonl", [
        _ev("0999-06-01T00:00:00+00:00", "old"),
        _ev("0999-06-01T00:00:01.000000000Z", "old2"),
        _ev("2026-03-29T00:30:00Z", "new"),
        _ev("2026-03-29T00:31:00Z", "new2"),
    ])
    db = tmp_path / "e.db"
    _ingest(db, src)
    assert _sql(db, "SELECT ts FROM events ORDER BY ts") == [
        ("0999-06-01T00:00:00.000000000Z",), ("0999-06-01T00:00:01.000000000Z",),
        ("2026-03-29T00:30:00.000000000Z",), ("2026-03-29T00:31:00.000000000Z",)]
    code, out = run("timeline", "--db", str(db), "--until", "2000-01-01T00:00:00Z", "--format", "json")
    assert code == 0 and [r["user"] for r in _rows(out)] == ["old", "old2"]
    code, out = run("store", "prune", str(db), "--max-events", "2")
    assert code == 0 and "deleted 2 events" in out
    assert _sql(db, "SELECT user FROM events ORDER BY ts") == [("new",), ("new2",)]


def test_a_baseline_of_events_before_the_year_1000_names_its_span_in_the_stored_form(tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "e.jsonl", [_ev("0999-06-01T00:00:30Z", "old")])
    code, out = run("anomaly", "learn", "--replay", str(src), "--out", str(tmp_path / "b.json"))
    assert code == 0, out
    data = json.loads((tmp_path / "b.json").read_text())
    assert (data["start"], data["end"]) == ("0999-06-01T00:00:00.000000000Z", "0999-06-01T00:01:00.000000000Z")


@pytest.mark.parametrize("when", [
    "0001-01-01T00:00:00+01:00",  # date -d: 0000-12-31T23:00:00Z, before the year 1
    "9999-12-31T23:59:59-01:00",  # after the year 9999 in UTC
])
def test_a_time_outside_the_years_1_to_9999_in_utc_is_invalid_input(tmp_path: Path, when: str) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a")]))
    for args in (["timeline", "--db", str(db), "--since", when], ["store", "export", str(db), "--until", when]):
        code, out = run(*args)
        assert code == 2 and "outside the years 1 to 9999" in out, (args, out)


@pytest.mark.parametrize("when", [
    "2026-03-29T01:00:00.Z",  # date -d: invalid date
    "2026-03-29T01:00:00.5,3Z",  # date -d: invalid date; we read it as .5
    "2026-03-29T01:00:00.5.3Z",
    "2026-03-29T01:00:00+02:00:30",  # date -d: invalid date; we took 30 s off
])
def test_a_malformed_fraction_or_offset_is_invalid_input_not_a_window(tmp_path: Path, when: str) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a")]))
    code, out = run("timeline", "--db", str(db), "--since", when, "--format", "json")
    assert code == 2 and repr(when) in out, out


def test_a_bare_date_is_refused_with_what_a_time_needs(tmp_path: Path) -> None:
    # date -d takes 2026-03-29 as local midnight; we take no time zone on trust.
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a")]))
    code, out = run("timeline", "--db", str(db), "--since", "2026-03-29", "--format", "json")
    assert code == 2 and "'2026-03-29' is not an ISO 8601 timestamp (a date, a time of day and a time zone" in out


def test_offsets_and_comma_fractions_mean_what_date_says(tmp_path: Path) -> None:
    # date -u -d '2026-03-29T01:00:00.25+02:00' -> 2026-03-28T23:00:00.250000000Z
    src = _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-28T23:00:00.249999999Z", "before"),
                                        _ev("2026-03-28T23:00:00.25Z", "at"),
                                        _ev("2026-03-29T01:00:00.25Z", "later")])
    db = tmp_path / "e.db"
    _ingest(db, src)
    for since in ("2026-03-29T01:00:00.25+02:00", "2026-03-29T01:00:00,25+02:00"):
        code, out = run("timeline", "--db", str(db), "--since", since, "--until", "2026-03-29T01:00:00.25Z",
                        "--format", "json")
        assert code == 0 and [r["user"] for r in _rows(out)] == ["at"], (since, out)


def test_the_dashboard_on_the_first_day_there_is_shows_a_window_from_its_start(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("0001-01-01T00:00:01Z", "first")]))
    code, out = run("dashboard", "--db", str(db), "--once", "--width", "120", "--now", "0001-01-01T05:00:00+01:00")
    assert code == 0 and "0001-01-01T00:00:00Z .. 0001-01-01T04:00:00Z" in out, out


# -- ingest --------------------------------------------------------------------------------


def test_capabilities_of_any_shape_are_stored_not_a_crash(tmp_path: Path) -> None:
    lines = [
        _ev("2026-03-29T00:30:00Z", "a", "capset", cred={"caps": ["cap_net_raw", "cap_sys_admin"]}),
        _ev("2026-03-29T00:30:01Z", "b", "capset", cred={"caps": 5}),
        _ev("2026-03-29T00:30:02Z", "c", "capset", cred={"caps": [1, 2]}),
        '{"ts":"2026-03-29T00:30:03Z","type":"exec","user":{"name":"tr',  # truncated last line
    ]
    src = _jsonl(tmp_path / "e.jsonl", lines)
    db = tmp_path / "e.db"
    out = _ingest(db, src)
    assert "stored 3 events" in out and f"{src}:4: not JSON" in out, out
    assert _sql(db, "SELECT user, resource FROM events ORDER BY ts") == [
        ("a", "cap_net_raw,cap_sys_admin"), ("b", "5"), ("c", "1,2")]


def test_an_integer_beyond_64_bits_in_a_redacted_record_is_stored_as_written(tmp_path: Path) -> None:
    big = "123456789012345678901234567890"
    src = tmp_path / "e.jsonl"
    src.write_text(f'{{"ts":"2026-03-29T00:30:00Z","type":"exec","user":{{"name":"a"}},"extra":{big},'
                   f'"proc":{{"cmdline":"mysql password=hunter2"}}}}\n')
    db = tmp_path / "e.db"
    _ingest(db, src)
    [(text,)] = _sql(db, "SELECT json FROM events")
    assert "hunter2" not in text and f'"extra":{big},' in text, text  # not 1.2345678901234568e+29


def _deep_alert(depth: int) -> str:
    return ('{"rule_id":"r","ts":"2026-03-29T00:30:00Z","severity":"high","x":' + "[" * depth + "]" * depth + "}")


def test_nesting_the_readers_cannot_read_is_a_located_bad_line_at_ingest(tmp_path: Path) -> None:
    # 1000 levels: orjson (ingest) reads up to 1024, Python's decoder (the readers) fails first.
    src = _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:29:00Z", "a"), _deep_alert(1000)])
    db = tmp_path / "e.db"
    out = _ingest(db, src)
    assert "stored 1 events and 0 alerts" in out and f"{src}:2: JSON nested more than 256 deep" in out, out
    code, out = run("timeline", "--db", str(db), "--format", "json")
    assert code == 0 and [r["user"] for r in _rows(out)] == ["a"], out


def test_a_store_holding_nesting_its_readers_cannot_read_is_invalid_input(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    EventStore(db).close()
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO alerts (ts, rule_id, severity, json) VALUES (?, ?, ?, ?)",
                    ("2026-03-29T00:30:00.000000000Z", "r", "high", _deep_alert(1000)))
    for args in (["timeline", "--db", str(db)],
                 ["dashboard", "--db", str(db), "--once", "--now", "2026-03-29T01:00:00Z"]):
        code, out = run(*args)
        assert code == 2 and f"{db}: the event store holds a record nested more than 256 deep" in out, out


_BAD_ALERTS: list[tuple[dict[str, Any], str]] = [
    ({"events": "abc"}, "alert field 'events' is not a list"),
    ({"events": [1, 2]}, "alert events[0] is not a JSON object"),
    ({"events": [{"ts": "bad", "type": "exec"}]}, "time 'bad' is not an ISO 8601 timestamp"),
    ({"events": [{"ts": "2026-03-29T00:30:00Z", "type": "exec", "proc": [1]}]},
     "alert events[0] field 'proc' is not an object"),
    ({"event": {"ts": "yesterday", "type": "exec"}}, "time 'yesterday' is not an ISO 8601 timestamp"),
]


def test_an_alert_whose_events_are_not_events_is_a_located_bad_line(tmp_path: Path) -> None:
    good = _ev("2026-03-29T00:29:00Z", "a")
    alerts = [{"rule_id": f"seq{i}", "ts": "2026-03-29T00:30:00Z", "severity": "high",
               "context": {"kind": "sequence"}, **extra} for i, (extra, _) in enumerate(_BAD_ALERTS)]
    src = _jsonl(tmp_path / "e.jsonl", [good, *alerts])
    db = tmp_path / "e.db"
    out = _ingest(db, src)
    assert "stored 1 events and 0 alerts" in out, out
    for n, (_, why) in enumerate(_BAD_ALERTS, 2):
        assert f"{src}:{n}: {why}" in out, (n, out)
    code, out = run("timeline", "--replay", str(src), "--format", "json")
    assert code == 0 and [r["user"] for r in _rows(out)] == ["a"], out
    assert f"{len(_BAD_ALERTS)} malformed input line(s) skipped" in out


def test_a_store_holding_a_malformed_alert_is_invalid_input_for_its_readers(tmp_path: Path) -> None:
    # A store written before ingest checked an alert's events (or by another tool).
    db = tmp_path / "e.db"
    EventStore(db).close()
    alert = {"rule_id": "seq", "ts": "2026-03-29T00:30:00Z", "severity": "high", "context": {"kind": "sequence"},
             "events": [1, 2]}
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO alerts (ts, rule_id, severity, kind, json) VALUES (?, ?, ?, ?, ?)",
                    ("2026-03-29T00:30:00.000000000Z", "seq", "high", "sequence", json.dumps(alert)))
    for args in (["timeline", "--db", str(db)],
                 ["dashboard", "--db", str(db), "--once", "--now", "2026-03-29T01:00:00Z"],
                 ["store", "export", str(db), "-o", str(tmp_path / "out.jsonl")]):
        code, out = run(*args)
        assert code == 2 and "holds a malformed alert (seq" in out and "events[0] is not a JSON object" in out, out
    assert not (tmp_path / "out.jsonl").exists()


def test_the_person_behind_an_event_is_the_login_uid_when_it_has_no_name(tmp_path: Path) -> None:
    # A live event after sudo: login uid 1000 (no name to be had), acting as root.
    proc = {"pid": 3, "uid": 1000, "euid": 0, "comm": "sudo", "exe": "/usr/bin/sudo", "session": 7}
    src = _jsonl(tmp_path / "e.jsonl", [
        {"ts": "2026-03-29T03:00:00Z", "type": "exec", "host": "h", "login": {"uid": 1000, "session": 7},
         "user": {"uid": 0, "name": "root"}, "proc": proc},
        {"ts": "2026-03-29T03:00:01Z", "type": "exec", "host": "h", "login": {"uid": 4294967295},
         "user": {"uid": 0, "name": "root"}, "proc": {"pid": 4, "comm": "cron"}},
    ])
    db = tmp_path / "e.db"
    _ingest(db, src)
    assert _sql(db, "SELECT user FROM events ORDER BY ts") == [("uid:1000",), ("root",)]
    code, out = run("timeline", "--db", str(db), "--user", "uid:1000", "--format", "json")
    assert code == 0 and [(r["user"], r["pid"]) for r in _rows(out)] == [("uid:1000 as root", 3)], out


# -- prune ---------------------------------------------------------------------------------


@pytest.mark.parametrize("days", ["1e10", "800000"])
def test_prune_by_more_days_than_there_are_deletes_nothing(tmp_path: Path, days: str) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a"), _ev("1990-01-01T00:00:00Z", "b")]))
    code, out = run("store", "prune", str(db), "--days", days)
    assert code == 0 and "deleted 0 events and 0 alerts" in out, out
    assert _sql(db, "SELECT COUNT(*) FROM events") == [(2,)]


@pytest.mark.parametrize("days", ["nan", "inf"])
def test_prune_by_days_that_are_no_number_is_invalid_input(tmp_path: Path, days: str) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a")]))
    code, out = run("store", "prune", str(db), "--days", days)
    assert code == 2 and f"retention days {days}" in out, out
    assert _sql(db, "SELECT COUNT(*) FROM events") == [(1,)]


def test_prune_of_a_store_another_writer_holds_is_a_clear_failure_that_deletes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2000-01-01T00:00:00Z", "old"), _ev("2026-03-29T00:30:00Z", "a")]))
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held until prune has given up (5 s)
        code, out = run("store", "prune", str(db), "--days", "1", "--max-events", "1")
    finally:
        holder.close()
    assert code == 3 and f"{db}: cannot apply retention: database is locked" in out, out
    assert _sql(db, "SELECT COUNT(*) FROM events") == [(2,)]


# -- export --------------------------------------------------------------------------------


def test_export_of_a_bad_or_empty_window_is_invalid_input_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    _ingest(db, _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a"), _ev("2026-03-29T03:00:00Z", "b")]))
    out_file = tmp_path / "out.jsonl"
    code, out = run("store", "export", str(db), "--since", "garbage", "-o", str(out_file))
    assert code == 2 and "'garbage' is not an ISO 8601 timestamp" in out and not out_file.exists(), out
    code, out = run("store", "export", str(db), "--since", "2026-03-29T02:00:00Z", "--until", "2026-03-29T01:00:00Z")
    assert code == 2 and "is not before --until" in out, out
    code, out = run("store", "export", str(db), "--since", "2026-03-29T01:00:00+00:00", "-o", str(out_file))
    assert code == 0 and "1 OCSF events written" in out, out
    # 2026-03-29T03:00:00Z is 1774753200 s after the epoch (date -u -d ... +%s)
    assert [json.loads(line)["time"] for line in out_file.read_text().splitlines()] == [1774753200000]


# -- anomaly -------------------------------------------------------------------------------


_GOOD_BASELINE: dict[str, Any] = {
    "version": 1, "interval": 60, "buckets": 2, "start": "2026-03-29T00:00:00.000000000Z",
    "end": "2026-03-29T00:02:00.000000000Z",
    "types": {"exec": {"mean": 1.0, "std": 0.0, "max": 1, "total": 2, "by_hour": {}}},
}


@pytest.mark.parametrize(("path", "value", "why"), [
    (("types", "exec", "mean"), "NaN", "types.exec.mean nan"),
    (("types", "exec", "mean"), "Infinity", "types.exec.mean inf"),
    (("types", "exec", "mean"), -1, "types.exec.mean -1"),
    (("types", "exec", "mean"), "nan", "types.exec.mean 'nan'"),
    (("types", "exec", "std"), "NaN", "types.exec.std nan"),
    (("types", "exec", "max"), -5, "types.exec.max -5"),
    (("types", "exec", "by_hour"), {"0": -1}, "types.exec.by_hour.0 -1"),
    (("types", "exec", "by_hour"), {"99": 1}, "types.exec.by_hour: '99' is not an hour"),
    (("interval",), 0, "interval 0"),
    (("interval",), -60, "interval -60"),
    (("interval",), 1.5, "interval 1.5"),
    (("interval",), True, "interval True"),
    (("buckets",), -1, "buckets -1"),
    (("version",), True, "version True"),
])
def test_an_edited_baseline_is_invalid_input_not_silence(tmp_path: Path, path: tuple[str, ...], value: Any,
                                                         why: str) -> None:
    data = json.loads(json.dumps(_GOOD_BASELINE))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "@@" if value in ("NaN", "Infinity") else value
    text = json.dumps(data).replace('"@@"', str(value))  # json.loads reads NaN and Infinity
    baseline = tmp_path / "b.json"
    baseline.write_text(text)
    # Ten execs in one minute against a baseline of one: an anomaly for any sane baseline.
    src = _jsonl(tmp_path / "e.jsonl", [_ev(f"2026-03-29T00:05:{s:02d}Z", "a") for s in range(10)])
    code, out = run("anomaly", "detect", "--replay", str(src), "--baseline", str(baseline))
    assert code == 2 and f"{baseline}: baseline is malformed: {why}" in out, out


def test_a_baseline_learned_over_a_window_counts_the_quiet_intervals_of_that_window(tmp_path: Path) -> None:
    # One exec at 00:30 in the hour 00:00-01:00: 1 event over 60 one-minute intervals (by hand).
    src = _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:30:00Z", "a"), _ev("2026-03-29T02:00:00Z", "late")])
    baseline = tmp_path / "b.json"
    code, out = run("anomaly", "learn", "--replay", str(src), "--since", "2026-03-29T00:00:00Z",
                    "--until", "2026-03-29T01:00:00Z", "--out", str(baseline))
    assert code == 0, out
    data = json.loads(baseline.read_text())
    assert (data["buckets"], data["start"], data["end"]) == (
        60, "2026-03-29T00:00:00.000000000Z", "2026-03-29T01:00:00.000000000Z")
    assert data["types"]["exec"]["total"] == 1 and data["types"]["exec"]["mean"] == pytest.approx(1 / 60)


def test_the_unedited_baseline_detects_the_rate(tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps(_GOOD_BASELINE))
    src = _jsonl(tmp_path / "e.jsonl", [_ev(f"2026-03-29T00:05:{s:02d}Z", "a") for s in range(10)])
    code, out = run("anomaly", "detect", "--replay", str(src), "--baseline", str(baseline))
    assert code == 1 and [json.loads(line)["rule_id"] for line in out.splitlines() if line.startswith("{")] == [
        "anomaly.rate"], out


def test_a_baseline_that_is_not_utf8_is_invalid_input(tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_bytes(b"\xff{}")
    src = _jsonl(tmp_path / "e.jsonl", [_ev("2026-03-29T00:05:00Z", "a")])
    code, out = run("anomaly", "detect", "--replay", str(src), "--baseline", str(baseline))
    assert code == 2 and "baseline is not UTF-8 (byte 1)" in out, out


# -- timeline chains -----------------------------------------------------------------------


def _session_event(ts: str, kind: str, **extra: Any) -> dict[str, Any]:
    proc = {"pid": 6, "uid": 1000, "euid": 0, "comm": "sudo", "exe": "/usr/bin/sudo", "session": 7} if kind == "exec" \
        else {"pid": 5, "uid": 1000, "euid": 1000, "comm": "cat", "session": 7}
    return {"ts": ts, "type": kind, "host": "h", "user": {"name": "admin", "uid": 1000}, "proc": proc, **extra}


@pytest.mark.parametrize(("read_at", "sudo_at", "chained"), [
    # 03:30+02:00 is 01:30Z: the read came before sudo (date -u -d), though its text sorts after.
    ("2026-03-29T03:30:00+02:00", "2026-03-29T02:00:00Z", False),
    # 03:00+02:00 is 01:00Z: sudo came first, though its text sorts after the read's.
    ("2026-03-29T02:00:00Z", "2026-03-29T03:00:00+02:00", True),
])
def test_a_session_chain_follows_the_order_of_the_times_not_of_their_text(tmp_path: Path, read_at: str,
                                                                         sudo_at: str, chained: bool) -> None:
    src = _jsonl(tmp_path / "e.jsonl", [_session_event(read_at, "open", file={"path": "/etc/shadow"}),
                                        _session_event(sudo_at, "exec")])
    db = tmp_path / "e.db"
    _ingest(db, src)
    want = ["admin: escalated to root, read a sensitive file"] if chained else []
    for source in (["--replay", str(src)], ["--db", str(db)]):
        code, out = run("timeline", *source, "--format", "json")
        timeline = json.JSONDecoder().raw_decode(out[out.index("{"):])[0]
        assert code == 0 and [c["title"] for c in timeline["chains"]] == want, (source, out)
