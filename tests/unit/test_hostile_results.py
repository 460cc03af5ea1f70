"""Hostile results files given to `report` and `diff`: every malformed value is exit 2 naming
the file and, where there is one, the line and column; values that are odd but valid (lone
surrogates from undecodable host files, deep but bounded nesting, huge numbers Python holds)
render. Never exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from secpolicy.cli.main import cli

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
GOOD = (FIX / "web1_results.json").read_text()


def _with(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stderr


DIGITS = "7" * 5000
HOSTILE = {
    "5000-digit integer": (_with('"total": 14', f'"total": {DIGITS}'), f"{DIGITS[:20]}", "an integer of 5000 digits"),
    "NaN": (_with('"compliance_pct": 40.0', '"compliance_pct": NaN'), "NaN", "NaN is not JSON"),
    "Infinity": (_with('"compliance_pct": 40.0', '"compliance_pct": -Infinity'), "-Infinity", "-Infinity is not JSON"),
    "1e999": (_with('"duration_ms": 0.412', '"duration_ms": 1e999'), "1e999", "a number out of range (1e999)"),
    "not JSON": (GOOD[:500], None, "not JSON: "),
    "trailing garbage": (GOOD + "}", None, "not JSON: Extra data"),
    "byte-order mark": ("\ufeff" + GOOD, None, "not JSON: Unexpected UTF-8 BOM"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["report", "diff"])
def test_malformed_values_are_located_exit_2(case, command, tmp_path):
    text, needle, message = HOSTILE[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(text.encode("utf-8"))
    args = ["report", str(bad), "-f", "html", "-o", str(tmp_path / "r.html")] if command == "report" else \
        ["diff", str(FIX / "web1_baseline.json"), str(bad)]
    code, err = run(*args)
    assert code == 2, err
    assert err.startswith(f"{bad}:"), err
    assert message in err
    if needle is not None:
        line = _line_of(text, needle)
        col = len(text[: text.index(needle)].rsplit("\n", 1)[-1]) + 1
        assert err.startswith(f"{bad}:{line}:{col}: "), err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("content", "message"), [
    (b'{"a": "\xff\xfe"}', "not UTF-8 text (byte 7)"),
    (b"[" * 200_000, "nested deeper than the JSON reader allows"),
    (("[" * 60 + "]" * 60).encode(), "nested deeper than 48 levels at 0/0/0/0/0/0/0/0/..."),
    (b"[]", "results file: expected a JSON object, found list"),
    (_with('"status": "fail"', '"status": "broken"').encode(), "/status: 'broken' is not one of"),
    (_with('"title": "Ensure', '"title": 7, "x": "Ensure').encode(), "at results/0/title: 7 is not of type 'string'"),
    (_with('"started_at": "2026-11-20T02:00:03+00:00"', '"started_at": "yesterday"').encode(), "yesterday"),
    (_with('"machine_id": "8f1c2a7e5b3d4c6e9a0b1c2d3e4f5a6b"', '"machine_id": 12').encode(),
     "at scan/host_identity/machine_id: 12 is not of type 'string', 'null'"),
])
def test_malformed_documents_are_exit_2(content, message, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    for args in (["report", str(bad), "-f", "csv"], ["diff", str(bad), str(FIX / "web1_results.json")]):
        code, err = run(*args)
        assert code == 2, err
        assert message in err, err
        assert str(bad) in err


def test_odd_but_valid_values_render_in_every_format(tmp_path):
    doc = json.loads(GOOD)
    first = doc["results"][0]
    # undecodable bytes read from a host file reach the results as lone surrogates
    first["evidence"][0]["observed"] = "PermitRootLogin yes\udcff\udcfe"
    first["title"] = "=HYPERLINK(\"http://x\")" + " long" * 20_000
    doc["events"] = {"nested": {"a": {"b": {"c": {"d": {"e": {"f": [1, [2, [3, [4, {"g": "deep"}]]]]}}}}}}}
    doc["scan"]["policies"][0]["rules"] = int("9" * 4000)
    text = json.dumps(doc)
    src = tmp_path / "odd.json"
    src.write_text(text)
    for fmt in ("json", "html", "pdf", "sarif", "junit", "csv", "ocsf"):
        out = tmp_path / f"r.{fmt}"
        code, err = run("report", str(src), "-f", fmt, "-o", str(out))
        assert code == 0, (fmt, err)
        assert out.stat().st_size > 0
    # undecodable bytes are shown as `\\xNN`, as on the terminal and in FIM and event outputs
    assert "\\xff\\xfe" in (tmp_path / "r.html").read_text()
    assert (tmp_path / "r.json").read_bytes() == src.read_bytes()
    code, err = run("diff", str(src), str(FIX / "web1_results.json"), "--format", "markdown")
    assert code == 0, err


def test_undecodable_bytes_in_a_scanned_file_reach_every_output(tmp_path):
    """A host file with bytes that are not UTF-8: the evidence keeps them as `\\udcXX`
    escapes through the results JSON and the reports; the table shows them as `\\xNN`."""
    import subprocess
    import sys

    from secpolicy.ruletests import materialize_files

    root = tmp_path / "root"
    root.mkdir()
    materialize_files(str(root), {"/etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"})
    (root / "etc" / "motd").write_bytes(b"Welcome to Debian\xff\n")
    policy = str(FIX.parent / "policies" / "core.yaml")
    base = [sys.executable, "-m", "secpolicy", "scan", "-p", policy, "--root", str(root), "--rule", "core-motd-no-os"]
    table = subprocess.run(base, capture_output=True, check=False)
    assert table.returncode == 1, table.stderr
    # the table shows the byte as its escape: raw bytes never reach a terminal (secpolicy.terminal)
    assert b'"Welcome to Debian\\xff\\n"' in table.stdout and b"\xff" not in table.stdout
    out = tmp_path / "r.json"
    assert subprocess.run([*base, "--format", "json", "-o", str(out)], check=False).returncode == 1
    observed = json.loads(out.read_text())["results"][0]["evidence"][0]["observed"]
    assert observed == '"Welcome to Debian\udcff\\n"'
    for fmt in ("pdf", "html", "csv"):
        code, err = run("report", str(out), "-f", fmt, "-o", str(tmp_path / f"r.{fmt}"))
        assert code == 0, (fmt, err)


@pytest.mark.parametrize("odd", ["Debian\udcff", 2**64, 10**40])
def test_results_bytes_are_json_dumps_indented_and_take_what_orjson_refuses(odd):
    """The results JSON is json.dumps(indent=2)'s text, whatever writes it: a real results
    file, and documents orjson refuses (a lone surrogate, an integer beyond 64 bits), which
    keep their `\\udcXX` escape and their digits."""
    from secpolicy.resultsfile import results_bytes

    def reference(doc):
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")

    real = json.loads((FIX / "web1_results.json").read_text())
    real["results"][0]["evidence"][0]["observed"] = '"tab\there\u2028, \x01, \u00e9, \U0001f600"'
    real["empty"] = [{}, [], ""]
    assert results_bytes(real) == reference(real)
    odd_doc = {"results": [{"observed": odd, "nested": [odd, {"k": odd}]}]}
    assert results_bytes(odd_doc) == reference(odd_doc)
    assert json.loads(results_bytes(odd_doc))["results"][0]["observed"] == odd
