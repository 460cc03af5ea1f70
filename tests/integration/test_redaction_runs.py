"""Secrets on command lines and in events never leave secpolicy unmasked: each secret class the
redaction issue names goes through replay, the live monitor, every sink format (file, syslog,
webhook), the event store, the audit log, timelines and exports, and no output byte holds it,
while the rules (which see the raw events) still fire. A real recorded scenario shows user and
path pseudonyms that correlate across events, alerts and runs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SECPOLICY = [sys.executable, "-m", "secpolicy"]
SCENARIO = REPO / "tests" / "fixtures" / "events" / "redaction-debian12.log"

# One command line (or config change) per secret class, and the secret that must not leave.
CLASSES: dict[str, tuple[str, str]] = {
    "attached-option": ("mysql -uroot -pMyS3cretPw payments", "MyS3cretPw"),
    "password-option-equals": ("backup --password=Hunt3r2Pw --verbose", "Hunt3r2Pw"),
    "password-option-space": ("backup --password Hunt3r3Pw", "Hunt3r3Pw"),
    "password-pair": ("env DB_PASSWORD=PgS3cret9 ./run", "PgS3cret9"),
    "token-pair": ("fetch https://api.example/v1?token=Tok9abcdEF&page=2", "Tok9abcdEF"),
    "secret-pair": ("app secret=Sekr1tVal0e", "Sekr1tVal0e"),
    "key-pair": ("app key=K3yValue77x", "K3yValue77x"),
    "authorization-header": ("curl -H 'Authorization: Bearer AbCdEf123456xyz' https://api.example", "AbCdEf123456xyz"),
    "url-userinfo": ("git clone https://deploy:UrlPassw0rd@git.example/r.git", "UrlPassw0rd"),
    "card-number": ("charge --card 4111111111111111 --amount 10", "4111111111111111"),
    "card-number-grouped": ("charge --card '5500 0000 0000 0004'", "5500 0000 0000 0004"),
    "aws-access-key": ("aws-sync AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    "github-token": ("push ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    "custom-pattern": ("close-ticket TKT-482913 --resolved", "482913"),
}
PRIVATE_KEY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
REDACTION_POLICY = """\
patterns:
  - {name: ticket, regex: 'TKT-([0-9]{6})'}
"""


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False, **kw)


def class_events() -> list[dict[str, Any]]:
    evs = []
    for i, (name, (cmdline, _)) in enumerate(CLASSES.items()):
        args = shlex.split(cmdline)
        evs.append({"type": "exec", "ts": f"2026-11-21T05:00:{i:02d}.000000000Z", "host": "h1",
                    "proc": {"pid": 100 + i, "exe": f"/usr/bin/{args[0]}", "args": args, "cmdline": " ".join(args),
                             "uid": 1000, "euid": 1000},
                    "user": {"uid": 1000, "name": "alice"}, "source": {"name": "jsonl", "probe": name}})
    evs.append({"type": "config_change", "ts": "2026-11-21T05:01:00.000000000Z", "host": "h1",
                "config": {"key": "tls_key", "op": "set",
                           "new": f"-----BEGIN PRIVATE KEY-----\n{PRIVATE_KEY}\n-----END PRIVATE KEY-----"},
                "user": {"uid": 0, "name": "root"}})
    return evs


def class_policy() -> str:
    rules = []
    for name, (_, secret) in CLASSES.items():
        rules.append(f"  - id: raw-{name}\n    title: {name} seen\n    severity: high\n"
                     f"    when: type == \"exec\" and proc.cmdline contains {json.dumps(secret)}\n"
                     f"    message: \"{{user.name}} ran {{proc.cmdline}}\"\n")
    rules.append("  - id: raw-private-key\n    title: private key set\n    severity: high\n"
                 f"    when: type == \"config_change\" and config.new contains \"{PRIVATE_KEY}\"\n"
                 "    message: \"{config.key} set to {config.new}\"\n")
    return "metadata: {id: redaction-classes, title: Secret classes, version: '1'}\nrules:\n" + "".join(rules)


def secrets() -> list[bytes]:
    out = [s.encode() for _, s in CLASSES.values()] + [PRIVATE_KEY.encode()]
    return out + [b"5500-0000-0000-0004", b"5500000000000004"]


def assert_clean(where: str, data: bytes) -> None:
    for s in secrets():
        assert s not in data, (where, s)


def files_under(*dirs: Path) -> Iterator[tuple[str, bytes]]:
    for d in dirs:
        for p in sorted(d.rglob("*")) if d.is_dir() else [d]:
            if p.is_file():
                yield str(p), p.read_bytes()


class Receivers:
    """A UDP socket standing in for a syslog collector and an HTTP endpoint for a webhook:
    the bytes secpolicy put on the wire, exactly."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.datagrams: list[bytes] = []
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def syslog_port(self) -> int:
        return int(self.udp.getsockname()[1])

    @property
    def http_port(self) -> int:
        return int(self.http.server_address[1])

    def drain(self) -> None:
        while True:
            try:
                self.datagrams.append(self.udp.recv(65536))
            except TimeoutError:
                return

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.udp.close()


@pytest.fixture()
def receivers() -> Iterator[Receivers]:
    r = Receivers()
    yield r
    r.close()


def sink_options(tmp_path: Path, receivers: Receivers) -> list[str]:
    out = []
    for fmt in ("json", "cef", "leef", "ocsf"):
        out += ["--sink", f"file://{tmp_path}/sink.{fmt}?format={fmt}"]
        out += ["--sink", f"syslog+udp://127.0.0.1:{receivers.syslog_port}?format={fmt}"]
        out += ["--sink", (f"webhook+http://127.0.0.1:{receivers.http_port}/hook/{fmt}?format={fmt}"
                           f"&spool={tmp_path}/spool-{fmt}")]
    return out


def new_log(tmp_path: Path, name: str = "log") -> Path:
    d = tmp_path / name
    p = run("log", "init", str(d), "--key-out", str(tmp_path / f"{name}.key"))
    assert p.returncode == 0, p.stderr
    return d


def test_every_secret_class_through_replay_every_sink_the_store_the_log_and_the_timeline(
        tmp_path: Path, receivers: Receivers) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in class_events()))
    policy = tmp_path / "classes.yaml"
    policy.write_text(class_policy())
    redaction = tmp_path / "redaction.yaml"
    redaction.write_text(REDACTION_POLICY)
    log = new_log(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    p = run("replay", str(events), "--policy", str(policy), "--redaction", str(redaction), "--output", str(out / "alerts.jsonl"),
            "--store", str(out / "store.db"), "--audit-log", str(log), *sink_options(out, receivers))
    assert p.returncode == 0, p.stderr
    # The rules saw every secret: one alert per class, each rule fired.
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()]
    assert sorted(a["rule_id"] for a in alerts) == sorted([f"raw-{n}" for n in CLASSES] + ["raw-private-key"])
    assert all(a["redacted"] for a in alerts), [a["rule_id"] for a in alerts if not a.get("redacted")]
    by_rule = {a["rule_id"]: a for a in alerts}
    assert by_rule["raw-card-number"]["message"] == "alice ran charge --card 411111******1111 --amount 10"
    assert by_rule["raw-custom-pattern"]["event"]["proc"]["cmdline"] == "close-ticket TKT-[REDACTED] --resolved"
    assert by_rule["raw-private-key"]["message"].endswith(" to [REDACTED]")  # the whole key block
    receivers.drain()
    # Every byte written: alert output, store, sinks (files, their spools), the audit log.
    written = list(files_under(out, log))
    assert {Path(w).name for w, _ in written} >= {"alerts.jsonl", "store.db", "sink.json", "sink.cef", "sink.leef",
                                                  "sink.ocsf", "segment-000000.jsonl"}
    for where, data in written:
        assert_clean(where, data)
    # On the wire: one syslog datagram and one webhook body per alert and format.
    assert len(receivers.datagrams) == len(receivers.bodies) == 4 * len(alerts)
    for data in receivers.datagrams + receivers.bodies:
        assert_clean("wire", data)
    assert any(b"CEF:0|" in d for d in receivers.datagrams) and any(b"LEEF:2.0|" in d for d in receivers.datagrams)
    # Every format says which fields were redacted (never their values).
    cef = (out / "sink.cef").read_text()
    assert cef.count("cs3Label=redacted cs3=") == len(alerts) and "event.proc.cmdline" in cef
    assert (out / "sink.leef").read_text().count("\tredacted=") == len(alerts)
    ocsf = [json.loads(x) for x in (out / "sink.ocsf").read_text().splitlines()]
    assert all(f["unmapped"]["redacted"] for f in ocsf)
    assert "redaction: 30 records redacted" in p.stderr  # 15 alerts and the 15 events stored
    # What is read back out of the store, and the raw file read by the other commands.
    report = tmp_path / "report"
    report.mkdir()
    for fmt in ("json", "html", "table"):
        assert run("timeline", "--db", str(out / "store.db"), "--format", fmt, "-o", str(report / f"db.{fmt}"),
                   "--redaction", str(redaction)).returncode == 0
        t = run("timeline", "--replay", str(events), "--format", fmt, "-o", str(report / f"raw.{fmt}"),
                "--redaction", str(redaction))
        assert t.returncode == 0, t.stderr
    assert run("store", "export", str(out / "store.db"), "-o", str(report / "export.ocsf")).returncode == 0
    ingest = run("store", "ingest", str(report / "ingested.db"), str(events), "--redaction", str(redaction))
    assert ingest.returncode == 0 and "stored 15 events" in ingest.stdout, ingest.stderr
    assert "redaction: 15 records redacted" in ingest.stderr
    assert run("anomaly", "learn", "--replay", str(events), "--until", "2026-11-21T05:00:01Z", "--interval", "60",
               "--out", str(report / "baseline.json")).returncode == 0
    detect = run("anomaly", "detect", "--replay", str(events), "--baseline", str(report / "baseline.json"),
                 "--min-count", "1", "--k", "1.5", "-o", str(report / "anomalies.jsonl"), "--redaction", str(redaction))
    assert detect.returncode == 1, detect.stderr
    anomalies = (report / "anomalies.jsonl").read_bytes()
    assert b'"events"' in anomalies and b"[REDACTED]" in anomalies
    for where, data in files_under(report):
        assert_clean(where, data)
    raw_timeline = json.loads((report / "raw.json").read_text())
    assert len(raw_timeline["rows"]) == 15


def test_replay_with_only_an_alert_file_writes_the_same_redacted_alerts(tmp_path: Path) -> None:
    """Alerts bound for the alert output alone are written as lines (the fast path): the
    secrets are masked there exactly as through the full fan-out."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in class_events()))
    policy = tmp_path / "classes.yaml"
    policy.write_text(class_policy())
    redaction = tmp_path / "redaction.yaml"
    redaction.write_text(REDACTION_POLICY)
    alone, fanned = tmp_path / "alone.jsonl", tmp_path / "fanned.jsonl"
    p = run("replay", str(events), "--policy", str(policy), "--redaction", str(redaction), "--output", str(alone))
    assert p.returncode == 0, p.stderr
    q = run("replay", str(events), "--policy", str(policy), "--redaction", str(redaction), "--output", str(fanned),
            "--store", str(tmp_path / "s.db"))
    assert q.returncode == 0, q.stderr
    assert_clean("alert output alone", alone.read_bytes())
    assert alone.read_bytes() == fanned.read_bytes()
    assert len(alone.read_text().splitlines()) == len(CLASSES) + 1


def test_store_ingest_redacts_lines_spelled_with_escapes_orjson_never_writes(tmp_path: Path) -> None:
    """`store ingest` screens records for redaction a batch at a time; lines spelled with `\\/`
    and with every character escaped as `\\uXXXX` (valid JSON no writer of ours produces)
    are screened as what they decode to, so no secret slips through in the spelling."""
    redaction = tmp_path / "redaction.yaml"
    redaction.write_text(REDACTION_POLICY)
    # One store per spelling: the two spellings of an event are the same record, stored once.
    for name, spell in (("slashed", lambda ev: json.dumps(ev).replace("/", "\\/")),
                        ("escaped", lambda ev: json.dumps(ev, ensure_ascii=True).replace("a", "\\u0061"))):
        lines = [spell(ev) for ev in class_events()]
        events = tmp_path / f"{name}.jsonl"
        events.write_text("\n".join(lines) + "\n")
        db = tmp_path / f"{name}.db"
        r = run("store", "ingest", str(db), str(events), "--redaction", str(redaction))
        assert r.returncode == 0, r.stderr
        with sqlite3.connect(db) as c:
            stored = [row[0] for row in c.execute("SELECT json FROM events")]
        assert len(stored) == len(lines)
        assert_clean(f"store ingest of {name} lines", "\n".join(stored).encode())


def test_store_ingest_keeps_pseudonyms_of_records_redacted_before(tmp_path: Path) -> None:
    """A recording written redacted and ingested later (under the same key) keeps its tokens:
    redaction twice is redaction once."""
    key = tmp_path / "pseudo.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    redaction = tmp_path / "r.yaml"
    redaction.write_text("fields: {user.name: pseudonym}\npseudonym_key_file: pseudo.key\n")
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps(class_events()[0]) + "\n")
    db1, db2 = tmp_path / "1.db", tmp_path / "2.db"
    assert run("store", "ingest", str(db1), str(events), "--redaction", str(redaction)).returncode == 0
    with sqlite3.connect(db1) as c:
        (once,) = [json.loads(r[0]) for r in c.execute("SELECT json FROM events")]
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps(once) + "\n")
    assert run("store", "ingest", str(db2), str(again), "--redaction", str(redaction)).returncode == 0
    with sqlite3.connect(db2) as c:
        (twice,) = [json.loads(r[0]) for r in c.execute("SELECT json FROM events")]
    assert once["user"]["name"].startswith("user-") and twice == once
    assert once["redacted"] == ["proc.args", "proc.cmdline", "user.name"]


# -- a recorded scenario: pseudonyms that correlate ------------------------------------------

SCENARIO_POLICY = """\
metadata: {id: redaction-scenario, title: Secrets on command lines, version: '1'}
rules:
  - id: password-on-command-line
    title: A password on a command line
    severity: high
    when: type == "exec" and proc.cmdline matches " -p[^ ]"
    message: "{login.name} ran {proc.cmdline} as {user.name} in {proc.cwd}"
  - id: card-number-on-command-line
    title: A card number on a command line
    severity: critical
    when: type == "exec" and proc.cmdline matches "[0-9]{13,19}"
    message: "{login.name} ran {proc.cmdline} as {user.name}"
  - id: token-on-command-line
    title: An Authorization header on a command line
    severity: high
    when: type == "exec" and proc.cmdline icontains "authorization:"
    message: "{login.name} ran {proc.cmdline}"
  - id: card-data-written
    title: Card data written to the spool
    severity: high
    when: type == "write" and file.path endswith "/spool/cards.txt"
    message: "{user.name} wrote {file.path}"
  - id: secrets-by-one-login
    title: Two secrets on command lines in one login session
    severity: critical
    when: type == "exec" and (proc.cmdline matches " -p[^ ]" or proc.cmdline matches "[0-9]{13,19}")
    threshold: {count: 2, within: 60s, by: [login.name]}
"""
PSEUDONYMS = """\
fields:
  user.name: pseudonym
  login.name: pseudonym
  file.path: pseudonym
  proc.cwd: basename
"""
SCENARIO_SECRETS = (b"S3cretPw1", b"S3cretPw2", b"4111111111111111", b"5500000000000004",
                    b"ghp_R3dactedTok3nR3dactedTok3nR3dacted01", b"cloudsdk", b"nobody")


def replay_scenario(tmp_path: Path, log: Path, name: str) -> list[dict[str, Any]]:
    policy, redaction = tmp_path / "scenario.yaml", tmp_path / "pseudonyms.yaml"
    policy.write_text(SCENARIO_POLICY)
    redaction.write_text(PSEUDONYMS)
    out = tmp_path / f"{name}.jsonl"
    p = run("replay", str(SCENARIO), "--policy", str(policy), "--redaction", str(redaction), "--audit-log", str(log),
            "--store", str(tmp_path / f"{name}.db"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    for where, data in files_under(out, log, tmp_path / f"{name}.db"):
        for s in SCENARIO_SECRETS:
            assert s not in data, (where, s)
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_a_recorded_scenario_gives_alerts_whose_pseudonyms_correlate(tmp_path: Path) -> None:
    log = new_log(tmp_path)
    alerts = replay_scenario(tmp_path, log, "first")
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        by_rule.setdefault(a["rule_id"], []).append(a)
    # The rules fired on the raw events as they would without redaction.
    assert {k: len(v) for k, v in by_rule.items()} == {
        "password-on-command-line": 2, "card-number-on-command-line": 2, "token-on-command-line": 1,
        "card-data-written": 2, "secrets-by-one-login": 2}
    logins = {a["event"]["login"]["session"]: a["event"]["login"]["name"] for a in alerts}
    cloudsdk, nobody = logins[18], logins[19]
    assert cloudsdk != nobody and cloudsdk.startswith("user-") and nobody.startswith("user-")
    # One login, one token, in every alert, event and message of its session.
    for a in alerts:
        session = a["event"]["login"]["session"]
        assert {e["login"]["name"] for e in a["events"]} == {logins[session]}
        if "{login.name}" in SCENARIO_POLICY and a["rule_id"] != "card-data-written" and a["rule_id"] != "secrets-by-one-login":
            assert a["message"].startswith(logins[session] + " ran ")
    # Acting as itself, each user's name is its login's token (one key, one class: user).
    assert {a["event"]["user"]["name"] for a in by_rule["card-data-written"]} == {cloudsdk, nobody}
    # The same spool file, one token, written by both users.
    paths = {a["event"]["file"]["path"] for a in by_rule["card-data-written"]}
    assert len(paths) == 1 and next(iter(paths)).startswith("path-")
    # ... and wherever the record quotes it (the shell's command line that wrote it).
    for a in by_rule["card-data-written"]:
        assert a["message"].endswith("wrote " + next(iter(paths))) and "cards.txt" not in json.dumps(a["event"])
        assert a["event"]["proc"]["cmdline"].endswith(">> " + next(iter(paths)))
    # The threshold's key is the token too, and agrees with its events.
    assert sorted(a["context"]["key"]["login.name"] for a in by_rule["secrets-by-one-login"]) == sorted([cloudsdk, nobody])
    # Card numbers keep first six and last four; the password and the token are gone.
    cards = " ".join(a["message"] for a in by_rule["card-number-on-command-line"])
    assert "411111******1111" in cards and "550000******0004" in cards
    assert all("-p[REDACTED]" in a["message"] for a in by_rule["password-on-command-line"])
    assert all(a["message"].endswith(" in tmp") for a in by_rule["password-on-command-line"])  # cwd: basename
    # Another run recording into the same audit log: the same tokens (the key lives with the log).
    again = replay_scenario(tmp_path, log, "second")
    assert [a["event"]["login"]["name"] for a in again] == [a["event"]["login"]["name"] for a in alerts]
    # A run with another audit log: other tokens (pseudonyms mean nothing without their key).
    other = replay_scenario(tmp_path, new_log(tmp_path, "other"), "third")
    assert {a["event"]["login"]["name"] for a in other}.isdisjoint({cloudsdk, nobody})
    assert (log / "pseudonym.key").stat().st_mode & 0o777 == 0o600


# -- the live monitor ------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.timeout(120)
def test_a_live_process_with_secrets_on_its_command_line(tmp_path: Path, receivers: Receivers) -> None:
    """A real program run with a password, a card number and a token in its arguments, under
    rules that fire on those very values: the alerts come, and no output holds the values."""
    program = tmp_path / "mysql"  # a program of its own, named as the client whose -p it mimics
    shutil.copy("/bin/true", program)
    live = {"LivePw": "-pL1veS3cretPw", "LiveCard": "4111111111111111",
            "LiveToken": "Authorization: Bearer L1veTok3nAbcDef"}
    policy = tmp_path / "live.yaml"
    rules = []
    for name, value in live.items():
        when = f'type == "exec" and proc.exe == "{program}" and proc.args contains {json.dumps(value)}'
        rules.append(f"  - id: live-{name.lower()}\n    title: {name}\n    severity: high\n"
                     f"    when: {json.dumps(when)}\n    message: \"{{user.name}} ran {{proc.cmdline}}\"\n")
    policy.write_text("metadata: {id: redaction-live, title: live, version: '1'}\nrules:\n" + "".join(rules))
    log = new_log(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [*SECPOLICY, "monitor", "--policy", str(policy), "--ready-file", str(ready), "--aggregate-window", "0",
         "--output", str(out / "alerts.jsonl"), "--events", str(out / "events.jsonl"),
         "--summary-json", str(out / "summary.json"), "--store", str(out / "store.db"), "--audit-log", str(log),
         *sink_options(out, receivers)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate()[1]
        child = subprocess.run([str(program), "-uroot", *live.values(), "payments"], check=True)
        assert child.returncode == 0
        alerts_file = out / "alerts.jsonl"
        while time.monotonic() < deadline:
            if alerts_file.exists() and alerts_file.read_text().count("\n") >= 3:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()]
    assert sorted(a["rule_id"] for a in alerts) == ["live-livecard", "live-livepw", "live-livetoken"]
    (msg,) = {a["message"] for a in alerts}
    assert msg == f"root ran {program} -uroot -p[REDACTED] 411111******1111 Authorization: Bearer [REDACTED] payments"
    recorded = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    (ours,) = [e for e in recorded if e["type"] == "exec" and e["proc"].get("exe") == str(program)]
    assert ours["redacted"] == ["proc.args", "proc.cmdline"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["redaction"]["records"] >= 4 and summary["redaction"]["pseudonym_key"] == "audit log"
    assert "redaction:" in err
    receivers.drain()
    for where, data in [*files_under(out, log), *(("wire", d) for d in receivers.datagrams + receivers.bodies)]:
        for value in (b"L1veS3cretPw", b"4111111111111111", b"L1veTok3nAbcDef"):
            assert value not in data, (where, value)
    assert len(receivers.datagrams) == len(receivers.bodies) == 4 * 3
