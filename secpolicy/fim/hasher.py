"""Content hashing for FIM: open without following symlinks, check that the opened file is
the one the walk saw, stream it through sha256/blake3, and notice changes made meanwhile."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from typing import Any

import blake3

__all__ = ["HashOutcome", "hash_batch", "hash_file", "new_hasher"]

_NOATIME = getattr(os, "O_NOATIME", 0)
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BUF_SIZE = 1 << 20
_SMALL = 1 << 16  # read in one call and hash from a fresh bytes object
_ATTEMPTS = 3

_local = threading.local()
_noatime_ok = [True]  # becomes False after the first EPERM: not the owner and no CAP_FOWNER

# (digest, prefix digest or None, stat_key of the hashed file or None, error message or None)
HashOutcome = tuple[bytes, "bytes | None", "tuple[int, ...] | None", "str | None"]
# (path to open, st_dev and st_ino the walk saw, algorithm, prefix length or None)
HashJob = tuple[str, int, int, str, "int | None"]


def new_hasher(algo: str) -> Any:
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "blake3":
        return blake3.blake3()
    raise ValueError(algo)


def _buffer() -> tuple[bytearray, memoryview]:
    buf = getattr(_local, "buf", None)
    if buf is None:
        b = bytearray(_BUF_SIZE)
        buf = _local.buf = (b, memoryview(b))
    return buf


def _same_content_state(a: os.stat_result, b: os.stat_result) -> bool:
    return (
        a.st_ino == b.st_ino
        and a.st_dev == b.st_dev
        and a.st_size == b.st_size
        and a.st_mtime_ns == b.st_mtime_ns
        and a.st_ctime_ns == b.st_ctime_ns
    )


def _open(fspath: str) -> int:
    if _noatime_ok[0] and _NOATIME:
        try:
            return os.open(fspath, _FLAGS | _NOATIME)
        except PermissionError:
            _noatime_ok[0] = False
    return os.open(fspath, _FLAGS)


def hash_batch(jobs: list[HashJob]) -> list[HashOutcome]:
    """Hash a batch of files; runs in a worker process (no shared GIL with the walk)."""
    return [hash_file(*job) for job in jobs]


def hash_file(fspath: str, dev: int, ino: int, algo: str, prefix_len: int | None = None) -> HashOutcome:
    """Hash the regular file the walk saw as inode (`dev`, `ino`).

    Returns the stat_key the digest belongs to (it may be newer than the walk's when the file changed
    between the walk and the read), or an error message instead of raising: an unreadable,
    vanished, replaced or constantly changing file is reported, never hashed wrongly. With
    `prefix_len`, also returns the digest of the first `prefix_len` bytes (growing files)."""
    for _ in range(_ATTEMPTS):
        try:
            fd = _open(fspath)
        except FileNotFoundError:
            return b"", None, None, "vanished while being scanned"
        except OSError as e:
            if e.errno == errno.ELOOP:
                return b"", None, None, "replaced by a symbolic link while being scanned"
            return b"", None, None, f"cannot open: {e.strerror}"
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or (before.st_dev, before.st_ino) != (dev, ino):
                return b"", None, None, "replaced while being scanned"
            size = before.st_size
            h = new_hasher(algo)
            prefix: bytes | None = None
            if prefix_len is not None and prefix_len == 0:
                prefix = h.copy().digest()
            total = 0
            if size < _SMALL:
                data = os.read(fd, size + 1)
                total = len(data)
                if prefix_len is not None and prefix is None and prefix_len <= total:
                    h.update(data[:prefix_len])
                    prefix = h.copy().digest()
                    h.update(data[prefix_len:])
                else:
                    h.update(data)
                if total == size + 1:  # grew while being read
                    continue
            else:
                buf, mv = _buffer()
                rd = os.readv
                while True:
                    n = rd(fd, (buf,))
                    if n <= 0:
                        break
                    if prefix_len is not None and prefix is None and total + n >= prefix_len:
                        cut = prefix_len - total
                        h.update(mv[:cut])
                        prefix = h.copy().digest()
                        h.update(mv[cut:n])
                    else:
                        h.update(mv[:n] if n < _BUF_SIZE else buf)
                    total += n
            after = os.fstat(fd)
            if total != size or not _same_content_state(before, after):
                continue  # changed while being hashed: try again
            return h.digest(), prefix, (
                before.st_mode, before.st_ino, before.st_nlink, before.st_uid, before.st_gid,
                before.st_size, before.st_blocks, before.st_mtime_ns, before.st_ctime_ns,
            ), None
        except OSError as e:
            return b"", None, None, f"cannot read: {e.strerror}"
        finally:
            os.close(fd)
    return b"", None, None, f"changed while being hashed ({_ATTEMPTS} attempts)"


def _serve() -> None:
    """Worker loop: length-prefixed marshal batches of jobs in on stdin, results out on
    stdout, until stdin closes. Started by `pool.HashPool` as a script, so it imports only
    this module's few dependencies."""
    import marshal
    import struct
    import sys

    rd, wr = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = rd.read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack("<I", head)
        jobs = marshal.loads(rd.read(n))
        out = marshal.dumps(hash_batch(jobs))
        wr.write(struct.pack("<I", len(out)) + out)
        wr.flush()


if __name__ == "__main__":
    _serve()
