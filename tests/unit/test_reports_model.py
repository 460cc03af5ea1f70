"""The report model: a results file is validated, its findings ordered for an auditor, and
earlier scans become a trend; malformed files are refused with one clear message."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from secpolicy.errors import EXIT_INVALID_INPUT, InputError
from secpolicy.models import Status
from secpolicy.reports import build_report
from secpolicy.reports.model import validate_results

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"


@pytest.fixture()
def results() -> dict:
    return json.loads((FIX / "web1_results.json").read_text())


@pytest.fixture()
def baseline() -> dict:
    return json.loads((FIX / "web1_baseline.json").read_text())


def test_findings_are_ordered_errors_then_failures_then_waived_most_severe_first(results):
    r = build_report(results)
    assert [(f.status.value, f.rule_id) for f in r.findings[:8]] == [
        ("error", "cis.audit.sudoers_watch"),
        ("fail", "cis.files.shadow_mode"),
        ("fail", "cis.ssh.ciphers"),
        ("fail", "pci.auth.pw_minlen"),
        ("fail", "cis.ssh.max_auth_tries"),
        ("fail", "hipaa.access.auto_logoff"),
        ("waived", "cis.ssh.permit_root_login"),
        ("waived", "pci.time.ntp"),
    ]
    assert {f.rule_id for f in r.failing} == {
        "cis.audit.sudoers_watch", "cis.files.shadow_mode", "cis.ssh.ciphers",
        "pci.auth.pw_minlen", "cis.ssh.max_auth_tries", "hipaa.access.auto_logoff",
    }


def test_report_carries_evidence_waivers_coverage_and_monitoring(results):
    r = build_report(results)
    shadow = next(f for f in r.findings if f.rule_id == "cis.files.shadow_mode")
    assert [(e.expected, e.observed, e.source) for e in shadow.evidence] == [
        ("0o640 or stricter", "0o644", "/etc/shadow"),
        ('"root" or "shadow"', '"shadow"', "/etc/shadow"),
    ]
    root = next(f for f in r.findings if f.rule_id == "cis.ssh.permit_root_login")
    assert root.status == Status.WAIVED and root.waiver.approver == "Maria Keller (CISO)"
    assert {w.rule_id: w.status for w in r.waivers} == {
        "cis.ssh.permit_root_login": "applied", "pci.time.ntp": "applied",
        "cis.kernel.ip_forward": "expired", "cis.pkg.telnetd": "unused",
    }
    cis = next(fw for fw in r.frameworks if fw.name == "cis")
    assert (len(cis.automated), len(cis.partial), len(cis.manual)) == (7, 2, 3)
    assert cis.compliance_pct == results["summary"]["frameworks"]["cis"]["compliance_pct"]
    assert r.lost_total == 312
    assert r.fim["result"] == "changed"
    assert [e.rule_id for e in r.errors] == ["cis.audit.sudoers_watch"]


def test_history_becomes_a_time_ordered_trend(results, baseline):
    r = build_report(results, [baseline])
    assert [p.at for p in r.trend] == [baseline["scan"]["started_at"], results["scan"]["started_at"]]
    assert r.trend[0].frameworks["cis"] == baseline["summary"]["frameworks"]["cis"]["compliance_pct"]
    assert build_report(results).trend == ()


def _broken(results: dict, how: str) -> dict:
    doc = copy.deepcopy(results)
    if how == "status":
        doc["results"][0]["status"] = "passed"
    elif how == "missing_scan":
        del doc["scan"]
    elif how == "duplicate":
        doc["results"].append(copy.deepcopy(doc["results"][0]))
        doc["summary"]["total"] += 1
    elif how == "summary":
        doc["summary"]["by_status"]["fail"] += 1
    elif how == "sha":
        doc["scan"]["policies"][0]["sha256"] = "not-a-hash"
    return doc


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("status", "at results/0/status: 'passed' is not one of"),
        ("missing_scan", "'scan' is a required property"),
        ("duplicate", "rule id 'cis.ssh.permit_root_login' appears twice"),
        ("summary", "summary counts disagree with the results list"),
        ("sha", "at scan/policies/0/sha256"),
    ],
)
def test_malformed_results_are_refused_with_a_located_message(results, how, message):
    with pytest.raises(InputError) as exc:
        build_report(_broken(results, how))
    assert message in exc.value.render()
    assert "\n" not in exc.value.render()
    assert exc.value.exit_code == EXIT_INVALID_INPUT


def test_a_malformed_history_entry_is_named(results, baseline):
    bad = _broken(baseline, "status")
    with pytest.raises(InputError, match=r"^history entry 1: "):
        build_report(results, [bad])


def test_a_non_object_is_refused():
    with pytest.raises(InputError, match="expected a JSON object, found list"):
        validate_results([])


@pytest.mark.parametrize(
    ("finding", "message"),
    [
        ("not a finding", "at results/0: 'not a finding' is not of type 'object'"),
        ({"status": "pass"}, "at results/0: rule_id None is not valid"),
        ({"rule_id": "r", "status": "passed"}, "at results/0: status 'passed' is not valid"),
    ],
)
def test_the_summary_only_check_still_refuses_a_malformed_finding(results, finding, message):
    """History entries and fleet files are checked without a schema walk of each finding
    (its cost dominated a fleet ingest): the id and the status are still checked."""
    doc = copy.deepcopy(results)
    doc["results"][0] = finding
    with pytest.raises(InputError) as exc:
        validate_results(doc, summary_only=True)
    assert message in exc.value.render()
