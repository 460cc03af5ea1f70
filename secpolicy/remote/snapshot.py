"""The local copy of a remote host's files: a private scratch tree written only through
`secpolicy.confined`, the remote metadata beside it, and what of the host is known so far."""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import IO

from secpolicy.confined import (
    ConfinedRoot,
    Refused,
    make_dir_at,
    make_symlink_at,
    parts_of,
    write_file_at,
)
from secpolicy.errors import RuntimeFailure

__all__ = ["KINDS", "Entry", "Snapshot", "SnapshotLimits"]

# find -printf %y letters -> (file type bits, the name files.py gives the type)
KINDS: dict[str, tuple[int, str]] = {
    "f": (stat.S_IFREG, "file"),
    "d": (stat.S_IFDIR, "dir"),
    "l": (stat.S_IFLNK, "symlink"),
    "p": (stat.S_IFIFO, "fifo"),
    "s": (stat.S_IFSOCK, "socket"),
    "c": (stat.S_IFCHR, "char"),
    "b": (stat.S_IFBLK, "block"),
}
PSEUDO = ("/proc", "/sys")  # kernel file systems: copied by content, never walked from above


def is_pseudo(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PSEUDO)


@dataclass(frozen=True)
class SnapshotLimits:
    """Bounds on what a remote host (perhaps hostile) can make us store."""

    max_entries: int = 2_000_000
    max_content_bytes: int = 4 << 30
    max_path: int = 4096


@dataclass(frozen=True)
class Entry:
    """One remote inode as `find -printf` reported it (never followed, except in /proc and /sys)."""

    kind: str  # a key of KINDS
    mode: int  # permission bits with set-id and sticky bits
    uid: int
    gid: int
    size: int
    mtime: float
    readable: bool  # by the remote user (access(2)): content or listing could be read
    target: str | None = None  # of a symlink

    def stat_result(self) -> os.stat_result:
        t = int(self.mtime)
        return os.stat_result((KINDS[self.kind][0] | self.mode, 0, 0, 1, self.uid, self.gid, self.size, t, t, t,
                               self.mtime, self.mtime, self.mtime))


@dataclass
class Snapshot:
    """What has been collected. Keys are paths as the remote host names them with every
    symlink before the last component resolved (the way the scratch tree stores them)."""

    root: str
    limits: SnapshotLimits = field(default_factory=SnapshotLimits)
    entries: dict[str, Entry] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # directories whose every entry is known
    trees: set[str] = field(default_factory=set)  # directories whose whole subtree is known
    content: set[str] = field(default_factory=set)  # regular files whose bytes are in the scratch tree
    unread: dict[str, str] = field(default_factory=dict)  # regular files the remote could not read: why
    absent: set[str] = field(default_factory=set)
    unreadable_dirs: set[str] = field(default_factory=set)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    content_bytes: int = 0
    seen: set[str] = field(default_factory=set)  # entries the current round reported

    def __post_init__(self) -> None:
        self._croot = ConfinedRoot(self.root)
        # Records arrive a directory at a time: the resolution of their parent directories and
        # a descriptor of the last one are kept until a link or a removal may change them.
        self._resolved: dict[str, str] = {}
        self._fd_for: str | None = None
        self._fd = -1

    def close(self) -> None:
        self._invalidate()
        self._croot.close()

    def _invalidate(self) -> None:
        self._resolved.clear()
        self._invalidate_fd()

    def _parent(self, path: str) -> tuple[str, str]:
        """(the parent directory resolved inside the snapshot, without its leading /; the name)."""
        if not path.startswith("/") or "\0" in path or len(path) > self.limits.max_path:
            raise Refused("not an absolute path")
        parts = parts_of(path)
        if not parts:
            return "", ""
        logical = "/".join(parts[:-1])
        hit = self._resolved.get(logical)
        if hit is None:
            hit = self._resolved[logical] = "/".join(self._croot.resolve(parts[:-1]))
        return hit, parts[-1]

    def _dirfd(self, parent: str) -> int:
        if self._fd_for != parent:
            self._invalidate_fd()
            self._fd = self._croot.open_dir(parent.split("/") if parent else [], create=True)
            self._fd_for = parent
        return self._fd

    def _invalidate_fd(self) -> None:
        if self._fd_for is not None:
            os.close(self._fd)
            self._fd_for, self._fd = None, -1

    # paths ---------------------------------------------------------------------------------
    def logical(self, host: str) -> str:
        """The remote path of a scratch-tree path."""
        rel = os.path.relpath(host, self.root)
        return "/" if rel == "." else "/" + rel

    def key(self, path: str) -> str:
        """`path` with the symlinks of its parent directories resolved inside the snapshot."""
        parent, last = self._parent(path)
        return "/" + f"{parent}/{last}".strip("/")

    def text(self, path: str) -> str | None:
        """A collected file's content, if it was collected."""
        key = self.key(path)
        if key not in self.content:
            return None
        with open(self.root + key, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)

    def skip(self, path: str, why: str) -> None:
        if len(self.skipped) < 1000:
            self.skipped.append((path[:300], why))

    # what is known -------------------------------------------------------------------------
    def _ancestors(self, path: str) -> list[str]:
        out = []
        while path != "/":
            path = posixpath.dirname(path)
            out.append(path)
        return out

    def under_tree(self, path: str) -> bool:
        for a in [path, *self._ancestors(path)]:
            if a in self.trees:
                return not is_pseudo(path) or is_pseudo(a)
        return False

    def knows_entry(self, path: str) -> bool:
        """Whether the snapshot can say what is at `path` (including that nothing is)."""
        if path in self.entries or path in self.absent:
            return True
        if path == "/":
            return False
        if posixpath.dirname(path) in self.listed or self.under_tree(path):
            return True
        for a in self._ancestors(path):
            if a in self.absent:
                return True
            e = self.entries.get(a)
            if e is not None and e.kind not in ("d", "l"):
                return True  # below a file: ENOTDIR
        return False

    def knows_listing(self, path: str) -> bool:
        return path in self.listed or path in self.unreadable_dirs

    def unreadable_below(self, path: str) -> str | None:
        prefix = path.rstrip("/") + "/"
        for d in sorted(self.unreadable_dirs):
            if d == path or d.startswith(prefix):
                return d
        return None

    # applying what the remote sent ---------------------------------------------------------
    def _forget(self, key: str) -> None:
        prefix = key.rstrip("/") + "/"
        for table in (self.entries, self.unread):
            for k in [k for k in table if k == key or k.startswith(prefix)]:
                del table[k]
        for s in (self.listed, self.trees, self.content, self.unreadable_dirs):
            s.difference_update([k for k in s if k == key or k.startswith(prefix)])

    def put_entry(self, path: str, entry: Entry) -> None:
        if len(self.entries) >= self.limits.max_entries:
            raise RuntimeFailure(f"the remote host has more than {self.limits.max_entries} entries to copy (limit)")
        try:
            parent, last = self._parent(path)
            key = "/" + f"{parent}/{last}".strip("/")
            if key == "/":
                if entry.kind == "d":
                    self.entries["/"] = entry
                return
            old = self.entries.get(key)
            if old is not None and old.kind != entry.kind:
                self._forget(key)
                self._invalidate()
            self.absent.discard(key)
            d = self._dirfd(parent)
            if entry.kind == "d":
                make_dir_at(self._croot, d, last, None)
                if not entry.readable:
                    self.unreadable_dirs.add(key)
                else:
                    self.unreadable_dirs.discard(key)
            elif entry.kind == "l":
                if old != entry:
                    make_symlink_at(self._croot, d, last, entry.target or "")
                    self._invalidate()  # paths through it resolve differently now
            elif not (old == entry and (key in self.content or key in self.unread)):
                # Files wait for their bytes; other kinds stay empty files whose real type
                # lives in the entry (nothing here can block or act on a device).
                write_file_at(self._croot, d, last, None, None)
                self.content.discard(key)
                self.unread.pop(key, None)
                if entry.kind == "f" and not entry.readable:
                    self.unread[key] = "permission denied"
            self.entries[key] = entry
            self.seen.add(key)
        except Refused as e:
            self.skip(path, f"refused: {e}")
        except OSError as e:
            self.skip(path, f"not copied: {e.strerror or e}")

    def put_absent(self, path: str) -> None:
        try:
            key = self.key(path)
        except Refused as e:
            self.skip(path, f"refused: {e}")
            return
        if key == "/":
            return
        if key in self.entries:
            self._forget(key)
            self._invalidate()
            try:
                parent = self._croot.open_dir(parts_of(posixpath.dirname(key)))
            except (OSError, Refused):
                parent = -1
            if parent >= 0:
                try:
                    self._croot.remove(parent, posixpath.basename(key))
                finally:
                    os.close(parent)
        self.absent.add(key)

    def put_content(self, path: str, data: IO[bytes], size: int) -> None:
        try:
            parent, last = self._parent(path)
            key = "/" + f"{parent}/{last}".strip("/")
        except Refused as exc:
            self.skip(path, f"refused: {exc}")
            return
        entry = self.entries.get(key)
        if entry is None or entry.kind != "f":
            self.skip(path, "content for a path not listed as a regular file: ignored")
            return
        if self.content_bytes + size > self.limits.max_content_bytes:
            raise RuntimeFailure(f"the remote files to copy exceed {self.limits.max_content_bytes} bytes (limit)")
        try:
            self.content_bytes += write_file_at(self._croot, self._dirfd(parent), last, data, None)
        except (OSError, Refused) as exc:
            self.skip(path, f"not copied: {exc}")
            return
        self.content.add(key)
        self.unread.pop(key, None)

    def put_unread(self, path: str, why: str) -> None:
        try:
            key = self.key(path)
        except Refused:
            return
        if key not in self.content:
            self.unread[key] = why

    def mark_listed(self, path: str, *, tree: bool) -> None:
        try:
            key = self.key(path)
        except Refused:
            return
        e = self.entries.get(key)
        if e is None or e.kind != "d":
            return  # a link (or nothing): the listing was of the link alone
        if not e.readable:
            self.unreadable_dirs.add(key)
            return
        self.listed.add(key)
        if tree:
            self.trees.add(key)
            prefix = key.rstrip("/") + "/"
            pseudo_top = is_pseudo(key)
            for k, sub in self.entries.items():
                if sub.kind == "d" and sub.readable and k.startswith(prefix) and (pseudo_top or not is_pseudo(k)):
                    self.listed.add(k)
