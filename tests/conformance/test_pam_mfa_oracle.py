"""`pam(service).cannot_succeed_without(type, modules)` against libpam 1.5.2 itself: whether a
second factor in an sshd auth stack can be skipped is what libpam does with the stack when the
factor never succeeds. No OTP module need be installed: each `pam_google_authenticator.so` line
is run as a module that always fails (pam_deny, and pam_debug returning
PAM_AUTHINFO_UNAVAIL or PAM_NEW_AUTHTOK_REQD, the fact assuming any failure), and pamtester
authenticates a test account (a private /etc/passwd, /etc/shadow, /etc/group bound in a private
mount namespace) with its password and with a wrong one. If either gets in, the factor can be
skipped and the fact must say false; if none does, every successful run passes through it.

pam_unix (`nodelay`: no two-second delay after a failure) stands for the first factor; the fact
knows pam_permit and pam_deny and lets any other module return anything, so the stacks here give
pam_unix only controls under which a wrong password stands for every failure it may return."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_oracles import _namespaced

OTP = "pam_google_authenticator.so"
# what the OTP lines become for libpam: modules that never succeed
STAND_INS = ("pam_deny.so", "pam_debug.so auth=authinfo_unavail", "pam_debug.so auth=new_authtok_reqd")
PASSWORD = "s3cret-pw"
UNIX = "pam_unix.so nodelay"

# (id, files in etc/pam.d; the service is sshd)
CASES: list[tuple[str, dict[str, str]]] = [
    ("required", {"sshd": f"auth required {UNIX}\nauth required {OTP}\n"}),
    ("requisite-first", {"sshd": f"auth requisite {OTP}\nauth sufficient {UNIX}\n"}),
    ("required-then-sufficient-unix", {"sshd": f"auth required {OTP}\nauth sufficient {UNIX}\n"}),
    ("sufficient-unix-before", {"sshd": f"auth sufficient {UNIX}\nauth required {OTP}\n"}),
    ("success-done-before", {"sshd": f"auth [success=done default=bad] {UNIX}\nauth required {OTP}\n"}),
    ("success-jump-over", {"sshd": f"auth [success=1 default=bad] {UNIX}\nauth required {OTP}\n"
                                   "auth required pam_permit.so\n"}),
    ("failure-jump-over", {"sshd": f"auth [success=ok default=1] {UNIX}\nauth required {OTP}\n"
                                   "auth required pam_permit.so\n"}),
    ("sufficient-permit-before", {"sshd": f"auth required {UNIX}\nauth sufficient pam_permit.so\n"
                                          f"auth required {OTP}\n"}),
    ("optional-otp", {"sshd": f"auth required {UNIX}\nauth optional {OTP}\n"}),
    ("sufficient-otp", {"sshd": f"auth required {UNIX}\nauth sufficient {OTP}\n"}),
    ("bracket-required", {"sshd": f"auth required {UNIX}\n"
                                  f"auth [success=ok new_authtok_reqd=ok ignore=ignore default=bad] {OTP}\n"}),
    ("bracket-die", {"sshd": f"auth required {UNIX}\nauth [default=die] {OTP}\n"}),
    ("bracket-success-done-default-die", {"sshd": f"auth required {UNIX}\nauth [success=done default=die] {OTP}\n"}),
    ("bracket-no-separator", {"sshd": f"auth required {UNIX}\nauth [success=okdefault=bad] {OTP}\n"}),
    ("upper-case-keyword", {"sshd": f"auth Required {UNIX}\nauth REQUISITE {OTP}\n"}),
    ("only-auth-err-is-bad", {"sshd": f"auth required {UNIX}\nauth [auth_err=bad default=ignore] {OTP}\n"}),
    ("otp-failure-reset", {"sshd": f"auth required {UNIX}\nauth [success=ok default=reset] {OTP}\n"}),
    ("at-include", {"sshd": f"@include common-auth\nauth required {OTP}\n",
                    "common-auth": f"auth required {UNIX}\n"}),
    ("include-sufficient-escapes", {"sshd": f"auth include common-auth\nauth required {OTP}\n",
                                    "common-auth": f"auth sufficient {UNIX}\nauth requisite pam_deny.so\n"}),
    ("include-done-escapes", {"sshd": f"auth include pw\nauth required {OTP}\n",
                              "pw": f"auth [success=done default=die] {UNIX}\n"}),
    ("substack-done-scoped", {"sshd": f"auth substack pw\nauth required {OTP}\n",
                              "pw": f"auth [success=done default=die] {UNIX}\n"}),
    ("substack-sufficient-scoped", {"sshd": f"auth substack common-auth\nauth required {OTP}\n",
                                    "common-auth": f"auth sufficient {UNIX}\nauth requisite pam_deny.so\n"}),
    ("otp-in-skipped-substack", {"sshd": f"auth [success=1 default=bad] {UNIX}\nauth substack mfa\n"
                                         "auth required pam_permit.so\n",
                                 "mfa": f"auth required {OTP}\nauth required pam_permit.so\n"}),
    ("jump-past-substack-to-end", {"sshd": f"auth [success=2 default=bad] {UNIX}\nauth substack mfa\n"
                                           "auth required pam_permit.so\n",
                                   "mfa": f"auth required {OTP}\n"}),
    ("reset-in-substack", {"sshd": f"auth required {UNIX}\nauth substack mfa\n",
                           "mfa": f"auth required {OTP}\nauth [default=reset] pam_permit.so\n"}),
    ("otp-in-substack", {"sshd": f"auth required {UNIX}\nauth substack mfa\n",
                         "mfa": f"auth required {OTP}\n"}),
    ("bad-jump", {"sshd": f"auth [success=5 default=bad] {UNIX}\nauth required {OTP}\n"}),
    ("jump-out-of-substack", {"sshd": f"auth required {UNIX}\nauth substack mfa\nauth required pam_permit.so\n",
                              "mfa": f"auth [default=1] {OTP}\n"}),
    ("bracketed-include", {"sshd": f"auth [include] common-auth\nauth required {OTP}\n",
                           "common-auth": f"auth sufficient {UNIX}\nauth requisite pam_deny.so\n"}),
    ("missing-substack-file", {"sshd": f"auth required {UNIX}\nauth substack nosuch\nauth optional {OTP}\n"}),
    ("unknown-type-line", {"sshd": f"auth required {UNIX}\nauht sufficient pam_permit.so\nauth required {OTP}\n"}),
    ("other-runs-for-a-type-sshd-lacks", {"sshd": "account required pam_permit.so\n",
                                          "other": f"auth sufficient {UNIX}\nauth required {OTP}\n"}),
    ("other-with-otp-required", {"sshd": "account required pam_permit.so\n",
                                 "other": f"auth required {UNIX}\nauth required {OTP}\n"}),
    ("dash-type-otp", {"sshd": f"auth required {UNIX}\n-auth required {OTP}\n"}),
]

# lines of the random stacks; pam_unix's controls treat every failure alike (see the docstring)
_UNIX_CONTROLS = ("required", "requisite", "sufficient", "optional", "[success=1 default=ignore]",
                  "[success=2 default=bad]", "[success=done default=bad]", "[success=ok default=1]",
                  "[success=done default=die]", "[default=ignore]")
_OTHER_LINES = ("auth required pam_permit.so", "auth sufficient pam_permit.so", "auth optional pam_deny.so",
                "auth [success=1 default=bad] pam_permit.so", "auth [default=reset] pam_permit.so",
                "auth [success=done default=ignore] pam_permit.so", "auth [default=1] pam_deny.so",
                "auth requisite pam_deny.so", "auth [success=ok default=reset] pam_deny.so")
_OTP_CONTROLS = ("required", "requisite", "optional", "sufficient", "[success=ok new_authtok_reqd=ok ignore=ignore default=bad]",
                 "[default=die]", "[success=done new_authtok_reqd=done default=die]", "[success=1 default=bad]",
                 "[success=ok default=ignore]", "[auth_err=bad default=ignore]", "[success=ok default=reset]",
                 "[default=2]")


def _stack(rng: random.Random, size: int, state: dict[str, bool]) -> str:
    """`size` lines; one pam_unix line and one line reading `sub` at most in a whole case, since
    pamtester gives one password (a second pam_unix would prompt again and get no answer, where a
    user may type another, a module the fact rightly lets succeed after the first one failed)."""
    lines = []
    for _ in range(size):
        pick = rng.random()
        if pick < 0.35 and not state["unix"]:
            state["unix"] = True
            lines.append(f"auth {rng.choice(_UNIX_CONTROLS)} {UNIX}")
        elif pick < 0.6:
            lines.append(f"auth {rng.choice(_OTP_CONTROLS)} {OTP}")
        elif pick < 0.85 or state["sub"]:
            lines.append(rng.choice(_OTHER_LINES))
        else:
            state["sub"] = True
            lines.append(rng.choice(("auth substack sub", "auth include sub", "@include sub")))
    return "".join(line + "\n" for line in lines)


def _random_cases(n: int, seed: int = 8422) -> list[tuple[str, dict[str, str]]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        state = {"unix": False, "sub": False}
        files = {"sshd": _stack(rng, rng.randint(1, 4), state)}
        if state["sub"]:
            state["sub"] = True  # no include in `sub` itself
            files["sub"] = _stack(rng, rng.randint(1, 3), state)
        out.append((f"random-{k}", files))
    return out


def _ours(root: Path) -> bool:
    stack = FactContext(builtin_registry(), str(root)).fact("pam", ("sshd",))
    return stack.cannot_succeed_without("auth", [OTP, "pam_u2f.so"])


_ACCOUNTS = r"""
mount --bind "$1/passwd" /etc/passwd && mount --bind "$1/shadow" /etc/shadow \
  && mount --bind "$1/group" /etc/group || exit 2
for d in "$1"/cases/*; do
  mount --bind "$d" /etc/pam.d || exit 2
  for pw in "$2" wrong; do
    printf '%s\n' "$pw" | "$3" sshd mfa authenticate >/dev/null 2>&1 && echo "${d##*/}"
  done
  umount /etc/pam.d || exit 2
done
exit 0
"""


def _tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed: run scripts/setup.sh (pamtester, util-linux)")
        pytest.skip(f"{name} is not installed")
    return path


def _skippable(tmp_path: Path, cases: list[tuple[str, dict[str, str]]]) -> set[str]:
    """The cases where pamtester gets in with every OTP line replaced by a stand-in."""
    pamtester = _tool("pamtester")
    _tool("unshare")
    openssl = subprocess.run(["openssl", "passwd", "-6", "-salt", "mfaoracle", PASSWORD],
                             capture_output=True, text=True, check=False)
    assert openssl.returncode == 0, openssl.stderr
    acct = tmp_path / "oracle"
    (acct / "cases").mkdir(parents=True)
    (acct / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nmfa:x:4242:4242::/nonexistent:/bin/sh\n")
    (acct / "shadow").write_text(f"root:*:19000:0:99999:7:::\nmfa:{openssl.stdout.strip()}:19000:0:99999:7:::\n")
    (acct / "shadow").chmod(0o640)
    (acct / "group").write_text("root:x:0:\nmfa:x:4242:\n")
    for name, files in cases:
        # each OTP line may fail its own way: every choice of a stand-in for each line
        parts = {fname: text.split(OTP) for fname, text in files.items()}
        slots = sum(len(p) - 1 for p in parts.values())
        for k, choice in enumerate(itertools.product(STAND_INS, repeat=slots)):
            d = acct / "cases" / f"{name}~{k}"
            d.mkdir()
            picks = iter(choice)
            for fname, pieces in parts.items():
                (d / fname).write_text(pieces[0] + "".join(next(picks) + p for p in pieces[1:]))
    done = _namespaced(_ACCOUNTS, args=[str(acct), PASSWORD, pamtester])
    assert done.returncode == 0, done
    return {line.split("~")[0] for line in done.stdout.split()}


def _compare(tmp_path: Path, cases: list[tuple[str, dict[str, str]]]) -> None:
    theirs = _skippable(tmp_path, cases)
    wrong = []
    for name, files in cases:
        pam_d = tmp_path / "trees" / name / "etc/pam.d"
        pam_d.mkdir(parents=True)
        for fname, text in files.items():
            (pam_d / fname).write_text(text)
        if _ours(pam_d.parents[1]) == (name in theirs):
            wrong.append((name, "libpam: " + ("skippable" if name in theirs else "required"), files))
    assert wrong == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, a private /etc/shadow)")


@needs_root
def test_hand_written_stacks_need_the_factor_exactly_when_libpam_does(tmp_path) -> None:
    _compare(tmp_path, CASES)


@needs_root
def test_random_stacks_need_the_factor_exactly_when_libpam_does(tmp_path) -> None:
    _compare(tmp_path, _random_cases(50))


@pytest.mark.parametrize("control", ["requried", "[success=ok defualt=bad]", "[success=0]", "[success=ok"])
def test_a_control_libpam_cannot_parse_is_an_error(tmp_path, control) -> None:
    """libpam logs "pam_parse" and makes every result `bad`; the fact does not guess."""
    pam_d = tmp_path / "etc/pam.d"
    pam_d.mkdir(parents=True)
    (pam_d / "sshd").write_text(f"auth required {UNIX}\nauth {control} {OTP}\n")
    with pytest.raises(EvaluationError, match="cannot parse the control"):
        _ours(tmp_path)
