"""Hostile audit logs through `secpolicy replay` end to end: every count taken from the input is
bounded, each unreadable line is one bad line with its file:line (never the end of the run,
never silent), the event store takes what is read, and rotated logs in glob order (newest
first) are read in the order of their content."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from click.testing import CliRunner

from secpolicy.cli.events import replay_cmd
from secpolicy.errors import SecpolicyError

REPO = Path(__file__).resolve().parents[2]
PCI_EVENTS = REPO / "policies" / "pci-dss" / "events.yaml"
WORKLOAD = REPO / "tests" / "fixtures" / "events" / "workload-debian12.log"


def syscall(stamp: str, nr: int = 59, pid: str = "4321", exe: str = "/usr/bin/sudo") -> str:
    return (
        f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall={nr} success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=1 "
        f"ppid=1 pid={pid} auid=1000 uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=7 "
        f'comm="sudo" exe="{exe}" key="exec"'
    )


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(replay_cmd, args)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.stdout, result.exception.render()
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_each_hostile_line_is_one_counted_bad_line_and_the_run_finishes(tmp_path: Path) -> None:
    lines = [
        # 1-2: argc claims 2^31 arguments (two are logged): the list is as long as what is there.
        syscall("1700000000.000:1"),
        'type=EXECVE msg=audit(1700000000.000:1): argc=2147483647 a0="sudo" a1="id"',
        # 3-4: an alerting event (sudo by a logged-in user) with bytes that are not UTF-8.
        syscall("1700000001.000:2"),
        'type=EXECVE msg=audit(1700000001.000:2): argc=2 a0="sudo" a1="\xff\xfeid"',
        # 5-6: beyond time_t, beyond the year 9999.
        syscall("9223372036854775808.000:3"),
        syscall("253402300800.000:4"),
        # 7: a 7-digit milliseconds field.
        syscall("1700000002.1234567:5"),
        # 8: a pid beyond SQLite's integer range.
        syscall("1700000003.000:6", pid="99999999999999999999"),
        # 9: the last line, cut mid-body (no newline).
        syscall("1700000004.000:7")[:90],
    ]
    log = tmp_path / "audit.log"
    log.write_bytes("\n".join(lines).encode("latin-1"))
    out, db = tmp_path / "alerts.jsonl", tmp_path / "events.db"
    started = time.process_time()
    code, stdout, stderr = run([str(log), "--policy", str(PCI_EVENTS), "--summary", "-o", str(out), "--store", str(db)])
    assert time.process_time() - started < 30  # a hang would not get here; not a speed test
    assert code == 0, stderr
    assert "Bad input lines: 6" in stdout
    found = [ln.removeprefix(f"secpolicy: bad input line {log}:") for ln in stderr.splitlines() if "bad input line" in ln]
    reasons = sorted(found, key=lambda r: int(r.split(":", 1)[0]))
    assert [r.split(":", 1)[0] for r in reasons] == ["4", "5", "6", "7", "8", "9"]
    assert "invalid UTF-8" in reasons[0] and "read" in reasons[0]
    assert "beyond the year 9999" in reasons[1] and "beyond the year 9999" in reasons[2]
    assert "milliseconds" in reasons[3]
    assert "pid=99999999999999999999" in reasons[4] and "left out" in reasons[4]
    assert "no newline at end of file" in reasons[5]

    alerts = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    sudo = {a["event"]["source"]["records"][0]: a["event"]["proc"] for a in alerts
            if a["rule_id"] == "pci-10.2.1.2-privileged-program"}
    assert sorted(sudo) == ["1700000000.000:1", "1700000001.000:2", "1700000003.000:6"]
    assert sudo["1700000000.000:1"]["args"] == ["sudo", "id"]
    assert sudo["1700000001.000:2"]["args"] == ["sudo", "\\xff\\xfeid"]
    assert "pid" not in sudo["1700000003.000:6"]
    with sqlite3.connect(db) as con:
        pids = sorted(r[0] or 0 for r in con.execute("SELECT pid FROM events"))
        assert len(pids) == 4  # lines 1, 3, 8 (without its pid) and 9
        assert pids == [0, 0, 4321, 4321]  # line 8 without its pid, line 9 cut before it
    code, _, _ = run([str(log), "--policy", str(PCI_EVENTS), "-o", str(out), "--strict"])
    assert code == 2


def test_rotated_logs_given_newest_first_are_read_oldest_first(tmp_path: Path) -> None:
    lines = [ln + b"\n" for ln in WORKLOAD.read_bytes().split(b"\n")[:-1]]  # (0x1D is no line end here)
    # Rotate in the middle of an audit event: its records are split across the two files.
    cut = next(i for i in range(len(lines) // 2, len(lines)) if b"type=SYSCALL" in lines[i]) + 1
    (tmp_path / "audit.log.1").write_bytes(b"".join(lines[:cut]))
    (tmp_path / "audit.log").write_bytes(b"".join(lines[cut:]))
    whole = tmp_path / "whole.jsonl"
    code, _, err = run([str(WORKLOAD), "--policy", str(PCI_EVENTS), "-o", str(whole)])
    assert code == 0, err
    rotated = tmp_path / "rotated.jsonl"
    newest_first = sorted(tmp_path.glob("audit.log*"))  # audit.log, audit.log.1: what a shell glob gives
    code, stdout, err = run([*map(str, newest_first), "--policy", str(PCI_EVENTS), "-o", str(rotated), "--summary"])
    assert code == 0, err
    assert rotated.read_text() == whole.read_text()
    assert f"Audit logs, in the order read: {tmp_path / 'audit.log.1'}, {tmp_path / 'audit.log'}" in stdout
    assert "Events later than the reorder window: 0" in stdout


def test_a_rotated_log_with_a_garbled_head_is_still_read_in_the_order_of_its_content(tmp_path: Path) -> None:
    # A crash can leave a zeroed or garbled block at the head of the newest log: longer than
    # one 64 KiB read, it must not make that log look older than the one before it.
    lines = [ln + b"\n" for ln in WORKLOAD.read_bytes().split(b"\n")[:-1]]
    cut = next(i for i in range(len(lines) // 2, len(lines)) if b"type=SYSCALL" in lines[i]) + 1
    (tmp_path / "audit.log.1").write_bytes(b"".join(lines[:cut]))
    (tmp_path / "audit.log").write_bytes(b"type=" + b"\0" * 70_000 + b"\n" + b"".join(lines[cut:]))
    whole = tmp_path / "whole.jsonl"
    assert run([str(WORKLOAD), "--policy", str(PCI_EVENTS), "-o", str(whole)])[0] == 0
    rotated = tmp_path / "rotated.jsonl"
    newest_first = sorted(tmp_path.glob("audit.log*"))
    code, stdout, err = run([*map(str, newest_first), "--policy", str(PCI_EVENTS), "-o", str(rotated), "--summary"])
    assert code == 0, err
    assert f"Audit logs, in the order read: {tmp_path / 'audit.log.1'}, {tmp_path / 'audit.log'}" in stdout
    assert "Events later than the reorder window: 0" in stdout and "Bad input lines: 1" in stdout
    assert rotated.read_text() == whole.read_text()


def test_audit_logs_that_overlap_in_time_are_refused_with_a_reason(tmp_path: Path) -> None:
    a = tmp_path / "a.log"
    b = tmp_path / "b.log"
    a.write_text(syscall("1700000000.000:1") + "\n" + syscall("1700000100.000:2") + "\n", encoding="utf-8")
    b.write_text(syscall("1700000050.000:3") + "\n", encoding="utf-8")
    code, _, err = run([str(a), str(b), "--policy", str(PCI_EVENTS)])
    assert code == 2
    assert "overlap in time" in err and str(a) in err and str(b) in err


def test_hostile_json_lines_are_counted_bad_lines(tmp_path: Path) -> None:
    ok = '{"type":"exec","ts":"2024-01-01T00:00:00.000000000Z","proc":{"exe":"/usr/bin/sudo","auid":1},"login":{"uid":1}}'
    lines = [
        ok,
        '{"type":["exec"],"ts":"2024-01-01T00:00:01.000000000Z"}',  # a type that is not a string
        '{"type":"exec","ts":"2024-01-01T00:00:02.000000000Z","proc":{"pid":18446744073709551615}}',
        '{"type":"exec","ts":"2024-01-01T00:00:03.000000000Z","user":{"uid":-9223372036854775809}}',
        '{"type":"exec","ts":"' + "9" * (2 << 20) + '"}',  # longer than a line may be
        '{"type":"exec","ts":"2024-01-01T00:00:04"}',
        "[1, 2]",
        ok.replace("00:00:00", "00:00:05"),
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "alerts.jsonl"
    code, stdout, stderr = run([str(events), "--policy", str(PCI_EVENTS), "-o", str(out), "--summary"])
    assert code == 0, stderr
    assert "Events evaluated: 2" in stdout and "Bad input lines: 6" in stdout
    where = [ln.split(f"{events}:", 1)[1].split(":", 1)[0] for ln in stderr.splitlines() if "bad input line" in ln]
    assert where == ["2", "3", "4", "5", "6", "7"]
    assert "line longer than" in stderr and "not a 64-bit integer" in stderr
    assert len(out.read_text().splitlines()) == 2  # both sudo runs alert


def test_timestamps_with_digits_that_are_not_ascii_or_a_trailing_newline_are_bad_lines(tmp_path: Path) -> None:
    ok = '{"type":"exec","ts":"2024-05-01T10:00:00.000000000Z","proc":{"exe":"/usr/bin/sudo","auid":1},"login":{"uid":1}}'
    lines = [
        ok,
        ok.replace("00.000000000Z", "00.١٠٠٠٠٠٠٠٠Z"),  # same second as line 1: the shortcut's check
        ok.replace("2024-05-01T10:00:00", "2024-05-01T10:00:0٣"),  # a new second: the full check
        ok.replace("000000000Z", "000000000Z\\n"),  # ends in a newline
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, db = tmp_path / "alerts.jsonl", tmp_path / "events.db"
    code, stdout, stderr = run([str(events), "--policy", str(PCI_EVENTS), "-o", str(out), "--summary", "--store", str(db)])
    assert code == 0, stderr
    assert "Events evaluated: 1" in stdout and "Bad input lines: 3" in stdout
    where = [ln.split(f"{events}:", 1)[1].split(":", 1)[0] for ln in stderr.splitlines() if "bad input line" in ln]
    assert where == ["2", "3", "4"]
    assert stderr.count("is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ") == 3
    assert len(out.read_text().splitlines()) == 1
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)
    code, _, _ = run([str(events), "--policy", str(PCI_EVENTS), "-o", str(out), "--strict"])
    assert code == 2


def test_option_values_that_are_no_number_of_seconds_are_refused(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"type":"exec","ts":"2024-01-01T00:00:00.000000000Z"}\n', encoding="utf-8")
    out = tmp_path / "alerts.jsonl"
    for window in ("-5", "nan", "inf", "1e400", "1e300", "86401"):
        result = CliRunner().invoke(replay_cmd, [str(events), "--policy", str(PCI_EVENTS), "-o", str(out), f"--window={window}"])
        assert result.exit_code == 2, window
        assert "Invalid value for '--window'" in result.output and "is not a number of seconds from 0 to 86400" in result.output
    for dedup in ("nan", "inf"):
        result = CliRunner().invoke(replay_cmd, [str(events), "--policy", str(PCI_EVENTS), "-o", str(out), "--dedup-window", dedup])
        assert result.exit_code == 2 and "Invalid value for '--dedup-window'" in result.output, dedup
        # The option is shared with the monitor: refused there before anything is loaded.
        from secpolicy.cli.live import monitor_cmd

        result = CliRunner().invoke(monitor_cmd, ["--dedup-window", dedup])
        assert result.exit_code == 2 and "is not a finite number of seconds" in result.output, (dedup, result.output)
    for window in ("0", "86400"):
        assert run([str(events), "--policy", str(PCI_EVENTS), "-o", str(out), "--window", window])[0] == 0


def test_an_empty_or_blank_file_holds_no_events_and_ends_no_run(tmp_path: Path) -> None:
    attack = tmp_path / "attack.log"
    attack.write_text(syscall("1700000000.000:1") + "\n", encoding="utf-8")
    empty, blank = tmp_path / "empty.log", tmp_path / "blank.log"
    empty.write_bytes(b"")
    blank.write_bytes(b"\n  \n\t\r\n")
    out = tmp_path / "alerts.jsonl"
    code, stdout, stderr = run([str(attack), "--policy", str(PCI_EVENTS), "-o", str(out)])
    assert code == 0, stderr
    alone = out.read_text()
    code, stdout, stderr = run([str(empty), str(attack), str(blank), "--policy", str(PCI_EVENTS), "-o", str(out), "--strict"])
    assert code == 0, stderr
    assert out.read_text() == alone and alone
    code, stdout, stderr = run([str(empty), "--policy", str(PCI_EVENTS), "--summary"])
    assert code == 0 and "Events evaluated: 0" in stdout and "Bad input lines: 0" in stdout
    other = tmp_path / "other.log"
    other.write_text("\nhello\n", encoding="utf-8")
    code, _, stderr = run([str(other), str(attack), "--policy", str(PCI_EVENTS)])
    assert code == 2 and "cannot tell the input format" in stderr and str(other) in stderr


def test_a_fifo_as_the_roots_account_database_is_said_and_not_waited_on(tmp_path: Path) -> None:
    """`--root IMG` names the users of RAW records from IMG/etc/passwd. A FIFO there, opened
    for reading, would block the replay until a writer came: it is never opened."""
    import os
    import subprocess
    import sys

    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "passwd")
    log = tmp_path / "audit.log"
    log.write_text(syscall("1700000000.000:1") + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "secpolicy", "replay", "--input-format", "auditd", "--root", str(root),
         "--policy", str(PCI_EVENTS), str(log)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"{root}/etc/passwd: not a regular file, not read: users of RAW audit records are shown by uid only" \
        in out.stderr
    alerts = [json.loads(line) for line in out.stdout.splitlines()]
    assert alerts and all(a["event"]["login"] == {"uid": 1000, "session": 7} for a in alerts), alerts
