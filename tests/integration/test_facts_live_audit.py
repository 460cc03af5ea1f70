"""audit_rules on the live host: rules loaded with auditctl are found by has_loaded however
they are spelled, keys are read as the kernel holds them, a key that auditctl -l would print as
another rule is an error rather than that rule, and `enabled` is the kernel's flag read over
netlink (as auditctl -s says)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.facts.audit_rules import LOADED_SOURCE
from secpolicy.vocabulary import builtin_registry

AUDITCTL = shutil.which("auditctl")
pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="loading audit rules needs root (CAP_AUDIT_CONTROL)"
    ),
    pytest.mark.skipif(
        AUDITCTL is None, reason="auditctl is not installed (Debian package auditd)"
    ),
    # One after another, and with the live tests: the audit rules are the kernel's, and while
    # a rule whose key hides another is loaded, every reading of the loaded rules is an error.
    pytest.mark.xdist_group("live"),
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


@contextmanager
def loading(rules: list[list[str]]) -> Iterator[None]:
    """`rules` loaded with auditctl while the block runs, deleted after."""
    if _status().get("enabled", "").strip() == "2":
        pytest.skip("audit rules are locked (-e 2) on this host until reboot")
    added = []
    try:
        for r in rules:
            res = subprocess.run([AUDITCTL, *r], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                pytest.skip(f"the kernel refused an audit rule: {res.stderr.strip()}")
            added.append(r)
        yield
    finally:
        for r in added:
            delete = ["-d" if r[0] == "-a" else "-W", *r[1:]]
            subprocess.run([AUDITCTL, *delete], capture_output=True, check=False)


@pytest.fixture
def loaded_rules():
    with loading(RULES):
        yield


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
    assert a.where("has_loaded", "-w /x") == LOADED_SOURCE


def test_keys_are_read_as_the_kernel_holds_them() -> None:
    """A key with a byte that is not UTF-8 (auditctl -l printed it raw, and reading it as
    text ended the fact with UnicodeDecodeError), and one with backslashes (auditctl -l
    escapes nothing, so they are not escapes)."""
    keys = {f"/etc/secpolicy-probe-{os.getpid()}-{n}": key for n, key in enumerate((f"{KEY}\udcff", f"{KEY}\\\\x"))}
    with loading([["-w", path, "-p", "wa", "-k", key] for path, key in keys.items()]):
        a = FactContext(builtin_registry(), "/").fact("audit_rules", ())
        seen = {r.path: r.keys for r in a.loaded if r.path in keys}
    assert seen == {path: (key,) for path, key in keys.items()}


@pytest.mark.parametrize("brk", ["\n", "\u2028", " "], ids=["newline", "U+2028", "space"])
def test_a_key_auditctl_prints_as_another_rule_is_an_error_not_that_rule(brk: str) -> None:
    fake = f"/etc/secpolicy-fake-{os.getpid()}"
    rule = ["-w", f"/etc/secpolicy-probe-{os.getpid()}", "-p", "wa", "-k", f"{KEY}{brk}-w {fake} -p wa"]
    with loading([rule]):
        shown = subprocess.run([AUDITCTL, "-l"], capture_output=True, check=True).stdout.decode()
        assert f"-w {fake} -p wa" in shown  # what a reader of auditctl -l is shown
        a = FactContext(builtin_registry(), "/").fact("audit_rules", ())
        with pytest.raises(EvaluationError, match="holds a space or line break"):
            a.has_loaded(f"-w {fake} -p wa")


def test_enabled_flag_equals_auditctl_status() -> None:
    a = FactContext(builtin_registry(), "/").fact("audit_rules", ())
    assert a.enabled == int(_status()["enabled"])
    assert a.where("enabled") == "netlink AUDIT_GET"
