"""Worker processes that hash batches of files for a scan. Processes, not threads: the walk's
many short syscalls and per-file Python code in hashing threads would fight over the GIL."""

from __future__ import annotations

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
        self.results: queue.Queue[Any] = queue.Queue()
        self.outstanding = 0
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
                self.results.put(marshal.loads(out.read(_HEAD.unpack(head)[0])))
        except (OSError, ValueError, EOFError):
            pass
        self.results.put(None)

    def submit(self, jobs: list[Any]) -> None:
        data = marshal.dumps(jobs)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(_HEAD.pack(len(data)) + data)
            self.proc.stdin.flush()
        except OSError as e:
            raise RuntimeFailure(f"hash worker process failed: {e.strerror}") from None
        self.outstanding += 1

    def result(self) -> list[Any]:
        got = self.results.get()
        if got is None:
            raise RuntimeFailure(f"hash worker process exited unexpectedly (status {self.proc.poll()})")
        self.outstanding -= 1
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

    def submit(self, jobs: list[Any]) -> _Worker:
        w = min(self.workers, key=lambda x: x.outstanding)
        w.submit(jobs)
        return w

    @staticmethod
    def result(ticket: _Worker) -> list[Any]:
        return ticket.result()

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []
