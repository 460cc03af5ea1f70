"""Worker processes that hash batches of files for a scan. Processes, not threads: the walk's
many short syscalls and per-file Python code in hashing threads would fight over the GIL."""

from __future__ import annotations

import fcntl
import marshal
import os
import queue
import struct
import subprocess
import sys
import threading
from typing import Any

from secpolicy.errors import RuntimeFailure
from secpolicy.fim import hasher

__all__ = ["HashPool"]

_HEAD = struct.Struct("<I")
_PIPE_SIZE = 1 << 20  # the default limit for unprivileged users (/proc/sys/fs/pipe-max-size)
_PER_FILE = 16 << 10  # opening, checking and closing a file costs about as much as hashing this


class _Worker:
    def __init__(self) -> None:
        # Run hasher.py as a script with -P (no script directory on sys.path): the worker
        # imports only hashlib and blake3, and owns no copy of our SQLite or directory fds.
        self.proc = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(hasher.__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        # Room for a few batches in each direction, so submitting to a busy worker does not
        # block the walk (the default 64 KiB holds about one batch).
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)  # type: ignore[union-attr]
            except (OSError, AttributeError):
                pass  # a smaller pipe only costs waiting
        self.results: queue.Queue[Any] = queue.Queue()
        # Bytes sent and bytes whose results came back, each written by one thread only.
        self.sent_bytes = 0
        self.done_bytes = 0
        self.sizes: queue.SimpleQueue[int] = queue.SimpleQueue()
        # A reader per worker keeps its stdout drained, so neither side can block the other
        # on a full pipe.
        self.reader = threading.Thread(target=self._read, name="fim-hash-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                head = out.read(4)
                if len(head) < 4:
                    break
                got = marshal.loads(out.read(_HEAD.unpack(head)[0]))
                self.done_bytes += self.sizes.get()
                self.results.put(got)
        except (OSError, ValueError, EOFError):
            pass
        self.results.put(None)

    def submit(self, jobs: list[Any], nbytes: int) -> None:
        data = marshal.dumps(jobs)
        assert self.proc.stdin is not None
        # Counted before the write: the reader may see the result before write() returns.
        self.sizes.put(nbytes)
        self.sent_bytes += nbytes
        try:
            self.proc.stdin.write(_HEAD.pack(len(data)) + data)
            self.proc.stdin.flush()
        except OSError as e:
            raise RuntimeFailure(f"hash worker process failed: {e.strerror}") from None

    @property
    def backlog(self) -> int:
        """Bytes submitted to this worker that it has not finished hashing."""
        return self.sent_bytes - self.done_bytes

    def result(self) -> list[Any]:
        got = self.results.get()
        if got is None:
            raise RuntimeFailure(f"hash worker process exited unexpectedly (status {self.proc.poll()})")
        return got  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class HashPool:
    """`submit(jobs) -> ticket`, then `result(ticket)` in submission order."""

    def __init__(self, workers: int) -> None:
        self.workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self.workers.append(_Worker())
        except OSError as e:
            self.close()
            raise RuntimeFailure(f"cannot start hash worker processes: {e.strerror}") from None

    def submit(self, jobs: list[Any], nbytes: int) -> _Worker:
        """Send `jobs` (`nbytes` to hash) to the worker with the least left to do: counted in
        bytes, not batches, since one batch may hold a file of hundreds of megabytes."""
        w = min(self.workers, key=lambda x: x.backlog)
        w.submit(jobs, nbytes + _PER_FILE * len(jobs))
        return w

    @staticmethod
    def result(ticket: _Worker) -> list[Any]:
        return ticket.result()

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []
