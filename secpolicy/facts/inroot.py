"""Open a path of a scanned root the way a process chrooted there would see it, resolved by the
kernel in one call: openat2(2) with RESOLVE_IN_ROOT (Linux 5.6). Symlinks and `..` stay inside
the root, and a directory swapped for a symlink while we read cannot lead out of it, as it
could between resolving a path component by component and opening the result.

Python 3.11 has no wrapper for openat2; this calls it through libc's syscall(). Where the
kernel has none (ENOSYS), `available()` is False and callers resolve paths themselves."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
from typing import Any

__all__ = ["available", "open_in_root"]

_SYS_OPENAT2 = 437  # the same number on every architecture (the generic syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/<pid>/fd-style jumps
_RESOLVE_IN_ROOT = 0x10
_HOW = struct.Struct("=QQQ")  # struct open_how: flags, mode, resolve
_RETRIES = 16  # EAGAIN: a rename or mount raced a `..`; the kernel asks for another try


@functools.cache
def _syscall() -> Any:
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    return fn


def _call(dirfd: int, rel: bytes, flags: int) -> int:
    how = ctypes.create_string_buffer(_HOW.pack(flags, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS), _HOW.size)
    for _ in range(_RETRIES):
        fd: int = _syscall()(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(rel), how,
                             ctypes.c_size_t(_HOW.size))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), os.fsdecode(rel))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), os.fsdecode(rel))


@functools.cache
def available() -> bool:
    """Does this kernel have openat2 (tried once, on /)?"""
    try:
        os.close(_call(-100, b"/", os.O_PATH | os.O_CLOEXEC))  # AT_FDCWD
    except OSError as e:
        return e.errno not in (errno.ENOSYS, errno.EPERM)  # EPERM: a seccomp filter refusing it
    return True


def open_in_root(root: str, path: str, flags: int) -> int:
    """A descriptor for `path` (absolute, as seen inside `root`) opened with `flags`
    (O_CLOEXEC is added). Raises OSError as open(2) would: FileNotFoundError, ELOOP, ..."""
    rel = os.fsencode(path.lstrip("/") or ".")
    if b"\0" in rel:  # C would stop reading the name there; os.open refuses it too
        raise ValueError(f"embedded null byte: {path!r}")
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _call(rootfd, rel, flags | os.O_CLOEXEC)
    finally:
        os.close(rootfd)
