"""The tamper-evident log: every attack the design can catch is caught, naming the first bad
entry; the ones it cannot catch (holder of the current key, after the last anchor) are shown."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
import os
import stat
from pathlib import Path

import pytest

from secpolicy.auditlog.canonical import canonical
from secpolicy.auditlog.checkpoint import (
    Checkpoint,
    evolve_key,
    generate_signing_key,
    load_checkpoints,
    load_private_key,
    load_public_key,
)
from secpolicy.auditlog.log import AuditLog, LogOptions, line_hash
from secpolicy.auditlog.records import AuditRecord, Outcome, Source
from secpolicy.auditlog.verify import (
    TamperError,
    VerifyReport,
    log_files,
    read_host_state,
    verify_log,
)
from secpolicy.errors import InputError, IntegrityError, RuntimeFailure

OPTS = LogOptions(checkpoint_every=10, checkpoint_interval=None, sync="checkpoint")


def record(i: int) -> AuditRecord:
    return AuditRecord(
        event_type="alert",
        component="monitor",
        outcome=Outcome.SUCCESS,
        severity="high",
        source=Source(user="alice", uid=1000, pid=4000 + i, session="7", source_ip="192.0.2.1"),
        details={"rule_id": "r.sudo", "n": i, "message": f"event number {i}"},
        timestamp=f"2026-11-21T05:30:{i % 60:02d}.000000+00:00",
        hostname="web1",
        record_id=f"rec-{i:04d}",
    )


def make_log(tmp_path: Path, n: int = 25, options: LogOptions = OPTS) -> tuple[Path, bytes]:
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, options)
    for i in range(n):
        log.append(record(i))
    log.close()
    return directory, key


def lines_of(directory: Path) -> list[bytes]:
    return (directory / "segment-000000.jsonl").read_bytes().splitlines(keepends=True)


def write_lines(directory: Path, lines: list[bytes]) -> None:
    (directory / "segment-000000.jsonl").write_bytes(b"".join(lines))


def verify(directory: Path, key: bytes | None, **kw: object) -> VerifyReport:
    """As `log verify DIR` does: against what the host holds beside the log too."""
    anchors = read_host_state(directory).anchors
    return verify_log(log_files([directory]), key, anchors=anchors, **kw)  # type: ignore[arg-type]


def cps(directory: Path) -> list[Checkpoint]:
    return load_checkpoints(directory / "checkpoints.jsonl")


def entry(line: bytes) -> dict:
    return json.loads(line)


def reseal(entry_dict: dict, key: bytes) -> bytes:
    body = {k: v for k, v in entry_dict.items() if k != "mac"}
    body["mac"] = hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
    return canonical(body) + b"\n"


# -- an intact log -------------------------------------------------------------------------


def test_intact_log_verifies_with_counts(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    report = verify(directory, key, checkpoints=cps(directory))
    # start + 25 records + checkpoints after 10 and 20 records + final checkpoint + seal
    assert (report.entries, report.records, report.checkpoints, report.sealed) == (30, 25, 3, True)
    assert report.epochs == 4 and report.macs_checked and report.warnings == ()
    assert [c.tree_size for c in cps(directory)] == [11, 22, 28]


def test_files_are_private(tmp_path: Path) -> None:
    directory, _ = make_log(tmp_path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for f in directory.iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f.name


def test_lines_are_canonical_and_chained(tmp_path: Path) -> None:
    directory, _ = make_log(tmp_path, n=3)
    lines = [ln.rstrip(b"\n") for ln in lines_of(directory)]
    for a, b in itertools.pairwise(lines):
        assert canonical(json.loads(a)) == a
        assert json.loads(b)["prev"] == line_hash(a)
    assert [entry(ln)["seq"] for ln in lines] == list(range(len(lines)))


def test_state_holds_only_the_current_epoch_key(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    state = json.loads((directory / "state.json").read_text())
    current = key
    for _ in range(3):
        current = evolve_key(current)
    assert state["key"] == current.hex() and state["epoch"] == 3
    assert key.hex() not in (directory / "state.json").read_text()


# -- attacks that verify catches ---------------------------------------------------------


def test_edited_byte_is_caught_at_that_record(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    lines[5] = lines[5].replace(b"event number 4", b"event number 5")
    write_lines(directory, lines)
    with pytest.raises(TamperError) as err:
        verify(directory, key)
    assert (err.value.line, err.value.seq) == (6, 5)
    assert "MAC does not verify" in err.value.problem
    assert err.value.exit_code == 5


def test_edited_byte_without_key_is_caught_by_hash_link_and_checkpoint(tmp_path: Path) -> None:
    directory, _ = make_log(tmp_path)
    lines = lines_of(directory)
    lines[5] = lines[5].replace(b"event number 4", b"event number 5")
    write_lines(directory, lines)
    with pytest.raises(TamperError) as err:
        verify(directory, None, checkpoints=cps(directory))
    assert err.value.seq == 6 and "seq 5" in err.value.problem


def test_whitespace_edit_is_caught_as_non_canonical(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    lines[3] = lines[3].replace(b'"seq":3', b'"seq": 3')
    write_lines(directory, lines)
    with pytest.raises(TamperError, match="canonical") as err:
        verify(directory, key)
    assert err.value.seq == 3


def test_deleted_record_is_caught(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    del lines[7]
    write_lines(directory, lines)
    with pytest.raises(TamperError, match="expected seq 7, found 8: 1 entries deleted") as err:
        verify(directory, key)
    assert err.value.line == 8


def test_swapped_records_are_caught(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    lines[4], lines[5] = lines[5], lines[4]
    write_lines(directory, lines)
    with pytest.raises(TamperError, match="expected seq 4, found 5") as err:
        verify(directory, key)
    assert err.value.line == 5


def test_inserted_forged_record_is_caught_even_renumbered(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    # The forger renumbers every later entry and rebuilds the hash chain, but has no key.
    forged_key = b"\x01" * 32
    new = lines[:3]
    forged = entry(lines[3])
    forged["body"]["details"]["message"] = "nothing happened"
    forged["prev"] = line_hash(new[-1].rstrip(b"\n"))
    new.append(reseal(forged, forged_key))
    for ln in lines[3:]:
        e = entry(ln)
        e["seq"] += 1
        e["prev"] = line_hash(new[-1].rstrip(b"\n"))
        new.append(reseal(e, forged_key))
    write_lines(directory, new)
    with pytest.raises(TamperError, match="MAC does not verify") as err:
        verify(directory, key)
    assert (err.value.line, err.value.seq) == (4, 3)
    # The off-host checkpoints catch it without the key, too.
    with pytest.raises(TamperError, match="do not match the checkpoint"):
        verify(directory, None, checkpoints=cps(directory))


def test_truncation_after_last_checkpoint_is_caught_by_missing_seal(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    write_lines(directory, lines[:-1])  # only the seal goes
    # The segment alone (copied away from the writer's state): the missing seal shows it.
    with pytest.raises(TamperError, match="without a seal") as err:
        verify_log(log_files([directory]), key)
    assert err.value.seq == 28
    write_lines(directory, lines[:25])  # records after the second checkpoint go too
    with pytest.raises(TamperError, match="ends at seq 24 without a seal"):
        verify_log(log_files([directory]), key)
    with pytest.raises(TamperError, match="cut back: .* covers 28 entries but the log holds only 25.* first missing "
                                          "entry is seq 25 .*state.json.* covers 30.* first missing checkpoint is "
                                          "seq 28"):
        verify(directory, key)


def test_truncation_before_a_checkpoint_is_caught_by_the_offhost_copy(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    lines = lines_of(directory)
    write_lines(directory, lines[:15])
    with pytest.raises(TamperError, match="covers 22 entries but the log holds only 15"):
        verify_log(log_files([directory]), key, checkpoints=cps(directory), allow_open=True)


def test_truncation_cannot_be_resealed_in_an_old_epoch_with_the_current_key(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    stolen = bytes.fromhex(json.loads((directory / "state.json").read_text())["key"])
    lines = lines_of(directory)[:15]  # cut back into epoch 1
    seal = {"seq": 15, "epoch": 1, "ts": "2026-11-21T06:00:00+00:00", "kind": "seal",
            "prev": line_hash(lines[-1].rstrip(b"\n")), "body": {"reason": "close"}}
    write_lines(directory, lines + [reseal(seal, stolen)])
    with pytest.raises(TamperError, match="MAC does not verify") as err:
        verify(directory, key)
    assert err.value.seq == 15
    seal["epoch"] = 3  # claim the stolen key's epoch instead
    write_lines(directory, lines + [reseal(seal, stolen)])
    with pytest.raises(TamperError, match="epoch 3 where 1 was expected"):
        verify(directory, key)


def test_rewriting_an_old_epoch_with_the_current_key_is_caught(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    stolen = bytes.fromhex(json.loads((directory / "state.json").read_text())["key"])
    lines = lines_of(directory)
    e = entry(lines[2])
    e["body"]["details"]["message"] = "benign"
    lines[2] = reseal(e, stolen)
    write_lines(directory, lines)
    with pytest.raises(TamperError, match="MAC does not verify") as err:
        verify(directory, key)
    assert err.value.seq == 2


def test_replaced_log_without_the_key_is_caught(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    other = tmp_path / "other"
    log, _ = AuditLog.create(other, OPTS)
    for i in range(25):
        log.append(record(i))
    log.close()
    for name in ("segment-000000.jsonl",):
        (directory / name).write_bytes((other / name).read_bytes())
    with pytest.raises(TamperError, match="wrong key, or the whole log was replaced") as err:
        verify(directory, key)
    assert err.value.seq == 0
    with pytest.raises(TamperError, match="belongs to log"):
        verify(directory, None, checkpoints=cps(tmp_path / "log"))


def test_partial_last_line_is_caught(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    data = (directory / "segment-000000.jsonl").read_bytes()
    (directory / "segment-000000.jsonl").write_bytes(data[:-40])
    with pytest.raises(TamperError, match="partial last line"):
        verify(directory, key)


def test_empty_log_is_caught(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path)
    (directory / "segment-000000.jsonl").write_bytes(b"")
    with pytest.raises(TamperError, match="empty"):
        verify(directory, key)
    with pytest.raises(TamperError, match="every entry was deleted"):
        verify_log([directory / "segment-000000.jsonl"], key, checkpoints=cps(directory), allow_open=True)


def test_wrong_key_is_an_integrity_failure(tmp_path: Path) -> None:
    directory, _ = make_log(tmp_path)
    with pytest.raises(TamperError, match="key id"):
        verify(directory, b"\x02" * 32)


# -- what the design cannot catch ----------------------------------------------------------


def test_limit_current_key_holder_can_rewrite_after_the_last_checkpoint(tmp_path: Path) -> None:
    """Documented limit: with the key on disk, entries of the current epoch can be rewritten
    (here: one dropped and the rest re-chained) until a later checkpoint is anchored off-host."""
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, OPTS)
    for i in range(15):
        log.append(record(i))
    log.abandon()  # still running, as far as an attacker is concerned
    stolen = bytes.fromhex(json.loads((directory / "state.json").read_text())["key"])
    lines = lines_of(directory)
    kept = lines[:13]  # drop seq 13, inside the current epoch
    for ln in lines[14:]:
        e = entry(ln)
        e["seq"] -= 1
        e["prev"] = line_hash(kept[-1].rstrip(b"\n"))
        kept.append(reseal(e, stolen))
    write_lines(directory, kept)
    report = verify(directory, key, checkpoints=cps(directory), allow_open=True)
    assert report.entries == 16 and not report.sealed
    assert any("can be cut undetected" in w for w in report.warnings)


# -- writer recovery -----------------------------------------------------------------------


def test_crash_is_told_apart_from_truncation(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, OPTS)
    for i in range(5):
        log.append(record(i))
    log.abandon()
    with pytest.raises(TamperError, match="without a seal"):
        verify(directory, key)
    log = AuditLog.open(directory, OPTS)
    log.append(record(99))
    log.close()
    report = verify(directory, key, checkpoints=cps(directory))
    assert report.crashes == (6,) and report.sealed and report.records == 6


def test_restart_after_clean_shutdown_is_not_a_crash(tmp_path: Path) -> None:
    directory, key = make_log(tmp_path, n=3)
    log = AuditLog.open(directory, OPTS)
    log.append(record(3))
    log.close()
    report = verify(directory, key, checkpoints=cps(directory))
    assert report.crashes == () and report.records == 4


def test_crash_mid_write_is_repaired_and_reported(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, OPTS)
    for i in range(3):
        log.append(record(i))
    log.abandon()
    with open(directory / "segment-000000.jsonl", "ab") as f:
        f.write(b'{"body":{"record_id"')
    log = AuditLog.open(directory, OPTS)
    log.close()
    report = verify(directory, key)
    assert any("partial line of 20 bytes" in w for w in report.warnings)


def test_entries_written_after_the_saved_state_are_folded_in(tmp_path: Path) -> None:
    """State is saved at checkpoints; a crash between saves loses no entry."""
    directory = tmp_path / "log"
    log, key = AuditLog.create(directory, OPTS)
    for i in range(13):  # one checkpoint after 10, then three more records
        log.append(record(i))
    log.abandon()
    log = AuditLog.open(directory, OPTS)
    for i in range(10):
        log.append(record(100 + i))
    log.close()
    report = verify(directory, key, checkpoints=cps(directory))
    assert report.records == 23


def test_writer_refuses_a_truncated_log(tmp_path: Path) -> None:
    directory, _ = make_log(tmp_path)
    lines = lines_of(directory)
    write_lines(directory, lines[:-3])
    with pytest.raises(IntegrityError, match="truncated"):
        AuditLog.open(directory, OPTS)


def test_writer_refuses_a_modified_tail(tmp_path: Path) -> None:
    directory, _ = make_log(tmp_path)
    lines = lines_of(directory)
    lines[-1] = lines[-1].replace(b'"close"', b'"clos3"')
    write_lines(directory, lines)
    with pytest.raises(IntegrityError, match="modified"):
        AuditLog.open(directory, OPTS)


def test_second_writer_is_locked_out(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log, _ = AuditLog.create(directory, OPTS)
    with pytest.raises(RuntimeFailure, match="in use"):
        AuditLog.open(directory, dataclasses.replace(OPTS, lock_wait=0))
    log.close()


# -- rotation and signatures -------------------------------------------------------------


def rotated(tmp_path: Path) -> tuple[Path, bytes]:
    return make_log(tmp_path, n=60, options=LogOptions(
        checkpoint_every=10, checkpoint_interval=None, sync="checkpoint", max_segment_bytes=2048))


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    directory, key = rotated(tmp_path)
    files = log_files([directory])
    assert len(files) > 3
    report = verify_log(list(reversed(files)), key, checkpoints=cps(directory))
    assert report.records == 60 and report.sealed


def test_deleted_middle_segment_is_caught(tmp_path: Path) -> None:
    directory, key = rotated(tmp_path)
    files = log_files([directory])
    files[1].unlink()
    with pytest.raises(TamperError, match="entries deleted"):
        verify(directory, key)


def test_deleted_last_segment_is_caught(tmp_path: Path) -> None:
    directory, key = rotated(tmp_path)
    files = log_files([directory])
    files[-1].unlink()
    with pytest.raises(TamperError, match="continues in segment-"):
        verify(directory, key)


def test_deleted_first_segment_is_caught(tmp_path: Path) -> None:
    directory, key = rotated(tmp_path)
    log_files([directory])[0].unlink()
    with pytest.raises(TamperError, match="does not start at seq 0"):
        verify(directory, key)


def test_signed_checkpoints_verify_and_a_forged_one_does_not(tmp_path: Path) -> None:
    private_pem, public_pem = generate_signing_key()
    (tmp_path / "sign.pem").write_bytes(private_pem)
    (tmp_path / "sign.pub").write_bytes(public_pem)
    opts = LogOptions(checkpoint_every=10, checkpoint_interval=None, sync="checkpoint",
                      signing_key=load_private_key(tmp_path / "sign.pem"),
                      copy_checkpoints_to=(tmp_path / "offhost.jsonl",))
    directory, key = make_log(tmp_path, options=opts)
    pub = load_public_key(tmp_path / "sign.pub")
    offhost = load_checkpoints(tmp_path / "offhost.jsonl")
    report = verify(directory, key, checkpoints=offhost, public_key=pub)
    assert report.signatures_checked == 6  # three in the log, three off-host
    forged = Checkpoint(offhost[0].log_id, offhost[0].tree_size, "ab" * 32, offhost[0].ts,
                        offhost[0].signature, offhost[0].public_key)
    with pytest.raises(IntegrityError, match="invalid signature"):
        verify(directory, key, checkpoints=[forged], public_key=pub)


def test_a_failed_checkpoint_copy_is_reported_at_close_after_the_seal(tmp_path: Path) -> None:
    """A copy target `log init` set up turns into a directory: every checkpoint is still
    written, the log is sealed, and close names the copy once with how many it missed."""
    from secpolicy.auditlog.log import CheckpointCopyError

    copy = tmp_path / "copy.jsonl"
    directory, key = make_log(tmp_path, n=1, options=dataclasses.replace(OPTS, copy_checkpoints_to=(copy,)))
    copy.unlink()
    copy.mkdir()
    log = AuditLog.open(directory, OPTS)
    for i in range(25):
        log.append(record(i))
    with pytest.raises(CheckpointCopyError) as err:
        log.close()
    assert err.value.failures == (f"{copy}: cannot copy 3 checkpoints (the first: 15): Is a directory",)
    report = verify_log(log_files([directory]), key)
    assert report.sealed and report.checkpoints == 4
    assert len(load_checkpoints(directory / "checkpoints.jsonl")) == 4
    with pytest.raises(InputError, match="cannot append checkpoints here: Is a directory"):
        AuditLog.open(directory, dataclasses.replace(OPTS, copy_checkpoints_to=(copy,)))
