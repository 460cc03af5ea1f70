"""The bundled intrusion rules (process injection, SSH authorized keys, set-uid bits, the dynamic
linker's preload file, cron jobs) on what the real sources make: the live monitor watching this
test's own processes and temporary files, and audit records in the shape auditd writes them."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PCI_EVENTS = REPO / "policies" / "pci-dss" / "events.yaml"

INJECTION = "pci-10.2.1.2-process-injection"
AUTHORIZED_KEYS = "pci-10.2.1.5-ssh-authorized-keys-change"
SETUID = "pci-10.2.1.5-setuid-bit-set"
PRELOAD = "pci-10.2.1.7-ld-preload-change"
CRON = "pci-10.2.1.7-cron-job-change"
RULES = (INJECTION, AUTHORIZED_KEYS, SETUID, PRELOAD, CRON)

# A tracer of its own forked children, through libc: PTRACE_ATTACH (16) to the first, a word
# read with PEEKDATA (2, not recorded) and written back unchanged with POKEDATA (5), DETACH;
# PTRACE_SEIZE (0x4206) to the second. Prints its pid and the two children's.
PTRACE_SCRIPT = r"""
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
word = ctypes.c_long(0x5ec0111c)
addr = ctypes.addressof(word)

def child():
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    return pid

def call(req, pid, a=None, d=None):
    ctypes.set_errno(0)
    r = libc.ptrace(req, pid, a, d)
    if r == -1 and ctypes.get_errno():
        sys.exit(f"ptrace({req}) failed: {os.strerror(ctypes.get_errno())}")
    return r

first, second = child(), child()
call(16, first)
os.waitpid(first, 0)
value = call(2, first, addr)
call(5, first, addr, value)
call(17, first)
call(0x4206, second)
for pid in (first, second):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(os.getpid(), first, second)
"""


def _bundled_rules() -> list[Any]:
    from secpolicy.cli.core import load

    rules = [r for r in load([str(PCI_EVENTS)]).event_rules if r.id in RULES]
    assert sorted(r.id for r in rules) == sorted(RULES)
    return rules


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Under /var/tmp, not /tmp: the authorized-keys rule's kernel filter passes writes under
    # the directories homes live in (/var/... among them), never /tmp.
    d = Path(tempfile.mkdtemp(prefix="secpolicy-intrusion-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.live
@pytest.mark.timeout(90)
def test_live_injection_authorized_keys_and_setuid_fire_on_this_tests_own_objects(scratch: Path) -> None:
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine
    from secpolicy.events.replay import open_sources, replay

    home = scratch / "home"
    (home / ".ssh").mkdir(parents=True)
    keys = home / ".ssh" / "authorized_keys"
    decoy = home / ".ssh" / "authorized_keys.bak"
    prog = scratch / "prog"
    prog.write_bytes(b"#!/bin/sh\n")
    plain = scratch / "plain"
    plain.write_bytes(b"")
    rules = _bundled_rules()
    mon = Monitor(rules, EventEngine(rules))
    mon.start()
    alerts_out, events_out = io.StringIO(), io.StringIO()
    result: dict[str, Any] = {}

    def workload() -> None:
        try:
            tracer = subprocess.run([sys.executable, "-c", PTRACE_SCRIPT], capture_output=True, text=True,
                                    timeout=30, check=False)
            result["ptrace"] = tracer
            shell = subprocess.run(["/bin/sh", "-c", (f"echo 'ssh-ed25519 AAAA test' >> {keys}; "
                                                      f"echo copy > {decoy}; chmod u+s {prog}; chmod 0755 {plain}; "
                                                      "echo $$")],
                                   capture_output=True, text=True, timeout=30, check=False)
            result["shell"] = shell
            # Until the last of them, the plain chmod, has been delivered (or 20 s pass).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and f'"path":"{plain}"' not in events_out.getvalue():
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            mon.stop()

    t = threading.Thread(target=workload)
    t.start()
    summary = mon.run(alerts_out, events_out)
    t.join()
    tracer, shell = result["ptrace"], result["shell"]
    assert tracer.returncode == 0, tracer.stderr
    assert shell.returncode == 0, shell.stderr
    tracer_pid, first, second = (int(x) for x in tracer.stdout.split())
    shell_pid = int(shell.stdout)
    assert summary.lost == 0 and summary.loss_windows == []

    alerts = [json.loads(line) for line in alerts_out.getvalue().splitlines()]
    mine = [a for a in alerts if a["event"]["proc"]["pid"] in (tracer_pid, shell_pid)
            or a["event"]["proc"].get("ppid") == shell_pid]

    # Process injection: one alert per tracer and traced process, the attach and its write in it.
    inj = [a for a in mine if a["rule_id"] == INJECTION]
    assert sorted(a["event"]["ptrace"]["target_pid"] for a in inj) == sorted([first, second])
    by_target = {a["event"]["ptrace"]["target_pid"]: a for a in inj}
    assert by_target[first]["event"]["ptrace"] == {"request": 16, "target_pid": first}
    assert by_target[second]["event"]["ptrace"] == {"request": 0x4206, "target_pid": second}
    assert by_target[first]["event"]["outcome"] == {"result": "success"}
    assert by_target[first]["event"]["proc"]["exe"] == os.path.realpath(sys.executable)
    events = [json.loads(line) for line in events_out.getvalue().splitlines()]
    pokes = [e for e in events if e["type"] == "ptrace" and e["proc"]["pid"] == tracer_pid]
    assert [(e["ptrace"]["request"], e["ptrace"]["target_pid"]) for e in pokes] == [(16, first), (5, first),
                                                                                   (0x4206, second)]

    # SSH authorized keys: the append fires; the backup copy beside it does not.
    ak = [a for a in mine if a["rule_id"] == AUTHORIZED_KEYS]
    assert [a["event"]["file"]["path"] for a in ak] == [str(keys)]
    assert ak[0]["event"]["type"] == "write" and "O_APPEND" in ak[0]["event"]["file"]["flags"]
    assert "root" in ak[0]["message"] and str(keys) in ak[0]["message"]

    # Set-uid bit: chmod u+s fires with the mode chmod computed; chmod 0755 does not.
    su = [a for a in mine if a["rule_id"] == SETUID]
    assert [(a["event"]["file"]["path"], a["event"]["file"]["mode"] & 0o6000) for a in su] == [(str(prog), 0o4000)]
    assert su[0]["event"]["proc"]["exe"] == os.path.realpath(shutil.which("chmod") or "")
    assert [e["file"]["mode"] for e in events if e["type"] == "chmod" and e["file"].get("path") == str(plain)] == [0o755]

    # Nothing of this test touched a preload file or a crontab.
    assert [a for a in mine if a["rule_id"] in (PRELOAD, CRON)] == []

    # The recording replays to the same alerts of this test's objects.
    recording = scratch / "events.jsonl"
    recording.write_text(events_out.getvalue())
    replayed = io.StringIO()
    rules2 = _bundled_rules()
    replay(open_sources([recording]), EventEngine(rules2), replayed)
    again = [json.loads(line) for line in replayed.getvalue().splitlines()]
    assert [a for a in again if a in mine] == mine


# ---- auditd: records in the shape auditd 3.0.9 writes them (RAW log format, x86_64) ----

_HDR = "type={type} msg=audit({ts}:{serial}): "
_SYSCALL = ("arch=c000003e syscall={nr} success={ok} exit={exit} a0={a0} a1={a1} a2={a2} a3={a3} items={items} "
            "ppid=4100 pid={pid} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 "
            'comm="{comm}" exe="{exe}" key="{key}"')
_PATH = ('item={item} name="{name}" inode={inode} dev=fe:00 mode={mode} ouid=0 ogid=0 rdev=00:00 '
         "nametype={nametype} cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0")


def _event(ts: str, serial: int, syscall: dict[str, Any], paths: list[dict[str, Any]], cwd: str = "/root") -> list[str]:
    sc = {"ok": "yes", "exit": 0, "a1": 0, "a2": 0, "a3": 0, "items": len(paths), **syscall}
    lines = [_HDR.format(type="SYSCALL", ts=ts, serial=serial) + _SYSCALL.format(**sc)]
    if paths:
        lines.append(_HDR.format(type="CWD", ts=ts, serial=serial) + f'cwd="{cwd}"')
    for i, p in enumerate(paths):
        lines.append(_HDR.format(type="PATH", ts=ts, serial=serial)
                     + _PATH.format(**{"item": i, "inode": 9000 + serial * 4 + i, "mode": "0100644", **p}))
    title = syscall["comm"].encode().hex().upper()
    lines.append(_HDR.format(type="PROCTITLE", ts=ts, serial=serial) + f"proctitle={title}")
    return lines


def _audit_log() -> str:
    """One event per case, pids 5001..: what each rule must and must not fire on."""
    ev: list[list[str]] = []
    t = iter(range(1795300000, 1795300100))

    def at() -> str:
        return f"{next(t)}.101"

    # ptrace(PTRACE_ATTACH, 812) by a program that is no debugger (5001), and by gdb as root (5002).
    ev.append(_event(at(), 101, {"nr": 101, "a0": "10", "a1": "32c", "pid": 5001, "comm": "inject",
                                 "exe": "/tmp/.x/inject", "key": "ptrace"}, []))
    ev.append(_event(at(), 102, {"nr": 101, "a0": "4206", "a1": "32d", "pid": 5002, "comm": "gdb",
                                 "exe": "/usr/bin/gdb", "key": "ptrace"}, []))
    # PTRACE_PEEKDATA (2) and PTRACE_TRACEME (0): not control.
    ev.append(_event(at(), 103, {"nr": 101, "a0": "2", "a1": "32c", "pid": 5003, "comm": "inject",
                                 "exe": "/tmp/.x/inject", "key": "ptrace"}, []))
    ev.append(_event(at(), 104, {"nr": 101, "a0": "0", "a1": "0", "pid": 5004, "comm": "prog",
                                 "exe": "/tmp/.x/prog", "key": "ptrace"}, []))
    # openat(AT_FDCWD, "/home/bob/.ssh/authorized_keys", O_WRONLY|O_CREAT|O_APPEND, 0666) (5005).
    ev.append(_event(at(), 105, {"nr": 257, "exit": 3, "a0": "ffffff9c", "a1": "7ffd4169a000", "a2": "441",
                                 "a3": "1b6", "pid": 5005, "comm": "bash", "exe": "/usr/bin/bash", "key": "ssh"},
                     [{"name": "/home/bob/.ssh/", "nametype": "PARENT", "mode": "040700"},
                      {"name": "/home/bob/.ssh/authorized_keys", "nametype": "NORMAL"}]))
    # rename("/home/bob/.ssh/ak.tmp", "authorized_keys") relative to the working directory (5006).
    ev.append(_event(at(), 106, {"nr": 82, "a0": "55d0c0de1000", "a1": "55d0c0de2000", "pid": 5006,
                                 "comm": "mv", "exe": "/usr/bin/mv", "key": "ssh"},
                     [{"name": "/home/bob/.ssh/", "nametype": "PARENT", "mode": "040700"},
                      {"name": "/home/bob/.ssh/", "nametype": "PARENT", "mode": "040700"},
                      {"name": "ak.tmp", "nametype": "DELETE"},
                      {"name": "authorized_keys", "nametype": "CREATE"}], cwd="/home/bob/.ssh"))
    # known_hosts appended to (5007): not a key sshd trusts.
    ev.append(_event(at(), 107, {"nr": 257, "exit": 3, "a0": "ffffff9c", "a1": "7ffd4169a000", "a2": "441",
                                 "a3": "1b6", "pid": 5007, "comm": "ssh", "exe": "/usr/bin/ssh", "key": "ssh"},
                     [{"name": "/home/bob/.ssh/", "nametype": "PARENT", "mode": "040700"},
                      {"name": "/home/bob/.ssh/known_hosts", "nametype": "NORMAL"}]))
    # fchmodat(AT_FDCWD, "/tmp/.x/sh", 04755) (5008) and the real 0644 of workload-debian12.log (5009).
    ev.append(_event(at(), 108, {"nr": 268, "a0": "ffffff9c", "a1": "56012bf5e3b0", "a2": "9ed", "pid": 5008,
                                 "comm": "chmod", "exe": "/usr/bin/chmod", "key": "perm_mod"},
                     [{"name": "/tmp/.x/sh", "nametype": "NORMAL", "mode": "0100755"}]))
    ev.append(_event(at(), 109, {"nr": 268, "a0": "ffffff9c", "a1": "56012bf5e3b0", "a2": "1a4", "pid": 5009,
                                 "comm": "chmod", "exe": "/usr/bin/chmod", "key": "perm_mod"},
                     [{"name": "/etc/secpolicy-rec-test.conf", "nametype": "NORMAL"}]))
    # openat(AT_FDCWD, "/etc/ld.so.preload", O_WRONLY|O_CREAT|O_TRUNC, 0666) (5010) ...
    ev.append(_event(at(), 110, {"nr": 257, "exit": 3, "a0": "ffffff9c", "a1": "7ffd4169a000", "a2": "241",
                                 "a3": "1b6", "pid": 5010, "comm": "bash", "exe": "/usr/bin/bash", "key": "preload"},
                     [{"name": "/etc/", "nametype": "PARENT", "mode": "040755"},
                      {"name": "/etc/ld.so.preload", "nametype": "CREATE"}]))
    # ... and opened O_RDONLY by the dynamic linker of every program (5011).
    ev.append(_event(at(), 111, {"nr": 257, "exit": 3, "a0": "ffffff9c", "a1": "7f1e2d3c4000", "a2": "80000",
                                 "pid": 5011, "comm": "ls", "exe": "/usr/bin/ls", "key": "preload"},
                     [{"name": "/etc/ld.so.preload", "nametype": "NORMAL"}]))
    # A crontab written straight into the spool (5012), and crontab -e putting one in place (5013).
    ev.append(_event(at(), 112, {"nr": 257, "exit": 3, "a0": "ffffff9c", "a1": "7ffd4169a000", "a2": "441",
                                 "a3": "1b6", "pid": 5012, "comm": "bash", "exe": "/usr/bin/bash", "key": "cron"},
                     [{"name": "/var/spool/cron/crontabs/", "nametype": "PARENT", "mode": "041730"},
                      {"name": "/var/spool/cron/crontabs/www-data", "nametype": "CREATE"}]))
    ev.append(_event(at(), 113, {"nr": 82, "a0": "55d0c0de1000", "a1": "55d0c0de2000", "pid": 5013,
                                 "comm": "crontab", "exe": "/usr/bin/crontab", "key": "cron"},
                     [{"name": "/var/spool/cron/crontabs/", "nametype": "PARENT", "mode": "041730"},
                      {"name": "/var/spool/cron/crontabs/", "nametype": "PARENT", "mode": "041730"},
                      {"name": "/var/spool/cron/crontabs/tmp.Xa1b2", "nametype": "DELETE"},
                      {"name": "/var/spool/cron/crontabs/bob", "nametype": "CREATE"}]))
    return "".join(line + "\n" for e in ev for line in e)


# (pid, rule) of every alert the five rules must raise on that log, and nothing else.
EXPECTED_AUDITD = {(5001, INJECTION), (5002, INJECTION), (5005, AUTHORIZED_KEYS), (5006, AUTHORIZED_KEYS),
                   (5008, SETUID), (5010, PRELOAD), (5012, CRON)}


def test_auditd_records_fire_the_intrusion_rules(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_audit_log())
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.run([sys.executable, "-m", "secpolicy", "replay", "--input-format", "auditd", "--strict",
                           "--policy", str(PCI_EVENTS), "--output", str(out), str(log)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    got = {(a["event"]["proc"]["pid"], a["rule_id"]) for a in alerts if a["rule_id"] in RULES}
    assert got == EXPECTED_AUDITD
    by = {(a["event"]["proc"]["pid"], a["rule_id"]): a["event"] for a in alerts}
    # The request numbers and target pids auditd logged are the ones the live monitor gives.
    assert by[(5001, INJECTION)]["ptrace"] == {"request": 16, "target_pid": 812}
    assert by[(5002, INJECTION)]["ptrace"] == {"request": 0x4206, "target_pid": 813}
    assert by[(5006, AUTHORIZED_KEYS)]["file"] == {"path": "/home/bob/.ssh/ak.tmp",
                                                   "target": "/home/bob/.ssh/authorized_keys"}
    assert by[(5008, SETUID)]["file"] == {"path": "/tmp/.x/sh", "mode": 0o4755}
    assert by[(5010, PRELOAD)]["file"]["flags"] == ["O_WRONLY", "O_CREAT", "O_TRUNC"]
    assert by[(5012, CRON)]["file"]["path"] == "/var/spool/cron/crontabs/www-data"
    # The specific rules' siblings: the new preload file is also a system object (low).
    assert (5010, "pci-10.2.1.7-system-object-change") in {(p, r) for p, r in by}
