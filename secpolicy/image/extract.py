"""Applies image layers, in order, to a scratch root that nothing can write outside of: every
path is resolved component by component from a directory descriptor, links only as data inside
the root (absolute ones as chroot would read them), whiteouts and opaque directories per OCI."""

from __future__ import annotations

import errno
import os
import tarfile
from dataclasses import dataclass, field

from secpolicy.confined import (
    ConfinedRoot,
    Refused,
    fd_closing,
    make_dir,
    make_hardlink,
    make_symlink,
    parts_of,
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


def _whiteouts(root: ConfinedRoot, tar: tarfile.TarFile, report: ExtractReport) -> None:
    """Deletions of one layer apply to the layers below it: done before its additions."""
    for m in tar:
        base = m.name.rstrip("/").rsplit("/", 1)[-1]
        if not base.startswith(_WHITEOUT):
            continue
        report.whiteouts += 1
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
                report.bytes += write_file(root, m.name, tar.extractfile(m), m, owners)
            elif m.isdir():
                make_dir(root, m.name, m, owners)
            elif m.issym():
                make_symlink(root, m.name, m.linkname, m, owners)
            elif m.islnk():
                make_hardlink(root, m.name, m.linkname)
            else:
                report.skip(m.name, "device node or FIFO not extracted")
        except Refused as exc:
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
    root = ConfinedRoot(dest)
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
