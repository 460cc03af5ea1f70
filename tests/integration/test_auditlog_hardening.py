"""Defects a red team reproduced in the tamper-evident log, each as it was found: a deleted
config.json, short writes, FIFOs in the log directory, bytes after a seal, concurrent writers,
and a whole directory put back from an older copy."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from auditlog_cli import run

from secpolicy.auditlog.checkpoint import load_checkpoints
from secpolicy.auditlog.log import AuditLog, CheckpointCopyError, LogOptions, write_private_file
from secpolicy.auditlog.records import AuditRecord, from_alert
from secpolicy.auditlog.verify import log_files, read_host_state, verify_log
from secpolicy.errors import RuntimeFailure

REPO = Path(__file__).resolve().parent.parent.parent
OPTS = LogOptions(checkpoint_every=2, checkpoint_interval=None, sync="checkpoint")


def secpolicy(*args: str) -> subprocess.CompletedProcess[str]:
    """A separate process, so that a command that would hang fails the test instead."""
    return subprocess.run([sys.executable, "-m", "secpolicy", *args], capture_output=True, text=True,
                          timeout=30, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)


def alerts(tmp_path: Path, n: int, name: str = "recs.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"rule_id": f"r{i}", "severity": "high", "title": f"t{i}",
                                        "ts": f"2026-01-01T00:00:0{i % 10}Z"}) + "\n" for i in range(n)))
    return str(path)


def record(i: int) -> AuditRecord:
    return from_alert({"rule_id": f"r{i}", "severity": "high", "title": f"t{i}", "ts": "2026-01-01T00:00:01Z"})


@pytest.fixture()
def copied(tmp_path: Path) -> dict[str, Path]:
    """A log set up (log init) to copy its checkpoints off the host, written by one run."""
    d = {"dir": tmp_path / "log", "key": tmp_path / "k", "copy": tmp_path / "offhost" / "cps.jsonl"}
    d["copy"].parent.mkdir()
    code, out = run("log", "init", str(d["dir"]), "--key-out", str(d["key"]), "--copy-checkpoints", str(d["copy"]))
    assert code == 0, out
    code, out = run("log", "append", str(d["dir"]), alerts(tmp_path, 5))
    assert code == 0, out
    return d


def rolled_back(d: dict[str, Path], tmp_path: Path) -> None:
    """Save the whole directory, let two more runs write, put the saved directory back."""
    snap = tmp_path / "snap"
    shutil.copytree(d["dir"], snap)
    for _ in range(2):
        assert run("log", "append", str(d["dir"]), alerts(tmp_path, 5))[0] == 0
    shutil.rmtree(d["dir"])
    shutil.copytree(snap, d["dir"])


# -- D1: config.json deleted or edited ---------------------------------------------------


def test_deleting_config_json_does_not_hide_the_copy_the_start_entry_names(copied: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    d = copied
    rolled_back(d, tmp_path)
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 5 and f"in {d['copy']}" in out and "cut back" in out, out
    (d["dir"] / "config.json").unlink()
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 5 and f"in {d['copy']}" in out and "cut back" in out, out
    # Edited to name no copy: the same.
    (d["dir"] / "config.json").write_text(json.dumps({"version": 1, "signing_key": None,
                                                      "signing_public_key": None, "copy_checkpoints": []}))
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 5 and f"in {d['copy']}" in out and "cut back" in out, out


def test_verify_names_a_config_json_that_is_missing_or_differs_from_the_start_entry(
        copied: dict[str, Path]) -> None:
    d = copied
    config = d["dir"] / "config.json"
    saved = config.read_bytes()
    config.unlink()
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 0, out
    assert (f"warning: {config} is missing, but the log's start entry records copying every checkpoint to "
            f"{d['copy']}, which was checked") in out
    assert f"{d['copy']} (" in "".join(read_host_state(d["dir"]).held)
    config.write_text(json.dumps({"version": 1, "signing_key": None, "signing_public_key": None,
                                  "copy_checkpoints": []}))
    config.chmod(0o600)
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 0 and f"warning: {config} says no signing and no checkpoint copies, but the log's start " \
                         f"entry records copying every checkpoint to {d['copy']}: config.json was edited" in out, out
    config.write_bytes(saved)
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 0 and "config.json" not in out, out


def test_a_writer_refuses_to_drop_the_copies_and_signing_the_start_entry_records(tmp_path: Path) -> None:
    d = {"dir": tmp_path / "log", "copy": tmp_path / "cps.jsonl"}
    priv, pub = tmp_path / "sign.pem", tmp_path / "sign.pub"
    assert run("log", "keygen", str(priv), str(pub))[0] == 0
    code, out = run("log", "init", str(d["dir"]), "--key-out", str(tmp_path / "k"), "--sign-key", str(priv),
                    "--copy-checkpoints", str(d["copy"]))
    assert code == 0, out
    config = d["dir"] / "config.json"
    saved = config.read_bytes()
    seg = d["dir"] / "segment-000000.jsonl"
    before = seg.read_bytes()
    config.unlink()
    for command in (["append", str(d["dir"]), alerts(tmp_path, 1)], ["append", str(d["dir"]), alerts(tmp_path, 1),
                                                                      "--sign-key", str(priv)],
                    ["checkpoint", str(d["dir"])]):
        code, out = run("log", *command)
        assert code == 2, out
        assert out.startswith(f"{config}: missing, but the log's start entry records signing every checkpoint")
        assert f"copying every checkpoint to {d['copy']}" in out and "put config.json back" in out
    edited = json.loads(saved)
    edited["copy_checkpoints"] = []
    config.write_text(json.dumps(edited))
    code, out = run("log", "append", str(d["dir"]), alerts(tmp_path, 1))
    assert code == 2 and f"{config}: says signing every checkpoint" in out and "it was edited" in out, out
    assert seg.read_bytes() == before
    config.write_bytes(saved)
    assert run("log", "append", str(d["dir"]), alerts(tmp_path, 1))[0] == 0
    assert all(cp.signature for cp in load_checkpoints(d["copy"]))


# -- D3: short writes --------------------------------------------------------------------


def short_writes(monkeypatch: pytest.MonkeyPatch, fake: Callable[[Callable[[int, bytes], int], int, bytes], int]) -> None:
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: fake(real, fd, data))


def target_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_every_write_is_completed_when_write_writes_less(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write() may write fewer bytes than asked (a file size limit, a signal): the rest follows."""
    short_writes(monkeypatch, lambda real, fd, data: real(fd, bytes(data[:7])))
    copy = tmp_path / "cps.jsonl"
    write_private_file(tmp_path / "state.json", b"x" * 100)
    assert (tmp_path / "state.json").read_bytes() == b"x" * 100
    log, key = AuditLog.create(tmp_path / "log", dataclasses.replace(OPTS, copy_checkpoints_to=(copy,)))
    for i in range(5):
        log.append(record(i))
    log.close()
    log = AuditLog.open(tmp_path / "log", OPTS)
    log.append(record(5))
    log.close()
    monkeypatch.undo()
    report = verify_log(log_files([tmp_path / "log"]), key, anchors=read_host_state(tmp_path / "log").anchors)
    assert report.sealed and report.records == 6 and report.warnings == ()
    assert len(load_checkpoints(copy)) == report.checkpoints


def test_a_copy_on_a_full_disk_is_a_copy_error_and_the_next_checkpoint_starts_a_new_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "cps.jsonl"
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, dataclasses.replace(OPTS, copy_checkpoints_to=(copy,)))
    log.close()
    full = {"copy": False}

    def disk_full(real: Callable[[int, bytes], int], fd: int, data: bytes) -> int:
        if target_of(fd) != str(copy):
            return real(fd, data)
        if full["copy"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        full["copy"] = True
        return real(fd, bytes(data[:len(data) // 2]))

    short_writes(monkeypatch, disk_full)
    log = AuditLog.open(directory, OPTS)
    log.append(record(0))
    log.append(record(1))
    with pytest.raises(CheckpointCopyError) as err:
        log.close()
    assert err.value.exit_code == 3
    assert err.value.failures == (f"{copy}: cannot copy 2 checkpoints (the first: 6): No space left on device",)
    monkeypatch.undo()
    assert not copy.read_bytes().endswith(b"\n")  # the torn line the full disk left
    log = AuditLog.open(directory, OPTS)
    log.append(record(2))
    log.close()
    lines = copy.read_bytes().split(b"\n")
    assert [len(json.loads(ln)["root"]) for ln in lines[2:-1]] == [64]  # a whole line of its own
    code, out = run("log", "verify", str(directory), "--key-file", _key_file(tmp_path, key))
    assert code == 0, out
    assert f"warning: {copy}:2: a checkpoint cut short (a write that failed, e.g. on a full disk); the " \
           f"checkpoint copy is incomplete and this line was not used" in out
    # A line that is no checkpoint and no torn one is still tampering.
    copy.write_bytes(copy.read_bytes().replace(lines[1], b"garbage"))
    code, out = run("log", "verify", str(directory), "--key-file", _key_file(tmp_path, key))
    assert code == 5 and f"{copy}:2: not a checkpoint: the checkpoint copy was modified" in out, out


def _key_file(tmp_path: Path, key: bytes) -> str:
    path = tmp_path / "initial.key"
    path.write_text(key.hex() + "\n")
    return str(path)


# -- D4: FIFOs in the log directory -----------------------------------------------------


@pytest.fixture()
def plain_log(tmp_path: Path) -> dict[str, Path]:
    d = {"dir": tmp_path / "log", "key": tmp_path / "k"}
    assert run("log", "init", str(d["dir"]), "--key-out", str(d["key"]))[0] == 0
    assert run("log", "append", str(d["dir"]), alerts(tmp_path, 3))[0] == 0
    return d


@pytest.mark.parametrize("name", ["segment-000001.jsonl", "segment-000000.jsonl", "config.json", "state.json"])
def test_a_fifo_in_the_log_directory_is_refused_not_waited_on(plain_log: dict[str, Path], tmp_path: Path,
                                                              name: str) -> None:
    d = plain_log
    fifo = d["dir"] / name
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    p = secpolicy("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert p.returncode == 2 and f"{fifo}: " in p.stderr and "is not a regular file" in p.stderr, p.stderr
    if name != "segment-000001.jsonl":  # a segment the writer is not at is not its to read
        p = secpolicy("log", "append", str(d["dir"]), alerts(tmp_path, 1))
        assert p.returncode == 2 and f"{fifo}: " in p.stderr and "is not a regular file" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_a_fifo_given_as_checkpoint_file_is_refused(plain_log: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "cps.fifo"
    os.mkfifo(fifo)
    p = secpolicy("log", "verify", str(plain_log["dir"]), "--checkpoint", str(fifo))
    assert (p.returncode, p.stderr.strip()) == (2, f"{fifo}: checkpoint file is not a regular file")
    p = secpolicy("log", "verify", str(fifo), "--key-file", str(plain_log["key"]))
    assert p.returncode == 2 and f"{fifo}: neither a regular file nor a log directory" in p.stderr, p.stderr


# -- D5: bytes after a seal --------------------------------------------------------------


def test_bytes_appended_after_a_seal_are_named_when_the_writer_cuts_them(plain_log: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    d = plain_log
    with open(d["dir"] / "segment-000000.jsonl", "ab") as f:
        f.write(b'{"body":{"evil":"gone')
    assert run("log", "append", str(d["dir"]), alerts(tmp_path, 1))[0] == 0
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 0, out
    assert "the writer cut a partial line of 21 bytes (sha256 " in out
    assert "bytes were appended to the sealed log by something other than its writer" in out


# -- D6: writers take turns --------------------------------------------------------------


def test_a_second_writer_waits_for_the_first_and_then_writes(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    first, key = AuditLog.create(directory, OPTS)
    waiting = threading.Event()
    outcome: list[object] = []

    def second() -> None:
        try:
            log = AuditLog.open(directory, dataclasses.replace(OPTS, on_lock_wait=waiting.set))
            log.append(record(1))
            log.close()
            outcome.append(log.size)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        assert waiting.wait(30), outcome  # it found the lock held and waits ...
        assert outcome == []
        first.append(record(0))
    finally:
        first.close()  # ... until the first writer is done
        thread.join(60)
    assert outcome and isinstance(outcome[0], int), outcome
    report = verify_log(log_files([directory]), key)
    assert report.records == 2 and report.sealed


def test_a_writer_that_waited_long_enough_gives_up_clearly(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    first, _ = AuditLog.create(directory, OPTS)
    try:
        with pytest.raises(RuntimeFailure, match=r"in use by another writer \(waited 0.2 s; a `monitor` holds"):
            AuditLog.open(directory, dataclasses.replace(OPTS, lock_wait=0.2))
    finally:
        first.close()


APPENDER = r"""
import sys
from secpolicy.auditlog.log import AuditLog
from secpolicy.auditlog.records import AuditRecord, from_alert

for i in range(int(sys.argv[2])):
    log = AuditLog.open(sys.argv[1])
    log.append(from_alert({"rule_id": sys.argv[3], "severity": "high", "title": str(i),
                           "ts": "2026-01-01T00:00:01Z"}))
    log.close()
"""


def test_two_processes_appending_at_once_lose_nothing(plain_log: dict[str, Path]) -> None:
    d = plain_log
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(d["dir"]), "100", name], env=env,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    report = verify_log(log_files([d["dir"]]), bytes.fromhex(d["key"].read_text()))
    assert report.records == 3 + 200 and report.sealed


# -- D7: a whole directory put back ------------------------------------------------------


WHOLE_DIRECTORY = "the whole directory put back as an older complete copy of itself would verify as intact"


def test_verify_says_a_whole_directory_put_back_is_not_seen_without_copies(plain_log: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    d = plain_log
    rolled_back(d, tmp_path)
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 0, out  # the limit: nothing here can tell
    assert "length checked against: the writer's state" in out
    assert "warning: only the log's own directory (its state.json, checkpoints.jsonl) records how long this log " \
           "was, and no checkpoint kept elsewhere" in out and WHOLE_DIRECTORY in out


def test_verify_does_not_cry_wolf_when_a_copy_kept_elsewhere_was_checked(copied: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    d = copied
    code, out = run("log", "verify", str(d["dir"]), "--key-file", str(d["key"]))
    assert code == 0 and "warning" not in out, out
    witness = tmp_path / "witness.json"
    code, out = run("log", "verify", str(d["dir"] / "segment-000000.jsonl"), "--key-file", str(d["key"]),
                    "--witness", str(witness))
    assert code == 0 and WHOLE_DIRECTORY not in out, out
