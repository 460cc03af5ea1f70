"""Verification of audit log files: chain, sequence, epochs, MACs, in-log checkpoints, seals,
rotation and off-host checkpoints; the first bad entry is named with file, line and seq."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from secpolicy.auditlog.canonical import parse_canonical
from secpolicy.auditlog.checkpoint import Checkpoint, evolve_key, key_id
from secpolicy.auditlog.log import GENESIS_PREV, KINDS, entry_mac, line_hash
from secpolicy.auditlog.merkle import Frontier, leaf_hash
from secpolicy.errors import InputError, IntegrityError

__all__ = ["TamperError", "VerifyReport", "log_files", "read_leaves", "read_lines", "verify_log"]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id, "entries": self.entries, "records": self.records,
            "checkpoints": self.checkpoints, "epochs": self.epochs, "sealed": self.sealed,
            "root": self.root, "macs_checked": self.macs_checked,
            "external_checkpoints": self.external_checkpoints,
            "signatures_checked": self.signatures_checked,
            "crashes": list(self.crashes), "warnings": list(self.warnings),
        }


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
        else:
            raise InputError("no such file or directory", str(p))
    if not out:
        raise InputError("no log files given")
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc


def _first_line(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.readline()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc


def _first_seq(line: bytes) -> int | None:
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) else None


def read_lines(paths: Sequence[Path]) -> Iterator[tuple[str, int, bytes, bool, bool]]:
    """(file, line number, line bytes, ends with newline, last line of its file), files in
    sequence order; a file whose first line is unreadable keeps its given place. Files are
    read one at a time, so memory holds one segment, not the whole log."""
    firsts = [_first_line(p) for p in paths]
    order = sorted(
        range(len(paths)),
        key=lambda i: (s if (s := _first_seq(firsts[i])) is not None else -1, i)
        if firsts[i] else (float("inf"), i),
    )
    for i in order:
        path = paths[i]
        data = _read(path)
        if not data:
            continue
        lines = data.split(b"\n")
        complete = data.endswith(b"\n")
        if complete:
            lines.pop()
        for n, line in enumerate(lines, 1):
            last = n == len(lines)
            yield str(path), n, line, (not last) or complete, last


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


_FIELDS = {"seq": int, "epoch": int, "ts": str, "kind": str, "prev": str, "body": dict, "mac": str}


def verify_log(  # noqa: C901 - to be split
    paths: Sequence[Path],
    key: bytes | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    public_key: Ed25519PublicKey | None = None,
    allow_open: bool = False,
) -> VerifyReport:
    """Check every entry of the log; raises TamperError naming the first one that fails."""
    if not paths:
        raise InputError("no log files given")
    ext_signed = 0
    if public_key is not None:
        for cp in checkpoints:
            cp.verify_signature(public_key)
            ext_signed += 1
    pending = sorted(checkpoints, key=lambda c: c.tree_size)
    frontier = Frontier()
    cur_key = key
    expected_seq = 0
    epoch = 0
    prev = GENESIS_PREV
    prev_kind: str | None = None
    prev_where = ""
    log_id = ""
    records = internal_cps = signed = 0
    crashes: list[int] = []
    warnings: list[str] = []
    last: tuple[str, int] = ("", 0)
    next_segment = ""
    prev_line = 0
    last_cp_size = 0

    def check_external(path: str, line: int) -> None:
        nonlocal pending
        while pending and pending[0].tree_size == frontier.size:
            cp = pending.pop(0)
            if log_id and cp.log_id != log_id:
                raise TamperError(path, line, frontier.size,
                                  f"checkpoint of {cp.ts} belongs to log {cp.log_id}, not to this log "
                                  f"{log_id}: the log was replaced")
            if cp.root != frontier.root().hex():
                raise TamperError(path, line, frontier.size,
                                  f"the {cp.tree_size} entries before this one do not match the "
                                  f"checkpoint of {cp.ts}: entries were modified, reordered, inserted "
                                  f"or deleted, or the log was rewritten")

    prev_path: str | None = None
    for path, n, line, complete, last_in_file in read_lines(paths):
        last = (path, n)
        check_external(path, n)
        if prev_path is not None and path != prev_path and prev_kind != "rotate":
            raise TamperError(prev_path, prev_line, expected_seq - 1,
                              f"file ends without a rotate entry but the log goes on in {path}")
        prev_path, prev_line = path, n
        if not complete:
            raise TamperError(path, n, expected_seq,
                              "partial last line: cut in the middle of an entry (truncated, or a crash "
                              "during a write that the writer has not yet repaired)")
        try:
            entry, is_canonical = parse_canonical(line)
        except (UnicodeDecodeError, ValueError):
            raise TamperError(path, n, expected_seq, "not valid JSON: entry modified") from None
        if not isinstance(entry, dict):
            raise TamperError(path, n, expected_seq, "not a JSON object: entry modified")
        for name, typ in _FIELDS.items():
            if not isinstance(entry.get(name), typ) or isinstance(entry.get(name), bool):
                raise TamperError(path, n, expected_seq, f"field {name!r} missing or mistyped: entry modified")
        seq = entry["seq"]
        if not is_canonical:
            raise TamperError(path, n, seq, "not in canonical form: entry modified")
        if seq != expected_seq:
            if expected_seq == 0:
                problem = "log does not start at seq 0: its beginning (or earlier segments) is missing"
            elif seq > expected_seq:
                problem = (f"expected seq {expected_seq}, found {seq}: {seq - expected_seq} entries "
                           f"deleted (or entries reordered)")
            else:
                problem = (f"expected seq {expected_seq}, found {seq} again or out of order: entries "
                           f"reordered, duplicated or inserted")
            raise TamperError(path, n, seq, problem)
        kind = entry["kind"]
        if kind not in KINDS:
            raise TamperError(path, n, seq, f"unknown entry kind {kind!r}: entry forged")
        if entry["epoch"] != epoch:
            raise TamperError(path, n, seq, f"epoch {entry['epoch']} where {epoch} was expected: "
                                            f"entry forged or moved across a checkpoint")
        body = entry["body"]
        if seq == 0:
            if kind != "start":
                raise TamperError(path, n, seq, "first entry is not a start entry")
            log_id = str(body.get("log_id", ""))
            if key is not None and body.get("key_id") != key_id(key):
                raise TamperError(path, n, seq,
                                  f"the log was started under key id {body.get('key_id')}, the given key "
                                  f"is {key_id(key)}: wrong key, or the whole log was replaced")
        if cur_key is not None:
            mac = entry.pop("mac")
            if not hmac.compare_digest(mac, entry_mac(cur_key, entry)):
                raise TamperError(path, n, seq, "MAC does not verify: entry modified, or forged "
                                                "without the key of its epoch")
        if entry["prev"] != prev:
            where = prev_where or "the start"
            raise TamperError(path, n, seq,
                              f"hash link to the previous entry ({where}) is broken: that entry was "
                              f"modified, or entries were removed or inserted between them")
        if prev_kind == "seal" and kind != "start":
            raise TamperError(path, n, seq, "entry after a seal that is not a restart: appended after "
                                            "the log was closed, without a restart")
        if kind == "start" and seq:
            after = body.get("resumed_after")
            if after == "seal" and prev_kind != "seal":
                raise TamperError(path, n, seq, "restart claims a clean shutdown but the previous entry "
                                                "is not a seal: entries removed")
            if after == "crash":
                if prev_kind == "seal":
                    raise TamperError(path, n, seq, "restart claims a crash after a seal: inconsistent")
                crashes.append(seq)
                warnings.append(f"seq {seq}: restart after an unclean shutdown (crash) following seq "
                                f"{seq - 1}")
                if body.get("discarded_partial_line"):
                    warnings.append(f"seq {seq}: the writer cut a partial line of "
                                    f"{body['discarded_partial_line'].get('bytes')} bytes left by the crash")
            elif after != "seal":
                raise TamperError(path, n, seq, "start entry in the middle of the log without a reason")
        elif kind == "record":
            records += 1
        elif kind == "checkpoint":
            try:
                cp = Checkpoint.from_dict(body)
            except InputError as exc:
                raise TamperError(path, n, seq, f"malformed checkpoint: {exc.message}") from None
            if cp.tree_size != seq or cp.root != frontier.root().hex():
                raise TamperError(path, n, seq, "checkpoint does not match the entries before it")
            if cp.log_id != log_id:
                raise TamperError(path, n, seq, "checkpoint names another log")
            if public_key is not None:
                try:
                    cp.verify_signature(public_key)
                except IntegrityError as exc:
                    raise TamperError(path, n, seq, exc.message) from None
                signed += 1
            internal_cps += 1
        elif kind == "rotate":
            if not last_in_file:
                raise TamperError(path, n, seq, "rotate entry is not the last line of its file")
            next_segment = str(body.get("next_segment"))
        prev = line_hash(line)
        prev_kind = kind
        prev_where = f"{path}:{n}, seq {seq}"
        frontier.append(leaf_hash(line))
        expected_seq += 1
        if kind == "checkpoint":
            last_cp_size = frontier.size
            epoch += 1
            if cur_key is not None:
                cur_key = evolve_key(cur_key)
    if expected_seq == 0:
        raise TamperError(str(paths[0]), None, None, "log is empty: every entry was deleted")
    if prev_kind == "rotate":
        raise TamperError(last[0], last[1], expected_seq - 1,
                          f"the log continues in {next_segment}, which was not given: later "
                          f"segments missing or deleted")
    check_external(last[0], last[1])
    if pending:
        cp = pending[0]
        raise TamperError(last[0], last[1], expected_seq - 1,
                          f"the checkpoint of {cp.ts} covers {cp.tree_size} entries but the log holds "
                          f"only {expected_seq}: {cp.tree_size - expected_seq} or more entries were "
                          f"truncated from the end")
    sealed = prev_kind == "seal"
    if not sealed:
        message = (f"log ends at seq {expected_seq - 1} without a seal: truncated, or the writer crashed "
                   f"or is still running")
        if not allow_open:
            raise TamperError(last[0], last[1], expected_seq - 1, message)
        warnings.append(message + f"; entries after seq {last_cp_size - 1} are protected only by their "
                        f"MACs and can be cut undetected")
    if key is None:
        covered = max((c.tree_size for c in checkpoints), default=0)
        if covered < expected_seq:
            warnings.append(f"no key given: MACs not checked; entries from seq {covered} on are checked "
                            f"for structure and hash links only")
    return VerifyReport(
        log_id=log_id, entries=expected_seq, records=records, checkpoints=internal_cps,
        epochs=epoch + 1, sealed=sealed, root=frontier.root().hex(), macs_checked=key is not None,
        external_checkpoints=len(checkpoints), signatures_checked=signed + ext_signed,
        crashes=tuple(crashes), warnings=tuple(warnings),
    )
