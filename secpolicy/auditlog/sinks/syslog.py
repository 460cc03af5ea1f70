"""Syslog output: RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587 octet counting) or
TLS (RFC 5425), carrying the alert in any wire format with a structured-data summary."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from secpolicy.auditlog.sinks.formats import format_alert
from secpolicy.errors import InputError, RuntimeFailure

__all__ = ["FACILITIES", "SYSLOG_SEVERITY", "SyslogSink", "rfc5424", "sd_escape"]

# Alert severity -> syslog severity (RFC 5424 table 2).
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
FACILITIES = {"auth": 4, "authpriv": 10, "audit": 13, "local0": 16, "local1": 17, "local2": 18,
              "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23, "user": 1}
# 32473 is the private enterprise number reserved for documentation and examples (RFC 5612).
SD_ID = "secpolicy@32473"
_MAX_UDP = 8192
_BOM = "\ufeff"


def sd_escape(value: Any) -> str:
    """PARAM-VALUE escaping of RFC 5424 section 6.3.3: '"', '\\' and ']'."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str | None, limit: int) -> str:
    # Header fields are PRINTUSASCII without spaces; anything else is replaced, "-" if empty.
    if not value:
        return "-"
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)
    return cleaned[:limit]


def rfc5424(alert: Mapping[str, Any], fmt: str = "json", facility: int = 13, app_name: str = "secpolicy",
            hostname: str | None = None, timestamp: datetime | None = None) -> bytes:
    """One RFC 5424 message (without transport framing)."""
    sev = str(alert.get("severity", "info"))
    if sev not in SYSLOG_SEVERITY:
        raise InputError(f"alert severity {sev!r} is not one of {sorted(SYSLOG_SEVERITY)}")
    pri = facility * 8 + SYSLOG_SEVERITY[sev]
    moment = (timestamp or datetime.now(UTC)).astimezone(UTC)
    ts = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = _header_field(hostname or (alert.get("event") or {}).get("host") or socket.gethostname(), 255)
    context = alert.get("context") or {}
    params = [("rule_id", alert.get("rule_id")), ("severity", sev), ("kind", context.get("kind")),
              ("count", context.get("count"))]
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(v)}"' for k, v in params if v is not None) + "]"
    msgid = _header_field(str(alert.get("rule_id", "")), 32)
    body = format_alert(alert, fmt)
    text = (f"<{pri}>1 {ts} {host} {_header_field(app_name, 48)} {os.getpid()} {msgid} {sd} "
            f"{_BOM}{body}")
    return text.encode("utf-8")


class SyslogSink:
    """Sends each alert as one RFC 5424 message; stream transports reconnect once on failure."""

    def __init__(self, host: str, port: int, transport: str = "udp", fmt: str = "json",
                 facility: str = "audit", app_name: str = "secpolicy", ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None,
                 server_name: str | None = None, timeout: float = 5.0) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise InputError(f"syslog transport {transport!r} is not udp, tcp or tls")
        if facility not in FACILITIES:
            raise InputError(f"syslog facility {facility!r} is not one of {sorted(FACILITIES)}")
        format_alert({"rule_id": "probe", "severity": "info"}, fmt)
        self.host, self.port, self.transport, self.fmt = host, port, transport, fmt
        self.facility = FACILITIES[facility]
        self.app_name = app_name
        self.timeout = timeout
        self.server_name = server_name or host
        self._context: ssl.SSLContext | None = None
        if transport == "tls":
            try:
                self._context = ssl.create_default_context(cafile=ca_file)
                if cert_file:
                    self._context.load_cert_chain(cert_file, key_file)
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"cannot load TLS certificates: {exc}") from exc
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        try:
            if self.transport == "udp":
                sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
                sock.connect((self.host, self.port))
                return sock
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self._context is not None:
                return self._context.wrap_socket(raw, server_hostname=self.server_name)
            return raw
        except (OSError, ssl.SSLError) as exc:
            raise RuntimeFailure(f"syslog {self.transport}://{self.host}:{self.port}: {exc}") from exc

    def emit(self, alert: Mapping[str, Any]) -> None:
        message = rfc5424(alert, self.fmt, self.facility, self.app_name)
        if self.transport == "udp":
            frame = message[:_MAX_UDP]
        else:
            frame = str(len(message)).encode() + b" " + message
        for attempt in (1, 2):
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.sendall(frame)
                return
            except (OSError, ssl.SSLError) as exc:
                self._sock.close()
                self._sock = None
                if attempt == 2:
                    raise RuntimeFailure(f"syslog {self.transport}://{self.host}:{self.port}: {exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            try:
                if self.transport == "tls" and isinstance(self._sock, ssl.SSLSocket):
                    self._sock.unwrap()
            except (OSError, ssl.SSLError):
                pass
            self._sock.close()
            self._sock = None
