"""auditctl's reading of one rules-file line, asked of the real auditctl: each line is loaded
with `auditctl -R` (followed by a sentinel rule that tells whether the load went on), what the
kernel then holds is read with `auditctl -l`, and secpolicy.facts.auditctl must say the same:
refused (and the load stops), accepted without a rule (and it goes on), or the same rule."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from secpolicy.facts.auditctl import AuditRule, RuleSyntaxError, parse_rule, parse_words, words

AUDITCTL = shutil.which("auditctl") or next(
    (p for p in ("/usr/sbin/auditctl", "/sbin/auditctl") if os.path.exists(p)), None
)
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loading audit rules needs root (CAP_AUDIT_CONTROL)"),
    pytest.mark.skipif(AUDITCTL is None, reason="auditctl is not installed (Debian package auditd)"),
    # the rules are the kernel's: one after another, with the other tests that load rules
    pytest.mark.xdist_group("live"),
]
PREFIX = f"zzal{os.getpid()}_"
# after each line: loaded exactly when auditctl went on past the line
SENTINEL = "-a always,exit -F arch=b64 -S uname -F uid=424242 -k {P}after"

# {K} a key, {D} an existing directory, {P} a prefix for paths: all of this test's own.
# Lines of the kinds where secpolicy and auditctl 3.0.9 disagreed (with neighbours that agreed
# all along), then a sample of lines that always agreed.
LINES = [
    # a key after a path, dir or fstype field (no -S): loaded
    "-a never,exit -F dir={D} -k {K}",
    "-a always,exit -F path={D}/f -k {K}",
    "-a never,filesystem -F fstype=tracefs -k {K}",
    # -F key= is checked at the end of the line; another spelling is a key field of its own
    "-a always,exit -F uid=0 -F key={K}",
    "-a always,exit -F arch=b64 -S openat -F Key={K} -k {K}b",
    "-a always,exit -F arch=b64 -S openat -F key= -k {K}",
    # syscall names without regard to case, numbers read by strtol, "all" with case
    "-a always,exit -F arch=b64 -S OPENAT -k {K}",
    "-a always,exit -F arch=b64 -S ALL -k {K}",
    "-a always,exit -F arch=0xc000003e -S openat -k {K}",
    # what the kernel refuses
    "-a always,exit -F path={D}/f/ -F perm=wa -k {K}",
    "-a always,exit -F path=/ -F perm=wa -k {K}",
    "-a always,exit -F path={D}/f -F perm!=wa -k {K}",
    "-a always,exit -F path={D}/f -F inode=5 -k {K}",
    "-a always,exit -F exe=/usr/bin/{P}x/ -k {K}",
    "-a always,exit -F exe=/usr/bin/{P}a -F exe=/usr/bin/{P}b -k {K}",
    "-a always,exit -F arch=b64 -S openat -F pid&1 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F exit&13 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F uid=-1 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F filetype>file -k {K}",
    "-a always,filesystem -F fstype=tracefs -F uid=0 -k {K}",
    # what libaudit refuses
    "-a always,exit -F exe>/usr/bin/{P}x -k {K}",
    "-a always,exit -F arch=b64 -S openat -F inode>5 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F gid=unset -k {K}",
    "-a always,exit -F arch=b64 -S connect -F saddr_fam=46 -k {K}",
    "-a always,exit -F arch=b64 -S openat -C uid=gid -k {K}",
    "-a always,exit -F arch=b64 -S openat -F uid=1!=2 -k {K}",
    "-a always,exclude -F euid=0 -F exe=/usr/bin/{P}x",
    "-a always,user -F exit=1 -F exe=/usr/bin/{P}x",
    "-w {D}/w -a always,exit -k {K}",
    "-a always,exit -F arch=b64 -S openat -k {K} -l",
    "-a always,exit -F path={D}/" + "x/" * 2100 + "f -k {K}",
    "-a always,exit -S openat " + " ".join(f"-F a0!={i}" for i in range(63)) + " -k {K}",
    # what libaudit accepts
    "-a always,user -F exe=/usr/bin/{P}x -k {K}",
    "-a never,exclude -F exe=/usr/bin/{P}x",
    "-a always,exit -F dir=// -F perm=wa -k {K}",
    "-a always,exit -F dir={D}// -F perm=wa -k {K}",
    "-w {D}/w -p wa -S openat -k {K}",
    # values as the kernel holds them (auditctl -l prints them back)
    "-a always,exit -F arch=b64 -S openat -F filetype=file -k {K}",
    "-a always,exit -F arch=b64 -S openat -F uid=99999999999 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F pid=4294967295 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F a0=-1 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F sessionid=unset -k {K}",
    "-a always,exit -F arch=b64 -S connect -F saddr_fam=abc -k {K}",
    # lines that load nothing and let the load go on
    "-a exit,possible -k {K}",
    "-a always,exit -F arch=b64 -S openat -k {K} -i",
    "-c -w {D}/w -k {K}",
    "-i -k {K}",
    # lines that always agreed
    "-a always,exit -F arch=b64 -S openat -k {K}",
    "-a exit,always -F arch=b32 -S socketcall -k {K}",
    "-A always,exit -F arch=b64 -S openat -F exit=-EACCES -k {K}",
    "-a always,exit -F arch=b64 -S openat -F auid>=1000 -F auid!=unset -k {K}",
    "-a always,exit -F arch=b64 -S openat -C euid!=uid -k {K}",
    "-a always,exit -F arch=b64 -S openat -F a0&1 -k {K}",
    "-a always,exit -F arch=b64 -S openat -F success=yes -k {K}",
    "-a always,exit -F arch=b64 -S openat -F dir={D} -k {K}",
    "-a always,exit -F dir={D}/ -F perm=wa -k {K}",
    "-w {D}/w -p wa -k {K}",
    "-w {D}/w -a exit,always -k {K}",
    "-w {D}/w -p wa -F key={K} -k {K}b",
    "-a never,exclude -F msgtype=CWD -F exe=/usr/bin/{P}x",
    "-a always,exit -F arch=b64 -S openat -k {K} -k {K}b",
    "-a always,exit -F arch=b64 -S openat -F uid=0 -F key={K}",
    "-a always,exit -F arch=b64 -F auid>=1000 -k {K}",
    "-a always,exit -S openat -F arch=b64 -k {K}",
    "-a always,task -F exe=/usr/bin/{P}x -k {K}",
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert AUDITCTL is not None
    return subprocess.run([AUDITCTL, *args], capture_output=True, text=True, timeout=30, check=False)


def _listed() -> list[str]:
    out = _run("-l")
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _remove_ours(prefix: str) -> None:
    """Delete every rule holding `prefix` (in its key, path or exe), and only those."""
    _run("-D", "-k", prefix)  # the rules whose key holds the prefix (auditctl uses strstr)
    for line in [x for x in _listed() if prefix in x]:
        w = line.split(" ")
        _run({"-a": "-d", "-w": "-W"}[w[0]], *w[1:])
    assert not [x for x in _listed() if prefix in x], "test audit rules left in the kernel"


def _resolve(kind: str, name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid if kind == "user" else grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _shape(r: AuditRule) -> tuple:
    return (r.list, r.action, r.arch, r.syscalls, r.fields, r.path, r.perm, r.keys)


@pytest.fixture
def unlocked() -> Iterator[None]:
    if any(x.strip() == "enabled 2" for x in _run("-s").stdout.splitlines()):
        pytest.skip("audit rules are locked (-e 2) on this host until reboot")
    yield


@pytest.mark.parametrize("template", LINES, ids=range(len(LINES)))
def test_a_line_is_read_as_auditctl_loads_it(tmp_path: Path, unlocked: None, template: str) -> None:
    prefix = f"{PREFIX}{LINES.index(template)}_"
    d = tmp_path / f"{prefix}d"
    d.mkdir()
    line = template.replace("{K}", f"{prefix}k").replace("{D}", str(d)).replace("{P}", prefix)
    try:
        ours: AuditRule | None = parse_words(words(line) or [], line, resolve=_resolve)
    except RuleSyntaxError as e:
        ours, why = None, str(e)
    rules = tmp_path / "one.rules"
    rules.write_text(f"{line}\n{SENTINEL.format(P=prefix)}\n")
    rules.chmod(0o600)
    try:
        out = _run("-R", str(rules))
        mine = [x for x in _listed() if prefix in x]
    finally:
        _remove_ours(prefix)
    went_on = any(f"{prefix}after" in x for x in mine)
    loaded = [x for x in mine if f"{prefix}after" not in x]
    said = out.stderr.strip()
    if ours is None:
        assert (went_on, loaded) == (False, []), f"we refuse ({why}), auditctl loaded {loaded}"
    elif ours.kind in ("flag", "noop"):
        assert (went_on, loaded) == (True, []), f"we load nothing and go on; auditctl: {said} {mine}"
    else:
        assert went_on and len(loaded) == 1, f"we load {ours.text!r}; auditctl: {said} {mine}"
        assert _shape(parse_rule(loaded[0])) == _shape(ours), loaded[0]
