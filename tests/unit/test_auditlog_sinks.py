"""Alert sinks: exact CEF/LEEF/OCSF output, deduplication and rate limiting with counts, and a
webhook that loses nothing while a real HTTP receiver on loopback is down."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from secpolicy.auditlog.sinks.base import FanOut, MemorySink, StreamSink
from secpolicy.auditlog.sinks.dedup import Deduplicator, RateLimiter
from secpolicy.auditlog.sinks.formats import format_alert, to_cef, to_leef, to_ocsf
from secpolicy.auditlog.sinks.spool import Spool
from secpolicy.auditlog.sinks.syslog import rfc5424, sd_escape
from secpolicy.auditlog.sinks.webhook import WebhookSink
from secpolicy.errors import InputError, RuntimeFailure

ALERT: dict[str, Any] = {
    "rule_id": "auth.brute_force",
    "severity": "high",
    "title": "SSH brute|force",
    "message": "5 failures a=b\\c\nnext",
    "ts": "2026-11-21T10:06:01.500000000Z",
    "event": {"type": "auth", "ts": "2026-11-21T10:06:01.500000000Z", "host": "web1",
              "proc": {"pid": 802, "comm": "sshd"},
              "auth": {"service": "sshd", "user": "admin", "result": "failure", "rhost": "203.0.113.9"}},
    "events": [],
    "context": {"kind": "threshold", "key": "203.0.113.9", "count": 5},
    "tags": ["authentication"],
    "references": {"pci-dss": ["8.3.4"], "cis": ["5.2.7"]},
}


def alert(i: int, rule: str = "r.flood", key: str = "k") -> dict[str, Any]:
    return {"rule_id": rule, "severity": "medium", "title": f"alert {rule}", "message": f"n={i}",
            "ts": f"2026-11-21T10:00:{i % 60:02d}.000000000Z", "context": {"kind": "match", "key": key},
            "id": f"{rule}-{i}"}


# -- formats -------------------------------------------------------------------------------


def test_cef_escapes_header_and_extension() -> None:
    line = to_cef(ALERT)
    header, ext = line.split("|8|", 1)
    assert header == "CEF:0|secpolicy|secpolicy|0.1.0|auth.brute_force|SSH brute\\|force"
    assert "msg=5 failures a\\=b\\\\c\\nnext " in ext
    assert "rt=1795255561500" in ext and "suser=admin" in ext and "src=203.0.113.9" in ext
    assert "cnt=5" in ext and "outcome=failure" in ext and "cs2=cis:5.2.7;pci-dss:8.3.4" in ext
    assert "\n" not in line


def test_leef_2_uses_tab_delimiter_and_clean_values() -> None:
    line = to_leef(ALERT)
    head, body = line.split("|x09|", 1)
    assert head == "LEEF:2.0|secpolicy|secpolicy|0.1.0|auth.brute_force"
    attrs = dict(kv.split("=", 1) for kv in body.split("\t"))
    assert attrs["devTime"] == "Nov 21 2026 10:06:01.500 UTC"
    assert attrs["sev"] == "8" and attrs["usrName"] == "admin" and attrs["src"] == "203.0.113.9"
    assert attrs["msg"] == "5 failures a=b\\c next"


def test_ocsf_detection_finding_required_fields() -> None:
    f = to_ocsf(ALERT)
    assert (f["class_uid"], f["category_uid"], f["activity_id"], f["type_uid"]) == (2004, 2, 1, 200401)
    assert (f["severity_id"], f["severity"], f["time"]) == (4, "High", 1795255561500)
    assert f["finding_info"]["analytic"] == {"uid": "auth.brute_force", "name": "auth.brute_force",
                                             "type_id": 1, "type": "Rule"}
    assert f["metadata"]["product"]["name"] == "secpolicy" and f["metadata"]["version"] == "1.3.0"
    assert f["device"]["hostname"] == "web1"
    assert f["evidences"][0]["src_endpoint"] == {"ip": "203.0.113.9"}
    json.dumps(f)


def test_bad_alerts_and_formats_are_input_errors() -> None:
    with pytest.raises(InputError, match="rule_id"):
        to_cef({"severity": "high"})
    with pytest.raises(InputError, match="severity"):
        to_leef({"rule_id": "x", "severity": "urgent"})
    with pytest.raises(InputError, match="unknown alert format"):
        format_alert(ALERT, "xml")


def test_rfc5424_header_and_structured_data() -> None:
    import datetime as dt

    msg = rfc5424(ALERT, "json", facility=13, hostname="web 1",
                  timestamp=dt.datetime(2026, 11, 21, 10, 6, 1, 500000, tzinfo=dt.UTC)).decode()
    head, body = msg.split("\ufeff", 1)
    parts = head.split(" ", 6)
    assert parts[:3] == ["<107>1", "2026-11-21T10:06:01.500000Z", "web_1"]
    assert parts[3] == "secpolicy" and parts[5] == "auth.brute_force"
    assert parts[6] == '[secpolicy@32473 rule_id="auth.brute_force" severity="high" kind="threshold" count="5"] '
    assert json.loads(body)["rule_id"] == "auth.brute_force"
    assert sd_escape('a"b]c\\') == 'a\\"b\\]c\\\\'


def test_stream_sink_writes_json_lines(tmp_path: Path) -> None:
    out = io.StringIO()
    sink = StreamSink("json", stream=out)
    sink.emit(ALERT)
    assert json.loads(out.getvalue()) == ALERT
    path_sink = StreamSink("cef", path=tmp_path / "alerts.cef")
    path_sink.emit(ALERT)
    path_sink.close()
    assert (tmp_path / "alerts.cef").read_text().startswith("CEF:0|")


def test_fanout_keeps_going_past_a_failing_sink() -> None:
    class Broken:
        def emit(self, alert: Any) -> None:
            raise RuntimeFailure("receiver gone")

        def close(self) -> None:
            pass

    good = MemorySink()
    fan = FanOut([Broken(), good])
    fan.emit(ALERT)
    assert good.alerts == [ALERT] and fan.failures == [(0, "receiver gone")]


# -- dedup and rate limit ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_becomes_one_alert_with_a_count() -> None:
    clock, out = Clock(), MemorySink()
    dedup = Deduplicator(out, window=10, clock=clock)
    for i in range(1000):
        clock.now = i * 0.005
        dedup.emit(alert(i))
    dedup.emit(alert(0, key="other"))
    assert out.alerts == []
    clock.now = 10.0
    dedup.tick()
    assert len(out.alerts) == 1
    one = out.alerts[0]
    assert one["context"]["count"] == 1000 and one["aggregation"]["count"] == 1000
    assert (one["aggregation"]["first_ts"], one["aggregation"]["last_ts"]) == (
        "2026-11-21T10:00:00.000000000Z", "2026-11-21T10:00:39.000000000Z")
    dedup.close()
    assert [a["context"]["count"] for a in out.alerts] == [1000, 1] and out.closed


def test_rate_limiter_passes_limit_then_summarises() -> None:
    clock, out = Clock(), MemorySink()
    limiter = RateLimiter(out, limit=3, period=60, clock=clock)
    for i in range(10):
        limiter.emit(alert(i, key=str(i)))
    limiter.emit(alert(0, rule="r.other"))
    assert [a["id"] for a in out.alerts] == ["r.flood-0", "r.flood-1", "r.flood-2", "r.other-0"]
    clock.now = 61
    limiter.tick()
    summary = out.alerts[-1]
    assert summary["aggregation"]["count"] == 7 and summary["aggregation"]["reason"] == "rate limited"
    assert summary["title"] == "alert r.flood (7 more suppressed)"


# -- webhook -------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on loopback that keeps each alert once per idempotency key and
    records every POST it saw."""

    def __init__(self, port: int, fail_first: int = 0) -> None:
        self.port = port
        self.held: dict[str, str] = {}
        self.posts = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver.lock:
                    receiver.posts += 1
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        self.send_response(503)
                    else:
                        key = self.headers["Idempotency-Key"]
                        receiver.held.setdefault(key, body)
                        self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def alert_ids(self) -> list[str]:
        with self.lock:
            return sorted(json.loads(b)["id"] for b in self.held.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_webhook_loses_nothing_while_the_receiver_is_down(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver(port)
    sink = WebhookSink(f"http://127.0.0.1:{port}/alerts", tmp_path / "spool", backoff_initial=0.05,
                       backoff_max=0.2, timeout=2)
    try:
        for i in range(150):
            sink.emit(alert(i, key=str(i)))
        assert wait_for(lambda: sink.retries >= 3)  # it did try, and the receiver was down
        assert sink.delivered == 0 and len(sink.spool) == 150
        receiver.start()
        for i in range(150, 200):
            sink.emit(alert(i, key=str(i)))
        assert wait_for(lambda: len(receiver.held) == 200)
        assert sink.wait_drained(5)
    finally:
        sink.close(drain_timeout=0)
        receiver.stop()
    assert receiver.alert_ids() == sorted(f"r.flood-{i}" for i in range(200))
    assert receiver.posts == 200  # nothing sent twice
    assert (tmp_path / "spool" / "queue.jsonl").stat().st_size == 0  # compacted once drained


def test_webhook_spool_survives_a_restart_and_redelivers_once(tmp_path: Path) -> None:
    port = free_port()
    first = WebhookSink(f"http://127.0.0.1:{port}/", tmp_path / "spool", backoff_initial=0.05,
                        backoff_max=0.1)
    for i in range(40):
        first.emit(alert(i, key=str(i)))
    first.close(drain_timeout=0)  # stopped while the receiver is still down
    receiver = Receiver(port)
    receiver.start()
    second = WebhookSink(f"http://127.0.0.1:{port}/", tmp_path / "spool", backoff_initial=0.05)
    try:
        assert len(second.spool) == 40
        assert wait_for(lambda: len(receiver.held) == 40)
        assert second.wait_drained(5)
    finally:
        second.close()
        receiver.stop()
    assert receiver.alert_ids() == sorted(f"r.flood-{i}" for i in range(40))
    assert receiver.posts == 40


def test_webhook_retries_5xx_and_keeps_order(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver(port, fail_first=3)
    receiver.start()
    sink = WebhookSink(f"http://127.0.0.1:{port}/", tmp_path / "spool", backoff_initial=0.02, fmt="ocsf")
    try:
        for i in range(5):
            sink.emit(alert(i))
        assert wait_for(lambda: len(receiver.held) == 5)
    finally:
        sink.close()
        receiver.stop()
    assert receiver.posts == 8 and sink.retries == 3
    bodies = list(receiver.held.values())
    assert [json.loads(b)["finding_info"]["uid"] for b in bodies] == [f"r.flood-{i}" for i in range(5)]


def test_spool_drops_only_a_torn_last_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    a = spool.put("one", "text/plain")
    spool.put("two", "text/plain")
    spool.mark_done(a.id)
    spool.close()
    with open(tmp_path / "s" / "queue.jsonl", "ab") as f:
        f.write(b'{"id":"torn","bo')
    again = Spool(tmp_path / "s")
    assert [e.body for e in again.pending()] == ["two"] and again.corrupt == 1
    with pytest.raises(RuntimeFailure, match="in use"):
        Spool(tmp_path / "s")
    again.close()


def test_webhook_rejects_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not http"):
        WebhookSink("ftp://example/", tmp_path / "s", start=False)
