"""sudoers lines end where sudo's lexer ends them: at `\\r?\\n` only."""

from __future__ import annotations

from pathlib import Path

import pytest
from facts_helpers import HOSTILE_LINE_BREAKS, context, write


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_a_setting_after_a_separator_in_a_comment_is_comment(tmp_path: Path, sep: str) -> None:
    write(
        tmp_path,
        "etc/sudoers",
        f"Defaults use_pty\n# old{sep}Defaults !use_pty\n# x{sep}@includedir /etc/sudoers.d\n",
    )
    write(tmp_path, "etc/sudoers.d/evil", "Defaults logfile=/tmp/x\n")
    s = context(tmp_path).fact("sudoers", ())
    assert (s.option("use_pty"), s.where("option", "use_pty")) == ("true", "/etc/sudoers:1")
    assert s.option("logfile") is None
    assert s.files == ["/etc/sudoers"]
    assert s.lines == ("Defaults use_pty",)


def test_crlf_lines_and_continuations_are_read_as_sudo_reads_them(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/sudoers",
        'Defaults use_pty\r\nDefaults logfile="/var/log/sudo.log", \\ \r\n  timestamp_timeout=5\r\n',
    )
    s = context(tmp_path).fact("sudoers", ())
    assert (s.option("use_pty"), s.option("logfile"), s.option("timestamp_timeout")) == (
        "true",
        "/var/log/sudo.log",
        "5",
    )
    assert s.where("option", "timestamp_timeout") == "/etc/sudoers:2"


@pytest.mark.parametrize("blank", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u3000"])
def test_only_space_and_tab_separate_defaults_from_its_settings(tmp_path: Path, blank: str) -> None:
    # sudo's [[:blank:]] is space and tab: `Defaults\x1c!use_pty` is no Defaults line
    write(tmp_path, "etc/sudoers", f"Defaults use_pty\nDefaults{blank}!use_pty\n")
    assert context(tmp_path).fact("sudoers", ()).option("use_pty") == "true"
