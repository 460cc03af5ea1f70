"""Reading one watched entry from the descriptor of the inode the walk saw (hash, xattrs, flags),
opened relative to its parent directory; run as a script, the hashing worker of pool.py."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import threading
from typing import Any

__all__ = [
    "FS_IOC_GETFLAGS",
    "DirJob",
    "DirOutcome",
    "Outcome",
    "ReadJob",
    "new_hasher",
    "open_dir_at",
    "read_batch",
    "read_dir_fd",
    "read_flags",
    "read_path_entry",
    "read_regular",
    "read_xattrs_fd",
]

_NOATIME = getattr(os, "O_NOATIME", 0)
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# Small enough to stay in a core's L2 cache between the copy from the page cache and the
# hash reading it: 1 MiB cost ~25% more CPU per byte (20,000 files of /usr, 512 KiB L2).
_BUF_SIZE = 128 << 10
_SMALL = 1 << 16  # read in one call and hash from a fresh bytes object
_ATTEMPTS = 3
# _IOR('f', 1, long): the kernel writes an int.
FS_IOC_GETFLAGS = 0x80086601
_NO_FLAGS = (errno.ENOTTY, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)

_local = threading.local()
_noatime_ok = [True]  # becomes False after the first EPERM: not the owner and no CAP_FOWNER

Xattrs = tuple[tuple[str, bytes], ...]
# (digest, prefix digest or None, stat key of what was read or None, error or None,
#  xattrs or None (not read), xattr error or None, inode flags or None (not read or not
#  supported), content or None (not asked, or larger than asked))
Outcome = tuple[bytes, "bytes | None", "tuple[int, ...] | None", "str | None",
                "Xattrs | None", "str | None", "int | None", "bytes | None"]
# (index of the parent directory's descriptor in the batch, name in it, st_dev and st_ino
#  the walk saw, algorithm or None, prefix length or None, want xattrs, want flags,
#  content wanted up to this many bytes or -1)
ReadJob = tuple[int, str, int, int, "str | None", "int | None", bool, bool, int]
# A directory the walk holds open, read through that descriptor (it is in the batch):
# (its index in the batch, None, want xattrs, want flags); the outcome is read_dir_fd's.
DirJob = tuple[int, None, bool, bool]
DirOutcome = tuple["Xattrs | None", "str | None", "int | None", "str | None"]


def new_hasher(algo: str) -> Any:
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "blake3":
        import blake3  # only where a configuration asks for it: it costs start-up time

        return blake3.blake3()
    raise ValueError(algo)


def _buffer() -> tuple[bytearray, memoryview]:
    buf = getattr(_local, "buf", None)
    if buf is None:
        b = bytearray(_BUF_SIZE)
        buf = _local.buf = (b, memoryview(b))
    return buf


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid,
            st.st_size, st.st_blocks, st.st_mtime_ns, st.st_ctime_ns)


def _same_state(a: os.stat_result, b: os.stat_result) -> bool:
    """Nothing the record holds moved: content moves size/mtime/ctime, metadata, xattrs and
    flags move ctime."""
    return (a.st_ino == b.st_ino and a.st_dev == b.st_dev and a.st_size == b.st_size
            and a.st_mtime_ns == b.st_mtime_ns and a.st_ctime_ns == b.st_ctime_ns)


def read_xattrs_fd(fd: int | str) -> tuple[Xattrs | None, str | None]:
    """All extended attributes of an open descriptor (or of a /proc/self/fd path), sorted.
    Returns (xattrs, error); filesystems without xattr support give an empty tuple."""
    try:
        names = os.listxattr(fd)
    except OSError as e:
        if e.errno in _NO_XATTRS:
            return (), None
        return None, f"cannot list extended attributes: {e.strerror}"
    if not names:
        return (), None
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(fd, name)))
        except OSError as e:
            if e.errno == errno.ENODATA:  # removed between list and get
                continue
            return None, f"cannot read extended attribute {name}: {e.strerror}"
    return tuple(out), None


def read_flags(fd: int) -> int | None:
    """The inode flags (`chattr`/`lsattr`, FS_IOC_GETFLAGS) of an open file or directory;
    None where the filesystem has none."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError as e:
        if e.errno in _NO_FLAGS:
            return None
        raise
    return int.from_bytes(buf[:4], "little")


def _open_at(dirfd: int, name: str) -> int:
    if _noatime_ok[0] and _NOATIME:
        try:
            return os.open(name, _FLAGS | _NOATIME, dir_fd=dirfd)
        except PermissionError:
            _noatime_ok[0] = False
    return os.open(name, _FLAGS, dir_fd=dirfd)


def open_dir_at(dirfd: int, name: str) -> int:
    """Open a directory relative to its parent, never through a symlink put in its place."""
    if _noatime_ok[0] and _NOATIME:
        try:
            return os.open(name, _DIR_FLAGS | _NOATIME, dir_fd=dirfd)
        except PermissionError:
            pass  # O_NOATIME needs ownership or CAP_FOWNER; directories may differ
    return os.open(name, _DIR_FLAGS, dir_fd=dirfd)


def _open_error(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "vanished while being scanned"
    if e.errno == errno.ELOOP:
        return "replaced by a symbolic link while being scanned"
    if e.errno in (errno.ENXIO, errno.ENOTDIR):
        return "replaced while being scanned"
    return f"cannot open: {e.strerror}"


def _xattrs_by_opath(dirfd: int, name: str, dev: int, ino: int) -> tuple[Xattrs | None, str | None]:
    """Extended attributes of an entry that cannot be opened for reading (no permission):
    through an O_PATH descriptor, checked to be the inode the walk saw."""
    try:
        fd = os.open(name, _PATH_FLAGS, dir_fd=dirfd)
    except OSError as e:
        return None, _open_error(e)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (dev, ino):
            return None, "replaced while being scanned"
        return read_xattrs_fd(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _hash_fd(fd: int, size: int, algo: str | None, prefix_len: int | None,
             content_max: int) -> tuple[bytes, bytes | None, int, bytes | None]:
    """(digest, prefix digest, bytes read, content if asked and small enough) from offset 0."""
    h = new_hasher(algo) if algo is not None else None
    prefix: bytes | None = None
    keep = content_max >= 0 and size <= content_max
    if h is None and not keep:
        return b"", None, size, None
    if h is not None and prefix_len == 0:
        prefix = h.copy().digest()
    if size < _SMALL:
        data = os.pread(fd, size + 1, 0)
        if h is not None:
            if prefix_len is not None and prefix is None and prefix_len <= len(data):
                h.update(data[:prefix_len])
                prefix = h.copy().digest()
                h.update(data[prefix_len:])
            else:
                h.update(data)
        return (h.digest() if h is not None else b""), prefix, len(data), (data if keep else None)
    os.lseek(fd, 0, os.SEEK_SET)
    buf, mv = _buffer()
    chunks: list[bytes] | None = [] if keep else None
    total = 0
    rd = os.readv
    while True:
        n = rd(fd, (buf,))
        if n <= 0:
            break
        if chunks is not None:
            chunks.append(bytes(mv[:n]))
        if h is not None:
            if prefix_len is not None and prefix is None and total + n >= prefix_len:
                cut = prefix_len - total
                h.update(mv[:cut])
                prefix = h.copy().digest()
                h.update(mv[cut:n])
            else:
                h.update(mv[:n] if n < _BUF_SIZE else buf)
        total += n
        if chunks is not None and total > content_max:
            chunks = None  # grew past the limit while being read
    content = b"".join(chunks) if chunks is not None else None
    return (h.digest() if h is not None else b""), prefix, total, content


def read_regular(dirfd: int, name: str, dev: int, ino: int, algo: str | None,
                 prefix_len: int | None = None, want_xattrs: bool = False,
                 want_flags: bool = False, content_max: int = -1) -> Outcome:
    """Read the regular file the walk saw as inode (`dev`, `ino`) in the directory `dirfd`.

    Everything comes from one descriptor opened with O_NOFOLLOW|O_NONBLOCK relative to the
    directory: a symlink, FIFO or other inode put in the file's place is refused, and no
    path is resolved. Returns the stat key the values belong to (it may be newer than the
    walk's when the file changed in between), or an error message instead of raising: an
    unreadable, vanished, replaced or constantly changing file is reported, never read
    wrongly. With `prefix_len`, also the digest of the first `prefix_len` bytes."""
    try:
        fd = _open_at(dirfd, name)
    except OSError as e:
        xattrs, xerr = None, None
        if want_xattrs and e.errno == errno.EACCES:
            xattrs, xerr = _xattrs_by_opath(dirfd, name, dev, ino)
        return b"", None, None, _open_error(e), xattrs, xerr, None, None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or (before.st_dev, before.st_ino) != (dev, ino):
            return b"", None, None, "replaced while being scanned", None, None, None, None
        for _ in range(_ATTEMPTS):
            xattrs, xerr = read_xattrs_fd(fd) if want_xattrs else (None, None)
            flags = read_flags(fd) if want_flags else None
            digest, prefix, total, content = _hash_fd(fd, before.st_size, algo, prefix_len, content_max)
            after = os.fstat(fd)
            if total != before.st_size or not _same_state(before, after):
                before = after  # changed while being read: read it again
                continue
            return digest, prefix, _stat_key(before), None, xattrs, xerr, flags, content
        return (b"", None, None, f"changed while being hashed ({_ATTEMPTS} attempts)",
                None, None, None, None)
    except OSError as e:
        return b"", None, None, f"cannot read: {e.strerror}", None, None, None, None
    finally:
        os.close(fd)


def read_dir_fd(fd: int, want_xattrs: bool, want_flags: bool) -> tuple[Xattrs | None, str | None, int | None, str | None]:
    """(xattrs, xattr error, flags, flags error) of an open directory."""
    xattrs, xerr = read_xattrs_fd(fd) if want_xattrs else (None, None)
    flags, ferr = None, None
    if want_flags:
        try:
            flags = read_flags(fd)
        except OSError as e:
            ferr = f"cannot read inode flags: {e.strerror}"
    return xattrs, xerr, flags, ferr


def read_path_entry(dirfd: int, name: str, dev: int, ino: int, want_xattrs: bool,
                    want_link: bool) -> tuple[Xattrs | None, bytes, str | None]:
    """(xattrs, link target, error) of a symlink, device, FIFO or socket, read through an
    O_PATH descriptor checked to be the inode the walk saw (such entries are never opened
    for reading: a device or FIFO could block or act on an open)."""
    try:
        fd = os.open(name, _PATH_FLAGS, dir_fd=dirfd)
    except OSError as e:
        return None, b"", _open_error(e)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (dev, ino):
            return None, b"", "replaced while being scanned"
        link = b""
        if want_link:
            try:
                link = os.fsencode(os.readlink("", dir_fd=fd))
            except OSError as e:
                return None, b"", f"cannot read link: {e.strerror}"
        if not want_xattrs:
            return None, link, None
        xattrs, xerr = read_xattrs_fd(f"/proc/self/fd/{fd}")
        return xattrs, link, xerr
    finally:
        os.close(fd)


def read_batch(jobs: list[ReadJob | DirJob], dirfds: list[int]) -> list[Outcome | DirOutcome]:
    """Read a batch of regular files and open directories; runs in a worker process (no
    shared GIL with the walk)."""
    return [read_regular(dirfds[j[0]], *j[1:]) if j[1] is not None  # type: ignore[arg-type]
            else read_dir_fd(dirfds[j[0]], j[2], j[3]) for j in jobs]


def _recv_exact(sock: Any, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError
        got += k
    return bytes(buf)


def _serve() -> None:
    """Worker loop: a header (payload length, descriptor count) carrying the batch's
    directory descriptors, then the marshalled jobs; results go back on the same socket.
    Ends quietly when the socket closes. Ctrl-C is the parent's to handle: it stops us."""
    import array
    import marshal
    import signal
    import socket
    import struct

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=0)
    head = struct.Struct("<II")
    out_head = struct.Struct("<I")
    try:
        while True:
            msg, anc, flags, _ = sock.recvmsg(head.size, socket.CMSG_SPACE(256 * 4))
            if not msg:
                return
            fds = array.array("i")
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            try:
                if len(msg) < head.size:
                    msg += _recv_exact(sock, head.size - len(msg))
                n, nfds = head.unpack(msg)
                if flags & socket.MSG_CTRUNC or len(fds) != nfds:
                    raise SystemExit("fim hash worker: directory descriptors lost in transit")
                jobs = marshal.loads(_recv_exact(sock, n))
                out = marshal.dumps(read_batch(jobs, list(fds)))
            finally:
                for fd in fds:
                    os.close(fd)
            sock.sendall(out_head.pack(len(out)) + out)
    except (EOFError, ConnectionError, BrokenPipeError):
        return  # the parent went away (or stopped us): nothing left to do


if __name__ == "__main__":
    _serve()
