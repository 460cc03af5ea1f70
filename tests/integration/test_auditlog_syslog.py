"""Syslog sink against a real rsyslogd on loopback: RFC 5424 over UDP, TCP (octet counting)
and TLS (gtls driver, a self-signed certificate made here), parsed by rsyslog itself."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from secpolicy.auditlog.sinks.syslog import SyslogSink

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None)
pytestmark = pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")
GTLS = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")

ALERT = {
    "rule_id": "priv.sudo_shadow",
    "severity": "critical",
    "title": "sudo then /etc/shadow",
    "message": 'admin read /etc/shadow "quoted" ] bracket',
    "ts": "2026-11-21T10:03:15.250000000Z",
    "event": {"type": "open", "ts": "2026-11-21T10:03:15.250000000Z", "host": "web1",
              "user": {"uid": 0, "name": "root"}, "file": {"path": "/etc/shadow"}},
    "events": [],
    "context": {"kind": "sequence", "key": "web1/42", "count": 3},
    "tags": ["privilege-escalation"],
    "references": {"mitre": ["T1003.008"]},
}


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    directory = tmp_path_factory.mktemp("rsyslog")
    cert, key = self_signed(directory)
    ports = {"udp": free_port(socket.SOCK_DGRAM), "tcp": free_port(socket.SOCK_STREAM),
             "tls": free_port(socket.SOCK_STREAM)}
    out = directory / "received.log"
    tls = GTLS.exists()
    conf = directory / "rsyslog.conf"
    lines = [
        f'global(workDirectory="{directory}"'
        + (f' defaultNetstreamDriverCAFile="{cert}" defaultNetstreamDriverCertFile="{cert}"'
           f' defaultNetstreamDriverKeyFile="{key}"' if tls else "") + ")",
        'module(load="imudp")',
        'module(load="imtcp")',
        f'input(type="imudp" address="127.0.0.1" port="{ports["udp"]}" ruleset="out")',
        f'input(type="imtcp" address="127.0.0.1" port="{ports["tcp"]}" ruleset="out")',
    ]
    if tls:
        lines.append(f'input(type="imtcp" address="127.0.0.1" port="{ports["tls"]}" ruleset="out"'
                     ' streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")')
    lines += [
        ('template(name="fields" type="string" string="%PRI%|%PROTOCOL-VERSION%|%HOSTNAME%|%APP-NAME%|'
         '%MSGID%|%STRUCTURED-DATA%|%msg%\\n")'),
        f'ruleset(name="out") {{ action(type="omfile" file="{out}" template="fields") }}',
    ]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(directory / "rsyslog.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        wanted = [ports["tcp"]] + ([ports["tls"]] if tls else [])
        while wanted:
            if proc.poll() is not None:
                pytest.fail(f"rsyslogd exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            try:
                socket.create_connection(("127.0.0.1", wanted[0]), timeout=0.2).close()
                wanted.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("rsyslogd did not start listening")
                time.sleep(0.05)
        yield {"ports": ports, "out": out, "cert": cert, "tls": tls}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def received(out: Path, marker: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists():
            hits = [line for line in out.read_text(encoding="utf-8", errors="replace").splitlines() if marker in line]
            if hits:
                return hits
        time.sleep(0.05)
    return []


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_rsyslog_parses_our_rfc5424(rsyslog: dict, transport: str) -> None:
    if transport == "tls" and not rsyslog["tls"]:
        pytest.skip("rsyslog-gnutls is not installed")
    marker = f"marker-{transport}-{os.getpid()}"
    alert = dict(ALERT, message=ALERT["message"] + " " + marker)
    sink = SyslogSink("127.0.0.1", rsyslog["ports"][transport], transport=transport, fmt="json",
                      ca_file=str(rsyslog["cert"]), server_name="localhost")
    sink.emit(alert)
    sink.emit(dict(alert, message="second " + marker))  # framing keeps messages apart
    sink.close()
    assert sink.pending() == 0
    hits = received(rsyslog["out"], marker)
    assert len(hits) >= 1
    deadline = time.monotonic() + 5
    while len(hits) < 2 and time.monotonic() < deadline:
        hits = received(rsyslog["out"], marker)
    assert len(hits) == 2
    pri, version, host, app, msgid, sd, msg = hits[0].split("|", 6)
    # facility audit (13) * 8 + critical (2); rsyslog parsed every header field.
    assert (pri, version, host, app, msgid) == ("106", "1", "web1", "secpolicy", "priv.sudo_shadow")
    assert re.fullmatch(r'\[secpolicy@32473 id="[0-9a-f]{32}" rule_id="priv.sudo_shadow" severity="critical" '
                        r'kind="sequence" count="3"\]', sd), sd
    body = json.loads(msg.lstrip("\ufeff"))
    assert body["message"].endswith(marker) and body["rule_id"] == "priv.sudo_shadow"
    assert hits[1].split("|", 6)[6].lstrip("\ufeff").startswith('{"context"')


def test_cef_over_tcp_arrives_intact(rsyslog: dict) -> None:
    marker = f"cef-{os.getpid()}"
    sink = SyslogSink("127.0.0.1", rsyslog["ports"]["tcp"], transport="tcp", fmt="cef")
    sink.emit(dict(ALERT, message=f"a=b | {marker}"))
    sink.close()
    hits = received(rsyslog["out"], marker)
    assert hits and hits[0].split("|", 6)[6].lstrip("\ufeff").startswith(
        "CEF:0|secpolicy|secpolicy|")
    assert f"msg=a\\=b | {marker}" in hits[0]


def test_tls_refuses_an_untrusted_server(rsyslog: dict, tmp_path: Path) -> None:
    if not rsyslog["tls"]:
        pytest.skip("rsyslog-gnutls is not installed")
    other, _ = self_signed(tmp_path)
    sink = SyslogSink("127.0.0.1", rsyslog["ports"]["tls"], transport="tls", ca_file=str(other),
                      server_name="localhost")
    sink.emit(ALERT)  # queued: delivery fails, and says why
    deadline = time.monotonic() + 10
    while "CERTIFICATE_VERIFY_FAILED" not in sink.last_error and time.monotonic() < deadline:
        time.sleep(0.02)
    sink.close(drain_timeout=0)
    assert "CERTIFICATE_VERIFY_FAILED" in sink.last_error
    assert sink.pending() == 1 and sink.delivered == 0
