"""The judged scenario: a log written by a separate secpolicy process, attacked with plain file
operations in every listed way, then `log verify`; plus a writer killed with SIGKILL mid-stream."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from secpolicy.auditlog.canonical import canonical
from secpolicy.cli.auditlog import COMMANDS
from secpolicy.errors import SecpolicyError

REPO = Path(__file__).resolve().parent.parent.parent

WRITER = r"""
import sys, time
from pathlib import Path
from secpolicy.auditlog.log import AuditLog, LogOptions
from secpolicy.auditlog.records import failure, from_alert

directory, n, every, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
opts = LogOptions(checkpoint_every=every, checkpoint_interval=None, sync="always",
                  copy_checkpoints_to=(Path(directory).parent / "offhost.jsonl",))
if mode == "create":
    log, key = AuditLog.create(directory, opts)
    (Path(directory).parent / "initial.key").write_text(key.hex() + "\n")
else:
    log = AuditLog.open(directory, opts)
for i in range(n):
    log.append(from_alert({"rule_id": "r.test", "severity": "high", "title": f"alert {i}",
                           "ts": "2026-11-21T10:00:00.000000000Z",
                           "event": {"type": "exec", "ts": "2026-11-21T10:00:00.000000000Z", "host": "web1",
                                     "user": {"uid": 1000, "name": "alice"}}}))
    if mode == "slow":
        print(i, flush=True)
        time.sleep(0.01)
if mode != "slow":
    log.close()
"""


@click.group()
def cli() -> None:
    pass


for _command in COMMANDS:
    cli.add_command(_command)


def write_log(tmp_path: Path, n: int = 40, every: int = 10, mode: str = "create") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "log"), str(n), str(every), mode],
                          env=env, check=True, capture_output=True, text=True, timeout=60)


def verify(tmp_path: Path, *extra: str, offhost: bool = True, what: str = "log") -> tuple[int, str]:
    args = ["log", "verify", str(tmp_path / what), "--key-file", str(tmp_path / "initial.key"), *extra]
    if offhost:
        args += ["--checkpoint", str(tmp_path / "offhost.jsonl")]
    result = CliRunner().invoke(cli, args, standalone_mode=False)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.exception.render()
    assert result.exception is None, result.exception
    return 0, result.output


@pytest.fixture()
def log(tmp_path: Path) -> Path:
    write_log(tmp_path)
    assert verify(tmp_path)[0] == 0
    return tmp_path


def seg(tmp_path: Path) -> Path:
    return tmp_path / "log" / "segment-000000.jsonl"


def lines(tmp_path: Path) -> list[bytes]:
    return seg(tmp_path).read_bytes().splitlines(keepends=True)


def put(tmp_path: Path, new: list[bytes]) -> None:
    seg(tmp_path).write_bytes(b"".join(new))


def test_intact(log: Path) -> None:
    code, out = verify(log)
    assert code == 0 and "40 records" in out and "sealed" in out


def test_edit_one_byte(log: Path) -> None:
    data = bytearray(seg(log).read_bytes())
    at = data.index(b"alert 17") + 6
    data[at] = ord("7") if data[at] != ord("7") else ord("8")
    seg(log).write_bytes(bytes(data))
    code, msg = verify(log)
    assert code == 5 and ":20: seq 19: MAC does not verify" in msg


def test_delete_a_record(log: Path) -> None:
    ls = lines(log)
    del ls[12]
    put(log, ls)
    code, msg = verify(log)
    assert code == 5 and ":13: seq 13: expected seq 12, found 13" in msg


def test_swap_two_records(log: Path) -> None:
    ls = lines(log)
    ls[20], ls[21] = ls[21], ls[20]
    put(log, ls)
    code, msg = verify(log)
    assert code == 5 and "seq 21: expected seq 20, found 21" in msg


def test_insert_a_forged_record(log: Path) -> None:
    ls = lines(log)
    forged = json.loads(ls[5])
    forged["body"]["details"]["title"] = "nothing to see"
    forged["mac"] = "00" * 32
    put(log, ls[:6] + [canonical(forged) + b"\n"] + ls[6:])
    code, msg = verify(log)
    assert code == 5 and ":7: seq 5: expected seq 6, found 5 again or out of order" in msg


def test_truncate_tail_after_the_last_checkpoint(log: Path) -> None:
    ls = lines(log)
    put(log, ls[:-1])  # the seal
    code, msg = verify(log)  # the writer's state on the host remembers one entry more
    assert code == 5 and "cut back" in msg and "covers 47 entries but the log holds only 46" in msg
    code, msg = verify(log, what="log/segment-000000.jsonl", offhost=False)  # the segment alone
    assert code == 5 and "without a seal" in msg
    put(log, ls[:-3])
    code, msg = verify(log)
    assert code == 5 and "covers" in msg and "truncated from the end" in msg


def test_truncate_tail_before_a_checkpoint(log: Path) -> None:
    subprocess.run(["truncate", "-s", str(sum(map(len, lines(log)[:25]))), str(seg(log))], check=True)
    code, msg = verify(log)
    assert code == 5 and "covers 33 entries but the log holds only 25" in msg
    code, msg = verify(log, what="log/segment-000000.jsonl", offhost=False)  # without any copy: no seal
    assert code == 5 and "ends at seq 24 without a seal" in msg


def test_replace_with_a_rechained_log_without_the_key(log: Path) -> None:
    ls = [json.loads(x) for x in lines(log)]
    fake_key = os.urandom(32)
    prev = "0" * 64
    out = []
    for e in ls:
        if e["kind"] == "record":
            e["body"]["details"]["title"] = "benign"
        e["prev"] = prev
        e.pop("mac")
        e["mac"] = hmac.new(fake_key, canonical(e), hashlib.sha256).hexdigest()
        line = canonical(e)
        prev = hashlib.sha256(line).hexdigest()
        out.append(line + b"\n")
    put(log, out)
    code, msg = verify(log, offhost=False)
    assert code == 5 and ":1: seq 0: MAC does not verify" in msg
    # Without the key, the off-host checkpoint still catches it.
    result = CliRunner().invoke(cli, ["log", "verify", str(log / "log"), "--checkpoint",
                                      str(log / "offhost.jsonl")], standalone_mode=False)
    assert isinstance(result.exception, SecpolicyError) and result.exception.exit_code == 5
    assert "do not match the checkpoint" in result.exception.render()


def test_delete_the_whole_log(log: Path) -> None:
    seg(log).unlink()
    code, msg = verify(log)
    assert code == 2 and "no segment" in msg  # documented: only the off-host copy shows it existed


def test_writer_killed_midstream_loses_nothing_it_wrote(tmp_path: Path) -> None:
    write_log(tmp_path, n=3)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "log"), "100000", "25", "slow"],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    written = -1
    deadline = time.monotonic() + 30
    while written < 60 and time.monotonic() < deadline:
        written = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, msg = verify(tmp_path)
    assert code == 5 and "without a seal" in msg  # a crash looks like truncation until restart
    write_log(tmp_path, n=1, mode="open")  # the restart records the crash
    code, out = verify(tmp_path)
    assert code == 0, out
    assert "restart after an unclean shutdown" in out
    records = int(out.split(" records")[0].split("(")[-1])
    assert records >= 3 + (written + 1) + 1  # every append that returned is there
