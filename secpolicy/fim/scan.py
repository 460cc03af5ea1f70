"""FIM operations: init, check, update and recheck of single paths. A streaming merge of the
directory walk against the baseline in key order, with files read in worker processes."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import secrets
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from secpolicy import __version__
from secpolicy.errors import InputError, IntegrityError, RuntimeFailure
from secpolicy.fim import record as R
from secpolicy.fim.config import CompiledRule, FimConfig
from secpolicy.fim.hasher import Outcome, open_dir_at, read_batch, read_dir_fd, read_path_entry
from secpolicy.fim.store import (
    Baseline,
    BaselineWriter,
    Key,
    generation_hash,
    lock_directory,
    promote,
)
from secpolicy.fim.walker import (
    UNLISTED,
    Unreachable,
    WalkItem,
    key_path,
    open_parent,
    open_root,
    path_key,
    walk,
)

__all__ = [
    "BaselineInfo",
    "CheckResult",
    "EntryChange",
    "Generations",
    "Progress",
    "Recorded",
    "ScanIssue",
    "Summary",
    "UpdateResult",
    "check",
    "count_tree",
    "init_baseline",
    "normalize_root",
    "recheck_paths",
    "update",
]

# progress(entries seen, bytes hashed); called every few thousand entries.
Progress = Callable[[int, int], None]

_FIXED = R._FIXED
_STAT_SIZE = R.STAT_SIZE  # the nine stat fields start a packed record
# A batch goes to a worker process at this many entries or bytes to hash.
BATCH_ITEMS = 512
BATCH_BYTES = 8 << 20
# Entries waiting to be finished in key order (about 1.2 KB each, so ~40 MB at most). A big
# file holds back the entries after it while the other workers go on hashing: the walk must
# be able to run that far ahead (half of /usr's bytes are in 58 files) or it stalls, and
# cores stand idle. Measured on /usr, 2 cores: 4096 -> 3.8 s, 16384 -> 3.7 s, 32768 -> 3.55 s.
MAX_PENDING = 32768
# Directory descriptors one batch may carry (the kernel passes at most 253 in one message).
MAX_FDS = 250
_PROGRESS_EVERY = 2048


@dataclass(frozen=True)
class EntryChange:
    """An added, removed or changed entry; `changes` lists what differs for `changed`."""

    path: str
    kind: str
    ftype: str
    changes: tuple[R.AttrChange, ...] = ()
    # report_changes: the unified diff of the redacted content, or why there is none.
    diff: str | None = None
    diff_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": R.display_path(self.path), "kind": self.kind, "type": self.ftype}
        if self.kind == "changed":
            d["changes"] = [c.to_dict() for c in self.changes]
        if self.diff is not None:
            d["diff"] = self.diff
        if self.diff_note is not None:
            d["diff_note"] = self.diff_note
        return d


@dataclass(frozen=True)
class ScanIssue:
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": R.display_path(self.path), "message": self.message}


@dataclass(frozen=True)
class BaselineInfo:
    path: str
    baseline_id: str
    lineage_id: str
    generation: int
    created_at: float
    config_name: str
    config_digest: str
    root: str
    keyed: bool
    entry_count: int
    root_hash: str = ""  # what the audit log records of this generation (store.generation_hash)
    previous_baseline_id: str | None = None

    @classmethod
    def from_header(cls, path: str, h: dict[str, Any]) -> BaselineInfo:
        return cls(
            path=path,
            baseline_id=h["baseline_id"],
            lineage_id=h["lineage_id"],
            generation=int(h["generation"]),
            created_at=float(h["created_at"]),
            config_name=h["config_name"],
            config_digest=h["config_digest"],
            root=h["root"],
            keyed=bool(h["keyed"]),
            entry_count=int(h["entry_count"]),
            root_hash=generation_hash(h),
            previous_baseline_id=h.get("previous_baseline_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "baseline_id": self.baseline_id,
            "lineage_id": self.lineage_id,
            "generation": self.generation,
            "created_at": self.created_at,
            "config_name": self.config_name,
            "config_digest": self.config_digest,
            "root": self.root,
            "keyed": self.keyed,
            "entry_count": self.entry_count,
            "root_hash": self.root_hash,
        }


@dataclass(frozen=True)
class CheckResult:
    baseline: BaselineInfo
    added: tuple[EntryChange, ...] = ()
    removed: tuple[EntryChange, ...] = ()
    changed: tuple[EntryChange, ...] = ()
    errors: tuple[ScanIssue, ...] = ()
    notes: tuple[ScanIssue, ...] = ()
    entries: int = 0
    hashed: int = 0
    bytes_hashed: int = 0
    duration_s: float = 0.0
    full: bool = False

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    @property
    def status(self) -> str:
        """`changed` when anything changed, else `error` when something could not be
        checked, else `clean`: an error is never a clean result."""
        if self.has_changes:
            return "changed"
        return "error" if self.errors else "clean"

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.status,
            "summary": {
                "entries": self.entries,
                "added": len(self.added),
                "removed": len(self.removed),
                "changed": len(self.changed),
                "errors": len(self.errors),
                "hashed": self.hashed,
                "bytes_hashed": self.bytes_hashed,
                "duration_s": round(self.duration_s, 3),
                "full": self.full,
            },
            "baseline": self.baseline.to_dict(),
            "added": [e.to_dict() for e in self.added],
            "removed": [e.to_dict() for e in self.removed],
            "changed": [e.to_dict() for e in self.changed],
            "errors": [e.to_dict() for e in self.errors],
            "notes": [e.to_dict() for e in self.notes],
        }

    def record(self, kind: str) -> dict[str, Any]:
        """What the baseline's check history keeps about this check."""
        return {
            "kind": kind,
            "at": time.time(),
            "result": self.status,
            "entries": self.entries,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "errors": len(self.errors),
            "full": self.full,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class Summary:
    """What `init` built."""

    baseline: BaselineInfo
    entries: int
    hashed: int
    bytes_hashed: int
    errors: tuple[ScanIssue, ...]
    notes: tuple[ScanIssue, ...]
    duration_s: float
    previous: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.to_dict(),
            "entries": self.entries,
            "hashed": self.hashed,
            "bytes_hashed": self.bytes_hashed,
            "errors": [e.to_dict() for e in self.errors],
            "notes": [e.to_dict() for e in self.notes],
            "duration_s": round(self.duration_s, 3),
            "previous": self.previous,
        }


@dataclass(frozen=True)
class UpdateResult:
    """What `update` accepted (`check`, against the old baseline) and the new baseline."""

    check: CheckResult
    baseline: BaselineInfo
    previous: str | None
    config_changed: bool

    def to_dict(self) -> dict[str, Any]:
        d = self.check.to_dict()
        d["new_baseline"] = self.baseline.to_dict()
        d["previous"] = self.previous
        d["config_changed"] = self.config_changed
        return d


def normalize_root(root: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(root as recorded, prefix joined to watched paths). The prefix is '' for '/'."""
    r = os.path.normpath(os.path.abspath(os.fspath(root))) if root is not None else "/"
    if not os.path.isdir(r):
        raise InputError(f"--root {r}: not a directory")
    return r, ("" if r == "/" else r)


@dataclass(frozen=True)
class Recorded:
    """The generations of one baseline database recorded in the audit log: the newest one
    and the ids of every earlier one (`fim check` refuses an older generation)."""

    baseline_id: str
    lineage_id: str
    generation: int
    created_at: float
    root_hash: str
    where: str  # where the record is: "audit log seq 41 (2026-11-21T10:04:40+00:00)"
    earlier_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Generations:
    """Every baseline generation an audit log records, in log order, each with the database
    it was written to (symlinks resolved). A baseline is held to the newest record of its
    database or of its lineage (the generations `update` made from one `init`), wherever
    that one was written: a copy of an older generation is refused at any path."""

    records: tuple[tuple[str, Recorded], ...] = ()

    def of(self, db: str, lineage_id: str) -> Recorded | None:
        """The newest record for the database at `db` or for `lineage_id`, with the ids of
        the earlier ones; None when there is none."""
        mine = [(d, r) for d, r in self.records if d == db or r.lineage_id == lineage_id]
        if not mine:
            return None
        where, newest = mine[-1]
        return dataclasses.replace(
            newest, where=newest.where if where == db else f"{newest.where}, written to {where}",
            earlier_ids=frozenset(r.baseline_id for _, r in mine[:-1]),
        )


def _check_recorded(db: str, h: dict[str, Any], rec: Recorded) -> str | None:
    """Refuse (IntegrityError) a baseline older than the newest generation recorded for it;
    a note when it is newer (made without the audit log)."""
    gen = int(h["generation"])
    if h["baseline_id"] == rec.baseline_id:
        if generation_hash(h) != rec.root_hash:
            raise IntegrityError(f"{db}: baseline refused: generation {gen} (baseline {rec.baseline_id}) does not "
                                 f"match the root hash recorded in the audit log ({rec.where})")
        return None
    older = (h["baseline_id"] in rec.earlier_ids
             or (h["lineage_id"] == rec.lineage_id and gen < rec.generation)
             or float(h["created_at"]) < rec.created_at)
    if older:
        raise IntegrityError(
            f"{db}: baseline refused: it is generation {gen} (baseline {h['baseline_id']}), older than "
            f"generation {rec.generation} (baseline {rec.baseline_id}) recorded in the audit log ({rec.where}); "
            f"an older baseline was put back in place (rollback)"
        )
    return (f"generation {gen} (baseline {h['baseline_id']}) is newer than generation {rec.generation}, the "
            f"newest recorded in the audit log: it was made without --audit-log")


# ---------------------------------------------------------------------------- the scan

@dataclass
class _Stats:
    entries: int = 0
    hashed: int = 0
    bytes_hashed: int = 0
    added: list[EntryChange] = field(default_factory=list)
    removed: list[EntryChange] = field(default_factory=list)
    changed: list[EntryChange] = field(default_factory=list)
    errors: list[ScanIssue] = field(default_factory=list)
    notes: list[ScanIssue] = field(default_factory=list)
    error_keys: set[bytes] = field(default_factory=set)

    def error(self, path: str, message: str) -> None:
        self.errors.append(ScanIssue(path, message))
        self.error_keys.add(path_key(path))

    def note(self, path: str, message: str) -> None:
        self.notes.append(ScanIssue(path, message))


_ADDED, _SAME, _CARRY = 0, 1, 2
# Records whose flags say an attribute was looked for: a check need not read them again.
_FLAGS_SEEN = R.F_FSFLAGS | R.F_NOFSFLAGS
_COPY_SEEN = R.F_CONTENT | R.F_NOCOPY


class _Item:
    """One entry on its way to being finished in key order: what the walk saw, what was read
    at once (directories, links, special files), and the read job for a regular file."""

    __slots__ = ("crule", "fsflags", "job", "key", "kind", "link", "old_r", "path", "st", "xattrs")

    def __init__(self, kind: int, key: bytes, path: str, st: os.stat_result | None,
                 crule: CompiledRule | None, old_r: bytes | None) -> None:
        self.kind = kind
        self.key = key
        self.path = path
        self.st = st
        self.crule = crule
        self.old_r = old_r
        self.link = b""
        self.xattrs: R.Xattrs | None = None
        self.fsflags: int | None = None
        self.job: tuple[Any, ...] | None = None


def _ignored_paths(db: str, root_prefix: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The baseline's own files (and this process's temporary ones), as paths inside the root."""
    out = set()
    for p in (db, db + "-journal", db + ".prev", db + ".prev-journal", *extra):
        a = os.path.abspath(p)
        if root_prefix:
            if not a.startswith(root_prefix + "/"):
                continue
            a = a[len(root_prefix):]
        out.add(a)
    return frozenset(out)


class _Scan:
    """Merge the walk with the baseline rows (both in key order) and finish every entry in
    that order, so a new baseline streams out sorted and memory stays bounded by the entries
    waiting to be read (MAX_PENDING). Regular files are read by worker processes (or inline
    for scans that fit one batch), from the descriptors of their parent directories."""

    def __init__(self, config: FimConfig, key: Key, old: Baseline | None, writer: BaselineWriter | None,
                 *, full: bool, progress: Progress | None = None, workers: int | None = None) -> None:
        self.config = config
        self.old = old
        self.writer = writer
        self.full = full
        self.progress = progress
        self.nworkers = max(1, workers or config.workers)
        self.s = _Stats()
        # `init` has nothing to compare with: every entry is new, and a list of them all
        # would only grow with the tree. A check reports added entries without reading them.
        self.report_added = old is not None
        self.read_added = writer is not None
        self.key = key
        self._redactor: Any = None
        self.pool: Any = None  # a pool.HashPool once a second batch is needed
        self.window: deque[tuple[Any, list[_Item]]] = deque()
        self.pending = 0  # entries in `window`
        self.skip_prefix: bytes | None = None
        self._new_batch()

    def _new_batch(self) -> None:
        self.items: list[_Item] = []
        self.jobs: list[tuple[Any, ...]] = []
        # The walk's own descriptors of the batch's directories (sent as they are, not
        # duplicated): one the walk is done with meanwhile is held open in `held` until the
        # batch is sent, so no descriptor number in a batch can stand for two directories.
        self.fds: list[int] = []
        self.dirs: dict[int, int] = {}  # descriptor -> index in `fds`
        self.held: list[int] = []
        self.nbytes = 0

    def release(self, fd: int) -> None:
        """The walk is done with `fd`: close it, or once the current batch is sent."""
        if fd in self.dirs:
            self.held.append(fd)
        else:
            os.close(fd)

    def _close_held(self) -> None:
        held, self.held = self.held, []
        for fd in held:
            os.close(fd)

    # -- the merge -------------------------------------------------------------------

    def run(self, walker: Iterator[WalkItem]) -> _Stats:
        old_rows: Iterator[tuple[bytes, bytes]] = self.old.rows() if self.old is not None else iter(())
        failed = True
        # The scan allocates objects per entry and makes no reference cycles: the collector
        # would only traverse the window of pending entries again and again (~6% of the CPU).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._merge(walker, old_rows)
            self._flush(final=True)
            self._drain(0)
            failed = False
        finally:
            if collecting:
                gc.enable()
            if self.pool is not None:
                self.pool.close(abort=failed)
            self.dirs = {}  # nothing more is sent: what the walk releases now is closed at once
            walker.close()  # type: ignore[attr-defined]  # a generator: closes its directory fds
            self._close_held()
        if self.progress is not None:
            self.progress(self.s.entries, self.s.bytes_hashed)
        return self.s

    def _merge(self, walker: Iterator[WalkItem], old_rows: Iterator[tuple[bytes, bytes]]) -> None:
        s = self.s
        progress = self.progress
        full = self.full
        carry = self.writer is not None
        w = next(walker, None)
        o = next(old_rows, None)
        seen = 0
        while w is not None or o is not None:
            if o is not None and (w is None or o[0] < w[0]):
                self._gone(*o)
                o = next(old_rows, None)
                continue
            key = w[0]  # type: ignore[index]
            seen += 1
            if progress is not None and not seen % _PROGRESS_EVERY:
                s.entries = seen
                progress(seen, s.bytes_hashed)
            if w[4] & UNLISTED:  # type: ignore[index]
                self.skip_prefix = key + b"\0"
            if o is None or o[0] != key:
                self._push(self._prepare(_ADDED, w, None))  # type: ignore[arg-type]
            else:
                old_r = o[1]
                o = next(old_rows, None)
                if not full and self._unchanged(w, old_r):  # type: ignore[arg-type]
                    if carry:
                        self._push(_Item(_CARRY, key, "", None, None, old_r))
                else:
                    self._push(self._prepare(_SAME, w, old_r))  # type: ignore[arg-type]
            w = next(walker, None)  # only now: the item's descriptors were valid until here
        s.entries = seen

    def _gone(self, key: bytes, old_r: bytes) -> None:
        """A baseline row with no entry in the walk: removed, unless what held it could not
        be read (then it is carried forward, nothing being known of it)."""
        if (self.skip_prefix is not None and key.startswith(self.skip_prefix)) or key in self.s.error_keys:
            if self.writer is not None:
                self._push(_Item(_CARRY, key, "", None, None, old_r))
            return
        mode = _FIXED.unpack_from(old_r)[0]
        self.s.removed.append(EntryChange(key_path(key), "removed", R.ftype_name(mode)))

    def _unchanged(self, w: WalkItem, old_r: bytes) -> bool:
        """Unchanged inode state: content, xattrs and flags cannot have changed (any write
        moves mtime and ctime; any xattr, flag, owner or mode change moves ctime), provided
        the baseline holds every attribute the rule asks for."""
        st, crule = w[2], w[3]
        mode = st.st_mode
        if R.STAT_PACK(mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_blocks,
                       st.st_mtime_ns, st.st_ctime_ns) != old_r[:_STAT_SIZE]:
            return False
        fx = _FIXED.unpack_from(old_r)
        oflags = fx[9]
        if crule.wants_xattrs and not oflags & R.F_XATTRS:
            return False
        reg = S_ISREG(mode)
        if crule.wants_flags and not oflags & _FLAGS_SEEN and (reg or S_ISDIR(mode)):
            return False
        if not reg:
            # A device recorded before device numbers were kept is re-read once, to keep it.
            return bool(oflags & R.F_RDEV) or not (S_ISCHR(mode) or S_ISBLK(mode))
        if crule.hash_algo is not None:
            hlen = fx[11]
            if not hlen or R.HASH_NAMES.get(old_r[R.FIXED_SIZE + fx[10]]) != crule.hash_algo:
                return False
        return not (crule.rule.report_changes and not oflags & _COPY_SEEN and crule.diffs(w[1]))

    def recheck(self, rootfd: int, k: bytes, path: str, crule: CompiledRule) -> None:
        """One entry of `recheck_paths`: reached from `rootfd` like the walk reaches it, compared
        with its row (verified by its own tag), finished at once."""
        s = self.s
        assert self.old is not None
        old_r = self.old.lookup(k)
        if path == "/":
            parent, name = -1, ""
        else:
            try:
                parent, name = open_parent(rootfd, path)
            except Unreachable as e:
                if e.missing and old_r is not None:
                    s.removed.append(EntryChange(path, "removed", R.ftype_name(_FIXED.unpack_from(old_r)[0])))
                elif not e.missing:
                    s.error(path, e.message)
                return
        try:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False) if parent >= 0 else os.fstat(rootfd)
            except FileNotFoundError:
                if old_r is not None:
                    s.removed.append(EntryChange(path, "removed", R.ftype_name(_FIXED.unpack_from(old_r)[0])))
                return
            except OSError as e:
                s.error(path, f"cannot stat: {e.strerror}")
                return
            s.entries += 1
            fd = rootfd if parent < 0 else -1
            w = (k, path, st, crule, 0, parent, name, fd, 0)
            self._push(self._prepare(_ADDED if old_r is None else _SAME, w, old_r))
            self._flush(final=True)
            self._drain(0)
        finally:
            self._close_held()
            self._new_batch()
            if parent not in (-1, rootfd):
                os.close(parent)

    # -- reading ---------------------------------------------------------------------

    def _prepare(self, kind: int, w: WalkItem, old_r: bytes | None) -> _Item:
        key, path, st, crule, _, dfd, name, fd, _ = w
        item = _Item(kind, key, path, st, crule, old_r)
        if kind == _ADDED and not self.read_added:
            return item
        mode = st.st_mode
        if S_ISREG(mode):
            content_max = self.config.diff_size_limit if crule.rule.report_changes and crule.diffs(path) else -1
            algo = crule.hash_algo
            if algo is None and not crule.wants_xattrs and not crule.wants_flags and content_max < 0:
                return item
            prefix_len = None
            if crule.growing and old_r is not None:
                old_fields = _FIXED.unpack_from(old_r)
                if S_ISREG(old_fields[0]):
                    prefix_len = old_fields[5]
            idx = self.dirs.get(dfd)
            item.job = (self._dir_index(dfd) if idx is None else idx, name, st.st_dev, st.st_ino, algo,
                        prefix_len, crule.wants_xattrs, crule.wants_flags, content_max)
        elif S_ISDIR(mode):
            if crule.wants_xattrs or crule.wants_flags:
                if fd >= 0:
                    # Open in the walk: read by a worker through that descriptor (hasher.DirJob).
                    item.job = (self._dir_index(fd), None, crule.wants_xattrs, crule.wants_flags)
                else:
                    self._read_dir(item, dfd, name, fd)
        else:
            link = stat.S_ISLNK(mode)
            if link or crule.wants_xattrs:
                xattrs, item.link, err = read_path_entry(dfd, name, st.st_dev, st.st_ino, crule.wants_xattrs, link)
                item.xattrs = xattrs
                if err is not None:
                    self.s.error(path, err)
        return item

    def _read_dir(self, item: _Item, dfd: int, name: str, fd: int) -> None:
        """A directory's xattrs and flags, from the descriptor the walk holds or one opened
        relative to its parent and checked to be the same inode."""
        crule, st = item.crule, item.st
        assert crule is not None and st is not None
        own = fd < 0
        if own:
            try:
                fd = open_dir_at(dfd, name)
            except OSError as e:
                self.s.error(item.path, f"cannot open directory: {e.strerror}")
                return
        try:
            if own:
                fst = os.fstat(fd)
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    self.s.error(item.path, "directory was replaced while being scanned")
                    return
            item.xattrs, xerr, item.fsflags, ferr = read_dir_fd(fd, crule.wants_xattrs, crule.wants_flags)
            for err in (xerr, ferr):
                if err is not None:
                    self.s.error(item.path, err)
        finally:
            if own:
                os.close(fd)

    def _dir_index(self, dfd: int) -> int:
        idx = self.dirs.get(dfd)
        if idx is None:
            if len(self.fds) >= MAX_FDS:
                self._flush(final=False)
            idx = len(self.fds)
            self.fds.append(dfd)
            self.dirs[dfd] = idx
        return idx

    # -- batches and the in-order window ---------------------------------------------

    def _push(self, item: _Item) -> None:
        if item.job is None and not self.pending and not self.items:
            self._finish(item, None)  # nothing waits before it: no need to queue
            return
        self.items.append(item)
        job = item.job
        if job is not None:
            self.jobs.append(job)
            if job[1] is not None:  # a regular file, not a directory
                self.nbytes += item.st.st_size  # type: ignore[union-attr]
            if self.nbytes >= BATCH_BYTES:
                self._flush(final=False)
                return
        if len(self.items) >= BATCH_ITEMS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.items:
            return
        ticket: Any = None
        if self.jobs:
            if final and self.pool is None:
                ticket = read_batch(self.jobs, self.fds)  # type: ignore[arg-type]
            else:
                if self.pool is None:
                    # Sockets and subprocesses: imported only when a second batch needs them.
                    from secpolicy.fim.pool import HashPool

                    self.pool = HashPool(self.nworkers)
                ticket = self.pool.submit(self.jobs, self.fds, self.nbytes)
        self.window.append((ticket, self.items))
        self.pending += len(self.items)
        self._close_held()
        self._new_batch()
        self._drain(MAX_PENDING)

    def _drain(self, limit: int) -> None:
        while self.pending > limit:
            ticket, items = self.window.popleft()
            self.pending -= len(items)
            results: list[Any] = ticket if isinstance(ticket, list) else ticket.result() if ticket else []
            j = 0
            for item in items:
                if item.job is not None:
                    self._finish(item, results[j])
                    j += 1
                else:
                    self._finish(item, None)

    # -- finishing -------------------------------------------------------------------

    def _finish(self, item: _Item, outcome: Outcome | None) -> None:
        writer = self.writer
        if item.kind == _CARRY:
            self._carry(item.key, item.old_r)  # type: ignore[arg-type]
            return
        st, crule = item.st, item.crule
        assert st is not None and crule is not None
        st9: tuple[int, ...] | None = None  # the walk's, unless a read gives newer values
        flags, algo, digest, prefix, copy, content = 0, None, b"", None, None, None
        xattrs, fsflags = item.xattrs, item.fsflags
        job = item.job
        if job is not None and job[1] is None:  # a directory read through the walk's descriptor
            assert outcome is not None
            xattrs, xerr, fsflags, ferr = outcome  # type: ignore[misc]
            for e in (xerr, ferr):
                if e is not None:
                    self.s.error(item.path, e)
            if crule.wants_flags and fsflags is None:
                flags |= R.F_NOFSFLAGS
        elif job is not None:
            assert outcome is not None
            digest, prefix, rst9, err, jx, xerr, fsflags, content = outcome
            xattrs = jx
            if err is None:
                st9 = rst9  # the values belong to what was read, maybe newer
                algo = job[4]
                if algo is not None:
                    self.s.hashed += 1
                    self.s.bytes_hashed += rst9[5]  # type: ignore[index]
            else:
                self.s.error(item.path, err)
                if job[4] is not None:
                    flags |= R.F_NOHASH
            if xerr is not None:
                self.s.error(item.path, xerr)
            if job[7] and err is None and fsflags is None:
                flags |= R.F_NOFSFLAGS
            if job[8] >= 0 and err is None:
                copy = self._copy(content)
                if copy is None:
                    flags |= R.F_NOCOPY
        elif crule.wants_flags and S_ISDIR(st.st_mode) and fsflags is None:
            flags |= R.F_NOFSFLAGS
        if st9 is None:
            st9 = R.stat_key(st)
        cdigest = hashlib.sha256(copy).digest() if copy is not None else b""
        rdev = st.st_rdev if S_ISCHR(st9[0]) or S_ISBLK(st9[0]) else None
        rec = R.pack(st9, flags, item.link, algo, digest, xattrs, fsflags, cdigest, rdev)
        if item.kind == _ADDED:
            if self.report_added:
                self.s.added.append(EntryChange(item.path, "added", R.ftype_name(st9[0])))
            self._add(item.key, rec, copy)
            return
        old_r = item.old_r
        assert old_r is not None
        if rec != old_r or prefix is not None:
            old = R.unpack(old_r)
            changes = R.compare(old, R.unpack(rec), crule.rule.attrs, prefix)
            if changes:
                self.s.changed.append(self._changed(item, old, changes, copy, content))
        if writer is not None:
            if flags & R.F_NOHASH and R.unpack(old_r).hash_algo:
                self._carry(item.key, old_r)  # keep the last known content until it can be read again
            else:
                self._add(item.key, rec, copy)

    def _copy(self, content: bytes | None) -> bytes | None:
        """The stored form of a text file's redacted content, or None (not text, too large)."""
        from secpolicy.fim import diff as D  # report_changes only: its patterns cost start-up time

        if content is None or not D.is_text(content):
            return None
        if self._redactor is None:
            self._redactor = D.Redactor(self.key.sub("redact") if self.key.keyed else None)
        return D.pack_copy(self._redactor.text(content))

    def _add(self, key: bytes, rec: bytes, copy: bytes | None) -> None:
        if self.writer is not None:
            self.writer.add(key, rec)
            if copy is not None:
                self.writer.add_content(key, copy)

    def _carry(self, key: bytes, old_r: bytes) -> None:
        if self.writer is None:
            return
        self.writer.add(key, old_r)
        if _FIXED.unpack_from(old_r)[9] & R.F_CONTENT:
            assert self.old is not None
            rec = R.unpack(old_r)
            copy = self.old.content(key, rec.content_digest)
            if copy is not None:
                self.writer.add_content(key, copy)

    def _changed(self, item: _Item, old: R.Record, changes: list[R.AttrChange], copy: bytes | None,
                 content: bytes | None) -> EntryChange:
        st, crule = item.st, item.crule
        assert st is not None and crule is not None
        ftype = R.ftype_name(st.st_mode)
        if not crule.rule.report_changes or not any(c.name in ("sha256", "blake3") for c in changes):
            return EntryChange(item.path, "changed", ftype, tuple(changes))
        if not crule.diffs(item.path):
            return EntryChange(item.path, "changed", ftype, tuple(changes), diff_note="nodiff: content not shown")
        note = None
        if copy is None:
            if content is None and st.st_size > self.config.diff_size_limit:
                note = f"no diff: larger than diff_size_limit ({self.config.diff_size_limit} bytes)"
            else:
                note = "no diff: the content is not text" if content is not None else "no diff: the content could not be read"
        elif not old.flags & R.F_CONTENT:
            note = "no diff: the baseline holds no copy of the content (it was not text, or was too large)"
        if note is not None:
            return EntryChange(item.path, "changed", ftype, tuple(changes), diff_note=note)
        assert self.old is not None
        from secpolicy.fim import diff as D

        old_text = D.unpack_copy(self.old.content(item.key, old.content_digest) or b"")
        d = D.unified_diff(old_text, D.unpack_copy(copy), R.display_path(item.path), self.config.diff_max_lines)  # type: ignore[arg-type]
        note = f"{d.omitted} more diff lines not shown (diff_max_lines {self.config.diff_max_lines})" if d.omitted else None
        if not d.text:
            note = "the content changed only in redacted values"
        return EntryChange(item.path, "changed", ftype, tuple(changes), diff=d.text or None, diff_note=note)


S_ISREG = stat.S_ISREG
S_ISDIR = stat.S_ISDIR
S_ISCHR = stat.S_ISCHR
S_ISBLK = stat.S_ISBLK


def _scan(config: FimConfig, root_prefix: str, key: Key, old: Baseline | None, writer: BaselineWriter | None,
          ignore: frozenset[str], *, full: bool, progress: Progress | None = None,
          workers: int | None = None) -> _Stats:
    scan = _Scan(config, key, old, writer, full=full, progress=progress, workers=workers)
    rootfd = open_root(root_prefix)
    try:
        return scan.run(walk(config, rootfd, scan.s.error, scan.s.note, None, ignore, scan.release))
    finally:
        os.close(rootfd)


def count_tree(config: FimConfig, root: str | os.PathLike[str] | None) -> tuple[int, int]:
    """(entries, bytes of regular files) a scan will walk: a first pass for progress totals."""
    _, prefix = normalize_root(root)
    entries = size = 0
    rootfd = open_root(prefix)
    try:
        for w in walk(config, rootfd, lambda p, m: None, lambda p, m: None):
            entries += 1
            if S_ISREG(w[2].st_mode):
                size += w[2].st_size
    finally:
        os.close(rootfd)
    return entries, size


# ---------------------------------------------------------------------------- operations

def _identity(config: FimConfig, root: str, lineage: str, generation: int, previous: str | None) -> dict[str, Any]:
    return {
        "tool": f"secpolicy {__version__}",
        "lineage_id": lineage,
        "generation": generation,
        "previous_baseline_id": previous,
        "created_at": time.time(),
        "config_name": config.name,
        "config_digest": config.digest,
        "config": config.canonical(),
        "root": root,
        "hostname": os.uname().nodename,
    }


_OPEN_ATTEMPTS = 50


def _open_verified(db: str, key: Key, root: str, config: FimConfig | None, for_update: bool = False,
                   recorded: Generations | None = None) -> tuple[Baseline, str | None]:
    """Open and verify the baseline at `db`; with `recorded`, refuse a generation older than
    the newest one the audit log holds for this database or this baseline's lineage. Returns a note when the baseline is newer than that.

    A baseline found superseded while `db` already names its successor was replaced by an
    `update` running meanwhile, not put back: it is opened again, never refused."""
    for _ in range(_OPEN_ATTEMPTS):
        b = Baseline(db, key)
        try:
            h = b.header
            if h.get("superseded_by"):
                if b.replaced():
                    b.close()
                    continue
                sup = h["superseded_by"]
                raise IntegrityError(
                    f"{db}: baseline refused: it was superseded by generation {sup.get('generation')} "
                    f"(baseline {sup.get('baseline_id')}); a previous baseline was put back in place"
                )
            if h["root"] != root:
                raise IntegrityError(f"{db}: baseline refused: it was made for root {h['root']}, not {root}")
            if config is not None and not for_update and h["config_digest"] != config.digest:
                raise IntegrityError(
                    f"{db}: baseline refused: it was made for a different configuration "
                    f"(name {h['config_name']!r}, digest {h['config_digest'][:16]}; this one is "
                    f"{config.name!r}, {config.digest[:16]}); review the change, then run `secpolicy fim update`"
                )
            rec = recorded.of(db, h["lineage_id"]) if recorded is not None else None
            note = _check_recorded(db, h, rec) if rec is not None else None
        except BaseException:
            b.close()
            raise
        return b, note
    raise RuntimeFailure(f"{db}: the baseline was replaced {_OPEN_ATTEMPTS} times while being opened")


def _db_path(config: FimConfig, db: str | os.PathLike[str] | None) -> str:
    """The baseline database, symlinks resolved: a new generation is written where a link
    points, never over the link, and the audit log knows it by that path."""
    path = os.fspath(db) if db is not None else config.database
    if not path:
        raise InputError("no baseline database given (--db, or `database:` in the configuration)")
    try:
        return os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return os.path.realpath(path)  # a new database, or a link to where one will be
    except OSError as e:
        raise InputError(f"cannot resolve the baseline database's path: {e.strerror}", path) from None


def init_baseline(
    config: FimConfig,
    db: str | os.PathLike[str] | None,
    root: str | os.PathLike[str] | None,
    key: Key,
    *,
    force: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Summary:
    """Build a new baseline of everything the configuration watches and seal it."""
    dbp = _db_path(config, db)
    root_s, prefix = normalize_root(root)
    t0 = time.monotonic()
    with lock_directory(dbp):
        if os.path.lexists(dbp) and not force:
            raise InputError("a baseline already exists (use `fim update` to accept changes, or --force to replace it)", dbp)
        writer = BaselineWriter(dbp, key, _identity(config, root_s, secrets.token_hex(16), 1, None))
        try:
            stats = _scan(config, prefix, key, None, writer, _ignored_paths(dbp, prefix, (writer.tmp,)),
                          full=True, progress=progress, workers=workers)
        except BaseException:
            writer.abort()
            raise
        header = writer.finish()
        previous = promote(writer.tmp, dbp, keep_previous=force)
        if previous:
            _mark_previous(previous, key, header)
    return Summary(
        baseline=BaselineInfo.from_header(dbp, header),
        entries=stats.entries,
        hashed=stats.hashed,
        bytes_hashed=stats.bytes_hashed,
        errors=tuple(stats.errors),
        notes=tuple(stats.notes),
        duration_s=time.monotonic() - t0,
        previous=previous,
    )


def _mark_previous(previous: str, key: Key, successor: dict[str, Any]) -> None:
    try:
        with Baseline(previous, key) as prev:
            prev.mark_superseded(successor)
    except (IntegrityError, InputError):
        pass  # an old baseline we cannot verify is not ours to seal


def _result(info: BaselineInfo, stats: _Stats, t0: float, full: bool) -> CheckResult:
    return CheckResult(
        baseline=info,
        added=tuple(stats.added),
        removed=tuple(stats.removed),
        changed=tuple(stats.changed),
        errors=tuple(stats.errors),
        notes=tuple(stats.notes),
        entries=stats.entries,
        hashed=stats.hashed,
        bytes_hashed=stats.bytes_hashed,
        duration_s=time.monotonic() - t0,
        full=full,
    )


def check(
    config: FimConfig,
    db: str | os.PathLike[str] | None,
    root: str | os.PathLike[str] | None,
    key: Key,
    *,
    full: bool = False,
    record: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
    recorded: Generations | None = None,
) -> CheckResult:
    """Compare the filesystem with the baseline. The baseline is verified as it is read
    (header first, every entry against the sealed MAC by the end); an unverifiable
    baseline raises IntegrityError and gives no result, and so does one older than the
    newest generation `recorded` in the audit log. The outcome is recorded in the
    baseline's check history unless `record` is False (or a newer generation took its
    place meanwhile: the result says so in a note)."""
    dbp = _db_path(config, db)
    root_s, prefix = normalize_root(root)
    t0 = time.monotonic()
    b, note = _open_verified(dbp, key, root_s, config, recorded=recorded)
    with b:
        b.checks()  # the history must verify too: fim_status reads it
        stats = _scan(config, prefix, key, b, None, _ignored_paths(dbp, prefix), full=full,
                      progress=progress, workers=workers)
        if note is not None:
            stats.note(dbp, note)
        if record:
            kind = "full-check" if full else "check"
            why = b.record_check(_result(BaselineInfo.from_header(dbp, b.header), stats, t0, full).record(kind))
            if why is not None:
                stats.note(dbp, f"check compared with generation {b.header['generation']} and not recorded: {why}")
        result = _result(BaselineInfo.from_header(dbp, b.header), stats, t0, full)
    return result


def update(
    config: FimConfig,
    db: str | os.PathLike[str] | None,
    root: str | os.PathLike[str] | None,
    key: Key,
    *,
    full: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    recorded: Generations | None = None,
) -> UpdateResult:
    """Accept the current state: verify the baseline (and that it is not older than the
    newest generation `recorded`), compare, write the next generation and promote it
    atomically, keeping the previous one as `<db>.prev` (sealed as superseded). A changed
    configuration re-reads every entry, so the new generation holds what it asks for."""
    dbp = _db_path(config, db)
    root_s, prefix = normalize_root(root)
    t0 = time.monotonic()
    with lock_directory(dbp):
        b, note = _open_verified(dbp, key, root_s, config, for_update=True, recorded=recorded)
        with b:
            b.checks()
            h = b.header
            config_changed = h["config_digest"] != config.digest
            writer = BaselineWriter(
                dbp, key, _identity(config, root_s, h["lineage_id"], int(h["generation"]) + 1, h["baseline_id"])
            )
            try:
                stats = _scan(config, prefix, key, b, writer, _ignored_paths(dbp, prefix, (writer.tmp,)),
                              full=full or config_changed, progress=progress, workers=workers)
            except BaseException:
                writer.abort()
                raise
            if note is not None:
                stats.note(dbp, note)
            result = _result(BaselineInfo.from_header(dbp, h), stats, t0, full)
        header = writer.finish(first_check=result.record("update"))
        previous = promote(writer.tmp, dbp, keep_previous=True)
        if previous:
            _mark_previous(previous, key, header)
    return UpdateResult(result, BaselineInfo.from_header(dbp, header), previous, config_changed)


def _watching_rule(config: FimConfig, rules: dict[str, CompiledRule], path: str) -> CompiledRule | None:
    """The rule that would record `path` in a walk, or None when the walk would not."""
    rule = config.rule_for(path)
    if rule is None:
        return None
    crule = rules[rule.path]
    p = os.path.dirname(path)
    while len(p) >= len(rule.path) and p != path:
        if crule.excluded(p):
            return None
        if p == rule.path or p == "/":
            break
        p = os.path.dirname(p)
    return crule if crule.selects(path) else None


def recheck_paths(
    config: FimConfig,
    db: str | os.PathLike[str] | None,
    root: str | os.PathLike[str] | None,
    key: Key,
    paths: Iterable[str | bytes],
) -> CheckResult:
    """Re-check just these entries against the baseline (for live events). Verifies the
    header and each entry's own tag, not the whole set: a full `check` does that. A path
    that is not watched is ignored; a directory is checked as an entry, not descended."""
    dbp = _db_path(config, db)
    root_s, prefix = normalize_root(root)
    t0 = time.monotonic()
    rules = config.compiled()
    wanted: dict[bytes, str] = {}
    for p in paths:
        text = os.fsdecode(p)
        if not text.startswith("/"):
            raise InputError(f"recheck: path {text!r} is not absolute")
        norm = os.path.normpath(text)
        wanted[path_key(norm)] = norm
    b, _ = _open_verified(dbp, key, root_s, config)
    with b:
        scan = _Scan(config, key, b, None, full=True)
        rootfd = open_root(prefix)
        try:
            for k in sorted(wanted):
                crule = _watching_rule(config, rules, wanted[k])
                if crule is not None:
                    scan.recheck(rootfd, k, wanted[k], crule)
        finally:
            os.close(rootfd)
        info = BaselineInfo.from_header(dbp, b.header)
    return _result(info, scan.s, t0, True)
