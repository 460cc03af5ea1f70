"""The pam fact where an include names a file libpam cannot open (absent, a dangling link), a
directory, or no file at all, against libpam 1.5.2 itself: pamtester over a tree bound on
/etc/pam.d in a private mount namespace, `pam_echo` lines showing which lines ran.

What libpam does: an `@include` it cannot open makes pam_start fail ("Initialization failure"),
so the service is unusable (the fact is an error); a `TYPE include`/`substack` it cannot open is
a step that fails in its place, the lines around it still run and other types are untouched (the
fact lists a `must_fail` entry there); a directory reads as an empty file; an include naming no
file crashes libpam (an error)."""

from __future__ import annotations

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


def _theirs(pam_d: Path, op: str) -> tuple[str, list[str]]:
    """(outcome, the pam_echo words printed) of `pamtester svc root OP` over the tree."""
    # no core file from the cases that crash libpam
    done = _namespaced('ulimit -c 0 && mount --bind "$1" /etc/pam.d && exec "$2" -v svc root "$3"',
                       args=[str(pam_d), _tool("pamtester"), op])
    echoed = [w for w in done.stdout.splitlines() if w and not w.startswith("pamtester:")]
    if done.returncode in (-signal.SIGSEGV, 128 + signal.SIGSEGV):
        return "crash", echoed
    if "Initialization failure" in done.stderr:
        return "cannot start", echoed
    if "Permission denied" in done.stderr:
        return "denied", echoed
    assert done.returncode == 0, done
    return "ok", echoed


def _ours(root: Path, kind: str) -> tuple[str, list[str]]:
    """The same, from the fact: every stack here runs to its end (no sufficient or requisite
    line), so it fails exactly when it holds a must_fail step (an empty one fails too)."""
    try:
        stack = FactContext(builtin_registry(), str(root)).fact("pam", ("svc",))
    except EvaluationError as e:
        msg = str(e)
        return ("crash" if "crashes" in msg else "cannot start" if "cannot start" in msg else msg), []
    entries = stack.entries_of(kind)
    echoed = [" ".join(e.args) for e in entries if e.module == "pam_echo.so"]
    return ("denied" if not entries or any(e.must_fail for e in entries) else "ok"), echoed


@ROOT_NEEDED
@pytest.mark.parametrize(("files"), [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_includes_libpam_cannot_open_are_what_libpam_makes_of_them(tmp_path, files) -> None:
    _write(tmp_path / "etc/pam.d", files)
    for op, kind in (("authenticate", "auth"), ("acct_mgmt", "account")):
        theirs = _theirs(tmp_path / "etc/pam.d", op)
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
        outcomes.append(_theirs(root / "etc/pam.d", "authenticate"))
        with pytest.raises(EvaluationError, match=r"/etc/pam.d/mid:2: @include nosuch: .*failing step"):
            FactContext(builtin_registry(), str(root)).fact("pam", ("svc",))
    assert outcomes == [("ok", ["A", "M", "N", "B"]), ("denied", ["A", "M", "N", "B"])]
