"""Who was scanned (host identity checked against the system's own tools), reports that pin
the results they render (SHA-256, audit-log record, PDF/A-3b with results.json embedded),
detached signatures, and results of different hosts kept apart unless asked."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zlib
from pathlib import Path

import jsonschema
import pytest

from secpolicy.ruletests import materialize_files

TESTS = Path(__file__).resolve().parents[1]
POLICY = str(TESTS / "fixtures" / "policies" / "core.yaml")
RESULTS = TESTS / "fixtures" / "reports" / "web1_results.json"
BASELINE = TESTS / "fixtures" / "reports" / "web1_baseline.json"
SECPOLICY = [sys.executable, "-m", "secpolicy"]
sys.path.insert(0, str(TESTS / "fixtures" / "reports"))

from gen_results import generate


def secpolicy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=300, check=False)


def tool(*args: str) -> str:
    exe = shutil.which(args[0])
    if exe is None:
        pytest.fail(f"{args[0]} is needed here (scripts/setup.sh --with-test-tools installs it)")
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, check=False).stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("live") / "r.json"
    p = secpolicy("scan", "-p", POLICY, "--format", "json", "-o", str(out))
    assert p.returncode in (0, 1), p.stderr
    return json.loads(out.read_text())


def test_live_host_identity_agrees_with_the_system_tools(live):
    ident = live["scan"]["host_identity"]
    assert ident["hostname"] == socket.gethostname() == tool("hostname").strip()
    assert ident["machine_id"] == Path("/etc/machine-id").read_text().strip()
    pretty = tool("sh", "-c", ". /etc/os-release && printf %s \"$PRETTY_NAME\"")
    assert ident["os_release"]["pretty_name"] == pretty and ident["os_release"]["source"] == "/etc/os-release"
    assert ident["kernel"]["release"] == tool("uname", "-r").strip()
    assert ident["kernel"]["machine"] == tool("uname", "-m").strip()
    route = json.loads(tool("ip", "-j", "route", "get", "192.0.2.1"))[0]
    assert ident["addresses"][0] == route["prefsrc"]
    assert ident["virtualization"] == tool("systemd-detect-virt", "--vm").strip()
    assert ident["container"] == tool("systemd-detect-virt", "--container").strip()
    assert ident["live"] is True
    assert ident["scanner"] == {"hostname": socket.gethostname(), "uid": os.geteuid(), "user": tool("id", "-un").strip(),
                                "kernel": tool("uname", "-r").strip(), "secpolicy_version": live["scan"]["secpolicy_version"]}


def test_results_validate_against_the_published_schema_with_the_host_block(live):
    schema = json.loads(secpolicy("schema", "results").stdout)
    jsonschema.validate(live, schema)
    broken = json.loads(json.dumps(live))
    del broken["scan"]["host_identity"]["machine_id"]
    with pytest.raises(jsonschema.ValidationError, match="'machine_id' is a required property"):
        jsonschema.validate(broken, schema)


def test_an_image_is_identified_by_what_it_holds(tmp_path):
    root = tmp_path / "img"
    materialize_files(str(root), {
        "/usr/lib/os-release": 'ID=alpine\nVERSION_ID="3.20.3"\nPRETTY_NAME="Alpine Linux v3.20"\n',
        "/etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "/etc/hostname": "builder-7\n",
        "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    })
    # /etc/os-release is, as on most systems, a link to ../usr/lib/os-release: resolved inside the image
    (root / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    out = tmp_path / "r.json"
    assert secpolicy("scan", "-p", POLICY, "--root", str(root), "--format", "json", "-o", str(out)).returncode in (0, 1)
    ident = json.loads(out.read_text())["scan"]["host_identity"]
    assert ident["hostname"] == "builder-7"
    assert ident["machine_id"] == "0123456789abcdef0123456789abcdef"
    assert ident["os_release"] == {"id": "alpine", "version_id": "3.20.3", "pretty_name": "Alpine Linux v3.20",
                                   "source": "/etc/os-release"}
    assert (ident["live"], ident["kernel"], ident["addresses"], ident["virtualization"], ident["container"]) == (
        False, None, [], None, None)
    assert ident["scanner"]["hostname"] == socket.gethostname()


# reports pin their results ---------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("recorded")
    log = d / "log"
    assert secpolicy("log", "init", str(log), "--key-out", str(d / "log.key")).returncode == 0
    p = secpolicy("scan", "-p", POLICY, "--audit-log", str(log), "--report-dir", str(d / "rd"), "--quiet")
    assert p.returncode in (0, 1), p.stderr
    return {"dir": d, "log": log, "rd": d / "rd"}


def _pdf_objects(pdf: Path) -> str:
    """The PDF's object text with its Flate streams (object streams included) inflated."""
    data = pdf.read_bytes()
    parts = [data]
    for m in re.finditer(rb"stream\r?\n", data):
        try:
            parts.append(zlib.decompressobj().decompress(data[m.end():m.end() + 4_000_000]))
        except zlib.error:
            continue
    return b"\n".join(parts).decode("latin-1")


def _audit_entry(log: Path, seq: int) -> dict:
    for line in (log / "segment-000000.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["seq"] == seq:
            return entry
    raise AssertionError(f"no entry {seq}")


def test_the_pdf_is_pdf_a_3b_and_carries_the_results_it_states(recorded, tmp_path):
    pdf, results = recorded["rd"] / "report.pdf", recorded["rd"] / "results.json"
    meta = tool("pdfinfo", "-meta", str(pdf))
    assert 'pdfaid:part="3"' in meta and 'pdfaid:conformance="B"' in meta
    fonts = tool("pdffonts", str(pdf)).splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), "PDF/A embeds every font"
    objects = _pdf_objects(pdf)
    assert re.search(r"/OutputIntents\s*\[", objects) and "/GTS_PDFA1" in objects, "PDF/A needs an output intent"
    assert re.search(r"/AFRelationship\s*/Source", objects) and re.search(r"/AF\s*\[", objects), "PDF/A-3 associated file"
    assert "/Subtype /application#2fjson" in objects
    assert tool("pdfdetach", "-list", str(pdf)).splitlines() == ["1 embedded files", "1: results.json"]
    subprocess.run(["pdfdetach", "-save", "1", "-o", str(tmp_path / "att.json"), str(pdf)], check=True)
    digest = sha256(results)
    assert sha256(tmp_path / "att.json") == digest
    text = re.sub(r"\s+", " ", tool("pdftotext", "-layout", "-l", "2", str(pdf), "-"))
    assert f"Results SHA-256 {digest} (of results.json, embedded in this PDF)" in text
    seq = int(re.search(r"Audit-log record scan \S+, record seq (\d+) in ", text).group(1))
    entry = _audit_entry(recorded["log"], seq)
    assert entry["body"]["event_type"] == "scan_stop"
    assert entry["body"]["details"]["results_sha256"] == digest
    assert entry["body"]["details"]["scan_id"] == json.loads(results.read_text())["scan"]["id"]
    host = json.loads(results.read_text())["scan"]["host_identity"]
    for shown in (host["machine_id"], host["os_release"]["pretty_name"], f"uid {os.geteuid()}"):
        assert shown in text
    info = tool("pdfinfo", str(pdf))
    assert f"secpolicy-results-sha256={digest}" in info


def test_the_html_states_the_hash_and_the_record(recorded):
    html = (recorded["rd"] / "report.html").read_text()
    digest = sha256(recorded["rd"] / "results.json")
    assert f'<meta name="secpolicy-results-sha256" content="{digest}">' in html
    assert re.search(r"record seq <strong>\d+</strong>", html)
    assert "looked up in the log" not in html  # the scan wrote that record itself


def test_report_finds_the_record_and_refuses_an_altered_results_file(recorded, tmp_path):
    results = recorded["rd"] / "results.json"
    out = tmp_path / "again.html"
    p = secpolicy("report", str(results), "-f", "html", "-o", str(out), "--audit-log", str(recorded["log"]))
    assert p.returncode == 0, p.stderr
    assert sha256(results) in out.read_text() and "record seq <strong>" in out.read_text()
    # Found, not verified (anyone who can append to the log can append such a record): said so.
    assert "looked up in the log, which this report did not verify" in out.read_text()
    altered = tmp_path / "altered.json"
    doc = json.loads(results.read_text())
    doc["results"][0]["title"] += " (edited)"
    altered.write_text(json.dumps(doc, indent=2))
    p = secpolicy("report", str(altered), "-f", "html", "-o", str(tmp_path / "x.html"), "--audit-log", str(recorded["log"]))
    assert p.returncode == 5
    assert f"the results file is not what scan {doc['scan']['id']} wrote" in p.stderr
    assert not (tmp_path / "x.html").exists()


def test_a_report_of_a_results_file_pins_that_files_bytes(tmp_path):
    out = tmp_path / "r.pdf"
    assert secpolicy("report", str(RESULTS), "-f", "pdf", "-o", str(out)).returncode == 0
    subprocess.run(["pdfdetach", "-save", "1", "-o", str(tmp_path / "att.json"), str(out)], check=True)
    assert (tmp_path / "att.json").read_bytes() == RESULTS.read_bytes()
    assert secpolicy("report", str(RESULTS), "-f", "json", "-o", str(tmp_path / "same.json")).returncode == 0
    assert (tmp_path / "same.json").read_bytes() == RESULTS.read_bytes()


def test_signed_reports_verify_and_any_change_is_exit_5(tmp_path):
    assert secpolicy("log", "keygen", str(tmp_path / "k.pem"), str(tmp_path / "k.pub")).returncode == 0
    assert secpolicy("log", "keygen", str(tmp_path / "other.pem"), str(tmp_path / "other.pub")).returncode == 0
    out = tmp_path / "report.pdf"
    p = secpolicy("report", str(RESULTS), "-f", "pdf", "-o", str(out), "--sign", str(tmp_path / "k.pem"))
    assert p.returncode == 0, p.stderr
    sig = json.loads((tmp_path / "report.pdf.sig").read_text())
    assert sig["sha256"] == sha256(out) and sig["results_sha256"] == sha256(RESULTS) and sig["file"] == "report.pdf"
    ok = secpolicy("verify-report", str(out), "--key", str(tmp_path / "k.pub"), "--results", str(RESULTS))
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {out} (SHA-256 {sha256(out)})")
    assert secpolicy("verify-report", str(out), "--key", str(tmp_path / "other.pub")).returncode == 5
    assert secpolicy("verify-report", str(out), "--key", str(tmp_path / "k.pub"), "--results", str(BASELINE)).returncode == 5
    forged = dict(sig, results_sha256=sha256(BASELINE))
    (tmp_path / "forged.sig").write_text(json.dumps(forged))
    p = secpolicy("verify-report", str(out), "--key", str(tmp_path / "k.pub"), "--signature", str(tmp_path / "forged.sig"))
    assert p.returncode == 5 and "does not verify" in p.stderr
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    out.write_bytes(bytes(data))
    p = secpolicy("verify-report", str(out), "--key", str(tmp_path / "k.pub"))
    assert p.returncode == 5 and "does not match its signature" in p.stderr
    assert secpolicy("report", str(RESULTS), "-f", "html", "--sign", str(tmp_path / "k.pem")).returncode == 2


def test_verify_report_prints_a_report_path_with_control_characters_inert(tmp_path):
    """A report named with an ESC sequence (a name anyone who can write there chose) is shown
    escaped in the `ok:` line, as every other path secpolicy prints, not sent to the terminal."""
    assert secpolicy("log", "keygen", str(tmp_path / "k.pem"), str(tmp_path / "k.pub")).returncode == 0
    out = tmp_path / "r\x1b[2Jx.json"
    assert secpolicy("report", str(RESULTS), "-f", "json", "-o", str(out), "--sign", str(tmp_path / "k.pem")).returncode == 0
    ok = secpolicy("verify-report", str(out), "--key", str(tmp_path / "k.pub"))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ")
    assert "\x1b" not in ok.stdout and "[2Jx.json" in ok.stdout


# one host unless asked -------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hosts")
    out = {}
    for name, when in (("db-prod-03", "2026-10-01"), ("web-7", "2026-10-08"), ("db-prod-03b", "2026-10-15")):
        doc = generate(200, host=name.rstrip("b"), seed=3 if name.endswith("b") else 5)
        doc["scan"]["started_at"] = f"{when}T02:00:00+00:00"
        doc["scan"]["finished_at"] = f"{when}T02:00:20+00:00"
        p = d / f"{name}.json"
        p.write_text(json.dumps(doc))
        out[name] = p
    return out


def test_diff_and_history_refuse_to_mix_hosts(two_hosts, tmp_path):
    p = secpolicy("diff", str(two_hosts["db-prod-03"]), str(two_hosts["web-7"]))
    assert p.returncode == 2
    assert "is a scan of web-7 (machine-id" in p.stderr and "refusing to mix hosts" in p.stderr
    assert "--allow-mixed-hosts" in p.stderr
    assert secpolicy("diff", str(two_hosts["db-prod-03"]), str(two_hosts["db-prod-03b"])).returncode == 0
    assert secpolicy("diff", str(two_hosts["db-prod-03"]), str(two_hosts["web-7"]), "--allow-mixed-hosts").returncode == 0
    p = secpolicy("report", str(two_hosts["db-prod-03b"]), "--history", str(two_hosts["web-7"]), "-f", "html",
                  "-o", str(tmp_path / "r.html"))
    assert p.returncode == 2 and "refusing to mix hosts" in p.stderr


def test_a_mixed_trend_labels_each_scan_with_its_host(two_hosts, tmp_path):
    out = tmp_path / "r.html"
    p = secpolicy("report", str(two_hosts["db-prod-03b"]), "--history", str(two_hosts["web-7"]), "--history",
                  str(two_hosts["db-prod-03"]), "-f", "html", "-o", str(out), "--allow-mixed-hosts")
    assert p.returncode == 0, p.stderr
    html = out.read_text()
    assert "Scans of 2 different hosts" in html
    hosts = re.findall(r"\[(\d)\] ((?:db-prod-03|web-7) \(machine-id [0-9a-f]{12}\))", html)
    assert {h for _, h in hosts} == {f"db-prod-03 (machine-id {hashlib.md5(b'db-prod-03').hexdigest()[:12]})",
                                     f"web-7 (machine-id {hashlib.md5(b'web-7').hexdigest()[:12]})"}
    chart = html[html.index('aria-label="Compliance over time"'):]
    chart = chart[:chart.index("</svg>")]
    assert re.findall(r">\[(\d)\]</text>", chart) == ["1", "2", "1"]  # each point, in time order
    same = tmp_path / "same.html"
    assert secpolicy("report", str(two_hosts["db-prod-03b"]), "--history", str(two_hosts["db-prod-03"]), "-f", "html",
                     "-o", str(same)).returncode == 0
    assert "Every scan is of db-prod-03 (machine-id" in same.read_text()
