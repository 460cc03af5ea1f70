"""Applies image layers, in order, to a scratch root that nothing can write outside of: every
path is resolved component by component from a directory descriptor, links only as data inside
the root (absolute ones as chroot would read them), whiteouts and opaque directories per OCI."""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from secpolicy.errors import InputError, IntegrityError, RuntimeFailure

__all__ = ["ExtractLimits", "ExtractReport", "apply_layers"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 40  # as the kernel's own limit on symlinks followed in one lookup
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on what a hostile image may make us write."""

    max_bytes: int = 32 << 30
    max_entries: int = 2_000_000
    max_path: int = 4096
    max_depth: int = 256  # path components (removal afterwards recurses once per level)


@dataclass
class ExtractReport:
    entries: int = 0
    bytes: int = 0
    whiteouts: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member, why), shown in results

    def skip(self, name: str, why: str) -> None:
        if len(self.skipped) < 1000:
            self.skipped.append((name, why))


class _Refused(Exception):
    pass


def _parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _Refused("'..' in the path")
    return parts


@contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


class _Root:
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
                with _fd(self.open_dir(done)) as d:
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
                raise _Refused("too many levels of symbolic links")
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
                        raise _Refused(f"{p!r} on the way is not a directory") from None
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
            with _fd(os.open(name, _DIR_FLAGS, dir_fd=parent)) as d:
                self.clear(d)
            os.rmdir(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    def clear(self, d: int) -> None:
        for child in os.listdir(d):
            self.remove(d, child)


def _prepare(root: _Root, name: str) -> tuple[int, str]:
    """(descriptor of the parent directory, last component) for a member, the parent created
    as needed and resolved inside the root."""
    parts = _parts(name)
    if not parts:
        raise _Refused("the root itself")
    parent = root.resolve(parts[:-1])
    return root.open_dir(parent, create=True), parts[-1]


def _set_meta(member: tarfile.TarInfo, fd: int | None, parent: int, name: str, owners: bool) -> None:
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


def _write_file(root: _Root, member: tarfile.TarInfo, data: IO[bytes] | None, owners: bool) -> int:
    parent, last = _prepare(root, member.name)
    with _fd(parent):
        root.remove(parent, last)
        fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        with _fd(fd):
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


def _is_not_dir(parent: int, name: str) -> bool:
    try:
        return not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _make_dir(root: _Root, member: tarfile.TarInfo, owners: bool) -> None:
    parent, last = _prepare(root, member.name)
    with _fd(parent):
        if _is_not_dir(parent, last):
            root.remove(parent, last)
        if not _is_dir(parent, last):
            os.mkdir(last, 0o700, dir_fd=parent)
        with _fd(os.open(last, _DIR_FLAGS, dir_fd=parent)) as d:
            _set_meta(member, d, parent, last, owners)


def _make_symlink(root: _Root, member: tarfile.TarInfo, owners: bool) -> None:
    parent, last = _prepare(root, member.name)
    with _fd(parent):
        root.remove(parent, last)
        # The target is data: it is only ever read by _Root.resolve and by the scan, both of
        # which keep it inside the root.
        os.symlink(member.linkname, last, dir_fd=parent)
        if owners:
            os.chown(last, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)


def _make_hardlink(root: _Root, member: tarfile.TarInfo) -> None:
    target_parts = root.resolve(_parts(member.linkname))
    if not target_parts:
        raise _Refused("hard link to the root")
    with _fd(root.open_dir(target_parts[:-1])) as tdir:
        st = os.stat(target_parts[-1], dir_fd=tdir, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise _Refused("hard link to a directory")
        parent, last = _prepare(root, member.name)
        with _fd(parent):
            root.remove(parent, last)
            os.link(target_parts[-1], last, src_dir_fd=tdir, dst_dir_fd=parent, follow_symlinks=False)


def _whiteouts(root: _Root, tar: tarfile.TarFile, report: ExtractReport) -> None:
    """Deletions of one layer apply to the layers below it: done before its additions."""
    for m in tar:
        base = m.name.rstrip("/").rsplit("/", 1)[-1]
        if not base.startswith(_WHITEOUT):
            continue
        report.whiteouts += 1
        try:
            parts = _parts(m.name)
            dir_parts = root.resolve(parts[:-1])
            try:
                d = root.open_dir(dir_parts)
            except FileNotFoundError:
                continue
            with _fd(d):
                victim = base[len(_WHITEOUT):]
                if base == _OPAQUE:
                    root.clear(d)
                elif victim in ("", ".", ".."):
                    report.skip(m.name, "whiteout of no entry")
                else:
                    root.remove(d, victim)
        except _Refused as exc:
            report.skip(m.name, f"whiteout refused: {exc}")


def _additions(root: _Root, tar: tarfile.TarFile, report: ExtractReport, limits: ExtractLimits,
               owners: bool) -> None:
    for m in tar:
        base = m.name.rstrip("/").rsplit("/", 1)[-1]
        if base.startswith(_WHITEOUT):
            continue
        report.entries += 1
        if report.entries > limits.max_entries:
            raise InputError(f"the image has more than {limits.max_entries} entries (limit)")
        if len(m.name) > limits.max_path or m.name.count("/") >= limits.max_depth:
            report.skip(m.name[:200] + "...", "path longer or deeper than the limit")
            continue
        try:
            if m.isreg():
                if report.bytes + m.size > limits.max_bytes:
                    raise InputError(f"the image expands beyond {limits.max_bytes} bytes (limit)")
                report.bytes += _write_file(root, m, tar.extractfile(m), owners)
            elif m.isdir():
                _make_dir(root, m, owners)
            elif m.issym():
                _make_symlink(root, m, owners)
            elif m.islnk():
                _make_hardlink(root, m)
            else:
                report.skip(m.name, "device node or FIFO not extracted")
        except _Refused as exc:
            report.skip(m.name, f"refused: {exc}")
        except FileNotFoundError as exc:
            report.skip(m.name, f"refused: {exc.strerror}")


def apply_layers(image: object, dest: str, *, limits: ExtractLimits | None = None) -> ExtractReport:
    """Verify and apply every layer of `image` (a secpolicy.image.layout.Image) to the empty
    directory `dest`, which must be private (0700)."""
    from secpolicy.image.layout import Image

    assert isinstance(image, Image)
    limits = limits or ExtractLimits()
    owners = os.geteuid() == 0
    if not owners:
        raise RuntimeFailure("scanning an image needs root: file owners and set-id bits must be kept as the image "
                             "has them for ownership and permission rules to be right")
    if os.listdir(dest):
        raise InputError("the extraction directory is not empty", dest)
    report = ExtractReport()
    root = _Root(dest)
    try:
        for layer in image.info.layers:
            image.verify_layer(layer)
            for apply in (_whiteouts, None):
                with image.layer_stream(layer) as stream:
                    try:
                        with tarfile.open(fileobj=stream, mode="r|") as tar:
                            if apply is _whiteouts:
                                _whiteouts(root, tar, report)
                            else:
                                _additions(root, tar, report, limits, owners)
                    except (tarfile.TarError, EOFError, OSError) as exc:
                        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                            raise InputError(f"no space left to extract the image into {dest}") from None
                        raise IntegrityError(f"{image.info.path}: layer {layer.name} is not a valid tar: {exc}") from None
    finally:
        root.close()
    return report
