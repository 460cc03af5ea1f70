"""A red-team pass on the tamper-evident audit log: manipulations `log verify` used to accept
(segment files renamed to hide the checkpoint copies the start entry names, or put in another
name order), hostile values that crashed the writer or the verifier, and a checkpoint copy
shared by two logs that made both fail. MACs are recomputed with openssl, not with our code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from auditlog_cli import run

from secpolicy.auditlog.canonical import canonical, parse_canonical
from secpolicy.auditlog.log import AuditLog, LogOptions
from secpolicy.auditlog.records import AuditRecord, Outcome
from secpolicy.errors import InputError, IntegrityError, RuntimeFailure

_EVOLVE = b"secpolicy.auditlog.evolve.v1\x00"


def record(tag: str, **details: object) -> dict:
    return AuditRecord("alert", "monitor", Outcome.SUCCESS, "high", {"msg": tag, **details},
                       timestamp="2026-11-21T10:00:00+00:00", hostname="h", record_id=tag).to_dict()


def write_records(tmp_path: Path, name: str, *records: dict) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def two_runs(tmp_path: Path) -> dict[str, Path]:
    """A log set up with an off-host checkpoint copy; the directory as it was after the first
    of two runs is kept (what an attacker saved, to put back later)."""
    log, key, copy = tmp_path / "log", tmp_path / "initial.key", tmp_path / "offhost" / "cps.jsonl"
    copy.parent.mkdir()
    assert run("log", "init", str(log), "--key-out", str(key), "--copy-checkpoints", str(copy))[0] == 0
    assert run("log", "append", str(log), str(write_records(tmp_path, "r1.jsonl", record("run1"))))[0] == 0
    shutil.copytree(log, tmp_path / "saved", symlinks=True)
    assert run("log", "append", str(log), str(write_records(tmp_path, "r2.jsonl", record("run2"))))[0] == 0
    assert run("log", "verify", str(log), "--key-file", str(key))[0] == 0
    return {"log": log, "key": key, "copy": copy, "saved": tmp_path / "saved"}


def test_a_renamed_first_segment_cannot_hide_the_copies_the_start_entry_names(two_runs: dict[str, Path]) -> None:
    log, key, saved = two_runs["log"], two_runs["key"], two_runs["saved"]
    shutil.rmtree(log)
    shutil.copytree(saved, log, symlinks=True)
    # The older directory put back is caught by the off-host copy the start entry names ...
    code, out = run("log", "verify", str(log), "--key-file", str(key))
    assert code == 5 and "cut back" in out and str(two_runs["copy"]) in out
    # ... and still is with the first segment renamed (glob-matching, read in order of its
    # entries) so that the start entry is not found where it is looked for, and config.json
    # edited to name no copy: this verified as intact.
    (log / "segment-000000.jsonl").rename(log / "segment-0.jsonl")
    (log / "config.json").write_text('{"copy_checkpoints":[],"signing_key":null,"signing_public_key":null,'
                                     '"version":1}')
    code, out = run("log", "verify", str(log), "--key-file", str(key))
    assert code == 5, out
    assert "segment-0.jsonl:1: seq 0" in out and "segment-000000.jsonl" in out and "renamed" in out


def test_segments_of_a_rotated_log_put_in_another_name_order_are_tampering(tmp_path: Path) -> None:
    opts = LogOptions(max_segment_bytes=1024, checkpoint_interval=None)
    log, key = AuditLog.create(tmp_path / "log", opts)
    for i in range(12):
        log.append(record(f"r{i}", pad="x" * 300))
    log.close()
    seg = sorted((tmp_path / "log").glob("segment-*.jsonl"))
    assert len(seg) >= 3
    (tmp_path / "initial.key").write_text(key.hex())
    assert run("log", "verify", str(tmp_path / "log"), "--key-file", str(tmp_path / "initial.key"))[0] == 0
    # Swap the names of the last two segments: read in order of their entries, the log was
    # intact to `verify`, while `cat segment-*` shows it out of order and the writer refuses it.
    tmp = seg[-2].with_name("swap")
    seg[-2].rename(tmp)
    seg[-1].rename(seg[-2])
    tmp.rename(seg[-1])
    code, out = run("log", "verify", str(tmp_path / "log"), "--key-file", str(tmp_path / "initial.key"))
    assert code == 5, out
    assert f"{seg[-1].name}:1: seq " in out and f"names {seg[-2].name}" in out and "renamed" in out
    with pytest.raises(IntegrityError):
        AuditLog.open(tmp_path / "log", opts)


def test_a_mac_that_is_not_hex_is_tampering_not_a_crash(two_runs: dict[str, Path]) -> None:
    seg = two_runs["log"] / "segment-000000.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[3] = re.sub(rb'"mac":"[0-9a-f]{64}"', '"mac":"\u00e9"'.encode(), lines[3])
    seg.write_bytes(b"".join(lines))
    code, out = run("log", "verify", str(two_runs["log"]), "--key-file", str(two_runs["key"]))
    assert code == 5 and "segment-000000.jsonl:4: seq 3: the MAC is not 64 lower-case hex digits" in out


def _openssl_mac(key: bytes, data: bytes) -> str:
    out = subprocess.run(["openssl", "mac", "-digest", "SHA256", "-macopt", f"hexkey:{key.hex()}", "HMAC"],
                         input=data, capture_output=True, check=True).stdout
    return out.decode().strip().lower()


def _openssl_evolve(key: bytes) -> bytes:
    return subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=_EVOLVE + key,
                          capture_output=True, check=True).stdout


def test_an_alert_with_bytes_that_are_not_utf8_is_written_as_escapes_the_mac_covers(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to recompute the MAC independently")
    log, keyfile = tmp_path / "log", tmp_path / "initial.key"
    assert run("log", "init", str(log), "--key-out", str(keyfile))[0] == 0
    # JSON input may carry lone surrogates (what surrogateescape makes of bytes that are not
    # UTF-8). `log append` crashed on them (UnicodeEncodeError, an internal error).
    alert = ('{"rule_id":"r1","severity":"high","title":"t \\udcff x","ts":"2026-11-21T10:00:00Z",'
             '"event":{"type":"exec","ts":"2026-11-21T10:00:00Z","host":"h","user":{"uid":1000,"name":"al\\udcffice"}}}')
    (tmp_path / "a.jsonl").write_text(alert + "\n")
    code, out = run("log", "append", str(log), str(tmp_path / "a.jsonl"))
    assert code == 0, out
    assert run("log", "verify", str(log), "--key-file", str(keyfile))[0] == 0
    lines = (log / "segment-000000.jsonl").read_bytes().splitlines()
    [line] = [ln for ln in lines if b'"kind":"record"' in ln]
    line.decode("utf-8")  # the file stays UTF-8: the surrogate is an escape
    assert b'"user":"al\\udcffice"' in line and b'"title":"t \\udcff x"' in line
    entry = json.loads(line)
    assert entry["body"]["source"]["user"] == "al\udcffice"  # a plain JSON reader reads it back
    # The MAC covers those bytes as written: recomputed with openssl from the initial key,
    # evolved once per checkpoint before this entry, over the line without its "mac" member.
    key = bytes.fromhex(keyfile.read_text().strip())
    for _ in range(entry["epoch"]):
        key = _openssl_evolve(key)
    mac = entry["mac"]
    assert _openssl_mac(key, line.replace(f'"mac":"{mac}",'.encode(), b"")) == mac
    # Another byte, or the same escape in upper case, is an edit.
    seg = log / "segment-000000.jsonl"
    original = seg.read_bytes()
    for edited in (b'"user":"al\\udcfeice"', b'"user":"al\\uDCFFice"'):
        seg.write_bytes(original.replace(b'"user":"al\\udcffice"', edited))
        code, out = run("log", "verify", str(log), "--key-file", str(keyfile))
        assert code == 5 and f":{lines.index(line) + 1}: seq " in out, out


def test_a_surrogate_pair_held_as_two_characters_is_refused_not_a_crash() -> None:
    with pytest.raises(InputError, match="surrogate pair"):
        canonical({"a": "\ud83d\ude00"})
    assert parse_canonical(canonical({"a": "\udcff\ud800"})) == ({"a": "\udcff\ud800"}, True)


def test_an_integer_too_long_to_convert_in_a_checkpoint_file_is_unusable_input(two_runs: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    cp = tmp_path / "cp.jsonl"
    cp.write_text('{"log_id":"x","tree_size":1' + "0" * 5000 + ',"root":"' + "a" * 64 + '","ts":"t"}\n')
    code, out = run("log", "verify", str(two_runs["log"]), "--key-file", str(two_runs["key"]),
                    "--checkpoint", str(cp))
    assert code == 2 and "cp.jsonl:1" in out


def test_a_config_json_nested_too_deeply_is_named_not_a_crash(two_runs: dict[str, Path]) -> None:
    (two_runs["log"] / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out = run("log", "verify", str(two_runs["log"]), "--key-file", str(two_runs["key"]))
    assert code == 0 and "config.json: unreadable audit log configuration: nested too deeply" in out
    code, out = run("log", "append", str(two_runs["log"]), str(two_runs["log"].parent / "r1.jsonl"))
    assert code == 2 and "config.json" in out


def test_a_state_json_of_the_wrong_types_is_a_runtime_failure_not_a_crash(two_runs: dict[str, Path]) -> None:
    state_path = two_runs["log"] / "state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "offset": "12"}))
    with pytest.raises(RuntimeFailure, match="cannot resume audit log"):
        AuditLog.open(two_runs["log"])


def test_a_checkpoint_copy_shared_by_two_logs_verifies_both_and_still_catches_a_cut(tmp_path: Path) -> None:
    shared = tmp_path / "shared.jsonl"
    for name in ("a", "b"):
        assert run("log", "init", str(tmp_path / name), "--key-out", str(tmp_path / f"{name}.key"),
                   "--copy-checkpoints", str(shared))[0] == 0
    r = write_records(tmp_path, "r.jsonl", record("x"))
    assert run("log", "append", str(tmp_path / "a"), str(r))[0] == 0
    shutil.copytree(tmp_path / "a", tmp_path / "a.saved", symlinks=True)
    for _ in range(2):
        assert run("log", "append", str(tmp_path / "b"), str(r))[0] == 0
    assert run("log", "append", str(tmp_path / "a"), str(r))[0] == 0
    for name in ("a", "b"):
        code, out = run("log", "verify", str(tmp_path / name), "--key-file", str(tmp_path / f"{name}.key"))
        assert code == 0, out
        assert "checkpoints of other logs" in out and "were left out: the copy is shared" in out
    # The copy still holds log a's own checkpoints: a's older directory put back is caught.
    shutil.rmtree(tmp_path / "a")
    shutil.copytree(tmp_path / "a.saved", tmp_path / "a", symlinks=True)
    code, out = run("log", "verify", str(tmp_path / "a"), "--key-file", str(tmp_path / "a.key"))
    assert code == 5 and "cut back" in out and str(shared) in out
