"""The pam fact where an include names a file libpam cannot open (absent, a dangling link), a
directory, or no file at all, against libpam 1.5.2 itself: pamtester over a tree bound on
/etc/pam.d in a private mount namespace, `pam_echo` lines showing which lines ran.

What libpam does: an `@include` it cannot open makes pam_start fail ("Initialization failure"),
so the service is unusable (the fact is an error); a `TYPE include`/`substack` it cannot open is
a step that fails in its place, the lines around it still run and other types are untouched (the
fact lists a `must_fail` entry there); a directory reads as an empty file; an include naming no
file crashes libpam (an error).

The same for how libpam reads lines and finds a service's file: a continued line cut by the end
of a file fails the file's reader (pam_start, or the include as a failing step); a line libpam
cannot make a module of (an unknown type, no control, no module) is a failing step; `[...]`
words run to their `]` or the end of the line; a service with no file in /etc/pam.d or
/usr/lib/pam.d runs `other` (from either), none is an error; includes come from /etc/pam.d only."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_oracles import ROOT_NEEDED, _namespaced, _tool

_E = "auth optional pam_echo.so"
_END = "auth required pam_permit.so\naccount required pam_permit.so\n"
DIR = "<dir>"  # a directory instead of a file

# (id, files in etc/pam.d: text, DIR, or "-> target" for a symlink); the service is `svc`
CASES = [
    ("at-include-missing", {"svc": f"{_E} A\n@include nosuch\n{_E} B\n{_END}"}),
    ("at-include-missing-upper-case", {"svc": f"{_E} A\n@INCLUDE nosuch\n{_E} B\n{_END}"}),
    ("at-include-missing-absolute", {"svc": f"{_E} A\n@include /nonexistent/x\n{_END}"}),
    ("at-include-missing-nested", {"svc": f"{_E} A\n@include mid\n{_E} B\n{_END}", "mid": f"{_E} M\n@include nosuch\n"}),
    ("at-include-dangling-link", {"svc": f"{_E} A\n@include inc\n{_END}", "inc": "-> nowhere"}),
    ("at-include-directory", {"svc": f"{_E} A\n@include inc\n{_E} B\n{_END}", "inc": DIR}),
    ("include-missing", {"svc": f"{_E} A\nauth include nosuch\n{_E} B\n{_END}"}),
    ("substack-missing", {"svc": f"{_E} A\nauth substack nosuch\n{_E} B\n{_END}"}),
    ("dash-include-missing", {"svc": f"{_E} A\n-auth Include nosuch\n{_E} B\n{_END}"}),
    ("substack-dangling-link", {"svc": f"{_E} A\nauth substack inc\n{_E} B\n{_END}", "inc": "-> nowhere"}),
    ("include-directory", {"svc": f"{_E} A\nauth include inc\n{_E} B\n{_END}", "inc": DIR}),
    ("account-include-missing", {"svc": f"{_E} A\naccount include nosuch\n{_END}"}),
    ("account-substack-missing", {"svc": f"{_E} A\naccount substack nosuch\n{_END}"}),
    ("typed-include-in-at-include", {"svc": f"{_E} A\n@include mid\n{_E} B\n{_END}",
                                     "mid": f"{_E} M\nauth include nosuch\n{_E} N\n"}),
    ("account-include-skipped-in-auth-include", {"svc": f"{_E} A\nauth include mid\n{_END}",
                                                 "mid": f"{_E} M\naccount include nosuch\naccount include\n"}),
    ("at-include-no-file", {"svc": f"{_E} A\n@include   \n{_END}"}),
    ("include-no-file", {"svc": f"{_E} A\nauth include\n{_END}"}),
    ("account-substack-no-file", {"svc": f"{_E} A\naccount substack\n{_END}"}),
]


def _write(pam_d: Path, files: dict[str, str]) -> None:
    pam_d.mkdir(parents=True)
    for name, text in files.items():
        if text == DIR:
            (pam_d / name).mkdir()
        elif text.startswith("-> "):
            (pam_d / name).symlink_to(text[3:])
        else:
            (pam_d / name).write_text(text)


def _theirs(root: Path, op: str, service: str = "svc") -> tuple[str, list[str]]:
    """(outcome, the pam_echo words printed) of `pamtester SERVICE root OP` over the tree's
    etc/pam.d and usr/lib/pam.d (an empty one when the tree has none)."""
    dist = root / "usr/lib/pam.d"
    dist.mkdir(parents=True, exist_ok=True)
    # no core file from the cases that crash libpam
    done = _namespaced('ulimit -c 0 && mount --bind "$1" /etc/pam.d'
                       ' && { [ ! -d /usr/lib/pam.d ] || mount --bind "$2" /usr/lib/pam.d; }'
                       ' && exec "$3" -v "$4" root "$5"',
                       args=[str(root / "etc/pam.d"), str(dist), _tool("pamtester"), service, op])
    echoed = [w for w in done.stdout.splitlines() if w and not w.startswith("pamtester:")]
    if done.returncode in (-signal.SIGSEGV, 128 + signal.SIGSEGV):
        return "crash", echoed
    if "Initialization failure" in done.stderr:
        return "cannot start", echoed
    if "Permission denied" in done.stderr:
        return "denied", echoed
    assert done.returncode == 0, done
    return "ok", echoed


def _ours(root: Path, kind: str, service: str = "svc") -> tuple[str, list[str]]:
    """The same, from the fact: every stack here runs to its end (no sufficient or requisite
    line), so it fails exactly when it holds a must_fail step that is not `optional` (an
    empty one fails too)."""
    try:
        stack = FactContext(builtin_registry(), str(root)).fact("pam", (service,))
    except EvaluationError as e:
        msg = str(e)
        return ("crash" if "crashes" in msg else "cannot start" if "cannot start" in msg else msg), []
    if not stack.exists and not stack.entries:
        return "cannot start", []  # no file for the service and no `other`: an empty stack
    entries = stack.entries_of(kind)
    echoed = [" ".join(e.args) for e in entries if e.module == "pam_echo.so"]
    failing = any(e.must_fail and e.control != "optional" for e in entries)
    return ("denied" if not entries or failing else "ok"), echoed


@ROOT_NEEDED
@pytest.mark.parametrize(("files"), [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_includes_libpam_cannot_open_are_what_libpam_makes_of_them(tmp_path, files) -> None:
    _write(tmp_path / "etc/pam.d", files)
    for op, kind in (("authenticate", "auth"), ("acct_mgmt", "account")):
        theirs = _theirs(tmp_path, op)
        if theirs[0] in ("cannot start", "crash"):
            theirs = (theirs[0], [])
        assert _ours(tmp_path, kind) == theirs, op


@ROOT_NEEDED
def test_an_at_include_missing_inside_a_typed_include_is_an_error(tmp_path) -> None:
    """libpam 1.5.2 reads an `@include` it cannot open, in a file read for `auth include`, as a
    failing step whose control is left over from the line read before it: after an `optional`
    line the missing file changes nothing, after a `required` one it fails the stack. No
    entry the fact could list says that, so the fact is an error naming the file."""
    outcomes = []
    for control in ("optional", "required"):
        root = tmp_path / control
        _write(root / "etc/pam.d", {"svc": f"{_E} A\nauth include mid\n{_E} B\n{_END}",
                                    "mid": f"auth {control} pam_echo.so M\n@include nosuch\n{_E} N\n"})
        outcomes.append(_theirs(root, "authenticate"))
        with pytest.raises(EvaluationError, match=r"/etc/pam.d/mid:2: @include nosuch: .*failing step"):
            FactContext(builtin_registry(), str(root)).fact("pam", ("svc",))
    assert outcomes == [("ok", ["A", "M", "N", "B"]), ("denied", ["A", "M", "N", "B"])]


_L = "usr/lib/pam.d/"  # a file in /usr/lib/pam.d; other names are in /etc/pam.d
_O = f"{_E} O\naccount optional pam_echo.so OA\n{_END}"  # an `other` file

# (id, service, files as in CASES, a name starting with _L for /usr/lib/pam.d)
READ_CASES = [
    # a continued line cut by the end of a file
    ("cut-at-end", "svc", {"svc": f"{_E} A\n{_END}{_E} B \\\n"}),
    ("cut-at-end-no-newline", "svc", {"svc": f"{_E} A\n{_END}{_E} B \\"}),
    ("cut-then-comment-and-blank", "svc", {"svc": f"{_E} A\n{_END}{_E} B \\\n# c\n\n"}),
    ("cut-in-at-include", "svc", {"svc": f"{_E} A\n@include inc\n{_END}", "inc": f"{_E} I \\\n"}),
    ("cut-in-auth-include", "svc", {"svc": f"{_E} A\nauth include inc\n{_E} B\n{_END}", "inc": f"{_E} I\n{_E} J \\\n"}),
    ("cut-in-substack", "svc", {"svc": f"{_E} A\nauth substack inc\n{_E} B\n{_END}", "inc": f"{_E} I\n{_E} J \\\n"}),
    ("cut-in-nested-include", "svc", {"svc": f"{_E} A\nauth include mid\n{_E} B\n{_END}",
                                      "mid": f"{_E} M\nauth include inc\n{_E} N\n", "inc": f"{_E} I\n{_E} J \\\n"}),
    ("cut-in-account-include", "svc", {"svc": f"{_E} A\naccount include inc\n{_END}",
                                       "inc": f"account optional pam_echo.so I\n{_E} J \\\n"}),
    ("cut-in-other", "svc", {"svc": f"{_E} A\n{_END}", "other": f"{_E} O \\\n"}),
    # where libpam finds a service's file
    ("no-file-runs-other", "svc", {"other": _O}),
    ("no-file-runs-usr-lib-service", "svc", {"other": _O, _L + "svc": f"{_E} L\n{_END}"}),
    ("no-file-runs-usr-lib-other", "svc", {_L + "other": _O}),
    ("dangling-service-runs-usr-lib", "svc", {"svc": "-> nowhere", "other": _O, _L + "svc": f"{_E} L\n{_END}"}),
    ("no-file-no-other", "svc", {"unrelated": _O}),
    ("no-file-broken-other", "svc", {"other": f"{_E} O\n@include nosuch\n{_END}"}),
    ("include-only-in-usr-lib", "svc", {"svc": f"{_E} A\nauth include inc\n{_END}", _L + "inc": f"{_E} I\n"}),
    ("at-include-only-in-usr-lib", "svc", {"svc": f"{_E} A\n@include inc\n{_END}", _L + "inc": f"{_E} I\n"}),
    ("other-as-its-own-service", "other", {"other": _O}),
    # how lines are read
    ("bracket-control-blanks-continued", "svc", {"svc": f"{_E} A\nauth [success=ok \\\n  default=bad] pam_permit.so\n{_E} B\n{_END}"}),
    ("bracket-control-unterminated", "svc", {"svc": f"{_E} A\nauth [success=ok pam_permit.so\n{_E} B\n{_END}"}),
    ("bracket-argument-cut-by-comment", "svc", {"svc": f"{_E} [A#B] C\n{_END}"}),
    ("bracket-argument-unterminated", "svc", {"svc": f"{_E} A [B C\n{_END}"}),
    ("bracket-argument-escaped-bracket", "svc", {"svc": f"{_E} [A\\]B]C\n{_END}"}),
    ("comment-after-continuation", "svc", {"svc": f"{_E} A \\\n# comment\n  X\n{_END}"}),
    ("comment-after-backslash", "svc", {"svc": f"{_E} A \\ # c\n{_E} B\n{_END}"}),
    ("stray-word", "svc", {"svc": f"{_E} A\nblah\n{_E} B\n{_END}"}),
    ("unknown-type-optional", "svc", {"svc": f"{_E} A\nfoo optional pam_permit.so\n{_E} B\n{_END}"}),
    ("double-dash-type", "svc", {"svc": f"{_E} A\n--auth required pam_permit.so\n{_E} B\n{_END}"}),
    ("no-control", "svc", {"svc": f"{_E} A\nauth\n{_E} B\n{_END}"}),
    ("no-module", "svc", {"svc": f"{_E} A\nauth required\n{_E} B\n{_END}"}),
    ("stray-word-in-account-include", "svc", {"svc": f"{_E} A\naccount include inc\n{_END}",
                                              "inc": "account optional pam_echo.so I\nblah\n"}),
]


@ROOT_NEEDED
@pytest.mark.parametrize(("service", "files"), [c[1:] for c in READ_CASES], ids=[c[0] for c in READ_CASES])
def test_lines_and_service_files_are_read_as_libpam_reads_them(tmp_path, service, files) -> None:
    if any(n.startswith(_L) for n in files) and not os.path.isdir("/usr/lib/pam.d"):
        pytest.skip("no /usr/lib/pam.d on this machine to bind a tree over")
    _write(tmp_path / "etc/pam.d", {n: t for n, t in files.items() if not n.startswith(_L)})
    (tmp_path / _L).mkdir(parents=True)
    for name, text in files.items():
        if name.startswith(_L):
            (tmp_path / name).write_text(text)
    for op, kind in (("authenticate", "auth"), ("acct_mgmt", "account")):
        theirs = _theirs(tmp_path, op, service)
        if theirs[0] in ("cannot start", "crash"):
            theirs = (theirs[0], [])
        assert _ours(tmp_path, kind, service) == theirs, op
