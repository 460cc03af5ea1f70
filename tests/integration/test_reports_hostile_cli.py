"""`scan`, `report` and `diff` on hosts that fight back, end to end through the CLI: file names
that are not UTF-8 or look like `path:line`, host names carrying escape sequences and bidi
overrides, names that forge output lines; and operators' slips: an output that is an input,
an empty path option, a PDF sent to a terminal by another name, a closed standard output."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest

TESTS = Path(__file__).resolve().parents[1]
SARIF_SCHEMA = TESTS / "fixtures" / "reports" / "schemas" / "sarif-schema-2.1.0.json"
SECPOLICY = [sys.executable, "-m", "secpolicy"]
POLICY = """\
metadata: {id: hostile-pol, title: Hostile test policy, version: "1.0"}
rules:
  - id: t-lines
    title: Config lines are empty
    severity: high
    references: {cis: ["1.1"]}
    check: file("/etc/hostile.conf").lines == []
  - id: t-ww
    title: No world writable
    severity: medium
    references: {cis: ["1.2"]}
    check: fs_scan(["/data"]).world_writable == []
  - id: t-pass
    title: passes
    severity: low
    check: file("/etc/nothere").exists == false
  - id: t-or
    title: either file
    severity: low
    check: file("/etc/a").exists or file("/etc/b").exists
"""
# What a terminal acts on: OSC (window title), BEL, CSI (clear screen), VT, DEL, a bidi override.
HOSTILE_HOST = "evil\x1b]0;PWNED\x07\x1b[2J\x0b\x7f\u202eevil"
RAW = ("\x1b", "\x07", "\x0b", "\x7f", "\u202e")
FORGED = "!x\npass   critical cis-9.9  Forged line: everything fine"


def secpolicy(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=300, check=False,
                          cwd=cwd, **kw)


def _world_writable(root: Path, names: list[str | bytes]) -> None:
    (root / "data").mkdir(parents=True)
    (root / "etc").mkdir()
    for name in names:
        path = os.path.join(os.fsencode(root / "data"), os.fsencode(name))
        with open(path, "w"):
            pass
        os.chmod(path, 0o666)


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> Path:
    """A work directory: the policy, three roots and the results of scanning them."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "pol").mkdir()
    (d / "pol" / "p.yaml").write_text(POLICY)
    _world_writable(d / "root", [b"bad\xff\xfeutf8"])
    _world_writable(d / "root2", ["bidi\u202eevil", "new\nline", "esc\x1b[2Jclear", "+plus", "a:0"])
    (d / "root2" / "etc" / "hostname").write_text(HOSTILE_HOST + "\n")
    _world_writable(d / "root3", ["a:0"])
    for name in ("root", "root2", "root3"):
        p = secpolicy("scan", "-p", "pol/p.yaml", "--root", name, "--format", "json", "-o", f"{name}.json", cwd=d)
        assert p.returncode == 1, p.stderr
    return d


def _sarif(w: Path, results: str, tmp_path: Path) -> dict:
    out = tmp_path / "r.sarif"
    p = secpolicy("report", results, "-f", "sarif", "-o", str(out), cwd=w)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    validator = jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(doc)] == []
    return doc


def _results(doc: dict) -> dict[str, dict]:
    return {r["ruleId"]: r for r in doc["runs"][0]["results"]}


# SARIF -------------------------------------------------------------------------------------
def test_sarif_of_a_file_name_that_is_not_utf8_percent_encodes_its_bytes(w, tmp_path):
    res = _results(_sarif(w, "root.json", tmp_path))["t-ww"]
    assert [r["physicalLocation"] for r in res["relatedLocations"]] == [
        {"artifactLocation": {"uri": "file:///data/bad%FF%FEutf8"}}
    ]
    assert res["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "pol/p.yaml"},
                                                       "region": {"startLine": 8}}


@pytest.mark.parametrize("results", ["root2.json", "root3.json"])
def test_sarif_locations_are_never_read_out_of_free_text(w, tmp_path, results):
    # root3: one file named `a:0` (not line 0 of `a`); root2: five files in one evidence text.
    doc = _sarif(w, results, tmp_path)
    res = _results(doc)["t-ww"]
    assert "relatedLocations" not in res
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "pol/p.yaml"
    text = json.dumps(doc)
    assert '"startLine": 0' not in text and "file:///data/a\"" not in text


# an output that is an input ----------------------------------------------------------------
@pytest.mark.parametrize(("args", "victim", "message"), [
    (["scan", "-p", "pol/p.yaml", "--root", "root", "-o", "pol/p.yaml"], "pol/p.yaml",
     "--output pol/p.yaml is the same file as the input policy pol/p.yaml"),
    (["scan", "-p", "pol", "--root", "root", "-o", "./pol/p.yaml"], "pol/p.yaml",
     "is the same file as the input policy"),
    (["scan", "-p", "pol/p.yaml", "--root", "root", "--baseline", "in.json", "--format", "json", "-o", "in.json"],
     "in.json", "--output in.json is the same file as the input --baseline in.json"),
    (["scan", "-p", "pol/p.yaml", "--root", "root", "--baseline", "d/results.json", "--report-dir", "d"],
     "d/results.json", "--report-dir d/results.json is the same file as the input --baseline"),
    (["report", "in.json", "-f", "json", "-o", "in.json"], "in.json",
     "--output in.json is the same file as the input RESULTS.json in.json"),
    (["report", "in.json", "-f", "html", "-o", "link.json"], "in.json", "is the same file as the input RESULTS.json"),
    (["report", "root.json", "--history", "in.json", "-f", "html", "-o", "in.json"], "in.json",
     "is the same file as the input --history in.json"),
    (["diff", "in.json", "root.json", "-o", "in.json"], "in.json", "is the same file as the input OLD.json"),
    (["diff", "root.json", "in.json", "-o", "./in.json"], "in.json", "is the same file as the input NEW.json"),
])
def test_an_output_that_is_an_input_is_refused_before_any_work(w, tmp_path, args, victim, message):
    work = tmp_path / "work"
    shutil.copytree(w, work, symlinks=True)
    shutil.copy(work / "root.json", work / "in.json")
    (work / "d").mkdir()
    shutil.copy(work / "root.json", work / "d" / "results.json")
    os.link(work / "in.json", work / "link.json")  # a hard link: the same file by inode
    before = (work / victim).read_bytes()
    p = secpolicy(*args, cwd=work)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "refusing to overwrite an input" in p.stderr
    assert (work / victim).read_bytes() == before
    assert not (work / "d" / "report.html").exists()


# empty path options ------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "option"), [
    (["scan", "-p", "pol/p.yaml", "--root", "root", "--report-dir", ""], "--report-dir"),
    (["scan", "-p", "pol/p.yaml", "--root", "root", "--audit-log", ""], "--audit-log"),
    (["scan", "-p", "pol/p.yaml", "--root", "root", "--waivers", ""], "--waivers"),
    (["scan", "-p", "pol/p.yaml", "--root", "root", "--baseline", ""], "--baseline"),
    (["scan", "-p", "", "--root", "root"], "--policy"),
    (["report", "root.json", "-f", "json", "--sign", ""], "--sign"),
    (["report", "root.json", "-f", "json", "--audit-log", ""], "--audit-log"),
])
def test_an_empty_path_option_is_invalid_input(w, args, option):
    p = secpolicy(*args, cwd=w)
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"secpolicy: {option} is empty: give a path, or leave the option out\n"


# plain output ------------------------------------------------------------------------------
def test_plain_scan_output_cannot_be_forged_by_a_file_name(tmp_path, w):
    _world_writable(tmp_path / "root", [FORGED])
    p = secpolicy("scan", "-p", str(w / "pol" / "p.yaml"), "--root", str(tmp_path / "root"), "--rule", "t-ww",
                  "--rule", "t-or")
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert not any(line.startswith("pass") for line in lines), p.stdout
    assert "/data/!x\\x0apass   critical cis-9.9  Forged line" in p.stdout
    # a failing `a or b` shows both comparisons, each indented under its finding
    at = lines.index("fail   low      t-or  either file")
    assert lines[at + 1:at + 3] == ['    file("/etc/a").exists: expected true, observed false (at /etc/a)',
                                    '    file("/etc/b").exists: expected true, observed false (at /etc/b)']
    findings = [line for line in lines if line.startswith(("fail", "error", "waived"))]
    assert len(findings) == 2, p.stdout


# host text on a terminal -------------------------------------------------------------------
def _inert(text: str) -> None:
    for ch in RAW:
        assert ch not in text, (ch, text)


def test_host_names_in_messages_and_notes_are_inert(w):
    mixed = secpolicy("diff", "root2.json", "root.json", cwd=w)
    assert mixed.returncode == 2 and "refusing to mix hosts" in mixed.stderr
    _inert(mixed.stderr)
    assert "evil\\x1b]0;PWNED\\x07\\x1b[2J\\x0b\\x7f\\xe2\\x80\\xaeevil" in mixed.stderr
    note = secpolicy("scan", "-p", "pol/p.yaml", "--root", "root2", "--baseline", "root.json", cwd=w)
    assert note.returncode == 1 and "note: this scan is a scan of evil" in note.stderr, note.stderr
    _inert(note.stderr + note.stdout)


def test_markdown_diff_shows_host_text_escaped(w):
    p = secpolicy("diff", "root2.json", "root2.json", "--format", "markdown", cwd=w)
    assert p.returncode == 0, p.stderr
    _inert(p.stdout)
    assert "\\\\x1b]0;PWNED" in p.stdout  # the escape, its backslash escaped for Markdown


# host names --------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "host"), [
    ("# set by the installer\n\nweb1.example.com\nsecond line\n", "web1.example.com"),
    ("a" * 5000 + "\n", "a" * 64 + "... (not a valid host name: /etc/hostname)"),
    ("ok\u202eevil" + "x" * 80, "ok\u202eevil" + "x" * 55 + "... (not a valid host name: /etc/hostname)"),
])
def test_an_image_host_name_is_read_as_systemd_reads_etc_hostname(tmp_path, w, content, host):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text(content)
    p = secpolicy("scan", "-p", str(w / "pol" / "p.yaml"), "--root", str(root), "--rule", "t-pass",
                  "--format", "json", "-o", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    scan = json.loads((tmp_path / "r.json").read_text())["scan"]
    assert scan["host"] == host and scan["host_identity"]["hostname"] == host


# outputs named otherwise -------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["report", "root.json", "-f", "pdf", "-o", "/dev/stdout"],
    ["report", "root.json", "-f", "pdf", "-o", "/dev/fd/1"],
    ["scan", "-p", "pol/p.yaml", "--root", "root", "--format", "pdf", "-o", "/dev/stdout"],
])
def test_a_pdf_is_not_written_to_a_terminal_by_another_name(w, args):
    leader, follower = pty.openpty()
    shown = bytearray()

    def drain() -> None:  # what reaches the terminal, read while it arrives (a full pty blocks)
        try:
            while chunk := os.read(leader, 65536):
                shown.extend(chunk)
        except OSError:
            pass  # EIO: the terminal's last writer is gone

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p = subprocess.run([*SECPOLICY, *args], stdout=follower, stderr=subprocess.PIPE, text=True, cwd=w,
                           timeout=300, check=False)
    finally:
        os.close(follower)
        reader.join(timeout=30)
        os.close(leader)
    assert p.returncode == 2, p.stderr
    assert "refusing to write a PDF to a terminal" in p.stderr
    assert b"%PDF" not in shown


def test_an_output_descriptor_is_checked_before_the_scan(w):
    p = secpolicy("scan", "-p", "pol/p.yaml", "--root", "root", "-o", "/dev/fd/7", cwd=w)
    assert p.returncode == 2 and p.stderr == "secpolicy: cannot write /dev/fd/7 (file descriptor 7 is not open)\n"
    for args in (["scan", "-p", "pol/p.yaml", "--root", "root"], ["report", "root.json", "-f", "csv"]):
        closed = subprocess.run(["sh", "-c", '"$@" >&-', "sh", *SECPOLICY, *args], capture_output=True, text=True,
                                cwd=w, timeout=300, check=False)
        assert closed.returncode == 2, closed.stderr
        assert closed.stderr == "secpolicy: cannot write standard output (it is closed)\n"


# bidi overrides and undecodable bytes in the reports ---------------------------------------
BIDI_HOST = "web\u202eevil.example"  # shown as `web` + `elpmaxe.live` if the override acted


@pytest.fixture(scope="module")
def bidi_results(tmp_path_factory, w) -> Path:
    d = tmp_path_factory.mktemp("bidi")
    _world_writable(d / "root", ["bidi\u2066\u202eevil.txt"])
    (d / "root" / "etc" / "hostname").write_text(BIDI_HOST + "\n")
    p = secpolicy("scan", "-p", str(w / "pol" / "p.yaml"), "--root", str(d / "root"), "--rule", "t-ww",
                  "--format", "json", "-o", str(d / "r.json"))
    assert p.returncode == 1, p.stderr
    return d / "r.json"


SHOWN_HOST = "web\\xe2\\x80\\xaeevil.example"
SHOWN_FILE = "/data/bidi\\xe2\\x81\\xa6\\xe2\\x80\\xaeevil.txt"


def test_html_report_shows_bidi_controls_as_escapes_and_isolates_host_text(bidi_results, tmp_path):
    p = secpolicy("report", str(bidi_results), "-f", "html", "-o", str(tmp_path / "r.html"))
    assert p.returncode == 0, p.stderr
    html = (tmp_path / "r.html").read_text()
    assert "\u202e" not in html and "\u2066" not in html
    assert f"<h1>{SHOWN_HOST}... (not a valid host name: /etc/hostname)</h1>" in html
    assert SHOWN_FILE in html
    assert "unicode-bidi: isolate" in html


def test_pdf_report_shows_bidi_controls_as_escapes_on_the_cover_headers_and_evidence(bidi_results, tmp_path):
    out = tmp_path / "r.pdf"
    p = secpolicy("report", str(bidi_results), "-f", "pdf", "-o", str(out))
    assert p.returncode == 0, p.stderr
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    assert "\u202e" not in text and "\u2066" not in text
    assert "elpmaxe" not in text  # nothing was laid out reversed
    running = f"{SHOWN_HOST}... (not a valid host name: /etc/hostname) — compliance report"
    assert text.count(running) >= 3, text  # the running header of the pages after the cover
    assert SHOWN_FILE in text.replace("\n", "")


def test_csv_report_shows_bidi_controls_as_escapes(bidi_results, tmp_path):
    p = secpolicy("report", str(bidi_results), "-f", "csv")
    assert p.returncode == 0, p.stderr
    assert "\u202e" not in p.stdout and "\u2066" not in p.stdout
    assert SHOWN_HOST in p.stdout and SHOWN_FILE in p.stdout


def test_undecodable_bytes_are_shown_as_their_escapes_in_text_reports(w, tmp_path):
    # As the terminal, FIM and event outputs show them; the JSON formats keep the data itself.
    for fmt in ("csv", "junit", "html", "sarif"):
        out = tmp_path / f"r.{fmt}"
        p = secpolicy("report", "root.json", "-f", fmt, "-o", str(out), cwd=w)
        assert p.returncode == 0, (fmt, p.stderr)
        text = out.read_text(encoding="utf-8")
        if fmt == "sarif":
            text = _results(json.loads(text))["t-ww"]["message"]["text"]
        assert "/data/bad\\xff\\xfeutf8" in text and "udcff" not in text, (fmt, text)
