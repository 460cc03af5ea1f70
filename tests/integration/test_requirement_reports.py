"""Per-requirement results and the tailoring used, in every report: HTML and PDF sections,
SARIF run properties, JUnit properties, CSV columns, OCSF unmapped data, the scan diff. The
machine formats still validate against their published schemas."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from secpolicy.ruletests import materialize_files

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures" / "policies" / "verdicts"
SCHEMAS = TESTS / "fixtures" / "reports" / "schemas"
DPKG_STATUS = (FIXTURES / "sshd-installed" / "var" / "lib" / "dpkg" / "status").read_text()
SECPOLICY = [sys.executable, "-m", "secpolicy"]
TAILORING = """\
metadata: {id: acme-bastions, title: ACME bastion hosts}
vars:
  ssh_max_auth_tries: 6
rules:
  v-ssh-root-login: {enabled: false, reason: "break-glass root access, CHG-1234"}
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reports")
    root = d / "root"
    materialize_files(str(root), {
        "/etc/ssh/sshd_config": "MaxAuthTries 6\nPermitRootLogin yes\nCiphers aes128-ctr\n",
        "/var/lib/dpkg/status": DPKG_STATUS,
    })
    tailoring = d / "tailoring.yaml"
    tailoring.write_text(TAILORING)
    plain, tailored = d / "plain.json", d / "tailored.json"
    for out, extra in ((plain, ()), (tailored, ("--tailoring", str(tailoring)))):
        r = cli("scan", "-p", str(FIXTURES), "--root", str(root), "--format", "json", "-o", str(out), *extra)
        assert r.returncode == 1, r.stderr
    return {"plain": plain, "tailored": tailored, "tailoring": tailoring, "dir": d}


def render(scans: dict[str, Path], fmt: str) -> str:
    out = scans["dir"] / f"report.{fmt}"
    r = cli("report", str(scans["tailored"]), "--format", fmt, "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out.read_text(encoding="utf-8") if fmt != "pdf" else ""


def sha(scans: dict[str, Path]) -> str:
    return hashlib.sha256(scans["tailoring"].read_bytes()).hexdigest()


def test_sarif_carries_requirements_and_tailoring_and_validates(scans):
    doc = json.loads(render(scans, "sarif"))
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    assert [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(doc)] == []
    props = doc["runs"][0]["properties"]
    assert props["requirements"]["pci-dss"] == [
        {"id": "8.2.2", "status": "not_assessed", "coverage": "partial", "rules": []},
        {"id": "8.2.8", "status": "not_assessed", "coverage": "manual", "rules": []},
        {"id": "8.3.4", "status": "fail", "coverage": "automated", "rules": ["v-ssh-ciphers", "v-ssh-max-auth-tries"]},
    ]
    assert props["tailoring"]["sha256"] == sha(scans)
    assert [(v["name"], v["default"], v["value"]) for v in props["tailoring"]["vars"]] == [("ssh_max_auth_tries", "4", "6")]
    (ciphers,) = [r for r in doc["runs"][0]["results"] if r["ruleId"] == "v-ssh-ciphers"]
    assert ciphers["properties"]["requirements"] == [
        "cis 5.1.6: fail (partial; 1 of 1 rule(s) failing)",
        "pci-dss 8.3.4: fail (automated; 1 of 2 rule(s) failing)",
    ]


def test_junit_properties_name_the_suites_requirements_and_the_tailoring(scans, tmp_path):
    text = render(scans, "junit")
    xsd = subprocess.run(["xmllint", "--noout", "--schema", str(SCHEMAS / "JUnit.xsd"), str(scans["dir"] / "report.junit")],
                         capture_output=True, text=True, check=False)
    assert xsd.returncode == 0, xsd.stderr
    suite = next(s for s in ET.fromstring(text) if s.get("name") == "verdicts-ssh")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["requirement.pci-dss.8.3.4"] == "pci-dss 8.3.4: fail (automated; 1 of 2 rule(s) failing)"
    assert props["tailoring.0"] == f"tailoring acme-bastions (ACME bastion hosts): {scans['tailoring']}, sha256 {sha(scans)}"
    assert props["tailoring.1"] == "var ssh_max_auth_tries = 6 (default 4)"
    assert props["tailoring.2"] == "rule v-ssh-root-login disabled (default enabled): break-glass root access, CHG-1234"


def test_csv_rows_carry_their_requirements_and_the_tailoring(scans):
    rows = list(csv.DictReader(io.StringIO(render(scans, "csv"), newline="")))
    by_id = {r["rule_id"]: r for r in rows}
    assert by_id["v-ssh-max-auth-tries"]["requirements"] == (
        "cis 5.1.16: pass (automated; 1 rule(s)); pci-dss 8.3.4: fail (automated; 1 of 2 rule(s) failing)"
    )
    assert {r["tailoring"] for r in rows} == {f"acme-bastions ({scans['tailoring']}, sha256 {sha(scans)})"}


def test_ocsf_events_carry_requirement_status_and_tailoring(scans):
    sys.path.insert(0, str(SCHEMAS))
    from ocsf_jsonschema import compliance_finding_schema

    events = json.loads(render(scans, "ocsf"))
    validator = jsonschema.Draft202012Validator(compliance_finding_schema())
    for ev in events:
        assert [e.message for e in validator.iter_errors(ev)] == []
    (ev,) = [e for e in events if e["compliance"]["control"] == "v-ssh-ciphers"]
    data = ev["unmapped"]["secpolicy"]
    assert data["requirements"] == [
        {"framework": "cis", "id": "5.1.6", "status": "fail", "coverage": "partial"},
        {"framework": "pci-dss", "id": "8.3.4", "status": "fail", "coverage": "automated"},
    ]
    assert data["tailoring"]["sha256"] == sha(scans)


def test_html_has_the_requirements_section_and_the_tailoring(scans):
    html = render(scans, "html")
    section = html[html.index('<section id="requirements"'):]
    section = section[: section.index("</section>")]
    assert "<strong>8.3.4</strong>" in section and "automated" in section
    assert sha(scans) in section
    assert '<code class="name">ssh_max_auth_tries</code></td><td><code>4</code></td><td><code>6</code>' in section
    assert "break-glass root access, CHG-1234" in section


def test_pdf_has_the_requirements_section_and_the_tailoring(scans):
    render(scans, "pdf")
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (poppler-utils) is needed to read the PDF")
    text = subprocess.run(["pdftotext", "-layout", str(scans["dir"] / "report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    start = text.index("Each framework requirement gets one status")
    body = " ".join(text[start:].split())
    assert "pci-dss: 0.0% of decided requirements pass" in body
    assert "8.3.4 Fail automated 1 of 2 fail: v-ssh-ciphers, v-ssh-max-auth-tries" in body
    assert "ssh_max_auth_tries 4 6" in body and sha(scans) in body


def test_diff_lists_requirement_and_tailoring_changes(scans):
    out = cli("diff", "--format", "json", str(scans["plain"]), str(scans["tailored"]))
    d = json.loads(out.stdout)
    assert d["requirement_changes"] == [
        {"framework": "cis", "id": "5.1.16", "coverage": "automated", "old_status": "fail", "new_status": "pass"},
        {"framework": "cis", "id": "5.1.20", "coverage": "automated", "old_status": "fail", "new_status": "not_assessed"},
        {"framework": "pci-dss", "id": "8.2.2", "coverage": "partial", "old_status": "fail", "new_status": "not_assessed"},
    ]
    assert d["tailoring_changes"] == [
        f"tailoring none -> acme-bastions (sha256 {sha(scans)[:12]}...)",
        "var ssh_max_auth_tries: 4 -> 6",
        "rule v-ssh-root-login disabled by tailoring: break-glass root access, CHG-1234",
    ]
    table = cli("diff", str(scans["plain"]), str(scans["tailored"])).stdout
    assert "Requirement status changes (3):" in table and "  var ssh_max_auth_tries: 4 -> 6" in table
