"""What a scan tells an auditor about waivers and tailoring: a rule the tailoring deselected is
listed as `notselected` (never silently absent), every expired waiver that matched a finding is
shown, a host name read from the scanned system is data and never widens a waiver's host
patterns, and the terminal summary names each expired waiver."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from secpolicy.app.policies import load_policy_set
from secpolicy.engine import ScanResult, scan
from secpolicy.models import waiver_host_matches
from secpolicy.policy.tailoring import load_tailoring
from secpolicy.policy.waivers import load_waivers
from secpolicy.reports import csv_, html, junit, sarif
from secpolicy.reports.model import build_report
from secpolicy.resources import load_schema
from secpolicy.vocabulary import builtin_registry

SECPOLICY = [sys.executable, "-m", "secpolicy"]
SARIF_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "reports" / "schemas" / "sarif-schema-2.1.0.json"
TODAY = dt.date(2026, 1, 1)

POLICY = """\
metadata: {id: wr, title: Waiver reporting, version: "1", standard: cis}
rules:
  - id: wr-root
    title: sshd refuses root logins
    severity: high
    references: {cis: ["1.1"]}
    profiles: [base]
    check: sshd.option("PermitRootLogin") == "no"
  - id: wr-tries
    title: sshd allows few tries
    severity: medium
    references: {cis: ["1.2"]}
    profiles: [base]
    check: int(sshd.option("MaxAuthTries")) <= 4
  - id: wr-banner
    title: sshd shows a banner
    severity: low
    references: {cis: ["1.3"]}
    profiles: [base]
    check: sshd.option("Banner") exists
  - id: wr-strict
    title: sshd offers few ciphers
    severity: low
    references: {cis: ["1.4"]}
    profiles: [strict]
    check: sshd.option("Ciphers") exists
"""

TAILORING = """\
metadata: {id: t-wr, title: Waiver reporting tailoring}
profile: base
rules:
  wr-banner:
    enabled: false
    reason: no banner on build hosts, CHG-9
"""

TWO_EXPIRED = """\
- rule_id: wr-root
  justification: first lapsed exception
  approver: alice
  expires: 2020-01-01
- rule_id: wr-root
  justification: second lapsed exception
  approver: bob
  expires: 2021-06-01
"""

WEB_ONLY = """\
- rule_id: wr-root
  justification: root login on the web fleet only
  hosts: ["web-*"]
"""


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "wr.yaml").write_text(POLICY)
    root = tmp_path / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin yes\nMaxAuthTries 6\n")
    (root / "etc" / "hostname").write_text("web-1\n")
    (tmp_path / "tailoring.yaml").write_text(TAILORING)
    (tmp_path / "two-expired.yaml").write_text(TWO_EXPIRED)
    (tmp_path / "web-only.yaml").write_text(WEB_ONLY)
    return tmp_path


def run_scan(d: Path, *, waivers: str | None = None, tailoring: bool = False) -> ScanResult:
    reg = builtin_registry()
    ps = load_policy_set([str(d / "pol")], reg)
    return scan(
        ps, reg, root=str(d / "root"),
        waivers=load_waivers(d / waivers) if waivers else None,
        tailoring=load_tailoring(d / "tailoring.yaml", ps) if tailoring else None,
        today=TODAY,
    )


# 1. notselected -----------------------------------------------------------------------------
def test_rules_the_tailoring_deselects_are_reported_as_notselected(setup):
    res = run_scan(setup, tailoring=True).to_results()
    jsonschema.validate(res, load_schema("results"))
    assert {r["rule_id"]: r["status"] for r in res["results"]} == {"wr-root": "fail", "wr-tries": "fail"}
    t = setup / "tailoring.yaml"
    assert res["not_selected"] == [
        {"rule_id": "wr-banner", "title": "sshd shows a banner", "severity": "low", "policy_id": "wr",
         "references": {"cis": ["1.3"]}, "result": "notselected",
         "reason": "disabled by tailoring t-wr: no banner on build hosts, CHG-9", "source": f"{t}:4"},
        {"rule_id": "wr-strict", "title": "sshd offers few ciphers", "severity": "low", "policy_id": "wr",
         "references": {"cis": ["1.4"]}, "result": "notselected",
         "reason": "not in profile base of tailoring t-wr", "source": str(t)},
    ]
    report = build_report(res)
    # SARIF: the run's configuration disables each, as SARIF says "not evaluated"; still valid.
    doc = sarif.to_sarif(report)
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(doc)
    run = doc["runs"][0]
    overrides = run["invocations"][0]["ruleConfigurationOverrides"]
    assert [(o["descriptor"]["id"], o["configuration"]["enabled"], o["properties"]["result"]) for o in overrides] == [
        ("wr-banner", False, "notselected"), ("wr-strict", False, "notselected"),
    ]
    assert [x["rule_id"] for x in run["properties"]["not_selected"]] == ["wr-banner", "wr-strict"]
    assert sorted(r["ruleId"] for r in run["results"]) == ["wr-root", "wr-tries"]
    # JUnit: a skipped case each, counted in the suite's attributes.
    out = io.StringIO()
    junit.render(report, out)
    suite = ET.fromstring(out.getvalue()).find("testsuite")
    assert suite is not None
    skipped = {c.get("name"): s.get("message") for c in suite.iter("testcase") if (s := c.find("skipped")) is not None}
    assert skipped == {
        "wr-banner: sshd shows a banner": f"notselected: disabled by tailoring t-wr: no banner on build hosts, CHG-9 ({t}:4)",
        "wr-strict: sshd offers few ciphers": f"notselected: not in profile base of tailoring t-wr ({t})",
    }
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "2")
    # HTML: a table of the deselected rules beside the tailoring.
    page = io.StringIO()
    html.render_html(report, page)
    text = page.getvalue()
    section = text[text.index('<table class="grid not-selected">'):]
    section = section[:section.index("</table>")]
    assert section.count("<td>notselected</td>") == 2
    assert "disabled by tailoring t-wr: no banner on build hosts, CHG-9" in section
    assert "not in profile base of tailoring t-wr" in section
    # CSV: a row each, with why and where.
    table = io.StringIO()
    csv_.render(report, table)
    rows = {r["rule_id"]: r for r in csv.DictReader(io.StringIO(table.getvalue()))}
    assert sorted(rows) == ["wr-banner", "wr-root", "wr-strict", "wr-tries"]
    assert [(rows[i]["status"], rows[i]["reason"], rows[i]["source"]) for i in ("wr-banner", "wr-strict")] == [
        ("notselected", "disabled by tailoring t-wr: no banner on build hosts, CHG-9", f"{t}:4"),
        ("notselected", "not in profile base of tailoring t-wr", str(t)),
    ]


def test_without_a_tailoring_nothing_is_listed_as_notselected(setup):
    res = run_scan(setup).to_results()
    assert res["not_selected"] == []
    assert "ruleConfigurationOverrides" not in sarif.to_sarif(build_report(res))["runs"][0]["invocations"][0]


# 2. every expired waiver --------------------------------------------------------------------
def test_every_expired_waiver_that_matched_a_finding_is_marked_expired(setup):
    res = run_scan(setup, waivers="two-expired.yaml").to_results()
    w = setup / "two-expired.yaml"
    assert [(x["justification"], x["status"]) for x in res["waivers"]] == [
        ("first lapsed exception", "expired"), ("second lapsed exception", "expired"),
    ]
    (root,) = [r for r in res["results"] if r["rule_id"] == "wr-root"]
    assert root["status"] == "fail"
    assert [e["message"] for e in root["evidence"] if e["expression"] == "waiver"] == [
        f"a waiver for this rule expired on 2020-01-01 ({w}:1): not applied",
        f"a waiver for this rule expired on 2021-06-01 ({w}:5): not applied",
    ]
    register = {(e.justification, e.status, e.effect) for e in build_report(res).waivers}
    assert register == {
        ("first lapsed exception", "expired", "past its date: the failure stands"),
        ("second lapsed exception", "expired", "past its date: the failure stands"),
    }


# 3. host names are data ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["web-*", "web-[x]", "web-?", "web-" + "a" * 70])
def test_a_host_name_from_the_scanned_system_never_widens_a_waiver(setup, name):
    (setup / "root" / "etc" / "hostname").write_text(name + "\n")
    res = run_scan(setup, waivers="web-only.yaml").to_results()
    (root,) = [r for r in res["results"] if r["rule_id"] == "wr-root"]
    assert (root["status"], res["waivers"][0]["status"]) == ("fail", "unused")
    (entry,) = build_report(res).waivers
    assert entry.host_matched is False
    assert not waiver_host_matches(res["scan"]["host"], ("web-*",))


def test_a_valid_host_name_still_matches_the_waivers_pattern(setup):
    res = run_scan(setup, waivers="web-only.yaml").to_results()
    assert res["scan"]["host"] == "web-1"
    (root,) = [r for r in res["results"] if r["rule_id"] == "wr-root"]
    assert (root["status"], res["waivers"][0]["status"]) == ("waived", "applied")
    assert waiver_host_matches("anything at all", ())  # a waiver without hosts: every host


# 4. the terminal ----------------------------------------------------------------------------
def test_the_terminal_summary_names_each_expired_waiver_and_each_notselected_rule(setup):
    w, t = setup / "two-expired.yaml", setup / "tailoring.yaml"
    out = subprocess.run(
        [*SECPOLICY, "scan", "-p", str(setup / "pol"), "--root", str(setup / "root"), "--waivers", str(w),
         "--tailoring", str(t)],
        capture_output=True, text=True, check=False, env={**os.environ, "NO_COLOR": "1"},
    )
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    at = lines.index("Expired waivers: 2 (past their date: not applied)")
    assert lines[at + 1:at + 3] == [
        f"  wr-root: first lapsed exception (expired 2020-01-01, approved by alice; {w}:1)",
        f"  wr-root: second lapsed exception (expired 2021-06-01, approved by bob; {w}:5)",
    ]
    at = lines.index("Not selected by the tailoring: 2 rule(s), not evaluated")
    assert lines[at + 1:at + 3] == [
        f"  notselected wr-banner: disabled by tailoring t-wr: no banner on build hosts, CHG-9 ({t}:4)",
        f"  notselected wr-strict: not in profile base of tailoring t-wr ({t})",
    ]
