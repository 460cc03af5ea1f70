"""audit_rules on the live host: rules loaded with auditctl are found by has_loaded however
they are spelled, and `enabled` is the kernel's flag read over netlink (as auditctl -s says)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

AUDITCTL = shutil.which("auditctl")
pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="loading audit rules needs root (CAP_AUDIT_CONTROL)"
    ),
    pytest.mark.skipif(
        AUDITCTL is None, reason="auditctl is not installed (Debian package auditd)"
    ),
]
KEY = f"secpolicy_probe_{os.getpid()}"
RULES = [
    [
        "-a",
        "always,exit",
        "-F",
        "arch=b64",
        "-S",
        "sethostname,setdomainname",
        "-F",
        "auid>=1000",
        "-F",
        "auid!=-1",
        "-k",
        KEY,
    ],
    ["-w", f"/etc/secpolicy-probe-{os.getpid()}", "-p", "wa", "-k", KEY],
]


def _status() -> dict[str, str]:
    out = subprocess.run([AUDITCTL, "-s"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


@pytest.fixture
def loaded_rules():
    if _status().get("enabled", "").strip() == "2":
        pytest.skip("audit rules are locked (-e 2) on this host until reboot")
    added = []
    try:
        for r in RULES:
            res = subprocess.run([AUDITCTL, *r], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                pytest.skip(f"the kernel refused an audit rule: {res.stderr.strip()}")
            added.append(r)
        yield
    finally:
        for r in added:
            delete = ["-d" if r[0] == "-a" else "-W", *r[1:]]
            subprocess.run([AUDITCTL, *delete], capture_output=True, check=False)


def test_has_loaded_finds_rules_in_any_spelling(loaded_rules: None) -> None:
    a = FactContext(builtin_registry(), "/").fact("audit_rules", ())
    assert any(KEY in r.keys for r in a.loaded)
    assert a.has_loaded(
        f"-a exit,always -F arch=b64 -S setdomainname -F auid>=1000 -F auid!=unset -F key={KEY}"
    )
    assert a.has_loaded(
        "-a always,exit -F arch=b64 -S sethostname -F auid>=1000 -F auid!=4294967295"
    )
    assert a.has_loaded(f"-w /etc/secpolicy-probe-{os.getpid()} -p aw -k {KEY}")
    assert not a.has_loaded(
        f"-a always,exit -F arch=b32 -S sethostname -F auid>=1000 -F auid!=unset -k {KEY}"
    )
    assert a.where("has_loaded", "-w /x") == "auditctl -l"


def test_enabled_flag_equals_auditctl_status() -> None:
    a = FactContext(builtin_registry(), "/").fact("audit_rules", ())
    assert a.enabled == int(_status()["enabled"])
    assert a.where("enabled") == "netlink AUDIT_GET"
