"""CIS Debian 12 5.4.3.2 (TMOUT) and 5.4.3.3 (umask) asked of the real shells: a user's login
shells (bash -l non-interactive and interactive, dash as sh -l, and an interactive bash started
from a login shell, a terminal of the session) as user nobody, started with an empty environment
in a private mount namespace, where a tree's /etc/profile, /etc/bash.bashrc and
/etc/profile.d are bound over the host's. The rule must not PASS where no login shell ends up
with a readonly, exported TMOUT of 1-900 (bash reads it with atoi) or a umask of 027 or
stricter, nor FAIL where every one does. dash has no TMOUT: for 5.4.3.2 only bash counts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from secpolicy.engine import scan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces, setpriv)")

# base-files 12.4's /etc/profile (Debian 12)
_PROFILE = """\
if [ "$(id -u)" -eq 0 ]; then
  PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
else
  PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
fi
export PATH

if [ "${PS1-}" ]; then
  if [ "${BASH-}" ] && [ "$BASH" != "/bin/sh" ]; then
    if [ -f /etc/bash.bashrc ]; then
      . /etc/bash.bashrc
    fi
  else
    if [ "$(id -u)" -eq 0 ]; then
      PS1='# '
    else
      PS1='$ '
    fi
  fi
fi

if [ -d /etc/profile.d ]; then
  for i in /etc/profile.d/*.sh; do
    if [ -r $i ]; then
      . $i
    fi
  done
  unset i
fi
"""
_BASHRC = '[ -z "${PS1-}" ] && return\n'
_GOOD = "TMOUT=900\nreadonly TMOUT\nexport TMOUT\n"

# name -> files under /etc (a tuple gives the mode too); profile.d/ names a file in it
_TMOUT: dict[str, dict[str, str | tuple[str, int]]] = {
    "plain": {"profile.d/50-tmout.sh": _GOOD},
    "benchmark's typeset -xr": {"profile.d/50-tmout.sh": "typeset -xr TMOUT=900\n"},
    "declare -r then export": {"profile.d/50-tmout.sh": "declare -r TMOUT=900\nexport TMOUT\n"},
    "export then readonly": {"profile.d/50-tmout.sh": "export TMOUT=900\nreadonly TMOUT\n"},
    "double quoted": {"profile.d/50-tmout.sh": 'TMOUT="900"\nreadonly TMOUT\nexport TMOUT\n'},
    "leading zero": {"profile.d/50-tmout.sh": "TMOUT=0900\nreadonly TMOUT\nexport TMOUT\n"},
    "leading blank": {"profile.d/50-tmout.sh": 'TMOUT=" 900"\nreadonly TMOUT\nexport TMOUT\n'},
    "comment after": {"profile.d/50-tmout.sh": "TMOUT=900 # 15 min\nreadonly TMOUT # ro\nexport TMOUT\n"},
    "in bash.bashrc": {"bash.bashrc": _BASHRC + _GOOD},
    "in a function never called": {"profile.d/50-tmout.sh": "f() { TMOUT=900; readonly TMOUT; export TMOUT; }\n"},
    "in if false": {"profile.d/50-tmout.sh": "if false; then TMOUT=900; readonly TMOUT; export TMOUT; fi\n"},
    "echoed": {"profile.d/50-tmout.sh": "echo TMOUT=900\necho readonly TMOUT\necho export TMOUT\n"},
    "not .sh": {"profile.d/50-tmout": _GOOD},
    "not readable": {"profile.d/50-tmout.sh": (_GOOD, 0o600)},
    "readonly first": {"profile.d/50-tmout.sh": "readonly TMOUT\nTMOUT=900\nexport TMOUT\n"},
    "zeroed later": {"profile.d/50-tmout.sh": "TMOUT=900\nexport TMOUT\n", "profile.d/60-x.sh": "TMOUT=0\n",
                     "profile.d/90-ro.sh": "readonly TMOUT\n"},
    "quoted zero later": {"profile.d/50-tmout.sh": "TMOUT=900\nexport TMOUT\n", "profile.d/60-x.sh": 'TMOUT="0"\n',
                          "profile.d/90-ro.sh": "readonly TMOUT\n"},
    "zeroed with quotes before readonly": {"profile.d/50-tmout.sh": 'TMOUT=900\nTMOUT="0"\nreadonly TMOUT\nexport TMOUT\n'},
    "export first": {"profile.d/50-tmout.sh": "export TMOUT\nTMOUT=900\nreadonly TMOUT\n"},
    "unset after readonly": {"profile.d/50-tmout.sh": _GOOD, "profile.d/60-x.sh": "unset TMOUT\n"},
    "too long": {"profile.d/50-tmout.sh": "TMOUT=3600\nreadonly TMOUT\nexport TMOUT\n"},
}
_UMASK: dict[str, dict[str, str | tuple[str, int]]] = {
    "plain": {"profile.d/50-umask.sh": "umask 027\n"},
    "four digits": {"profile.d/50-umask.sh": "umask 0027\n"},
    "symbolic": {"profile.d/50-umask.sh": "umask u=rwx,g=rx,o=\n"},
    "in a function never called": {"profile.d/50-umask.sh": "f() { umask 027; }\n"},
    "in if false": {"profile.d/50-umask.sh": "if false; then umask 027; fi\n"},
    "indented in if false": {"profile.d/50-umask.sh": "if false; then\n  umask 027\nfi\n"},
    "047": {"profile.d/50-umask.sh": "umask 047\n"},
    "not readable": {"profile.d/50-umask.sh": ("umask 027\n", 0o600)},
    "not .sh": {"profile.d/50-umask": "umask 027\n"},
    "weaker in bash.bashrc": {"profile.d/50-umask.sh": "umask 027\n", "bash.bashrc": _BASHRC + "umask 022\n"},
    "nothing": {},
}

_PROBE = 'echo "v=${TMOUT-<unset>}"; readonly -p | grep -qw TMOUT && echo ro; export -p | grep -qw TMOUT && echo ex; umask'
# an interactive bash that is no login shell (a terminal of the session) starts from what the
# login shell left and reads /etc/bash.bashrc itself
_SHELLS = {"bash -l": ["bash", "-l", "-c", _PROBE], "bash -l -i": ["bash", "-l", "-i", "-c", _PROBE],
           "sh -l": ["dash", "-l", "-c", _PROBE],
           "bash -i in bash -l": ["bash", "-l", "-c", 'exec bash -i -c "$0"', _PROBE]}


def _tree(tmp: Path, files: dict[str, str | tuple[str, int]]) -> Path:
    root = tmp / "root"
    (root / "etc/profile.d").mkdir(parents=True)
    (root / "etc/profile").write_text(_PROFILE)
    (root / "etc/bash.bashrc").write_text(_BASHRC)
    (root / "etc/login.defs").write_text("UMASK 022\n")  # Debian's
    for name, content in files.items():
        text, mode = content if isinstance(content, tuple) else (content, 0o644)
        (root / "etc" / name).write_text(text)
        (root / "etc" / name).chmod(mode)
    for d in (root, root / "etc", root / "etc/profile.d"):
        d.chmod(0o755)
    return root


def _login_shells(root: Path) -> dict[str, str]:
    """What each login shell of user nobody ends up with: the probe's output by shell."""
    for tool in ("unshare", "setpriv", "bash", "dash"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    etc = root / "etc"
    binds = " && ".join(f'mount --bind "{etc / n}" /etc/{n}' for n in ("profile", "bash.bashrc", "profile.d"))
    out = {}
    for name, argv in _SHELLS.items():
        script = (f"{binds} && cd / && umask 022 && exec setpriv --reuid=65534 --regid=65534 --clear-groups "
                  'env -i HOME=/nonexistent PATH=/usr/bin:/bin "$@" </dev/null 2>/dev/null')
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
                           capture_output=True, text=True, timeout=60, check=False)
        out[name] = r.stdout
    return out


def _tmout_ok(probe: str) -> bool:
    lines = probe.split("\n")
    value = next((x[2:] for x in lines if x.startswith("v=")), "<unset>")
    digits = value.lstrip(" \t\n")  # atoi
    n = int("".join(digits[: len(digits) - len(digits.lstrip("0123456789"))]) or "0")
    return value != "<unset>" and 1 <= n <= 900 and "ro" in lines and "ex" in lines


def _umask_ok(probe: str) -> bool:
    last = probe.strip().split("\n")[-1]
    return last.isdigit() and int(last, 8) & 0o027 == 0o027


def _verdict(bundle, root: Path, rule_id: str) -> str:
    ps, reg = bundle
    (finding,) = scan(ps, reg, root=str(root), rule_ids=[rule_id]).findings
    return finding.status.value


def _check(bundle, tmp_path: Path, files, rule_id: str, ok, shells: tuple[str, ...]) -> None:
    root = _tree(tmp_path, files)
    probes = _login_shells(root)
    good = [ok(probes[s]) for s in shells]
    ours = _verdict(bundle, root, rule_id)
    if all(good):
        assert ours == "pass", probes
    elif not any(good):
        assert ours == "fail", probes
    else:
        assert ours in ("pass", "fail"), probes


@pytest.mark.parametrize("name", list(_TMOUT))
def test_tmout_verdict_is_what_bash_login_shells_end_up_with(bundle, tmp_path, name) -> None:
    _check(bundle, tmp_path, _TMOUT[name], "cis-5.4.3.2-shell-timeout", _tmout_ok, ("bash -l", "bash -l -i"))


@pytest.mark.parametrize("name", list(_UMASK))
def test_umask_verdict_is_what_login_shells_end_up_with(bundle, tmp_path, name) -> None:
    _check(bundle, tmp_path, _UMASK[name], "cis-5.4.3.3-default-umask", _umask_ok, tuple(_SHELLS))
