"""The terminal table, the SARIF message and the diff show the comparisons that decided a
verdict: for `not sshd.exists or sshd.option(...) == "no"` the option, not the guard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.ruletests import materialize_files

SECPOLICY = [sys.executable, "-m", "secpolicy"]
POLICY = """\
metadata: {id: g, title: G, version: "1"}
rules:
  - id: guarded
    title: root login refused where sshd is configured
    severity: high
    check: not sshd.exists or sshd.option("PermitRootLogin") == "no"
"""
DECIDING = 'sshd.option("PermitRootLogin") == "no"'


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, check=False)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    policy = tmp_path / "g.yaml"
    policy.write_text(POLICY)
    good, bad = tmp_path / "good", tmp_path / "bad"
    materialize_files(str(good), {"/etc/ssh/sshd_config": "PermitRootLogin no\n"})
    materialize_files(str(bad), {"/etc/ssh/sshd_config": "# weak\nPermitRootLogin yes\n"})
    return policy, good, bad


def test_table_shows_the_deciding_comparison_not_the_guard(setup):
    policy, _, bad = setup
    out = cli("scan", "-p", str(policy), "--root", str(bad))
    assert out.returncode == 1
    assert DECIDING in out.stdout and 'expected "no", observed "yes"' in out.stdout
    assert "sshd.exists" not in out.stdout


def test_sarif_message_names_the_deciding_comparison(setup):
    policy, _, bad = setup
    out = cli("scan", "-p", str(policy), "--root", str(bad), "--format", "sarif")
    (result,) = json.loads(out.stdout)["runs"][0]["results"]
    assert result["message"]["text"] == (
        'root login refused where sshd is configured: failed: sshd.option("PermitRootLogin") == "no": '
        'expected "no", observed "yes" (at /etc/ssh/sshd_config:2)'
    )
    # The guard is still in the evidence, marked as not deciding.
    assert [(e["expression"], e["decisive"]) for e in result["properties"]["evidence"]] == [
        (DECIDING, True),
        ("sshd.exists", False),
    ]


def test_diff_shows_the_deciding_comparison_of_a_new_failure(setup, tmp_path):
    policy, good, bad = setup
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    cli("scan", "-p", str(policy), "--root", str(good), "--format", "json", "-o", str(old))
    cli("scan", "-p", str(policy), "--root", str(bad), "--format", "json", "-o", str(new))
    out = cli("diff", "--format", "json", str(old), str(new))
    (change,) = json.loads(out.stdout)["new_failures"]
    assert change["evidence"] == f'{DECIDING}: expected "no", observed "yes" (at /etc/ssh/sshd_config:2)'
