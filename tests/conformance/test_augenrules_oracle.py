"""CIS Debian 12 6.2.3.21 against the real components: `augenrules` and `augenrules --check`
(run in a private mount namespace, the test's tree bound over /etc/audit) for the merge of
rules.d and its comparison with audit.rules, and the kernel (`auditctl -R` of rules under this
test's own keys, `auditctl -l`, removed afterwards) for the loaded rules against audit.rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.facts import augenrules as aug
from secpolicy.facts.audit_rules import AUDIT_FILTERKEY, _read_loaded, boot_rules, compare_loaded
from secpolicy.vocabulary import builtin_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from augenrules_run import run_augenrules

ROOT_NEEDED = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, audit rules)")
DEBIAN_DEFAULT = (
    "## First rule - delete all\n-D\n\n## Increase the buffers to survive stress events.\n"
    "## Make this bigger for busy systems\n-b 8192\n\n## This determine how long to wait in burst of events\n"
    "--backlog_wait_time 60000\n\n## Set failure mode to syslog\n-f 1\n\n"
)


def _tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if path is None:
        pytest.skip(f"{name} is not installed (package auditd)")
    return path


def _augenrules(audit_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_augenrules(_tool("augenrules"), audit_dir, *args)


# Each tree: the files under etc/audit (a str or bytes is a file, ("link", target) a symlink,
# ("dir",) a directory), and audit.rules: "merge" (what augenrules writes), None (absent), or a
# function of the merge's bytes.
Edit = Callable[[bytes], bytes]
TREES: dict[str, tuple[dict[str, object], str | Edit | None]] = {
    "debian default": ({"rules.d/audit.rules": DEBIAN_DEFAULT}, "merge"),
    "ls -v order, names that are not rules files left out": (
        {
            "rules.d/10-a.rules": "-w /etc/a10 -p wa\n",
            "rules.d/9-b.rules": "-w /etc/b9 -p wa\n",
            "rules.d/100-c.rules": "-w /etc/c100 -p wa\n",
            "rules.d/a.rules": "-w /etc/a -p wa\n",
            "rules.d/B.rules": "-w /etc/B -p wa\n",
            "rules.d/50-x.1.rules": "-w /etc/x1 -p wa\n",
            "rules.d/50-x.10.rules": "-w /etc/x10 -p wa\n",
            "rules.d/50-x.9~.rules": "-w /etc/x9 -p wa\n",
            "rules.d/50-x.rules~": "-w /etc/backup -p wa\n",
            "rules.d/50-x.rules.bak": "-w /etc/bak -p wa\n",
            "rules.d/.hidden.rules": "-w /etc/hidden -p wa\n",
            "rules.d/README": "-w /etc/readme -p wa\n",
        },
        "merge",
    ),
    "-D, -b, -f and -e in several files: the last of each moves": (
        {
            "rules.d/10-first.rules": "-D\n-b 320\n-f 2\n-e 0\n-w /etc/one -p wa\n",
            "rules.d/20-second.rules": "-D -k foo\n-b 8192\n -e 1\n\t-b 64\n-Dss\n-w /etc/two -p wa\ns-e 2\n",
            "rules.d/30-third.rules": "-f 1\n-D \n--backlog_wait_time 60000\n-e 2\n-w /etc/three -p wa\n",
        },
        "merge",
    ),
    "comments and blank lines": (
        {"rules.d/50.rules": "# comment\n  # indented comment\ns# mawk's comment\n\n   \n-w /etc/x -p wa # tail\n\n"},
        "merge",
    ),
    "CRLF line ends": ({"rules.d/50.rules": "-D\r\n# c\r\n-w /etc/x -p wa\r\n-e 2\r\n\r\n"}, "merge"),
    "a file without a final newline runs into the next": (
        {"rules.d/10.rules": "-w /etc/x -p wa\n-w /etc/y", "rules.d/20.rules": " -p wa\n-w /etc/z -p wa"},
        "merge",
    ),
    "symlinked rules files, a dangling one, a directory named .rules": (
        {
            "extra/x.rules": "-w /etc/linked -p wa\n",
            "extra/y": "-w /etc/abs-linked -p wa\n",
            "rules.d/20-x.rules": ("link", "../extra/x.rules"),
            "rules.d/30-y.rules": ("link", "/etc/audit/extra/y"),
            "rules.d/40-gone.rules": ("link", "../extra/missing"),
            "rules.d/50-d.rules": ("dir",),
            "rules.d/60.rules": "-w /etc/last -p wa\n",
        },
        "merge",
    ),
    "a name with a blank is two words": (
        {"rules.d/a b.rules": "-w /etc/whole -p wa\n", "rules.d/b.rules": "-w /etc/b -p wa\n",
         "rules.d/a": "-w /etc/a-alone -p wa\n"},
        "merge",
    ),
    "NUL and non-UTF-8 bytes pass through": (
        {"rules.d/50.rules": b"-w /etc/x\x00y -p wa\n-w /etc/\xff -p wa\n"},
        "merge",
    ),
    "an empty rules.d": ({"rules.d": ("dir",)}, "merge"),
    "an empty rules.d, no audit.rules": ({"rules.d": ("dir",)}, None),
    "no audit.rules": ({"rules.d/50.rules": "-w /etc/x -p wa\n"}, None),
    "no rules.d": ({"other": "x\n"}, lambda _merge: b"-w /etc/x -p wa\n"),
    "audit.rules differs in one line": (
        {"rules.d/50.rules": "-w /etc/x -p wa\n-w /etc/y -p wa\n-e 2\n"},
        lambda b: b.replace(b"/etc/y", b"/etc/Y"),
    ),
    "audit.rules without its final newline": ({"rules.d/50.rules": "-w /etc/x -p wa\n"}, lambda b: b[:-1]),
    "audit.rules with a line more": ({"rules.d/50.rules": "-w /etc/x -p wa\n"}, lambda b: b + b"\n"),
    "audit.rules with a line less": ({"rules.d/50.rules": "-w /etc/x -p wa\n-e 2\n"}, lambda b: b[: b.rindex(b"-e")]),
    "audit.rules in CRLF": ({"rules.d/50.rules": "-w /etc/x -p wa\n"}, lambda b: b.replace(b"\n", b"\r\n")),
    "a symlinked rules.d": ({"real/50.rules": "-w /etc/x -p wa\n", "rules.d": ("link", "real")}, "merge"),
}


def _build(audit_dir: Path, files: dict[str, object]) -> None:
    audit_dir.mkdir(parents=True)
    for rel, content in files.items():
        path = audit_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):
            if content[0] == "link":
                path.symlink_to(str(content[1]))
            else:
                path.mkdir(exist_ok=True)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)  # type: ignore[union-attr]


def _first_difference(have: bytes, want: bytes) -> int:
    a, b = have.splitlines(keepends=True), want.splitlines(keepends=True)
    return next(i for i in range(1, max(len(a), len(b)) + 1) if a[i - 1 : i] != b[i - 1 : i])


@ROOT_NEEDED
@pytest.mark.parametrize("name", list(TREES))
def test_merge_and_check_are_what_augenrules_makes_and_says(tmp_path: Path, name: str) -> None:
    files, audit_rules = TREES[name]
    # what augenrules writes, made in a copy of the tree
    made = tmp_path / "made/etc/audit"
    _build(made, files)
    _augenrules(made)
    real_merge = (made / "audit.rules").read_bytes() if (made / "audit.rules").exists() else None
    # the tree checked, with its audit.rules
    root = tmp_path / "root"
    _build(root / "etc/audit", files)
    ctx = FactContext(builtin_registry(), str(root))
    ours = aug.merge(ctx)
    if real_merge is None:
        assert ours is None
    else:
        assert ours is not None and ours.data == real_merge
    if audit_rules == "merge":
        assert real_merge is not None
        (root / "etc/audit/audit.rules").write_bytes(real_merge)
    elif callable(audit_rules):
        (root / "etc/audit/audit.rules").write_bytes(audit_rules(real_merge or b""))
    said = _augenrules(root / "etc/audit", "--check")
    message = said.stdout.decode().strip().split(": ", 1)[1]
    check = aug.check(FactContext(builtin_registry(), str(root)))
    assert check.message == message, (check, said)
    disk = root / "etc/audit/audit.rules"
    if message == aug.CHANGED and disk.is_file() and real_merge is not None:
        n = _first_difference(disk.read_bytes(), real_merge)
        assert re.search(rf"(audit\.rules:{n} |audit\.rules:{n - 1} is its last line;)", check.where), (n, check.where)


def test_a_name_the_shell_would_expand_is_an_error(tmp_path: Path) -> None:
    _build(tmp_path / "etc/audit", {"rules.d/5[0].rules": "-w /etc/x\n"})
    with pytest.raises(EvaluationError, match=r"5\[0\]\.rules.*pattern"):
        aug.check(FactContext(builtin_registry(), str(tmp_path)))


# --- the kernel: loaded rules against audit.rules -----------------------------------------------
PREFIX = f"zzsp6221_{os.getpid()}_"


def _auditctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("auditctl"), *args], capture_output=True, text=True, timeout=30, check=False)


def _mine() -> tuple[list, list]:
    """The loaded rules that carry this test's keys, with the kernel's strings of each."""
    rules, kernel = _read_loaded()
    keep = [i for i, s in enumerate(kernel) if any(f == AUDIT_FILTERKEY and v.startswith(PREFIX) for f, v in s)]
    return [rules[i] for i in keep], [kernel[i] for i in keep]


def _verdict(tmp: Path, disk: str, loaded: str) -> tuple[bool, str]:
    """Load `loaded` into the kernel, compare what it lists of ours with `disk` as audit.rules."""
    path = tmp / "load.rules"
    path.write_text(loaded)
    try:
        _auditctl("-R", str(path))
        have, kernel = _mine()
        want, read = boot_rules(disk.encode())
        return compare_loaded(want, have, kernel, FactContext(builtin_registry(), "/"), read)
    finally:
        _auditctl("-D", "-k", PREFIX)
        assert PREFIX not in _auditctl("-l").stdout, "test audit rules left in the kernel"


@ROOT_NEEDED
@pytest.mark.xdist_group("live")
def test_loaded_rules_are_compared_with_audit_rules_as_the_kernel_lists_them(tmp_path: Path) -> None:
    if re.search(r"^enabled 2", _auditctl("-s").stdout, re.MULTILINE):
        pytest.fail("the kernel's audit rules are locked (-e 2) until reboot: cannot load test rules")
    d, f = tmp_path / "d", tmp_path / "f"
    d.mkdir()
    f.touch()
    k = PREFIX
    base = (
        f"-a never,filesystem -F fstype=debugfs -k {k}fs\n"  # listed after the exit list
        f"-w {d} -p wa -k {k}dir\n"
        f"-w {f} -k {k}file\n"
        f"-a always,exit -F arch=b64 -S openat,open -F auid>=1000 -F auid!=-1 -k {k}a -k {k}b\n"
        f"-a exit,always -F arch=b32 -S chmod -F uid=4242 -F key={k}c\n"
        f"-a always,exit -F dir={d} -F perm=r -F auid=4243 -k {k}tree\n"
        f"-A always,exit -F arch=b64 -S uname -F uid=4244 -k {k}first\n"
    )
    same, where = _verdict(tmp_path, base, base)
    assert same, where
    # written otherwise, loaded the same
    assert _verdict(tmp_path, base, base.replace("auid!=-1", "auid!=unset").replace("openat,open", "open -S openat"))[0]
    # one rule missing from the kernel, one more there, two swapped
    lines = base.splitlines(keepends=True)
    same, where = _verdict(tmp_path, base, "".join(lines[:3] + lines[4:]))
    assert not same and "audit.rules:4" in where and "-S openat,open" in where, where
    same, where = _verdict(tmp_path, base, base + f"-w {tmp_path} -p x -k {k}extra\n")
    assert not same and "extra" in where, where
    same, where = _verdict(tmp_path, base, "".join([lines[0], lines[2], lines[1], *lines[3:]]))
    assert not same and "audit.rules:2" in where, where
    # what auditctl -l prints alike: a tree against a watch, keys in another order, a repeated filter
    same, where = _verdict(tmp_path, base, base.replace(f"-w {d} -p wa", f"-a always,exit -F path={d} -F perm=wa"))
    assert not same and "single watch" in where, where
    same, where = _verdict(tmp_path, base, base.replace(f"-k {k}a -k {k}b", f"-k {k}b -k {k}a"))
    assert not same and "keys" in where, where
    same, where = _verdict(tmp_path, base, base.replace("-F uid=4242", "-F uid=4242 -F uid=4242"))
    assert not same and "repeated" in where, where
    # a syscall number on disk is listed by name: not told, an error naming the rule
    numbered = base.replace("-S uname", "-S 63")
    with pytest.raises(EvaluationError, match=r"audit\.rules:7.*cannot be told"):
        _verdict(tmp_path, numbered, numbered)
