"""Syslog output: RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587 octet counting) or TLS
(RFC 5425); stream transports queue every alert and count it delivered only when the receiver
has read it, resending after a reconnect, each message carrying an id that marks a resend."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from secpolicy.auditlog.sinks.formats import format_alert, utf8_safe
from secpolicy.auditlog.sinks.spool import MemorySpool, QueuedSender, Spool, SpoolEntry
from secpolicy.errors import InputError, RuntimeFailure

__all__ = ["FACILITIES", "MAX_MESSAGE", "SYSLOG_SEVERITY", "SyslogSink", "fit_alert", "rfc5424", "sd_escape"]

# Alert severity -> syslog severity (RFC 5424 table 2).
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
FACILITIES = {"auth": 4, "authpriv": 10, "audit": 13, "local0": 16, "local1": 17, "local2": 18,
              "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23, "user": 1}
# 32473 is the private enterprise number reserved for documentation and examples (RFC 5612).
SD_ID = "secpolicy@32473"
# RFC 5425 6.1: receivers SHOULD take 8192 octets (rsyslog's default maxMessageSize too);
# RFC 5426 3.2: every IPv4 receiver MUST take 480, and a UDP datagram holds at most 65507.
MAX_MESSAGE = 8192
MESSAGE_LIMITS = {"udp": (480, 65507), "tcp": (480, 1 << 20), "tls": (480, 1 << 20)}
_BOM = "\ufeff"
_TCP_CLOSE = 7  # tcpi_state of linux/tcp_states.h
_BATCH = 500


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
            hostname: str | None = None, timestamp: datetime | None = None, msg_id: str | None = None) -> bytes:
    """One RFC 5424 message (without transport framing); `msg_id` goes into the structured
    data as `id`, the same on every resend of the message."""
    sev = str(alert.get("severity", "info"))
    if sev not in SYSLOG_SEVERITY:
        raise InputError(f"alert severity {sev!r} is not one of {sorted(SYSLOG_SEVERITY)}")
    pri = facility * 8 + SYSLOG_SEVERITY[sev]
    moment = (timestamp or datetime.now(UTC)).astimezone(UTC)
    ts = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    event = alert.get("event") or {}
    host = _header_field(hostname or (event.get("host") if isinstance(event, Mapping) else None)
                         or socket.gethostname(), 255)
    context = alert.get("context") or {}
    params = [("id", msg_id), ("rule_id", alert.get("rule_id")), ("severity", sev), ("kind", context.get("kind")),
              ("count", context.get("count"))]
    if alert.get("truncated"):
        params.append(("truncated", "true"))
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(utf8_safe(str(v)))}"' for k, v in params if v is not None) + "]"
    msgid = _header_field(str(alert.get("rule_id", "")), 32)
    body = format_alert(alert, fmt)
    text = (f"<{pri}>1 {ts} {host} {_header_field(app_name, 48)} {os.getpid()} {msgid} {sd} "
            f"{_BOM}{body}")
    return text.encode("utf-8")


# What identifies an alert is never cut while the rest is abridged: a rule id cut short is a
# rule the SIEM does not know (and MSGID and the structured data carry it too), a cut time
# is no time; an attacker who controls the length of arguments picks how far the rest is cut.
_KEEP_WHOLE = frozenset({"rule_id", "severity", "ts", "id", "event.ts", "event.type", "context.kind"})


def _cut_strings(value: Any, cap: int, cut: list[str], path: str) -> Any:
    if isinstance(value, str) and len(value) > cap and path not in _KEEP_WHOLE:
        cut.append(path)
        return value[: max(cap - 1, 0)] + "\u2026"
    if isinstance(value, Mapping):
        return {k: _cut_strings(v, cap, cut, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, cap, cut, f"{path}[]") for v in value]
    return value


def fit_alert(alert: Mapping[str, Any], build: Callable[[Mapping[str, Any]], bytes], limit: int) -> bytes:
    """`build(alert)` if it fits in `limit` bytes; else the message of an abridged alert that
    does: the events list dropped first, then every long string cut shorter and shorter. The
    alert says what was cut (`truncated`), and stays whole in the audit log and the store. A
    message is never cut in the middle, so its JSON (or CEF, LEEF) stays parseable."""
    message = build(alert)
    if len(message) <= limit:
        return message
    original = len(message)
    abridged = dict(alert)
    dropped = []
    if abridged.get("events"):
        dropped.append(f"events ({len(abridged['events'])})")
        abridged["events"] = []
    cap = 1024
    while True:
        cut: list[str] = []
        trial = _cut_strings(abridged, cap, cut, "")
        trial["truncated"] = {"original_bytes": original, "dropped": dropped,
                              "cut_to_chars": cap if cut else None, "fields": sorted(set(cut))[:20]}
        message = build(trial)
        if len(message) <= limit or cap <= 8:
            break
        cap //= 2
    if len(message) > limit:
        # Nothing but the identity of the alert is left to keep.
        core = {k: alert[k] for k in ("rule_id", "severity", "ts", "id") if k in alert}
        message = build(_cut_strings({**core, "truncated": {"original_bytes": original}}, 64, [], ""))
    if len(message) > limit:
        raise InputError(f"an alert cannot be made to fit a syslog message of {limit} bytes")
    return message


class SyslogSink(QueuedSender):
    """Sends each alert as one RFC 5424 message. UDP: one datagram each, fitted to `max_message`
    (at most once: UDP has no acknowledgement). TCP and TLS: `emit` queues the message (in
    `spool_dir` on disk, or in memory) and a sender thread delivers batches; a batch counts
    as delivered only once the receiver has read all of it (see `_send_batch`), otherwise it is
    sent again after a reconnect. A resent message keeps its `id`, so a receiver can drop
    the copy it may already hold (at least once, exactly once with deduplication by id)."""

    def __init__(self, host: str, port: int, transport: str = "udp", fmt: str = "json",
                 facility: str = "audit", app_name: str = "secpolicy", ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None,
                 server_name: str | None = None, timeout: float = 5.0, max_message: int = MAX_MESSAGE,
                 spool_dir: str | Path | None = None, drain_timeout: float = 10.0,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0, start: bool = True) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise InputError(f"syslog transport {transport!r} is not udp, tcp or tls")
        if facility not in FACILITIES:
            raise InputError(f"syslog facility {facility!r} is not one of {sorted(FACILITIES)}")
        lo, hi = MESSAGE_LIMITS[transport]
        if not lo <= max_message <= hi:
            raise InputError(f"syslog max message size {max_message} is outside {lo}..{hi} for {transport}")
        if spool_dir is not None and transport == "udp":
            raise InputError("a spool is for syslog over tcp or tls: UDP has no acknowledgement to wait for")
        format_alert({"rule_id": "probe", "severity": "info"}, fmt)
        self.host, self.port, self.transport, self.fmt = host, port, transport, fmt
        self.facility = FACILITIES[facility]
        self.app_name = app_name
        self.timeout = timeout
        self.max_message = max_message
        self.drain_timeout = drain_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
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
        self.spool: MemorySpool = MemorySpool()  # replaced by a disk spool when one is given
        self.delivered = self.resent = self.batches = 0
        self.last_error = ""
        self.init_sender()
        self.queued = transport != "udp"
        if spool_dir is not None:
            self.spool = Spool(spool_dir)
        if self.queued and start:
            self.start()

    @property
    def where(self) -> str:
        return f"syslog {self.transport}://{self.host}:{self.port}"

    # -- emit --------------------------------------------------------------------------------

    def message(self, alert: Mapping[str, Any], msg_id: str) -> bytes:
        return fit_alert(alert, lambda a: rfc5424(a, self.fmt, self.facility, self.app_name, msg_id=msg_id),
                         self.max_message)

    def emit(self, alert: Mapping[str, Any]) -> None:
        msg_id = uuid.uuid4().hex
        message = self.message(alert, msg_id)
        if not self.queued:
            self._send_datagram(message)
            return
        self.spool.put(message.decode("utf-8"), "syslog", msg_id)
        self.notify()

    def _send_datagram(self, message: bytes) -> None:
        try:
            if self._sock is None:
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sock.connect((self.host, self.port))
            self._sock.send(message)
        except OSError as exc:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            raise RuntimeFailure(f"{self.where}: {exc}") from exc

    # -- delivery ----------------------------------------------------------------------------

    def pending(self) -> int:
        return len(self.spool)

    def deliver_once(self) -> bool:
        """Send the oldest pending batch on a new connection; True when the receiver read all of
        it (the batch is then marked delivered), False when it must be sent again."""
        batch = self.spool.pending()[:_BATCH]
        if not batch:
            return True
        try:
            self._send_batch(batch)
        except (OSError, ssl.SSLError, RuntimeFailure) as exc:
            self.last_error = f"{self.where}: {exc}"
            self.resent += len(batch)
            return False
        self.spool.mark_done_many([e.id for e in batch])
        self.last_error = ""
        self.delivered += len(batch)
        self.batches += 1
        return True

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self._context is None:
            return raw
        try:
            return self._context.wrap_socket(raw, server_hostname=self.server_name)
        except BaseException:
            raw.close()
            raise

    def _send_batch(self, batch: list[SpoolEntry]) -> None:
        """Plain TCP acknowledges bytes to the peer's kernel, not to rsyslog: a receiver that
        stops loses what waits in its socket. So each batch ends with our end of stream, and
        counts as read only when the receiver, having read to it, closes in turn without a
        reset (a receiver that closes with data unread, or before all of it arrived, resets
        the connection). Over TLS the receiver's close_notify answering ours says the same."""
        sock = self._connect()
        try:
            sock.sendall(b"".join(_frame(e.body.encode("utf-8")) for e in batch))
            if isinstance(sock, ssl.SSLSocket):
                try:
                    raw = sock.unwrap()
                    raw.close()
                    return
                except (ssl.SSLError, OSError):
                    pass  # the receiver closed without close_notify: judge by TCP as below
            sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
            _await_clean_close(sock, self.timeout)
        finally:
            sock.close()

    def close(self, drain_timeout: float | None = None) -> None:
        """Give queued alerts `drain_timeout` seconds (default: the sink's); what remains stays
        in the spool for the next start (or, without one, is counted by `pending`)."""
        self.stop_sender(self.drain_timeout if drain_timeout is None else drain_timeout)
        self.spool.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _frame(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def _await_clean_close(sock: socket.socket, timeout: float) -> None:
    """After the receiver's end of stream: wait until the connection is closed and check that
    it closed without a reset. Linux resets a connection closed with unread data, and data
    that arrives after the close; a clean close means every byte was read."""
    fd_sock = sock if not isinstance(sock, ssl.SSLSocket) else socket.socket(fileno=os.dup(sock.fileno()))
    try:
        deadline = time.monotonic() + timeout
        while True:
            state = struct.unpack("B", fd_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]
            if state == _TCP_CLOSE:  # TIME_WAIT shows as CLOSE to the socket's owner
                break
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"the receiver did not close the connection (TCP state {state})")
            time.sleep(0.002)
        error = fd_sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise RuntimeFailure(f"the receiver reset the connection ({os.strerror(error)}): it did not read "
                                 f"everything")
    finally:
        if fd_sock is not sock:
            fd_sock.close()
