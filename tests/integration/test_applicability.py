"""Applicability and vars at scan time: a rule whose conditions do not hold is NOT_APPLICABLE
with the first failing condition's reason and evidence, its check never runs; a condition
that cannot be evaluated is ERROR; vars take their defaults unless a value is given."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secpolicy.engine import evaluate_rule, scan
from secpolicy.facts import FactContext
from secpolicy.models import Evidence, Status
from secpolicy.ruletests import materialize_files
from secpolicy.vocabulary import builtin_registry, load_policies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "verdicts"
SSH = FIXTURES / "ssh.yaml"
DPKG_STATUS = (FIXTURES / "sshd-installed" / "var" / "lib" / "dpkg" / "status").read_text()
WEAK_SSHD = "MaxAuthTries 6\nPermitRootLogin yes\nCiphers aes128-ctr\n"


def root_with(tmp_path: Path, files: dict) -> str:
    root = tmp_path / "root"
    root.mkdir()
    materialize_files(str(root), files)
    return str(root)


def findings(policy: Path, root: str, **kw):
    reg = builtin_registry()
    result = scan(load_policies([policy], reg), reg, root=root, **kw)
    return {f.rule_id: f for f in result.findings}


def test_a_file_condition_that_does_not_hold_makes_every_rule_not_applicable(tmp_path):
    f = findings(SSH, root_with(tmp_path, {"/etc/ssh/sshd_config": WEAK_SSHD}))
    assert {k: v.status for k, v in f.items()} == {
        "v-ssh-root-login": Status.NOT_APPLICABLE,
        "v-ssh-max-auth-tries": Status.NOT_APPLICABLE,
        "v-ssh-ciphers": Status.NOT_APPLICABLE,
    }
    assert f["v-ssh-ciphers"].reason == "openssh-server is not installed"
    assert f["v-ssh-ciphers"].evidence == (
        Evidence(
            expression='package("openssh-server").installed',
            expected="true",
            observed="false",
            source="/var/lib/dpkg/status (no entry for openssh-server)",
            message="openssh-server is not installed",
        ),
    )


def test_where_the_component_is_installed_the_checks_decide(tmp_path):
    root = root_with(tmp_path, {"/etc/ssh/sshd_config": WEAK_SSHD, "/var/lib/dpkg/status": DPKG_STATUS})
    f = findings(SSH, root)
    assert {k: v.status for k, v in f.items()} == {
        "v-ssh-root-login": Status.FAIL,
        "v-ssh-max-auth-tries": Status.FAIL,
        "v-ssh-ciphers": Status.FAIL,
    }
    (ev,) = f["v-ssh-max-auth-tries"].evidence
    assert (ev.expected, ev.observed, ev.source) == ("<= 4 (ssh_max_auth_tries)", "6", "/etc/ssh/sshd_config:1")


def test_a_value_given_for_a_var_replaces_its_default(tmp_path):
    root = root_with(tmp_path, {"/etc/ssh/sshd_config": WEAK_SSHD, "/var/lib/dpkg/status": DPKG_STATUS})
    reg = builtin_registry()
    rule = load_policies([SSH], reg).rule("v-ssh-max-auth-tries")
    assert rule is not None
    ctx = FactContext(reg, root)
    assert evaluate_rule(rule, ctx).status == Status.FAIL
    passed = evaluate_rule(rule, ctx, values={"ssh_max_auth_tries": 6})
    assert passed.status == Status.PASS
    assert [(e.expected, e.observed) for e in passed.evidence] == [("<= 6 (ssh_max_auth_tries)", "6")]


POLICY = """\
metadata: {id: app, title: App, version: "1"}
rules:
  - id: first-false-wins
    title: conditions are checked in order
    severity: low
    applicable:
      - {if: 'file("/etc/os-release").exists', reason: no os-release}
      - {if: 'file("/etc/app.conf").exists', reason: the app is not installed}
      - {if: 'file("/etc/other.conf").exists', reason: never reached}
    check: 'int(file("/etc/nothing-here").content) > 0'
  - id: unreadable-condition
    title: a condition that cannot be evaluated
    severity: low
    applicable: 'int(file("/etc/os-release").content) > 0'
    check: 'true'
  - id: live-only-condition
    title: a condition on a live-only fact
    severity: low
    applicable: 'count(p in processes: p.comm == "sshd") > 0'
    check: 'true'
  - id: running-system-only
    title: reads the running kernel
    severity: low
    applicable: [{if: scan.live, reason: only the running system has a kernel to ask}]
    check: 'scan.kind == "host"'
  - id: mounted-roots-only
    title: scan kind
    severity: low
    applicable: 'scan.kind == "root" and not scan.live and scan.root != "/"'
    check: 'true'
"""


def test_first_false_condition_gives_the_reason_and_the_check_never_runs(tmp_path):
    p = tmp_path / "app.yaml"
    p.write_text(POLICY)
    f = findings(p, root_with(tmp_path, {"/etc/os-release": "ID=debian\n"}))
    assert {k: (v.status, v.reason) for k, v in f.items()} == {
        # Its check would be ERROR (no such file): never evaluated.
        "first-false-wins": (Status.NOT_APPLICABLE, "the app is not installed"),
        "unreadable-condition": (
            Status.ERROR,
            "applicability could not be evaluated: int('ID=debian\\n'): invalid literal for int() with base 0: 'ID=debian\\n'",
        ),
        "live-only-condition": (Status.NOT_APPLICABLE, f"processes: only available on the live host, not under --root {tmp_path / 'root'}"),
        "running-system-only": (Status.NOT_APPLICABLE, "only the running system has a kernel to ask"),
        "mounted-roots-only": (Status.PASS, None),
    }
    assert f["first-false-wins"].evidence == (
        Evidence(
            expression='file("/etc/app.conf").exists',
            expected="true",
            observed="false",
            source="/etc/app.conf",
            message="the app is not installed",
        ),
    )
    assert f["running-system-only"].evidence == (
        Evidence(expression="scan.live", expected="true", observed="false", message="only the running system has a kernel to ask"),
    )


def test_on_the_running_system_the_scan_context_says_host(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(POLICY)
    reg = builtin_registry()
    rule = load_policies([path], reg).rule("running-system-only")
    assert rule is not None
    f = evaluate_rule(rule, FactContext(reg, "/"))
    assert (f.status, [(e.expression, e.observed) for e in f.evidence]) == (Status.PASS, [('scan.kind == "host"', '"host"')])


def test_inline_tests_set_vars_and_expect_not_applicable():
    out = subprocess.run(
        [sys.executable, "-m", "secpolicy", "test", "-v", str(SSH)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "PASS v-ssh-max-auth-tries: the default threshold",
        "PASS v-ssh-max-auth-tries: a tailored threshold",
        "PASS v-ssh-max-auth-tries: no sshd",
        "3 passed, 0 failed",
    ]


def test_an_inline_test_expecting_the_wrong_verdict_fails(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent("""\
        metadata: {id: t, title: T, version: "1"}
        vars:
          limit: {type: int, default: 4, description: the limit}
        rules:
          - id: r
            title: r
            severity: low
            check: 'int(file("/etc/n").content) <= limit'
            tests:
              - {name: tailored, vars: {limit: 2}, files: {/etc/n: "3"}, expect: pass}
    """))
    out = subprocess.run([sys.executable, "-m", "secpolicy", "test", str(p)], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == (
        'FAIL r: tailored: expected pass, got fail (int(file("/etc/n").content) <= limit — expected <= 2 (limit); '
        f'observed 3; at /etc/n) [{p}:10]'
    )


def test_explain_shows_the_conditions_and_the_vars_a_rule_reads():
    out = subprocess.run(
        [sys.executable, "-m", "secpolicy", "explain", "v-ssh-max-auth-tries", "-p", str(SSH)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    block = text[text.index("applies only when"):text.index("check:")].strip().splitlines()
    assert block == [
        "applies only when (checked in order, before the check):",
        '  package("openssh-server").installed',
        f"    else not applicable: openssh-server is not installed  [policy, {SSH}:9]",
        "",
        "vars read:",
        f"  ssh_max_auth_tries: int = 4 (min 1; max 10)  [{SSH}:12]",
        "    Highest MaxAuthTries sshd may allow (CIS 5.1.16 says 4 or less).",
    ]
    assert "  └─ var ssh_max_auth_tries : int" in text


def test_lint_refuses_a_var_no_rule_reads(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "metadata: {id: t, title: T, version: '1'}\n"
        "vars:\n  unused_limit: {type: int, default: 4, description: read by nothing}\n"
        "rules:\n  - {id: r, title: r, severity: low, check: 'true'}\n"
    )
    out = subprocess.run([sys.executable, "-m", "secpolicy", "lint", str(p)], capture_output=True, text=True, check=False)
    assert (out.returncode, out.stderr.strip()) == (2, f"{p}:3: var 'unused_limit' is read by no rule")


def test_a_scan_wide_kind_reaches_every_condition(tmp_path):
    p = tmp_path / "kernel.yaml"
    p.write_text(textwrap.dedent("""\
        metadata: {id: k, title: K, version: "1"}
        applicable:
          - if: scan.kind != "image"
            reason: a container image has no kernel of its own
        rules:
          - {id: k1, title: ip forwarding off, severity: low, check: 'sysctl("net.ipv4.ip_forward").persisted == 0'}
    """))
    root = root_with(tmp_path, {"/etc/sysctl.d/60-net.conf": "net.ipv4.ip_forward = 0\n"})
    assert findings(p, root)["k1"].status == Status.PASS
    image = findings(p, root, scan_kind="image")["k1"]
    assert (image.status, image.reason) == (Status.NOT_APPLICABLE, "a container image has no kernel of its own")
    with pytest.raises(ValueError, match="scan kind 'vm' is not one of host, root, image, remote"):
        findings(p, root, scan_kind="vm")
