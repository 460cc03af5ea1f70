"""Verification of audit log files: chain, sequence, epochs, MACs, checkpoints, seals, rotation,
and every tree head remembered on or off the host (writer state, witness), so a cut is named."""

from __future__ import annotations

import errno
import fnmatch
import hmac
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.auditlog.canonical import canonical, loads, now_iso, parse_canonical
from secpolicy.auditlog.checkpoint import (
    Checkpoint,
    evolve_key,
    key_id,
    open_regular,
    read_regular,
    read_small_file,
)
from secpolicy.auditlog.log import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    GENESIS_PREV,
    KINDS,
    LOCK_FILE,
    MAX_ENTRY_BYTES,
    MAX_STATE_BYTES,
    STATE_FILE,
    LogConfig,
    entry_mac,
    line_hash,
    segment_name,
    start_config,
    write_private_file,
)
from secpolicy.auditlog.merkle import Frontier, leaf_hash
from secpolicy.errors import InputError, IntegrityError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "Anchor",
    "HostState",
    "TamperError",
    "VerifyReport",
    "Witness",
    "log_files",
    "read_host_state",
    "read_leaves",
    "read_lines",
    "verify_log",
]


class TamperError(IntegrityError):
    """The first entry that does not verify, with where it is and what is wrong."""

    def __init__(self, path: str, line: int | None, seq: int | None, problem: str) -> None:
        where = path if line is None else f"{path}:{line}"
        if seq is not None:
            where += f": seq {seq}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.seq = seq
        self.problem = problem


@dataclass(frozen=True)
class Anchor:
    """A size the log is known to have reached and what its first `tree_size` entries hash
    to: a checkpoint, the writer's saved state, or a head a witness remembers."""

    tree_size: int
    source: str
    root: str | None = None
    log_id: str | None = None
    ts: str | None = None
    prev: str | None = None  # writer state: hash of entry tree_size - 1
    epoch: int | None = None  # writer state: the epoch after entry tree_size - 1
    key: str | None = None  # writer state: the key of that epoch (hex)
    checkpoint: bool = False  # a checkpoint entry stands at seq tree_size
    # Kept in the log's own directory (state.json, checkpoints.jsonl): put back together with
    # an older copy of the log, it cannot tell that copy from the log.
    on_host: bool = False

    @classmethod
    def of_checkpoint(cls, cp: Checkpoint, source: str, on_host: bool = False) -> Anchor:
        return cls(cp.tree_size, source, cp.root, cp.log_id, cp.ts, checkpoint=True, on_host=on_host)

    @property
    def what(self) -> str:
        return f"{self.source}" + (f" (of {self.ts})" if self.ts else "")


@dataclass(frozen=True)
class HostState:
    """What the host holds beside the log: the writer's state, its own copy of every
    checkpoint and the copies `log init` set up, plus warnings (modes, missing copies)."""

    anchors: tuple[Anchor, ...] = ()
    held: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    config: LogConfig | None = None


@dataclass(frozen=True)
class VerifyReport:
    """What verified: counts, the final tree head, and what could not be checked."""

    log_id: str
    entries: int
    records: int
    checkpoints: int
    epochs: int
    sealed: bool
    root: str
    macs_checked: bool
    external_checkpoints: int
    signatures_checked: int
    crashes: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    anchors: tuple[str, ...] = ()  # what the log's length was checked against
    rollback_detectable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id, "entries": self.entries, "records": self.records,
            "checkpoints": self.checkpoints, "epochs": self.epochs, "sealed": self.sealed,
            "root": self.root, "macs_checked": self.macs_checked,
            "external_checkpoints": self.external_checkpoints,
            "signatures_checked": self.signatures_checked,
            "crashes": list(self.crashes), "warnings": list(self.warnings),
            "length_checked_against": list(self.anchors), "rollback_detectable": self.rollback_detectable,
        }


# -- files ---------------------------------------------------------------------------------


def log_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files to verify: each path itself, or a log directory's segment files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            segs = sorted(p.glob("segment-*.jsonl"))
            if not segs:
                raise InputError("directory holds no segment-*.jsonl files", str(p))
            out.extend(segs)
        elif p.is_file():
            out.append(p)
        elif os.path.lexists(p):
            raise InputError("neither a regular file nor a log directory", str(p))
        else:
            raise InputError("no such file or directory", str(p))
    if not out:
        raise InputError("no log files given")
    return out


def _readline(f: Any, path: Path, n: int, limit: int = MAX_ENTRY_BYTES) -> bytes:
    """Line `n` of the open file `f` (with its newline, if any); a line longer than any entry
    a writer writes is tampering, found after reading `limit` bytes of it, never all of it."""
    try:
        line: bytes = f.readline(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read log file: {exc.strerror}", str(path)) from exc
    if len(line) > limit:
        raise TamperError(str(path), n, None, f"a line longer than the {limit} bytes of any entry a writer writes: "
                                              f"not a log entry (the file was filled with other bytes)")
    return line


def _first_line(path: Path) -> bytes:
    with os.fdopen(open_regular(path, "log file"), "rb") as f:
        return _readline(f, path, 1)


def _first_seq(line: bytes) -> int | None:
    try:
        seq = loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) else None


def read_lines(paths: Sequence[Path]) -> Iterator[tuple[str, int, bytes, bool, bool]]:
    """(file, line number, line bytes, ends with newline, last line of its file), files in
    sequence order; a file whose first line is unreadable keeps its given place. Files are
    read one line at a time, so memory holds one entry, not a segment (which a hostile host can
    make a sparse file of any size); a line longer than an entry can be is TamperError."""
    firsts = [_first_line(p) for p in paths]
    order = sorted(
        range(len(paths)),
        key=lambda i: (s if (s := _first_seq(firsts[i])) is not None else -1, i)
        if firsts[i] else (float("inf"), i),
    )
    for i in order:
        path = paths[i]
        with os.fdopen(open_regular(path, "log file"), "rb") as f:
            n = 1
            line = _readline(f, path, n)
            while line:
                following = _readline(f, path, n + 1)
                complete = line.endswith(b"\n")
                yield str(path), n, line[:-1] if complete else line, complete, not following
                line = following
                n += 1


def read_leaves(paths: Sequence[Path]) -> tuple[list[bytes], list[bytes]]:
    """Leaf hashes and lines of every entry, in sequence order, without verifying them."""
    leaves: list[bytes] = []
    lines: list[bytes] = []
    for path, n, line, complete, _ in read_lines(paths):
        if not complete:
            raise TamperError(path, n, None, "partial last line")
        leaves.append(leaf_hash(line))
        lines.append(line)
    return leaves, lines


# -- what the host holds -------------------------------------------------------------------


def _mode_warnings(directory: Path) -> list[str]:
    out = []
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    if mode & 0o077:
        out.append(f"{directory} is mode {mode:04o}, not 0700: other users can reach the log")
    for entry in sorted(directory.iterdir()):
        try:
            st = entry.lstat()
        except FileNotFoundError:  # a running writer's state.json.tmp, renamed meanwhile
            continue
        fmode = stat.S_IMODE(st.st_mode)
        if stat.S_ISREG(st.st_mode) and fmode & 0o077:
            out.append(f"{entry} is mode {fmode:04o}, not 0600: other users can read it")
    return out


# How every checkpoint line starts (canonical JSON, keys sorted): a line cut short starts so too.
_CHECKPOINT_HEAD = b'{"log_id":"'


def _torn(line: bytes) -> bool:
    """Is `line` (which is no JSON) the start of a checkpoint line a failed write cut short?"""
    return _CHECKPOINT_HEAD.startswith(line[:len(_CHECKPOINT_HEAD)]) and not line.endswith(b"}")


# A checkpoint line is a few hundred bytes; a longer line in a checkpoint file is not read whole.
_MAX_CHECKPOINT_LINE = 64 * 1024


def _checkpoint_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line, ends with newline) of a checkpoint file, opened without blocking
    (OSError for a FIFO, a device or a directory) and read a line at a time: a line longer
    than a checkpoint can be is TamperError, found without reading all of it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        for n, line in enumerate(iter(lambda: f.readline(_MAX_CHECKPOINT_LINE + 1), b""), 1):
            if len(line) > _MAX_CHECKPOINT_LINE:
                raise TamperError(str(path), n, None, f"a line of more than {_MAX_CHECKPOINT_LINE} bytes: not a "
                                                      f"checkpoint; the file was modified")
            yield n, line.rstrip(b"\n"), line.endswith(b"\n")


def _host_checkpoints(path: Path, what: str, warnings: list[str], on_host: bool = False) -> list[Anchor]:
    """Checkpoints a writer appended to a file; a line cut short (a crash, a full disk) is
    left out with a warning: the copy is incomplete, not modified."""
    out = []
    for n, line, complete in _checkpoint_lines(path):
        if not complete:
            if line:
                warnings.append(f"{path}: last line is incomplete (a copy cut short); it was not used")
            continue
        if not line.strip():
            continue
        try:
            cp = Checkpoint.from_dict(loads(line))
        except (ValueError, InputError):
            if _torn(line):
                warnings.append(f"{path}:{n}: a checkpoint cut short (a write that failed, e.g. on a full disk); "
                                f"the {what} is incomplete and this line was not used")
                continue
            raise TamperError(str(path), n, None, f"not a checkpoint: the {what} was modified") from None
        out.append(Anchor.of_checkpoint(cp, f"checkpoint {cp.tree_size} in {path}", on_host))
    return out


def _state_anchor(path: Path) -> Anchor:
    data = read_regular(path, "the writer's state", MAX_STATE_BYTES, too_long="not a writer's state")
    try:
        state = loads(data)
        frontier = Frontier.from_list(int(state["frontier_size"]), list(state["frontier"]))
        seq = int(state["seq"])
        return Anchor(seq, f"the writer's state {path}", frontier.root().hex(), str(state["log_id"]),
                      state.get("saved"), prev=str(state["prev"]), epoch=int(state["epoch"]),
                      key=str(state["key"]), on_host=True)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise TamperError(str(path), None, None, f"the writer's state is not readable as such ({exc}): "
                                                 f"modified") from None


def _refuse_special(path: Path, what: str) -> None:
    """InputError if `path` is there but is no regular file (a FIFO would hang a reader)."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} is not a regular file", str(path))


def read_host_state(directory: Path) -> HostState:
    """Read (before the segments, so a running writer is never ahead of its state) what this
    host remembers about the log in `directory`."""
    warnings = _mode_warnings(directory)
    anchors: list[Anchor] = []
    held: list[str] = []
    state = directory / STATE_FILE
    _refuse_special(state, "the writer's state")
    _refuse_special(directory / CONFIG_FILE, "audit log configuration")
    if state.is_file():
        try:
            anchors.append(_state_anchor(state))
            held.append(STATE_FILE)
        except InputError as exc:
            warnings.append(f"{exc.render()}; the writer's state was not used")
    elif any((directory / name).exists() for name in (CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE)):
        warnings.append(f"{state} is missing: the writer's state was not used (a copy made without it, or, in "
                        f"the writer's own directory, deleted: a writer never removes it)")
    config = _configuration(directory, warnings)
    own = directory / CHECKPOINT_FILE
    try:
        cps = _host_checkpoints(own, "writer's list of checkpoints", warnings, on_host=True)
        anchors += cps
        held.append(f"{CHECKPOINT_FILE} ({len(cps)})")
    except FileNotFoundError:
        pass
    except OSError as exc:
        warnings.append(f"{own}: cannot be read ({exc.strerror or exc}); the writer's list of checkpoints "
                        f"was not used")
    # The copies are extra anchors (as a witness is): one that cannot be read is a warning,
    # as a missing one is, and the log is verified against what is left.
    log_id = _start_log_id(directory)
    for target in config.copy_checkpoints if config else ():
        path = Path(target)
        try:
            cps = _shared_copy(path, log_id, warnings)
        except FileNotFoundError:
            warnings.append(f"{path}: the checkpoint copy set up at `log init` is missing")
            continue
        except PermissionError:
            warnings.append(f"{path}: permission denied; this checkpoint copy was not used")
            continue
        except OSError as exc:
            warnings.append(f"{path}: cannot be read ({exc.strerror or exc}); this checkpoint copy was not used")
            continue
        anchors += cps
        held.append(f"{path} ({len(cps)})")
    return HostState(tuple(anchors), tuple(held), tuple(warnings), config)


def _start_log_id(directory: Path) -> str | None:
    """The log id the start entry of the log in `directory` records (None if unreadable:
    `verify_log` names what is wrong with it)."""
    try:
        body = loads(_first_line(directory / segment_name(0))).get("body")
    except (InputError, IntegrityError, ValueError, AttributeError):
        return None
    log_id = body.get("log_id") if isinstance(body, dict) else None
    return log_id if isinstance(log_id, str) else None


def _shared_copy(path: Path, log_id: str | None, warnings: list[str]) -> list[Anchor]:
    """The checkpoints of log `log_id` in a copy `log init` set up. Several logs may copy to one
    file (one off-host file for a host's logs): the others' checkpoints are left out, as the
    start entry that names the copy (under the MAC) names this log's id."""
    cps = _host_checkpoints(path, "checkpoint copy", warnings)
    own = [a for a in cps if log_id is None or a.log_id == log_id]
    if len(own) < len(cps):
        others = sorted({str(a.log_id) for a in cps if a.log_id != log_id})
        warnings.append(f"{path}: {len(cps) - len(own)} checkpoints of other logs ({', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}) were left out: the copy is shared with them")
    return own


def _configuration(directory: Path, warnings: list[str]) -> LogConfig | None:
    """The checkpoint copies and signing key `log init` set up, as the log's start entry (under
    the MAC) records them; config.json only repeats them, so one deleted or edited to name
    fewer copies hides none of them (it is named in a warning)."""
    path = directory / CONFIG_FILE
    config, usable = None, True
    try:
        config = LogConfig.load(directory)
    except InputError as exc:
        warnings.append(exc.render())
        usable = False
    try:
        start = start_config(directory)
    except IntegrityError:
        start = None  # verify_log names what is wrong with the first entry
    if start is None:
        return config
    if usable and config is None and start != LogConfig():
        warnings.append(f"{path} is missing, but the log's start entry records {start.records()}, which was "
                        f"checked (writers refuse to write this log until config.json is put back)")
    elif config is not None and not config.agrees_with(start):
        warnings.append(f"{path} says {config.records()}, but the log's start entry records {start.records()}: "
                        f"config.json was edited; the start entry's were checked")
    return start


@dataclass
class Witness:
    """The last tree head a verifier saw of one log, kept where the verifier keeps it (best
    off the log's host): the next verification must find a log that extends it."""

    path: Path
    log_id: str | None = None
    tree_size: int = 0
    root: str | None = None
    seen: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> Witness:
        p = Path(path)
        if not p.exists():
            return cls(p)
        try:
            data = loads(read_small_file(p, "witness file").decode("utf-8"))
            return cls(p, str(data["log_id"]), int(data["tree_size"]), str(data["root"]), data.get("seen"))
        except InputError:
            raise
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise InputError(f"not a witness file written by `log verify --witness`: {exc}", str(p)) from exc

    def anchor(self) -> Anchor | None:
        if self.log_id is None or self.root is None:
            return None
        return Anchor(self.tree_size, f"the head remembered in {self.path}", self.root, self.log_id, self.seen)

    def remember(self, report: VerifyReport) -> None:
        self.advance(report.log_id, report.entries, report.root)

    def advance(self, log_id: str, tree_size: int, root: str) -> bool:
        """Move on to a longer verified head of the same log; False if it is not longer."""
        if self.log_id not in (None, log_id):
            raise IntegrityError(f"{self.path} remembers log {self.log_id}, not {log_id}: the log was replaced "
                                 f"(or this is another log's witness)")
        if tree_size < self.tree_size:
            return False
        self.log_id, self.tree_size, self.root, self.seen = log_id, tree_size, root, now_iso()
        data = {"log_id": log_id, "tree_size": tree_size, "root": root, "seen": self.seen}
        write_private_file(self.path, canonical(data) + b"\n")
        return True


# -- verification --------------------------------------------------------------------------


def _is_hex(value: object, size: int) -> bool:
    """Is `value` the lower-case hex text of `size` bytes (as the writer writes keys and hashes)?"""
    return isinstance(value, str) and len(value) == 2 * size and all(c in "0123456789abcdef" for c in value)


_FIELDS = {"seq": int, "epoch": int, "ts": str, "kind": str, "prev": str, "body": dict, "mac": str}


@dataclass
class _Walk:
    """Where the walk over the entries stands."""

    frontier: Frontier = field(default_factory=Frontier)
    key: bytes | None = None
    epoch: int = 0
    prev: str = GENESIS_PREV
    prev_kind: str | None = None
    prev_where: str = ""
    prev_path: str | None = None
    prev_line: int = 0
    log_id: str = ""
    signing_key: str | None = None  # from the MACed start entry
    records: int = 0
    checkpoints: int = 0
    signed: int = 0
    last_cp_size: int = 0
    next_segment: str = ""
    last: tuple[str, int] = ("", 0)
    crashes: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.frontier.size


class _Verifier:
    """One property per method; `entry` runs them in order on each line, `finish` at the end."""

    def __init__(self, key: bytes | None, anchors: Sequence[Anchor], public_key: Ed25519PublicKey | None,
                 allow_open: bool) -> None:
        self.initial_key = key
        self.public_key = public_key
        self.allow_open = allow_open
        self.anchors = sorted(anchors, key=lambda a: a.tree_size)
        self.pending = list(self.anchors)
        self.w = _Walk(key=key)

    # -- per entry -------------------------------------------------------------------------

    def entry(self, path: str, n: int, line: bytes, complete: bool, last_in_file: bool) -> None:
        self.w.last = (path, n)
        self.check_anchors(path, n)
        self.check_file_boundary(path, n)
        entry = self.parse(path, n, line, complete)
        seq = entry["seq"]
        self.check_sequence(path, n, seq)
        if n == 1:
            self.check_segment_name(path, seq)
        self.check_kind_and_epoch(path, n, entry)
        if seq == 0:
            self.check_genesis(path, n, entry["body"])
        self.check_mac(path, n, entry)
        self.check_link(path, n, entry)
        self.check_order_after_seal(path, n, entry)
        kind = entry["kind"]
        if kind == "start" and seq:
            self.check_restart(path, n, seq, entry["body"])
        elif kind == "record":
            self.w.records += 1
        elif kind == "checkpoint":
            self.check_checkpoint(path, n, seq, entry["body"])
        elif kind == "rotate":
            self.check_rotate(path, n, seq, entry["body"], last_in_file)
        self.advance(path, n, line, seq, kind)

    def check_anchors(self, path: str, line: int) -> None:
        """Every remembered head of this size must be this log's first `size` entries."""
        w = self.w
        while self.pending and self.pending[0].tree_size == w.size:
            a = self.pending.pop(0)
            if a.log_id and w.log_id and a.log_id != w.log_id:
                raise TamperError(path, line, w.size, f"{a.what} belongs to log {a.log_id}, not to this log "
                                                      f"{w.log_id}: the log was replaced")
            if a.root is not None and a.root != w.frontier.root().hex():
                raise TamperError(path, line, w.size,
                                  f"the {a.tree_size} entries before this one do not match {a.what}: entries were "
                                  f"modified, reordered, inserted or deleted, or the log was rewritten")
            if a.prev is not None:
                self.check_state(path, line, a)

    def check_state(self, path: str, line: int, a: Anchor) -> None:
        w = self.w
        if a.prev != w.prev or a.epoch != w.epoch:
            raise TamperError(path, line, w.size, f"{a.what} does not match the entry before this one (hash or "
                                                  f"epoch): the log or its state was rewritten")
        if w.key is not None and a.key != w.key.hex():
            raise TamperError(path, line, w.size,
                              f"{a.what} holds a key that is not this log's key of epoch {w.epoch}: the state was "
                              f"forged (someone holding only later keys rewrote it, as a rollback needs)")

    def check_file_boundary(self, path: str, line: int) -> None:
        w = self.w
        if w.prev_path is not None and path != w.prev_path and w.prev_kind != "rotate":
            raise TamperError(w.prev_path, w.prev_line, w.size - 1,
                              f"file ends without a rotate entry but the log goes on in {path}")
        w.prev_path, w.prev_line = path, line

    def parse(self, path: str, n: int, line: bytes, complete: bool) -> dict[str, Any]:
        seq = self.w.size
        if not complete:
            raise TamperError(path, n, seq, "partial last line: cut in the middle of an entry (truncated, or a crash "
                                            "during a write that the writer has not yet repaired)")
        try:
            entry, is_canonical = parse_canonical(line)
        except (UnicodeDecodeError, ValueError):
            raise TamperError(path, n, seq, "not valid JSON: entry modified") from None
        if not isinstance(entry, dict):
            raise TamperError(path, n, seq, "not a JSON object: entry modified")
        for name, typ in _FIELDS.items():
            if not isinstance(entry.get(name), typ) or isinstance(entry.get(name), bool):
                raise TamperError(path, n, seq, f"field {name!r} missing or mistyped: entry modified")
        if not is_canonical:
            raise TamperError(path, n, entry["seq"], "not in canonical form: entry modified")
        return entry

    def check_sequence(self, path: str, n: int, seq: int) -> None:
        expected = self.w.size
        if seq == expected:
            return
        if expected == 0:
            problem = "log does not start at seq 0: its beginning (or earlier segments) is missing"
        elif seq > expected:
            problem = f"expected seq {expected}, found {seq}: {seq - expected} entries deleted (or entries reordered)"
        else:
            problem = (f"expected seq {expected}, found {seq} again or out of order: entries reordered, "
                       f"duplicated or inserted")
        raise TamperError(path, n, seq, problem)

    def check_segment_name(self, path: str, seq: int) -> None:
        """A file named as a writer names segments must bear the name the log gives it: the first
        segment-000000.jsonl, each next one the name its predecessor's rotate entry gives. Files
        renamed (or put in another order) would still be read in order of their entries, but not
        by the writer, by `config.json`'s check of the start entry, or by whoever reads them in
        name order. A file of another name (an archived copy) is read for its entries alone."""
        name = Path(path).name
        if not fnmatch.fnmatchcase(name, "segment-*.jsonl"):
            return
        expected = self.w.next_segment if seq else segment_name(0)
        if name != expected:
            where = f"the rotate entry before it ({self.w.prev_where}) names" if seq else "the log starts in"
            raise TamperError(path, 1, seq, f"this file holds the entries from seq {seq}, but {where} {expected}: "
                                            f"segment files were renamed or moved")

    def check_kind_and_epoch(self, path: str, n: int, entry: dict[str, Any]) -> None:
        seq, kind = entry["seq"], entry["kind"]
        if kind not in KINDS:
            raise TamperError(path, n, seq, f"unknown entry kind {kind!r}: entry forged")
        if entry["epoch"] != self.w.epoch:
            raise TamperError(path, n, seq, f"epoch {entry['epoch']} where {self.w.epoch} was expected: "
                                            f"entry forged or moved across a checkpoint")

    def check_genesis(self, path: str, n: int, body: dict[str, Any]) -> None:
        key = self.initial_key
        self.w.log_id = str(body.get("log_id", ""))
        signing = body.get("signing_public_key")
        self.w.signing_key = signing if isinstance(signing, str) and signing else None
        if signing not in (None, "") and not _is_hex(signing, 32):
            raise TamperError(path, n, 0, "the start entry names a signing key that is not an Ed25519 public key (32 "
                                          "bytes of hex): entry forged")
        if key is not None and body.get("key_id") != key_id(key):
            raise TamperError(path, n, 0, f"the log was started under key id {body.get('key_id')}, the given key "
                                          f"is {key_id(key)}: wrong key, or the whole log was replaced")

    def check_mac(self, path: str, n: int, entry: dict[str, Any]) -> None:
        mac = entry.pop("mac")
        if not _is_hex(mac, 32):
            raise TamperError(path, n, entry["seq"], "the MAC is not 64 lower-case hex digits as a writer writes it: "
                                                     "entry modified")
        if self.w.key is not None and not hmac.compare_digest(mac, entry_mac(self.w.key, entry)):
            raise TamperError(path, n, entry["seq"], "MAC does not verify: entry modified, or forged without the "
                                                     "key of its epoch")

    def check_link(self, path: str, n: int, entry: dict[str, Any]) -> None:
        if entry["prev"] != self.w.prev:
            where = self.w.prev_where or "the start"
            raise TamperError(path, n, entry["seq"],
                              f"hash link to the previous entry ({where}) is broken: that entry was modified, or "
                              f"entries were removed or inserted between them")

    def check_order_after_seal(self, path: str, n: int, entry: dict[str, Any]) -> None:
        if entry["seq"] == 0 and entry["kind"] != "start":
            raise TamperError(path, n, 0, "first entry is not a start entry")
        if self.w.prev_kind == "seal" and entry["kind"] != "start":
            raise TamperError(path, n, entry["seq"], "entry after a seal that is not a restart: appended after the "
                                                     "log was closed, without a restart")

    def check_restart(self, path: str, n: int, seq: int, body: dict[str, Any]) -> None:
        after, prev_kind = body.get("resumed_after"), self.w.prev_kind
        partial = body.get("discarded_partial_line")
        if after == "seal":
            if prev_kind != "seal":
                raise TamperError(path, n, seq, "restart claims a clean shutdown but the previous entry is not a "
                                                "seal: entries removed")
            if isinstance(partial, dict):
                # A writer seals only after its last line is whole: these bytes were added later.
                self.w.warnings.append(f"seq {seq}: the writer cut a partial line of {partial.get('bytes')} bytes "
                                       f"(sha256 {partial.get('sha256')}) found after the seal of seq {seq - 1}: "
                                       f"bytes were appended to the sealed log by something other than its writer")
            return
        if after != "crash":
            raise TamperError(path, n, seq, "start entry in the middle of the log without a reason")
        if prev_kind == "seal":
            raise TamperError(path, n, seq, "restart claims a crash after a seal: inconsistent")
        self.w.crashes.append(seq)
        self.w.warnings.append(f"seq {seq}: restart after an unclean shutdown (crash) following seq {seq - 1}")
        if isinstance(partial, dict):
            self.w.warnings.append(f"seq {seq}: the writer cut a partial line of {partial.get('bytes')} bytes left "
                                   f"by the crash")

    def check_checkpoint(self, path: str, n: int, seq: int, body: dict[str, Any]) -> None:
        w = self.w
        try:
            cp = Checkpoint.from_dict(body)
        except InputError as exc:
            raise TamperError(path, n, seq, f"malformed checkpoint: {exc.message}") from None
        if cp.tree_size != seq or cp.root != w.frontier.root().hex():
            raise TamperError(path, n, seq, "checkpoint does not match the entries before it")
        if cp.log_id != w.log_id:
            raise TamperError(path, n, seq, "checkpoint names another log")
        self.check_signature(path, n, seq, cp)
        w.checkpoints += 1

    def check_signature(self, path: str, n: int, seq: int, cp: Checkpoint) -> None:
        """With --pubkey every checkpoint must be signed by it; a log set up to sign (its
        start entry names the key) must have every checkpoint signed by that key."""
        key = self.public_key
        what = "--pubkey"
        if key is None and self.w.signing_key is not None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.w.signing_key))
            what = f"the key the log was set up to sign with ({self.w.signing_key[:16]}...)"
        if key is None:
            return
        if not cp.signature:
            raise TamperError(path, n, seq, f"checkpoint is not signed, but {what} must sign every checkpoint: "
                                            f"written without the key, or its signature removed")
        try:
            cp.verify_signature(key)
        except IntegrityError as exc:
            raise TamperError(path, n, seq, f"{exc.message} ({what})") from None
        self.w.signed += 1

    def check_rotate(self, path: str, n: int, seq: int, body: dict[str, Any], last_in_file: bool) -> None:
        if not last_in_file:
            raise TamperError(path, n, seq, "rotate entry is not the last line of its file")
        self.w.next_segment = str(body.get("next_segment"))

    def advance(self, path: str, n: int, line: bytes, seq: int, kind: str) -> None:
        w = self.w
        w.prev = line_hash(line)
        w.prev_kind = kind
        w.prev_where = f"{path}:{n}, seq {seq}"
        w.frontier.append(leaf_hash(line))
        if kind == "checkpoint":
            w.last_cp_size = w.size
            w.epoch += 1
            if w.key is not None:
                w.key = evolve_key(w.key)

    # -- at the end ------------------------------------------------------------------------

    def finish(self, first_path: str, external: int, ext_signed: int) -> VerifyReport:
        w = self.w
        if w.size == 0:
            raise TamperError(first_path, None, None, "log is empty: every entry was deleted")
        path, line = w.last
        if w.prev_kind == "rotate":
            raise TamperError(path, line, w.size - 1, f"the log continues in {w.next_segment}, which was not given: "
                                                      f"later segments missing or deleted")
        self.check_anchors(path, line)
        self.check_cut_back()
        self.check_seal()
        return VerifyReport(
            log_id=w.log_id, entries=w.size, records=w.records, checkpoints=w.checkpoints, epochs=w.epoch + 1,
            sealed=w.prev_kind == "seal", root=w.frontier.root().hex(), macs_checked=self.initial_key is not None,
            external_checkpoints=external, signatures_checked=w.signed + ext_signed, crashes=tuple(w.crashes),
            warnings=tuple(w.warnings + self.unprotected()),
            anchors=self.anchor_sources(),
            rollback_detectable=self.rollback_detectable(),
        )

    def check_cut_back(self) -> None:
        """A remembered head longer than the log: entries were cut from the end (back to an
        earlier seal, typically). Names the first missing entry and checkpoint."""
        if not self.pending:
            return
        w = self.w
        path, line = w.last
        first = self.pending[0]
        longest = max(self.pending, key=lambda a: a.tree_size)
        missing_cp = min((a for a in self.pending if a.checkpoint), key=lambda a: a.tree_size, default=None)
        problem = (f"the log was cut back: {first.what} covers {first.tree_size} entries but the log holds only "
                   f"{w.size}: {first.tree_size - w.size} or more entries were truncated from the end; the first "
                   f"missing entry is seq {w.size}")
        if longest.tree_size > first.tree_size:
            problem += f" ({longest.what} covers {longest.tree_size})"
        if missing_cp is not None:
            problem += f", the first missing checkpoint is seq {missing_cp.tree_size}" + (
                f" (of {missing_cp.ts})" if missing_cp.ts else "")
        if w.prev_kind == "seal":
            problem += "; the log now ends at the seal of an earlier run"
        raise TamperError(path, line, w.size - 1, problem)

    def check_seal(self) -> None:
        w = self.w
        if w.prev_kind == "seal":
            return
        message = (f"log ends at seq {w.size - 1} without a seal: truncated, or the writer crashed or is still "
                   f"running")
        if not self.allow_open:
            raise TamperError(w.last[0], w.last[1], w.size - 1, message)
        w.warnings.append(message + f"; entries after seq {w.last_cp_size - 1} are protected only by their MACs "
                          f"and can be cut undetected")

    def anchor_sources(self) -> tuple[str, ...]:
        out = sorted({a.source for a in self.anchors if not a.checkpoint})
        n = sum(a.checkpoint for a in self.anchors)
        return (*out, f"{n} checkpoints") if n else tuple(out)

    def rollback_detectable(self) -> bool:
        return any(a.tree_size >= self.w.size for a in self.anchors)

    def unprotected(self) -> list[str]:
        """What this verification could not have caught, said plainly."""
        w = self.w
        out = []
        # Only a head kept elsewhere protects entries without the key: state.json and
        # checkpoints.jsonl are rewritten on the host along with the entries they cover.
        covered = max((a.tree_size for a in self.anchors if a.root is not None and not a.on_host), default=0)
        if self.initial_key is None and covered < w.size:
            out.append(f"no key given: MACs not checked; entries from seq {covered} on are checked for structure "
                       f"and hash links only")
        if not self.rollback_detectable():
            held = max((a.tree_size for a in self.anchors), default=0)
            beyond = f"after seq {held - 1} " if held else ""
            out.append(f"nothing held here records how long this log was (no writer state, no --witness, no "
                       f"checkpoint of {w.size} or more entries): a cut back to any earlier seal {beyond}(the end "
                       f"of an earlier run) would verify as intact")
        elif self.initial_key is None and any(a.prev is not None for a in self.anchors):
            out.append("no key given: the writer's state is not authenticated; a cut back that also rewrites "
                       "state.json and the checkpoint files on this host is caught only by a --witness or "
                       "--checkpoint kept elsewhere")
        if self.rollback_detectable() and all(a.on_host for a in self.anchors):
            out.append("only the log's own directory (its state.json, checkpoints.jsonl) records how long this log "
                       "was, and no checkpoint kept elsewhere (a copy set up with `log init --copy-checkpoints`, "
                       "--checkpoint) or --witness was checked: the whole directory put back as an older complete "
                       "copy of itself would verify as intact, key or no key")
        return out


def verify_log(
    paths: Sequence[Path],
    key: bytes | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    public_key: Ed25519PublicKey | None = None,
    allow_open: bool = False,
    anchors: Sequence[Anchor] = (),
) -> VerifyReport:
    """Check every entry of the log against itself, the key, the given checkpoints and the
    remembered heads (`anchors`); raises TamperError naming the first thing that fails."""
    if not paths:
        raise InputError("no log files given")
    ext_signed = 0
    if public_key is not None:
        for cp in checkpoints:
            cp.verify_signature(public_key)
            ext_signed += 1
    all_anchors = [Anchor.of_checkpoint(cp, "the checkpoint") for cp in checkpoints] + list(anchors)
    verifier = _Verifier(key, all_anchors, public_key, allow_open)
    for path, n, line, complete, last_in_file in read_lines(paths):
        verifier.entry(path, n, line, complete, last_in_file)
    return verifier.finish(str(paths[0]), len(checkpoints), ext_signed)
