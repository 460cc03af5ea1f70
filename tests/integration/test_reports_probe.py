"""What an auditor reads of one real scan mixing every outcome (pass, fail, error, not
applicable, waived, a failure whose waiver expired, waivers on rules that did not fail): the
waiver register never says an errored rule passed, an error is never a SARIF note, a waiver's
terms (expiry, hosts) reach every format, a tailored value no scanned rule reads is marked,
and the counts agree across JSON, SARIF, JUnit, CSV, HTML and PDF."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from secpolicy.resources import load_schema

SECPOLICY = [sys.executable, "-m", "secpolicy"]
SCHEMAS = Path(__file__).resolve().parents[1] / "fixtures" / "reports" / "schemas"

POLICY = """\
metadata: {id: probe, title: Probe policy, version: "1", standard: cis}
vars:
  max_days: {type: int, default: 365, min: 1, max: 400, description: highest password age}
  unread_days: {type: int, default: 7, description: read only by p-unread}
rules:
  - id: p-pass
    title: passes
    severity: high
    references: {cis: ["1.1"]}
    check: login_defs.int("PASS_MAX_DAYS") > 0
  - id: p-fail
    title: fails high
    severity: high
    references: {cis: ["1.2"]}
    check: sshd.option("PermitRootLogin") == "no"
  - id: p-waived
    title: fails and is waived
    severity: medium
    references: {cis: ["1.3"]}
    check: login_defs.int("PASS_MAX_DAYS") <= max_days
  - id: p-expired
    title: fails with an expired waiver
    severity: low
    references: {cis: ["1.4"]}
    check: int(sshd.option("MaxAuthTries")) <= 4
  - id: p-error
    title: cannot be evaluated
    severity: low
    references: {cis: ["1.5"]}
    check: sysctl("bad name").value == 1
  - id: p-na
    title: does not apply
    severity: medium
    references: {cis: ["1.6"]}
    applicable:
      - if: package("nothing").installed
        reason: nothing is not installed
    check: login_defs.int("UMASK") == 27
  - id: p-unread
    title: reads the other var
    severity: info
    references: {cis: ["1.7"]}
    check: login_defs.int("PASS_WARN_AGE") >= unread_days
"""

WAIVERS = """\
waivers:
  - rule_id: p-waived
    justification: accepted risk CHG-1
    expires: 2099-01-01
    hosts: ["probe-*"]
  - rule_id: p-expired
    justification: lapsed
    approver: bob
    expires: 2020-01-01
  - rule_id: p-error
    justification: waive the error
    approver: bob
  - rule_id: p-pass
    justification: not needed
"""

TAILORING = """\
metadata: {id: t-probe, title: Probe tailoring}
vars:
  unread_days: 3
"""

SCANNED = ["p-pass", "p-fail", "p-waived", "p-expired", "p-error", "p-na"]  # not p-unread
EXPECTED = {"p-pass": "pass", "p-fail": "fail", "p-waived": "waived", "p-expired": "fail", "p-error": "error",
            "p-na": "not_applicable"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("probe")
    root = d / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("probe-host\n")
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin yes\nMaxAuthTries 6\n")
    (root / "etc" / "login.defs").write_text("PASS_MAX_DAYS 99999\nPASS_WARN_AGE 7\nUMASK 022\n")
    (d / "pol").mkdir()
    (d / "pol" / "probe.yaml").write_text(POLICY)
    (d / "waivers.yaml").write_text(WAIVERS)
    (d / "tailoring.yaml").write_text(TAILORING)
    rules = [a for r in SCANNED for a in ("--rule", r)]
    out = cli("scan", "-p", str(d / "pol"), "--root", str(root), "--waivers", str(d / "waivers.yaml"),
              "--tailoring", str(d / "tailoring.yaml"), *rules, "--format", "json", "-o", str(d / "scan.json"))
    assert out.returncode == 1, out.stderr  # p-fail (high) fails; p-error errs
    reports = {}
    for fmt in ("sarif", "junit", "csv", "html", "ocsf"):
        done = cli("report", str(d / "scan.json"), "--format", fmt, "-o", str(d / f"r.{fmt}"))
        assert done.returncode == 0, done.stderr
        reports[fmt] = (d / f"r.{fmt}").read_text(encoding="utf-8")
    return {"dir": d, "results": json.loads((d / "scan.json").read_text()), **reports}


def _html_text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _html_register(doc: str) -> str:
    start = doc.index('<section id="waivers">')
    return _html_text(doc[start:doc.index("</section>", start)])


@pytest.fixture(scope="module")
def pdf_text(scan) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    pdf = scan["dir"] / "r.pdf"
    done = cli("report", str(scan["dir"] / "scan.json"), "--format", "pdf", "-o", str(pdf))
    assert done.returncode == 0, done.stderr
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(text.split())


def test_the_scan_has_every_outcome(scan):
    res = scan["results"]
    assert {r["rule_id"]: r["status"] for r in res["results"]} == EXPECTED
    assert {w["rule_id"]: w["status"] for w in res["waivers"]} == {
        "p-waived": "applied", "p-expired": "expired", "p-error": "active", "p-pass": "active",
    }


def test_the_waiver_register_never_says_an_errored_rule_passed(scan, pdf_text):
    """The register listed the waiver of the errored rule as `active` under the legend
    "active: valid but the rule passed": an auditor read that p-error passed."""
    for text in (_html_register(scan["html"]), pdf_text):
        assert "valid but the rule passed" not in text
        assert "the rule could not be evaluated (error): a waiver never covers an error" in text
        assert "nothing waived: the rule's result is pass" in text  # p-pass
        assert "past its date: the failure stands" in text  # p-expired
        assert "the rule failed; the failure is waived" in text  # p-waived


def test_the_html_register_shows_each_waivers_hosts(scan):
    """The PDF register named a waiver's hosts and the HTML one did not: a waiver scoped to
    `probe-*` read as if it covered every host."""
    row = next(r for r in re.findall(r'<tr class="w-.*?</tr>', scan["html"]) if "p-waived" in r)
    assert "probe-*" in _html_text(row)
    row = next(r for r in re.findall(r'<tr class="w-.*?</tr>', scan["html"]) if "p-pass" in r)
    assert "every host" in _html_text(row)


def test_an_error_is_never_a_sarif_note(scan):
    """p-error is a low-severity rule: its result was level `note`, what SARIF viewers show
    as a minor hint, for a control whose state is unknown."""
    run = json.loads(scan["sarif"])["runs"][0]
    levels = {r["ruleId"]: (r["kind"], r["level"]) for r in run["results"]}
    assert levels["p-error"] == ("fail", "warning")
    assert levels["p-expired"] == ("fail", "note")  # a low failure keeps its severity's level
    assert levels["p-fail"] == ("fail", "error")
    assert run["invocations"][0]["executionSuccessful"] is False


def test_a_waivers_expiry_is_shown_without_an_approver(scan):
    """JUnit wrote the expiry only when the waiver named an approver, OCSF never: a waiver
    running out in 2099 read as a waiver without end."""
    suite = ET.fromstring(scan["junit"]).find("testsuite")
    assert suite is not None
    case = next(c for c in suite.iter("testcase") if c.get("name", "").startswith("p-waived:"))
    skipped = case.find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "waived: accepted risk CHG-1 (expires 2099-01-01; hosts probe-*)"
    (event,) = [e for e in json.loads(scan["ocsf"]) if e["compliance"]["control"] == "p-waived"]
    assert event["comment"] == "Waived: accepted risk CHG-1 (expires 2099-01-01; hosts probe-*)"


def test_a_tailored_var_no_scanned_rule_reads_is_marked(scan, pdf_text):
    """`unread_days` is tailored but only p-unread reads it, and p-unread was not scanned:
    the tailoring table showed 3 beside the default as if it had decided a verdict."""
    assert [v["name"] for v in scan["results"]["vars"]] == ["max_days"]
    start = scan["html"].index('<div class="tailoring">')
    tailoring = _html_text(scan["html"][start:scan["html"].index("</div>", start)])
    assert "unread_days 7 3 (no scanned rule reads it: it decided nothing)" in tailoring
    assert "3 (no scanned rule reads it: it decided nothing)" in pdf_text


def test_every_format_counts_the_same_outcomes(scan, pdf_text):
    res = scan["results"]
    by_status = res["summary"]["by_status"]
    assert by_status == {"pass": 1, "fail": 2, "error": 1, "not_applicable": 1, "waived": 1, "skipped": 0}
    # The results validate against our schema, the SARIF against OASIS's.
    schema = load_schema("results")
    jsonschema.validators.validator_for(schema)(schema).validate(res)
    sarif = json.loads(scan["sarif"])
    jsonschema.Draft4Validator(json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())).validate(sarif)
    run = sarif["runs"][0]
    assert run["properties"]["by_status"] == by_status
    assert sorted(r["ruleId"] for r in run["results"]) == ["p-error", "p-expired", "p-fail"]
    assert [w["rule_id"] for w in run["properties"]["waived"]] == ["p-waived"]
    # JUnit: one case per result, the attributes add up and name the elements.
    suite = ET.fromstring(scan["junit"]).find("testsuite")
    assert suite is not None
    cases = list(suite.iter("testcase"))
    assert len(cases) == int(suite.get("tests", "-1")) == len(EXPECTED)
    for attr, tag, n in (("failures", "failure", 2), ("errors", "error", 1), ("skipped", "skipped", 2)):
        assert int(suite.get(attr, "-1")) == sum(c.find(tag) is not None for c in cases) == n
    # CSV: one row per result, with its status.
    rows = list(csv.DictReader(io.StringIO(scan["csv"], newline="")))
    assert {r["rule_id"]: r["status"] for r in rows} == EXPECTED
    # OCSF: one event per result.
    assert {e["compliance"]["control"]: e["unmapped"]["secpolicy"]["status"] for e in json.loads(scan["ocsf"])} == EXPECTED
    # HTML and PDF: the same counts in the summary, each control with its status.
    summary = _html_text(scan["html"][scan["html"].index('<section id="summary">'):])
    assert "2 failing, 1 could not be evaluated, 1 waived, 1 passing" in summary
    for rule, status in EXPECTED.items():
        assert re.search(rf'<article class="ctl st-{status}" id="rule-{rule}"', scan["html"])
    assert "1 passed, 2 failed, 1 could not be evaluated, 1 failed under an approved waiver, 1 did not apply" in pdf_text
    # The expired waiver is evidence of the failing control everywhere it is shown.
    note = "a waiver for this rule expired on 2020-01-01"
    (expired,) = [r for r in res["results"] if r["rule_id"] == "p-expired"]
    assert any(note in (e["message"] or "") for e in expired["evidence"])
    for text in (scan["csv"], scan["junit"], scan["html"], pdf_text,
                 next(r["message"]["text"] for r in run["results"] if r["ruleId"] == "p-expired")):
        assert note in text


def test_the_docs_say_what_the_register_and_sarif_show():
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text().split())
    assert "a check that could not be evaluated is at least a `warning`, never a `note`" in text
    assert "a waiver never covers an error" in text
