"""file().lines, login_shells and owner names: lines end where the real readers end them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from facts_helpers import HOSTILE_LINE_BREAKS, context, write

from secpolicy.errors import EvaluationError


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_file_lines_end_at_newline_only(tmp_path: Path, sep: str) -> None:
    # grep, sed and a shell `read` loop split at \n only: the separator stays inside the line
    write(tmp_path, "etc/issue", f"Authorized use only\n# old{sep}\\v \\r\n")
    f = context(tmp_path).fact("file", ("/etc/issue",))
    assert f.lines == ["Authorized use only", f"# old{sep}\\v \\r"]
    assert not f.has_line(r"^\\v")
    assert f.grep(r"^\\v") == []


def test_file_lines_keep_a_carriage_return_and_a_last_line_without_newline(
    tmp_path: Path,
) -> None:
    write(tmp_path, "etc/x.conf", "a\r\n\nb")
    assert context(tmp_path).fact("file", ("/etc/x.conf",)).lines == ["a\r", "", "b"]


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_shells_hidden_after_a_separator_in_a_comment_are_not_listed(
    tmp_path: Path, sep: str
) -> None:
    write(tmp_path, "etc/shells", f"/bin/sh\n# removed{sep}/bin/bash\n")
    assert context(tmp_path).fact("login_shells", ()) == ("/bin/sh",)


def test_shells_read_as_getusershell_reads_them(tmp_path: Path) -> None:
    # glibc initshells(): skip to the first '/', a '#' first skips the line, the shell ends
    # at a C blank or '#'; a NUL ends the line; a '/' ending the (newline-less) string is
    # skipped, a '/' before a newline is listed
    write(
        tmp_path,
        "etc/shells",
        "# comment /bin/csh\n"
        "  /bin/sh\n"
        "/bin/bash -l\n"
        "/usr/bin/zsh# z\n"
        "/bin/dash\r\n"
        "x/bin/ksh\n"
        "\x1c/bin/mksh\n"
        "nosh\n"
        "/bin/fish\0/bin/tcsh\n"
        "/\n"
        "/bin/a\x0bb\n"
        "/bin/u\u2028v\n"
        "/",
    )
    assert context(tmp_path).fact("login_shells", ()) == (
        "/bin/sh",
        "/bin/bash",
        "/usr/bin/zsh",
        "/bin/dash",
        "/bin/ksh",
        "/bin/mksh",
        "/bin/fish",
        "/",
        "/bin/a",
        "/bin/u\u2028v",
    )


def test_shells_without_the_file_are_glibcs_defaults(tmp_path: Path) -> None:
    assert context(tmp_path).fact("login_shells", ()) == ("/bin/sh", "/bin/csh")


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_owner_names_come_from_lines_glibc_reads(tmp_path: Path, sep: str) -> None:
    write(tmp_path, "etc/passwd", f"# x{sep}evil:x:0:0::/:/bin/sh\nroot:x:0:0::/root:/bin/sh\n")
    write(tmp_path, "etc/group", f"# x{sep}evil:x:0:\nroot:x:0:\n")
    ctx = context(tmp_path)
    assert ctx.fact("_idmap", ("/etc/passwd",)) == {0: "root"}
    assert ctx.fact("_idmap", ("/etc/group",)) == {0: "root"}


def test_on_the_live_host_paths_are_resolved_by_the_kernel(tmp_path: Path) -> None:
    """Live, a path is opened as given: the kernel decides what a trailing slash, `.` and a
    `..` after a symlink mean (lexically, `l/../x` would be a sibling of `l`, not of its
    target). stat(2) and lstat(2) are the oracle."""
    import os

    d = tmp_path
    (d / "a" / "b").mkdir(parents=True)
    (d / "a" / "x").write_text("x")
    (d / "plain").write_text("p")
    (d / "l").symlink_to(d / "a" / "b")
    (d / "sub").mkdir()
    (d / "sub" / "up").symlink_to("../other")  # dangling
    live = context("/")
    paths = [f"{d}/{p}" for p in ("plain", "plain/", "plain/.", "a/", "a/./x", "l/../x", "l/..", "l/../../plain",
                                  "sub/up", "sub/up/..", "sub/up/../sub", "a/b/../x", "a//x", "x/..")]
    for p in paths:
        for mine, kernels in ((live.stat, os.stat), (live.lstat, os.lstat)):
            try:
                st = kernels(p)
                expected: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except (FileNotFoundError, NotADirectoryError):
                expected = None
            got = mine(p)
            assert (None if got is None else (got.st_dev, got.st_ino)) == expected, (p, mine.__name__)
    assert live.fact("file", (f"{d}/l/../x",)).exists and not live.fact("file", (f"{d}/plain/",)).exists
    assert live.fact("file", (f"{d}/l/../x",)).content == "x"  # read where stat looked


def test_content_of_what_is_not_a_regular_file_is_an_error_not_absent(tmp_path: Path) -> None:
    """A FIFO where a configuration file is expected is never read and never "absent" (a
    rule comparing its lines would FAIL or PASS on nothing): the finding is ERROR. A
    directory has no content."""
    import os

    from secpolicy.errors import EvaluationError

    (tmp_path / "etc" / "d").mkdir(parents=True)
    os.mkfifo(tmp_path / "etc" / "hostile.conf")
    ctx = context(tmp_path)
    with pytest.raises(EvaluationError, match="FIFO"):
        _ = ctx.fact("file", ("/etc/hostile.conf",)).lines
    assert ctx.fact("file", ("/etc/d",)).content is None


def test_a_file_modified_in_the_future_has_no_age(tmp_path: Path) -> None:
    # A check log dated next week is no proof of a check this week (PCI 11.5.2): its age
    # cannot be told, so a freshness rule is ERROR, not PASS.
    write(tmp_path, "var/log/aide/aide.log", "AIDE found NO differences\n")
    log = tmp_path / "var/log/aide/aide.log"
    now = time.time()
    os.utime(log, (now, now + 7 * 86400))
    with pytest.raises(EvaluationError, match="in the future"):
        _ = context(tmp_path).fact("file", ("/var/log/aide/aide.log",)).age
    os.utime(log, (now, now + 60))  # within clock skew: new
    assert context(tmp_path).fact("file", ("/var/log/aide/aide.log",)).age == 0.0
    os.utime(log, (now, now - 3600))
    assert 3500 < context(tmp_path).fact("file", ("/var/log/aide/aide.log",)).age < 3700
