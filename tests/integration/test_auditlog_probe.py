"""Defects a further red-team pass reproduced in the tamper-evident log, each as it was found:
hostile JSON (deep nesting, NaN/Infinity, mistyped checkpoint fields, a forged signing key) that
crashed `log verify` instead of naming the tampering, a sparse segment or checkpoint file that
made it read gigabytes into memory, and a report without the key that hid which entries only the
hash links protected."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from auditlog_cli import run

from secpolicy.auditlog import log as log_module
from secpolicy.auditlog.canonical import canonical
from secpolicy.auditlog.checkpoint import Checkpoint
from secpolicy.auditlog.log import AuditLog, LogOptions
from secpolicy.auditlog.merkle import Frontier, leaf_hash
from secpolicy.auditlog.records import failure
from secpolicy.errors import InputError

REPO = Path(__file__).resolve().parent.parent.parent
OPTS = LogOptions(checkpoint_every=3, checkpoint_interval=None, sync="checkpoint")


@pytest.fixture()
def plain(tmp_path: Path) -> dict[str, Path]:
    """A sealed log of 8 records and 3 in-log checkpoints (seq 4, 8, 11), no copies."""
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, OPTS)
    for i in range(8):
        log.append(failure("monitor", f"m{i}"))
    log.close()
    (tmp_path / "initial.key").write_text(key.hex() + "\n")
    return {"dir": directory, "key": tmp_path / "initial.key", "seg": directory / "segment-000000.jsonl",
            "tmp": tmp_path}


def rechain(seg: Path, seq: int, edit: Callable[[dict[str, Any]], None]) -> None:
    """What an attacker without the key does: edit one entry, then recompute every hash link and
    the roots of the later in-log checkpoints (the MACs cannot be recomputed)."""
    entries = [json.loads(line) for line in seg.read_bytes().splitlines()]
    edit(entries[seq])
    prev, frontier, out = "0" * 64, Frontier(), []
    for e in entries:
        e["prev"] = prev
        if e["kind"] == "checkpoint" and e["seq"] != seq:
            e["body"]["root"] = frontier.root().hex()
        line = canonical(e)
        prev = hashlib.sha256(line).hexdigest()
        frontier.append(leaf_hash(line))
        out.append(line)
    seg.write_bytes(b"\n".join(out) + b"\n")


def rewrite_host_state(directory: Path) -> None:
    """Rewrite state.json and checkpoints.jsonl to agree with the (re-chained) segment."""
    lines = (directory / "segment-000000.jsonl").read_bytes().splitlines()
    frontier, cps = Frontier(), []
    for line in lines:
        entry = json.loads(line)
        if entry["kind"] == "checkpoint":
            cps.append(canonical(entry["body"]))
        frontier.append(leaf_hash(line))
    (directory / "checkpoints.jsonl").write_bytes(b"\n".join(cps) + b"\n")
    state = json.loads((directory / "state.json").read_bytes())
    state.update(prev=hashlib.sha256(lines[-1]).hexdigest(), frontier=frontier.to_list(),
                 frontier_size=frontier.size, offset=sum(len(line) + 1 for line in lines))
    (directory / "state.json").write_bytes(canonical(state))


def replace_line(seg: Path, index: int, new: bytes) -> None:
    lines = seg.read_bytes().split(b"\n")
    lines[index] = new
    seg.write_bytes(b"\n".join(lines))


# -- hostile JSON: tampering (exit 5), never a crash -------------------------------------------


def _deep_entry(p: dict[str, Path]) -> None:
    replace_line(p["seg"], 4, b"[" * 100_000 + b"]" * 100_000)


def _infinite_checkpoint(p: dict[str, Path]) -> None:
    with open(p["dir"] / "checkpoints.jsonl", "ab") as f:
        f.write(b'{"log_id":"x","root":"' + b"a" * 64 + b'","tree_size":Infinity,"ts":"t"}\n')


def _deep_checkpoint(p: dict[str, Path]) -> None:
    with open(p["dir"] / "checkpoints.jsonl", "ab") as f:
        f.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")


def _infinite_state(p: dict[str, Path]) -> None:
    state = p["dir"] / "state.json"
    state.write_bytes(state.read_bytes().replace(b'"frontier_size":', b'"frontier_size":Infinity,"x":'))


def _deep_first_line_of_a_segment(p: dict[str, Path]) -> None:
    (p["dir"] / "segment-000001.jsonl").write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")


@pytest.mark.parametrize("attack", [_deep_entry, _infinite_checkpoint, _deep_checkpoint, _infinite_state,
                                    _deep_first_line_of_a_segment])
def test_hostile_json_in_the_log_directory_is_tampering_not_a_crash(plain: dict[str, Path],
                                                                     attack: Callable[[dict[str, Path]], None]) -> None:
    attack(plain)
    code, out = run("log", "verify", str(plain["dir"]), "--key-file", str(plain["key"]))
    assert code == 5, out


def test_a_forged_start_entry_signing_key_is_tampering_not_a_crash(plain: dict[str, Path]) -> None:
    # Without the key, a first verification with a new witness checks the log on its own.
    for bad in ("zz", "00" * 31):
        rechain(plain["seg"], 0, lambda e, bad=bad: e["body"].__setitem__("signing_public_key", bad))
        witness = plain["tmp"] / "witness.json"
        code, out = run("log", "verify", str(plain["seg"]), "--witness", str(witness))
        assert code == 5 and "signing key that is not an Ed25519 public key" in out, out
        assert not witness.exists()


def test_a_mistyped_checkpoint_signature_is_tampering_not_a_crash(plain: dict[str, Path]) -> None:
    assert run("log", "keygen", str(plain["tmp"] / "s.pem"), str(plain["tmp"] / "s.pub"))[0] == 0
    rechain(plain["seg"], 4, lambda e: e["body"].__setitem__("signature", 5))
    code, out = run("log", "verify", str(plain["seg"]), "--witness", str(plain["tmp"] / "w.json"),
                    "--pubkey", str(plain["tmp"] / "s.pub"))
    assert code == 5 and "seq 4: malformed checkpoint" in out, out


@pytest.mark.parametrize("field,value", [("tree_size", "5"), ("tree_size", 5.0), ("tree_size", True),
                                         ("tree_size", float("inf")), ("signature", 5), ("log_id", 7),
                                         ("public_key", ["x"])])
def test_a_checkpoint_must_have_the_types_a_writer_writes(field: str, value: Any) -> None:
    good = {"log_id": "l", "tree_size": 5, "root": "a" * 64, "ts": "t"}
    Checkpoint.from_dict(good)
    with pytest.raises(InputError):
        Checkpoint.from_dict({**good, field: value})


def test_infinity_in_an_offhost_checkpoint_file_is_unusable_input(plain: dict[str, Path]) -> None:
    cps = plain["tmp"] / "cps.jsonl"
    cps.write_text('{"log_id":"x","root":"' + "a" * 64 + '","tree_size":1e400,"ts":"t"}\n')
    code, out = run("log", "verify", str(plain["dir"]), "--checkpoint", str(cps))
    assert code == 2 and "tree_size" in out, out


def test_infinity_in_a_witness_file_is_unusable_input(plain: dict[str, Path]) -> None:
    witness = plain["tmp"] / "w.json"
    witness.write_text('{"log_id":"x","root":"r","tree_size":Infinity}\n')
    code, out = run("log", "verify", str(plain["dir"]), "--witness", str(witness))
    assert code == 2 and "not a witness file" in out, out


# -- bounded memory ------------------------------------------------------------------------------


def _limited_memory() -> None:
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("name", ["segment-000001.jsonl", "checkpoints.jsonl"])
def test_a_sparse_file_of_gigabytes_is_not_read_into_memory(plain: dict[str, Path], name: str) -> None:
    # No disk space needed: 4 GiB of zeros (no newline) that the old verifier read whole.
    path = plain["dir"] / name
    with open(path, "ab") as f:
        f.truncate(4 * 1024 * 1024 * 1024)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "secpolicy", "log", "verify", str(plain["dir"]), "--key-file", str(plain["key"])],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
            preexec_fn=_limited_memory, check=False)
    finally:
        path.unlink()
    assert result.returncode == 5, result.stderr
    assert f"{name}:" in result.stderr and "MemoryError" not in result.stderr


def test_the_writer_refuses_an_entry_longer_than_a_reader_reads(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log, _ = AuditLog.create(tmp_path / "log", OPTS)
    monkeypatch.setattr(log_module, "MAX_ENTRY_BYTES", 4096)
    with pytest.raises(InputError, match="longer than"):
        log.append(failure("monitor", "x" * 5000))
    log.append(failure("monitor", "short"))
    log.close()


def test_verify_reads_lines_as_before(plain: dict[str, Path], tmp_path: Path) -> None:
    # A rotated log (several segments) and a log whose last line lacks its newline.
    directory = tmp_path / "rot"
    log, key = AuditLog.create(directory, LogOptions(checkpoint_every=50, checkpoint_interval=None,
                                                      max_segment_bytes=1024, sync="checkpoint"))
    for i in range(30):
        log.append(failure("monitor", f"m{i}"))
    log.close()
    assert len(list(directory.glob("segment-*.jsonl"))) > 3
    code, out = run("log", "verify", str(directory), "--key", key.hex())
    assert code == 0 and "intact: " in out, out
    data = plain["seg"].read_bytes()
    plain["seg"].write_bytes(data[:-1])
    code, out = run("log", "verify", str(plain["dir"]), "--key-file", str(plain["key"]))
    assert code == 5 and "partial last line" in out, out


# -- what verify says --------------------------------------------------------------------------


def test_without_the_key_entries_after_the_last_offhost_checkpoint_are_named_unprotected(
        plain: dict[str, Path]) -> None:
    """The host's own state.json and checkpoints.jsonl are rewritten with the entries: they do
    not make the entries after the last checkpoint kept elsewhere any safer without the key."""
    offhost = plain["tmp"] / "offhost.jsonl"
    offhost.write_bytes((plain["dir"] / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)[0])
    rechain(plain["seg"], 7, lambda e: e["body"]["details"].__setitem__("message", "FORGED"))
    rewrite_host_state(plain["dir"])
    code, out = run("log", "verify", str(plain["dir"]), "--checkpoint", str(offhost))
    assert code == 0  # by design: without the key a re-chained tail is indistinguishable
    assert "MACs not checked; entries from seq 4 on are checked for structure and hash links only" in out, out
    assert run("log", "verify", str(plain["dir"]), "--key-file", str(plain["key"]))[0] == 5
