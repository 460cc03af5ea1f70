"""FIM operations: init, check, update and recheck of single paths. A streaming merge of the
directory walk against the baseline in key order, with content hashing in worker processes."""

from __future__ import annotations

import os
import secrets
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from secpolicy import __version__
from secpolicy.errors import InputError, IntegrityError
from secpolicy.fim import record as R
from secpolicy.fim.config import CompiledRule, FimConfig
from secpolicy.fim.hasher import HashJob, hash_batch, hash_file
from secpolicy.fim.pool import HashPool
from secpolicy.fim.store import Baseline, BaselineWriter, Key, promote
from secpolicy.fim.walker import UNLISTED, fs_path, key_path, path_key, walk

__all__ = [
    "BaselineInfo",
    "CheckResult",
    "EntryChange",
    "Progress",
    "ScanIssue",
    "Summary",
    "UpdateResult",
    "check",
    "init_baseline",
    "normalize_root",
    "recheck_paths",
    "update",
]

# progress(entries seen, bytes hashed); called every few thousand entries.
Progress = Callable[[int, int], None]

_STAT = struct.Struct("<IQQIIQQqq")
_FIXED = struct.Struct("<IQQIIQQqqBHBI")
# A batch goes to a worker process at this many entries or bytes to hash.
BATCH_ITEMS = 512
BATCH_BYTES = 8 << 20
# Entries waiting to be finished in key order (about 1.2 KB each, so ~40 MB at most). A big
# file holds back the entries after it while the other workers go on hashing: the walk must
# be able to run that far ahead (half of /usr's bytes are in 58 files) or it stalls, and
# cores stand idle. Measured on /usr, 2 cores: 4096 -> 3.8 s, 16384 -> 3.7 s, 32768 -> 3.55 s.
MAX_PENDING = 32768
_PROGRESS_EVERY = 2048


@dataclass(frozen=True)
class EntryChange:
    """An added, removed or changed entry; `changes` lists what differs for `changed`."""

    path: str
    kind: str
    ftype: str
    changes: tuple[R.AttrChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": R.display_path(self.path), "kind": self.kind, "type": self.ftype}
        if self.kind == "changed":
            d["changes"] = [c.to_dict() for c in self.changes]
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


# A pending entry, finished in key order once its hash (if any) is known:
# (kind, key, path, lstat or None, rule, link, old record, xattrs, hash job or None)
_ADDED, _SAME, _CARRY = 0, 1, 2


def _ignored_paths(db: str, root_prefix: str) -> tuple[frozenset[str], str | None]:
    """The baseline's own files, as paths inside the root, so the scan never reports them."""
    dbabs = os.path.abspath(db)
    if root_prefix:
        if not dbabs.startswith(root_prefix + "/"):
            return frozenset(), None
        dbabs = dbabs[len(root_prefix):]
    names = frozenset({dbabs, dbabs + "-journal", dbabs + ".prev", dbabs + ".prev-journal"})
    d, b = os.path.split(dbabs)
    return names, os.path.join(d, "." + b + ".tmp-")


def _scan(  # noqa: C901 - to be split
    config: FimConfig,
    root_prefix: str,
    db: str,
    old: Baseline | None,
    writer: BaselineWriter | None,
    full: bool,
    progress: Progress | None,
    workers: int | None,
) -> _Stats:
    """Merge the walk with the baseline rows (both in key order) and finish every entry in
    that order, so the new baseline streams out sorted and memory stays bounded by the
    entries waiting for their hash (MAX_PENDING)."""
    s = _Stats()

    def on_error(path: str, message: str) -> None:
        s.errors.append(ScanIssue(path, message))
        s.error_keys.add(path_key(path))

    def on_note(path: str, message: str) -> None:
        s.notes.append(ScanIssue(path, message))

    ignore, ignore_prefix = _ignored_paths(db, root_prefix)
    walker = walk(config, root_prefix, on_error, on_note, None, ignore, ignore_prefix)
    old_rows: Iterator[tuple[bytes, bytes]] = old.rows() if old is not None else iter(())
    hash_added = writer is not None
    # `init` has nothing to compare with: every entry is new, and a list of them all would
    # only grow with the tree.
    report_added = old is not None
    nworkers = max(1, workers or config.workers)

    # Hashing runs in worker processes (see pool.py). Scans that fit in one batch are
    # hashed inline and never pay for starting the pool.
    pool: HashPool | None = None
    window: deque[tuple[Any, list[tuple[Any, ...]]]] = deque()
    pending = 0  # entries in `window`
    cur_items: list[tuple[Any, ...]] = []
    cur_jobs: list[HashJob] = []
    cur_bytes = 0
    stat_pack = _STAT.pack
    stat_size = _STAT.size
    fixed_unpack = _FIXED.unpack_from
    fixed_size = _FIXED.size
    pack = R.pack
    add = writer.add if writer is not None else None
    S_ISREG = stat.S_ISREG
    F_NOHASH = R.F_NOHASH

    def finish(item: tuple[Any, ...], outcome: Any) -> None:
        kind, key, path, st, crule, link, old_r, xattrs, job = item
        if kind == _CARRY:
            if add is not None:
                add(key, old_r)
            return
        flags = 0
        if job is not None:
            digest, prefix, st9, err = outcome
            if err is None:
                algo = job[3]
                s.hashed += 1
                s.bytes_hashed += st9[5]  # the digest belongs to what was read, maybe newer
            else:
                on_error(path, err)
                flags = F_NOHASH
                algo = None
                st9 = (st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid,
                       st.st_size, st.st_blocks, st.st_mtime_ns, st.st_ctime_ns)
        else:
            digest, prefix, algo = b"", None, None
            st9 = (st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid,
                   st.st_size, st.st_blocks, st.st_mtime_ns, st.st_ctime_ns)
        rec = pack(st9, flags, link, algo, digest, xattrs)
        if kind == _ADDED:
            if report_added:
                s.added.append(EntryChange(path, "added", R.ftype_name(st9[0])))
            if add is not None:
                add(key, rec)
            return
        if rec != old_r or prefix is not None:
            changes = R.compare(R.unpack(old_r), R.unpack(rec), crule.rule.attrs, prefix)
            if changes:
                s.changed.append(EntryChange(path, "changed", R.ftype_name(st9[0]), tuple(changes)))
        if add is not None:
            if flags & F_NOHASH and R.unpack(old_r).hash_algo:
                add(key, old_r)  # keep the last known content until it can be read again
            else:
                add(key, rec)

    def drain(limit: int) -> None:
        nonlocal pending
        while pending > limit:
            fut, items = window.popleft()
            pending -= len(items)
            results = fut if fut is None or isinstance(fut, list) else HashPool.result(fut)
            j = 0
            for item in items:
                if item[8] is not None:
                    finish(item, results[j])  # type: ignore[index]
                    j += 1
                else:
                    finish(item, None)

    def flush_batch(final: bool) -> None:
        nonlocal cur_items, cur_jobs, cur_bytes, pool, pending
        if not cur_items:
            return
        fut: Any = None
        if cur_jobs:
            if final and pool is None:
                fut = hash_batch(cur_jobs)
            else:
                if pool is None:
                    pool = HashPool(nworkers)
                fut = pool.submit(cur_jobs, cur_bytes)
        window.append((fut, cur_items))
        pending += len(cur_items)
        cur_items, cur_jobs, cur_bytes = [], [], 0
        drain(MAX_PENDING)

    def push(item: tuple[Any, ...]) -> None:
        nonlocal cur_bytes
        job = item[8]
        if job is None and not pending and not cur_items:
            finish(item, None)  # nothing waits before it: no need to queue
            return
        cur_items.append(item)
        if job is not None:
            cur_jobs.append(job)
            cur_bytes += item[3].st_size
            if cur_bytes >= BATCH_BYTES:
                flush_batch(False)
                return
        if len(cur_items) >= BATCH_ITEMS:
            flush_batch(False)

    def prepare(kind: int, key: bytes, path: str, st: os.stat_result, crule: CompiledRule,
                link: bytes, old_r: bytes | None) -> tuple[Any, ...]:
        fspath = root_prefix + path if root_prefix else path
        xattrs = None
        if crule.wants_xattrs and (kind != _ADDED or hash_added):
            xattrs, err = R.read_xattrs(fspath)
            if err is not None:
                on_error(path, err)
        job = None
        algo = crule.hash_algo
        if algo is not None and S_ISREG(st.st_mode) and (kind != _ADDED or hash_added):
            prefix_len = None
            if crule.growing and old_r is not None:
                old_fields = _STAT.unpack_from(old_r)
                if S_ISREG(old_fields[0]):
                    prefix_len = old_fields[5]
            job = (fspath, st.st_dev, st.st_ino, algo, prefix_len)
        return (kind, key, path, st, crule, link, old_r, xattrs, job)

    skip_prefix: bytes | None = None
    seen = 0
    try:
        w = next(walker, None)
        o = next(old_rows, None)
        while w is not None or o is not None:
            if o is not None and (w is None or o[0] < w[0]):
                ok, orow = o
                if (skip_prefix is not None and ok.startswith(skip_prefix)) or ok in s.error_keys:
                    push((_CARRY, ok, "", None, None, b"", orow, None, None))
                else:
                    mode = _STAT.unpack_from(orow)[0]
                    s.removed.append(EntryChange(key_path(ok), "removed", R.ftype_name(mode)))
                o = next(old_rows, None)
                continue
            key, path, st, crule, wflags, link = w  # type: ignore[misc]
            seen += 1
            if progress is not None and seen % _PROGRESS_EVERY == 0:
                s.entries = seen
                progress(seen, s.bytes_hashed)
            if wflags & UNLISTED:
                skip_prefix = key + b"\0"
            w = next(walker, None)
            if o is None or o[0] != key:
                push(prepare(_ADDED, key, path, st, crule, link, None))
                continue
            old_r = o[1]
            o = next(old_rows, None)
            if not full and stat_pack(
                st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid,
                st.st_size, st.st_blocks, st.st_mtime_ns, st.st_ctime_ns,
            ) == old_r[:stat_size]:
                # Unchanged inode state: content and xattrs cannot have changed (any write
                # moves mtime and ctime; any xattr, owner or mode change moves ctime).
                fx = fixed_unpack(old_r)
                oflags, llen, hlen = fx[9], fx[10], fx[11]
                have_algo = R.HASH_NAMES.get(old_r[fixed_size + llen]) if hlen else None
                if (not crule.wants_xattrs or oflags & R.F_XATTRS) and (
                    crule.hash_algo is None or have_algo == crule.hash_algo or not S_ISREG(st.st_mode)
                ):
                    if add is not None:
                        push((_CARRY, key, path, None, None, b"", old_r, None, None))
                    continue
            push(prepare(_SAME, key, path, st, crule, link, old_r))
        s.entries = seen
        flush_batch(True)
        drain(0)
    finally:
        if pool is not None:
            pool.close()
        walker.close()  # type: ignore[attr-defined]  # a generator: closes its directory fds
    if progress is not None:
        progress(seen, s.bytes_hashed)
    return s


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
        "hostname": socket.gethostname(),
    }


def _open_verified(db: str, key: Key, root: str, config: FimConfig | None, for_update: bool = False) -> Baseline:
    b = Baseline(db, key)
    try:
        h = b.header
        if h.get("superseded_by"):
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
    except BaseException:
        b.close()
        raise
    return b


def _db_path(config: FimConfig, db: str | os.PathLike[str] | None) -> str:
    if db is not None:
        return os.fspath(db)
    if config.database:
        return config.database
    raise InputError("no baseline database given (--db, or `database:` in the configuration)")


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
    if os.path.exists(dbp) and not force:
        raise InputError("a baseline already exists (use `fim update` to accept changes, or --force to replace it)", dbp)
    t0 = time.monotonic()
    writer = BaselineWriter(dbp, key, _identity(config, root_s, secrets.token_hex(16), 1, None))
    try:
        stats = _scan(config, prefix, dbp, None, writer, True, progress, workers)
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
) -> CheckResult:
    """Compare the filesystem with the baseline. The baseline is verified as it is read
    (header first, every entry against the sealed MAC by the end); an unverifiable
    baseline raises IntegrityError and gives no result. The outcome is recorded in the
    baseline's check history unless `record` is False."""
    dbp = _db_path(config, db)
    root_s, prefix = normalize_root(root)
    t0 = time.monotonic()
    with _open_verified(dbp, key, root_s, config) as b:
        b.checks()  # the history must verify too: fim_status reads it
        stats = _scan(config, prefix, dbp, b, None, full, progress, workers)
        result = _result(BaselineInfo.from_header(dbp, b.header), stats, t0, full)
        if record:
            b.record_check(result.record("full-check" if full else "check"))
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
) -> UpdateResult:
    """Accept the current state: verify the baseline, compare, write the next generation
    and promote it atomically, keeping the previous one as `<db>.prev` (sealed as superseded)."""
    dbp = _db_path(config, db)
    root_s, prefix = normalize_root(root)
    t0 = time.monotonic()
    with _open_verified(dbp, key, root_s, config, for_update=True) as b:
        b.checks()
        h = b.header
        writer = BaselineWriter(
            dbp, key, _identity(config, root_s, h["lineage_id"], int(h["generation"]) + 1, h["baseline_id"])
        )
        try:
            stats = _scan(config, prefix, dbp, b, writer, full, progress, workers)
        except BaseException:
            writer.abort()
            raise
        result = _result(BaselineInfo.from_header(dbp, h), stats, t0, full)
        config_changed = h["config_digest"] != config.digest
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
    s = _Stats()
    wanted: dict[bytes, str] = {}
    for p in paths:
        text = os.fsdecode(p)
        if not text.startswith("/"):
            raise InputError(f"recheck: path {text!r} is not absolute")
        norm = os.path.normpath(text)
        wanted[path_key(norm)] = norm
    with _open_verified(dbp, key, root_s, config) as b:
        for k in sorted(wanted):
            path = wanted[k]
            crule = _watching_rule(config, rules, path)
            if crule is None:
                continue
            old_r = b.lookup(k)
            fspath = fs_path(prefix, path)
            try:
                st = os.lstat(fspath)
            except FileNotFoundError:
                if old_r is not None:
                    s.removed.append(EntryChange(path, "removed", R.ftype_name(_STAT.unpack_from(old_r)[0])))
                continue
            except OSError as e:
                s.errors.append(ScanIssue(path, f"cannot stat: {e.strerror}"))
                continue
            s.entries += 1
            if old_r is None:
                s.added.append(EntryChange(path, "added", R.ftype_name(st.st_mode)))
                continue
            rule = crule.rule
            link = b""
            if stat.S_ISLNK(st.st_mode):
                try:
                    link = os.fsencode(os.readlink(fspath))
                except OSError as e:
                    s.errors.append(ScanIssue(path, f"cannot read link: {e.strerror}"))
            xattrs = None
            if rule.wants_xattrs:
                xattrs, err = R.read_xattrs(fspath)
                if err:
                    s.errors.append(ScanIssue(path, err))
            old_rec = R.unpack(old_r)
            algo, digest, prefix_digest, flags = None, b"", None, 0
            st9 = R.stat_key(st)
            if rule.hash_algo and stat.S_ISREG(st.st_mode):
                plen = old_rec.size if rule.growing and stat.S_ISREG(old_rec.mode) else None
                digest, prefix_digest, hst9, err = hash_file(fspath, st.st_dev, st.st_ino, rule.hash_algo, plen)
                if err:
                    s.errors.append(ScanIssue(path, err))
                    flags = R.F_NOHASH
                elif hst9 is not None:
                    algo, st9 = rule.hash_algo, hst9
                    s.hashed += 1
                    s.bytes_hashed += st9[5]
            new_rec = R.unpack(R.pack(st9, flags, link, algo, digest, xattrs))
            changes = R.compare(old_rec, new_rec, rule.attrs, prefix_digest)
            if changes:
                s.changed.append(EntryChange(path, "changed", R.ftype_name(st.st_mode), tuple(changes)))
        info = BaselineInfo.from_header(dbp, b.header)
    return _result(info, s, t0, True)
