"""The kernel tier derived from rules (no kernel needed): which probes, which clauses, and the
doctor/monitor commands' behaviour on bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from secpolicy.errors import InputError

POLICY = """\
metadata: {id: plan-test, title: plan test, version: "1.0.0"}
rules:
  - id: shadow-denied
    title: denied access
    severity: medium
    when: type in ["open", "write"] and outcome.result == "failure" and outcome.errno in [1, 13]
  - id: etc-write
    title: etc write
    severity: low
    when: type == "write" and file.path startswith "/etc/" and not (outcome.result == "failure")
  - id: audit-conf
    title: audit config or write
    severity: low
    when: type == "config_change" or (type in ["write", "unlink"] and file.path startswith "/etc/audit/")
  - id: root-ptrace
    title: root ptrace
    severity: high
    when: type == "ptrace" and user.uid == 0
"""


@pytest.fixture
def rules(tmp_path: Path) -> list:
    from secpolicy.cli.core import load

    p = tmp_path / "p.yaml"
    p.write_text(POLICY)
    return list(load([str(p)]).event_rules)


def test_only_needed_types_and_one_clause_per_rule(rules: list) -> None:
    from secpolicy.events.bpf_plan import Clause, plan_for_rules

    plan = plan_for_rules(rules)
    assert plan.types == {"exec", "open", "write", "unlink", "ptrace", "config_change"}
    assert plan.filter_for("open").clauses == (Clause(None, "failure", frozenset({1, 13})),)
    assert plan.filter_for("write").clauses == (
        Clause(None, "failure", frozenset({1, 13})),
        Clause(("/etc/",), "success", None),
        Clause(("/etc/audit/",), None, None),
    )
    # The config_change branch cannot match an unlink, so it does not open the filter.
    assert plan.filter_for("unlink").clauses == (Clause(("/etc/audit/",), None, None),)
    assert plan.filter_for("ptrace").uids == frozenset({0})
    assert plan.describe("open") == "open: (fails with errno 1/13)"
    assert plan.describe("connect") == "connect: probes not attached (no loaded rule needs them)"


def test_unavailable_types_are_noted(rules: list) -> None:
    from secpolicy.events.bpf_plan import RuleCoverage, plan_for_rules

    plan = plan_for_rules(rules, available=["exec", "open", "write", "unlink"])
    assert "ptrace" not in plan.types
    assert plan.notes == ("config_change: needed by a rule but not available on this kernel",
                          "ptrace: needed by a rule but not available on this kernel")
    # audit-conf still fires on writes and unlinks; root-ptrace cannot fire at all.
    assert plan.coverage == (RuleCoverage("audit-conf", ("config_change",), True),
                             RuleCoverage("root-ptrace", ("ptrace",), False))
    assert plan.blind_rules == ("root-ptrace",)


def test_a_rule_without_constraints_opens_the_type() -> None:
    from secpolicy.events.bpf_plan import plan_from_keys
    from secpolicy.events.matcher import IndexKeys

    plan = plan_from_keys([IndexKeys(types=frozenset({"write"}), path_prefixes=("/etc/",)),
                           IndexKeys(types=frozenset({"write"}))])
    assert plan.filter_for("write").clauses is None


def test_header_constants_match_the_decoder() -> None:
    from secpolicy.events.live.record import HDR, HEADER_FIELDS, OFF, header_constants
    from secpolicy.resources import bpf_dir

    c = header_constants()
    assert c["SP_HDR_SIZE"] == HDR.size
    # The members of struct sp_event before its string area, in the C header's order.
    text = (bpf_dir() / "secpolicy.h").read_text()
    body = text[text.index("struct sp_event {"):text.index("char str[SP_STR_BUF];")]
    members = re.findall(r"^\s+\w+ (\w+)(?:\[\d+\])?;", body, re.MULTILINE)
    members = [n for m in members for n in ((m,) if m != "a" else tuple(f"a{i}" for i in range(6)))]
    assert members == [n for n, _f in HEADER_FIELDS]
    assert OFF["lost_seq"] == HDR.size - 4
    assert c["SP_STR_BUF"] & (c["SP_STR_BUF"] - 1) == 0
    assert c["SP_STR_BUF"] >= c["SP_STR_MAX"] + c["SP_PIECE_MAX"]


def test_doctor_json_lists_every_check() -> None:
    from secpolicy.cli.live import doctor_cmd

    res = CliRunner().invoke(doctor_cmd, ["--json", "--no-load-test"])
    out = json.loads(res.output)
    names = [c["name"] for c in out["checks"]]
    for n in ("kernel", "btf", "tracefs", "kernel headers", "bcc", "privileges", "lockdown",
              "bpf load", "event exec", "event auth", "root scans"):
        assert n in names
    assert res.exit_code == (0 if out["ready"] else 3)
    assert all(c["fix"] for c in out["checks"] if c["ok"] is False)


def test_monitor_rejects_a_ring_buffer_size_that_is_not_a_power_of_two() -> None:
    from secpolicy.cli.live import monitor_cmd

    with pytest.raises(InputError, match="power of two"):
        monitor_cmd.main(["--ringbuf-pages", "3"], standalone_mode=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges with setpriv needs root")
@pytest.mark.parametrize("command", [["doctor"], ["doctor", "--json"], ["monitor", "--duration", "1"]])
def test_without_root_doctor_and_monitor_say_what_is_missing_and_exit_3(command: list[str], tmp_path: Path) -> None:
    """As nobody: no traceback and no "internal error", the missing pieces named, exit 3
    (runtime failure: missing privileges, as the README's exit codes say)."""
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "secpolicy", *command],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)}, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "internal error" not in out and "Traceback" not in out
    if command == ["doctor"]:
        assert "[FAIL] privileges            euid 65534 is not root" in out
        assert "tracefs at /sys/kernel/tracing is not readable by uid 65534" in out
        assert out.rstrip().endswith("live monitor: NOT ready (tracefs, privileges, bpf load)")
    elif command[0] == "doctor":
        report = json.loads(proc.stdout)
        assert report["ready"] is False
        failed = {c["name"]: c for c in report["checks"] if c["ok"] is False}
        assert set(failed) == {"tracefs", "privileges", "bpf load"} and all(c["fix"] for c in failed.values())
    else:
        assert "the live monitor needs root" in proc.stderr and "secpolicy doctor" in proc.stderr


def test_doctor_says_how_root_scans_open_paths_with_and_without_openat2(monkeypatch) -> None:
    from secpolicy.doctor import check_root_scans
    from secpolicy.facts import inroot

    here = check_root_scans()
    assert here.ok is True and here.detail.startswith("openat2")  # this machine's kernel has it
    monkeypatch.setattr(inroot, "available", lambda: False)
    without = check_root_scans()
    # Not a caveat any more: without openat2 paths are resolved from descriptors, as safely.
    assert without.ok is True and without.detail.startswith("no openat2") and "directory descriptors" in without.detail
