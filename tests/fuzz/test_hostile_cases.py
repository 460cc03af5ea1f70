"""Hostile inputs the fuzz suite once found breaking the store and timeline, the JSON-lines
replay, report and diff: each kept as one exact case, so none comes back."""

from __future__ import annotations

import json
import os
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


PROBE = 'metadata: {id: probe, title: Probe, version: "1"}\n'
PROBE_RULES = (
    "vars:\n  fv: {type: float, default: 2.0, min: 1.0, max: 10.0, description: d}\n"
    "rules:\n  - {id: r1, title: R, severity: low, check: 'fv > 1.0'}\n"
)


def expect_located(out, f: Path, message: str) -> None:
    check(out, located=[f])
    assert out.code == 2 and message in out.stderr.splitlines()[0], out.describe()


@pytest.mark.parametrize("body, where", [
    ("vars: {5: 3}\n", "2:8: key 5 is read as a number, not a name"),
    ("vars: {true: 3}\n", "2:8: key true is read as a boolean, not a name"),
    ("rules: {null: {enabled: false, reason: x}}\n", "2:9: key null is read as null, not a name"),
])
@pytest.mark.parametrize("command", ["lint", "scan"])
def test_non_string_keys_in_a_tailoring_file(tmp_path, body, where, command):
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES).encode())
    t = write(tmp_path, "t.yaml", b"metadata: {id: t, title: T}\n" + body.encode())
    args = ("lint", p) if command == "lint" else ("scan", "--root", tmp_path, "-p", p)
    expect_located(run(*args, "--tailoring", t), t, f"{t}:{where}")


def test_non_string_keys_in_a_policy_and_a_waiver_file(tmp_path):
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES.replace("check:", "references: {5: [a]}, check:")).encode())
    expect_located(run("lint", p), p, f"{p}:5:52: key 5 is read as a number, not a name")
    expect_located(run("scan", "--root", tmp_path, "-p", p, "--standard", "5"), p, f"{p}:5:52: key 5")
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES).encode())
    w = write(tmp_path, "w.yaml", b"- {rule_id: r1, justification: j, 1.5: x}\n")
    expect_located(run("lint", p, "--waivers", w), w, f"{w}:1:35: key 1.5 is read as a number")
    w = write(tmp_path, "w.yaml", b"- {rule_id: r1, justification: j, ? [a]: x}\n")
    expect_located(run("lint", p, "--waivers", w), w, f"{w}:1:37: a key is a list, not a name")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("command", ["lint", "scan"])
def test_a_tailored_float_var_must_be_finite(tmp_path, value, command):
    # NaN compares false with everything: it passed min/max and then made `fv > 1.0` checks pass.
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES).encode())
    t = write(tmp_path, "t.yaml", f"metadata: {{id: t, title: T}}\nvars: {{fv: {value}}}\n".encode())
    args = ("lint", p) if command == "lint" else ("scan", "--root", tmp_path, "-p", p)
    shown = value.lstrip(".").replace("-.", "-")
    expect_located(run(*args, "--tailoring", t), t, f"{t}:2:12: fv: expected a finite number, got {shown}")


def nothing_checked(out, message: str) -> None:
    check(out)
    assert out.code == 2 and message in out.stderr, out.describe()


@pytest.mark.parametrize("command", ["lint", "test", "scan"])
@pytest.mark.parametrize("contents", ["empty", "no policy files"])
def test_a_directory_without_policy_files_is_an_error(tmp_path, command, contents):
    d = tmp_path / "d"
    d.mkdir()
    if contents != "empty":
        for name in ("x.YAML", ".hidden.yaml", "notes.txt"):
            (d / name).write_text(PROBE + PROBE_RULES)
        (d / "loop").symlink_to(".")
    args = ("scan", "--root", tmp_path, "-p", d) if command == "scan" else (command, d)
    nothing_checked(run(*args), f"{d}: no policy files in this directory")


def test_test_with_an_unknown_rule_is_an_error(tmp_path):
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES).encode())
    nothing_checked(run("test", p, "--rule", "nope"), "unknown rule id 'nope' (known: r1)")


@pytest.mark.parametrize("option", ["--profile", "--standard", "--rule"])
def test_an_empty_scan_filter_is_an_error(tmp_path, option):
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES).encode())
    out = run("scan", "--root", tmp_path, "-p", p, option, "")
    nothing_checked(out, f"{option} is empty")


def test_filters_that_select_no_rule_together_are_an_error(tmp_path):
    out = run("scan", "--root", tmp_path, "--standard", "hipaa", "--rule", "cis-1.1.1.1-cramfs-module-disabled")
    nothing_checked(out, "no check rule is selected by these filters together "
                         "(--standard hipaa, --rule cis-1.1.1.1-cramfs-module-disabled)")
    nothing_checked(run("scan", "--root", tmp_path, "-p", EVENTS_POLICY), "the policies hold no enabled check rule")


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
@pytest.mark.parametrize("command", ["lint", "explain", "waivers", "tailoring"])
def test_a_policy_input_that_is_not_a_regular_file_is_refused_unread(tmp_path, kind, command):
    # A FIFO with no writer made `lint` and `explain -p` wait for ever.
    import socket

    f = tmp_path / "x.yaml"
    if kind == "fifo":
        os.mkfifo(f)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(f))
        s.close()
    else:
        f = Path("/dev/null")
    p = write(tmp_path, "p.yaml", (PROBE + PROBE_RULES).encode())
    args = {"lint": ("lint", f), "explain": ("explain", "-p", f, "r1"),
            "waivers": ("lint", p, "--waivers", f), "tailoring": ("lint", p, "--tailoring", f)}[command]
    out = run(*args)
    check(out, located=[f], position=False)
    what = {"fifo": "a FIFO", "socket": "a socket", "device": "a device"}[kind]
    assert out.code == 2 and f"{f}: not a regular file ({what})" in out.stderr, out.describe()
