"""Run the inline `tests:` of check rules: build a temporary root from the test's files (and
an optional fixture root), scan just that rule there, compare the status with `expect`."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from secpolicy.engine import evaluate_rule
from secpolicy.facts.base import FactContext, FactRegistry
from secpolicy.policy.model import Rule, RuleTest

__all__ = ["TestOutcome", "materialize_files", "run_check_tests"]


@dataclass(frozen=True)
class TestOutcome:
    rule_id: str
    name: str
    passed: bool
    detail: str
    source: str = ""


def materialize_files(dest: str, files: dict) -> None:
    """Create `files` (path -> content, or {content, mode, uid, gid, symlink, dir}) under dest."""
    for path, spec in files.items():
        target = os.path.join(dest, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(spec, str):
            spec = {"content": spec}
        if spec.get("dir"):
            os.makedirs(target, exist_ok=True)
        elif "symlink" in spec:
            os.symlink(spec["symlink"], target)
            continue
        else:
            with open(target, "w", encoding="utf-8") as f:
                f.write(spec.get("content", ""))
        mode = spec.get("mode")
        if mode is not None:
            os.chmod(target, int(mode, 8) if isinstance(mode, str) else int(mode))
        if "uid" in spec or "gid" in spec:
            try:
                os.chown(target, int(spec.get("uid", -1)), int(spec.get("gid", -1)))
            except PermissionError:
                pass  # not root: the test will say so through a wrong status


def _run_one(rule: Rule, test: RuleTest, registry: FactRegistry) -> TestOutcome:
    tmp = tempfile.mkdtemp(prefix="secpolicy-test-")
    try:
        if test.root:
            shutil.copytree(test.root, tmp, symlinks=True, dirs_exist_ok=True)
        if test.files:
            materialize_files(tmp, test.files)
        ctx = FactContext(registry, tmp, options=test.options, preset=test.facts)
        finding = evaluate_rule(rule, ctx, values=test.vars)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = finding.status.value == test.expect
    detail = f"expected {test.expect}, got {finding.status.value}"
    if not ok:
        why = finding.reason or "; ".join(e.describe() for e in finding.evidence[:3])
        if why:
            detail += f" ({why})"
    return TestOutcome(rule.id, test.name, ok, detail, test.source)


def run_check_tests(rule: Rule, registry: FactRegistry) -> list[TestOutcome]:
    return [_run_one(rule, t, registry) for t in rule.tests]
