"""pam(service): stacks with @include/include/substack expanded, args and evidence lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from facts_helpers import context, materialize, write

from secpolicy.errors import EvaluationError


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_includes_expand_in_place(roots: dict[str, Path]) -> None:
    p = context(roots["hardened"]).fact("pam", ("sshd",))
    assert p.exists
    assert [(e.type, e.module) for e in p.entries_of("auth")] == [
        ("auth", "pam_faillock.so"),
        ("auth", "pam_unix.so"),
        ("auth", "pam_faillock.so"),
        ("auth", "pam_deny.so"),
        ("auth", "pam_permit.so"),
    ]
    first = p.entries[0]
    assert (first.control, first.args, first.file, first.where("args")) == (
        "requisite",
        ("preauth",),
        "/etc/pam.d/common-auth",
        "/etc/pam.d/common-auth:5",
    )


def test_args_controls_and_continuations(roots: dict[str, Path]) -> None:
    p = context(roots["hardened"]).fact("pam", ("passwd",))
    hist = p.entry("password", "pam_pwhistory")
    assert hist.args == ("remember=24", "enforce_for_root", "use_authtok")  # continued line
    assert (hist.arg("remember"), hist.arg("enforce_for_root"), hist.arg("nope")) == (
        "24",
        "true",
        None,
    )
    assert p.where("entry", "password", "pam_pwhistory.so") == "/etc/pam.d/common-password:5"
    unix = p.module("pam_unix.so")
    assert unix.control == "[success=1 default=ignore]" and "yescrypt" in unix.args
    assert p.has_module("pam_pwquality") and not p.has_module("pam_cracklib")


def test_inline_comments_and_dash_types(roots: dict[str, Path]) -> None:
    p = context(roots["hardened"]).fact("pam", ("sshd",))
    mail = p.module("pam_mail")
    assert mail.args == ("standard", "noenv")  # `# [1]` is a comment
    systemd = p.module("pam_systemd")
    assert (systemd.type, systemd.optional_module) == ("session", True)


def test_weak_stack(roots: dict[str, Path]) -> None:
    ctx = context(roots["weak"])
    su = ctx.fact("pam", ("su",))
    assert not su.has_module("pam_wheel")
    pw = ctx.fact("pam", ("common-password",))
    unix = pw.entry("password", "pam_unix")
    assert (unix.arg("md5"), unix.arg("nullok"), unix.arg("minlen")) == ("true", "true", "4")
    assert not pw.has_module("pam_pwquality")
    assert ctx.fact("pam", ("login",)).entry("auth", "pam_unix").arg("nullok") == "true"


def test_redhat_style_include_and_substack_keep_only_their_type(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/pam.d/system-auth",
        "auth required pam_env.so\naccount required pam_unix.so\nauth sufficient pam_unix.so try_first_pass\n",
    )
    write(
        tmp_path,
        "etc/pam.d/login",
        "auth substack system-auth\naccount include system-auth\nsession required pam_limits.so\n",
    )
    p = context(tmp_path).fact("pam", ("login",))
    assert [(e.type, e.module, e.file) for e in p.entries] == [
        ("auth", "pam_env.so", "/etc/pam.d/system-auth"),
        ("auth", "pam_unix.so", "/etc/pam.d/system-auth"),
        ("account", "pam_unix.so", "/etc/pam.d/system-auth"),
        ("session", "pam_limits.so", "/etc/pam.d/login"),
    ]


def test_bracketed_argument_and_absent_service(tmp_path: Path) -> None:
    write(tmp_path, "etc/pam.d/x", "auth required pam_exec.so [cmd=/bin/echo a b] quiet\n")
    e = context(tmp_path).fact("pam", ("x",)).entries[0]
    assert e.args == ("cmd=/bin/echo a b", "quiet") and e.arg("cmd") == "/bin/echo a b"
    # no file for the service and no `other`: pam_start fails ("Initialization failure"), no
    # line is in force; the stack is empty, and says why
    none = context(tmp_path).fact("pam", ("nosuch",))
    assert (none.exists, none.entries, none.where("has_module", "pam_unix")) == (
        False, (), ("/etc/pam.d/nosuch (absent, nor in /usr/lib/pam.d, and no `other` either: libpam cannot start"
                    " the service)"))


def test_a_service_without_a_file_runs_other(tmp_path: Path) -> None:
    """libpam runs /etc/pam.d/other (else /usr/lib/pam.d/other) for a service that neither
    /etc/pam.d nor /usr/lib/pam.d holds (tests/conformance/test_pam_include_oracle.py)."""
    write(tmp_path, "etc/pam.d/other", "auth required pam_deny.so\naccount required pam_warn.so\n")
    missing = context(tmp_path).fact("pam", ("nosuch",))
    assert (missing.exists, [(e.module, e.where("x")) for e in missing.entries]) == (
        False,
        [("pam_deny.so", "/etc/pam.d/other:1"), ("pam_warn.so", "/etc/pam.d/other:2")],
    )
    assert missing.where("has_module", "pam_deny") == "/etc/pam.d/other:1"
    assert missing.where("has_module", "pam_unix") == (
        "/etc/pam.d/other (read for 'nosuch': neither /etc/pam.d nor /usr/lib/pam.d holds it)"
    )
    # a dangling link is no file; /usr/lib/pam.d holds services (and `other`) too
    (tmp_path / "etc/pam.d/svc").symlink_to("nowhere")
    write(tmp_path, "usr/lib/pam.d/svc", "auth required pam_unix.so\n")
    svc = context(tmp_path).fact("pam", ("svc",))
    assert (svc.exists, [e.where("x") for e in svc.entries]) == (True, ["/usr/lib/pam.d/svc:1"])
    (tmp_path / "etc/pam.d/other").unlink()
    write(tmp_path, "usr/lib/pam.d/other", "auth required pam_faildelay.so\n")
    assert [e.where("x") for e in context(tmp_path).fact("pam", ("nosuch",)).entries] == ["/usr/lib/pam.d/other:1"]
    # but an include is looked for in /etc/pam.d only
    write(tmp_path, "usr/lib/pam.d/inc", "auth required pam_unix.so\n")
    write(tmp_path, "etc/pam.d/x", "auth include inc\n")
    assert [e.must_fail for e in context(tmp_path).fact("pam", ("x",)).entries] == [True]


def test_other_runs_twice_as_its_own_service(tmp_path: Path) -> None:
    # libpam reads it as the service's file and again as the default: each line runs twice
    write(tmp_path, "etc/pam.d/other", "auth required pam_deny.so\n")
    assert [e.where("x") for e in context(tmp_path).fact("pam", ("other",)).entries] == ["/etc/pam.d/other:1"] * 2


def test_a_broken_other_fails_every_service(tmp_path: Path) -> None:
    write(tmp_path, "etc/pam.d/svc", "auth required pam_unix.so\n")
    write(tmp_path, "etc/pam.d/other", "auth required pam_deny.so\n@include nosuch\n")
    with pytest.raises(EvaluationError, match=r"^/etc/pam.d/other:2: @include nosuch: .*cannot start.*every service"):
        context(tmp_path).fact("pam", ("svc",))


def test_include_loops_and_bad_names_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "etc/pam.d/a", "@include b\n")
    write(tmp_path, "etc/pam.d/b", "@include a\n")
    with pytest.raises(EvaluationError, match="include loop"):
        context(tmp_path).fact("pam", ("a",))
    with pytest.raises(EvaluationError, match="file name"):
        context(tmp_path).fact("pam", ("../shadow",))


def test_arguments_are_read_as_modules_read_them(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/pam.d/x",
        "password required pam_pwhistory.so remember=5 remember=24abc retry=x use_authtok\n",
    )
    e = context(tmp_path).fact("pam", ("x",)).entries[0]
    # the last occurrence is in force; numbers read with strtol(value, NULL, 10)
    assert (e.arg("remember"), e.arg_int("remember")) == ("24abc", 24)
    assert (e.arg_int("retry"), e.arg_int("use_authtok"), e.arg_int("debug")) == (0, 0, None)


@pytest.mark.parametrize("sep", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_only_newline_ends_a_pam_line(tmp_path: Path, sep: str) -> None:
    # libpam reads fgets() lines: a module hidden behind these separators is in the comment
    write(
        tmp_path,
        "etc/pam.d/su",
        f"auth required pam_unix.so\n# off{sep}auth required pam_wheel.so use_uid\n",
    )
    assert not context(tmp_path).fact("pam", ("su",)).has_module("pam_wheel")


def test_a_comment_ends_a_continued_pam_line(tmp_path: Path) -> None:
    # _pam_assemble_line: `#` ends the logical line, a backslash before it continues nothing
    write(
        tmp_path,
        "etc/pam.d/su",
        "auth required pam_unix.so \\\n# note\n  nullok\n"
        "auth required pam_env.so # \\\nauth required pam_wheel.so\n",
    )
    p = context(tmp_path).fact("pam", ("su",))
    assert [(e.module, e.args) for e in p.entries_of("auth")] == [
        ("pam_unix.so", ("nullok",)),
        ("pam_env.so", ()),
        ("pam_wheel.so", ()),
    ]


_PERMIT = "auth optional pam_permit.so "


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        # libpam reads into a 1024-byte buffer: what starts at byte 1024 of a longer line is a
        # line of its own (a directive hidden there runs)
        (_PERMIT + "x" * (1023 - len(_PERMIT)) + "auth sufficient pam_rootok.so\n",
         [("pam_permit.so", "optional"), ("pam_rootok.so", "sufficient")]),
        # ... one byte later an `x` glued to it makes an unknown type: a step that fails
        (_PERMIT + "x" * (1024 - len(_PERMIT)) + "auth sufficient pam_rootok.so\n",
         [("pam_permit.so", "optional"), ("", "sufficient")]),
        # a continued line is cut where the buffer ends; the rest is read as lines of its own
        # (`yyy... z`: an unknown type, a failing step)
        ("auth required pam_unix.so \\\n" + ("y" * 600 + " \\\n") * 2 + "z\nauth sufficient pam_rootok.so\n",
         [("pam_unix.so", "required"), ("", "z"), ("pam_rootok.so", "sufficient")]),
        # a bracketed control runs to its `]`, blanks and a continuation in it; an argument
        # with no `]` runs to the end of the line, a `#` ending it
        ("auth [success=done \\\n  default=ignore] pam_permit.so [a b\n", [("pam_permit.so", "[success=done    default=ignore]")]),
    ],
)
def test_lines_are_read_as_libpam_reads_them(tmp_path: Path, text: str, entries: list[tuple[str, str]]) -> None:
    # tests/conformance asks libpam itself (pamtester over pam_echo lines)
    write(tmp_path, "etc/pam.d/svc", text)
    stack = context(tmp_path).fact("pam", ("svc",))
    assert [(e.module, e.control) for e in stack.entries_of("auth")] == entries


@pytest.mark.parametrize("tail", ["\\", "\\\n", " \\ \t\n\n  # a comment\n"])
def test_a_continued_line_cut_by_the_end_of_the_file_is_an_error(tmp_path: Path, tail: str) -> None:
    """libpam's _pam_assemble_line() reads it as an incomplete read: the file's reader fails,
    and pam_start with it (pamtester: "Initialization failure"), here or through @include."""
    write(tmp_path, "etc/pam.d/svc", f"auth required pam_unix.so\nauth required pam_env.so{tail}")
    with pytest.raises(EvaluationError, match=r"^/etc/pam.d/svc:2: a line continued .*cannot start"):
        context(tmp_path).fact("pam", ("svc",))
    write(tmp_path, "etc/pam.d/top", "account required pam_unix.so\n@include svc\n")
    with pytest.raises(EvaluationError, match=r"^/etc/pam.d/svc:2: a line continued .*cannot start"):
        context(tmp_path).fact("pam", ("top",))
    # read for `auth include`, it is a failing step after what was read of the file
    write(tmp_path, "etc/pam.d/top", "auth include svc\nauth required pam_permit.so\n")
    assert [(e.module, e.must_fail, e.where("x")) for e in context(tmp_path).fact("pam", ("top",)).entries] == [
        ("pam_unix.so", False, "/etc/pam.d/svc:1"),
        ("", True, "/etc/pam.d/top:1"),
        ("pam_permit.so", False, "/etc/pam.d/top:2"),
    ]
    # @included from a file read for `auth include`: a step with a left-over control
    write(tmp_path, "etc/pam.d/mid", "@include svc\n")
    write(tmp_path, "etc/pam.d/top", "auth include mid\n")
    with pytest.raises(EvaluationError, match=r"^/etc/pam.d/svc:2: a line continued .*control the line read before it"):
        context(tmp_path).fact("pam", ("top",))


@pytest.mark.parametrize(
    ("line", "step", "in_account"),
    [
        ("blah", ("auth", "[default=bad]"), True),  # one word: an unknown type
        ("foo optional pam_permit.so", ("auth", "optional"), True),
        ("--auth required pam_permit.so", ("auth", "required"), True),
        ("auth", ("auth", "[default=bad]"), False),  # no control
        ("account required", ("account", "required"), True),  # no module
        ("auth [success=done pam_permit.so", ("auth", "[success=done pam_permit.so]"), False),  # no `]`
    ],
)
def test_a_line_libpam_cannot_make_a_module_of_is_a_step_that_fails(
    tmp_path: Path, line: str, step: tuple[str, str], in_account: bool
) -> None:
    # _pam_parse_conf_file() installs a PAM_HT_MUST_FAIL handler for it (pamtester: denied)
    write(tmp_path, "etc/pam.d/svc", f"auth required pam_env.so\n{line}\n")
    got = context(tmp_path).fact("pam", ("svc",)).entries
    assert [(e.type, e.control, e.module, e.must_fail) for e in got] == [
        ("auth", "required", "pam_env.so", False), (*step, "", True)]
    # in a file read for `account include`, an unknown type is an account step
    write(tmp_path, "etc/pam.d/top", "account include svc\n")
    got = context(tmp_path).fact("pam", ("top",)).entries
    assert [(e.type, e.must_fail) for e in got] == ([("account", True)] if in_account else [])


def test_a_file_libpam_never_finishes_reading_is_an_error(tmp_path: Path) -> None:
    """A continued line that fills libpam's buffer to its last byte makes libpam 1.5.2 spin
    forever (pamtester on such a file never returns): every program using the service hangs.
    The stack cannot be read as anything, so it is an evaluation error naming the line."""
    write(tmp_path, "etc/pam.d/svc", _PERMIT + "a" * (1022 - len(_PERMIT)) + "\\\n" + _PERMIT + "\n")
    with pytest.raises(EvaluationError, match=r"/etc/pam.d/svc:1: libpam never finishes reading this file"):
        context(tmp_path).fact("pam", ("svc",))


def test_a_typed_include_libpam_cannot_open_is_a_step_that_fails(tmp_path: Path) -> None:
    """libpam puts a step that always fails where a `TYPE include`/`substack` names a file it
    cannot open: the lines around it still run, the other types are untouched
    (tests/conformance/test_pam_include_oracle.py asks pamtester)."""
    write(tmp_path, "etc/pam.d/svc",
          "auth required pam_env.so\nauth include nosuch\n-auth substack gone\naccount include nosuch\n"
          "auth required pam_unix.so\nsession required pam_limits.so\n")
    (tmp_path / "etc/pam.d/gone").symlink_to("nowhere")
    p = context(tmp_path).fact("pam", ("svc",))
    assert [(e.type, e.control, e.module, e.must_fail, e.where("x")) for e in p.entries] == [
        ("auth", "required", "pam_env.so", False, "/etc/pam.d/svc:1"),
        ("auth", "[default=bad]", "", True, "/etc/pam.d/svc:2"),
        ("auth", "[default=bad]", "", True, "/etc/pam.d/svc:3"),
        ("account", "[default=bad]", "", True, "/etc/pam.d/svc:4"),
        ("auth", "required", "pam_unix.so", False, "/etc/pam.d/svc:5"),
        ("session", "required", "pam_limits.so", False, "/etc/pam.d/svc:6"),
    ]
    assert p.modules == ("pam_env.so", "pam_unix.so", "pam_limits.so") and not p.has_module("")


@pytest.mark.parametrize("target", ["nosuch", "gone", "/nonexistent/x"])
def test_an_at_include_libpam_cannot_open_is_an_error(tmp_path: Path, target: str) -> None:
    # pam_start fails ("Initialization failure"): the service cannot start, no setting of it is
    # in force; through another @include the same
    write(tmp_path, "etc/pam.d/svc", "auth required pam_unix.so\n@include mid\n")
    write(tmp_path, "etc/pam.d/mid", f"password required pam_unix.so\n@INCLUDE {target}\n")
    (tmp_path / "etc/pam.d/gone").symlink_to("nowhere")
    with pytest.raises(EvaluationError, match=rf"^/etc/pam.d/mid:2: @include {target}: .*cannot start"):
        context(tmp_path).fact("pam", ("svc",))
    # read for `auth include`, libpam runs a step with a control left over from an earlier line
    write(tmp_path, "etc/pam.d/svc", "auth include mid\n")
    with pytest.raises(EvaluationError, match=r"^/etc/pam.d/mid:2: @include .*control the line read before it"):
        context(tmp_path).fact("pam", ("svc",))


def test_an_included_directory_reads_as_an_empty_file(tmp_path: Path) -> None:
    # libpam fopen()s a directory and its first fgets() fails: the end of an empty file
    write(tmp_path, "etc/pam.d/svc", "@include d\nauth include d\nauth substack d\nauth required pam_unix.so\n")
    (tmp_path / "etc/pam.d/d").mkdir()
    p = context(tmp_path).fact("pam", ("svc",))
    assert [(e.module, e.must_fail) for e in p.entries] == [("pam_unix.so", False)]


@pytest.mark.parametrize("line", ["@include", "@include  ", "auth include", "Account SUBSTACK"])
def test_an_include_naming_no_file_is_an_error(tmp_path: Path, line: str) -> None:
    # libpam 1.5.2 crashes (SIGSEGV) on these lines, whatever type is asked
    write(tmp_path, "etc/pam.d/svc", f"auth required pam_unix.so\n{line}\n")
    with pytest.raises(EvaluationError, match=r"^/etc/pam.d/svc:2: .* names no file: libpam 1.5.2 crashes"):
        context(tmp_path).fact("pam", ("svc",))
    # a line of another type, in a file read for `auth include`, is skipped before it is read
    write(tmp_path, "etc/pam.d/outer", "auth include svc\n")
    write(tmp_path, "etc/pam.d/svc", "account include\naccount include nosuch\nauth required pam_unix.so\n")
    assert [e.module for e in context(tmp_path).fact("pam", ("outer",)).entries] == ["pam_unix.so"]
