"""Located errors point at the exact character at fault, as an editor shows the file: after
anchors and tags, a byte order mark, wide and non-ASCII characters, CRLF line endings,
Unicode line separators, block scalars with indentation indicators."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.errors import EXIT_INVALID_INPUT, LocatedError, format_location
from secpolicy.policy import PolicyErrors
from secpolicy.vocabulary import builtin_registry, load_policies

HEADER = "metadata: {id: t, title: T, version: '1'}\n"
RULE = "rules:\n  - id: r1\n    title: t\n    severity: low\n    check: "


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def first_error(p: Path) -> LocatedError:
    with pytest.raises(PolicyErrors) as exc:
        load_policies([p], builtin_registry())
    err = exc.value.errors[0]
    assert isinstance(err, LocatedError)
    return err


def where(text: str, marker: str) -> tuple[int, int]:
    """(line, column) of `marker` in `text`, in characters, lines split at \\n."""
    i = text.index(marker)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


@pytest.mark.parametrize(
    "value",
    [
        "&c 'file(\"/x\").exists and qqq'",  # anchored single-quoted
        "&c file(\"/x\").exists and qqq",  # anchored plain
        "!!str \"file(\\\"/x\\\").exists and qqq\"",  # tagged double-quoted
    ],
)
def test_anchor_or_tag_before_an_expression_does_not_shift_its_columns(tmp_path, value):
    text = HEADER + RULE + value + "\n"
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "qqq")


def test_error_in_an_aliased_expression_points_into_the_anchored_text(tmp_path):
    text = HEADER + RULE + "&c 'true and qqq'\n  - {id: r2, title: t, severity: low, check: *c}\n"
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "qqq")
    # Reached twice through the alias, the one mistake is said once.
    with pytest.raises(PolicyErrors) as exc:
        load_policies([write(tmp_path, text)], builtin_registry())
    assert len(exc.value.errors) == 1 and str(exc.value) == "1 error(s) in policies"


def test_schema_error_on_an_anchored_value_points_at_the_value(tmp_path):
    text = HEADER + "rules:\n  - id: r1\n    title: t\n    severity: &s urgent\n    check: 'true'\n"
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "urgent")


def test_literal_block_with_indentation_indicator_and_a_more_indented_first_line(tmp_path):
    # `|4` under `check:` (indent 4): content at 8, the first line keeps 2 spaces of its own.
    text = HEADER + RULE + '|4\n          file("/x").exists and\n        qqq\n'
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "qqq")


def test_byte_order_mark_does_not_shift_columns(tmp_path):
    body = HEADER + RULE + "'true'\n    check: 'false'\n"
    err = first_error(write(tmp_path, "\ufeff" + body))
    assert (err.line, err.column) == where(body, "check: 'false'")  # duplicate key
    body = HEADER + RULE + '"file(\\"/x\\").exists and qqq"\n'
    err = first_error(write(tmp_path, "\ufeff" + body))
    assert (err.line, err.column) == where(body, "qqq")
    body = "metadata: {id: t, title: T, version: '1', qqq: 1}\nrules: []\n"
    err = first_error(write(tmp_path, "\ufeff" + body))
    assert (err.line, err.column) == where(body, "qqq")  # an editor does not count the BOM
    assert "\ufeff" not in (err.source_line or "")


def test_control_character_after_wide_characters_is_located_in_characters(tmp_path):
    text = HEADER + RULE + "'true'\n    title: 日本\x01b\n"
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "\x01")


@pytest.mark.parametrize("sep", ["\u2028", "\x85"])
def test_a_unicode_line_separator_in_an_earlier_value_does_not_shift_lines(tmp_path, sep):
    text = HEADER + f'rules:\n  - id: r1\n    title: "a{sep}b"\n    severity: low\n    check: true and qqq\n'
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "qqq")
    assert err.source_line == "    check: true and qqq"


def test_invalid_utf8_column_counts_characters_not_bytes(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_bytes(b"metadata: {id: t, title: '\xe6\x97\xa5\xe6\x9c\xac\xff'}\n")
    err = first_error(p)
    assert (err.line, err.column) == (1, 29)
    assert err.source_line is not None and err.source_line.startswith("metadata: {id: t, title: '日本")


def test_macro_calling_a_fact_named_like_an_event_field_reports_its_real_error(tmp_path):
    # `file(...)` is a call: a fact, not the event field `file`. The error is at qqq.
    text = HEADER + "macros:\n  m: file(\"/x\").exists and qqq\nrules: []\n"
    err = first_error(write(tmp_path, text))
    assert (err.line, err.column) == where(text, "qqq")
    assert "unknown name 'qqq'" in err.message


def test_caret_stands_under_its_character_after_wide_characters():
    line = '    check: \'file("/日本").exists and qqq\''
    out = format_location("p.yaml", 6, line.index("qqq") + 1, "unknown name 'qqq'", line).split("\n")
    # Each CJK character takes two terminal cells: two more spaces before the caret.
    assert out[2] == "    " + " " * (line.index("qqq") + 2) + "^"
    assert out[1] == "    " + line


def test_crlf_and_control_characters_are_not_echoed_to_the_terminal():
    out = format_location("p.yaml", 1, 5, "bad", "ab\x1b[2Jcd\r")
    assert "\x1b" not in out and "\r" not in out
    src, caret = out.split("\n")[1:]
    assert len(src) == len("    ab\x1b[2Jcd") and caret == "    " + " " * 4 + "^"


@pytest.mark.parametrize("command", ["lint", "test", "scan"])
def test_every_command_reports_the_same_location_and_exits_2(tmp_path, command):
    text = HEADER + RULE + "&c 'file(\"/日本\").exists and qqq'\n"
    p = write(tmp_path, text)
    args = {"lint": ["lint", str(p)], "test": ["test", str(p)], "scan": ["scan", "-p", str(p), "--root", str(tmp_path)]}
    result = subprocess.run([sys.executable, "-m", "secpolicy", "-q", *args[command]], check=False,
                            capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == EXIT_INVALID_INPUT, result.stderr
    line, col = where(text, "qqq")
    assert f"{p}:{line}:{col}: unknown name 'qqq'" in result.stderr
    assert "Traceback" not in result.stderr
