"""The tamper-evident audit log writer: append-only canonical JSON lines chained by hash,
MACed under a key that evolves at every checkpoint, with checkpoints, seals and rotation."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import hmac
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from secpolicy.auditlog.canonical import canonical, loads, now_iso, parse_canonical
from secpolicy.auditlog.checkpoint import Checkpoint, evolve_key, key_id, open_regular, read_regular
from secpolicy.auditlog.merkle import Frontier, leaf_hash
from secpolicy.errors import InputError, IntegrityError, RuntimeFailure

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from secpolicy.auditlog.records import AuditRecord

__all__ = [
    "GENESIS_PREV",
    "KINDS",
    "LOCK_WAIT_S",
    "MAX_ENTRY_BYTES",
    "MAX_STATE_BYTES",
    "AuditLog",
    "CheckpointCopyError",
    "LogConfig",
    "LogOptions",
    "entry_mac",
    "line_hash",
    "read_key",
    "read_pseudonym_key",
    "segment_name",
    "write_all",
    "write_private_file",
]

GENESIS_PREV = "0" * 64
KINDS = ("start", "record", "checkpoint", "rotate", "seal")
STATE_FILE = "state.json"
CHECKPOINT_FILE = "checkpoints.jsonl"
CONFIG_FILE = "config.json"
LOCK_FILE = "lock"
# The key of the pseudonyms redaction gives users, paths and hosts in what a run writes:
# kept with the log's other key material, so pseudonyms correlate across the runs it records.
PSEUDONYM_KEY_FILE = "pseudonym.key"
_STATE_VERSION = 1
# How long a writer waits for another writer of the same log to finish (as `fim` does): short
# runs (`log append`, `log checkpoint`, `scan`, `replay`, `fim`) take turns instead of failing.
LOCK_WAIT_S = 60.0
_LOCK_POLL_S = 0.05
# The start entry of a log with many copy targets is still far below this.
_MAX_START_LINE = 1024 * 1024
# The longest entry a writer writes: a reader of the log (`verify`) reads at most this much as
# one line, so a hostile segment (a sparse file of a terabyte of zeros) costs it bounded memory.
MAX_ENTRY_BYTES = 64 * 1024 * 1024
# state.json holds a frontier of at most 64 hashes: a few KiB.
MAX_STATE_BYTES = 1024 * 1024


def entry_mac(key: bytes, entry_without_mac: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical(entry_without_mac), hashlib.sha256).hexdigest()


def line_hash(line: bytes) -> str:
    """What the next entry's `prev` holds: SHA-256 of the whole canonical line (MAC included)."""
    return hashlib.sha256(line).hexdigest()


def segment_name(index: int) -> str:
    return f"segment-{index:06d}.jsonl"


def read_key(text: str, what: str = "key") -> bytes:
    """An initial key from its hex text (as written by `AuditLog.create`)."""
    cleaned = text.strip()
    try:
        key = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise InputError(f"{what} is not hex") from exc
    if len(key) != 32:
        raise InputError(f"{what} must be 32 bytes (64 hex digits), got {len(key)}")
    return key


class CheckpointCopyError(RuntimeFailure):
    """Checkpoints could not be copied to some of their targets. The log itself is consistent
    (every checkpoint is in it; `close` sealed it before raising): the copies are side outputs."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = tuple(failures)


def _check_copy_target(path: Path) -> None:
    """Refuse (InputError) a checkpoint copy target that cannot be appended to: a directory, a
    missing parent, no permission, a FIFO without a reader. Tried before the log is written."""
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            # Created and removed again: only a real creation tells whether it would work.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
            os.unlink(path)
        os.close(fd)
    except OSError as exc:
        raise InputError(f"cannot append checkpoints here: {exc.strerror or exc}", str(path)) from None


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data`: write() may write fewer (a full disk, a file size limit);
    the rest is written after them, or the OSError that stopped it raised."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, f"no byte written of the last {len(view)}")
        view = view[written:]


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, mode 0600, durable once this returns."""
    tmp = path.with_name(path.name + ".tmp")
    fd = open_regular(tmp, "temporary file", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, follow=False, verb="write")
    try:
        os.fchmod(fd, 0o600)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_pseudonym_key(directory: str | Path, create: bool = True) -> bytes | None:
    """The pseudonym key kept in the audit log `directory` (32 bytes, hex, 0600), made now
    if the log has none yet and `create`; None when `directory` is no audit log."""
    path = Path(directory)
    if not (path / STATE_FILE).is_file():
        return None
    key_path = path / PSEUDONYM_KEY_FILE
    if create and not key_path.exists():
        import secrets

        tmp = key_path.with_name(f"{PSEUDONYM_KEY_FILE}.{os.getpid()}.tmp")
        write_private_file(tmp, secrets.token_bytes(32).hex().encode() + b"\n")
        try:
            os.link(tmp, key_path)  # never replaces a key another run made meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        fd = os.open(key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read the pseudonym key: {exc.strerror}", str(key_path)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError("the pseudonym key is not a regular file", str(key_path))
        if st.st_mode & 0o077:
            raise InputError(f"the pseudonym key is readable by others (mode {st.st_mode & 0o777:04o}); chmod 600 it",
                             str(key_path))
        text = f.read(200).decode("ascii", "replace")
    return read_key(text, f"pseudonym key {key_path}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LogOptions:
    """How often to checkpoint (and so evolve the key), rotate, and force data to disk."""

    checkpoint_every: int = 1000  # entries
    checkpoint_interval: float | None = 300.0  # seconds; None = by count only
    max_segment_bytes: int = 64 * 1024 * 1024
    sync: str = "always"  # "always": fsync every entry; "checkpoint": only at checkpoints
    signing_key: Ed25519PrivateKey | None = None
    signing_key_path: Path | None = None  # recorded at create, so later writers sign too
    copy_checkpoints_to: tuple[Path, ...] = ()
    on_checkpoint: Callable[[Checkpoint], None] | None = None
    lock_wait: float = LOCK_WAIT_S  # seconds `open` waits for another writer; 0 = fail at once
    on_lock_wait: Callable[[], None] | None = None  # called once when `open` starts to wait

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise InputError("checkpoint_every must be at least 1")
        if self.lock_wait < 0:
            raise InputError("lock_wait must not be negative")
        if self.sync not in ("always", "checkpoint"):
            raise InputError("sync must be 'always' or 'checkpoint'")
        if self.max_segment_bytes < 1024:
            raise InputError("max_segment_bytes must be at least 1024")


@dataclass(frozen=True)
class LogConfig:
    """What `log init` set for every later writer of the log (`config.json`, 0600): the key
    file that signs checkpoints and where checkpoints are copied. The signing public key and
    the copy targets are also in the MACed start entry, where a verifier can trust them."""

    signing_key_path: str | None = None
    signing_public_key: str | None = None
    copy_checkpoints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "signing_key": self.signing_key_path,
                "signing_public_key": self.signing_public_key, "copy_checkpoints": list(self.copy_checkpoints)}

    @classmethod
    def of(cls, options: LogOptions) -> LogConfig:
        pub = None
        if options.signing_key is not None:
            from cryptography.hazmat.primitives import serialization

            pub = options.signing_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        path = str(Path(options.signing_key_path).resolve()) if options.signing_key_path else None
        return cls(path, pub, tuple(str(Path(p).resolve()) for p in options.copy_checkpoints_to))

    @classmethod
    def load(cls, directory: Path) -> LogConfig | None:
        """The log's configuration, or None when it has none (a log made before writers kept
        one, or one whose config.json was deleted: `check_config` tells them apart)."""
        path = directory / CONFIG_FILE
        if not os.path.lexists(path):
            return None
        try:
            # canonical.loads: a file nested too deeply is unreadable, not a RecursionError.
            data = loads(read_regular(path, "audit log configuration", _MAX_START_LINE, follow=False))
        except ValueError as exc:
            raise InputError(f"unreadable audit log configuration: {exc}", str(path)) from exc
        if not isinstance(data, dict) or data.get("version") != 1:
            raise InputError("unsupported audit log configuration", str(path))
        copies = data.get("copy_checkpoints") or []
        key, pub = data.get("signing_key"), data.get("signing_public_key")
        if not (isinstance(copies, list) and all(isinstance(c, str) for c in copies)
                and isinstance(key, str | None) and isinstance(pub, str | None)):
            raise InputError("audit log configuration has mistyped fields", str(path))
        return cls(key, pub, tuple(copies))

    @classmethod
    def of_start(cls, body: Mapping[str, Any]) -> LogConfig:
        """What the start entry of a log (seq 0, under the MAC) records of its configuration."""
        pub = body.get("signing_public_key")
        copies = body.get("copy_checkpoints") or []
        return cls(None, pub if isinstance(pub, str) and pub else None,
                   tuple(str(c) for c in copies) if isinstance(copies, list) else ())

    def records(self) -> str:
        """What this configuration makes a writer do, in words."""
        out = []
        if self.signing_public_key:
            out.append(f"signing every checkpoint (key {self.signing_public_key[:16]}...)")
        if self.copy_checkpoints:
            out.append("copying every checkpoint to " + ", ".join(self.copy_checkpoints))
        return " and ".join(out) or "no signing and no checkpoint copies"

    def agrees_with(self, start: LogConfig) -> bool:
        return (self.signing_public_key == start.signing_public_key
                and sorted(self.copy_checkpoints) == sorted(start.copy_checkpoints))

    def apply(self, options: LogOptions, directory: Path) -> LogOptions:
        """`options` with this configuration's signing key (unless one is given) and copy
        targets added: a writer that was not told about them still signs and copies."""
        signing = options.signing_key
        if signing is None and self.signing_public_key:
            if not self.signing_key_path:
                raise InputError("the log signs its checkpoints but its configuration names no key file: "
                                 "give the signing key", str(directory / CONFIG_FILE))
            from secpolicy.auditlog.checkpoint import load_private_key

            try:
                signing = load_private_key(self.signing_key_path)
            except InputError as exc:
                raise InputError(f"the log was set up (log init --sign-key) to sign checkpoints with this key, "
                                 f"which cannot be used: {exc.message}", self.signing_key_path) from exc
            if LogConfig.of(LogOptions(signing_key=signing)).signing_public_key != self.signing_public_key:
                raise InputError("the key file no longer holds the key the log was set up to sign with",
                                 self.signing_key_path)
        copies = list(options.copy_checkpoints_to)
        known = {str(Path(p).resolve()) for p in copies}
        copies += [Path(c) for c in self.copy_checkpoints if c not in known]
        return dataclasses.replace(options, signing_key=signing, copy_checkpoints_to=tuple(copies))


def start_config(directory: Path) -> LogConfig | None:
    """What the start entry of the log in `directory` records of its configuration (the
    signing public key and the checkpoint copies), or None if the log has no first segment.
    IntegrityError if its first line is no start entry."""
    path = directory / segment_name(0)
    if not os.path.lexists(path):
        return None
    with os.fdopen(open_regular(path, "log segment"), "rb") as f:
        line = f.readline(_MAX_START_LINE)
    try:
        entry = loads(line)
    except ValueError:
        entry = None
    if not (isinstance(entry, dict) and entry.get("kind") == "start" and entry.get("seq") == 0
            and isinstance(entry.get("body"), dict)):
        raise IntegrityError(f"{path}: the first line is not the log's start entry: modified")
    return LogConfig.of_start(entry["body"])


def check_config(directory: Path, config: LogConfig | None) -> None:
    """Refuse (InputError) to write a log whose config.json is missing or differs from what its
    start entry records: a writer would silently stop signing or copying checkpoints."""
    start = start_config(directory)
    if start is None or (config is None and start == LogConfig()):
        return
    path = str(directory / CONFIG_FILE)
    if config is None:
        raise InputError(f"missing, but the log's start entry records {start.records()}: a writer without it "
                         f"would silently stop doing so; put config.json back (docs/auditlog.md says what it "
                         f"holds)", path)
    if not config.agrees_with(start):
        raise InputError(f"says {config.records()}, but the log's start entry records {start.records()}: it was "
                         f"edited; put back what the start entry records (docs/auditlog.md)", path)


class AuditLog:
    """One writer of one log directory (an exclusive lock keeps a second one out).

    Only the current epoch key is kept, in memory and in `state.json` (0600); the initial key
    returned by `create` must be stored off the host: it is what the verifier needs."""

    def __init__(self, directory: Path, options: LogOptions, state: dict[str, Any], lock_fd: int) -> None:
        self.directory = directory
        self.options = options
        self._lock = threading.Lock()
        self._lock_fd = lock_fd
        self.log_id: str = state["log_id"]
        self._seq: int = state["seq"]
        self._epoch: int = state["epoch"]
        self._key = bytearray(bytes.fromhex(state["key"]))
        self._prev: str = state["prev"]
        self._frontier = Frontier.from_list(state["frontier_size"], state["frontier"])
        self._segment_index: int = state["segment"]
        self._since_checkpoint: int = state.get("since_checkpoint", 0)
        self._last_checkpoint_time = time.monotonic()
        self._fd = -1
        self._closed = False
        # target -> (tree size of the first checkpoint it missed, how many it missed, why)
        self._copy_failures: dict[str, tuple[int, int, str]] = {}
        self._open_segment()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, options: LogOptions | None = None) -> tuple[AuditLog, bytes]:
        """A new log in an empty (or absent) directory; returns the writer and the initial key."""
        import secrets
        import uuid

        options = options or LogOptions()
        for target in options.copy_checkpoints_to:
            _check_copy_target(Path(target))
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        if any(path.iterdir()):
            raise InputError("log directory is not empty", str(path))
        lock_fd = _lock(path)
        config = LogConfig.of(options)
        write_private_file(path / CONFIG_FILE, canonical(config.to_dict()))
        write_private_file(path / PSEUDONYM_KEY_FILE, secrets.token_bytes(32).hex().encode() + b"\n")
        initial = secrets.token_bytes(32)
        state = {
            "version": _STATE_VERSION,
            "log_id": str(uuid.uuid4()),
            "seq": 0,
            "epoch": 0,
            "key": initial.hex(),
            "prev": GENESIS_PREV,
            "frontier_size": 0,
            "frontier": [],
            "segment": 0,
            "offset": 0,
            "since_checkpoint": 0,
        }
        log = cls(path, options, state, lock_fd)
        log._append("start", {
            "log_id": log.log_id, "key_id": key_id(initial), "version": _STATE_VERSION,
            "resumed_after": None, "signing_public_key": config.signing_public_key,
            "copy_checkpoints": list(config.copy_checkpoints),
        })
        log._save_state()
        return log, initial

    @classmethod
    def open(cls, directory: str | Path, options: LogOptions | None = None) -> AuditLog:
        """Resume an existing log: fold in entries written after the last saved state, cut a
        partial last line, and record whether the previous run ended sealed or crashed."""
        options = options or LogOptions()
        path = Path(directory)
        if not os.path.lexists(path / STATE_FILE):
            raise InputError("not an audit log directory (no state.json)", str(path))
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
        # Targets the caller names are checked before anything is written; those `log init`
        # configured are tried at each checkpoint, and a failure there is reported at close,
        # after the seal: a copy is a side output and never leaves the log itself unsealed.
        for target in options.copy_checkpoints_to:
            _check_copy_target(Path(target))
        config = LogConfig.load(path)
        check_config(path, config)
        if config is not None:
            options = config.apply(options, path)
        lock_fd = _lock(path, options.lock_wait, options.on_lock_wait)
        try:
            state = loads(read_regular(path / STATE_FILE, "the writer's state", MAX_STATE_BYTES, follow=False,
                                      too_long="not a writer's state"))
            if state.get("version") != _STATE_VERSION:
                raise InputError("unsupported state version", str(path / STATE_FILE))
            recovered = _recover(path, state)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # a state.json not as written
            os.close(lock_fd)
            raise RuntimeFailure(f"{path}: cannot resume audit log: {exc}") from exc
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            log = cls(path, options, state, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise
        log._append("start", {
            "log_id": log.log_id, "version": _STATE_VERSION,
            "resumed_after": recovered["last_kind"] if recovered["last_kind"] == "seal" else "crash",
            "previous_seq": log._seq - 1,
            **({"discarded_partial_line": recovered["partial"]} if recovered["partial"] else {}),
        })
        log._save_state()
        return log

    # -- public API ---------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of entries written so far (the next sequence number)."""
        return self._seq

    @property
    def epoch(self) -> int:
        return self._epoch

    def append(self, record: AuditRecord | Mapping[str, Any]) -> int:
        """Write one audit record; returns its sequence number."""
        from secpolicy.auditlog.records import AuditRecord

        body = record.to_dict() if isinstance(record, AuditRecord) else dict(record)
        if not isinstance(record, AuditRecord):
            AuditRecord.from_dict(body)  # validates the AU-3 fields
        with self._lock:
            self._check_open()
            seq = self._append("record", body)
            self._since_checkpoint += 1
            due = self._since_checkpoint >= self.options.checkpoint_every
            interval = self.options.checkpoint_interval
            if interval is not None and time.monotonic() - self._last_checkpoint_time >= interval:
                due = True
            if due:
                self._checkpoint()
            elif self._segment_bytes >= self.options.max_segment_bytes:
                self._rotate()
            return seq

    def checkpoint(self) -> Checkpoint:
        """Write a checkpoint now (and start a new key epoch)."""
        with self._lock:
            self._check_open()
            return self._checkpoint()

    def tick(self) -> None:
        """Let a time-based checkpoint happen while no records arrive."""
        interval = self.options.checkpoint_interval
        with self._lock:
            if self._closed or interval is None or self._since_checkpoint == 0:
                return
            if time.monotonic() - self._last_checkpoint_time >= interval:
                self._checkpoint()

    @property
    def copy_failures(self) -> tuple[str, ...]:
        """The checkpoint copies that failed so far, one line per target."""
        out = []
        for target, (first, count, why) in self._copy_failures.items():
            which = f"checkpoint {first}" if count == 1 else f"{count} checkpoints (the first: {first})"
            out.append(f"{target}: cannot copy {which}: {why}")
        return tuple(out)

    def close(self) -> None:
        """Clean shutdown: a final checkpoint, then the seal that tells a stop from a crash.
        Raises CheckpointCopyError, once sealed, if any checkpoint could not be copied."""
        with self._lock:
            if self._closed:
                return
            self._checkpoint()
            self._append("seal", {"reason": "close"})
            os.fsync(self._fd)
            self._save_state()
            self._release()
            if self._copy_failures:
                raise CheckpointCopyError(list(self.copy_failures))

    def abandon(self) -> None:
        """Stop writing without a seal, as a crash would (used to test crash recovery)."""
        with self._lock:
            if not self._closed:
                self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeFailure("audit log is closed")

    def _release(self) -> None:
        self._closed = True
        self._key[:] = bytes(len(self._key))
        os.close(self._fd)
        os.close(self._lock_fd)

    def _open_segment(self) -> None:
        path = self.directory / segment_name(self._segment_index)
        self._fd = open_regular(path, "log segment", os.O_WRONLY | os.O_APPEND | os.O_CREAT, follow=False,
                                verb="write")
        os.fchmod(self._fd, 0o600)
        self._segment_bytes = os.fstat(self._fd).st_size

    def _append(self, kind: str, body: Mapping[str, Any]) -> int:
        entry: dict[str, Any] = {
            "seq": self._seq,
            "epoch": self._epoch,
            "ts": now_iso(),
            "kind": kind,
            "prev": self._prev,
            "body": body,
        }
        entry["mac"] = entry_mac(bytes(self._key), entry)
        line = canonical(entry)
        if len(line) > MAX_ENTRY_BYTES:
            raise InputError(f"an audit log entry of {len(line)} bytes is longer than the {MAX_ENTRY_BYTES} bytes "
                             f"a log entry may have")
        data = line + b"\n"
        # The whole line on an O_APPEND descriptor: a crash leaves at most one partial last
        # line, which `open` cuts and reports. A write that fails is undone, so that the next
        # line (the seal `close` writes) starts on a line of its own.
        try:
            write_all(self._fd, data)
        except OSError:
            self._undo_partial_write()
            raise
        if self.options.sync == "always":
            os.fsync(self._fd)
        self._segment_bytes += len(data)
        self._prev = line_hash(line)
        self._frontier.append(leaf_hash(line))
        self._seq += 1
        return self._seq - 1

    def _undo_partial_write(self) -> None:
        try:
            os.ftruncate(self._fd, self._segment_bytes)
        except OSError:
            pass  # left for `open` to cut, as after a crash

    def _checkpoint(self) -> Checkpoint:
        cp = Checkpoint(self.log_id, self._frontier.size, self._frontier.root().hex(), now_iso())
        if self.options.signing_key is not None:
            cp = cp.sign(self.options.signing_key)
        self._append("checkpoint", cp.to_dict())
        os.fsync(self._fd)
        # The new epoch starts right after the checkpoint line; the old key is overwritten in
        # memory and replaced on disk before any entry of the new epoch exists.
        new_key = evolve_key(bytes(self._key))
        self._key[:] = new_key
        self._epoch += 1
        self._since_checkpoint = 0
        self._last_checkpoint_time = time.monotonic()
        rotate = self._segment_bytes >= self.options.max_segment_bytes
        self._save_state()
        self._publish(cp)
        if rotate:
            self._rotate()
        return cp

    def _rotate(self) -> None:
        self._append("rotate", {"next_segment": segment_name(self._segment_index + 1)})
        os.fsync(self._fd)
        os.close(self._fd)
        self._segment_index += 1
        self._open_segment()
        self._save_state()

    def _publish(self, cp: Checkpoint) -> None:
        line = canonical(cp.to_dict()) + b"\n"
        targets = [self.directory / CHECKPOINT_FILE, *self.options.copy_checkpoints_to]
        for target in targets:
            # The checkpoint is in the log and the key has evolved: a failure here must not
            # stop the writer (which would leave the log unsealed), so it is kept for `close`.
            try:
                _append_line(Path(target), line)
            except OSError as exc:
                first, count, _ = self._copy_failures.get(str(target), (cp.tree_size, 0, ""))
                self._copy_failures[str(target)] = (first, count + 1, exc.strerror or str(exc))
        if self.options.on_checkpoint is not None:
            self.options.on_checkpoint(cp)

    def _save_state(self) -> None:
        state = {
            "version": _STATE_VERSION,
            "log_id": self.log_id,
            "seq": self._seq,
            "epoch": self._epoch,
            "key": bytes(self._key).hex(),
            "prev": self._prev,
            "frontier_size": self._frontier.size,
            "frontier": self._frontier.to_list(),
            "segment": self._segment_index,
            "offset": self._segment_bytes,
            "since_checkpoint": self._since_checkpoint,
            "saved": now_iso(),
        }
        write_private_file(self.directory / STATE_FILE, canonical(state))


def _append_line(target: Path, line: bytes) -> None:
    """Append `line` to a checkpoint copy, in full (OSError if not). A copy whose last line
    was cut short (a full disk, an earlier failure) gets a newline first: the torn line stays
    a line of its own, which `log verify` reports as incomplete, never glued to this one."""
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        if _ends_mid_line(target, fd):
            line = b"\n" + line
        write_all(fd, line)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # a device or FIFO has nothing to sync (EINVAL)
            os.fsync(fd)
    finally:
        os.close(fd)


def _ends_mid_line(target: Path, fd: int) -> bool:
    """Does the regular file `target` (open as `fd`) end with a line cut short? Not known
    (False) for a FIFO, a device or a file the writer may append to but not read."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return False
    try:
        rfd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.fstat(rfd).st_ino == st.st_ino and os.pread(rfd, 1, st.st_size - 1) != b"\n"
    finally:
        os.close(rfd)


def _lock(directory: Path, wait: float = 0.0, on_wait: Callable[[], None] | None = None) -> int:
    """Take the log's writer lock, waiting up to `wait` seconds for another writer to release
    it (`on_wait` is told once when the wait starts); RuntimeFailure (exit 3) if it does not."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 0o600)
    deadline = time.monotonic() + wait
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                waited = f" (waited {wait:g} s; a `monitor` holds it for as long as it runs)" if wait else ""
                raise RuntimeFailure(f"{directory}: audit log is in use by another writer{waited}") from None
        if not waiting and on_wait is not None:
            on_wait()
        waiting = True
        time.sleep(_LOCK_POLL_S)


def _recover(directory: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Bring `state` up to the end of the log (in place) and check that nothing before the
    saved state changed; a shorter file or a different last line is tampering."""
    seg_path = directory / segment_name(state["segment"])
    data = _read_segment(seg_path)
    offset = state["offset"]
    if len(data) < offset:
        raise IntegrityError(
            f"{seg_path}: shorter than the writer left it ({len(data)} < {offset} bytes): truncated"
        )
    if offset:
        start = data.rfind(b"\n", 0, offset - 1) + 1
        if line_hash(data[start:offset - 1]) != state["prev"]:
            raise IntegrityError(f"{seg_path}: last entry differs from the writer's state: modified")
    key = bytes.fromhex(state["key"])
    frontier = Frontier.from_list(state["frontier_size"], state["frontier"])
    last_kind = "record"
    partial: dict[str, Any] | None = None
    if offset:
        start = data.rfind(b"\n", 0, offset - 1) + 1
        last_kind = loads(data[start:offset - 1])["kind"]
    pos = offset
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            if pos < len(data):
                # A write cut short by a crash: keep its fingerprint, drop the bytes.
                tail = data[pos:]
                partial = {"bytes": len(tail), "sha256": hashlib.sha256(tail).hexdigest()}
                fd = open_regular(seg_path, "log segment", os.O_WRONLY, follow=False, verb="write")
                try:
                    os.ftruncate(fd, pos)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            break
        line = data[pos:nl]
        entry, is_canonical = parse_canonical(line)
        mac = entry.pop("mac", None)
        if (not is_canonical or entry.get("seq") != state["seq"] or entry.get("prev") != state["prev"]
                or mac != entry_mac(key, entry)):
            raise IntegrityError(f"{seg_path}: entry after the saved state does not verify: modified")
        state["prev"] = line_hash(line)
        frontier.append(leaf_hash(line))
        state["seq"] += 1
        last_kind = entry["kind"]
        pos = nl + 1
        if last_kind == "checkpoint":
            key = evolve_key(key)
            state["epoch"] += 1
            state["since_checkpoint"] = 0
        elif last_kind == "record":
            state["since_checkpoint"] = state.get("since_checkpoint", 0) + 1
        elif last_kind == "rotate":
            state["segment"] += 1
            seg_path = directory / segment_name(state["segment"])
            data = _read_segment(seg_path)
            pos = 0
    state["key"] = key.hex()
    state["frontier_size"] = frontier.size
    state["frontier"] = frontier.to_list()
    state["offset"] = pos
    return {"last_kind": last_kind, "partial": partial}


def _read_segment(path: Path) -> bytes:
    """A segment's bytes, b"" if it does not exist yet; InputError for a FIFO or a device."""
    if not os.path.lexists(path):
        return b""
    return read_regular(path, "log segment", follow=False)
