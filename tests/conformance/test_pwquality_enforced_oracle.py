"""`pam(...).cannot_store_password_without(modules)` and pci-8.3.6 against libpam 1.5.2 and
pam_pwquality themselves: pamtester changes a test account's password (`chauthtok`, as root, in
a private mount namespace over a private /etc, as test_cis_5_7_probe.py does) through each
stack, once to a weak password (too short, no digit) and once to a strong one. The fact must be
false, and the rule must fail, exactly where the weak password ends up in /etc/shadow.

Each pam_pwquality line runs with `enforce_for_root` (as root it would only warn) and
`dictcheck=0` (no cracklib dictionary here); pam_unix hashes with md5 (fast). pamtester answers
every prompt with the same password, as a user retyping it would. pam_unix's controls here treat
its first run's failure (a non-root user's wrong current password) no better than its success,
since as root it always succeeds there, where the fact lets it return anything."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_oracles import _namespaced
from test_pam_mfa_oracle import _tool

RULE = "pci-8.3.6-password-composition"
PWQ = "pam_pwquality.so minlen=12 dcredit=-1 lcredit=-1"
WEAK, STRONG = "weakpw", "Str0ng-passw0rd"
U, UA = "pam_unix.so md5", "pam_unix.so use_authtok md5"  # pam_unix asking itself, or not


def _cp(*lines: str) -> dict[str, str]:
    return {"common-password": "".join(f"password {line}\n" for line in lines)}


# (id, files in etc/pam.d; the stack is common-password's)
CASES: list[tuple[str, dict[str, str]]] = [
    ("debian", _cp(f"requisite {PWQ}", f"[success=1 default=ignore] {UA}", "requisite pam_deny.so",
                   "required pam_permit.so")),
    ("required-then-use-authtok", _cp(f"required {PWQ}", f"required {UA}")),
    ("required-then-unix-asks", _cp(f"required {PWQ}", f"required {U}")),
    ("optional-then-use-authtok", _cp(f"optional {PWQ}", f"required {UA}")),
    ("optional-then-unix-asks", _cp(f"optional {PWQ}", f"required {U}")),
    ("sufficient-pwquality", _cp(f"sufficient {PWQ}", f"required {U}")),
    ("unix-first", _cp(f"required {U}", f"requisite {PWQ}")),
    ("unix-sufficient-first", _cp(f"sufficient {U}", f"requisite {PWQ}")),
    ("success-done-before", _cp(f"[success=done default=ignore] {U}", f"requisite {PWQ}", f"required {UA}")),
    ("jump-over-pwquality", _cp("[success=1 default=ignore] pam_permit.so", f"requisite {PWQ}", f"required {UA}")),
    ("jump-over-pwquality-unix-asks", _cp("[success=1 default=ignore] pam_permit.so", f"requisite {PWQ}", f"required {U}")),
    ("jump-over-deny-frozen-chain", _cp(f"[success=1 default=ignore] {PWQ}", "requisite pam_deny.so", f"required {U}")),
    ("pwquality-jumps-to-unix", _cp(f"[success=ok default=1] {PWQ}", "requisite pam_deny.so", f"required {U}")),
    ("default-die", _cp(f"[default=die success=ok] {PWQ}", f"required {U}")),
    ("sufficient-permit-before", _cp("sufficient pam_permit.so", f"requisite {PWQ}", f"required {UA}")),
    ("reset-after-failure", _cp(f"required {PWQ}", "[default=reset] pam_permit.so", f"required {UA}")),
    ("first-run-fails", _cp("requisite pam_deny.so", f"required {U}")),
    ("substack-sufficient-scoped", {**_cp("substack pq", f"required {UA}"),
                                    "pq": f"password sufficient {PWQ}\npassword required pam_deny.so\n"}),
    ("pwquality-in-skipped-substack", {**_cp("[success=1 default=ignore] pam_permit.so", "substack pq",
                                             f"required {U}"), "pq": f"password requisite {PWQ}\n"}),
    ("include-requisite", {**_cp("include pq", f"required {U}"), "pq": f"password requisite {PWQ}\n"}),
    ("authtok-err-ignored", _cp(f"[authtok_err=ignore success=ok default=die] {PWQ}", f"required {U}")),
    ("maxtries-ignored", _cp(f"[maxtries=ignore success=ok default=die] {PWQ} retry=3", f"required {U}")),
    ("dash-type-pwquality", {"common-password": f"-password requisite {PWQ}\npassword required {UA}\n"}),
]

_PWQ_CONTROLS = ("required", "requisite", "optional", "sufficient", "[success=1 default=ignore]",
                 "[default=die success=ok]", "[success=ok default=ignore]", "[success=ok default=1]",
                 "[success=done default=die]", "[success=ok default=reset]")
# no better for pam_unix failing than succeeding (see the docstring): no jump on success, which
# may skip what makes the first run succeed, or run past the end ("bad jump in stack")
_UNIX_CONTROLS = ("required", "requisite", "optional", "sufficient", "[success=ok default=bad]",
                  "[success=done default=bad]", "[success=done default=ignore]")
_OTHER = ("required pam_permit.so", "sufficient pam_permit.so", "requisite pam_deny.so", "optional pam_deny.so",
          "[success=1 default=ignore] pam_permit.so", "[default=reset] pam_permit.so",
          "[default=1] pam_deny.so", "[success=done default=ignore] pam_permit.so")


def _random_cases(n: int, seed: int = 836) -> list[tuple[str, dict[str, str]]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        lines = []
        for _ in range(rng.randint(2, 5)):
            pick = rng.random()
            if pick < 0.35:
                lines.append(f"{rng.choice(_PWQ_CONTROLS)} {PWQ}")
            elif pick < 0.65:
                lines.append(f"{rng.choice(_UNIX_CONTROLS)} {rng.choice((U, UA))}")
            else:
                lines.append(rng.choice(_OTHER))
        out.append((f"random-{k}", _cp(*lines)))
    return out


def _pam_pwquality() -> Path:
    """SECPOLICY_PAM_PWQUALITY, else the installed module, else one unpacked beside the
    virtual environment's libpwquality."""
    found = [Path(os.environ["SECPOLICY_PAM_PWQUALITY"])] if os.environ.get("SECPOLICY_PAM_PWQUALITY") else []
    for d in ("/usr/lib", "/lib", str(Path(sys.prefix) / "oracles/usr/lib"), str(Path(sys.prefix) / "oracles/lib")):
        found += sorted(Path(d).glob("*/security/pam_pwquality.so"))
    hit = next((p for p in found if p.is_file()), None)
    if hit is None:
        pytest.skip("pam_pwquality.so is neither installed (libpam-pwquality), unpacked into the venv by scripts/setup.sh, nor named by SECPOLICY_PAM_PWQUALITY")
    return hit


# $1: the private etc, $2: the cases, $3: pamtester. For each case and password, a fresh shadow
# and the case's pam.d; prints "case password" when the password was stored.
_CHANGE = r"""
mount --bind "$1" /etc || exit 2
for d in "$2"/*; do
  for pw in weak strong; do
    [ $pw = weak ] && p=$4 || p=$5
    printf 'root:*:19000:0:99999:7:::\nbob:*:19000:0:99999:7:::\n' > /etc/shadow && chmod 640 /etc/shadow || exit 2
    rm -rf /etc/pam.d && cp -r "$d" /etc/pam.d || exit 2
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do printf '%s\n' "$p"; done | "$3" probe bob chauthtok >/dev/null 2>&1
    grep -q '^bob:\*:' /etc/shadow || echo "${d##*/} $pw"
  done
done
exit 0
"""


def _stored(tmp_path: Path, cases: list[tuple[str, dict[str, str]]]) -> dict[str, set[str]]:
    pamtester = _tool("pamtester")
    _tool("unshare")
    module = _pam_pwquality()
    etc, dirs = tmp_path / "oracle-etc", tmp_path / "oracle-cases"
    (etc / "security").mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1001::/nonexistent:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nbob:x:1001:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nshadow: files\n")
    for name, files in cases:
        d = dirs / name
        d.mkdir(parents=True)
        for fname, text in files.items():
            (d / fname).write_text(text.replace("pam_pwquality.so", f"{module} enforce_for_root dictcheck=0"))
        (d / "probe").write_text("@include common-password\n")
    env = dict(os.environ)
    # pam_pwquality's libpwquality and libcrack: installed, or unpacked beside it or by setup.sh
    libs = [str(module.parents[1]), *map(str, sorted((Path(sys.prefix) / "oracles/usr/lib").glob("*-linux-gnu")))]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    done = _namespaced(_CHANGE, env=env, args=[str(etc), str(dirs), pamtester, WEAK, STRONG])
    assert done.returncode == 0, done
    out: dict[str, set[str]] = {name: set() for name, _ in cases}
    for line in done.stdout.split("\n"):
        if line:
            name, pw = line.split()
            out[name].add(pw)
    return out


def _tree(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    pam_d = tmp_path / "trees" / name / "etc/pam.d"
    pam_d.mkdir(parents=True)
    for fname, text in files.items():
        (pam_d / fname).write_text(text)
    return pam_d.parents[1]


def _compare(bundle, tmp_path: Path, cases: list[tuple[str, dict[str, str]]]) -> None:
    stored = _stored(tmp_path, cases)
    if "debian" in stored:
        assert "strong" in stored["debian"]  # pamtester does store a password the module accepts
    ps, reg = bundle
    wrong = []
    for name, files in cases:
        root = _tree(tmp_path, name, files)
        weak_stored = "weak" in stored[name]
        ours = FactContext(builtin_registry(), str(root)).fact("pam", ("common-password",))
        member = ours.cannot_store_password_without(["pam_pwquality.so"])
        (finding,) = scan(ps, reg, root=str(root), rule_ids=[RULE]).findings
        # the rule also fails a stack with no pam_pwquality line at all
        kept_out = not weak_stored and ours.has_module("pam_pwquality.so")
        if member == weak_stored or finding.status.value != ("pass" if kept_out else "fail"):
            wrong.append((name, f"weak stored: {weak_stored}", member, finding.status.value, files))
    assert wrong == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, a private /etc)")


@needs_root
def test_hand_written_stacks_keep_a_weak_password_out_exactly_when_libpam_does(bundle, tmp_path) -> None:
    _compare(bundle, tmp_path, CASES)


@needs_root
def test_random_stacks_keep_a_weak_password_out_exactly_when_libpam_does(bundle, tmp_path) -> None:
    _compare(bundle, tmp_path, _random_cases(40))
