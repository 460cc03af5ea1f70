"""Fuzz the JSON-lines and auditd readers through `replay`, `store ingest` and
`timeline --replay`: a hostile line is counted and located, it never ends the run."""

from __future__ import annotations

from pathlib import Path

from fuzz_helpers import FUZZ, check, fresh, run, snapshot
from hypothesis import given
from hypothesis import strategies as st
from strategies import audit_logs, event_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AUDIT_LINES = (FIXTURES / "events" / "workload-debian12.log").read_bytes().splitlines()
EVENTS_POLICY = Path(__file__).resolve().parents[2] / "policies" / "pci-dss" / "events.yaml"


@FUZZ
@given(lines=st.lists(event_lines(), min_size=1, max_size=8))
def test_replay_any_jsonl(tmp_path_factory, lines):
    work = fresh(tmp_path_factory.getbasetemp(), "jsonl-")
    f = work / "events.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    before = snapshot(work)
    check(run("replay", "--input-format", "jsonl", "--policy", EVENTS_POLICY, f), located=[f])
    assert snapshot(work) == before


@FUZZ
@given(lines=st.lists(event_lines(), min_size=1, max_size=8))
def test_store_ingest_and_timeline_any_jsonl(tmp_path_factory, lines):
    work = fresh(tmp_path_factory.getbasetemp(), "store-")
    f = work / "events.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    db = work / "store.db"
    before = snapshot(work)
    check(run("store", "ingest", db, f), located=[f])
    check(run("timeline", "--replay", f, "--format", "json"), located=[f])
    after = {k: v for k, v in snapshot(work).items() if not k.startswith("store.db")}
    assert after == before  # only the named store (and its journal) was written


@FUZZ
@given(log=audit_logs(AUDIT_LINES))
def test_replay_any_auditd_log(tmp_path_factory, log):
    work = fresh(tmp_path_factory.getbasetemp(), "auditd-")
    f = work / "audit.log"
    f.write_bytes(log)
    before = snapshot(work)
    check(run("replay", "--input-format", "auditd", "--policy", EVENTS_POLICY, f), located=[f])
    assert snapshot(work) == before
