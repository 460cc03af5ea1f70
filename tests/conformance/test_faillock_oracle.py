"""pam_faillock asked about the lockout it enforces: the faillock fact (`with_args`, `locks`) and
pci-8.3.4 against libpam 1.5.2 running pam_faillock and pam_unix through pamtester, for a test
account, in a private mount namespace (the stack over /etc/pam.d, faillock.conf over
/etc/security, the account files over /etc, a tmpfs over /run for the tallies).

The oracle's copy of a stack adds `nodelay` to the pam_unix and pam_faillock lines: both
otherwise ask libpam for a 2-second delay after each failure, and the flag does nothing else."""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, /etc/shadow)")

_PASSWD = "root:x:0:0:root:/root:/bin/bash\nflt:x:1500:1500::/nonexistent:/bin/bash\n"
# the password is Right-pass-1
_SHADOW = (
    "root:*:19000:0:99999:7:::\nflt:$6$fltest$7ONyQBbu3VdOPOuyhlQcTKRGX4S9d6O8X/s5WE0t5J/.89JB4zgVjb5"
    ".bfcGZVXP7QJgmD18WMiJzByhDFjT30:19000:0:99999:7:::\n"
)
_GROUP = "root:x:0:\nflt:x:1500:\n"
_ACCOUNT = "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\naccount\trequisite\tpam_deny.so\n" \
    "account\trequired\tpam_permit.so\naccount\trequired\tpam_faillock.so\n"

# w: a wrong password, r: the right one, s: 3 seconds pass. Prints per attempt the step,
# pamtester's exit code and the minutes pam_faillock says are left; then the tally files.
_ORACLE = r"""
set -e
mount --bind "$1/pam.d" /etc/pam.d
mount --bind "$1/security" /etc/security
for f in passwd shadow group; do mount --bind "$1/$f" "/etc/$f"; done
mount -t tmpfs tmpfs /run
set +e
for s in $3; do
  case $s in
    w) pw=Wrong-pass-0 ;;
    r) pw=Right-pass-1 ;;
    s) sleep 3; continue ;;
  esac
  out=$(printf '%s\n' "$pw" | "$2" probe flt authenticate 2>&1); rc=$?
  echo "$s $rc $(printf '%s' "$out" | grep -o '([0-9]* minutes\? left' | grep -o '[0-9]*')"
done
echo "tally $(cd /run && find . -type f | sort | tr '\n' ' ')"
"""


def _pamtester() -> str:
    for path in ("/usr/bin/pamtester", shutil.which("pamtester") or ""):
        if path and os.access(path, os.X_OK) and shutil.which("unshare"):
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("pamtester or unshare is missing: run scripts/setup.sh --with-test-tools")
    pytest.skip("pamtester or unshare is not installed")


def _tree(root: Path, auth: str, files: dict[str, str]) -> None:
    for rel, text in {"etc/pam.d/common-auth": auth, "etc/pam.d/common-account": _ACCOUNT,
                      "etc/passwd": _PASSWD, "etc/shadow": _SHADOW, "etc/group": _GROUP, **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _oracle(root: Path, steps: str) -> tuple[list[tuple[str, int, int | None]], list[str]]:
    """pamtester running the tree's common-auth (nodelay added) for each step."""
    stage = root.parent / (root.name + "-oracle")
    (stage / "pam.d").mkdir(parents=True)
    shutil.copytree(root / "etc/security", stage / "security") if (root / "etc/security").exists() \
        else (stage / "security").mkdir()
    lines = []
    for line in (root / "etc/pam.d/common-auth").read_text().splitlines():
        if re.search(r"\bpam_(unix|faillock)\.so\b", line):
            line += " nodelay"
        lines.append(line)
    (stage / "pam.d/probe").write_text("\n".join(lines) + "\n")
    for f in ("passwd", "shadow", "group"):
        shutil.copy(root / "etc" / f, stage / f)
    os.chmod(stage / "shadow", 0o640)
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", _ORACLE, "bash",
                           str(stage), _pamtester(), steps], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    results = []
    for line in out[:-1]:
        step, rc, *minutes = line.split()
        results.append((step, int(rc), int(minutes[0]) if minutes else None))
    return results, out[-1].split()[1:]


def _fact(root: Path):
    ctx = FactContext(builtin_registry(), str(root))
    return ctx.fact("faillock", ()), ctx.fact("pam", ("common-auth",))


def _verdict(bundle, root: Path, rule_id: str) -> str:
    ps, reg = bundle
    (finding,) = scan(ps, reg, root=str(root), rule_ids=[rule_id]).findings
    return finding.status.value


# --- the stack: does a failure of pam_unix reach a pam_faillock that counts it, and does the ------
# --- right password then stop at one that checks? ------------------------------------------------
_PRE = "auth\trequisite\tpam_faillock.so preauth"
_UNIX2 = "auth\t[success=2 default=ignore]\tpam_unix.so"
_FAIL = "auth\t[default=die]\tpam_faillock.so authfail"
_DENY = "auth\trequisite\tpam_deny.so"
_PERMIT = "auth\trequired\tpam_permit.so"
_STACKS = {
    "cis-profile": [_PRE, _UNIX2, _FAIL, _DENY, _PERMIT],
    "preauth-only": [_PRE, "auth\t[success=1 default=ignore]\tpam_unix.so", _DENY, _PERMIT],
    "authfail-only": [_UNIX2.replace("2", "1"), _FAIL, _PERMIT],
    "authfail-after-deny": [_PRE, "auth\t[success=2 default=ignore]\tpam_unix.so", _DENY, _FAIL, _PERMIT],
    "unix-requisite": [_PRE, "auth\trequisite\tpam_unix.so", _FAIL.replace("[default=die]", "optional"), _PERMIT],
    "preauth-optional": [_PRE.replace("requisite", "optional"), _UNIX2, _FAIL, _DENY, _PERMIT],
    "authsucc-required": ["auth\t[success=1 default=ignore]\tpam_unix.so", _FAIL, "auth\trequired\tpam_faillock.so authsucc"],
    "authsucc-sufficient": ["auth\t[success=1 default=ignore]\tpam_unix.so", _FAIL,
                            "auth\tsufficient\tpam_faillock.so authsucc", _PERMIT],
    "bare-line-is-preauth": ["auth\trequisite\tpam_faillock.so", _UNIX2, _FAIL, _DENY, _PERMIT],
    "other-tally-dir": [_PRE, _UNIX2, _FAIL + " dir=/run/faillock-other", _DENY, _PERMIT],
    "authfail-deny-0": [_PRE, _UNIX2, _FAIL + " deny=0", _DENY, _PERMIT],
    "preauth-deny-0": [_PRE + " deny=0", _UNIX2, _FAIL, _DENY, _PERMIT],
    # authfail stops counting at the file's 3 (it checks first), preauth waits for 8: never locks
    "preauth-deny-above-authfail": [_PRE + " deny=8", _UNIX2, _FAIL, _DENY, _PERMIT],
    "fail-interval-0": [_PRE + " fail_interval=0", _UNIX2, _FAIL + " fail_interval=0", _DENY, _PERMIT],
    "jump-past-end": [_PRE, "auth\t[success=5 default=ignore]\tpam_unix.so", _FAIL, _PERMIT],
}
_CONF = {"etc/security/faillock.conf": "deny = 3\nunlock_time = 1800\n"}

_CONTROLS = ["required", "requisite", "optional", "sufficient", "[default=die]", "[success=ok default=ignore]",
             "[success=1 default=ignore]", "[success=2 default=ignore]", "[success=done default=ignore]",
             "[default=bad]", "[success=ok default=reset]", "[ignore=ignore success=ok default=die]"]
_MODULES = ["pam_faillock.so preauth", "pam_faillock.so authfail", "pam_faillock.so authsucc", "pam_unix.so",
            "pam_deny.so", "pam_permit.so", "pam_faillock.so authfail fail_interval=0", "pam_faillock.so preauth deny=0"]


def _random_stacks(n: int, seed: int = 20240) -> dict[str, list[str]]:
    rnd = random.Random(seed)
    out = {}
    for k in range(n):
        lines = [f"auth\t{rnd.choice(_CONTROLS)}\tpam_unix.so"]
        for _ in range(rnd.randint(2, 5)):
            lines.insert(rnd.randint(0, len(lines)), f"auth\t{rnd.choice(_CONTROLS)}\t{rnd.choice(_MODULES)}")
        out[f"random-{k}"] = lines
    return out


_ALL_STACKS = {**_STACKS, **_random_stacks(12)}


@pytest.mark.parametrize("case", sorted(_ALL_STACKS))
def test_locks_is_what_pam_faillock_does_with_the_stack(bundle, tmp_path, case) -> None:
    root = tmp_path / "root"
    _tree(root, "\n".join(_ALL_STACKS[case]) + "\n", _CONF)
    results, _tally = _oracle(root, " ".join(["w"] * 10 + ["r"]))
    wrong_in = any(rc == 0 for s, rc, _ in results if s == "w")
    locked = not wrong_in and results[-1][1] != 0
    faillock, stack = _fact(root)
    assert faillock.locks(stack, 10, 1) == locked, (results, faillock.where("locks", stack, 10, 1))
    # pci-8.3.4 passes exactly where pam_faillock locks after 10 and for 30 minutes (what it says
    # is left when preauth refuses; faillock.conf says 1800 s), every line's deny being 1 to 10
    minutes = results[-1][2]
    values = all(0 < faillock.with_args(e).int("deny") <= 10 for e in stack.entries if e.module == "pam_faillock.so")
    expect = "pass" if locked and (minutes is None or minutes >= 30) and stack.has_module("pam_faillock.so") and values \
        else "fail"
    assert _verdict(bundle, root, "pci-8.3.4-lockout-policy") == expect, results


def test_an_ordinary_stack_lets_the_right_password_in_until_locked(tmp_path) -> None:
    root = tmp_path / "root"
    _tree(root, "\n".join(_STACKS["cis-profile"]) + "\n", _CONF)
    results, tally = _oracle(root, "r w w w r")
    assert [rc == 0 for _, rc, _ in results] == [True, False, False, False, False]
    assert results[-1][2] == 30  # "(30 minutes left to unlock)"
    assert tally == ["./faillock/flt"]


# --- faillock.conf and the line's arguments, as pam_faillock reads them ---------------------------
_LINE = "auth\trequisite\tpam_faillock.so preauth{a}\nauth\t[success=1 default=ignore]\tpam_unix.so\n" \
    "auth\t[default=die]\tpam_faillock.so authfail{a}\nauth\trequired\tpam_permit.so\n"
_PARSE = {
    "comments": ("", "# deny = 1\ndeny = 4 # four\n  #unlock_time = 60\nunlock_time = 1800\n"),
    "no-spaces": ("", "deny=2\nunlock_time=1800\n"),
    "blank-separated": ("", "deny 2\nunlock_time\t1800\n"),
    "duplicates-last-wins": ("", "deny = 2\nunlock_time = 60\ndeny = 4\nunlock_time = 1800\n"),
    "unknown-key-skipped": ("", "denyy = 1\ndeny = 4\nfoo\nunlock_time = 1800\n"),
    "upper-case-is-unknown": ("", "DENY = 1\ndeny = 4\nUNLOCK_TIME = 60\nunlock_time = 1800\n"),
    "refused-value-keeps-earlier": ("", "deny = 2\ndeny = abc\nunlock_time = 1800\nunlock_time = 999999\n"),
    "number-prefix": ("", "deny = 3abc\nunlock_time = 1800s\n"),
    "deny-minus-one": ("", "deny = -1\nunlock_time = 1800\n"),
    "never": ("", "deny = 3\nunlock_time = never\n"),
    "flags": ("", "deny = 3\nunlock_time = 1800\neven_deny_root\nlocal_users_only\nroot_unlock_time = 60\n"),
    "dir": ("", "deny = 2\nunlock_time = 1800\ndir = /run/faillock-site\n"),
    "relative-dir-refused": ("", "deny = 2\nunlock_time = 1800\ndir = faillock-rel\n"),
    "fail-interval-zero": ("", "deny = 2\nunlock_time = 1800\nfail_interval = 0\n"),
    "args-override": (" deny=2 unlock_time=900", "deny = 5\nunlock_time = 1800\n"),
    "args-deny-0": (" deny=0", "deny = 3\nunlock_time = 1800\n"),
    "args-bad-value-skipped": (" deny=x unlock_time=x", "deny = 2\nunlock_time = 1800\n"),
    "args-upper-case": (" DENY=1", "deny = 4\nunlock_time = 1800\n"),
    "conf-file": (" conf=/etc/security/site.conf", "deny = 5\nunlock_time = 60\n"),
    "conf-file-then-args": (" conf=/etc/security/site.conf deny=4", "deny = 1\n"),
    "missing-file-defaults": ("", None),
}
_SITE = "deny = 2\nunlock_time = 1800\n"


@pytest.mark.parametrize("case", sorted(_PARSE))
def test_deny_unlock_time_and_dir_are_what_pam_faillock_uses(tmp_path, case) -> None:
    args, conf = _PARSE[case]
    root = tmp_path / "root"
    files = {"etc/security/site.conf": _SITE}
    if conf is not None:
        files["etc/security/faillock.conf"] = conf
    _tree(root, _LINE.format(a=args), files)
    results, tally = _oracle(root, " ".join(["w r"] * 7))
    rights = [(rc, minutes) for s, rc, minutes in results if s == "r"]
    refused = [i for i, (rc, _) in enumerate(rights) if rc != 0]
    deny = refused[0] + 1 if refused else 0  # wrong passwords before the right one is refused
    faillock, stack = _fact(root)
    opts = faillock.with_args(stack.entries[0])
    ours = opts.int("deny") if opts.int("fail_interval") else 0
    assert (ours if 0 < ours <= 7 else 0) == deny, (results, ours)
    if deny:
        assert all(rc != 0 for rc, _ in rights[refused[0]:])  # it stays locked
        minutes = rights[refused[0]][1]
        unlock = opts.int("unlock_time")
        assert (minutes or 0) in (math.ceil(unlock / 60), math.ceil((unlock - 1) / 60)), (minutes, unlock)
        assert tally == [f".{opts.option('dir').removeprefix('/var').removeprefix('/run')}/flt"]
    assert faillock.locks(stack, 7, 1) == bool(deny)


def test_a_two_second_unlock_time_lets_the_right_password_in_three_seconds_later(tmp_path) -> None:
    root = tmp_path / "root"
    _tree(root, _LINE.format(a=" unlock_time=2"), {"etc/security/faillock.conf": "deny = 2\nunlock_time = 1800\n"})
    results, _ = _oracle(root, "w w r s r")
    assert [rc == 0 for _, rc, _ in results] == [False, False, False, True]
    faillock, stack = _fact(root)
    assert faillock.with_args(stack.entries[0]).int("unlock_time") == 2
    assert faillock.locks(stack, 2, 1) and not faillock.locks(stack, 2, 3)
