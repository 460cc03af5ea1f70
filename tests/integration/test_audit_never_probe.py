"""audit_rules.has and has_loaded against the kernel: for rule sets where the order, `never`
rules, watches, and the task, filesystem and exclude lists decide, the fact says a rule is
covered exactly when a private auditd logs the events of that rule (a truncate(2) of a file of
the test's own, from processes with the auid or program the case needs)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

AUDITCTL, AUDITD, AUSYSCALL = (shutil.which(t) for t in ("auditctl", "auditd", "ausyscall"))
PYTHON = os.path.realpath(sys.executable)
PERL = shutil.which("perl")

pytestmark = [
    # the kernel takes one audit daemon, and the enabled flag is the machine's: beside the live
    # tests (the side-by-side one runs an auditd of its own), never at the same time (no eBPF here)
    pytest.mark.xdist_group("live"),
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="loading audit rules needs root (CAP_AUDIT_CONTROL)"),
    pytest.mark.skipif(None in (AUDITCTL, AUDITD, AUSYSCALL), reason="auditd is not installed (package auditd)"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the rules name the b64 and b32 ABIs of x86_64"),
]


def auditctl(*args: str, check: bool = True) -> str:
    res = subprocess.run([str(AUDITCTL), *args], capture_output=True, text=True, check=False)
    if check and res.returncode:
        raise AssertionError(f"auditctl {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def status() -> dict[str, int]:
    words = (line.split() for line in auditctl("-s").splitlines())
    return {w[0]: int(w[1]) for w in words if len(w) >= 2 and w[1].isdigit()}


@pytest.fixture(scope="module")
def audit_log() -> Iterator[Path]:
    """A private auditd (its own configuration and log in a temporary directory); the enabled
    flag is put back as it was. Waits while another daemon (a bench, the side-by-side test)
    holds the kernel's one place."""
    deadline = time.monotonic() + 240
    while status().get("pid"):
        if time.monotonic() > deadline:
            pytest.fail(f"an audit daemon stays registered with the kernel (pid {status()['pid']})")
        time.sleep(5)
    before = status()
    tmp = Path(tempfile.mkdtemp(prefix="sp-never-auditd-"))
    (tmp / "plugins").mkdir()
    conf = Path("/etc/audit/auditd.conf").read_text(encoding="utf-8").splitlines()
    settings = {"log_file": str(tmp / "audit.log"), "plugin_dir": str(tmp / "plugins"), "log_group": "root",
                "log_format": "RAW", "freq": "1", "space_left_action": "IGNORE",
                "admin_space_left_action": "IGNORE", "disk_full_action": "IGNORE", "disk_error_action": "IGNORE"}
    lines = [ln for ln in conf if ln.split("=")[0].strip() not in settings]
    (tmp / "auditd.conf").write_text("\n".join([*lines, *(f"{k} = {v}" for k, v in settings.items())]) + "\n")
    os.chmod(tmp / "auditd.conf", 0o600)
    daemon = subprocess.Popen([str(AUDITD), "-n", "-c", str(tmp)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            if status().get("pid") == daemon.pid:
                break
            if daemon.poll() is not None:
                pytest.fail("the private auditd did not start")
            time.sleep(0.05)
        else:
            pytest.fail("the private auditd did not register with the kernel")
        yield tmp / "audit.log"
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        if status().get("enabled") != before.get("enabled"):
            auditctl("-e", str(before.get("enabled", 0)))
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Trigger:
    """A truncate(2) of the case's file from a new process: python (optionally with its own
    auid, written to /proc/self/loginuid) or perl."""

    auid: int | None = None
    perl: bool = False

    def argv(self, path: str) -> list[str]:
        if self.perl:
            return [str(PERL), "-e", "truncate($ARGV[0], 0) or die $!", path]
        login = f"open('/proc/self/loginuid', 'w').write('{self.auid}');" if self.auid is not None else ""
        return [PYTHON, "-S", "-c", f"import os, sys; {login}os.truncate(sys.argv[1], 0)", path]


@dataclass(frozen=True)
class Case:
    """Rules as auditctl arguments, in load order: {file} is the case's file, {dir} its
    directory, {other} an unrelated directory, {python} the triggers' interpreter, {fs} the
    magic number of the file's file system."""

    rules: list[str]
    query: str
    triggers: tuple[Trigger, ...] = (Trigger(),)
    extra: dict[str, str] = field(default_factory=dict)


A = "-a always,exit -F arch=b64 -S truncate"
N = "-a never,exit -F arch=b64 -S truncate"
W = "-w {file} -p wa"
IDS = "-F auid>=1000 -F auid!=unset"
# Each group holds cases where the order takes the events away and cases where it does not.
GROUPS: dict[str, dict[str, Case]] = {
    "order": {
        "never-before-always": Case([N, A], A),
        "never-after-always": Case([A, N], A),
        "dash-A-puts-never-first": Case([A, "-A never,exit -F arch=b64 -S truncate"], A),
        "never-all-without-arch-before-always": Case(["-a never,exit -S all", A], A),
        "never-b32-all-before-b64-always": Case(["-a never,exit -F arch=b32 -S all", A], A),
    },
    "filters": {
        "never-auid-inside-the-query": Case([f"{N} -F auid=4242", A], A, (Trigger(), Trigger(auid=4242))),
        "never-auid-outside-the-query": Case(
            [f"{N} -F auid=500", f"{A} {IDS}"], f"{A} {IDS}", (Trigger(auid=1000),)
        ),
        "never-exe": Case([f"{N} -F exe={{python}}", A], A, (Trigger(), Trigger(perl=True))),
    },
    "watches": {
        "never-before-watch": Case([N, W], W),
        "watch-before-never": Case([W, N], W),
        "watch-then-dash-A-never": Case([W, "-A never,exit -F arch=b64 -S truncate"], W),
        "never-all-before-watch": Case(["-a never,exit -F arch=b64 -S all", W], W),
        "never-dir-before-watch": Case(["-a never,exit -F dir={dir}", W], W),
        "never-other-dir-before-watch": Case(["-a never,exit -F dir={other}", W], W),
        "never-path-before-always": Case(["-a never,exit -F path={file}", A], A),
    },
    "exclude": {
        "never-exclude-syscall": Case(["-a never,exclude -F msgtype=SYSCALL", A], A),
        "always-exclude-syscall-after": Case([A, "-a always,exclude -F msgtype=SYSCALL"], A),
        "exclude-path-watch": Case(["-a never,exclude -F msgtype=PATH", W], W),
        "exclude-path-syscall-rule": Case(["-a never,exclude -F msgtype=PATH", A], A),
        "exclude-cwd-watch": Case(["-a never,exclude -F msgtype=CWD", W], W),
        "exclude-syscall-of-one-auid": Case(
            ["-a never,exclude -F msgtype=SYSCALL -F auid=4242", A], A, (Trigger(), Trigger(auid=4242))
        ),
    },
    "task-and-filesystem": {
        "never-task": Case(["-a never,task", A], A),
        "never-filesystem-of-the-file": Case(["-a never,filesystem -F fstype={fs}", W], W),
        "always-only": Case([A], A),
    },
}
_RECORD = re.compile(r"type=(\w+) msg=audit\([\d.]+:(\d+)\): (.*)")


def _fs_magic(path: Path) -> str:
    out = subprocess.run(["stat", "-f", "-c", "%t", str(path)], capture_output=True, text=True, check=True)
    return "0x" + out.stdout.strip()


def _keyed(rule: str, key: str) -> str:
    """The rule with the case's key, where the kernel takes one (the exit list, watches).
    As `-F key=`: secpolicy's reading of auditctl refuses `-k` after only a dir= or path=
    filter, which auditctl 3.0.9 loads."""
    return f"{rule} -F key={key}" if rule.startswith("-w") or rule.split()[1].endswith(",exit") else rule


def _events(log: Path, end: str) -> list[list[tuple[str, str]]]:
    """The log's events (records of one serial), once the record of removing the rule keyed
    `end` (the last change of a case) is there: every earlier event is then written."""
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if f'op=remove_rule key="{end}"' in text:
            break
        assert time.monotonic() < deadline, f"the removal of the rule keyed {end} is not logged"
        time.sleep(0.1)
    serials: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        m = _RECORD.match(line)
        if m:
            serials.setdefault(m.group(2), []).append((m.group(1), m.group(3)))
    return list(serials.values())


def _logged(events: list[list[tuple[str, str]]], pid: int, path: str, nr: str) -> set[str]:
    """The record types of the truncate(2) event of process `pid` (without its SYSCALL record
    the kernel logs no record of a syscall event), its PATH record only if it names `path`."""
    for recs in events:
        if any(t == "SYSCALL" and f" syscall={nr} " in b and re.search(rf"\bpid={pid}\b", b) for t, b in recs):
            return {t for t, b in recs if t != "PATH" or f'name="{path}"' in b}
    return set()


@pytest.mark.parametrize("group", list(GROUPS))
def test_the_fact_says_covered_exactly_when_the_kernel_logs_the_events(
    group: str, audit_log: Path, tmp_path: Path
) -> None:
    disagree = []
    for n, (name, case) in enumerate(GROUPS[group].items()):
        here = tmp_path / name
        here.mkdir()
        told = _run(case, name, f"spnever{os.getpid()}{group[:4]}{n}", audit_log, here)
        if told:
            disagree.append(told)
    assert not disagree, "\n".join(disagree)


def _run(case: Case, name: str, key: str, audit_log: Path, tmp_path: Path) -> str | None:
    """The case loaded, persisted and in the kernel: None if both verdicts of the fact are what
    the kernel logged, else what each said."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    work = Path(tempfile.mkdtemp(prefix="sp-never-", dir=base))
    try:
        target = work / "target"
        target.write_text("x")
        (tmp_path / "elsewhere").mkdir()
        values = {"file": str(target), "dir": str(work), "other": str(tmp_path / "elsewhere"),
                  "python": PYTHON, "fs": _fs_magic(work)}
        # the first rule (removed last) marks the end of the case in the log
        rules = [f"-a always,exit -F arch=b64 -S acct -F key={key}"]
        rules += [_keyed(r.format(**values), key) for r in case.rules]
        query = case.query.format(**values)

        root = tmp_path / "root"
        (root / "etc/audit/rules.d").mkdir(parents=True)
        (root / "etc/audit/rules.d/50-probe.rules").write_text("\n".join(rules) + "\n")
        persisted = FactContext(builtin_registry(), str(root)).fact("audit_rules", ())
        assert persisted.errors == ()

        nr = subprocess.run([str(AUSYSCALL), "--exact", "truncate"], capture_output=True, text=True,
                            check=True).stdout.strip()
        added: list[list[str]] = []
        pids: dict[int, Trigger] = {}
        try:
            for r in rules:
                auditctl(*r.split())
                added.append(r.split())
            live = FactContext(builtin_registry(), "/").fact("audit_rules", ())
            fact_loaded, where_loaded = live.has_loaded(query), live.where("has_loaded", query)
            for t in case.triggers:
                proc = subprocess.Popen(t.argv(str(target)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                _out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                pids[proc.pid] = t
        finally:
            for argv in reversed(added):
                auditctl({"-a": "-d", "-A": "-d", "-w": "-W"}[argv[0]], *argv[1:], check=False)
        events = _events(audit_log, key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    needed = {"SYSCALL", "PATH"} if query.startswith("-w") else {"SYSCALL"}
    seen = {t: _logged(events, pid, str(target), nr) for pid, t in pids.items()}
    kernel = all(needed <= types for types in seen.values())
    told = (f"{name}: rules {rules}, query {query!r}; the kernel logged {seen}; "
            f"has: {persisted.where('has', query)}; has_loaded: {where_loaded}")
    if persisted.has(query) == kernel == fact_loaded:
        return None
    return f"{told}; the kernel {'logs' if kernel else 'does not log'} them"
