"""Commands of the audit trail: `log` (init, append, verify, prove, checkpoint, keygen),
`timeline`, `dashboard`, `anomaly` (learn, detect) and `store` (ingest, prune)."""

from __future__ import annotations

import heapq
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from secpolicy import outfile
from secpolicy.cli.choices import SINK_FORMATS, input_file, text_value
from secpolicy.cli.outputs import format_redaction, redaction_option

if TYPE_CHECKING:
    from secpolicy.auditlog import records
    from secpolicy.auditlog.checkpoint import Checkpoint
    from secpolicy.auditlog.log import LogOptions
    from secpolicy.auditlog.store import EventStore

from secpolicy.errors import (
    EXIT_INVALID_INPUT,
    EXIT_NONCOMPLIANT,
    InputError,
    IntegrityError,
    LocatedError,
)

FORMAT_NAMES = SINK_FORMATS
# SQLite integers are 64-bit: a larger count is refused (exit 2) rather than failing in the query.
_SQL_INT_MAX = 2**63 - 1

__all__ = ["COMMANDS", "anomaly_group", "dashboard_cmd", "log_group", "store_group", "timeline_cmd"]


def _write_new_private(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError("already exists; refusing to overwrite a key", path) from None
    except OSError as exc:
        raise InputError(f"cannot create: {exc.strerror}", path) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key(key_hex: str | None, key_file: str | None) -> bytes | None:
    from secpolicy.auditlog.log import read_key

    if key_hex and key_file:
        raise InputError("give --key or --key-file, not both")
    if key_file:
        from secpolicy.auditlog.checkpoint import read_small_file

        return read_key(read_small_file(key_file, "key file").decode("ascii", "replace"), f"key file {key_file}")
    if key_hex:
        return read_key(key_hex, "--key")
    return None


def _check_new_log_dir(directory: str) -> None:
    """Exit 2 for a log directory that cannot be made: a file, a FIFO, a device or a dangling
    symbolic link in its place, or a file where one of its parents should be."""
    here = os.path.abspath(directory)
    while not os.path.lexists(here):
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        what = "it" if here == os.path.abspath(directory) else here
        raise InputError(f"cannot make the log directory: {what} is not a directory", directory)


def _options(sign_key: str | None, checkpoint_every: int, copy_to: Sequence[str], sync: str) -> LogOptions:
    from secpolicy.auditlog.checkpoint import load_private_key
    from secpolicy.auditlog.log import LogOptions

    for target in copy_to:
        try:
            target.encode("utf-8")
        except UnicodeEncodeError:
            # The log's configuration (JSON text) names its copies: a name must be text.
            raise InputError("--copy-checkpoints: the file name is not UTF-8 text",
                             target.encode("utf-8", "surrogateescape").decode("utf-8", "replace")) from None

    return LogOptions(
        checkpoint_every=checkpoint_every,
        sync=sync,
        signing_key=load_private_key(sign_key) if sign_key else None,
        signing_key_path=Path(sign_key) if sign_key else None,
        copy_checkpoints_to=tuple(Path(p) for p in copy_to),
    )


# -- log -----------------------------------------------------------------------------------


@click.group(name="log")
def log_group() -> None:
    """The tamper-evident audit log: write, checkpoint, verify and prove."""


_sign_opt = click.option("--sign-key", metavar="PEM", help="Ed25519 private key that signs checkpoints.")
_copy_opt = click.option("--copy-checkpoints", "copy_to", multiple=True, metavar="FILE",
                         help="Also append every checkpoint here (e.g. a file shipped off the host).")
_every_opt = click.option("--checkpoint-every", default=1000, show_default=True, type=click.IntRange(1),
                          help="Entries between checkpoints (each starts a new key epoch).")


@log_group.command(name="keygen")
@click.argument("private_key", type=click.Path(dir_okay=False))
@click.argument("public_key", type=click.Path(dir_okay=False))
def keygen_cmd(private_key: str, public_key: str) -> None:
    """Make an Ed25519 key pair for signing checkpoints (the private key file is 0600)."""
    from secpolicy.auditlog.checkpoint import generate_signing_key

    if outfile.same_file(private_key, public_key):
        raise InputError(f"the private and the public key would both be written to {private_key}")
    outfile.check_writable(public_key)  # before the private key exists: a failure leaves neither
    private, public = generate_signing_key()
    _write_new_private(private_key, private)
    try:
        outfile.write_bytes(public_key, public)
    except BaseException:
        os.unlink(private_key)  # a half pair: the next keygen would refuse the private key's name
        raise
    click.echo(f"wrote {private_key} (keep on the host that writes the log) and {public_key}")


@log_group.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--key-out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the initial key (move it off the host: verification needs it).")
@_sign_opt
@_copy_opt
def init_cmd(directory: str, key_out: str, sign_key: str | None, copy_to: tuple[str, ...]) -> None:
    """Create a new audit log in DIRECTORY (made 0700) and write its initial key.

    The log directory also holds the pseudonym key (pseudonym.key, 0600) of the runs that
    record into it: redaction's pseudonyms of users, paths and hosts correlate across them."""
    from secpolicy.auditlog.log import AuditLog

    if os.path.lexists(key_out):
        raise InputError("already exists; refusing to overwrite a key", key_out)
    _check_new_log_dir(directory)
    outfile.check_writable(key_out)  # before the log exists: a log whose initial key was lost cannot be verified
    log, key = AuditLog.create(directory, _options(sign_key, 1000, copy_to, "always"))
    try:
        _write_new_private(key_out, key.hex().encode() + b"\n")
    finally:
        log.close()
    click.echo(f"created audit log {log.log_id} in {directory}; initial key in {key_out}; "
               f"pseudonym key in {os.path.join(directory, 'pseudonym.key')}")


def _audit_records(paths: Sequence[str]) -> Iterator[records.AuditRecord]:
    from secpolicy.auditlog import records

    for path in paths:
        stream = sys.stdin if path == "-" else None
        try:
            f = stream or open(path, encoding="utf-8")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path) from exc
        with f:
            for n, line in _lines(f, path):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise InputError("not a JSON object")
                    if "record_id" in obj and "event_type" in obj:
                        yield records.AuditRecord.from_dict(obj)
                    elif "rule_id" in obj:
                        yield records.from_alert(obj)
                    else:
                        raise InputError("neither an audit record (record_id, event_type) nor an alert (rule_id)")
                except json.JSONDecodeError as exc:
                    raise LocatedError(f"not JSON: {exc.msg}", path, n, exc.colno, line) from exc
                except InputError as exc:
                    raise LocatedError(exc.message, path, n, None, line) from exc


def _lines(f: IO[str], path: str) -> Iterator[tuple[int, str]]:
    """The numbered lines of `f`; a failing read (EIO) is that input's error, exit 2."""
    n = 0
    while True:
        try:
            line = f.readline()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
        except UnicodeDecodeError as exc:
            raise LocatedError(f"not UTF-8 text (byte {exc.start})", path, n + 1) from None
        if not line:
            return
        n += 1
        yield n, line


@log_group.command(name="append")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("inputs", nargs=-1, required=True, callback=input_file("input"))
@_sign_opt
@_copy_opt
@_every_opt
def append_cmd(directory: str, inputs: tuple[str, ...], sign_key: str | None, copy_to: tuple[str, ...],
               checkpoint_every: int) -> None:
    """Append audit records or alerts (JSON lines; '-' for stdin) to the log, then seal it."""
    from secpolicy.auditlog.log import AuditLog

    parsed = list(_audit_records(inputs))  # all input checked before the log is touched
    log = AuditLog.open(directory, _options(sign_key, checkpoint_every, copy_to, "checkpoint"))
    try:
        for rec in parsed:
            log.append(rec)
    finally:
        log.close()
    click.echo(f"appended {len(parsed)} records; log holds {log.size} entries")


@log_group.command(name="checkpoint")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out", metavar="FILE", help="Append the checkpoint to FILE as well.")
@_sign_opt
def checkpoint_cmd(directory: str, out: str | None, sign_key: str | None) -> None:
    """Write a checkpoint now and print it (one JSON line to copy off the host)."""
    from secpolicy.auditlog.log import AuditLog

    opts = _options(sign_key, 1000, (out,) if out else (), "checkpoint")
    log = AuditLog.open(directory, opts)
    try:
        cp = log.checkpoint()
    except BaseException:
        log.close()
        raise
    # The checkpoint is in the log (fsynced): shown even when a copy of it fails at close.
    click.echo(json.dumps(cp.to_dict(), sort_keys=True, separators=(",", ":")))
    log.close()


@log_group.command(name="verify")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--key", "key_hex", metavar="HEX", help="The initial key (64 hex digits).")
@click.option("--key-file", type=click.Path(dir_okay=False), help="File holding the initial key.")
@click.option("--checkpoint", "checkpoint_files", multiple=True, type=click.Path(dir_okay=False),
              help="Checkpoints kept off the host (JSON lines); repeatable.")
@click.option("--pubkey", type=click.Path(dir_okay=False), help="Ed25519 public key: checkpoint signatures must verify.")
@click.option("--witness", type=click.Path(dir_okay=False),
              help="Remember the verified tree head in FILE (best kept off the host); a later log that does not "
                   "extend it fails.")
@click.option("--open", "allow_open", is_flag=True,
              help="Accept a log without a final seal (a log that is still being written).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(files: tuple[str, ...], key_hex: str | None, key_file: str | None,
               checkpoint_files: tuple[str, ...], pubkey: str | None, witness: str | None, allow_open: bool,
               as_json: bool) -> None:
    """Verify log FILES (or a log directory). Exit 0 only if intact; 5 names the first bad entry.

    Given a directory, the log is also checked against what the host remembers of it (the
    writer's state, its list of checkpoints and the copies `log init` set up), so a log cut
    back to an earlier seal fails."""
    from secpolicy.auditlog.checkpoint import load_checkpoints, load_public_key
    from secpolicy.auditlog.verify import Witness, log_files, read_host_state, verify_log

    key = _key(key_hex, key_file)
    cps = [cp for path in checkpoint_files for cp in load_checkpoints(path)]
    seen = Witness.load(_witness_target(witness)) if witness else None
    if key is None and not cps and seen is None:
        raise InputError("nothing to verify against: give the initial key (--key/--key-file) and/or "
                         "off-host checkpoints (--checkpoint) or a --witness file")
    hosts = [read_host_state(Path(f)) for f in files if Path(f).is_dir()]
    anchors = [a for h in hosts for a in h.anchors]
    if seen is not None and (head := seen.anchor()) is not None:
        anchors.append(head)
    report = verify_log(log_files(files), key, cps, load_public_key(pubkey) if pubkey else None, allow_open,
                        anchors)
    if seen is not None:
        seen.remember(report)
    warnings = [w for h in hosts for w in h.warnings] + list(report.warnings)
    if as_json:
        data = {"status": "intact", **report.to_dict(), "warnings": warnings,
                "host_state": [x for h in hosts for x in h.held]}
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    checked = ["hash chain", "sequence", "epochs", "in-log checkpoints"]
    if report.macs_checked:
        checked.append("MACs")
    if report.external_checkpoints:
        checked.append(f"{report.external_checkpoints} off-host checkpoints")
    if report.signatures_checked:
        checked.append(f"{report.signatures_checked} signatures")
    click.echo(f"intact: {report.entries} entries ({report.records} records, {report.checkpoints} checkpoints, "
               f"{report.epochs} epochs), {'sealed' if report.sealed else 'open'}; root {report.root}")
    click.echo("checked: " + ", ".join(checked))
    if report.anchors:
        click.echo("length checked against: " + ", ".join(report.anchors))
    for warning in warnings:
        click.echo(f"warning: {warning}")


def _witness_target(path: str) -> str:
    """The file a witness is rewritten in: it is replaced (renamed over), so a symbolic link
    is refused as every output's is, or with --follow-symlinks the file it points to."""
    if not os.path.islink(path):
        return path
    if not outfile.follow_symlinks():
        raise outfile.OutputError(path, "it is a symbolic link; give the file it points to, or "
                                        "secpolicy --follow-symlinks")
    return os.path.realpath(path)


@log_group.group(name="prove")
def prove_group() -> None:
    """RFC 6962 inclusion and consistency proofs, and their verification."""


def _log_id(lines: list[bytes]) -> str:
    try:
        return str(json.loads(lines[0])["body"]["log_id"])
    except (IndexError, ValueError, KeyError, TypeError):
        return ""


def _in_log_checkpoints(lines: list[bytes]) -> dict[int, Checkpoint]:
    """The checkpoints written into the log, by tree size."""
    from secpolicy.auditlog.checkpoint import Checkpoint

    out: dict[int, Checkpoint] = {}
    for line in lines:
        if b'"kind":"checkpoint"' not in line:
            continue
        try:
            entry = json.loads(line)
            if entry.get("kind") == "checkpoint":
                cp = Checkpoint.from_dict(entry["body"])
                out[cp.tree_size] = cp
        except (ValueError, KeyError, TypeError, InputError):
            continue
    return out


def _anchored_size(cps: dict[int, Checkpoint], given: int | None, above: int, what: str) -> int:
    """The tree size to prove against: the latest checkpoint (or the one asked for)."""
    if given is not None:
        return given
    sizes = [s for s in cps if s > above]
    if not sizes:
        latest = max(cps, default=0)
        raise InputError(f"{what} comes after the latest checkpoint (tree size {latest}): write one with "
                         f"`secpolicy log checkpoint DIR`, or give --tree-size/--new for a proof no checkpoint "
                         f"anchors")
    return max(sizes)


def _carried(cps: dict[int, Checkpoint], size: int, root: bytes, path: str) -> dict[str, Any] | None:
    """The log's own checkpoint of `size`, which must agree with the entries it covers."""
    cp = cps.get(size)
    if cp is None:
        return None
    if cp.root != root.hex():
        raise IntegrityError(f"{path}: the first {size} entries do not match the log's checkpoint of {cp.ts} "
                             f"(seq {size}): entries were edited; no proof is made from them")
    return cp.to_dict()


@prove_group.command(name="inclusion")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--seq", required=True, type=click.IntRange(0), help="Sequence number of the entry.")
@click.option("--tree-size", type=click.IntRange(1),
              help="Tree size to prove against (default: the latest checkpoint, which the proof carries).")
def prove_inclusion_cmd(files: tuple[str, ...], seq: int, tree_size: int | None) -> None:
    """Prove that entry SEQ is in the tree of the latest checkpoint (or of TREE-SIZE entries)."""
    from secpolicy.auditlog.merkle import inclusion_proof, root_of
    from secpolicy.auditlog.verify import log_files, read_leaves


    paths = log_files(files)
    leaves, lines = read_leaves(paths)
    cps = _in_log_checkpoints(lines)
    size = _anchored_size(cps, tree_size, seq, f"entry {seq}")
    if size > len(leaves):
        raise InputError(f"--tree-size {size} exceeds the {len(leaves)} entries in the log")
    if seq >= size:
        raise InputError(f"--seq {seq} is not below the tree size {size}")
    root = root_of(leaves[:size])
    proof = inclusion_proof(leaves[:size], seq)
    click.echo(json.dumps({
        "type": "inclusion", "log_id": _log_id(lines), "leaf_index": seq, "tree_size": size,
        "entry": lines[seq].decode("utf-8"), "leaf_hash": leaves[seq].hex(),
        "root": root.hex(), "path": [p.hex() for p in proof],
        "checkpoint": _carried(cps, size, root, str(paths[0])),
    }, indent=2))


@prove_group.command(name="consistency")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--old", "old_size", required=True, type=click.IntRange(1), help="Older tree size.")
@click.option("--new", "new_size", type=click.IntRange(1), help="Newer tree size (default: the latest checkpoint).")
def prove_consistency_cmd(files: tuple[str, ...], old_size: int, new_size: int | None) -> None:
    """Prove that the first OLD entries are a prefix of the latest checkpoint's (or of NEW)."""
    from secpolicy.auditlog.merkle import consistency_proof, root_of
    from secpolicy.auditlog.verify import log_files, read_leaves


    paths = log_files(files)
    leaves, lines = read_leaves(paths)
    cps = _in_log_checkpoints(lines)
    size = _anchored_size(cps, new_size, old_size - 1, f"tree size {old_size}")
    if size > len(leaves) or old_size > size:
        raise InputError(f"need --old <= --new <= {len(leaves)} (the entries in the log)")
    old_root, new_root = root_of(leaves[:old_size]), root_of(leaves[:size])
    click.echo(json.dumps({
        "type": "consistency", "log_id": _log_id(lines), "old_size": old_size, "new_size": size,
        "old_root": old_root.hex(), "new_root": new_root.hex(),
        "proof": [p.hex() for p in consistency_proof(leaves[:size], old_size)],
        "old_checkpoint": _carried(cps, old_size, old_root, str(paths[0])),
        "new_checkpoint": _carried(cps, size, new_root, str(paths[0])),
    }, indent=2))


def _hex(value: Any, what: str) -> bytes:
    try:
        out = bytes.fromhex(str(value))
    except ValueError:
        raise InputError(f"proof field {what} is not hex") from None
    if len(out) != 32:
        raise InputError(f"proof field {what} is not 32 bytes")
    return out


class _Anchors:
    """What a proof's roots may be anchored by: off-host checkpoints, the checkpoints a proof
    carries when --pubkey verifies their signature, and a witness's remembered head."""

    def __init__(self, proof_file: str, checkpoints: list[Checkpoint], pub: Any, witness: Any) -> None:
        self.proof_file = proof_file
        self.by_size: dict[int, tuple[Checkpoint | None, str]] = {
            cp.tree_size: (cp, "the off-host checkpoint") for cp in checkpoints}
        self.pub = pub
        self.witness = witness
        self.lines: list[str] = []
        self.missing: list[str] = []

    def check(self, size: int, root: bytes, what: str, carried: Any) -> None:
        from secpolicy.auditlog.checkpoint import Checkpoint

        if carried is not None:
            cp = Checkpoint.from_dict(carried)
            if cp.tree_size != size or cp.root != root.hex():
                raise IntegrityError(f"{self.proof_file}: the {what} root is not the root of the checkpoint the proof "
                                     f"carries (tree size {cp.tree_size}): the proof was made from an edited log")
            if self.pub is not None:
                cp.verify_signature(self.pub)
                self.by_size.setdefault(size, (cp, "the signed checkpoint the proof carries"))
        held = self.by_size.get(size)
        w = self.witness
        if held is None and w is not None and w.tree_size == size and w.root is not None:
            held = (None, f"the head remembered in {w.path}")
            if w.root != root.hex():
                raise IntegrityError(f"{self.proof_file}: the {what} root differs from the head remembered in "
                                     f"{w.path} (tree size {size})")
        if held is None:
            self.missing.append(f"{what} root (tree size {size})")
            return
        trusted, source = held
        if trusted is not None and trusted.root != root.hex():
            raise IntegrityError(f"{self.proof_file}: the {what} root differs from {source} of {trusted.ts} "
                                 f"(tree size {size})")
        self.lines.append(f"{what} root matches {source}" + (f" of {trusted.ts}" if trusted is not None else ""))


@prove_group.command(name="check")
@click.argument("proof_file", type=click.Path(dir_okay=False), callback=input_file("proof"))
@click.option("--checkpoint", "checkpoint_files", multiple=True, type=click.Path(dir_okay=False),
              help="Trusted checkpoints: the proof's roots must match the ones of the same size.")
@click.option("--pubkey", type=click.Path(dir_okay=False),
              help="Ed25519 public key: checkpoints given or carried by the proof must be signed with it.")
@click.option("--witness", type=click.Path(dir_okay=False),
              help="Witness file of `log verify --witness`: a consistency proof's old root must be its head, "
                   "which then moves on to the proof's new, anchored head.")
@click.option("--unanchored", is_flag=True,
              help="Accept roots that no trusted checkpoint anchors (the proof then only shows internal consistency).")
def prove_check_cmd(proof_file: str, checkpoint_files: tuple[str, ...], pubkey: str | None, witness: str | None,
                    unanchored: bool) -> None:
    """Verify a proof written by `log prove` (exit 5 if it does not hold or is not anchored)."""
    from secpolicy.auditlog.checkpoint import load_checkpoints, load_public_key
    from secpolicy.auditlog.merkle import (
        ProofError,
        leaf_hash,
        verify_consistency,
        verify_inclusion,
    )
    from secpolicy.auditlog.verify import Witness

    try:
        proof = json.loads(Path(proof_file).read_text(encoding="utf-8"))
        kind = proof["type"]
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", proof_file) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError("not a proof written by `secpolicy log prove`", proof_file) from exc
    cps = [cp for path in checkpoint_files for cp in load_checkpoints(path)]
    pub = load_public_key(pubkey) if pubkey else None
    if pub is not None:
        for cp in cps:
            cp.verify_signature(pub)
    seen = Witness.load(_witness_target(witness)) if witness else None
    anchors = _Anchors(proof_file, cps, pub, seen)
    try:
        if kind == "inclusion":
            leaf = _hex(proof["leaf_hash"], "leaf_hash")
            if "entry" in proof and leaf_hash(str(proof["entry"]).encode("utf-8")) != leaf:
                raise IntegrityError(f"{proof_file}: the entry does not hash to the leaf hash")
            root = _hex(proof["root"], "root")
            verify_inclusion(leaf, int(proof["leaf_index"]), int(proof["tree_size"]),
                             [_hex(p, "path") for p in proof["path"]], root)
            anchors.check(int(proof["tree_size"]), root, "tree", proof.get("checkpoint"))
            held = (f"inclusion proof holds: entry {proof['leaf_index']} is in the tree of "
                    f"{proof['tree_size']} entries")
        elif kind == "consistency":
            old_root, new_root = _hex(proof["old_root"], "old_root"), _hex(proof["new_root"], "new_root")
            verify_consistency(int(proof["old_size"]), int(proof["new_size"]), old_root, new_root,
                               [_hex(p, "proof") for p in proof["proof"]])
            anchors.check(int(proof["old_size"]), old_root, "old", proof.get("old_checkpoint"))
            anchors.check(int(proof["new_size"]), new_root, "new", proof.get("new_checkpoint"))
            held = (f"consistency proof holds: the first {proof['old_size']} entries are a prefix of the "
                    f"first {proof['new_size']}")
        else:
            raise InputError(f"unknown proof type {kind!r}", proof_file)
    except ProofError as exc:
        raise IntegrityError(f"{proof_file}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"proof is missing or mistypes a field: {exc}", proof_file) from exc
    if anchors.missing and not unanchored:
        raise IntegrityError(f"{proof_file}: the proof holds but is not anchored: no trusted checkpoint for the "
                             f"{' and the '.join(anchors.missing)}; give --checkpoint FILE kept off the host, or "
                             f"--pubkey for the checkpoint the proof carries (--unanchored accepts it as it is)")
    click.echo(held)
    for line in anchors.lines:
        click.echo(line)
    for what in anchors.missing:
        click.echo(f"warning: {what} is not anchored (--unanchored): the proof shows only that its hashes agree")
    if seen is not None and kind == "consistency" and not anchors.missing and seen.advance(str(proof.get("log_id", "")), int(proof["new_size"]), str(proof["new_root"])):
        click.echo(f"witness {seen.path} now remembers tree size {seen.tree_size}")


_strict_opt = click.option("--strict", is_flag=True, help="Exit 2 when any input line was malformed (after "
                                                               "using the rest).")


def _bad_lines(reader: Any, strict: bool) -> None:
    """Name the malformed input lines that were skipped; with --strict, exit 2 for them."""
    for where in reader.bad_where:
        click.echo(f"secpolicy: skipped {where}", err=True)
    if reader.bad > len(reader.bad_where):
        click.echo(f"secpolicy: ... {reader.bad - len(reader.bad_where)} more malformed lines skipped", err=True)
    if reader.bad:
        click.echo(f"secpolicy: {reader.bad} malformed input line(s) skipped", err=True)
        if strict:
            sys.exit(EXIT_INVALID_INPUT)


# -- timeline ------------------------------------------------------------------------------


def _source_options(f: Any) -> Any:
    f = click.option("--replay", "replay", multiple=True, type=click.Path(dir_okay=False),
                     help="Event/alert JSON-lines files instead of a store; repeatable.")(f)
    f = click.option("--db", type=click.Path(dir_okay=False), help="Event store (SQLite).")(f)
    return f


def _open_store(db: str | None, replay: Sequence[str]) -> EventStore | None:
    from secpolicy.auditlog.store import EventStore

    if bool(db) == bool(replay):
        raise InputError("give either --db or --replay")
    return EventStore(db, read_only=True) if db else None


@click.command(name="timeline")
@_source_options
@click.option("--since", help="Start (inclusive), ISO 8601 with a time zone.")
@click.option("--until", help="End (exclusive), ISO 8601 with a time zone.")
@click.option("--user", callback=text_value, help="User name (as in the timeline's user column).")
@click.option("--type", "type_", metavar="TYPE", callback=lambda ctx, param, value: _event_type(value),
              help="Event type (exec, open, ... or 'alert').")
@click.option("--rule", callback=text_value, help="Only alerts of this rule id (and their chains).")
@click.option("--limit", default=10_000, show_default=True, type=click.IntRange(1, _SQL_INT_MAX))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@_strict_opt
@redaction_option
def timeline_cmd(db: str | None, replay: tuple[str, ...], since: str | None, until: str | None,
                 user: str | None, type_: str | None, rule: str | None, limit: int, fmt: str,
                 output: str | None, strict: bool, redaction: str | None) -> None:
    """Forensic timeline: what happened (who, what, on what, with what result), with chains.

    Filters see the records as they are; what is shown is redacted (--redaction)."""
    from secpolicy.app.redaction import open_redactor

    outfile.check_writable(output)
    redactor = open_redactor(redaction)
    from secpolicy.auditlog.timeline import (
        TimelineQuery,
        build_timeline,
        read_replay,
        render_html,
        render_table,
    )
    query = TimelineQuery(since=since, until=until, user=user, type=type_, rule=rule, limit=limit)
    store = _open_store(db, replay)
    _refuse_audit_logs(replay)
    reader = read_replay(replay) if replay else None
    try:
        timeline = build_timeline(query, store=store, replay=reader, redactor=redactor)
    finally:
        if store is not None:
            store.close()
    _show_timeline(timeline, fmt, output, render_html, render_table)
    if reader is not None:
        _bad_lines(reader, strict)


def _refuse_audit_logs(paths: Sequence[str]) -> None:
    """An auditd log given to --replay would be every line skipped and an empty timeline."""
    from secpolicy.events.sources import detect_format

    for path in paths:
        try:
            kind = detect_format(path)
        except InputError:
            continue  # neither format: the JSON-lines reader names the bad lines
        if kind == "auditd":
            raise InputError("an auditd log, not event or alert JSON lines: `secpolicy replay FILE --input-format "
                             "auditd --store DB` keeps its events, then `secpolicy timeline --db DB`", path)


def _event_type(value: str | None) -> str | None:
    from secpolicy.events.fields import EVENT_TYPES

    if value is not None and value not in (*EVENT_TYPES, "alert"):
        raise click.BadParameter(f"{value!r} is not an event type; known: {', '.join(EVENT_TYPES)}, alert",
                                 param_hint="'--type'")
    return value


def _show_timeline(timeline: Any, fmt: str, output: str | None, render_html: Any, render_table: Any) -> None:
    if fmt == "json":
        text = json.dumps(timeline.to_dict(), indent=2) + "\n"
    elif fmt == "html":
        text = render_html(timeline)
    else:
        from rich.console import Console

        if output is None:
            Console().print(*render_table(timeline))
            return
        with open(os.devnull, "w") as sink:
            console = Console(record=True, width=160, file=sink)
            console.print(*render_table(timeline))
        text = console.export_text()
    if output:
        outfile.write_text(output, text)
    else:
        click.echo(text, nl=False)


# -- dashboard -----------------------------------------------------------------------------


@click.command(name="dashboard")
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="Event store (SQLite).")
@click.option("--results", type=click.Path(dir_okay=False), callback=input_file("results file"),
              help="Results JSON of the last scan.")
@click.option("--once", is_flag=True, help="Render one frame and exit.")
@click.option("--refresh", default=2.0, show_default=True, type=click.FloatRange(0.2), help="Seconds between frames.")
@click.option("--now", "now_text", metavar="ISO", help="Pretend it is this time (forensics, tests).")
@click.option("--width", type=click.IntRange(40, 10_000), help="Terminal width for --once.")
def dashboard_cmd(db: str, results: str | None, once: bool, refresh: float, now_text: str | None,
                  width: int | None) -> None:
    """Live security dashboard over the event store (Ctrl-C to leave)."""
    from rich.console import Console
    from rich.live import Live

    from secpolicy.auditlog.dashboard import collect, render
    from secpolicy.auditlog.store import EventStore, normalize_ts

    now = None
    if now_text:
        now = datetime.strptime(normalize_ts(now_text)[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    store = EventStore(db, read_only=True)
    try:
        if once:
            console = Console(width=width) if width else Console()
            console.print(render(collect(store, results, now)))
            return
        with Live(render(collect(store, results, now)), refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    time.sleep(refresh)
                    live.update(render(collect(store, results, now)))
            except KeyboardInterrupt:
                pass
    finally:
        store.close()


# -- anomaly -------------------------------------------------------------------------------


@click.group(name="anomaly")
def anomaly_group() -> None:
    """Learn a baseline of event rates and detect departures from it."""


def _items(db: str | None, replay: Sequence[str], since: str | None, until: str | None,
           alerts: bool) -> Iterator[tuple[str, Mapping[str, Any]]]:
    from secpolicy.auditlog.store import normalize_ts
    from secpolicy.auditlog.timeline import read_replay

    store = _open_store(db, replay)
    if store is not None:
        try:
            evs = (("event", e) for e in store.events(since, until))
            als = (("alert", a) for a in store.alerts(since, until)) if alerts else iter(())
            yield from heapq.merge(evs, als, key=lambda kv: normalize_ts(kv[1].get("ts")
                                                                          or kv[1].get("event", {}).get("ts")))
        finally:
            store.close()
        return
    lo = normalize_ts(since) if since else None
    hi = normalize_ts(until) if until else None
    items = []
    reader = read_replay(replay)
    for kind, obj in reader:
        if kind == "alert" and not alerts:
            continue
        ts = normalize_ts(obj.get("ts") or (obj.get("event") or {}).get("ts"))
        if (lo is None or ts >= lo) and (hi is None or ts < hi):
            items.append((ts, kind, obj))
    items.sort(key=lambda t: t[0])
    _bad_lines(reader, False)
    for _, kind, obj in items:
        yield kind, obj


def _span(since: str | None, until: str | None) -> None:
    from secpolicy.auditlog.store import normalize_ts

    if since and until and normalize_ts(since) >= normalize_ts(until):
        raise InputError(f"--since {normalize_ts(since)} is not before --until {normalize_ts(until)}")


@anomaly_group.command(name="learn")
@_source_options
@click.option("--since")
@click.option("--until")
@click.option("--interval", default=60, show_default=True, type=click.IntRange(1), help="Seconds per bucket.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Baseline JSON to write.")
def anomaly_learn_cmd(db: str | None, replay: tuple[str, ...], since: str | None, until: str | None,
                      interval: int, out: str) -> None:
    """Learn event rates per type and interval from a quiet period."""
    from secpolicy.auditlog.anomaly import learn_baseline

    _span(since, until)
    baseline = learn_baseline((e for _, e in _items(db, replay, since, until, alerts=False)), interval,
                              since, until)
    baseline.save(out)
    click.echo(f"baseline of {len(baseline.types)} event types over {baseline.buckets} intervals of "
               f"{interval} s ({baseline.start} .. {baseline.end}) written to {out}")


@anomaly_group.command(name="detect")
@_source_options
@click.option("--baseline", "baseline_path", required=True, type=click.Path(dir_okay=False),
              callback=input_file("baseline"))
@click.option("--since")
@click.option("--until")
@click.option("--k", default=3.0, show_default=True, type=float, help="Alert above k times the baseline rate.")
@click.option("--min-count", default=10, show_default=True, type=click.IntRange(1))
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False))
@redaction_option
def anomaly_detect_cmd(db: str | None, replay: tuple[str, ...], baseline_path: str, since: str | None,
                       until: str | None, k: float, min_count: int, fmt: str, output: str | None,
                       redaction: str | None) -> None:
    """Print anomaly alerts (one per line, redacted: --redaction); exit 1 when there is any."""
    from secpolicy.app.redaction import open_redactor
    from secpolicy.auditlog.anomaly import Baseline, Detector, DetectorSettings
    from secpolicy.auditlog.sinks.formats import format_alert

    _span(since, until)
    outfile.check_writable(output)
    redactor = open_redactor(redaction)
    detector = Detector(Baseline.load(baseline_path), DetectorSettings(k=k, min_count=min_count))
    seen = Counter[str]()

    def counted(items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        for kind, obj in items:
            seen[kind] += 1
            yield kind, obj

    alerts = [redactor.alert(a) for a in detector.run(counted(_items(db, replay, since, until, alerts=True)))]
    # "No anomalies" over no events would say nothing was compared: the count is always given.
    if not seen["event"]:
        click.echo("secpolicy: no events in the window: nothing was compared with the baseline", err=True)
    else:
        click.echo(f"secpolicy: {seen['event']} events compared with the baseline, {len(alerts)} "
                   f"anomal{'y' if len(alerts) == 1 else 'ies'}", err=True)
    text = "".join(format_alert(a, fmt) + "\n" for a in alerts)
    if output:
        outfile.write_text(output, text)
    else:
        click.echo(text, nl=False)
    if alerts:
        sys.exit(EXIT_NONCOMPLIANT)


# -- store ---------------------------------------------------------------------------------


@click.group(name="store")
def store_group() -> None:
    """The event store: ingest JSON lines, apply retention."""


@store_group.command(name="ingest")
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), callback=input_file("input"))
@click.option("--batch", default=50_000, show_default=True, type=click.IntRange(1), help="Rows per transaction.")
@_strict_opt
@redaction_option
def store_ingest_cmd(db: str, files: tuple[str, ...], batch: int, strict: bool, redaction: str | None) -> None:
    """Store events and alerts from JSON-lines files (a line with rule_id is an alert).

    Each is redacted (--redaction) before it is stored. A malformed line is skipped and
    reported with its file and line; the rest is stored. An event or alert the store holds
    already (the same content) is not stored again: ingesting a file twice, or overlapping
    files, stores each record once, and the duplicates are counted."""
    from secpolicy.app.redaction import open_redactor
    from secpolicy.auditlog.store import JsonLines
    from secpolicy.auditlog.store_writer import ingest_in_writer

    redactor = open_redactor(redaction)
    reader = JsonLines(files, redactor=redactor)
    stored = ingest_in_writer(db, reader.rows(), batch)
    n_events, n_alerts = stored
    duplicates = ""
    if stored.duplicate_events or stored.duplicate_alerts:
        duplicates = (f" (skipped {stored.duplicate_events} events and {stored.duplicate_alerts} alerts "
                      f"already stored)")
    click.echo(f"stored {n_events} events and {n_alerts} alerts in {db}{duplicates}")
    summary = redactor.summary()
    if summary["records"] or not summary["enabled"]:
        click.echo(f"secpolicy: {format_redaction(summary)}", err=True)
    _bad_lines(reader, strict)


@store_group.command(name="export")
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["ocsf"]), default="ocsf", show_default=True)
@click.option("--since", help="Start (inclusive), ISO 8601 with a time zone.")
@click.option("--until", help="End (exclusive), ISO 8601 with a time zone.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def store_export_cmd(db: str, fmt: str, since: str | None, until: str | None, output: str | None) -> None:
    """Stored events and alerts as OCSF 1.3.0 JSON lines: exec events as Process Activity,
    alerts as Detection Findings. Other event types have no OCSF mapping here yet: they are
    counted on stderr, not written."""
    from secpolicy.auditlog.sinks.formats import to_ocsf, to_ocsf_process_activity
    from secpolicy.auditlog.store import EventStore, normalize_ts

    # The window is checked before the output is opened: a bad --since leaves no empty file,
    # and a window that holds nothing by construction is an error, not "0 written".
    _span(since, until)
    outfile.check_writable(output)
    store = EventStore(db, read_only=True)
    skipped: dict[str, int] = {}
    n = 0
    try:
        with outfile.open_output(output) as out:
            for event in store.events(since, until, type="exec"):
                out.write(json.dumps(to_ocsf_process_activity(event), sort_keys=True) + "\n")
                n += 1
            for alert in store.alerts(since, until):
                out.write(json.dumps(to_ocsf(alert), sort_keys=True) + "\n")
                n += 1
        window = [normalize_ts(t) for t in (since, until) if t]
        for kind, count in store.conn.execute(
                "SELECT type, COUNT(*) FROM events WHERE type != 'exec'" + (" AND ts >= ?" if since else "")
                + (" AND ts < ?" if until else "") + " GROUP BY type", window):
            skipped[kind] = count
    finally:
        store.close()
    click.echo(f"secpolicy: {n} OCSF events written" + (
        "; not mapped to OCSF: " + ", ".join(f"{c} {k}" for k, c in sorted(skipped.items())) if skipped else ""),
        err=True)


@store_group.command(name="prune")
@click.argument("db", type=click.Path(dir_okay=False, exists=True))
@click.option("--days", type=click.FloatRange(0, min_open=True), help="Delete what is older than this.")
@click.option("--max-events", type=click.IntRange(1, _SQL_INT_MAX), help="Keep at most this many events.")
def store_prune_cmd(db: str, days: float | None, max_events: int | None) -> None:
    """Apply retention: delete old events and alerts.

    An event or alert dated more than a day after now has no age to go by: --days counts from
    when it was stored, and --max-events deletes such events first."""
    from secpolicy.auditlog.store import EventStore, Retention

    if days is None and max_events is None:
        raise InputError("give --days and/or --max-events")
    store = EventStore(db, Retention(days=days, max_events=max_events), create=False)
    try:
        pruned = store.prune()
    finally:
        store.close()
    n_events, n_alerts = pruned
    future = ""
    if pruned.future_events or pruned.future_alerts:
        future = (f" ({pruned.future_events} events and {pruned.future_alerts} alerts of them dated more than "
                  f"a day after now)")
    click.echo(f"deleted {n_events} events and {n_alerts} alerts{future}")


COMMANDS = [log_group, timeline_cmd, dashboard_cmd, anomaly_group, store_group]
