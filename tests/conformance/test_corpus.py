"""Every bundled rule on every tree of the conformance corpus (corpus.py): the verdicts are the
ones the benchmark's audit (and the real component) give, no rule returns ERROR (but where the
component itself refuses its configuration, as AIDE does an undefined group), and no rule
passes because its component is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from secpolicy.engine import scan

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import corpus


def _verdicts(bundle, root: Path) -> dict[str, tuple[str, str]]:
    ps, reg = bundle
    return {
        f.rule_id: (f.status.value, f.reason or "") for f in scan(ps, reg, root=str(root)).findings
    }


def _rules_for(bundle, key: str) -> list[str]:
    ps, _ = bundle
    if key[:1].isdigit():
        return [r.id for r in ps.rules if key in r.references.get("cis", ())]
    return [key]


def expected(bundle, variant: corpus.Variant | None) -> dict[str, str]:
    ps, _ = bundle
    want = {r.id: ("skipped" if r.check is None else "pass") for r in ps.rules}
    layers = [corpus.BASE_EXPECT] + ([variant.expect] if variant else [])
    for layer in layers:
        for key, status in layer.items():
            ids = _rules_for(bundle, key)
            assert ids, f"{variant.id if variant else 'base'}: no bundled rule for {key!r}"
            for rid in ids:
                want[rid] = status
    return want


def _compare(bundle, got: dict[str, tuple[str, str]], want: dict[str, str]) -> list[str]:
    out = []
    for rid, status in sorted(want.items()):
        have, reason = got[rid]
        if have != status:
            out.append(f"{rid}: expected {status}, got {have}" + (f" ({reason})" if reason else ""))
    return out


def test_base_tree_gives_the_benchmarks_verdicts(bundle, base_tree: Path) -> None:
    got = _verdicts(bundle, base_tree)
    assert [r for r, (s, _) in got.items() if s == "error"] == []
    assert _compare(bundle, got, expected(bundle, None)) == []


@pytest.mark.parametrize("variant", corpus.VARIANTS, ids=lambda v: v.id)
def test_variant(bundle, base_tree: Path, tmp_path: Path, variant: corpus.Variant) -> None:
    root = corpus.build(tmp_path, variant, base_tree)
    got = _verdicts(bundle, root)
    want = expected(bundle, variant)
    errors = {r: why for r, (s, why) in got.items() if s == "error" and want[r] != "error"}
    assert errors == {}  # an ERROR only where the variant says the tool itself could not tell
    assert _compare(bundle, got, want) == [], variant.note


# Rules that pass on an empty root because absence IS compliance: "X is not installed / not in
# use", "no OS information in a banner that does not exist", nothing to violate in an empty
# file set, no fstab line for /dev/shm (systemd mounts it nodev,nosuid). Everything else must
# fail or be not applicable there, except the account rules (below).
ABSENCE_IS_COMPLIANCE = {
    "1.1.2.2.2",
    "1.1.2.2.3",
    "6.1.4.1",
    "7.1.11",
    "1.5.4",
    "1.5.5",
    "1.6.1",
    "1.6.2",
    "1.6.3",
    "1.6.4",
    "1.6.5",
    "1.6.6",
    "1.7.1",
    "2.1.1",
    "2.1.2",
    "2.1.3",
    "2.1.4",
    "2.1.5",
    "2.1.6",
    "2.1.7",
    "2.1.8",
    "2.1.9",
    "2.1.10",
    "2.1.11",
    "2.1.12",
    "2.1.13",
    "2.1.14",
    "2.1.15",
    "2.1.16",
    "2.1.17",
    "2.1.18",
    "2.1.19",
    "2.1.20",
    "2.1.21",
    "2.2.1",
    "2.2.2",
    "2.2.3",
    "2.2.4",
    "2.2.5",
    "2.2.6",
    "3.1.3",
    "5.3.3.4.1",
    "5.3.3.4.2",
    "5.4.2.6",
    "5.4.3.1",
    "6.1.2.1.4",
    "7.1.2",
    "7.1.4",
    "7.1.6",
    "7.1.8",
    "7.1.10",
    "7.1.12",
}
ABSENCE_IS_COMPLIANCE_RULES = {"pci-10.6.3-time-settings-protected"}


# A root without /etc/passwd has no account database to check: the rules that read accounts
# are ERROR with that reason (they passed vacuously over an empty account list before).
NO_ACCOUNTS = {
    f"/etc/{name} does not exist: no account can be checked without it"
    for name in ("passwd", "group")
}
ACCOUNT_CONTROLS = {
    "5.4.2.1",
    "5.4.2.2",
    "5.4.2.3",
    "5.4.2.4",
    "5.4.2.7",
    "5.4.2.8",
    "7.2.1",
    "7.2.2",
    "7.2.3",
    "7.2.4",
    "7.2.5",
    "7.2.6",
    "7.2.7",
    "7.2.8",
    "7.2.9",
    "7.2.10",
}


def test_empty_root_has_no_error_and_no_vacuous_pass(bundle, tmp_path: Path) -> None:
    got = _verdicts(bundle, tmp_path)
    ps, _ = bundle
    accounts = {r.id for r in ps.rules if set(r.references.get("cis", ())) & ACCOUNT_CONTROLS}
    errors = {r: why for r, (s, why) in got.items() if s == "error"}
    assert set(errors) == accounts
    assert set(errors.values()) <= NO_ACCOUNTS
    refs = {r.id: set(r.references.get("cis", ())) for r in ps.rules}
    passing = {r for r, (s, _) in got.items() if s == "pass"}
    vacuous = {
        r
        for r in passing
        if not (refs[r] & ABSENCE_IS_COMPLIANCE) and r not in ABSENCE_IS_COMPLIANCE_RULES
    }
    assert vacuous == set()


def test_empty_account_files_are_no_error_for_the_account_rules(bundle, tmp_path: Path) -> None:
    for name in ("passwd", "group", "shadow"):
        (tmp_path / "etc").mkdir(exist_ok=True)
        (tmp_path / "etc" / name).write_text("")
    got = _verdicts(bundle, tmp_path)
    ps, _ = bundle
    accounts = {r.id for r in ps.rules if set(r.references.get("cis", ())) & ACCOUNT_CONTROLS}
    assert {r: why for r, (s, why) in got.items() if s == "error" and r in accounts} == {}


def test_every_automated_cis_control_has_a_breaking_variant(bundle) -> None:
    cov = yaml.safe_load((REPO / "policies/cis/coverage.yaml").read_text())["coverage"]["cis"]
    broken = set()
    for v in corpus.VARIANTS:
        for key, status in v.expect.items():
            if status == "fail":
                for rid in _rules_for(bundle, key):
                    ps, _ = bundle
                    broken |= {
                        c for r in ps.rules if r.id == rid for c in r.references.get("cis", ())
                    }
    # live-only controls cannot be broken in a root tree: their rules are not_applicable there
    live_only = {"1.3.1.3", "1.3.1.4"}
    assert set(cov["automated"]) - live_only - broken == set()
