"""The PDF report keeps every word on the page: a word too long for a line (a path, a hash, a
value without spaces read from a host) is broken, never cut at the page edge. Paragraphs
without such a word are laid out without `overflow-wrap` (html.py: _mark_long_words), so this
checks the threshold against what WeasyPrint draws, with pdftotext's word boxes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from secpolicy.cli.main import cli

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
MARGIN = 15 / 25.4 * 72  # the page's left and right margins (report_pdf.css), in points
# Words of the widest characters: ASCII `W` and `M` at the most the threshold lets through
# unbroken (44), just over it, and far over it; CJK (drawn as missing-glyph boxes where no
# such font is installed); a path.
LONG = {
    "title_44": "W" * 44,
    "title_45": "M" * 45,
    "observed": "/var/lib/" + "a" * 300 + "/x",
    "reason": "W" * 200,
    "remediation": "M" * 150,
    "compact": "/opt/" + "W" * 180,
    "justification": "\u65e5\u672c" * 40,
    "error": "Q" * 160,
}


def _results() -> dict:
    doc = json.loads((FIX / "web1_results.json").read_text())
    by_id = {r["rule_id"]: r for r in doc["results"]}
    fail, passing, err = by_id["cis.ssh.max_auth_tries"], by_id["cis.kernel.aslr"], by_id["cis.audit.sudoers_watch"]
    fail["title"] = f"{LONG['title_44']} and {LONG['title_45']}"
    fail["evidence"][0]["observed"] = LONG["observed"]
    by_id["cis.ssh.ciphers"]["reason"] = LONG["reason"]
    fail["remediation"] = f"Run `{LONG['remediation']}` now"
    passing["evidence"][0]["observed"] = LONG["compact"]
    doc["waivers"][0]["justification"] = LONG["justification"]
    err["reason"] = doc["errors"][0]["message"] = LONG["error"]
    return doc


def _words(pdf: Path) -> list[tuple[float, float, float, str]]:
    """(page width, xMin, xMax, text) of every word pdftotext finds."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = []
    for page in re.finditer(r'<page width="([\d.]+)"[^>]*>(.*?)</page>', out, re.DOTALL):
        width = float(page.group(1))
        for w in re.finditer(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', page.group(2)):
            words.append((width, float(w.group(1)), float(w.group(2)), w.group(3)))
    return words


def test_no_word_runs_past_the_margins_and_none_is_lost(tmp_path: Path) -> None:
    src = tmp_path / "results.json"
    src.write_text(json.dumps(_results()))
    pdf = tmp_path / "report.pdf"
    r = CliRunner().invoke(cli, ["report", str(src), "--format", "pdf", "-o", str(pdf)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    words = _words(pdf)
    outside = [(text[:30], x0, x1) for width, x0, x1, text in words if x0 < MARGIN - 1 or x1 > width - MARGIN + 1]
    assert outside == []
    # Broken across lines, each long word is still all there, in order.
    text = "".join(t for *_, t in words)
    for name, word in LONG.items():
        assert word in text, name
    # The 44-character word fits a line unbroken: the threshold does not break what fits.
    assert any(t == LONG["title_44"] for *_, t in words)
