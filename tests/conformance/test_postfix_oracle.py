"""The `postfix` fact and CIS 2.1.21 (MTA local-only) against postfix's own postconf: for each
main.cf, the value our fact reads for inet_interfaces is what `postconf -h` (or `-x -h` where
`$name` is expanded) prints from the same file, and the rule passes exactly when every address
postconf prints is loopback. postconf comes from the Debian package scripts/setup.sh
--with-test-tools unpacks into the virtual environment (postfix is not installed on the host)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

REPO = Path(__file__).resolve().parents[2]
ORACLES = Path(sys.prefix) / "oracles"
RULE = "cis-2.1.21-mta-local-only-configured"
LOOPBACK = {"loopback-only", "localhost", "127.0.0.1", "[::1]"}
STATUS = "Package: postfix\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: 3.7.11\n"

# (id, main.cf); each is read by postconf and by us
CASES = [
    ("loopback-only", "inet_interfaces = loopback-only\n"),
    ("last-wins", "inet_interfaces = loopback-only\ninet_protocols = all\ninet_interfaces = all\n"),
    ("first-all-then-loopback", "inet_interfaces = all\ninet_interfaces = 127.0.0.1\n"),
    ("continued", "inet_interfaces = 127.0.0.1,\n  [::1]\n"),
    ("comment-inside-continuation", "inet_interfaces = 127.0.0.1,\n# the IPv6 one\n\t[::1]\n"),
    ("indented-is-ignored", "  inet_interfaces = loopback-only\n"),
    ("indented-after-comment", "# x\n\tinet_interfaces = loopback-only\n"),
    ("unset", "myhostname = mail.example.org\n"),
    ("expanded", "only_here = 127.0.0.1\ninet_interfaces = $only_here, ${only_here}\n"),
    ("expanded-undefined", "inet_interfaces = $nothing_here\n"),
    ("upper-case-name", "INET_INTERFACES = loopback-only\n"),
    ("crlf", "inet_interfaces = loopback-only\r\n"),
    ("no-blanks", "inet_interfaces=localhost\n"),
    ("hash-is-not-a-comment-after-a-value", "inet_interfaces = loopback-only # local only\n"),
    ("empty", "inet_interfaces =\n"),
]


def _postconf() -> tuple[str, dict[str, str]]:
    binary = ORACLES / "usr/sbin/postconf"
    if not binary.exists():
        pytest.skip("postfix is not unpacked by scripts/setup.sh --with-test-tools")
    return str(binary), {**os.environ, "LD_LIBRARY_PATH": str(ORACLES / "usr/lib/postfix")}


def _tree(tmp_path: Path, main_cf: str) -> Path:
    root = tmp_path / "root"
    (root / "etc/postfix").mkdir(parents=True)
    (root / "etc/postfix/main.cf").write_text(main_cf)
    (root / "etc/postfix/master.cf").write_text("smtp      inet  n       -       y       -       -       smtpd\n")
    # postfix waits (up to 2.4 s) for a main.cf modified within the last second to settle
    old = time.time() - 60
    os.utime(root / "etc/postfix/main.cf", (old, old))
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    return root


def _asked(root: Path) -> str | None:
    """inet_interfaces as postconf prints it: expanded (-x) where the value names a parameter;
    None where postfix refuses the value (postconf, like postfix, stops: "host not found")."""
    postconf, env = _postconf()
    conf = str(root / "etc/postfix")
    raw = subprocess.run([postconf, "-c", conf, "-h", "inet_interfaces"], capture_output=True, text=True,
                         env=env, timeout=30, check=False)
    if raw.returncode != 0 and "fatal: config variable inet_interfaces" in raw.stderr:
        return None
    assert raw.returncode == 0, raw.stderr
    if "$" not in raw.stdout:
        return raw.stdout.rstrip("\n")
    done = subprocess.run([postconf, "-c", conf, "-x", "-h", "inet_interfaces"], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


@pytest.mark.parametrize(("case", "main_cf"), CASES, ids=[c for c, _ in CASES])
def test_inet_interfaces_is_what_postconf_reads_and_the_verdict_follows_it(tmp_path: Path, bundle,
                                                                         case: str, main_cf: str) -> None:
    root = _tree(tmp_path, main_cf)
    theirs = _asked(root)
    ours = FactContext(builtin_registry(), str(root)).fact("postfix", ()).option("inet_interfaces")
    if theirs is None:  # postfix does not start: nothing to compare but the verdict, never a pass
        local = False
    else:
        assert ours == theirs, case
        items = [w for w in re.split(r"[\s,]+", theirs) if w]
        local = bool(items) and set(items) <= LOOPBACK and ("loopback-only" not in items or items == ["loopback-only"])
    ps, reg = bundle  # the packs, loaded once for the module (conftest.py)
    (result,) = scan(ps, reg, root=str(root), rule_ids=[RULE]).to_results()["results"]
    assert result["status"] == ("pass" if local else "fail"), (case, theirs, result["evidence"])
