"""The judged webhook scenario: a receiver that is down while a burst of alerts is sent, and
afterwards holds every alert exactly once. SECPOLICY_WEBHOOK_DOWNTIME sets the downtime in
seconds (default 3; the judged scenario is 60). The sender is a separate process, restarted
once in the middle of the outage, so the on-disk spool has to carry the alerts across."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
DOWNTIME = float(os.environ.get("SECPOLICY_WEBHOOK_DOWNTIME", "3"))

SENDER = r"""
import sys, time
from secpolicy.auditlog.sinks.webhook import WebhookSink

url, spool, first, count, linger = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
sink = WebhookSink(url, spool, backoff_initial=0.1, backoff_max=2.0, timeout=2)
for i in range(first, first + count):
    sink.emit({"rule_id": "auth.brute_force", "severity": "high", "title": "burst", "id": f"a-{i}",
               "ts": "2026-11-21T10:00:00.000000000Z", "context": {"kind": "threshold", "key": str(i)}})
print("emitted", flush=True)
drained = sink.wait_drained(linger)
sink.close(drain_timeout=0)
print("drained" if drained else "pending", len(sink.spool), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sender(url: str, spool: Path, first: int, count: int, linger: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", SENDER, url, str(spool), str(first), str(count), str(linger)],
                            env=env, stdout=subprocess.PIPE, text=True)


def test_receiver_down_during_a_burst_holds_every_alert_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    received: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            with lock:
                received.append((self.headers["Idempotency-Key"], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    start = time.monotonic()
    # First sender: half the burst while the receiver is down; it stops before the receiver is up.
    first = sender(url, tmp_path / "spool", 0, 250, linger=min(1.0, DOWNTIME / 3))
    out, _ = first.communicate(timeout=60)
    assert out.split()[:2] == ["emitted", "pending"] and out.split()[2] == "250"
    # Second sender (the restarted monitor): the rest of the burst, still during the outage.
    second = sender(url, tmp_path / "spool", 250, 250, linger=DOWNTIME + 30)
    time.sleep(max(0.0, DOWNTIME - (time.monotonic() - start)))
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out, _ = second.communicate(timeout=DOWNTIME + 60)
    finally:
        server.shutdown()
        server.server_close()
    assert out.split()[-2:] == ["drained", "0"], out
    keys = [k for k, _ in received]
    ids = sorted(json.loads(b)["id"] for _, b in received)
    assert len(keys) == len(set(keys)) == 500
    assert ids == sorted(f"a-{i}" for i in range(500))
