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
    assert s.where("option", "timestamp_timeout") == "/etc/sudoers:3"  # the line holding it


@pytest.mark.parametrize("blank", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u3000"])
def test_only_space_and_tab_separate_defaults_from_its_settings(tmp_path: Path, blank: str) -> None:
    # sudo's [[:blank:]] is space and tab: `Defaults\x1c!use_pty` is no Defaults line
    write(tmp_path, "etc/sudoers", f"Defaults use_pty\nDefaults{blank}!use_pty\n")
    assert context(tmp_path).fact("sudoers", ()).option("use_pty") == "true"


def test_a_setting_on_a_continued_line_is_named_by_the_line_holding_it(tmp_path: Path) -> None:
    # `Defaults mail_badpass, \` then `use_pty`: the evidence for use_pty names line 5, where
    # use_pty is written, not line 4 where the joined Defaults line starts
    write(
        tmp_path,
        "etc/sudoers",
        "Defaults env_reset\n#\n\n"
        "Defaults\tmail_badpass, \\\n\t\tuse_pty\n"
        'Defaults logfile="/var/log/sudo.log", \\\n  !lecture\n'
        "root ALL=(ALL:ALL) \\\n  ALL\n",
    )
    s = context(tmp_path).fact("sudoers", ())
    assert [(d.name, d.source) for d in s.defaults] == [
        ("env_reset", "/etc/sudoers:1"),
        ("mail_badpass", "/etc/sudoers:4"),
        ("use_pty", "/etc/sudoers:5"),
        ("logfile", "/etc/sudoers:6"),
        ("lecture", "/etc/sudoers:7"),
    ]
    assert s.where("option", "use_pty") == s.where("settings", "use_pty") == "/etc/sudoers:5"
    # has_line names the line where the match starts
    assert s.where("has_line", r"^root\b") == "/etc/sudoers:8"
    assert s.where("has_line", r"(?<=\) )ALL$") == "/etc/sudoers:9"
