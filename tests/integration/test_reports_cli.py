"""`secpolicy report` and `secpolicy diff` end to end: real files, real WeasyPrint PDFs read back
with pdftotext, the HTML report's escaping and self-containment, CI exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from secpolicy.cli.reports import diff, report
from secpolicy.errors import EXIT_INVALID_INPUT, EXIT_NONCOMPLIANT, SecpolicyError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
RESULTS = str(FIX / "web1_results.json")
BASELINE = str(FIX / "web1_baseline.json")
sys.path.insert(0, str(FIX))
from gen_results import agree


@click.group()
def _cli() -> None:
    """Stand-in for the top-level group: errors become their exit codes, as in main.py."""


_cli.add_command(report)
_cli.add_command(diff)


def run(*args: str):
    result = CliRunner().invoke(_cli, list(args), standalone_mode=False, catch_exceptions=True)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.output, result.exception.render()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, ""


def _pdftotext(path: Path) -> str:
    exe = shutil.which("pdftotext")
    if exe is None:
        pytest.fail("pdftotext (poppler-utils) is needed to read the PDF report back")
    return subprocess.run([exe, str(path), "-"], capture_output=True, text=True, check=True).stdout


def _pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))


@pytest.fixture(scope="module")
def pdf_text(tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("pdf") / "report.pdf"
    code, _, err = run("report", RESULTS, "--history", BASELINE, "--format", "pdf", "--output", str(out))
    assert code == 0, err
    assert out.read_bytes().startswith(b"%PDF-")
    return _pdftotext(out), out


def _squash(text: str) -> str:
    # pdftotext joins a word broken after a hyphen at a line end and drops the hyphen.
    return re.sub(r"[\s-]+", "", text)


def test_pdf_shows_every_failing_control_with_its_evidence(pdf_text):
    text, _ = pdf_text
    flat = _squash(text)
    results = json.loads(Path(RESULTS).read_text())
    for r in results["results"]:
        assert _squash(r["rule_id"]) in flat, r["rule_id"]
        if r["status"] in ("fail", "error", "waived"):
            for e in r["evidence"]:
                for value in (e["expression"], e["observed"], e["source"]):
                    if value:
                        assert _squash(value) in flat, (r["rule_id"], value)
            assert _squash(r["remediation"].replace("`", "")) in flat
    for needle in ("Executive summary", "Coverage statement", "Compliance over time", "Waiver register",
                   "File integrity", "/etc/cron.d/backdoor", "Lost events", "lost 312 event",
                   "Appendix: errors", "Maria Keller (CISO)", "Break-glass access"):
        assert _squash(needle) in flat, needle
    for p in results["scan"]["policies"]:
        assert p["sha256"] in flat and p["version"] in text


def test_pdf_has_page_numbers_contents_and_a_sane_length(pdf_text):
    text, path = pdf_text
    pages = _pages(path)
    assert 6 <= pages <= 30
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    toc = text.split("Contents", 1)[1].split("Executive summary", 2)
    assert re.search(r"Findings requiring action \(6\)\s*\.+\s*\d+", text)
    assert len(toc) == 3


def test_html_report_escapes_and_is_self_contained(tmp_path):
    out = tmp_path / "report.html"
    code, _, err = run("report", RESULTS, "--history", BASELINE, "--format", "html", "-o", str(out))
    assert code == 0, err
    html = out.read_text()
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    # No fetches: no src/href to another host, no @import, no url() in CSS.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert html.count('<article class="ctl') == 14
    assert 'id="trend"' in html and "<svg" in html
    assert 'data-status="error" data-severity="medium"' in html
    # Backticks in policy prose become code, after escaping.
    assert "Set <code>PermitRootLogin no</code> in /etc/ssh/sshd_config and reload sshd." in html
    assert "/etc/ssh/sshd_config:33" in html and "Maria Keller (CISO)" in html


def test_every_format_renders_to_a_file(tmp_path):
    for fmt in ("json", "sarif", "junit", "csv", "ocsf", "html"):
        out = tmp_path / f"r.{fmt}"
        code, _, err = run("report", RESULTS, "-f", fmt, "-o", str(out))
        assert code == 0, (fmt, err)
        assert out.stat().st_size > 1000


def test_report_refuses_a_malformed_results_file(tmp_path):
    bad = tmp_path / "bad.json"
    doc = json.loads(Path(RESULTS).read_text())
    doc["results"][0]["severity"] = "urgent"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "r.pdf"
    code, _, err = run("report", str(bad), "-f", "pdf", "-o", str(out))
    assert code == EXIT_INVALID_INPUT
    assert err.startswith(f"{bad}: not a secpolicy results file: at results/0/severity: 'urgent' is not one of")
    assert not out.exists()


def test_diff_exit_codes_gate_ci_on_regressions_only(tmp_path):
    code, out, _ = run("diff", BASELINE, RESULTS, "--format", "markdown", "--fail-on-new")
    assert code == EXIT_NONCOMPLIANT
    assert "#### New failures (2)" in out
    code, out, _ = run("diff", BASELINE, RESULTS)
    assert code == 0 and "2 new failure(s)" in out
    # Fixing what regressed (the remaining failures were already in the baseline) passes the gate.
    new = json.loads(Path(RESULTS).read_text())
    for r in new["results"]:
        if r["rule_id"] in ("cis.ssh.max_auth_tries", "hipaa.access.auto_logoff"):
            r["status"] = "pass"
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(agree(new)))
    code, out, _ = run("diff", BASELINE, str(fixed), "--format", "json", "--fail-on-new", "-o", str(tmp_path / "d.json"))
    assert code == 0
    assert json.loads((tmp_path / "d.json").read_text())["new_failures"] == []


def test_diff_of_an_unreadable_file_is_invalid_input(tmp_path):
    code, _, err = run("diff", str(tmp_path / "missing.json"), RESULTS)
    assert code == EXIT_INVALID_INPUT and "cannot read results file" in err


# The real scanner feeding the reports: `secpolicy scan` on an empty image root ----------------
def _secpolicy(*args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "secpolicy", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, Path]:
    """(an image root with an empty /etc, the results of scanning it with the bundled packs)"""
    root = tmp_path_factory.mktemp("image")
    (root / "etc").mkdir()
    out = root.parent / "image-scan.json"
    proc = _secpolicy("scan", "--root", str(root), "--format", "json", "--output", str(out))
    assert proc.returncode in (0, 1, 4), proc.stderr
    return root, out


def test_a_real_scan_renders_in_every_format_and_validates(image, tmp_path):
    image_scan = image[1]
    sys.path.insert(0, str(FIX / "schemas"))
    import jsonschema
    from ocsf_jsonschema import compliance_finding_schema

    results = json.loads(image_scan.read_text())
    for fmt in ("sarif", "junit", "ocsf", "csv"):
        code, _, err = run("report", str(image_scan), "-f", fmt, "-o", str(tmp_path / f"r.{fmt}"))
        assert code == 0, (fmt, err)
    sarif_schema = json.loads((FIX / "schemas" / "sarif-schema-2.1.0.json").read_text())
    sarif = json.loads((tmp_path / "r.sarif").read_text())
    assert list(jsonschema.Draft4Validator(sarif_schema).iter_errors(sarif)) == []
    assert len(sarif["runs"][0]["results"]) == sum(r["status"] in ("fail", "error") for r in results["results"])
    assert len(sarif["runs"][0]["tool"]["driver"]["rules"]) == len(results["results"])
    v = jsonschema.Draft202012Validator(compliance_finding_schema())
    assert [e.message for ev in json.loads((tmp_path / "r.ocsf").read_text()) for e in v.iter_errors(ev)] == []
    xsd = subprocess.run(["xmllint", "--noout", "--schema", str(FIX / "schemas" / "JUnit.xsd"), str(tmp_path / "r.junit")],
                         capture_output=True, text=True, check=False)
    assert xsd.returncode == 0, xsd.stderr


def test_scan_fail_on_new_gates_only_on_regressions(image, tmp_path):
    root, image_scan = image
    same = _secpolicy("scan", "--root", str(root), "--baseline", str(image_scan), "--fail-on", "new", "-o", str(tmp_path / "t.txt"))
    assert same.returncode == 0, same.stderr
    # A baseline in which one of today's failures still passed: that failure is a regression.
    base = json.loads(image_scan.read_text())
    failing = next(r for r in base["results"] if r["status"] == "fail")
    failing["status"] = "pass"
    older = tmp_path / "older.json"
    older.write_text(json.dumps(agree(base)))
    worse = _secpolicy("scan", "--root", str(root), "--baseline", str(older), "--fail-on", "new", "-o", str(tmp_path / "t.txt"))
    assert worse.returncode == EXIT_NONCOMPLIANT, worse.stderr
    _, out, _ = run("diff", str(older), str(image_scan), "--format", "json")
    assert [c["rule_id"] for c in json.loads(out)["new_failures"]] == [failing["rule_id"]]


def test_pdf_to_a_pipe_writes_pdf_bytes():
    result = CliRunner().invoke(_cli, ["report", RESULTS, "-f", "pdf"], standalone_mode=False)
    assert result.exception is None, result.exception
    assert result.stdout_bytes.startswith(b"%PDF-")
