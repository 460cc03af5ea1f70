"""Applies image layers, in order, to a scratch root that nothing can write outside of: every
path is resolved component by component from a directory descriptor, links only as data inside
the root (absolute ones as chroot would read them), whiteouts and opaque directories per OCI."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, cast

from secpolicy.confined import (
    ConfinedRoot,
    Refused,
    fd_closing,
    make_dir,
    make_symlink,
    parts_of,
    prepare,
    write_file,
)
from secpolicy.errors import InputError, IntegrityError, RuntimeFailure

__all__ = ["ExtractLimits", "ExtractReport", "apply_layers"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


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


class _Hashing:
    """A layer's uncompressed stream, hashed as it is read (its diff id), bounded in size."""

    def __init__(self, f: IO[bytes], limit: int) -> None:
        self._f = f
        self._limit = limit
        self.read_bytes = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.read_bytes += len(data)
        if self.read_bytes > self._limit:
            raise InputError(f"a layer of the image expands beyond {self._limit} bytes (limit)")
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _make_hardlink(root: ConfinedRoot, name: str, linkname: str) -> None:
    """A hard link to the entry `linkname` itself, as GNU tar and containerd make it: the
    directories on its way are resolved inside the root, its last component is not, so a
    link to a symbolic link (dangling or not) links the symbolic link."""
    target = parts_of(linkname)
    if not target:
        raise Refused("hard link to the root")
    with fd_closing(root.open_dir(root.resolve(target[:-1]))) as tdir:
        st = os.stat(target[-1], dir_fd=tdir, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise Refused("hard link to a directory")
        parent, last = prepare(root, name)
        with fd_closing(parent):
            try:
                if os.path.samestat(st, os.stat(last, dir_fd=parent, follow_symlinks=False)):
                    return  # a link to itself, or already this file
            except FileNotFoundError:
                pass
            root.remove(parent, last)
            os.link(target[-1], last, src_dir_fd=tdir, dst_dir_fd=parent, follow_symlinks=False)


def _forget(tar: tarfile.TarFile) -> None:
    """A stream's members need not be kept: the reader would hold every header of a layer."""
    tar.members.clear()  # type: ignore[attr-defined]


def _remove(root: ConfinedRoot, name: str) -> None:
    """What lower layers hold at `name`: gone, as when a runtime replaces it with a node."""
    parent, last = prepare(root, name)
    with fd_closing(parent):
        root.remove(parent, last)


def _whiteouts(root: ConfinedRoot, tar: tarfile.TarFile, report: ExtractReport, limits: ExtractLimits) -> None:
    """Deletions of one layer apply to the layers below it: done before its additions."""
    for m in tar:
        _forget(tar)
        base = m.name.rstrip("/").rsplit("/", 1)[-1]
        if not base.startswith(_WHITEOUT):
            continue
        report.whiteouts += 1
        if report.whiteouts > limits.max_entries:
            raise InputError(f"the image has more than {limits.max_entries} entries (limit)")
        try:
            parts = parts_of(m.name)
            dir_parts = root.resolve(parts[:-1])
            try:
                d = root.open_dir(dir_parts)
            except FileNotFoundError:
                continue
            with fd_closing(d):
                victim = base[len(_WHITEOUT):]
                if base == _OPAQUE:
                    root.clear(d)
                elif victim in ("", ".", ".."):
                    report.skip(m.name, "whiteout of no entry")
                else:
                    root.remove(d, victim)
        except Refused as exc:
            report.skip(m.name, f"whiteout refused: {exc}")


def _additions(root: ConfinedRoot, tar: tarfile.TarFile, report: ExtractReport, limits: ExtractLimits,
               owners: bool) -> None:
    for m in tar:
        _forget(tar)
        base = m.name.rstrip("/").rsplit("/", 1)[-1]
        if base.startswith(_WHITEOUT):
            continue
        report.entries += 1
        if report.entries + report.whiteouts > limits.max_entries:
            raise InputError(f"the image has more than {limits.max_entries} entries (limit)")
        if len(m.name) > limits.max_path or m.name.count("/") >= limits.max_depth:
            report.skip(m.name[:200] + "...", "path longer or deeper than the limit")
            continue
        try:
            if m.isreg():
                if report.bytes + m.size > limits.max_bytes:
                    raise InputError(f"the image expands beyond {limits.max_bytes} bytes (limit)")
                report.bytes += write_file(root, m.name, tar.extractfile(m), m, owners)
            elif m.isdir():
                if not parts_of(m.name):
                    continue  # the root itself (`./`): the scratch root keeps its private mode
                make_dir(root, m.name, m, owners)
            elif m.issym():
                make_symlink(root, m.name, m.linkname, m, owners)
            elif m.islnk():
                _make_hardlink(root, m.name, m.linkname)
            else:
                _remove(root, m.name)
                report.skip(m.name, "device node or FIFO not extracted")
        except Refused as exc:
            report.skip(m.name, f"refused: {exc}")
        except FileNotFoundError as exc:
            report.skip(m.name, f"refused: {exc.strerror}")
        except (OverflowError, ValueError) as exc:
            # An owner or time no file system holds (a PAX uid of -5, an mtime of nan): the
            # runtime's tar reader refuses the layer, and so do we.
            raise IntegrityError(f"member {m.name!r}: an owner, mode or time out of range ({exc})") from None


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
    root = ConfinedRoot(dest)
    try:
        for layer in image.info.layers:
            image.verify_layer(layer)
            for first in (True, False):
                with image.layer_stream(layer) as stream:
                    _apply(image, layer, stream, first, root, report, limits, owners, dest)
    finally:
        root.close()
    return report


def _apply(image: Any, layer: Any, stream: IO[bytes], first: bool, root: ConfinedRoot, report: ExtractReport,
           limits: ExtractLimits, owners: bool, dest: str) -> None:
    """One pass over a layer: its whiteouts, while its diff id is computed, or its additions."""
    from secpolicy.image.layout import SafeTarInfo

    where = f"{image.info.path}: layer {layer.name}"
    hashing = _Hashing(stream, limits.max_bytes)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], hashing) if first else stream, mode="r|", tarinfo=SafeTarInfo) as tar:
            if first:
                _whiteouts(root, tar, report, limits)
            else:
                _additions(root, tar, report, limits, owners)
        if first:
            hashing.drain()
    except IntegrityError as exc:
        raise IntegrityError(f"{where}: {exc.message}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise InputError(f"no space left to extract the image into {dest}") from None
        raise IntegrityError(f"{where} is not a valid tar: {exc}") from None
    if first and layer.diff_id is not None and "sha256:" + hashing.sha256.hexdigest() != layer.diff_id:
        raise IntegrityError(f"{where} does not match its diff id {layer.diff_id} in the image's config")
