"""Webhook delivery that loses nothing: every alert is appended and fsynced to an on-disk spool
before `emit` returns, then POSTed in order with retries and backoff, and marked delivered."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from secpolicy.auditlog.sinks.formats import format_alert
from secpolicy.errors import InputError, RuntimeFailure

__all__ = ["DeliveryResult", "Spool", "SpoolEntry", "WebhookSink", "post"]

_CONTENT_TYPES = {"json": "application/json", "ocsf": "application/json", "cef": "text/plain",
                  "leef": "text/plain"}


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    body: str
    content_type: str


def _append_durable(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """An append-only queue file plus an append-only file of delivered ids. An entry is pending
    until its id is in the delivered file; a crash at any point loses no entry."""

    QUEUE = "queue.jsonl"
    DONE = "delivered.log"
    DEAD = "dead.jsonl"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise RuntimeFailure(f"{self.directory}: spool is in use by another process") from exc
        self._mutex = threading.Lock()
        self.corrupt = 0
        self._done_count = 0
        self._pending: OrderedDict[str, SpoolEntry] = OrderedDict()
        self._load()

    def _load(self) -> None:
        done: set[str] = set()
        done_path = self.directory / self.DONE
        if done_path.exists():
            done = {line.strip() for line in done_path.read_text(encoding="utf-8").splitlines() if line.strip()}
        self._done_count = len(done)
        queue_path = self.directory / self.QUEUE
        if not queue_path.exists():
            return
        data = queue_path.read_bytes()
        if data and not data.endswith(b"\n"):
            # The tail of a put() cut by a crash: that put never returned, so its caller did
            # not count on it; drop the fragment so the file stays line-aligned.
            cut = data.rfind(b"\n") + 1
            with open(queue_path, "r+b") as f:
                f.truncate(cut)
                os.fsync(f.fileno())
            data = data[:cut]
            self.corrupt += 1
        for line in data.splitlines():
            try:
                obj = json.loads(line)
                entry = SpoolEntry(str(obj["id"]), str(obj["body"]), str(obj["content_type"]))
            except (ValueError, KeyError, TypeError):
                self.corrupt += 1
                continue
            if entry.id not in done:
                self._pending[entry.id] = entry

    def put(self, body: str, content_type: str) -> SpoolEntry:
        entry = SpoolEntry(uuid.uuid4().hex, body, content_type)
        line = json.dumps({"id": entry.id, "body": body, "content_type": content_type},
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        with self._mutex:
            _append_durable(self.directory / self.QUEUE, line)
            self._pending[entry.id] = entry
        return entry

    def pending(self) -> list[SpoolEntry]:
        with self._mutex:
            return list(self._pending.values())

    def first(self) -> SpoolEntry | None:
        with self._mutex:
            return next(iter(self._pending.values()), None)

    def __len__(self) -> int:
        return len(self._pending)

    def mark_done(self, entry_id: str) -> None:
        with self._mutex:
            _append_durable(self.directory / self.DONE, entry_id.encode() + b"\n")
            self._pending.pop(entry_id, None)
            self._done_count += 1
            if not self._pending:
                self._compact_empty()
            elif self._done_count >= 10_000:
                self._compact()

    def mark_dead(self, entry: SpoolEntry, reason: str) -> None:
        line = json.dumps({"id": entry.id, "body": entry.body, "content_type": entry.content_type,
                           "reason": reason}, separators=(",", ":")).encode() + b"\n"
        _append_durable(self.directory / self.DEAD, line)
        self.mark_done(entry.id)

    def _compact_empty(self) -> None:
        # Queue first: emptying the delivered file first and crashing would redeliver everything.
        for name in (self.QUEUE, self.DONE):
            path = self.directory / name
            if path.exists():
                with open(path, "r+b") as f:
                    f.truncate(0)
                    os.fsync(f.fileno())
        self._done_count = 0

    def _compact(self) -> None:
        tmp = self.directory / (self.QUEUE + ".tmp")
        with open(tmp, "wb") as f:
            f.writelines(json.dumps({"id": e.id, "body": e.body, "content_type": e.content_type},
                                   separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for e in self._pending.values())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.directory / self.QUEUE)
        with open(self.directory / self.DONE, "r+b") as f:
            f.truncate(0)
            os.fsync(f.fileno())
        self._done_count = 0

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


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


class WebhookSink:
    """POSTs alerts to `url` from a background thread, oldest first; the `Idempotency-Key`
    header carries the spool id, so a receiver can drop the duplicate that a crash between a
    successful POST and its delivered mark would cause."""

    def __init__(self, url: str, spool_dir: str | Path, fmt: str = "json", timeout: float = 5.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 headers: Mapping[str, str] | None = None, ca_file: str | None = None,
                 start: bool = True) -> None:
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
        self.context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
        self.spool = Spool(spool_dir)
        self.delivered = 0
        self.retries = 0
        self.dead = 0
        self.last_error = ""
        self._wake = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)
            self._thread.start()

    def emit(self, alert: Mapping[str, Any]) -> None:
        self.spool.put(format_alert(alert, self.fmt), _CONTENT_TYPES[self.fmt])
        with self._wake:
            self._wake.notify()

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
            self.delivered += 1
            return True
        self.last_error = result.detail
        if not result.retry:
            self.spool.mark_dead(entry, result.detail)
            self.dead += 1
            return True
        self.retries += 1
        return False

    def _run(self) -> None:
        backoff = self.backoff_initial
        while True:
            with self._wake:
                while not self._stop and len(self.spool) == 0:
                    self._wake.wait()
                if self._stop:
                    return
            if self.deliver_once():
                backoff = self.backoff_initial
                continue
            with self._wake:
                if self._wake.wait_for(lambda: self._stop, timeout=backoff):
                    return
            backoff = min(backoff * 2, self.backoff_max)

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.spool) == 0

    def close(self, drain_timeout: float = 5.0) -> None:
        """Give pending alerts `drain_timeout` seconds; what remains stays in the spool for the
        next start."""
        if self._thread is not None:
            self.wait_drained(drain_timeout)
            with self._wake:
                self._stop = True
                self._wake.notify_all()
            self._thread.join()
            self._thread = None
        self.spool.close()
