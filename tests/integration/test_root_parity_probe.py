"""The same files scanned two ways give the same verdicts, and a file missing from a tree passes
no rule unless the real component treats it as compliant.

A copy of this host's account and login files scanned with --root agrees with the live scan of
them, rule by rule (status and observed values). With /etc/shells missing, getusershell(3)
lists only /bin/sh and /bin/csh, yet su (like login and sshd) still starts the shell
/etc/passwd names: the rules about accounts that can log in (CIS 5.4.2.7, 7.2.9, 7.2.10) then
take every shell but nologin for a login shell, instead of skipping every bash account."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from secpolicy.app.policies import load_policy_set
from secpolicy.engine import scan
from secpolicy.facts.base import FactRegistry
from secpolicy.rules import PolicySet
from secpolicy.ruletests import materialize_files
from secpolicy.vocabulary import builtin_registry

REPO = Path(__file__).resolve().parents[2]
CIS = REPO / "policies" / "cis"
SHELL_RULES = (
    "cis-5.4.2.7-system-accounts-no-shell",
    "cis-7.2.9-interactive-home-directories",
    "cis-7.2.10-dot-files-access",
)
# rules that read only these files of /etc (no home directories, no kernel, no services)
ETC_FILES = (
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "login.defs",
    "shells",
    "motd",
    "issue",
    "issue.net",
)
ETC_RULES = (
    "cis-1.6.1-motd-no-os-information",
    "cis-1.6.2-issue-no-os-information",
    "cis-1.6.3-issue-net-no-os-information",
    "cis-5.4.2.1-root-only-uid0",
    "cis-5.4.2.2-root-only-gid0-account",
    "cis-5.4.2.3-root-only-gid0-group",
    "cis-5.4.2.7-system-accounts-no-shell",
    "cis-5.4.2.8-accounts-without-shell-locked",
    "cis-5.4.3.1-nologin-not-in-shells",
    "cis-7.1.1-passwd-permissions",
    "cis-7.1.3-group-permissions",
    "cis-7.1.5-shadow-permissions",
    "cis-7.1.9-shells-permissions",
    "cis-7.2.1-shadowed-passwords",
    "cis-7.2.2-no-empty-passwords",
    "cis-7.2.3-passwd-groups-exist",
    "cis-7.2.4-shadow-group-empty",
    "cis-7.2.5-unique-uids",
    "cis-7.2.6-unique-gids",
    "cis-7.2.7-unique-user-names",
    "cis-7.2.8-unique-group-names",
)


@functools.cache
def _policies() -> tuple[PolicySet, FactRegistry]:
    reg = builtin_registry()
    return load_policy_set(
        [
            str(CIS / "5-access-control.yaml"),
            str(CIS / "1-initial-setup.yaml"),
            str(CIS / "7-system-maintenance.yaml"),
        ],
        reg,
    ), reg


def _results(root: Path | str, rule_ids: tuple[str, ...]) -> dict[str, dict]:
    ps, reg = _policies()
    results = scan(ps, reg, root=str(root), rule_ids=list(rule_ids)).to_results()["results"]
    return {r["rule_id"]: r for r in results}


def test_a_root_without_etc_shells_counts_every_shell_but_nologin_as_a_login_shell(tmp_path: Path) -> None:
    materialize_files(
        str(tmp_path),
        {
            "/etc/login.defs": "UID_MIN 1000\n",
            "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
            "postgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n",
            "/etc/group": "root:x:0:\npostgres:x:104:\n",
            "/root": {"dir": True, "mode": 0o700},
            "/var/lib/postgresql": {"dir": True, "mode": 0o755, "uid": 101, "gid": 104},
            "/var/lib/postgresql/.rhosts": {
                "content": "+ +\n",
                "mode": 0o600,
                "uid": 101,
                "gid": 104,
            },
        },
    )
    got = _results(tmp_path, SHELL_RULES)
    for rule_id in SHELL_RULES:
        assert got[rule_id]["status"] == "fail", rule_id
        named = [
            e for e in got[rule_id]["evidence"] if e["expression"] == 'file("/etc/shells").exists'
        ]
        assert [(e["observed"], e["source"]) for e in named] == [("false", "/etc/shells")], rule_id
    # the same tree with the file: bash is a login shell, and each rule sees postgres's account
    (tmp_path / "etc" / "shells").write_text("/bin/sh\n/bin/bash\n")
    again = _results(tmp_path, SHELL_RULES)
    assert {r: again[r]["status"] for r in SHELL_RULES} == dict.fromkeys(SHELL_RULES, "fail")
    assert all(
        e["expression"] != 'file("/etc/shells").exists'
        for r in SHELL_RULES
        for e in again[r]["evidence"]
    )
    # without the file, an account whose shell is nologin still cannot log in: no blanket failure
    (tmp_path / "etc" / "shells").unlink()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/usr/sbin/nologin\n"
    )
    compliant = _results(tmp_path, SHELL_RULES)
    assert {r: compliant[r]["status"] for r in SHELL_RULES} == dict.fromkeys(SHELL_RULES, "pass")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a private mount namespace)")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed")
def test_su_starts_the_passwd_shell_when_etc_shells_is_missing(tmp_path: Path) -> None:
    """The reference: in a private mount namespace whose /etc has no shells file, su to an
    account below UID_MIN whose passwd shell is bash runs bash."""
    etc = tmp_path / "etc"
    shutil.copytree("/etc", etc, symlinks=True)
    (etc / "shells").unlink(missing_ok=True)
    for name, line in (
        ("passwd", "parityprobe:x:4242:4242::/:/bin/bash"),
        ("group", "parityprobe:x:4242:"),
        ("shadow", "parityprobe:*:19000:0:99999:7:::"),
    ):
        with (etc / name).open("a") as f:
            f.write(line + "\n")
    out = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind {etc} /etc && test ! -e /etc/shells && exec su parityprobe -c 'echo \"$BASH_VERSION\"'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "su did not run bash"


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (the copies keep their owners, /etc/shadow is read)"
)
def test_a_copy_of_the_hosts_etc_files_gives_the_live_verdicts(tmp_path: Path) -> None:
    for name in ETC_FILES:
        src = Path("/etc") / name
        if src.exists():
            (tmp_path / "etc").mkdir(exist_ok=True)
            shutil.copy2(src, tmp_path / "etc" / name)
            st = src.stat()
            os.chown(tmp_path / "etc" / name, st.st_uid, st.st_gid)
    if not (tmp_path / "etc" / "passwd").exists():
        pytest.skip("this machine has no /etc/passwd")
    live = _results("/", ETC_RULES)
    copy = _results(tmp_path, ETC_RULES)
    prefix = str(tmp_path)

    def view(r: dict, strip: str = "") -> tuple:
        return r["status"], [
            (e["expression"], e["observed"], (e["source"] or "").removeprefix(strip))
            for e in r["evidence"]
        ]

    assert {r: view(copy[r], prefix) for r in ETC_RULES} == {r: view(live[r]) for r in ETC_RULES}
