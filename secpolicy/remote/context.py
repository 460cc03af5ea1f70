"""The fact context of a remote scan: facts read the snapshot as a root, see the remote host's
owners, modes and types, and every path they ask for that the snapshot lacks is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from secpolicy.errors import EvaluationError, NotApplicable
from secpolicy.facts._common import _not_regular, read_regular
from secpolicy.facts.base import FactContext, FactRegistry
from secpolicy.remote.protocol import Request
from secpolicy.remote.snapshot import Snapshot

__all__ = ["RemoteFacts"]

_READ_LIMIT = 16 * 1024 * 1024  # FactContext.read_bytes' default


class RemoteFacts(FactContext):
    """A FactContext over a `Snapshot`. What each access needs is known from how it is made:
    lstat/stat need the entry, listdir the listing, read_bytes the bytes, tree() the subtree's
    entries; any other use of a path (`host_path` called by a fact itself) is taken to read it."""

    def __init__(self, registry: FactRegistry, snapshot: Snapshot, target: str, *,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(registry, snapshot.root, options=options)
        self.snapshot = snapshot
        self.target = target
        self.wants: set[Request] = set()
        self._need: tuple[str, int] = ("raw", 0)
        # Which rules saw incomplete data, directly or through a fact (or a fact object's lazily
        # read attribute) another rule left incomplete: only those are evaluated again.
        self._keys: set[tuple[str, tuple]] = set()
        self._wanted = False
        self._tainted: set[tuple[str, tuple]] = set()

    @contextmanager
    def _needing(self, kind: str, limit: int = 0) -> Iterator[None]:
        old, self._need = self._need, (kind, limit)
        try:
            yield
        finally:
            self._need = old

    def _want(self, kind: str, path: str) -> None:
        self.wants.add(Request.of(kind, path))
        self._wanted = True

    def begin_rule(self) -> None:
        self._keys = set()
        self._wanted = False

    def end_rule(self) -> bool:
        """Whether the rule just evaluated saw incomplete data."""
        if self._wanted:
            self._tainted |= self._keys
            return True
        return not self._keys.isdisjoint(self._tainted)

    def fact(self, name: str, args: tuple) -> Any:
        self._keys.add((name, args))
        return super().fact(name, args)

    # what facts do -----------------------------------------------------------------------
    def _collect(self, name: str, args: tuple) -> Any:
        spec = self.registry.get(name)
        if spec.signature.live_only:
            raise NotApplicable(self._live_reason(name))
        if name == "fim" and args and not (self.options.get("fim") or {}).get(args[0]):
            raise NotApplicable(f"fim({args[0]!r}): the baseline lives on {self.target}; a remote scan does not "
                                "read it (run `secpolicy fim check` there, or give --fim NAME=DB with a copy)")
        if name == "tree":
            with self._needing("tree"):
                return super()._collect(name, args)
        return super()._collect(name, args)

    def _live_reason(self, what: str) -> str:
        return (f"{what}: only available on the live host; a remote scan of {self.target} reads its files and "
                "kernel state files (/proc, /sys), not its processes, sockets' owners or BPF objects")

    def require_live(self, what: str) -> None:
        raise NotApplicable(self._live_reason(what))

    # files -------------------------------------------------------------------------------
    def _in_root(self) -> bool:
        # Every path goes through host_path, which notes what the snapshot lacks. The snapshot
        # is ours: nothing swaps its directories while facts read it.
        return False

    def _visit(self, resolved: list[str], part: str) -> None:
        path = "/" + "/".join([*resolved, part])
        if not self.snapshot.knows_entry(path):
            self._want("E", path)

    def host_path(self, path: str, *, follow: bool = True) -> str:
        if not self.snapshot.knows_entry("/"):
            self._want("E", "/")
        host = super().host_path(path, follow=follow)
        if self.snapshot.is_denied(self.snapshot.logical(host)):
            # A directory above it that the remote user cannot search: as lstat(2) says there.
            raise EvaluationError(f"{path}: permission denied")
        kind, limit = self._need
        if kind != "entry":
            key = self.snapshot.logical(host)
            if not self.snapshot.knows_entry(key):
                # The entry with what the access needs of it, in one round: a file's bytes, a
                # directory's listing, a tree's entries.
                self._want({"list": "L", "tree": "M"}.get(kind, "C"), key)
            self._check(path, key, kind, limit)
        return host

    def _check(self, shown: str, key: str, kind: str, limit: int) -> None:
        snap = self.snapshot
        e = snap.entries.get(key)
        if e is None:
            return  # absent, or its entry is wanted already
        if e.kind == "d":
            # A directory the remote user cannot list fails as it would on the host.
            if kind == "list":
                if key in snap.unreadable_dirs:
                    raise EvaluationError(f"{shown}: permission denied")
                if not snap.knows_listing(key):
                    self._want("L", key)
            elif kind == "tree":
                if key in snap.unreadable_dirs:  # its walk lists nothing below it: as on the host
                    raise EvaluationError(f"tree({shown!r}): {key}: Permission denied")
                if not snap.under_tree(key):
                    self._want("M", key)
                elif bad := snap.unreadable_below(key):
                    raise EvaluationError(f"tree({shown!r}): {bad}: Permission denied")
            return
        if kind not in ("content", "raw"):
            return
        if e.kind != "f":
            if kind == "content" and e.kind != "l":
                raise _not_regular(shown, e.stat_result())
            return
        if key in snap.content:
            return
        if key in snap.unread:
            raise EvaluationError(f"{shown}: {snap.unread[key]}")
        if kind == "content" and e.size > limit:
            raise EvaluationError(f"{shown}: larger than {limit} bytes, not read")
        # Not fetched yet: the fact goes on as if the file were absent (or empty, when it opens
        # it itself), so this round finds what else it would read; its answer is thrown away.
        self._want("C", key)

    def lstat(self, path: str) -> Any:
        with self._needing("entry"):
            host = self.host_path(path, follow=False)
        e = self.snapshot.entries.get(self.snapshot.logical(host))
        return None if e is None else e.stat_result()

    def stat(self, path: str) -> Any:
        with self._needing("entry"):
            host = self.host_path(path)
        e = self.snapshot.entries.get(self.snapshot.logical(host))
        return None if e is None else e.stat_result()

    def read_bytes(self, path: str, limit: int = _READ_LIMIT) -> bytes | None:
        with self._needing("content", limit):
            host = self.host_path(path)
        key = self.snapshot.logical(host)
        e = self.snapshot.entries.get(key)
        if e is None or (e.kind == "f" and key not in self.snapshot.content):
            return None
        return read_regular(host, path, limit=limit, follow=False)

    def listdir(self, path: str) -> list[str]:
        with self._needing("list"):
            return super().listdir(path)

    def glob(self, pattern: str) -> list[str]:
        # The directory before the first wildcard will be listed: ask for its listing now, not
        # only for the entries on the way to it (one round instead of two).
        parts = pattern.split("/")
        wild = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), None)
        if wild is not None and pattern.startswith("/"):
            try:
                self.listdir("/".join(parts[:wild]) or "/")
            except EvaluationError:
                pass  # the glob itself says so
        return super().glob(pattern)
