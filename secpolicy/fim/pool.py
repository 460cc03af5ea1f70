"""Worker processes that read batches of files for a scan, each batch sent with its parent
directories' descriptors (workers never open a path). Processes: threads would share the GIL."""

from __future__ import annotations

import array
import marshal
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
from typing import Any

from secpolicy.errors import RuntimeFailure
from secpolicy.fim import hasher

__all__ = ["HashPool"]

_HEAD = struct.Struct("<II")
_RESULT_HEAD = struct.Struct("<I")
_SOCK_BUF = 1 << 20  # room for a few batches in flight each way
_PER_FILE = 16 << 10  # opening, checking and closing a file costs about as much as hashing this


class _Worker:
    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for s in (parent, child):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, _SOCK_BUF)
                except OSError:
                    pass  # a smaller buffer only costs waiting
        try:
            # Run hasher.py as a script with -P (no script directory on sys.path): the worker
            # imports only the standard library, and owns no copy of our SQLite or other fds.
            self.proc = subprocess.Popen(
                [sys.executable, "-P", os.path.abspath(hasher.__file__)],
                stdin=child.fileno(),
                stdout=subprocess.DEVNULL,
                close_fds=True,
                # Its own process group: Ctrl-C at the terminal reaches only the parent, which
                # stops the workers itself (no traceback from them).
                process_group=0,
            )
        finally:
            child.close()
        self.sock = parent
        self.results: queue.Queue[Any] = queue.Queue()
        # Bytes sent and bytes whose results came back, each written by one thread only.
        self.sent_bytes = 0
        self.done_bytes = 0
        self.sizes: queue.SimpleQueue[int] = queue.SimpleQueue()
        # A reader per worker keeps the socket drained, so neither side can block the other.
        self.reader = threading.Thread(target=self._read, name="fim-hash-reader", daemon=True)
        self.reader.start()

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                return None
            got += k
        return bytes(buf)

    def _read(self) -> None:
        try:
            while True:
                head = self._recv_exact(_RESULT_HEAD.size)
                if head is None:
                    break
                body = self._recv_exact(_RESULT_HEAD.unpack(head)[0])
                if body is None:
                    break
                got = marshal.loads(body)
                self.done_bytes += self.sizes.get()
                self.results.put(got)
        except (OSError, ValueError, EOFError):
            pass
        self.results.put(None)

    def submit(self, jobs: list[Any], fds: list[int], nbytes: int) -> None:
        data = marshal.dumps(jobs)
        # Counted before the write: the reader may see the result before sendall returns.
        self.sizes.put(nbytes)
        self.sent_bytes += nbytes
        try:
            self.sock.sendmsg([_HEAD.pack(len(data), len(fds))],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            self.sock.sendall(data)
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

    def close(self, abort: bool = False) -> None:
        if abort:
            self.proc.kill()  # interrupted: what it was reading no longer matters
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        self.sock.close()


class HashPool:
    """`submit(jobs, fds) -> ticket`, then `result(ticket)` in submission order."""

    def __init__(self, workers: int) -> None:
        self.workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self.workers.append(_Worker())
        except OSError as e:
            self.close(abort=True)
            raise RuntimeFailure(f"cannot start hash worker processes: {e.strerror}") from None

    def submit(self, jobs: list[Any], fds: list[int], nbytes: int) -> _Worker:
        """Send `jobs` (`nbytes` to hash) with the directory descriptors they refer to, to the
        worker with the least left to do: counted in bytes, not batches, since one batch may
        hold a file of hundreds of megabytes. The caller keeps (and closes) its `fds`."""
        w = min(self.workers, key=lambda x: x.backlog)
        w.submit(jobs, fds, nbytes + _PER_FILE * len(jobs))
        return w

    @staticmethod
    def result(ticket: _Worker) -> list[Any]:
        return ticket.result()

    def close(self, abort: bool = False) -> None:
        for w in self.workers:
            w.close(abort)
        self.workers = []
