"""The FIM baseline store: one SQLite file holding entries in key order, a MAC-sealed header
that binds them to their identity, and a MAC-chained history of checks; written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

from secpolicy.errors import InputError, IntegrityError, RuntimeFailure
from secpolicy.outfile import check_sqlite_companions

__all__ = ["FORMAT", "Baseline", "BaselineWriter", "Key", "generation_hash", "lock_directory", "promote"]

FORMAT = 2
_MIN_KEY = 16
_MAX_KEY_FILE = 4096  # a key is 16 bytes or more; a key file larger than this is a mistake
_BATCH = 4096
_LEN = struct.Struct("<I")
_LENS = struct.Struct("<II")
# Writers wait this long for readers: a check streams every row under one read lock, and
# the seal of a superseded baseline or a check record must wait for it, not fail.
_BUSY_TIMEOUT = 600.0
# Header fields that change after a baseline is sealed (its history and its succession).
_MUTABLE = ("checks_count", "checks_head", "superseded_by")

_SCHEMA = """
CREATE TABLE header (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, mac BLOB NOT NULL);
CREATE TABLE entries (k BLOB PRIMARY KEY, r BLOB NOT NULL, t BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE checks (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, mac BLOB NOT NULL);
CREATE TABLE contents (k BLOB PRIMARY KEY, z BLOB NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Key:
    """The secret the baseline is sealed with; `material=None` means an unkeyed baseline
    (a digest that catches corruption but not someone who rewrites the file)."""

    material: bytes | None
    source: str

    @classmethod
    def from_file(cls, path: str) -> Key:
        """The key in `path`: a regular file of at most _MAX_KEY_FILE bytes, opened without
        blocking, so a FIFO or /dev/zero given by mistake is refused rather than waited on."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise InputError(f"cannot read key file: {e.strerror}", path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputError("key file is not a regular file", path)
            if st.st_size > _MAX_KEY_FILE:
                raise InputError(f"key file is {st.st_size} bytes; a key file holds at most {_MAX_KEY_FILE}", path)
            data = os.read(fd, _MAX_KEY_FILE + 1)
        except OSError as e:
            raise InputError(f"cannot read key file: {e.strerror}", path) from None
        finally:
            os.close(fd)
        if len(data) > _MAX_KEY_FILE:
            raise InputError(f"key file holds more than {_MAX_KEY_FILE} bytes", path)
        data = data.strip()
        if len(data) < _MIN_KEY:
            raise InputError(f"key file holds {len(data)} bytes; at least {_MIN_KEY} are needed", path)
        return cls(data, f"file {path}")

    @classmethod
    def from_env(cls, name: str) -> Key:
        value = os.environb.get(os.fsencode(name))
        if value is None:
            raise InputError(f"environment variable {name} (--key-env) is not set")
        value = value.strip()
        if len(value) < _MIN_KEY:
            raise InputError(f"environment variable {name} holds {len(value)} bytes; at least {_MIN_KEY} are needed")
        return cls(value, f"environment variable {name}")

    @classmethod
    def none(cls) -> Key:
        return cls(None, "no key")

    @property
    def keyed(self) -> bool:
        return self.material is not None

    def sub(self, purpose: str) -> bytes:
        return hmac.new(self.material or b"", b"secpolicy-fim/1/" + purpose.encode(), "sha256").digest()

    @property
    def key_id(self) -> str:
        return self.sub("key-id")[:8].hex() if self.keyed else ""


def _canonical(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _row_tag_base(key: Key, baseline_id: bytes) -> Any:
    """A row's tag is keyed BLAKE2b-128 of len(k) (u32 LE), k and r; copies of this keyed
    state skip re-processing the key block for every row."""
    return hashlib.blake2b(digest_size=16, key=key.sub("row"), salt=baseline_id[:16])


def _row_tagger(key: Key, baseline_id: bytes) -> Any:
    base = _row_tag_base(key, baseline_id)

    def tag(k: bytes, r: bytes) -> bytes:
        t = base.copy()
        t.update(_LEN.pack(len(k)) + k + r)
        return t.digest()

    return tag


def _entries_mac(key: Key, baseline_id: bytes) -> Any:
    m = hmac.new(key.sub("entries"), digestmod="sha256")
    m.update(baseline_id)
    return m


def generation_hash(header: dict[str, Any]) -> str:
    """SHA-256 of what a baseline generation was sealed with (identity, configuration, entry
    count and entries MAC), leaving out what changes later (its history, its succession):
    what the audit log records for each generation."""
    fixed = {k: v for k, v in header.items() if k not in _MUTABLE}
    return hashlib.sha256(_canonical(fixed).encode()).hexdigest()


@contextlib.contextmanager
def lock_directory(path: str) -> Iterator[None]:
    """Hold an exclusive lock on the directory of the database `path` while a new baseline is
    built and promoted: a second `init` or `update` waits instead of racing the first."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise InputError(f"directory of the baseline database cannot be opened: {e.strerror}", directory) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BaselineWriter:
    """Builds a new baseline in a temporary file beside `path`; `finish` seals it and
    `promote` (below) puts it in place atomically."""

    def __init__(self, path: str, key: Key, identity: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise InputError(f"directory of the baseline database does not exist: {directory}")
        self.tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{secrets.token_hex(6)}")
        try:
            os.close(os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            self.db = sqlite3.connect(self.tmp, isolation_level=None)
            # A temporary file nobody else sees yet: durability comes from fsync + rename.
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            # Rows arrive in key order: only the rightmost path of the tree is ever touched.
            self.db.execute("PRAGMA cache_size=-8192")
            self.db.executescript(_SCHEMA)
            self.db.execute("BEGIN")
        except (OSError, sqlite3.Error) as e:
            self._cleanup()
            raise RuntimeFailure(f"cannot create baseline database next to {path}: {e}") from None
        self.baseline_id = secrets.token_bytes(16)
        self.identity = dict(identity)
        self._tag_base = _row_tag_base(key, self.baseline_id)
        self._mac = _entries_mac(key, self.baseline_id)
        self._rows: list[tuple[bytes, bytes]] = []
        self._contents: list[tuple[bytes, bytes]] = []
        self.count = 0
        self._last = b""

    def add(self, k: bytes, r: bytes) -> None:
        if k <= self._last and self.count:
            raise RuntimeFailure(f"internal error: baseline entries out of order at {k!r}")
        self._last = k
        self.count += 1
        rows = self._rows
        rows.append((k, r))
        if len(rows) >= _BATCH:
            self._flush()

    def add_content(self, k: bytes, z: bytes) -> None:
        """A stored content copy; the record of `k` carries its SHA-256."""
        self._contents.append((k, z))
        if len(self._contents) >= 256:
            self.db.executemany("INSERT INTO contents (k, z) VALUES (?, ?)", self._contents)
            self._contents.clear()

    def _flush(self) -> None:
        if self._contents:
            self.db.executemany("INSERT INTO contents (k, z) VALUES (?, ?)", self._contents)
            self._contents.clear()
        rows = self._rows
        if not rows:
            return
        # Tags and MAC input for a whole batch in one loop: per-row calls cost more than
        # the hashing itself at a few hundred thousand rows.
        # The values are bound as bytearrays: the same BLOBs, but Python's sqlite3 looks for
        # an adapter for every `bytes` value (a failed attribute lookup, an exception made
        # and dropped, per value), which cost a third of the insert.
        tag_base = self._tag_base
        pack2 = _LENS.pack
        pack1 = _LEN.pack
        blob = bytearray
        tagged = []
        parts: list[bytes] = []
        for k, r in rows:
            lk = len(k)
            t = tag_base.copy()
            t.update(pack1(lk) + k + r)
            tagged.append((blob(k), blob(r), blob(t.digest())))
            parts += (pack2(lk, len(r)), k, r)
        self.db.executemany("INSERT INTO entries (k, r, t) VALUES (?, ?, ?)", tagged)
        self._mac.update(b"".join(parts))
        rows.clear()

    def finish(self, first_check: dict[str, Any] | None = None) -> dict[str, Any]:
        """Seal the baseline: header with the entries MAC, optionally a first check record."""
        try:
            self._flush()
            header = dict(self.identity)
            header.update(
                format=FORMAT,
                baseline_id=self.baseline_id.hex(),
                keyed=self.key.keyed,
                key_id=self.key.key_id,
                entry_count=self.count,
                entries_mac=self._mac.hexdigest(),
                checks_count=0,
                checks_head="",
                superseded_by=None,
            )
            if first_check is not None:
                body = _canonical(dict(first_check, seq=1, baseline_id=header["baseline_id"]))
                mac = hmac.new(self.key.sub("checks"), body.encode(), "sha256").digest()
                self.db.execute("INSERT INTO checks (seq, body, mac) VALUES (1, ?, ?)", (body, mac))
                header.update(checks_count=1, checks_head=mac.hex())
            body = _canonical(header)
            self.db.execute(
                "INSERT INTO header (id, body, mac) VALUES (1, ?, ?)",
                (body, hmac.new(self.key.sub("header"), body.encode(), "sha256").digest()),
            )
            self.db.execute("COMMIT")
            self.db.execute("PRAGMA journal_mode=DELETE")
            self.db.close()
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return header
        except (OSError, sqlite3.Error) as e:
            self._cleanup()
            raise RuntimeFailure(f"cannot write baseline database: {e}") from None

    def abort(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):  # best effort while already failing
            self.db.close()
        for p in (self.tmp, self.tmp + "-journal"):
            try:
                os.unlink(p)
            except OSError:
                pass


def promote(tmp: str, path: str, keep_previous: bool) -> str | None:
    """Atomically put `tmp` at `path`. The old baseline, if any, stays as `path.prev`;
    at every instant `path` is a complete baseline, old or new."""
    previous = None
    try:
        if keep_previous and os.path.exists(path):
            previous = path + ".prev"
            link_tmp = f"{previous}.tmp-{secrets.token_hex(6)}"
            os.link(path, link_tmp)
            os.replace(link_tmp, previous)
        os.replace(tmp, path)
        _fsync_dir(path)
    except OSError as e:
        raise RuntimeFailure(f"cannot put the new baseline in place at {path}: {e.strerror}") from None
    return previous


class _Superseded(Exception):
    """Raised inside a write transaction to leave a superseded baseline untouched."""


class Baseline:
    """A baseline opened for reading and appending check records. Opening verifies the
    header MAC and key; `rows()` verifies the entries as they are streamed."""

    def __init__(self, path: str, key: Key) -> None:
        self.path = path
        self.key = key
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InputError("no baseline database here (run `secpolicy fim init` first)", path) from None
        except OSError as e:
            raise InputError(f"cannot open the baseline database: {e.strerror}", path) from None
        # The file the path named when opened; `update` renames a new one over it.
        self.ident = (st.st_dev, st.st_ino)
        check_sqlite_companions(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT)
            self.db.execute("PRAGMA query_only=ON")
            self.header = self._read_header()
        except sqlite3.DatabaseError as e:
            self.close()
            raise IntegrityError(f"{path}: baseline database is damaged or not a baseline ({e})") from None
        except IntegrityError:
            self.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replaced(self) -> bool:
        """Does the path now name another file than the one this baseline was opened from?"""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self.ident

    def _fail(self, why: str) -> IntegrityError:
        return IntegrityError(f"{self.path}: baseline refused: {why}")

    def _read_header(self) -> dict[str, Any]:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"header", "entries", "checks"} <= tables:
            raise self._fail("not a secpolicy FIM baseline (tables missing)")
        rows = self.db.execute("SELECT body, mac FROM header").fetchall()
        if len(rows) != 1:
            raise self._fail("header missing")
        body, mac = rows[0]
        try:
            header = json.loads(body)
            keyed = bool(header["keyed"])
            key_id = header["key_id"]
        except (ValueError, KeyError, TypeError):
            raise self._fail("header unreadable") from None
        if keyed and not self.key.keyed:
            raise self._fail("it is sealed with a key and none was given (--key-file or --key-env)")
        if not keyed and self.key.keyed:
            raise self._fail("it is not sealed with a key but a key was given; an unkeyed "
                             "baseline cannot prove it was not rewritten")
        if keyed and key_id != self.key.key_id:
            raise self._fail(f"wrong key (sealed with key id {key_id}, given key id {self.key.key_id})")
        expected = hmac.new(self.key.sub("header"), body.encode(), "sha256").digest()
        if not isinstance(mac, bytes) or not hmac.compare_digest(expected, mac):
            raise self._fail("header MAC does not verify (modified)")
        if header.get("format") == 1:
            raise InputError("this baseline (format 1) was made by an older secpolicy; run "
                             "`secpolicy fim init --force` to make one this version reads", self.path)
        if header.get("format") != FORMAT:
            raise self._fail(f"unsupported format {header.get('format')!r}")
        return header

    @property
    def baseline_id(self) -> bytes:
        return bytes.fromhex(self.header["baseline_id"])

    def rows(self) -> Iterator[tuple[bytes, bytes]]:
        """Entries in key order. The whole set is verified against the sealed MAC and count
        when the iteration ends: a consumer must exhaust it before trusting what it saw."""
        mac = _entries_mac(self.key, self.baseline_id)
        pack = struct.Struct("<II").pack
        count = 0
        parts: list[bytes] = []
        last = None
        try:
            cur = self.db.execute("SELECT k, r FROM entries ORDER BY k")
            while True:
                batch = cur.fetchmany(_BATCH)
                if not batch:
                    break
                for k, r in batch:
                    if not isinstance(k, bytes) or not isinstance(r, bytes):
                        raise self._fail("entry of the wrong type (modified)")
                    parts.append(pack(len(k), len(r)) + k + r)
                    if last is not None and k <= last:
                        raise self._fail("entries out of order (modified)")
                    last = k
                    yield k, r
                count += len(batch)
                mac.update(b"".join(parts))
                parts.clear()
        except sqlite3.DatabaseError as e:
            raise self._fail(f"database damaged while reading entries ({e})") from None
        if count != self.header["entry_count"]:
            raise self._fail(f"holds {count} entries, sealed with {self.header['entry_count']} (rows added or deleted)")
        if not hmac.compare_digest(mac.hexdigest(), str(self.header["entries_mac"])):
            raise self._fail("entries do not match their MAC (modified)")

    def verify_entries(self) -> int:
        n = 0
        for _ in self.rows():
            n += 1
        return n

    def lookup(self, k: bytes) -> bytes | None:
        """One entry, verified by its own row tag (bound to this baseline and key)."""
        try:
            row = self.db.execute("SELECT r, t FROM entries WHERE k = ?", (k,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise self._fail(f"database damaged ({e})") from None
        if row is None:
            return None
        r, t = row
        if not isinstance(r, bytes) or not isinstance(t, bytes):
            raise self._fail("entry of the wrong type (modified)")
        if not hmac.compare_digest(_row_tagger(self.key, self.baseline_id)(k, r), t):
            raise self._fail("an entry does not match its tag (modified)")
        return r

    def content(self, k: bytes, digest: bytes) -> bytes | None:
        """The stored content copy of entry `k`, if it matches `digest` (from its verified
        record); a copy that does not is refused like a modified row."""
        try:
            row = self.db.execute("SELECT z FROM contents WHERE k = ?", (k,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise self._fail(f"database damaged ({e})") from None
        if row is None or not isinstance(row[0], bytes):
            raise self._fail("a stored content copy is missing (modified)")
        if not hmac.compare_digest(hashlib.sha256(row[0]).digest(), digest):
            raise self._fail("a stored content copy does not match its entry (modified)")
        return row[0]

    def checks(self) -> list[dict[str, Any]]:
        """The check history, verified link by link against the header. Both are read in one
        read transaction: a check another process records meanwhile (its record and the
        header's new head, committed together) is seen whole or not at all. Read apart, a
        record committed between the header read at open and this read looked like a record
        added behind the header's back: a false tamper alarm (exit 5)."""
        try:
            self.db.execute("BEGIN")
            try:
                header = self._read_header()
                rows = self.db.execute("SELECT seq, body, mac FROM checks ORDER BY seq").fetchall()
            finally:
                self.db.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise self._fail(f"database damaged ({e})") from None
        if header["baseline_id"] != self.header["baseline_id"]:
            raise self._fail("the baseline was replaced while in use")
        return self._verify_checks(rows, header)

    def _verify_checks(self, rows: list[Any], header: dict[str, Any]) -> list[dict[str, Any]]:
        ck = self.key.sub("checks")
        prev = b""
        out = []
        for i, (seq, body, mac) in enumerate(rows, start=1):
            if seq != i or not isinstance(mac, bytes):
                raise self._fail("check history has gaps (modified)")
            if not hmac.compare_digest(hmac.new(ck, prev + body.encode(), "sha256").digest(), mac):
                raise self._fail(f"check record {seq} does not verify (modified)")
            prev = mac
            out.append(json.loads(body))
        if len(out) != header["checks_count"] or prev.hex() != header["checks_head"]:
            raise self._fail("check history does not match the header (records removed or added)")
        return out

    def _write(self, change: Any) -> dict[str, Any]:
        """Run `change(header) -> header` in one write transaction, re-reading and
        re-verifying the header under the lock first."""
        try:
            self.db.execute("PRAGMA query_only=OFF")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                header = self._read_header()
                if header["baseline_id"] != self.header["baseline_id"]:
                    raise self._fail("the baseline was replaced while in use")
                header = change(header)
                body = _canonical(header)
                mac = hmac.new(self.key.sub("header"), body.encode(), "sha256").digest()
                self.db.execute("UPDATE header SET body = ?, mac = ? WHERE id = 1", (body, mac))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                self.db.execute("PRAGMA query_only=ON")
        except sqlite3.Error as e:
            raise RuntimeFailure(f"{self.path}: cannot record in the baseline database: {e}") from None
        self.header = header
        return header

    def record_check(self, record: dict[str, Any]) -> str | None:
        """Append a check record to the MAC chain and move the header's head to it. Returns
        why it was not recorded when a newer generation took this baseline's place meanwhile
        (an `update` ran during the check): a superseded baseline takes no more records."""
        if self.replaced():
            return "the baseline was replaced by a newer generation during this check"

        def change(header: dict[str, Any]) -> dict[str, Any]:
            if header.get("superseded_by"):
                raise _Superseded

            rows = self.db.execute("SELECT seq, body, mac FROM checks ORDER BY seq").fetchall()
            self._verify_checks(rows, header)
            seq = header["checks_count"] + 1
            body = _canonical(dict(record, seq=seq, baseline_id=header["baseline_id"]))
            prev = bytes.fromhex(header["checks_head"])
            mac = hmac.new(self.key.sub("checks"), prev + body.encode(), "sha256").digest()
            self.db.execute("INSERT INTO checks (seq, body, mac) VALUES (?, ?, ?)", (seq, body, mac))
            return dict(header, checks_count=seq, checks_head=mac.hex())

        try:
            self._write(change)
        except _Superseded:
            return "the baseline was superseded by a newer generation during this check"
        except RuntimeFailure:
            # SQLite refuses writes to a file renamed away since it was opened
            # (SQLITE_READONLY_DBMOVED): a new generation was promoted meanwhile.
            if self.replaced():
                return "the baseline was replaced by a newer generation during this check"
            raise
        return None

    def mark_superseded(self, successor: dict[str, Any]) -> None:
        """Seal into this (now previous) baseline that a newer generation replaced it, so
        putting it back in place is refused."""

        def change(header: dict[str, Any]) -> dict[str, Any]:
            return dict(
                header,
                superseded_by={
                    "baseline_id": successor["baseline_id"],
                    "generation": successor["generation"],
                    "at": time.time(),
                },
            )

        self._write(change)
