"""`secpolicy replay` and `secpolicy timeline` against what the audit tools say about the same log:
names relative to a directory descriptor, CR LF line ends, the i386 system calls ausearch names,
and the timeline's escalation chains (a refused read or a local socket is no exfiltration)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "events"
WORKLOAD = FIXTURES / "workload-debian12.log"
PCI_EVENTS = REPO / "policies" / "pci-dss" / "events.yaml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secpolicy", *args], capture_output=True, text=True,
                          cwd=REPO, check=False, timeout=120)


def every_event_policy(tmp_path: Path, when: str = 'type exists') -> Path:
    """A rule that fires on every event it is given, so each alert carries one Event."""
    policy = tmp_path / "all.yaml"
    policy.write_text(
        "metadata: {id: probe, title: probe, version: '1'}\nrules:\n"
        f"  - id: every-event\n    title: every event\n    severity: low\n    when: {when}\n"
        "    message: \"{type}\"\n",
        encoding="utf-8",
    )
    return policy


def replayed(tmp_path: Path, log: Path, policy: Path, name: str = "alerts.jsonl") -> list[dict]:
    out = tmp_path / name
    p = cli("replay", str(log), "--policy", str(policy), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def syscall(serial: int, nr: int, a0: str, a2: str = "0", arch: str = "c000003e", exe: str = "/usr/bin/rm",
            key: str = "delete", uid: int = 0, a1: str = "5600aa00") -> str:
    return (
        f"type=SYSCALL msg=audit(1700000000.{serial:03d}:{serial}): arch={arch} syscall={nr} success=yes exit=0 "
        f"a0={a0} a1={a1} a2={a2} a3=0 items=2 ppid=1 pid={4000 + serial} auid=1000 uid={uid} gid=0 "
        f'euid={uid} suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=7 comm="{Path(exe).name}" exe="{exe}" '
        f'key="{key}"'
    )


def record(serial: int, rtype: str, body: str) -> str:
    return f"type={rtype} msg=audit(1700000000.{serial:03d}:{serial}): {body}"


# --- Names relative to a directory descriptor -------------------------------------------------


def test_rm_rf_of_a_directory_names_no_file_of_the_working_directory(tmp_path: Path) -> None:
    """The recorded workload ran `rm -rf /tmp/secpolicy-rec-root` in /tmp: rm deletes the files
    of .../etc with unlinkat(fd of that directory, "passwd"), and the kernel logs the name
    "passwd" with the working directory /tmp as its parent. ausearch -i shows name=passwd; the
    file deleted was /tmp/secpolicy-rec-root/etc/passwd, never /tmp/passwd."""
    policy = every_event_policy(tmp_path, 'type == "unlink" and proc.pid == 12890')
    alerts = replayed(tmp_path, WORKLOAD, policy)
    assert len(alerts) == 11  # ten files and the directory itself: none is lost
    paths = sorted(a["event"].get("file", {}).get("path", "") for a in alerts)
    # Only the unlinkat(AT_FDCWD, "/tmp/secpolicy-rec-root") names its file; the others cannot
    # be named from the log (the descriptor's directory is not recorded) and name none.
    assert [p for p in paths if p] == ["/tmp/secpolicy-rec-root"]
    assert all(a["event"]["proc"]["cwd"] == "/tmp" for a in alerts)


def _unlinkat_in_etc(a0: str) -> list[str]:
    # An administrator in /etc cleans a build tree: rm -rf /srv/build (which holds a "passwd").
    return [
        syscall(1, 263, a0),
        record(1, "CWD", 'cwd="/etc"'),
        record(1, "PATH", 'item=0 name="/etc" inode=2 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT'),
        record(1, "PATH", 'item=1 name="passwd" inode=9 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=DELETE'),
        record(1, "EOE", ""),
    ]


def test_a_file_deleted_through_a_directory_descriptor_raises_no_alert_on_the_cwd_file(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("\n".join(_unlinkat_in_etc("5")) + "\n", encoding="utf-8")
    alerts = replayed(tmp_path, log, PCI_EVENTS)
    named = [a for a in alerts if "/etc/passwd" in json.dumps(a)]
    assert named == [], [a["message"] for a in named]
    # The same call relative to the working directory (AT_FDCWD) does delete /etc/passwd.
    log.write_text("\n".join(_unlinkat_in_etc("ffffff9c")) + "\n", encoding="utf-8")
    alerts = replayed(tmp_path, log, PCI_EVENTS, "cwd.jsonl")
    changed = [a for a in alerts if a["rule_id"] == "pci-10.2.1.5-credential-file-change"]
    assert [a["event"]["file"]["path"] for a in changed] == ["/etc/passwd"]


def test_renameat_resolves_each_name_against_its_own_directory(tmp_path: Path) -> None:
    # renameat(AT_FDCWD, "new.conf", fd, "app.conf") in /etc: the old name is /etc/new.conf, the
    # new one is relative to the descriptor's directory, which the log does not name.
    lines = [
        syscall(1, 264, "ffffff9c", a2="4", exe="/usr/bin/mv", key="etc"),
        record(1, "CWD", 'cwd="/etc"'),
        record(1, "PATH", 'item=0 name="/etc" inode=2 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT'),
        record(1, "PATH", 'item=1 name="/etc" inode=2 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT'),
        record(1, "PATH", 'item=2 name="new.conf" inode=9 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=DELETE'),
        record(1, "PATH", 'item=3 name="app.conf" inode=9 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=CREATE'),
        record(1, "EOE", ""),
    ]
    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (alert,) = replayed(tmp_path, log, every_event_policy(tmp_path))
    assert alert["event"]["type"] == "rename"
    assert alert["event"]["file"] == {"path": "/etc/new.conf"}


# --- CR LF line ends -----------------------------------------------------------------------


def test_cr_lf_line_ends_are_read_as_the_audit_tools_read_them(tmp_path: Path) -> None:
    lines = [
        syscall(1, 59, "5600aa00", exe="/usr/bin/sudo", key="exec", uid=1000),
        record(1, "EXECVE", 'argc=2 a0="sudo" a1="id"'),
        record(1, "CWD", 'cwd="/home/alice"'),
        record(1, "PATH", 'item=0 name="/usr/bin/sudo" inode=3 dev=fe:00 mode=0104755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL'),
        record(1, "PROCTITLE", "proctitle=7375646F006964"),
    ]
    lf, crlf = tmp_path / "lf.log", tmp_path / "crlf.log"
    lf.write_bytes("".join(f"{ln}\n" for ln in lines).encode())
    crlf.write_bytes("".join(f"{ln}\r\n" for ln in lines).encode())
    policy = every_event_policy(tmp_path)
    (want,) = replayed(tmp_path, lf, policy, "lf.jsonl")
    (got,) = replayed(tmp_path, crlf, policy, "crlf.jsonl")
    assert got["event"]["audit"] == {"key": "exec"}
    assert got["event"]["proc"]["cwd"] == "/home/alice"
    assert got["event"]["proc"]["args"] == ["sudo", "id"]
    assert got == want
    if shutil.which("ausearch"):  # the audit tools find the key without the CR
        p = subprocess.run(["ausearch", "-if", str(crlf), "-k", "exec", "--raw"], capture_output=True,
                           text=True, check=False)
        assert p.returncode == 0 and "msg=audit(1700000000.001:1)" in p.stdout


def test_a_cr_lf_copy_of_a_real_log_gives_the_same_alerts(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.log"
    crlf.write_bytes(WORKLOAD.read_bytes().replace(b"\n", b"\r\n"))
    want = replayed(tmp_path, WORKLOAD, PCI_EVENTS, "lf.jsonl")
    got = replayed(tmp_path, crlf, PCI_EVENTS, "crlf.jsonl")
    assert [a["message"] for a in got] == [a["message"] for a in want]
    assert got == want


# --- i386 system calls -------------------------------------------------------------------------


I386 = "40000003"


def test_i386_system_calls_are_the_ones_ausearch_names(tmp_path: Path) -> None:
    """A 32-bit program on a 64-bit host (audit rules with arch=b32): glibc's chown is chown32,
    setresuid is syscall 164, and connect goes through socketcall(SYS_CONNECT)."""
    lines = [
        syscall(1, 102, "3", arch=I386, exe="/opt/curl32", key="net", uid=1000),
        record(1, "SOCKADDR", "saddr=02000050C0000209000000000000000000000000"),
        record(1, "EOE", ""),
        syscall(2, 212, "8051000", a1="0", arch=I386, exe="/opt/chown32", key="perm_mod"),
        record(2, "CWD", 'cwd="/root"'),
        record(2, "PATH", 'item=0 name="/etc/shadow" inode=1 dev=fe:00 mode=0100640 ouid=0 ogid=42 rdev=00:00 nametype=NORMAL'),
        record(2, "EOE", ""),
        syscall(3, 164, "0", arch=I386, exe="/tmp/bd32", key="setuid"),
        record(3, "EOE", ""),
        syscall(4, 214, "0", arch=I386, exe="/tmp/bd32", key="setuid"),
        record(4, "EOE", ""),
        # auditd's ENRICHED format interprets the call as ausearch -i does.
        syscall(5, 102, "3", arch=I386, exe="/opt/curl32", key="net", uid=1000)
        + '\x1dARCH=i386 SYSCALL=socketcall(connect) AUID="alice" UID="alice" GID="alice" EUID="alice"',
        record(5, "SOCKADDR", "saddr=02000050C0000209000000000000000000000000"),
        record(5, "EOE", ""),
    ]
    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if shutil.which("ausearch"):
        p = subprocess.run(["ausearch", "-if", str(log), "-i"], capture_output=True, text=True, check=False)
        for name in ("syscall=socketcall(connect)", "syscall=chown32", "syscall=setresuid", "syscall=setgid32"):
            assert name in p.stdout, p.stdout
    events = {a["event"]["source"]["records"][0]: a["event"] for a in replayed(tmp_path, log, every_event_policy(tmp_path))}
    assert events["1700000000.001:1"]["type"] == "connect"
    assert events["1700000000.001:1"]["net"] == {"family": "inet", "dst_ip": "192.0.2.9", "dst_port": 80}
    assert events["1700000000.002:2"]["type"] == "chown"
    assert events["1700000000.002:2"]["file"] == {"uid": 0, "gid": 0, "path": "/etc/shadow"}
    assert events["1700000000.003:3"]["type"] == "setuid"
    assert events["1700000000.003:3"]["cred"]["euid"] == 0
    assert events["1700000000.004:4"]["type"] == "setuid"
    assert events["1700000000.005:5"]["type"] == "connect"
    assert events["1700000000.005:5"]["login"]["name"] == "alice"
    assert len(events) == 5


# --- Timeline chains -------------------------------------------------------------------------


def _ev(ts: str, etype: str, **fields: object) -> dict:
    proc = {"pid": 700, "uid": 1000, "euid": 0, "session": 7, "exe": "/usr/bin/cat", "auid": 1000}
    return {"type": etype, "ts": f"2026-11-21T10:00:{ts}.000000000Z", "host": "web1", "proc": proc,
            "user": {"uid": 0, "name": "root"}, "login": {"uid": 1000, "name": "alice", "session": 7}, **fields}


def _chains(tmp_path: Path, events: list[dict]) -> list[dict]:
    src = tmp_path / "events.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    out = tmp_path / "timeline.json"
    p = cli("timeline", "--replay", str(src), "--format", "json", "-o", str(out), "--strict")
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text(encoding="utf-8"))["chains"]


SUDO = {"proc": {"pid": 699, "uid": 1000, "euid": 0, "session": 7, "exe": "/usr/bin/sudo", "auid": 1000},
        "outcome": {"result": "success"}}


@pytest.mark.parametrize("tried", [
    # Every libc name lookup first tries the nscd socket, and fails when nscd is not running.
    {"type": "connect", "net": {"family": "unix"}, "outcome": {"result": "failure", "errno": 2}},
    # A read that was refused read nothing.
    {"type": "open", "file": {"path": "/etc/shadow", "flags": ["O_RDONLY"]}, "outcome": {"result": "failure", "errno": 13}},
    # A file named like a sensitive one elsewhere, and a loopback connection.
    {"type": "open", "file": {"path": "/home/alice/proj/etc/shadow.txt"}, "outcome": {"result": "success"}},
    {"type": "connect", "net": {"family": "inet", "dst_ip": "127.0.0.1", "dst_port": 8080}, "outcome": {"result": "success"}},
])
def test_a_session_chain_needs_a_read_or_a_connection_out_that_happened(tmp_path: Path, tried: dict) -> None:
    etype = tried.pop("type")
    assert _chains(tmp_path, [_ev("01", "exec", **SUDO), _ev("02", etype, **tried)]) == []


def test_a_session_chain_shows_the_connection_out_not_the_failed_local_one(tmp_path: Path) -> None:
    events = [
        _ev("01", "exec", **SUDO),
        _ev("02", "connect", net={"family": "unix"}, outcome={"result": "failure", "errno": 2}),
        _ev("03", "open", file={"path": "/etc/shadow"}, outcome={"result": "failure", "errno": 13}),
        _ev("04", "open", file={"path": "/etc/shadow"}, outcome={"result": "success"}),
        _ev("05", "connect", net={"family": "inet", "dst_ip": "203.0.113.50", "dst_port": 443},
            outcome={"result": "success"}),
    ]
    (chain,) = _chains(tmp_path, events)
    assert chain["title"] == "alice: escalated to root, read a sensitive file, connected out"
    assert [(s["ts"][17:19], s["type"], s["resource"], s.get("result")) for s in chain["steps"]] == [
        ("01", "exec", "/usr/bin/sudo", "success"),
        ("04", "open", "/etc/shadow", "success"),
        ("05", "connect", "203.0.113.50:443", "success"),
    ]


# --- Bounded memory on hostile input ---------------------------------------------------------


def test_a_first_line_as_long_as_the_file_is_not_held_to_tell_the_format(tmp_path: Path) -> None:
    """Telling the format read the whole first line (and a stripped copy): a one-line file of
    N bytes took 2N of memory before the reader, which bounds lines to 1 MiB, saw a byte."""
    import resource

    log = tmp_path / "audit.log"
    with open(log, "wb") as fh:  # sparse: 160 MB on no disk, NUL bytes after "type="
        fh.write(b"type=")
        fh.truncate(160 << 20)

    def limit_memory() -> None:  # far more than a replay needs, far less than two copies of the line
        resource.setrlimit(resource.RLIMIT_DATA, (200 << 20, 200 << 20))

    p = subprocess.run([sys.executable, "-m", "secpolicy", "replay", str(log), "--policy", str(PCI_EVENTS),
                        "-o", str(tmp_path / "alerts.jsonl"), "--summary"],
                       capture_output=True, text=True, cwd=REPO, check=False, timeout=120, preexec_fn=limit_memory)
    assert p.returncode == 0, p.stderr
    assert "Bad input lines: 1" in p.stdout
    assert f"{log}:1: line longer than 1048576 bytes: skipped" in p.stderr
