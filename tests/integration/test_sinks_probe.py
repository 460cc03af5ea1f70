"""Attacks on the alert sinks through the event fields an observed process controls (file
names, arguments): what reaches the receiver must be the alert that was meant, whole enough
to be told apart, and a receiver's refusal must not pass unnoticed."""

from __future__ import annotations

import copy
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from secpolicy.auditlog.sinks.base import StreamSink
from secpolicy.auditlog.sinks.syslog import SyslogSink, fit_alert, rfc5424
from secpolicy.auditlog.sinks.uri import build_chain, parse_sink_uri
from secpolicy.auditlog.sinks.webhook import WebhookSink

ALERT = {
    "rule_id": "priv.sudo_shadow_read",
    "severity": "critical",
    "title": "sudo then /etc/shadow",
    "message": "admin read a file",
    "ts": "2026-11-21T10:03:15.250000000Z",
    "id": "0123456789abcdef0123456789abcdef",
    "event": {"type": "exec", "ts": "2026-11-21T10:03:15.250000000Z", "host": "web1",
              "proc": {"pid": 42, "comm": "sh", "exe": "/bin/sh"}, "file": {"path": "/etc/shadow"}},
    "events": [],
    "context": {"kind": "match", "count": 1},
}

# A working directory named with a byte that is not UTF-8 (mkdir $'\xff'), read back from
# /proc/PID/cwd with surrogateescape: the alert's path holds the lone surrogate U+DCFF.
SURROGATE_PATH = "/tmp/\udcff/x"
SHOWN_PATH = "/tmp/\\xff/x"  # as the auditd reader shows an undecodable byte


def _surrogate_alert() -> dict:
    alert = copy.deepcopy(ALERT)
    alert["event"]["file"]["path"] = SURROGATE_PATH
    alert["message"] = f"opened {SURROGATE_PATH}"
    return alert


def _fields(message: bytes) -> tuple[str, dict[str, str], str]:
    """MSGID, the secpolicy structured-data parameters (RFC 5424 6.3.3 unescaped) and MSG."""
    text = message.decode("utf-8")
    m = re.match(r'<\d+>1 \S+ \S+ \S+ \S+ (\S+) \[secpolicy@32473((?: [a-z_]+="(?:[^"\\\]]|\\.)*")*)\] \ufeff(.*)\Z',
                 text, re.DOTALL)
    assert m, text[:300]
    params = {k: re.sub(r"\\(.)", r"\1", v) for k, v in re.findall(r' ([a-z_]+)="((?:[^"\\\]]|\\.)*)"', m.group(2))}
    return m.group(1), params, m.group(3)


def test_syslog_udp_sends_an_alert_whose_path_is_not_utf8() -> None:
    """A lone surrogate used to raise UnicodeEncodeError (not a sink error): the fan-out let it
    through and the writer thread stopped, so no later alert reached any sink or the log."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        sink = SyslogSink("127.0.0.1", rx.getsockname()[1], transport="udp", fmt="json")
        sink.emit(_surrogate_alert())
        sink.close()
        data = rx.recv(65535)
    _, params, msg = _fields(data)
    body = json.loads(msg)
    assert body["event"]["file"]["path"] == SHOWN_PATH
    assert body["message"] == f"opened {SHOWN_PATH}"
    assert params["rule_id"] == "priv.sudo_shadow_read"


@pytest.mark.parametrize("fmt", ["json", "cef", "leef", "ocsf"])
def test_every_format_writes_an_alert_whose_path_is_not_utf8(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "alerts.txt"
    sink = StreamSink(fmt, path=out)
    sink.emit(_surrogate_alert())
    sink.close()
    line = out.read_bytes().decode("utf-8")  # strict: the file is UTF-8
    assert line.count("\n") == 1
    if fmt == "cef":
        assert "filePath=/tmp/\\\\xff/x " in line  # CEF escapes the backslash itself
    elif fmt == "leef":
        assert "\tresource=/tmp/\\xff/x\t" in line
    elif fmt == "json":
        assert json.loads(line)["event"]["file"]["path"] == SHOWN_PATH
    else:
        assert json.loads(line)["evidences"][0]["file"]["path"] == SHOWN_PATH


def test_sink_chain_survives_an_alert_whose_path_is_not_utf8(tmp_path: Path) -> None:
    """Through the chain `monitor` uses: a webhook's spool and a file both take the alert and
    the next one; nothing escapes as an exception that is no sink failure."""
    spool, out = tmp_path / "spool", tmp_path / "a.jsonl"
    chain = build_chain([parse_sink_uri(f"webhook+http://127.0.0.1:9/x?spool={spool}&drain=0"),
                         parse_sink_uri(f"file:{out}")])
    chain.emit(_surrogate_alert())
    chain.emit(dict(ALERT, message="the next alert"))
    chain.close()
    assert chain.take_failures() == []
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["message"] for x in lines] == [f"opened {SHOWN_PATH}", "the next alert"]
    queued = [json.loads(x) for x in (spool / "queue.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [json.loads(q["body"])["message"] for q in queued] == [f"opened {SHOWN_PATH}", "the next alert"]


RULE = "priv.sudo_then_read_shadow_after_login"  # 38 characters


@pytest.mark.parametrize("fmt", ["json", "cef", "leef"])
def test_abridged_message_keeps_what_identifies_the_alert(fmt: str) -> None:
    """The attacker picks how far strings must be cut for the message to fit: JSON, 300
    arguments of 40 characters in 8,192 bytes; CEF and LEEF, a long path, user and message in
    UDP's 480. The rule id, times and alert id used to be cut with the rest, so the SIEM got
    MSGID and rule_id `priv.sudo_then_...`, a rule it does not know, and no time."""
    alert = copy.deepcopy(ALERT)
    alert["rule_id"] = RULE
    if fmt == "json":
        alert["event"]["proc"]["args"] = ["A" * 40] * 300
        limit = 8192
    else:
        alert["event"]["file"]["path"] = "/tmp/" + "p" * 600
        alert["event"]["auth"] = {"user": "u" * 200}
        alert["message"] = "m" * 600
        limit = 480
    message = fit_alert(alert, lambda a: rfc5424(a, fmt, msg_id="m1"), limit)
    assert len(message) <= limit
    msgid, params, msg = _fields(message)
    assert msgid == RULE[:32]  # RFC 5424 MSGID holds 32 characters
    assert params["rule_id"] == RULE and params["truncated"] == "true"
    if fmt == "json":
        body = json.loads(msg)
        assert (body["rule_id"], body["ts"], body["id"], body["event"]["ts"]) == (
            RULE, ALERT["ts"], ALERT["id"], ALERT["ts"])
        assert "event.proc.args[]" in body["truncated"]["fields"]
        assert not {"rule_id", "ts", "id", "event.ts"} & set(body["truncated"]["fields"])
    elif fmt == "cef":
        assert re.match(rf"CEF:0\|secpolicy\|secpolicy\|[^|]+\|{re.escape(RULE)}\|sudo th[^|]*\|10\|", msg), msg
        assert "|10|rt=1795255395250 msg=" in msg and msg.endswith(f"externalId={ALERT['id']}")
    else:
        assert f"|{RULE}|x09|" in msg and "devTime=Nov 21 2026 10:03:15.250 UTC\t" in msg


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        # A receiver that refuses what it cannot take (a body too large, or content it rejects).
        self.send_response(413 if b"too-large" in body else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[int, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_alert_refused_by_the_receiver_is_a_sink_failure(tmp_path: Path,
                                                                  receiver: tuple[int, type[_Receiver]]) -> None:
    """A refused alert (4xx) goes to dead.jsonl. It used to be reported only through
    `last_error`, which the next alert's success clears before the writer looks: the alert was
    dropped with no failure record and no count."""
    port, handler = receiver
    spool = tmp_path / "spool"
    spec = parse_sink_uri(f"webhook+http://127.0.0.1:{port}/hook?spool={spool}&drain=10")
    chain = build_chain([spec])
    chain.emit(dict(ALERT, message="too-large " + "x" * 100))
    chain.emit(dict(ALERT, message="fine"))
    chain.close()
    assert len(handler.bodies) == 2
    sink = chain.fanout.sinks[0].inner  # type: ignore[attr-defined]
    assert isinstance(sink, WebhookSink) and sink.delivered == 1 and sink.dead == 1
    failures = chain.take_failures()
    assert len(failures) == 1
    uri, message = failures[0]
    assert uri == spec.uri
    assert "refused an alert (HTTP 413)" in message and str(spool / "dead.jsonl") in message
    dead = [json.loads(x) for x in (spool / "dead.jsonl").read_text().splitlines()]
    assert len(dead) == 1 and dead[0]["reason"] == "HTTP 413" and dead[0]["id"] in message
    assert chain.take_failures() == []  # each refusal is told once
