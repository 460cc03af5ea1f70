"""Hostile inputs the fuzz suite once found breaking the store and timeline, the JSON-lines
replay, report and diff: each kept as one exact case, so none comes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzz_helpers import check, run

RESULTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports" / "web1_results.json"
EVENTS_POLICY = Path(__file__).resolve().parents[2] / "policies" / "pci-dss" / "events.yaml"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("command", ["store", "timeline"])
def test_invalid_utf8_line(tmp_path, command):
    f = write(tmp_path, "e.jsonl", b'{"type": "exec", "ts": "2024-01-01T00:00:00.000000000Z"}\n\x80\n')
    args = ("store", "ingest", tmp_path / "s.db", f) if command == "store" else ("timeline", "--replay", f)
    check(run(*args), located=[f])


def test_infinite_timestamp(tmp_path):
    f = write(tmp_path, "e.jsonl", b'{"type": "exec", "ts": 1e999}\n')
    check(run("store", "ingest", tmp_path / "s.db", f), located=[f])


def test_impossible_date_is_refused_by_the_store(tmp_path):
    f = write(tmp_path, "e.jsonl", b'{"type": "exec", "ts": "2024-02-30T00:00:00.000000000Z"}\n')
    out = run("store", "ingest", tmp_path / "s.db", f)
    check(out, located=[f])
    assert "skipped" in out.stderr and "no such day" in out.stderr, out.describe()


def test_bad_event_type_is_a_counted_located_line(tmp_path):
    f = write(tmp_path, "e.jsonl", b'{"type": 5, "ts": "2024-01-01T00:00:00.000000000Z"}\n')
    check(run("store", "ingest", tmp_path / "s.db", f), located=[f])


def test_replay_impossible_date(tmp_path):
    f = write(tmp_path, "e.jsonl", b'{"type": "exec", "ts": "2024-02-30T00:00:00.000000000Z"}\n')
    check(run("replay", "--input-format", "jsonl", "--policy", EVENTS_POLICY, f), located=[f])


@pytest.mark.parametrize("command", ["report", "diff"])
def test_deeply_nested_results(tmp_path, command):
    f = write(tmp_path, "r.json", b"[" * 5000 + b"]" * 5000)
    args = ("report", f, "-f", "json") if command == "report" else ("diff", RESULTS, f)
    check(run(*args), located=[f], position=False)


@pytest.mark.parametrize("command", ["report", "diff"])
def test_huge_integer_in_results(tmp_path, command):
    doc = json.loads(RESULTS.read_text())
    text = json.dumps(doc).replace('"schema_version": "1.0"', '"schema_version": "1.0", "n": ' + "9" * 5000, 1)
    f = write(tmp_path, "r.json", text.encode())
    args = ("report", f, "-f", "json") if command == "report" else ("diff", RESULTS, f)
    check(run(*args), located=[f], position=False)


@pytest.mark.parametrize("command", ["store", "timeline"])
def test_object_field_as_a_string(tmp_path, command):
    f = write(tmp_path, "e.jsonl", b'{"type": "exec", "ts": "2024-01-01T00:00:00.000000000Z", "user": "x"}\n')
    args = ("store", "ingest", tmp_path / "s.db", f) if command == "store" else ("timeline", "--replay", f)
    check(run(*args), located=[f])


def test_rhost_as_an_object(tmp_path):
    f = write(tmp_path, "e.jsonl", b'{"type": "auth", "ts": "2024-01-01T00:00:00.000000000Z", "auth": {"rhost": {"a": 1}}}\n')
    check(run("store", "ingest", tmp_path / "s.db", f), located=[f])
