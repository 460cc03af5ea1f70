"""The fact collector interface: a registry of typed collectors and the per-scan context that
gathers facts lazily, caches them, and reads every path under the scanned root."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from secpolicy.dsl.types import Signature, Type
from secpolicy.errors import EvaluationError, NotApplicable
from secpolicy.facts import inroot
from secpolicy.facts._common import read_regular, read_regular_in_root, symlink_loop

__all__ = ["EvaluationError", "FactContext", "FactRegistry", "FactSpec", "NotApplicable"]

Collector = Callable[..., Any]


@dataclass(frozen=True)
class FactSpec:
    signature: Signature
    collect: Collector  # collect(ctx: FactContext, *args) -> value
    # twin(ctx, data) -> value: builds the real fact object from an inline test's plain data,
    # for facts whose methods a stand-in of plain data could not provide.
    twin: Callable[[FactContext, Any], Any] | None = None


class FactRegistry:
    """Named fact collectors with their types. Built-ins are added in facts/builtin.py."""

    def __init__(self) -> None:
        self._specs: dict[str, FactSpec] = {}

    def register(
        self,
        name: str,
        collect: Collector,
        *,
        params: tuple[Type, ...] = (),
        returns: Type,
        doc: str = "",
        live_only: bool = False,
        twin: Callable[[FactContext, Any], Any] | None = None,
    ) -> None:
        if name in self._specs:
            raise ValueError(f"fact {name!r} registered twice")
        self._specs[name] = FactSpec(Signature(name, params, returns, doc, live_only), collect, twin)

    def get(self, name: str) -> FactSpec:
        return self._specs[name]

    def signatures(self) -> dict[str, Signature]:
        return {n: s.signature for n, s in self._specs.items()}

    def __iter__(self) -> Iterator[FactSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs


class _Failure:
    """A cached exception, so a fact that failed once fails the same way for every rule."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class FactContext:
    """Per-scan fact cache and the file-system view rooted at `root`."""

    def __init__(
        self,
        registry: FactRegistry,
        root: str = "/",
        *,
        options: dict[str, Any] | None = None,
        preset: dict[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.root = os.path.abspath(root)
        self.live = self.root == "/"
        self.options = options or {}
        # `preset`: values standing in for argument-less facts (inline tests of live-only
        # rules): plain data, read like the objects the collectors return, or turned into the
        # real object by the fact's twin hook.
        self._cache: dict[tuple[str, tuple], Any] = {}
        self._preset = dict(preset or {})

    # facts -------------------------------------------------------------------------------
    def fact(self, name: str, args: tuple) -> Any:
        key = (name, args)
        try:
            value = self._cache[key]
        except KeyError:
            value = self._collect(name, args)
            self._cache[key] = value
        if isinstance(value, _Failure):
            raise value.exc
        return value

    def _collect(self, name: str, args: tuple) -> Any:
        spec = self.registry.get(name)
        if not args and name in self._preset:
            data = self._preset[name]
            if spec.twin is None:
                return data
            try:
                return spec.twin(self, data)
            except (EvaluationError, NotApplicable) as e:
                return _Failure(e)
        if spec.signature.live_only and not self.live:
            return _Failure(NotApplicable(f"{name}: only available on the live host, not under --root {self.root}"))
        try:
            return spec.collect(self, *args)
        except (EvaluationError, NotApplicable) as e:
            return _Failure(e)
        except OSError as e:
            return _Failure(EvaluationError(f"{name}{args!r}: {os.strerror(e.errno) if e.errno else e}"))

    def require_live(self, what: str) -> None:
        if not self.live:
            raise NotApplicable(f"{what}: only available on the live host, not under --root {self.root}")

    # files under the root ----------------------------------------------------------------
    def host_path(self, path: str, *, follow: bool = True) -> str:
        """The path on this machine for `path` inside the scanned root. Symlinks are resolved
        inside the root (an absolute link target restarts at the root, as under chroot), so a
        mounted image cannot point us at the scanning host's files. The string is opened later,
        though: a directory swapped for a symlink meanwhile would lead out of the root. So file
        contents, stat(), listings and link targets are opened inside the root from
        descriptors instead (inroot.py); this gives names, and serves a remote scan's
        snapshot."""
        _absolute(path)
        if self.root == "/":
            return path  # the kernel resolves it: a trailing slash, `..` after a link, as open(2) does
        parts = [p for p in PurePosixPath(path).parts[1:] if p not in ("", ".")]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = os.path.join(self.root, *resolved, part)
            last = not parts
            self._visit(resolved, part)
            if (follow or not last) and os.path.islink(candidate):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise symlink_loop(path)
                try:
                    target = os.readlink(candidate)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOENT):
                        raise
                    resolved.append(part)  # no longer a link (or gone) since islink(): as now
                    continue
                tparts = [p for p in PurePosixPath(target).parts if p not in ("", ".")]
                if target.startswith("/"):
                    resolved = []
                    tparts = tparts[1:]
                parts = tparts + parts
                continue
            resolved.append(part)
        return os.path.join(self.root, *resolved) if resolved else self.root

    def _visit(self, resolved: list[str], part: str) -> None:
        """Each path component host_path looks at (a remote scan's context records those its
        snapshot lacks, to fetch them)."""

    def display(self, path: str) -> str:
        """How a path inside the root is shown in evidence: as the scanned system sees it."""
        return path

    def _in_root(self) -> bool:
        """Are paths opened inside the root from descriptors (inroot.py), not through
        host_path? Under every local --root, with or without openat2."""
        return self.root != "/"

    def _stat_in_root(self, path: str, nofollow: int) -> os.stat_result | None:
        try:
            fd = self._open_resolved(path, os.O_PATH | nofollow)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result | None:
        if self._in_root():
            return self._stat_in_root(path, os.O_NOFOLLOW)
        try:
            return os.lstat(self.host_path(path, follow=False))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def stat(self, path: str) -> os.stat_result | None:
        if self._in_root():
            return self._stat_in_root(path, 0)
        try:
            return os.stat(self.host_path(path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, path: str) -> bool:
        return self.lstat(path) is not None

    def read_bytes(self, path: str, limit: int = 16 * 1024 * 1024) -> bytes | None:
        """File content, or None if it does not exist. Unreadable files, and anything not a
        regular file (a FIFO, a device), are evaluation errors saying what was there."""
        if self._in_root():
            return read_regular_in_root(self.root, _absolute(path), limit=limit)
        return read_regular(self.host_path(path), path, limit=limit, follow=self.live)

    def read_text(self, path: str) -> str | None:
        data = self.read_bytes(path)
        if data is None:
            return None
        return data.decode("utf-8", errors="surrogateescape")

    def open_path(self, path: str, flags: int) -> int:
        """A descriptor (the caller closes it) of `path` inside the root opened with `flags`,
        links followed inside it (the last one not, with O_NOFOLLOW). Raises OSError as
        open(2): FileNotFoundError, NotADirectoryError, PermissionError, ELOOP."""
        if self._in_root():
            return inroot.open_in_root(self.root, _absolute(path), flags)
        return os.open(self.host_path(path, follow=not flags & os.O_NOFOLLOW), flags | os.O_CLOEXEC)

    def _open_resolved(self, path: str, flags: int) -> int:
        """`open_path` where ELOOP can only mean a symlink loop on the way (an O_PATH open, or
        one that follows the last link): an evaluation error, worded as host_path words it."""
        try:
            return self.open_path(path, flags)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise symlink_loop(path) from None
            raise

    def open_dir(self, path: str) -> int:
        """`open_path` of a directory, to list or walk it by descriptor."""
        return self.open_path(path, _DIR_FLAGS)

    def readlink(self, path: str) -> str:
        """The target of the symlink `path` inside the root (the last component not followed).
        Raises OSError as readlink(2): FileNotFoundError, EINVAL when it is not a link."""
        if not self._in_root():
            return os.readlink(self.host_path(path, follow=False))
        fd = self._open_resolved(path, os.O_PATH | os.O_NOFOLLOW)  # the link itself: a loop is above it
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):  # readlinkat(2) of "" would say ENOENT
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            return os.readlink("", dir_fd=fd)  # readlinkat(2) of the link the descriptor holds
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        try:
            fd = self._open_resolved(path, _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError:
            raise EvaluationError(f"{path}: permission denied") from None
        try:
            return sorted(os.listdir(fd))  # names as str, undecodable bytes kept as surrogates
        finally:
            os.close(fd)

    def glob(self, pattern: str) -> list[str]:
        """Paths inside the root matching a shell pattern (`*`, `?`, `[...]`, no `**`)."""
        import fnmatch

        if not pattern.startswith("/"):
            raise EvaluationError(f"{pattern!r}: patterns must be absolute")
        parts = [p for p in pattern.split("/") if p]
        results = ["/"]
        for part in parts:
            nxt: list[str] = []
            for base in results:
                if any(ch in part for ch in "*?["):
                    for name in self.listdir(base):
                        if fnmatch.fnmatchcase(name, part) and not (name.startswith(".") and not part.startswith(".")):
                            nxt.append(os.path.join(base, name))
                else:
                    cand = os.path.join(base, part)
                    if self.lstat(cand) is not None:
                        nxt.append(cand)
            results = nxt
        return sorted(results)


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise EvaluationError(f"{path!r}: paths in policies must be absolute")
    return path
