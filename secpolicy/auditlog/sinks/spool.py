"""Alert queues that lose nothing: an append-only file of entries plus a file of delivered ids
(a crash at any point loses no entry), and an in-memory twin; shared by webhook and syslog."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from secpolicy.auditlog.log import write_all
from secpolicy.errors import RuntimeFailure

__all__ = ["MemorySpool", "QueuedSender", "Spool", "SpoolEntry"]


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    body: str
    content_type: str


def _append_durable(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        write_all(fd, data)  # a short write (full disk) raises, never tears an entry silently
        os.fsync(fd)
    finally:
        os.close(fd)


class MemorySpool:
    """The queue in memory: entries survive reconnects, not the end of the process. `Spool`
    keeps the same queue on disk."""

    directory: Path | None = None

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._pending: OrderedDict[str, SpoolEntry] = OrderedDict()
        self.corrupt = 0

    def put(self, body: str, content_type: str, entry_id: str | None = None) -> SpoolEntry:
        """Queue `body`; `entry_id` (default: a new one) is what a resend repeats."""
        entry = SpoolEntry(entry_id or uuid.uuid4().hex, body, content_type)
        with self._mutex:
            self._store(entry)
            self._pending[entry.id] = entry
        return entry

    def _store(self, entry: SpoolEntry) -> None:
        return None

    def pending(self) -> list[SpoolEntry]:
        with self._mutex:
            return list(self._pending.values())

    def first(self) -> SpoolEntry | None:
        with self._mutex:
            return next(iter(self._pending.values()), None)

    def __len__(self) -> int:
        return len(self._pending)

    def mark_done(self, entry_id: str) -> None:
        self.mark_done_many([entry_id])

    def mark_done_many(self, entry_ids: list[str]) -> None:
        with self._mutex:
            self._done(entry_ids)
            for entry_id in entry_ids:
                self._pending.pop(entry_id, None)
            self._after_done(len(entry_ids))

    def _done(self, entry_ids: list[str]) -> None:
        return None

    def _after_done(self, n: int) -> None:
        return None

    def mark_dead(self, entry: SpoolEntry, reason: str) -> None:
        self.mark_done(entry.id)

    def close(self) -> None:
        return None


class Spool(MemorySpool):
    """An append-only queue file plus an append-only file of delivered ids. An entry is pending
    until its id is in the delivered file; a crash at any point loses no entry."""

    QUEUE = "queue.jsonl"
    DONE = "delivered.log"
    DEAD = "dead.jsonl"

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise RuntimeFailure(f"{self.path}: spool is in use by another process") from exc
        super().__init__()
        self.directory = self.path
        self._done_count = 0
        self._load()

    def _load(self) -> None:
        done: set[str] = set()
        done_path = self.path / self.DONE
        if done_path.exists():
            done = {line.strip() for line in done_path.read_text(encoding="utf-8").splitlines() if line.strip()}
        self._done_count = len(done)
        queue_path = self.path / self.QUEUE
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

    def _store(self, entry: SpoolEntry) -> None:
        line = json.dumps({"id": entry.id, "body": entry.body, "content_type": entry.content_type},
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        _append_durable(self.path / self.QUEUE, line)

    def _done(self, entry_ids: list[str]) -> None:
        # One write and one fsync for a whole batch.
        _append_durable(self.path / self.DONE, b"".join(i.encode() + b"\n" for i in entry_ids))

    def _after_done(self, n: int) -> None:
        self._done_count += n
        if not self._pending:
            self._compact_empty()
        elif self._done_count >= 10_000:
            self._compact()

    def mark_dead(self, entry: SpoolEntry, reason: str) -> None:
        line = json.dumps({"id": entry.id, "body": entry.body, "content_type": entry.content_type,
                           "reason": reason}, separators=(",", ":")).encode() + b"\n"
        _append_durable(self.path / self.DEAD, line)
        self.mark_done(entry.id)

    def _compact_empty(self) -> None:
        # Queue first: emptying the delivered file first and crashing would redeliver everything.
        for name in (self.QUEUE, self.DONE):
            path = self.path / name
            if path.exists():
                with open(path, "r+b") as f:
                    f.truncate(0)
                    os.fsync(f.fileno())
        self._done_count = 0

    def _compact(self) -> None:
        tmp = self.path / (self.QUEUE + ".tmp")
        with open(tmp, "wb") as f:
            f.writelines(json.dumps({"id": e.id, "body": e.body, "content_type": e.content_type},
                                   separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for e in self._pending.values())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path / self.QUEUE)
        with open(self.path / self.DONE, "r+b") as f:
            f.truncate(0)
            os.fsync(f.fileno())
        self._done_count = 0

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class QueuedSender:
    """A sink's delivery thread: hands the queue to `deliver_once` while it has entries, backs
    off exponentially after a failed attempt, and stops on `stop_sender`."""

    spool: MemorySpool
    backoff_initial: float
    backoff_max: float

    def init_sender(self) -> None:
        self._wake = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def deliver_once(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}-delivery", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        with self._wake:
            self._wake.notify()

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

    def stop_sender(self, drain_timeout: float) -> None:
        """Give the queue `drain_timeout` seconds, then stop the thread (what remains stays queued)."""
        if self._thread is not None:
            self.wait_drained(drain_timeout)
            with self._wake:
                self._stop = True
                self._wake.notify_all()
            self._thread.join()
            self._thread = None
