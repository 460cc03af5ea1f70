"""The local copy of a remote host's files: a private scratch tree written only through
`secpolicy.confined`, the remote metadata beside it, and what of the host is known so far."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import IO, cast

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


class _Hashing:
    """A reader that keeps the SHA-256 of what went through it."""

    def __init__(self, data: IO[bytes]) -> None:
        self.data = data
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.data.read(n)
        self.h.update(chunk)
        return chunk

    def digest(self) -> bytes:
        return self.h.digest()


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
    searchable: bool = True  # a directory the remote user may look names up in (X_OK)

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
    # paths the remote user cannot look up (a directory above them is not searchable): neither
    # there nor absent as far as the scan can tell
    denied: set[str] = field(default_factory=set)
    unreadable_dirs: set[str] = field(default_factory=set)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    content_bytes: int = 0
    seen: set[str] = field(default_factory=set)  # entries the current round reported
    digests: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # contents the current round sent
    seen_conflicts: set[str] = field(default_factory=set)  # files this round sent inconsistently

    def __post_init__(self) -> None:
        self._croot = ConfinedRoot(self.root)
        # Records arrive a directory at a time: the resolution of their parent directories and
        # a descriptor of the last one are kept until a link or a removal may change them.
        self._resolved: dict[str, str] = {}
        self._fd_for: str | None = None
        self._fd = -1

    def begin_round(self) -> None:
        self.seen = set()
        self.digests = {}
        self.seen_conflicts = set()

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
        """Whether the snapshot can say what is at `path` (including that nothing is, or that
        the remote user cannot look it up)."""
        if path in self.entries or path in self.absent or path in self.denied:
            return True
        if path == "/":
            return False
        ancestors = self._ancestors(path)
        # A walk or listing says nothing of what is below a directory it could not read.
        blind = any(a in self.unreadable_dirs for a in ancestors)
        if not blind and (posixpath.dirname(path) in self.listed or self.under_tree(path)):
            return True
        for a in ancestors:
            if a in self.absent or a in self.denied:
                return True
            e = self.entries.get(a)
            if e is not None and e.kind not in ("d", "l"):
                return True  # below a file: ENOTDIR
        return False

    def is_denied(self, path: str) -> bool:
        """Whether the remote user could not look `path` up (EACCES on the host)."""
        return path in self.denied or any(a in self.denied for a in self._ancestors(path))

    def _denied_by(self, key: str) -> bool:
        for a in self._ancestors(key):
            e = self.entries.get(a)
            if a in self.denied or e is not None and e.kind == "d" and not e.searchable:
                return True
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
        for s in (self.listed, self.trees, self.content, self.unreadable_dirs, self.denied):
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
            self.denied.discard(key)
            d = self._dirfd(parent)
            if entry.kind == "d":
                make_dir_at(self._croot, d, last, None)
                if not entry.readable or not entry.searchable:
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
        self._bounded()
        denied = self._denied_by(key)  # not found, or not looked up: find says nothing either way
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
        (self.denied if denied else self.absent).add(key)

    def put_content(self, path: str, data: IO[bytes], size: int, *, listed_size: bool = False) -> None:
        """A file's bytes. With `listed_size`, `size` must be the size its entry gave; a file
        whose bytes disagree with its entry, or that came twice with different bytes, is kept
        as not read (what the host sent cannot be taken as the file)."""
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
        hashed = _Hashing(data)
        try:
            written = write_file_at(self._croot, self._dirfd(parent), last, cast(IO[bytes], hashed), None)
        except (OSError, Refused) as exc:
            self.skip(path, f"not copied: {exc}")
            return
        self.content_bytes += written
        got = (written, hashed.digest())
        before = self.digests.setdefault(key, got)
        if listed_size and written != entry.size:
            why = f"listed as {entry.size} bytes, {written} sent: changed while copied, or the host lied"
        elif before != got:
            why = "sent twice with different contents: changed while copied, or the host lied"
        elif key in self.seen_conflicts:
            return  # an earlier copy in this round disagreed: it stays not read
        else:
            self.content.add(key)
            self.unread.pop(key, None)
            return
        self.content.discard(key)
        self.unread[key] = why
        self.seen_conflicts.add(key)

    def _bounded(self) -> None:
        if len(self.unread) + len(self.absent) + len(self.denied) >= self.limits.max_entries:
            raise RuntimeFailure(f"the remote host named more than {self.limits.max_entries} missing or "
                                 "unreadable paths (limit)")

    def put_unread(self, path: str, why: str) -> None:
        try:
            key = self.key(path)
        except Refused:
            return
        if key not in self.content:
            self._bounded()
            self.unread[key] = why[:200]

    def mark_listed(self, path: str, *, tree: bool) -> None:
        try:
            key = self.key(path)
        except Refused:
            return
        e = self.entries.get(key)
        if e is None or e.kind != "d":
            return  # a link (or nothing): the listing was of the link alone
        if not e.readable or not e.searchable:
            self.unreadable_dirs.add(key)  # its entries could not all be listed with their metadata
            return
        self.listed.add(key)
        if tree:
            self.trees.add(key)
            prefix = key.rstrip("/") + "/"
            pseudo_top = is_pseudo(key)
            for k, sub in self.entries.items():
                if sub.kind == "d" and sub.readable and sub.searchable and k.startswith(prefix) and (pseudo_top or not is_pseudo(k)):
                    self.listed.add(k)
