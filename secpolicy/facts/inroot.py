"""Open a path of a scanned root the way a process chrooted there would see it. Symlinks and
`..` stay inside the root, and a directory swapped for a symlink while we read cannot lead out
of it, as it could between resolving a path to a string and opening that string.

Where the kernel has openat2(2) with RESOLVE_IN_ROOT (Linux 5.6), it resolves the path in one
call; Python 3.11 has no wrapper for it, so it is called through libc's syscall(). Where it has
none (ENOSYS, or a seccomp filter refusing it), `available()` is False and the path is resolved
here the same way, one component at a time from directory descriptors: each opened with
O_NOFOLLOW relative to the one before, each symlink read from the descriptor of the link that
was opened, and `..` going back to a descriptor already held, never above the root's. A link
is only ever read as text there, so a /proc magic link (which openat2 refuses with ELOOP) is a
path inside the root like any other."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
import struct
from typing import Any

__all__ = ["available", "open_in_root"]

_SYS_OPENAT2 = 437  # the same number on every architecture (the generic syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/<pid>/fd-style jumps
_RESOLVE_IN_ROOT = 0x10
_HOW = struct.Struct("=QQQ")  # struct open_how: flags, mode, resolve
_RETRIES = 16  # EAGAIN: a rename or mount raced a `..`; the kernel asks for another try
_MAX_LINKS = 40  # symlinks followed in one lookup, as the kernel allows
_STEP_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@functools.cache
def _syscall() -> Any:
    # Declared as openat2 is called: syscall(nr, dirfd, path, how, size), so plain ints and
    # bytes go in without a ctypes object built for each argument of each call.
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    return fn


@functools.lru_cache(maxsize=64)
def _how(flags: int) -> bytes:
    """struct open_how for `flags` (the kernel only reads it)."""
    return _HOW.pack(flags, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)


def _call(dirfd: int, rel: bytes, flags: int) -> int:
    how = _how(flags)
    call = _syscall()
    for _ in range(_RETRIES):
        fd: int = call(_SYS_OPENAT2, dirfd, rel, how, _HOW.size)
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
    (O_CLOEXEC is added), by openat2 where the kernel has it and component by component
    where it has not. Raises OSError as open(2) would: FileNotFoundError, ELOOP, ..."""
    rel = os.fsencode(path.lstrip("/") or ".")
    if b"\0" in rel:  # C would stop reading the name there; os.open refuses it too
        raise ValueError(f"embedded null byte: {path!r}")
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if available():
            return _call(rootfd, rel, flags | os.O_CLOEXEC)
        name = os.fsdecode(rel)
        try:
            return _resolve(rootfd, name, flags | os.O_CLOEXEC)
        except OSError as e:  # named as openat2's errors are
            raise OSError(e.errno, e.strerror, name) from None
    finally:
        os.close(rootfd)


def _resolve(rootfd: int, rel: str, flags: int) -> int:
    """openat2(rootfd, rel, flags, RESOLVE_IN_ROOT) without openat2. `dirs` holds a
    descriptor of every directory from the root down to where the lookup stands (the root's
    is the caller's), so `..` returns to one of them and never passes the root."""
    follow_last = not flags & os.O_NOFOLLOW
    todo, dir_at_end = _components(rel)
    dirs = [rootfd]
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(dirs) > 1:
                    os.close(dirs.pop())
                continue
            if not todo and not dir_at_end:  # the last component: opened with the caller's flags
                fd, target = _open_last(dirs[-1], name, flags, follow_last)
                if target is None:
                    return fd
            else:
                fd = os.open(name, _STEP_FLAGS, dir_fd=dirs[-1])
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode):
                    dirs.append(fd)
                    continue
                try:
                    if not stat.S_ISLNK(mode):
                        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                    target = os.readlink("", dir_fd=fd)  # readlinkat(2) of the link opened
                finally:
                    os.close(fd)
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            if target.startswith("/"):  # absolute: from the root again, as under chroot
                while len(dirs) > 1:
                    os.close(dirs.pop())
            more, must_be_dir = _components(target)
            if not todo:  # the link was the last component: its target now is
                dir_at_end = dir_at_end or must_be_dir
            todo.extend(more)
        # Ends in a directory: "/", "..", "." or a trailing slash.
        return os.open(".", flags, dir_fd=dirs[-1])
    finally:
        for d in dirs[1:]:
            os.close(d)


def _components(rel: str) -> tuple[list[str], bool]:
    """(the components of `rel`, last first, to be popped; must what it names be a directory
    (a trailing slash, `.` or `..`), its last link followed?)"""
    raw = rel.split("/")
    return [p for p in reversed(raw) if p not in ("", ".")], raw[-1] in ("", ".", "..")


def _open_last(dfd: int, name: str, flags: int, follow: bool) -> tuple[int, str | None]:
    """(descriptor, None) for the last component opened with `flags`, or (-1, its target) when
    it is a symlink to follow. O_NOFOLLOW makes the open itself refuse a link (ELOOP, or ENOTDIR
    with O_DIRECTORY; an O_PATH open gives the link), so nothing is followed by the kernel."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError as e:
        if not follow or e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        fd = os.open(name, _STEP_FLAGS, dir_fd=dfd)
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                raise  # not a link (any more): the open's own error stands
            return -1, os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
    if follow and flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
        try:
            return -1, os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
    return fd, None
