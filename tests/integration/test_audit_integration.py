"""The audit trail, the event store and the alert sinks wired to the commands that produce
records: replay, fim check/update and the live monitor, run through the real CLI, checked with
`secpolicy log verify`, a real SQLite store, files and loopback syslog receivers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secpolicy.fim import display_path

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = REPO / "tests" / "fixtures" / "events" / "workload-debian12.log"
EXPECTED = REPO / "tests" / "fixtures" / "events" / "workload-debian12.expected.jsonl"
PCI_EVENTS = REPO / "policies" / "pci-dss" / "events.yaml"
SECPOLICY = [sys.executable, "-m", "secpolicy"]

_spec = importlib.util.spec_from_file_location("fimtree", REPO / "tests" / "fixtures" / "fim" / "fimtree.py")
assert _spec and _spec.loader
fimtree = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fimtree)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          check=False)


def new_log(tmp: Path, name: str = "log") -> tuple[Path, Path]:
    logdir, key = tmp / name, tmp / f"{name}.key"
    p = cli("log", "init", str(logdir), "--key-out", str(key))
    assert p.returncode == 0, p.stderr
    return logdir, key


def verified_records(logdir: Path, key: Path) -> list[dict[str, Any]]:
    """The log's records, after `secpolicy log verify` says the log is intact and sealed."""
    v = cli("log", "verify", str(logdir), "--key-file", str(key), "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)["sealed"] is True
    out = []
    for seg in sorted(logdir.glob("segment-*.jsonl")):
        for line in seg.read_text().splitlines():
            entry = json.loads(line)
            if entry["kind"] == "record":
                out.append(entry["body"])
    return out


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# -- loopback syslog receivers -------------------------------------------------------------


class Receiver:
    """A UDP or TCP (RFC 6587 octet counting) syslog receiver on 127.0.0.1 keeping the
    messages it got, split into RFC 5424 header fields, structured data and body."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.messages: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        if kind == "tcp":
            self.sock.listen(4)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._udp if kind == "udp" else self._tcp, daemon=True)
        self._thread.start()

    def _udp(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(65536))
            except TimeoutError:
                continue

    def _tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            buf = b""
            with conn:
                conn.settimeout(0.2)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    buf += data
                    while b" " in buf:
                        length, _, rest = buf.partition(b" ")
                        if len(rest) < int(length):
                            break
                        self.messages.append(rest[: int(length)])
                        buf = rest[int(length):]
            assert buf == b"", "a partial frame was left"

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def parsed(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(MSGID, structured data, JSON body) of every message."""
        out = []
        for m in self.messages:
            text = m.decode("utf-8")
            head, _, body = text.partition("\ufeff")
            fields = head.split(" ", 6)
            assert fields[0].startswith("<") and fields[0].endswith(">1"), text[:40]
            out.append((fields[5], fields[6].strip(), json.loads(body)))
        return out


@pytest.fixture()
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    udp, tcp = Receiver("udp"), Receiver("tcp")
    try:
        yield udp, tcp
    finally:
        udp.close()
        tcp.close()


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)


# -- replay ----------------------------------------------------------------------------------


def alert_key(a: dict[str, Any]) -> tuple[str, str, str]:
    return a["rule_id"], a["ts"], a["message"]


def test_replay_alerts_reach_the_audit_log_the_store_a_file_and_syslog(tmp_path, receivers):
    udp, tcp = receivers
    logdir, key = new_log(tmp_path)
    db, sink_file, out = tmp_path / "events.db", tmp_path / "sink.jsonl", tmp_path / "alerts.jsonl"
    p = cli("replay", str(WORKLOAD), "--policy", str(PCI_EVENTS), "--output", str(out), "--summary",
            "--audit-log", str(logdir), "--store", str(db), "--sink", f"file://{sink_file}",
            "--sink", f"syslog+udp://127.0.0.1:{udp.port}", "--sink", f"syslog+tcp://127.0.0.1:{tcp.port}")
    assert p.returncode == 0, p.stderr
    alerts = jsonl(out)
    expected = jsonl(EXPECTED)
    assert [(a["rule_id"], a["ts"], a["message"]) for a in alerts] == \
        [(e["rule_id"], e["ts"], e["message"]) for e in expected]

    # The audit log verifies and holds exactly the replay's alerts, in order, after the
    # policy file it loaded (with its sha256) and before the end of the run.
    recs = verified_records(logdir, key)
    types = [r["event_type"] for r in recs]
    assert types == ["scan_start", "config_loaded"] + ["alert"] * len(alerts) + ["scan_stop"]
    assert {r["component"] for r in recs} == {"replay"}
    assert len({r["details"]["run_id"] for r in recs}) == 1
    loaded = recs[1]["details"]
    assert loaded["path"] == str(PCI_EVENTS)
    assert loaded["sha256"] == hashlib.sha256(PCI_EVENTS.read_bytes()).hexdigest()
    logged = [r for r in recs if r["event_type"] == "alert"]
    assert [(r["details"]["rule_id"], r["details"]["event_ts"], r["details"]["message"]) for r in logged] == \
        [alert_key(a) for a in alerts]
    assert [r["severity"] for r in logged] == [a["severity"] for a in alerts]
    stop = recs[-1]
    assert stop["outcome"] == "SUCCESS" and stop["details"]["alerts"] == len(alerts)

    # The store holds every evaluated event (per type, as the summary counts them) and the alerts.
    summary_events = int(next(x for x in p.stdout.splitlines() if x.startswith("Events evaluated:")).split(":")[1])
    with sqlite3.connect(db) as conn:
        stored_types = Counter(dict(conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall()))
        stored_alerts = [json.loads(r[0]) for r in conn.execute("SELECT json FROM alerts ORDER BY id")]
        stored_events = [json.loads(r[0]) for r in conn.execute("SELECT json FROM events ORDER BY id")]
    assert sum(stored_types.values()) == summary_events == stop["details"]["events"]
    replayed = Counter(e["type"] for e in stored_events)
    assert replayed == stored_types and stored_types["exec"] > 0 and stored_types["auth"] > 0
    assert [e["ts"] for e in stored_events] == sorted(e["ts"] for e in stored_events)
    assert stored_alerts == alerts

    # The file sink got the very same alerts; both syslog receivers got one message per alert
    # with the rule as MSGID and in the structured data, the alert as the JSON body.
    assert jsonl(sink_file) == alerts
    wait_for(lambda: len(udp.messages) >= len(alerts) and len(tcp.messages) >= len(alerts))
    for receiver in (udp, tcp):
        got = receiver.parsed()
        assert [body for _, _, body in got] == alerts
        assert [msgid for msgid, _, _ in got] == [a["rule_id"][:32] for a in alerts]
        assert all(f'rule_id="{body["rule_id"]}"' in sd and f'severity="{body["severity"]}"' in sd
                   for _, sd, body in got)


def test_replay_sink_failures_are_recorded_and_alerts_still_reach_the_others(tmp_path):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    logdir, key = new_log(tmp_path)
    cef = tmp_path / "alerts.cef"
    p = cli("replay", str(WORKLOAD), "--policy", str(PCI_EVENTS), "--output", os.devnull,
            "--audit-log", str(logdir), "--sink", f"syslog+tcp://127.0.0.1:{dead}?drain=0.5",
            "--sink", f"file:{cef}", "--sink-format", "cef", "--rate-limit", "2/3600")
    # Alerts the dead sink still holds at the end fail the run (exit 3), counted and named.
    assert p.returncode == 3, p.stderr
    lines = cef.read_text().splitlines()
    assert (f"{len(lines)} alerts not delivered to syslog+tcp://127.0.0.1:{dead}?drain=0.5 before the run ended: lost"
            in p.stderr)
    recs = verified_records(logdir, key)
    alerts = [r for r in recs if r["event_type"] == "alert"]
    assert len(alerts) == len(jsonl(EXPECTED))  # the audit log records every alert regardless
    failures = [r for r in recs if r["event_type"] == "failure"]
    assert {(f["component"], f["outcome"], f["details"]["sink"]) for f in failures} == {
        ("sink", "FAILURE", f"syslog+tcp://127.0.0.1:{dead}?drain=0.5")}
    # Told at once that delivery fails (queued alerts), then the count left at the end.
    assert "delivery failing" in failures[0]["details"]["message"] and "Connection refused" in p.stderr
    # --rate-limit 2/3600: at most two alerts per rule pass, then one summary per rule.
    per_rule = Counter(ln.split("|")[4] for ln in lines)
    expected_rules = Counter(e["rule_id"] for e in jsonl(EXPECTED))
    assert all(ln.startswith("CEF:0|secpolicy|") for ln in lines)
    assert per_rule == Counter({r: min(n, 3) for r, n in expected_rules.items()})
    # The dead sink was offered exactly what the file received.
    assert failures[-1]["details"]["alerts_undelivered"] == len(lines)


def test_replay_alerts_reach_a_webhook_through_its_spool(tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[str, str, dict[str, Any]]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers["Idempotency-Key"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    spool = tmp_path / "spool"
    try:
        p = cli("replay", str(WORKLOAD), "--policy", str(PCI_EVENTS), "--output", os.devnull,
                "--sink", f"webhook+http://127.0.0.1:{server.server_address[1]}/hook?spool={spool}&tenant=t1")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert p.returncode == 0, p.stderr
    expected = jsonl(EXPECTED)
    assert [alert_key(body) for _, _, body in got] == [(e["rule_id"], e["ts"], e["message"]) for e in expected]
    assert {path for path, _, _ in got} == {"/hook?tenant=t1"}
    ids = [key for _, key, _ in got]
    assert len(set(ids)) == len(ids) == len(expected)
    from secpolicy.auditlog.sinks.webhook import Spool

    left = Spool(spool)
    try:
        assert left.pending() == []  # every alert delivered, nothing waits in the spool
    finally:
        left.close()


@pytest.mark.parametrize(("uri", "message"), [
    ("syslog+udp://127.0.0.1:99999", "port is not a number"),
    ("syslog+tls://127.0.0.1:6514?ca=/nonexistent/ca.pem", "no such file"),
    ("webhook+http://127.0.0.1:8080/hook", "needs spool=DIR"),
    ("smtp://mail", "unknown scheme 'smtp'"),
    ("file://host/x.jsonl", "names no host"),
    ("syslog+tcp://127.0.0.1:514?colour=red", "unknown parameter 'colour'"),
])
def test_invalid_sink_uri_is_input_error_before_anything_is_touched(tmp_path, uri, message):
    logdir, _key = new_log(tmp_path)
    before = sorted(p.name for p in logdir.iterdir())
    size = sum(p.stat().st_size for p in logdir.glob("segment-*"))
    db = tmp_path / "events.db"
    p = cli("replay", str(WORKLOAD), "--policy", str(PCI_EVENTS), "--audit-log", str(logdir),
            "--store", str(db), "--sink", uri)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and message in p.stderr and repr(uri) in p.stderr
    assert "Traceback" not in p.stderr
    assert not db.exists()
    assert sorted(p.name for p in logdir.iterdir()) == before
    assert sum(p.stat().st_size for p in logdir.glob("segment-*")) == size


def test_replay_failure_is_recorded_in_the_audit_log(tmp_path):
    logdir, key = new_log(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {id: b, title: B, version: '1'}\nrules:\n  - id: r\n    title: t\n"
                   "    severity: low\n    when: type == \n")
    p = cli("replay", str(WORKLOAD), "--policy", str(bad), "--audit-log", str(logdir))
    assert p.returncode == 2, p.stderr
    recs = verified_records(logdir, key)
    assert [r["event_type"] for r in recs] == ["scan_start", "failure", "scan_stop"]
    assert recs[1]["details"]["exit_code"] == 2 and str(bad) in recs[1]["details"]["message"]
    assert recs[2]["outcome"] == "FAILURE"


# -- fim -------------------------------------------------------------------------------------


def test_fim_check_and_update_record_every_change_and_integrity_failures(tmp_path):
    root = tmp_path / "root"
    fimtree.build(root)
    config, db, fkey = tmp_path / "fim.yaml", tmp_path / "base.db", tmp_path / "fim.key"
    config.write_text(fimtree.CONFIG)
    fkey.write_bytes(os.urandom(32))
    common = ["--config", str(config), "--db", str(db), "--root", str(root), "--key-file", str(fkey)]
    logdir, key = new_log(tmp_path)
    assert cli("fim", "init", *common, "--audit-log", str(logdir)).returncode == 0
    fimtree.mutate(root)

    p = cli("fim", "check", *common, "--format", "json", "--audit-log", str(logdir))
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    recs = verified_records(logdir, key)
    runs = [r["details"]["run_id"] for r in recs]
    check = [r for r in recs if r["details"]["run_id"] == runs[-1]]
    assert [r["event_type"] for r in check[:2]] == ["scan_start", "config_loaded"]
    assert check[-1]["event_type"] == "scan_stop" and check[-1]["details"]["result"] == "changed"
    changes = [r for r in check if r["event_type"] == "fim_change"]
    # Exactly what the check reported, with the old and new value of every attribute...
    as_reported = sorted(
        (e["path"], e["kind"], json.dumps(e.get("changes", []), sort_keys=True))
        for e in report["added"] + report["removed"] + report["changed"])
    as_recorded = sorted(
        (r["details"]["path"], r["details"]["change"], json.dumps(r["details"]["attributes"], sort_keys=True))
        for r in changes)
    assert as_recorded == as_reported
    # ... which is what the fixture changed.
    by_path = {r["details"]["path"]: r for r in changes}
    assert {p_ for p_, r in by_path.items() if r["details"]["change"] == "changed"} == \
        {display_path(x) for x in fimtree.EXPECTED_CHANGED}
    assert {p_ for p_, r in by_path.items() if r["details"]["change"] == "added"} == fimtree.EXPECTED_ADDED
    perms = {a["attribute"]: (a["old"], a["new"]) for a in by_path["/etc/perms.txt"]["details"]["attributes"]}
    assert set(perms) == {"p", "c"} and perms["p"][0] != perms["p"][1]
    assert check[-1]["details"]["summary"]["changed"] == len(fimtree.EXPECTED_CHANGED)
    assert check[-1]["details"]["generation"] == 1

    # update: the same changes, accepted, and the new generation on record.
    p = cli("fim", "update", *common, "--format", "json", "--audit-log", str(logdir))
    assert p.returncode == 0, p.stderr
    recs = verified_records(logdir, key)
    update = [r for r in recs if r["details"]["run_id"] == recs[-1]["details"]["run_id"]]
    accepted = [r for r in update if r["event_type"] == "fim_change"]
    assert len(accepted) == len(changes) and all(r["details"]["accepted"] for r in accepted)
    assert update[-1]["details"]["new_baseline"]["generation"] == 2

    # A baseline that does not verify: exit 5, and a critical failure on record.
    with sqlite3.connect(db) as conn:
        k, r = conn.execute("SELECT k, r FROM entries LIMIT 1").fetchone()
        conn.execute("UPDATE entries SET r = ? WHERE k = ?", (bytes(r[:-1]) + bytes([r[-1] ^ 1]), k))
    p = cli("fim", "check", *common, "--audit-log", str(logdir))
    assert p.returncode == 5, p.stderr
    recs = verified_records(logdir, key)
    last = [r for r in recs if r["details"]["run_id"] == recs[-1]["details"]["run_id"]]
    assert [r["event_type"] for r in last] == ["scan_start", "config_loaded", "failure", "scan_stop"]
    failure = last[2]
    assert failure["severity"] == "critical" and failure["details"]["kind"] == "integrity"
    assert failure["details"]["exit_code"] == 5 and "MAC" in failure["details"]["message"]
    assert last[3]["outcome"] == "FAILURE"


# -- live monitor ----------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.timeout(90)
def test_monitor_alert_reaches_the_audit_log_the_store_and_a_sink(tmp_path):
    marker = tmp_path / "marker"  # a program of its own: a script's exe is its interpreter
    shutil.copy("/bin/true", marker)
    policy = tmp_path / "live.yaml"
    policy.write_text(
        "metadata: {id: audit-live, title: audit live test, version: '1'}\nrules:\n"
        "  - id: audit-live-marker\n    title: The marker program ran\n    severity: high\n"
        f"    when: type == \"exec\" and proc.exe == \"{marker}\"\n    message: \"{{proc.cmdline}}\"\n")
    logdir, key = new_log(tmp_path)
    db, sink, ready, summary = (tmp_path / n for n in ("events.db", "sink.jsonl", "ready", "summary.json"))
    proc = subprocess.Popen(
        [*SECPOLICY, "monitor", "--policy", str(policy), "--duration", "2", "--ready-file", str(ready),
         "--output", str(tmp_path / "alerts.jsonl"), "--summary-json", str(summary),
         "--audit-log", str(logdir), "--store", str(db), "--sink", f"file://{sink}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ready.exists() or proc.poll() is not None, timeout=60)
        assert ready.exists(), proc.communicate()[1]
        subprocess.run([str(marker), "hello"], check=True)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    alerts = jsonl(tmp_path / "alerts.jsonl")
    assert [(a["rule_id"], a["message"]) for a in alerts] == [("audit-live-marker", f"{marker} hello")]
    recs = verified_records(logdir, key)
    assert [r["event_type"] for r in recs] == ["scan_start", "config_loaded", "alert", "scan_stop"]
    assert {r["component"] for r in recs} == {"monitor"}
    assert recs[2]["details"]["rule_id"] == "audit-live-marker" and recs[2]["severity"] == "high"
    assert recs[2]["details"]["event_ts"] == alerts[0]["ts"]
    stats = json.loads(summary.read_text())
    assert recs[3]["details"]["events"] == stats["events"] and stats["lost"] == 0
    with sqlite3.connect(db) as conn:
        assert [json.loads(r[0]) for r in conn.execute("SELECT json FROM alerts")] == alerts
        n_events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        marker_execs = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'exec' AND resource LIKE ?",
                                    (f"{marker}%",)).fetchone()[0]
    assert n_events == stats["events"] == stats["outputs"]["events_stored"]
    assert marker_execs == 1
    assert jsonl(sink) == alerts
