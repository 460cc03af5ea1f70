"""The bundled packs: every rule has a passing and a failing case (live-only facts stood in for
by `facts:` twins), inline tests pass, and each pack's coverage data is honest."""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
FRAMEWORKS = ("cis", "pci-dss", "hipaa", "soc2")


@lru_cache(maxsize=1)
def _docs() -> list[tuple[Path, dict]]:
    # CSafeLoader when available: the CIS files are large and parsed once per session.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [(p, yaml.load(p.read_text(), Loader=loader)) for p in sorted(POLICIES.rglob("*.yaml"))]


def _rules() -> list[dict]:
    return [r for _, d in _docs() for r in d.get("rules") or []]


def _coverage(framework: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"automated": [], "partial": [], "manual": [], "notes": {}}  # type: ignore[dict-item]
    for _, d in _docs():
        c = (d.get("coverage") or {}).get(framework)
        if c:
            for k in ("automated", "partial", "manual"):
                out[k] += c.get(k, [])
            out["notes"].update(c.get("notes", {}))  # type: ignore[attr-defined]
    return out


def test_cis_pack_has_at_least_120_rules_each_with_benchmark_metadata() -> None:
    cis = [r for r in _rules() if "cis" in r.get("references", {})]
    assert len(cis) >= 120
    for r in cis:
        assert r["id"].startswith(f"cis-{r['references']['cis'][0]}-"), r["id"]
        assert r.get("rationale") and r.get("remediation"), r["id"]
        assert r.get("profiles") and all(p.startswith(("level1-", "level2-")) for p in r["profiles"]), r["id"]
        # A level-1 control also belongs to the level-2 profile of the same kind.
        for kind in ("server", "workstation"):
            if f"level1-{kind}" in r["profiles"]:
                assert f"level2-{kind}" in r["profiles"], r["id"]


def test_cis_includes_network_parameters_and_auditd_rules() -> None:
    cis = {c for r in _rules() for c in r.get("references", {}).get("cis", [])}
    assert {f"3.3.{i}" for i in range(1, 12)} <= cis
    assert {f"6.2.3.{i}" for i in range(1, 21)} <= cis


# Rules on live-only facts (the BPF inventory, the process table, AppArmor's running state, the
# loaded audit rules) get their passing and failing cases from `facts:` twins: none is exempt.
LIVE_ONLY: set[str] = set()


def test_every_rule_has_a_pass_and_a_fail_case_or_is_a_pinned_live_rule() -> None:
    untested = set()
    for r in _rules():
        expects = {t["expect"] for t in r.get("tests") or []}
        if "when" in r or "sequence" in r:
            assert {"fire", "no_fire"} <= expects, r["id"]
            continue
        if not ({"pass"} <= expects and expects & {"fail", "error"}):
            untested.add(r["id"])
            assert "not_applicable" in expects, f"{r['id']}: a live-only rule states not_applicable under --root"
    assert untested == LIVE_ONLY


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_coverage_lists_are_disjoint_and_backed_by_rules(framework: str) -> None:
    cov = _coverage(framework)
    auto, part, man = set(cov["automated"]), set(cov["partial"]), set(cov["manual"])
    assert (auto | part) and not (auto & part) and not (auto & man) and not (part & man)
    for k in ("automated", "partial", "manual"):
        assert len(cov[k]) == len(set(cov[k])), f"{framework} {k} lists an id twice"
    referenced = {c for r in _rules() for c in r.get("references", {}).get(framework, [])}
    # Nothing claimed automated or partial without a rule that says it serves it ...
    assert (auto | part) - referenced == set(), f"{framework}: claimed without a rule"
    # ... and no rule serving a requirement the coverage data does not classify.
    assert referenced - (auto | part | man) == set(), f"{framework}: unclassified references"
    assert referenced & man == set(), f"{framework}: a rule serves a requirement listed as manual"
    # Every requirement that is not automated says why.
    assert (part | man) - set(cov["notes"]) == set(), f"{framework}: partial/manual without a note"


def test_cis_coverage_classifies_every_recommendation_once() -> None:
    cov = _coverage("cis")
    allc = cov["automated"] + cov["partial"] + cov["manual"]
    assert len(allc) == len(set(allc))
    # The benchmark's seven sections, 312 recommendations in v1.1.0.
    assert len(allc) == 312
    assert {c.split(".")[0] for c in allc} == {"1", "2", "3", "4", "5", "6", "7"}


def test_inline_tests_of_every_rule_pass() -> None:
    exe = [sys.executable, "-m", "secpolicy"]
    proc = subprocess.run([*exe, "test", str(POLICIES)], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert ", 0 failed" in proc.stdout
    # --require-tests names exactly the live-only rules and nothing else.
    listed = proc.stderr.split(":", 1)[1].replace(" ...", "").strip() if proc.stderr else ""
    assert {x.strip() for x in listed.split(",") if x.strip()} == LIVE_ONLY, proc.stderr


def test_the_packs_lint_without_a_warning() -> None:
    """Mixed and/or without parentheses and unused macros are warnings: the packs have none."""
    proc = subprocess.run([sys.executable, "-m", "secpolicy", "lint", str(POLICIES)], capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "warning" not in proc.stdout, proc.stdout + proc.stderr


def test_pci_11_5_2_accepts_a_secpolicy_fim_baseline_checked_this_week(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "secpolicy"]
    tree = tmp_path / "etc"
    tree.mkdir()
    (tree / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "fim.yaml").write_text(f"version: 1\nname: system\npaths:\n  - path: {tree}\n    attrs: R\n")
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    db = tmp_path / "system.db"
    common = ["--config", str(tmp_path / "fim.yaml"), "--db", str(db), "--key-file", str(key), "--no-progress"]
    scan = [*exe, "scan", "--root", str(tmp_path), "--rule", "pci-11.5.2-fim-baseline-checked-weekly",
            "--fim", f"system={db}", "--fim-key-file", str(key), "--format", "json"]

    def status() -> str:
        import json

        p = subprocess.run(scan, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
        return json.loads(p.stdout)["results"][0]["status"]

    assert subprocess.run([*exe, "fim", "init", *common], capture_output=True, cwd=REPO, timeout=120, check=False).returncode == 0
    assert status() == "fail"  # a baseline never compared
    assert subprocess.run([*exe, "fim", "check", *common], capture_output=True, cwd=REPO, timeout=120, check=False).returncode == 0
    assert status() == "pass"
