"""A scratch directory that hostile input (image layers, a remote host's files) is written into
and never escapes: paths resolved component by component from descriptors, links kept as data."""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

__all__ = ["ConfinedRoot", "Refused", "fd_closing", "make_dir", "make_dir_at", "make_hardlink", "make_symlink",
           "make_symlink_at", "parts_of", "prepare", "write_file", "write_file_at"]

_MAX_LINKS = 40  # as the kernel's own limit on symlinks followed in one lookup
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A member that would leave the root, or that the root cannot hold: skipped, and said so."""


def parts_of(name: str) -> list[str]:
    """The components of a member name; `..` is refused rather than resolved."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused("'..' in the path")
    return parts


@contextmanager
def fd_closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


class ConfinedRoot:
    """The scratch root, reached only through descriptors; symlinks in it are read, never
    followed by the kernel."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.fd)

    def resolve(self, parts: list[str]) -> list[str]:
        """`parts` with every symlink among them replaced by its target, read inside the root
        (an absolute target starts again from the root; `..` stops at the root)."""
        todo = list(parts)
        done: list[str] = []
        links = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            if name in ("", "."):
                continue
            try:
                with fd_closing(self.open_dir(done)) as d:
                    st = os.stat(name, dir_fd=d, follow_symlinks=False)
                    target = os.readlink(name, dir_fd=d) if stat.S_ISLNK(st.st_mode) else None
            except FileNotFoundError:
                done.append(name)
                continue
            if target is None:
                done.append(name)
                continue
            links += 1
            if links > _MAX_LINKS:
                raise Refused("too many levels of symbolic links")
            if target.startswith("/"):
                done = []
            todo = target.split("/") + todo
        return done

    def open_dir(self, parts: list[str], *, create: bool = False) -> int:
        """A descriptor of the directory at `parts` (already resolved), each component opened
        with O_NOFOLLOW relative to the previous one."""
        fd = os.dup(self.fd)
        try:
            for p in parts:
                try:
                    nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(p, 0o755, dir_fd=fd)
                    nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise Refused(f"{p!r} on the way is not a directory") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def remove(self, parent: int, name: str) -> None:
        """Remove `name` (a whole tree for a directory) inside `parent`, never through a link."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            with fd_closing(os.open(name, _DIR_FLAGS, dir_fd=parent)) as d:
                self.clear(d)
            os.rmdir(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    def clear(self, d: int) -> None:
        for child in os.listdir(d):
            self.remove(d, child)


def prepare(root: ConfinedRoot, name: str) -> tuple[int, str]:
    """(descriptor of the parent directory, last component) for a member, the parent created
    as needed and resolved inside the root."""
    parts = parts_of(name)
    if not parts:
        raise Refused("the root itself")
    parent = root.resolve(parts[:-1])
    return root.open_dir(parent, create=True), parts[-1]


def _set_meta(member: tarfile.TarInfo | None, fd: int | None, parent: int, name: str, owners: bool) -> None:
    if member is None:  # private copy: the caller keeps the real metadata elsewhere
        return
    mode = member.mode & 0o7777
    if owners:
        if fd is not None:
            os.fchown(fd, member.uid, member.gid)
        else:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
    if fd is not None:
        os.fchmod(fd, mode)  # after chown, which clears set-id bits
        os.utime(fd, (member.mtime, member.mtime))
    else:
        os.utime(name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)


def write_file(root: ConfinedRoot, name: str, data: IO[bytes] | None, member: tarfile.TarInfo | None,
               owners: bool = False) -> int:
    """A regular file at `name` with `data`, replacing whatever was there. Without `member` it
    stays private (0600, this user's)."""
    parent, last = prepare(root, name)
    with fd_closing(parent):
        return write_file_at(root, parent, last, data, member, owners)


def write_file_at(root: ConfinedRoot, parent: int, last: str, data: IO[bytes] | None,
                  member: tarfile.TarInfo | None, owners: bool = False) -> int:
    """write_file() in the directory `parent` (a descriptor from this root)."""
    root.remove(parent, last)
    fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
    with fd_closing(fd):
        written = 0
        if data is not None:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                os.write(fd, chunk)
                written += len(chunk)
        _set_meta(member, fd, parent, last, owners)
    return written


def _is_dir(parent: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def make_dir(root: ConfinedRoot, name: str, member: tarfile.TarInfo | None, owners: bool = False) -> None:
    """A directory at `name`; anything else there is replaced, a directory is kept with its
    contents. Without `member` it stays private (0700)."""
    parent, last = prepare(root, name)
    with fd_closing(parent):
        make_dir_at(root, parent, last, member, owners)


def make_dir_at(root: ConfinedRoot, parent: int, last: str, member: tarfile.TarInfo | None,
                owners: bool = False) -> None:
    if not _is_dir(parent, last):
        root.remove(parent, last)
        os.mkdir(last, 0o700, dir_fd=parent)
    if member is not None:
        with fd_closing(os.open(last, _DIR_FLAGS, dir_fd=parent)) as d:
            _set_meta(member, d, parent, last, owners)


def make_symlink(root: ConfinedRoot, name: str, target: str, member: tarfile.TarInfo | None = None,
                 owners: bool = False) -> None:
    parent, last = prepare(root, name)
    with fd_closing(parent):
        make_symlink_at(root, parent, last, target, member, owners)


def make_symlink_at(root: ConfinedRoot, parent: int, last: str, target: str, member: tarfile.TarInfo | None = None,
                    owners: bool = False) -> None:
    root.remove(parent, last)
    # The target is data: it is only ever read by ConfinedRoot.resolve and by the scan, both of
    # which keep it inside the root.
    os.symlink(target, last, dir_fd=parent)
    if owners and member is not None:
        os.chown(last, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)


def make_hardlink(root: ConfinedRoot, name: str, linkname: str) -> None:
    target_parts = root.resolve(parts_of(linkname))
    if not target_parts:
        raise Refused("hard link to the root")
    with fd_closing(root.open_dir(target_parts[:-1])) as tdir:
        st = os.stat(target_parts[-1], dir_fd=tdir, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise Refused("hard link to a directory")
        parent, last = prepare(root, name)
        with fd_closing(parent):
            root.remove(parent, last)
            os.link(target_parts[-1], last, src_dir_fd=tdir, dst_dir_fd=parent, follow_symlinks=False)
