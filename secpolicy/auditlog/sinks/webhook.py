"""Webhook delivery that loses nothing: every alert is appended and fsynced to an on-disk spool
before `emit` returns, then POSTed in order with retries and backoff, and marked delivered."""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from secpolicy.auditlog.sinks.formats import format_alert
from secpolicy.auditlog.sinks.spool import QueuedSender, Spool, SpoolEntry
from secpolicy.errors import InputError

__all__ = ["DeliveryResult", "Spool", "SpoolEntry", "WebhookSink", "post"]

_CONTENT_TYPES = {"json": "application/json", "ocsf": "application/json", "cef": "text/plain",
                  "leef": "text/plain"}


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    retry: bool
    detail: str


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
         context: ssl.SSLContext | None = None) -> DeliveryResult:
    """One POST; a connection failure, timeout, 408, 429 or 5xx is worth retrying."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return DeliveryResult(False, True, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    if 200 <= status < 300:
        return DeliveryResult(True, False, str(status))
    return DeliveryResult(False, status in (408, 429) or status >= 500, f"HTTP {status}")


class WebhookSink(QueuedSender):
    """POSTs alerts to `url` from a background thread, oldest first; the `Idempotency-Key`
    header carries the spool id, so a receiver can drop the duplicate that a crash between a
    successful POST and its delivered mark would cause."""

    def __init__(self, url: str, spool_dir: str | Path, fmt: str = "json", timeout: float = 5.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 headers: Mapping[str, str] | None = None, ca_file: str | None = None,
                 start: bool = True, drain_timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"webhook URL {url!r} is not http(s)://host[:port]/path")
        if fmt not in _CONTENT_TYPES:
            raise InputError(f"unknown alert format {fmt!r}")
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise InputError("backoff needs 0 < initial <= max")
        self.url = url
        self.fmt = fmt
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.headers = dict(headers or {})
        self.drain_timeout = drain_timeout
        self.context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
        self.spool = Spool(spool_dir)
        self.spool_dir = Path(spool_dir)
        self.delivered = 0
        self.retries = 0
        self.dead = 0
        self.last_error = ""
        self._rejected: list[str] = []
        self._rejected_lock = threading.Lock()
        self.init_sender()
        if start:
            self.start()

    def emit(self, alert: Mapping[str, Any]) -> None:
        self.spool.put(format_alert(alert, self.fmt), _CONTENT_TYPES[self.fmt])
        self.notify()

    def deliver_once(self) -> bool:
        """Try the oldest pending entry; False when it must be retried later."""
        entry = self.spool.first()
        if entry is None:
            return True
        headers = {"Content-Type": entry.content_type, "Idempotency-Key": entry.id,
                   "User-Agent": "secpolicy-webhook", **self.headers}
        result = post(self.url, entry.body.encode("utf-8"), headers, self.timeout, self.context)
        if result.ok:
            self.spool.mark_done(entry.id)
            self.last_error = ""
            self.delivered += 1
            return True
        self.last_error = result.detail
        if not result.retry:
            self.spool.mark_dead(entry, result.detail)
            self.dead += 1
            # A refused alert is not delivered: a failure of this sink (kept until taken), not
            # only a `last_error` that the next alert's success would clear before anyone saw it.
            with self._rejected_lock:
                if len(self._rejected) < 10_000:  # bounded when nobody takes them (dead.jsonl has all)
                    self._rejected.append(f"the receiver refused an alert ({result.detail}): not delivered, "
                                          f"kept in {self.spool_dir / Spool.DEAD} (id {entry.id})")
            return True
        self.retries += 1
        return False

    def take_rejected(self) -> list[str]:
        """The alerts the receiver refused (4xx other than 408 and 429) since the last call."""
        with self._rejected_lock:
            out, self._rejected = self._rejected, []
        return out

    def close(self, drain_timeout: float | None = None) -> None:
        """Give pending alerts `drain_timeout` seconds (default: the sink's); what remains stays
        in the spool for the next start."""
        self.stop_sender(self.drain_timeout if drain_timeout is None else drain_timeout)
        self.spool.close()
