"""The bundled packs on two Debian 12 root trees (tests/fixtures/packs/): the hardened tree fails
nothing it could pass, and the weak tree, the hardened one with the breaks of weak.yaml, fails
exactly the CIS controls those breaks name, with evidence naming the broken file (and line)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.models import Finding, Status
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "packs"))
import roots


@pytest.fixture(scope="module")
def bundle():
    reg = builtin_registry()
    return load_policies([REPO / "policies"], reg), reg


def _scan(bundle, root: Path) -> dict[str, Finding]:
    ps, reg = bundle
    return {f.rule_id: f for f in scan(ps, reg, root=str(root)).findings}


def _failing_cis(findings: dict[str, Finding]) -> set[str]:
    return {c for f in findings.values() if f.status == Status.FAIL for c in f.references.get("cis", ())}


def _with(findings: dict[str, Finding], status: Status) -> set[str]:
    return {i for i, f in findings.items() if f.status == status}


@pytest.fixture(scope="module")
def hardened(bundle, tmp_path_factory):
    return _scan(bundle, roots.build_hardened(tmp_path_factory.mktemp("packs")))


@pytest.fixture(scope="module")
def weak(bundle, tmp_path_factory):
    return _scan(bundle, roots.build_weak(tmp_path_factory.mktemp("packs")))


def test_hardened_tree_fails_nothing_and_only_live_rules_are_not_applicable(hardened):
    expect = roots.hardened_expectations()
    assert _with(hardened, Status.FAIL) == set(expect["fails"])
    assert _with(hardened, Status.ERROR) == set()
    assert _with(hardened, Status.NOT_APPLICABLE) == set(expect["not_applicable"])


def test_weak_tree_fails_exactly_the_controls_its_breaks_name(weak):
    brs = roots.breaks()
    want_cis = {c for b in brs for c in b["cis"]}
    want_other = {r for b in brs for r in b.get("other", [])}
    assert _failing_cis(weak) == want_cis
    assert {i for i in _with(weak, Status.FAIL) if not weak[i].references.get("cis")} == want_other
    assert _with(weak, Status.ERROR) == set()


def _names(source: str, where: str) -> bool:
    """`where` (a path, or path:line) is one of the places a source string lists."""
    return re.search(re.escape(where) + r"(?![\w./-])", source) is not None


@pytest.mark.parametrize("br", roots.breaks(), ids=lambda b: b["id"])
def test_each_break_is_reported_with_evidence_naming_the_file(weak, br):
    failing = [f for f in weak.values() if f.status == Status.FAIL and br["cis"][0] in f.references.get("cis", ())]
    assert failing, f"{br['id']}: no failing rule for CIS {br['cis'][0]}"
    sources = [e.source or "" for f in failing for e in f.evidence]
    assert any(_names(s, br["evidence"]) for s in sources), (br["id"], sources)


@pytest.mark.parametrize("br", roots.breaks(), ids=lambda b: b["id"])
def test_each_break_alone_fails_only_its_controls(bundle, tmp_path, br):
    findings = _scan(bundle, roots.build_weak(tmp_path, only=br["id"]))
    assert _failing_cis(findings) == set(br["cis"])
    assert {i for i in _with(findings, Status.FAIL) if not findings[i].references.get("cis")} == set(br.get("other", []))
