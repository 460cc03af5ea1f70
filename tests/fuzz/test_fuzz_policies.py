"""Fuzz the policy loader and the expression language through `lint` and `scan`: any policy
text ends in exit 0/1/2 with `file:line:col`, never a traceback or a hang."""

from __future__ import annotations

import os
from pathlib import Path

from fuzz_helpers import FUZZ, check, fresh, run, snapshot
from hypothesis import given
from strategies import HEADER, expressions, policy_texts


@FUZZ
@given(text=policy_texts())
def test_lint_any_policy_text(tmp_path_factory, text):
    work = fresh(tmp_path_factory.getbasetemp(), "lint-")
    p = work / "p.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = snapshot(work)
    check(run("lint", p), located=[p])
    assert snapshot(work) == before


@FUZZ
@given(expr=expressions())
def test_scan_any_expression_on_a_small_root(tmp_path_factory, expr):
    work = fresh(tmp_path_factory.getbasetemp(), "scan-")
    root = work / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n" + "a" * 40 + "b\n")
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin no\n")
    os.mkfifo(root / "etc" / "fifo")
    os.symlink("loop", root / "etc" / "loop")
    p = work / "p.yaml"
    p.write_text(HEADER + f"rules:\n  - id: r\n    title: r\n    severity: low\n    check: {_yaml_str(expr)}\n")
    before = snapshot(work)
    check(run("scan", "-p", p, "--root", root, "--format", "json"), located=[p])
    assert snapshot(work) == before


def _yaml_str(s: str) -> str:
    import json

    return json.dumps(s)


def test_the_expression_strategy_reaches_the_evaluator(tmp_path):
    # Guard against a suite that only ever produces load errors: a sample must evaluate.
    p = Path(tmp_path) / "p.yaml"
    p.write_text(HEADER + 'rules:\n  - {id: r, title: r, severity: low, check: \'file("/etc/passwd").has_line("(a+)+$")\'}\n')
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("a" * 40 + "b\n")
    out = run("scan", "-p", p, "--root", tmp_path)
    check(out)
    assert out.code == 1  # evaluated: no line matches, the rule fails
