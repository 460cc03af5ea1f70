"""`pam(service)`: the PAM stack libpam 1.5.2 (Debian 12) builds for a service: its file in
etc/pam.d (or usr/lib/pam.d), else `other`, with `@include`, `include` and `substack` expanded in
place, each entry knowing its file and line."""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import ascii_lower, at

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["PAM", "PAM_ENTRY", "PAM_RETURNS", "PamEntry", "PamStack", "dispatch", "parse_pam", "register"]

PAM_ENTRY = ObjectType(
    "pam_entry",
    {
        "type": STR,
        "control": STR,
        "module": STR,
        "args": ListType(STR),
        "line": STR,
        "file": STR,
        "optional_module": BOOL,
        "must_fail": BOOL,
    },
    methods={
        "arg": Method(
            (STR,),
            STR,
            'value of the last `name=value` (modules apply their arguments in order), "true" for a'
            " bare `name`, else null",
        ),
        "arg_int": Method(
            (STR,),
            INT,
            "that value read as strtol(value, NULL, 10) reads it, as pam_pwhistory and pam_unix"
            " read their numbers (`24abc` is 24, `abc` is 0); null when the argument is absent",
        ),
        "arg_int_icase": Method(
            (STR,),
            INT,
            "the value of the last `name=value`, the name compared ignoring ASCII case, read as"
            " pam_pwhistory reads remember=: strtol(value, NULL, 10) kept in a C int (`REMEMBER=24`"
            " is 24, `4294967296` wraps to 0); null when no argument sets it",
        ),
        "last_prefixed": Method(
            (ListType(STR),),
            STR,
            "the word the last argument starting with one of these words starts with (the first"
            " such word in list order), null when none does: pam_unix matches its options by"
            " prefix and the last of a kind wins (`yescrypt md5` hashes with md5, `sha512x` is"
            " sha512)",
        ),
    },
    doc="one line of a PAM stack",
    field_docs={
        "module": "the module file name as written, without directory (pam_unix.so)",
        "line": "the configuration line as written (continuations joined)",
        "optional_module": "the line started with `-` (skipped when the module is missing)",
        "must_fail": "a step libpam runs as a failure, the lines around it still running: a"
        " `TYPE include` or `substack` whose file libpam cannot open or read to its end (as"
        " `[default=bad]`), or a line with an unknown type (then an auth line, or of the type an"
        " include reads), no control (`[default=bad]`) or no module; its module is empty",
    },
)

PAM = ObjectType(
    "pam",
    {"service": STR, "exists": BOOL, "entries": ListType(PAM_ENTRY), "modules": ListType(STR)},
    methods={
        "has_module": Method(
            (STR,), BOOL, "whether a module (pam_x or pam_x.so) appears in any type"
        ),
        "module": Method((STR,), PAM_ENTRY, "the first entry using the module, or null"),
        "entry": Method(
            (STR, STR),
            PAM_ENTRY,
            "the first entry of a type (auth, account, password, session) using the module",
        ),
        "entries_of": Method(
            (STR,), ListType(PAM_ENTRY), "the entries of one type, in stack order"
        ),
        "cannot_succeed_without": Method(
            (STR, ListType(STR)),
            BOOL,
            "whether every run of the stack of a type (auth, account, session) that succeeds"
            " passes through a line of one of these modules and takes its failure into account:"
            " libpam's dispatch (controls, jumps, include, substack, reset), each such line"
            " failing, other modules returning whatever they may (pam_permit succeeds, pam_deny"
            " fails), never ends in success; a control libpam cannot parse is an error",
        ),
        "cannot_store_password_without": Method(
            (ListType(STR),),
            BOOL,
            "whether no password change through the stack's password lines can store a new"
            " password that a line of one of these modules rejects: libpam runs the stack twice"
            " (PAM_PRELIM_CHECK, then PAM_UPDATE_AUTHTOK, each a dispatch of its own), and in the"
            " second run, each such line failing and dropping the password, no module that may"
            " store one is reached with a password to store (pam_unix with use_authtok after the"
            " rejection has none; any module but pam_unix, pam_permit, pam_deny and these may"
            " store one); a control libpam cannot parse is an error",
        ),
    },
    doc="the PAM configuration of one service as libpam reads it: etc/pam.d/<service>, else"
    " usr/lib/pam.d/<service>, else the `other` file (exists: false), includes expanded",
)

PAM_DIR = "/etc/pam.d"
DIST_DIR = "/usr/lib/pam.d"  # where libpam looks for a service (not an include) /etc/pam.d lacks
_TYPES = ("auth", "account", "password", "session")
_MAX_DEPTH = 16


def _module_key(name: str) -> str:
    base = os.path.basename(name)
    return base.removesuffix(".so")


@dataclass(frozen=True)
class PamEntry:
    type: str
    control: str
    module: str
    args: tuple[str, ...]
    line: str
    file: str
    lineno: int
    optional_module: bool = False
    must_fail: bool = False
    # what libpam's control word is (brackets dropped, case kept), how many substacks deep the
    # line runs, and whether this is the step a `substack` line makes (not a module: it is
    # left out of `entries`, but a jump counts it, with its substack, as one step)
    raw_control: str = "default=bad"
    level: int = 0
    substack: bool = False

    def describe(self) -> str:
        return f"{self.type} {self.control} {self.module}"

    def arg(self, name: str) -> str | None:
        # modules read their arguments in order, each one overriding the last (pam_pwquality,
        # pam_faillock, pam_pwhistory, pam_unix): the last occurrence is in force
        for a in reversed(self.args):
            key, sep, value = a.partition("=")
            if key == name:
                return value if sep else "true"
        return None

    def arg_int(self, name: str) -> int | None:
        value = self.arg(name)
        if value is None:
            return None
        m = _STRTOL.match(value)
        return 0 if m is None else int(m.group(0))

    def arg_int_icase(self, name: str) -> int | None:
        # pam_pwhistory: pam_str_skip_icase_prefix(argv, "remember=") and an int
        # `options->remember = strtol(str, NULL, 10)`
        prefix = ascii_lower(name) + "="
        for a in reversed(self.args):
            if ascii_lower(a[: len(prefix)]) == prefix:
                m = _STRTOL.match(a, len(prefix))
                value = 0 if m is None else int(m.group(0))
                value = max(-(2**63), min(2**63 - 1, value)) & 0xFFFFFFFF  # long, then int
                return value - 2**32 if value >= 2**31 else value
        return None

    def last_prefixed(self, words: list[str]) -> str | None:
        # pam_unix's _set_ctrl(): each argument is the first option (in its table) that the
        # argument starts with, and a later hash option clears an earlier one
        for a in reversed(self.args):
            hit = next((w for w in words if w and a.startswith(w)), None)
            if hit is not None:
                return hit
        return None

    def where(self, name: str, *args: Any) -> str | None:
        return at(self.file, self.lineno)


_STRTOL = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_PAM_BLANKS = " \t\n"  # _pam_StrTok(..., " \n\t"): \r, \v, \f are part of a word


def _tokens(line: str) -> list[tuple[str, bool]]:
    """(word, bracketed) as libpam's _pam_StrTok() cuts them: a word starting with `[` runs to
    the first `]` not after a backslash (`\\]` is `]`), blanks and all, or to the end of the line
    when there is none; its brackets are dropped."""
    out: list[tuple[str, bool]] = []
    pos, n = 0, len(line)
    while True:
        while pos < n and line[pos] in _PAM_BLANKS:
            pos += 1
        if pos >= n:
            return out
        if line[pos] == "[":
            word: list[str] = []
            pos += 1
            while pos < n and line[pos] != "]":
                if line[pos] == "\\" and line[pos + 1 : pos + 2] == "]":
                    pos += 1
                word.append(line[pos])
                pos += 1
            out.append(("".join(word), True))
            pos += 1  # the `]`: the next word may start right behind it
        else:
            end = pos
            while end < n and line[end] not in _PAM_BLANKS:
                end += 1
            out.append((line[pos:end], False))
            pos = end


_BUF_SIZE = 1024  # libpam's BUF_SIZE: the buffer _pam_assemble_line() builds a line in


def _lines(text: str) -> tuple[list[tuple[int, str]], int | None]:
    """(first line number, logical line) as libpam 1.5's _pam_assemble_line() builds them.

    It reads with fgets() into one 1024-byte buffer: a physical line longer than the room
    left is read in pieces, and each piece that does not end at its `\n` is a line of its
    own (so a directive past byte 1023 of a long line is read as a line). In a piece, what
    follows a `#` is dropped and ends the line; a backslash before trailing blanks, tabs and
    the newline becomes a blank and the next piece is added behind it (blank and comment
    lines in between are skipped). A continued line the end of the file cuts (nothing but
    blanks and comments behind its backslash) is an error for libpam ("incomplete read"): the
    second value is the line it starts at (None when the file ends cleanly). A continued line that fills the buffer to its last byte makes libpam 1.5.2 loop forever
    (fgets() with room for nothing returns an empty string, again and again): that is an
    EvaluationError, since no program using the file gets past reading it."""
    data = text.encode("utf-8", "surrogateescape")
    out: list[tuple[int, str]] = []
    pos, size, lineno = 0, len(data), 1
    while True:
        buf = b""  # the buffer up to p, as the line being assembled holds it
        room = _BUF_SIZE  # endp - p
        start: int | None = None
        while True:
            if room <= 1:
                raise _Hang(lineno)
            if pos >= size:
                return out, start
            cut = data.find(b"\n", pos, pos + room - 1)
            end = cut + 1 if cut != -1 else min(pos + room - 1, size)
            piece, pos = data[pos:end], end
            here = lineno
            lineno += piece.count(b"\n")
            chunk = piece.split(b"\0", 1)[0]  # a C string ends at NUL
            body = chunk.lstrip(b" \n\t")
            if not body or body.startswith(b"#"):
                continue  # nothing in this piece: p does not move
            if start is None:
                start = here
            lead = len(chunk) - len(body)
            hash_at = body.find(b"#")
            if hash_at != -1:
                buf += chunk[: lead + hash_at]
                break
            kept = body.rstrip(b" \t\n")
            if kept.endswith(b"\\"):
                piece_len = lead + len(kept)  # up to and with the backslash, now a blank
                buf += chunk[: piece_len - 1] + b" "
                room -= piece_len
                continue
            buf += chunk
            break
        line = buf.decode("utf-8", "surrogateescape").strip(_PAM_BLANKS)
        if line and start is not None:
            out.append((start, line))


class _Hang(Exception):
    """libpam loops forever reading the file, at this line."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Cut(Exception):
    """libpam's read of a file ends in an error (a continued line cut by the end of the file):
    the entries it made of the lines before stay, the file's reader fails."""

    def __init__(self, path: str, line: int, entries: list[PamEntry]) -> None:
        super().__init__(path, line)
        self.path, self.line, self.entries = path, line, entries


def _crash(path: str, n: int, line: str) -> EvaluationError:
    return EvaluationError(
        f"{path}:{n}: `{line}` names no file: libpam 1.5.2 crashes (segmentation fault) reading"
        " it, so every program using this service crashes"
    )


_LEFTOVER = (
    "this file is read for an `{}` include or `substack` line, and there libpam 1.5.2 runs a"
    " failing step in place of the @include with whatever control the line read before it left"
    " behind (no file says which)"
)


def _unopened_include(path: str, n: int, target: str, only_type: str | None) -> EvaluationError:
    shown = target if target.startswith("/") else os.path.join(PAM_DIR, target)
    head = f"{path}:{n}: @include {target}: {shown} cannot be opened (absent or a dangling link)"
    if only_type is None:
        return EvaluationError(
            f"{head}: libpam cannot start a service that reads this (pam_start fails with"
            " a critical error), so no program can use the service and no setting of it is in force"
        )
    return EvaluationError(f"{head}: {_LEFTOVER.format(only_type)}")


def _cut_error(cut: _Cut, only_type: str | None = None) -> EvaluationError:
    head = (
        f"{cut.path}:{cut.line}: a line continued with a trailing backslash runs into the end of"
        " the file: libpam 1.5.2 stops reading the file with an error"
    )
    if only_type is None:
        return EvaluationError(
            f"{head}, and cannot start a service that reads it (pam_start fails with a critical"
            " error), so no program can use the service and no setting of it is in force"
        )
    return EvaluationError(f"{head}; it is @included, and {_LEFTOVER.format(only_type)}")


def _failing(
    kind: str, control: str, line: str, path: str, n: int, raw: str = "default=bad"
) -> PamEntry:
    return PamEntry(kind, control, "", (), line, path, n, must_fail=True, raw_control=raw)


def _deeper(entries: list[PamEntry]) -> list[PamEntry]:
    return [replace(e, level=e.level + 1) for e in entries]


class _Reader:
    def __init__(self, ctx: FactContext) -> None:
        self.ctx = ctx

    def open(self, path: str) -> str | None:
        """What libpam's fopen() + fgets() read of a file: None when it cannot be opened."""
        st = self.ctx.stat(path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return ""  # libpam fopen()s a directory and its first fgets() fails: an empty file
        return self.ctx.read_text(path)

    def read(
        self,
        service: str,
        only_type: str | None,
        depth: int,
        seen: tuple[str, ...],
        path: str | None = None,
        text: str | None = None,
    ) -> list[PamEntry] | None:
        if depth > _MAX_DEPTH or service in seen:
            raise EvaluationError(
                f"{PAM_DIR}/{service}: include loop ({' -> '.join(seen + (service,))})"
            )
        if path is None:
            # an included name is looked for in /etc/pam.d only (pamtester: an include of a
            # file that only /usr/lib/pam.d holds is one libpam cannot open)
            path = service if service.startswith("/") else os.path.join(PAM_DIR, service)
            text = self.open(path)
        if text is None:
            return None
        entries: list[PamEntry] = []
        try:
            lines, cut = _lines(text)
        except _Hang as h:
            raise EvaluationError(
                f"{path}:{h.line}: libpam never finishes reading this file (a continued line fills its "
                f"{_BUF_SIZE}-byte line buffer): every program using it hangs"
            ) from None
        for n, line in lines:
            toks = [w for w, _ in _tokens(line)]
            # libpam compares `@include`, the type and the `include`/`substack` controls
            # with strcasecmp(): `@INCLUDE x` and `auth Include x` include x
            if ascii_lower(toks[0]) == "@include":
                if len(toks) < 2:
                    raise _crash(path, n, line)
                try:
                    got = self.read(toks[1], only_type, depth + 1, seen + (service,))
                except _Cut as c:
                    if only_type is None:
                        raise
                    raise _cut_error(c, only_type) from None
                if got is None:
                    raise _unopened_include(path, n, toks[1], only_type)
                entries += got
                continue
            entries += self._line(line, n, path, only_type, depth, seen + (service,))
        if cut is not None:
            raise _Cut(path, cut, entries)
        return entries

    def _line(
        self, line: str, n: int, path: str, only_type: str | None, depth: int, seen: tuple[str, ...]
    ) -> list[PamEntry]:
        """The steps one line (not an @include) makes, as _pam_parse_conf_file() makes them."""
        words = _tokens(line)
        raw_type = words[0][0]
        optional = raw_type.startswith("-")  # one dash: `--auth` is an unknown type
        kind = ascii_lower(raw_type[1:] if optional else raw_type)
        # an unknown type is a step that fails, of the type an include reads, else an auth step
        unknown = kind not in _TYPES
        if unknown:
            kind = only_type or "auth"
        if only_type is not None and kind != only_type:
            return []
        if len(words) < 2:
            return [_failing(kind, "[default=bad]", line, path, n)]
        control, bracketed = words[1]
        # libpam drops the brackets before comparing the word: `[include]` is `include`
        if ascii_lower(control) in ("include", "substack"):
            if len(words) < 3:
                raise _crash(path, n, line)
            # a substack is a step of its own (libpam's PAM_HT_SUBSTACK handler), its lines one
            # level deeper; an include's lines take the line's place
            head, deeper = (
                ([PamEntry(kind, "substack", "", (), line, path, n, substack=True)], _deeper)
                if ascii_lower(control) == "substack"
                else ([], list)
            )
            try:
                got = self.read(words[2][0], kind, depth + 1, seen)
            except _Cut as c:
                # libpam keeps what it read of the file and, as for one it cannot open, puts a
                # failing step after it (pamtester: the lines before the cut line still run)
                return head + deeper(c.entries) + [_failing(kind, "[default=bad]", line, path, n)]
            if got is None:
                # libpam 1.5.2 puts a PAM_HT_MUST_FAIL handler in its place, every return
                # value mapped to `bad`: the stack goes on and ends in failure
                return head + [_failing(kind, "[default=bad]", line, path, n)]
            return head + deeper(got)
        raw = control
        control = f"[{control}]" if bracketed else ascii_lower(control)
        if unknown or len(words) < 3:
            return [_failing(kind, control, line, path, n, raw)]
        return [
            PamEntry(
                kind,
                control,
                os.path.basename(words[2][0]),
                tuple(w for w, _ in words[3:]),
                line,
                path,
                n,
                optional,
                raw_control=raw,
            )
        ]

    def service(self, name: str) -> tuple[str, list[PamEntry]] | None:
        """(file, entries) of a service's own file: /etc/pam.d/NAME, else /usr/lib/pam.d/NAME
        (libpam 1.5.2 as Debian 12 builds it: pamtester runs the second when the first is
        absent or a dangling link); None when neither opens."""
        for d in (PAM_DIR, DIST_DIR):
            path = os.path.join(d, name)
            text = self.open(path)
            if text is not None:
                try:
                    got = self.read(name, None, 0, (), path, text)
                except _Cut as c:
                    raise _cut_error(c) from None
                return path, got or []
        return None


# libpam 1.5.2's return codes, in the order of its pam_tokens.h (their values), then `default`
_RETURNS = (
    "success", "open_err", "symbol_err", "service_err", "system_err", "buf_err", "perm_denied",
    "auth_err", "cred_insufficient", "authinfo_unavail", "user_unknown", "maxtries",
    "new_authtok_reqd", "acct_expired", "session_err", "cred_unavail", "cred_expired", "cred_err",
    "no_module_data", "conv_err", "authtok_err", "authtok_recover_err", "authtok_lock_busy",
    "authtok_disable_aging", "try_again", "ignore", "abort", "authtok_expired", "module_unknown",
    "bad_item", "conv_again", "incomplete", "default",
)  # fmt: skip
_SUCCESS, _PERM_DENIED, _AUTH_ERR, _NEW_AUTHTOK_REQD, _IGNORE, _INCOMPLETE = 0, 6, 7, 12, 25, 31
_AUTHTOK_ERR = 20  # pam_deny's and pam_get_authtok()'s answer to a password change
# pam_pwquality rejecting a password: PAM_AUTHTOK_ERR, PAM_MAXTRIES after retry= (above 1) tries
_REJECTS = (_AUTHTOK_ERR, 11)
PAM_RETURNS = _RETURNS[:-1]  # a return code's name is its index here
# actions, as libpam numbers them; a positive number is a jump over that many steps
_ACTIONS = ("ignore", "ok", "done", "bad", "die", "reset")
_A_IGNORE, _A_OK, _A_DONE, _A_BAD, _A_DIE, _A_RESET = 0, -1, -2, -3, -4, -5
_C_SPACE = " \t\n\v\f\r"  # C isspace()
_DIGITS = re.compile(r"[0-9]+")
_KEYWORDS = {  # (success and new_authtok_reqd, ignore, the rest)
    "required": (_A_OK, _A_IGNORE, _A_BAD),
    "requisite": (_A_OK, _A_IGNORE, _A_DIE),
    "optional": (_A_OK, _A_IGNORE, _A_IGNORE),
    "sufficient": (_A_DONE, _A_IGNORE, _A_IGNORE),
}
_SUBSTACK_MAX_LEVEL = 16
# what a module's function returns in libpam's dispatch (PAM_INCOMPLETE, which suspends the
# stack, is left out): pam_permit succeeds (sshd has set the user), pam_deny fails with its
# one code, a line libpam makes no module of fails with PAM_PERM_DENIED, any other module may
# return anything
_ANY = tuple(range(_INCOMPLETE))
_FAILS = tuple(r for r in _ANY if r not in (_SUCCESS, _IGNORE))
_DENY = {"auth": _AUTH_ERR, "account": _AUTH_ERR, "session": 14}  # pam_deny.c
_UNDEF, _POSITIVE, _NEGATIVE = 0, 1, -1


def _parse_control(tok: str) -> list[int] | None:
    """The action of each return code for a `[...]` control, as libpam 1.5.2's
    _pam_parse_control() reads it (names compared as prefixes, case kept, `default=` filling
    the codes not set yet, the rest `bad`); None where it refuses the text (it then makes
    every code `bad` and logs "pam_parse")."""
    acts: list[int | None] = [None] * (_INCOMPLETE + 1)
    i, n = 0, len(tok)
    while i < n:
        while i < n and tok[i] in _C_SPACE:
            i += 1
        if i >= n:
            break
        ret = next((r for r, name in enumerate(_RETURNS) if tok.startswith(name, i)), None)
        if ret is None:
            return None
        i += len(_RETURNS[ret])
        while i < n and tok[i] in _C_SPACE:
            i += 1
        if i >= n or tok[i] != "=":
            return None
        i += 1
        while i < n and tok[i] in _C_SPACE:
            i += 1
        word = next((w for w in _ACTIONS if tok.startswith(w, i)), None)
        if word is not None:
            act = -_ACTIONS.index(word)
            i += len(word)
        else:
            m = _DIGITS.match(tok, i)
            if m is None or int(m.group(0)) == 0 or int(m.group(0)) > 2**31 - 1:
                return None  # no number, a jump of 0 (or one a C int does not hold)
            act, i = int(m.group(0)), m.end()
        if ret == len(_RETURNS) - 1:
            acts = [act if a is None else a for a in acts]
        else:
            acts[ret] = act
    return [_A_BAD if a is None else a for a in acts]


@functools.lru_cache(maxsize=256)
def _control_table(control: str) -> tuple[int, ...] | None:
    """The action of each return code for a control as written, or None where libpam refuses
    it; kept per control, since a dispatch model asks for it at every step of every run."""
    keyword = _KEYWORDS.get(ascii_lower(control))
    if keyword is not None:
        ok, ignore, rest = keyword
        acts = [rest] * (_INCOMPLETE + 1)
        acts[_SUCCESS] = acts[_NEW_AUTHTOK_REQD] = ok
        acts[_IGNORE] = ignore
        return tuple(acts)
    parsed = _parse_control(control)
    return None if parsed is None else tuple(parsed)


def _actions(e: PamEntry) -> tuple[int, ...]:
    """What libpam does on each return code of the line `e`."""
    acts_or_none = _control_table(e.raw_control)
    if acts_or_none is None:
        raise EvaluationError(
            f"{e.file}:{e.lineno}: `{e.line}`: libpam 1.5.2 cannot parse the control"
            f' {e.raw_control!r} (it logs "pam_parse" and makes every result of the line `bad`)'
        )
    return acts_or_none


@dataclass(frozen=True)
class _Step:
    level: int
    substack: bool  # the step a `substack` line makes: skipped when run, counted by jumps
    # (action, returned PAM_SUCCESS) for each code the module may return
    outcomes: tuple[tuple[int, bool], ...]


def _past(levels: Sequence[int], i: int, level: int, count: int | None) -> tuple[int, int]:
    """The step after skipping `count` steps from step i (a jump; a deeper substack is one
    step) or, with None, the rest of this level (a decision); and how many steps were missing."""
    left = count if count is not None else -1
    while i + 1 < len(levels) and levels[i + 1] >= level and left != 0:
        i += 1
        while i + 1 < len(levels) and levels[i + 1] > level:
            i += 1
        left -= 1
    return i + 1, max(left, 0)


# A run's state: its impression, whether its status is PAM_SUCCESS, and the (impression, status)
# saved on entering each substack level, which `reset` goes back to.
_Saved = tuple[tuple[int, bool], ...]


def _next(levels: Sequence[int], i: int, level: int, imp: int, ok: bool, saved: _Saved,
          action: int, success: bool) -> tuple[int, int, bool]:
    """libpam 1.5.2's _pam_dispatch_aux() on step i's action: the next step, impression and
    status."""
    to = i + 1
    if action == _A_RESET:
        imp, ok = saved[level]
    elif action in (_A_OK, _A_DONE):
        if imp == _UNDEF or (imp == _POSITIVE and ok):
            imp, ok = _POSITIVE, success
        if imp == _POSITIVE and action == _A_DONE:
            to = _past(levels, i, level, None)[0]
    elif action in (_A_BAD, _A_DIE):
        if imp != _NEGATIVE:
            imp, ok = _NEGATIVE, success  # PAM_IGNORE is made PAM_PERM_DENIED
        if action == _A_DIE:
            to = _past(levels, i, level, None)[0]
    elif action > 0:
        to, missing = _past(levels, i, level, action)
        if missing:  # "bad jump in stack"
            imp, ok = _NEGATIVE, False
    return to, imp, ok


def _entered(levels: Sequence[int], i: int, imp: int, ok: bool, saved: _Saved) -> _Saved:
    """The saved states on reaching step i: entering a substack (from its own step) saves the
    run's state for its level."""
    if i and levels[i] > levels[i - 1]:
        return saved[: levels[i]] + ((imp, ok),)
    return saved


def _cannot_succeed(steps: list[_Step]) -> bool:
    """Whether no run of libpam 1.5.2's _pam_dispatch_aux() (no frozen chain: pam_authenticate,
    pam_acct_mgmt, pam_open_session) over these steps ends in PAM_SUCCESS."""
    levels = [s.level for s in steps]
    State = tuple[int, int, bool, _Saved]
    start: State = (0, _UNDEF, False, ((_UNDEF, False),))
    todo, seen = [start], {start}
    while todo:
        i, imp, ok, saved = todo.pop()
        if i == len(steps):
            if imp == _POSITIVE and ok:
                return False
            continue
        step = steps[i]
        saved = _entered(levels, i, imp, ok, saved)
        nexts: list[State] = []
        if step.substack:
            nexts.append((i + 1, imp, ok, saved))
        for action, success in step.outcomes:
            nexts.append((*_next(levels, i, step.level, imp, ok, saved, action, success), saved))
        for state in nexts:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return True


def _codes(e: PamEntry, keys: set[str], theirs: tuple[int, ...], deny: int) -> tuple[int, ...] | None:
    """What the module line `e` may return: a line of one of the `keys` modules one of `theirs`,
    pam_permit success, pam_deny `deny`, a `must_fail` step PAM_PERM_DENIED; None for any
    other module (the caller says what that may do)."""
    if e.must_fail:
        return (_PERM_DENIED,)
    key = _module_key(e.module)
    if key in keys:
        return theirs
    if key == "pam_permit":
        return (_SUCCESS,)
    if key == "pam_deny":
        return (deny,)
    return None


def _outcomes(e: PamEntry, codes: tuple[int, ...]) -> tuple[tuple[int, bool], ...]:
    """(action, returned PAM_SUCCESS) of the line `e` for each of `codes`, each pair once."""
    acts = _actions(e)
    return tuple(sorted({(acts[r], r == _SUCCESS) for r in codes}))


def _steps(lines: Sequence[PamEntry], keys: set[str], theirs: tuple[int, ...], deny: int) -> list[_Step]:
    """The steps of `lines` for _cannot_succeed (`_codes`, any other module any code but
    PAM_INCOMPLETE)."""
    steps = []
    for e in lines:
        if e.level >= _SUBSTACK_MAX_LEVEL:
            raise EvaluationError(
                f"{e.file}:{e.lineno}: substacks {e.level} deep: libpam 1.5.2 refuses more"
                f" than {_SUBSTACK_MAX_LEVEL - 1}"
            )
        if e.substack:
            steps.append(_Step(e.level, True, ()))
            continue
        steps.append(_Step(e.level, False, _outcomes(e, _codes(e, keys, theirs, deny) or _ANY)))
    return steps


def _may_store(lines: Sequence[PamEntry], checkers: set[str]) -> bool:
    """Whether a PAM_UPDATE_AUTHTOK run of libpam 1.5.2's dispatch over password `lines` may
    reach a module that stores a password while holding (or asking for) one, each line of a
    `checkers` module failing and dropping the password (see cannot_store_password_without)."""
    levels = [e.level for e in lines]
    State = tuple[int, int, bool, _Saved, bool]  # ..., whether a password is held
    start: State = (0, _UNDEF, False, ((_UNDEF, False),), False)
    todo, seen = [start], {start}
    while todo:
        i, imp, ok, saved, held = todo.pop()
        if i == len(lines):
            continue
        e = lines[i]
        saved = _entered(levels, i, imp, ok, saved)
        nexts: list[State] = []
        if e.substack:
            nexts.append((i + 1, imp, ok, saved, held))
        else:
            codes = _codes(e, checkers, _REJECTS, _AUTHTOK_ERR)
            # a checker's rejection drops the password
            after = held and (e.must_fail or _module_key(e.module) not in checkers)
            if codes is None:
                if _module_key(e.module) == "pam_unix" and not held and e.arg("use_authtok") is not None:
                    codes = (_AUTHTOK_ERR,)  # pam_get_authtok(): use_authtok and no password
                else:
                    return True  # pam_unix stores what it holds or asks for; others may
            for action, success in _outcomes(e, codes):
                nexts.append((*_next(levels, i, e.level, imp, ok, saved, action, success), saved, after))
        for state in nexts:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return False


def dispatch(lines: Sequence[PamEntry], result: Callable[[int, PamEntry], int]) -> bool:
    """One run of libpam 1.5.2's _pam_dispatch_aux() over `lines` (PamStack.lines_of), each
    module line returning `result(index, line)`, a PAM return code (PAM_RETURNS), called as the
    run reaches the line; whether it ends in PAM_SUCCESS. A line libpam makes no module of
    returns PAM_PERM_DENIED; a control libpam cannot parse is an EvaluationError."""
    levels = [e.level for e in lines]
    saved: _Saved = ((_UNDEF, False),)
    i, imp, ok = 0, _UNDEF, False
    while i < len(lines):
        e = lines[i]
        saved = _entered(levels, i, imp, ok, saved)
        if e.substack:
            i += 1
            continue
        ret = _PERM_DENIED if e.must_fail else result(i, e)
        i, imp, ok = _next(levels, i, e.level, imp, ok, saved, _actions(e)[ret], ret == _SUCCESS)
    return imp == _POSITIVE and ok


class PamStack:
    def __init__(
        self,
        service: str,
        path: str,
        entries: list[PamEntry],
        exists: bool,
        other: list[PamEntry] | None = None,
    ) -> None:
        self.service = service
        self._path = path  # the file read: the service's own, or `other` in its place
        self.exists = exists
        self._steps = tuple(entries)  # with the steps `substack` lines make
        self._other = tuple(other or ())  # `other`'s, run for a type the service has none of
        self.entries = tuple(e for e in entries if not e.substack)
        self.modules = tuple(dict.fromkeys(e.module for e in self.entries if not e.must_fail))

    def describe(self) -> str:
        return f"pam({self.service!r})"

    def _find(self, module: str, kind: str | None = None) -> PamEntry | None:
        key = _module_key(module)
        for e in self.entries:
            if e.must_fail:
                continue
            if _module_key(e.module) == key and (kind is None or e.type == kind):
                return e
        return None

    def has_module(self, module: str) -> bool:
        return self._find(module) is not None

    def module(self, module: str) -> PamEntry | None:
        return self._find(module)

    def entry(self, kind: str, module: str) -> PamEntry | None:
        return self._find(module, kind.lower())

    def entries_of(self, kind: str) -> tuple[PamEntry, ...]:
        return tuple(e for e in self.entries if e.type == kind.lower())

    def lines_of(self, kind: str) -> tuple[PamEntry, ...]:
        """The lines libpam runs for a type: the service's (with the steps its `substack` lines
        make, and each line's substack level), else `other`'s."""
        kind = kind.lower()
        return tuple(e for e in self._steps if e.type == kind) or tuple(
            e for e in self._other if e.type == kind
        )

    def cannot_succeed_without(self, kind: str, modules: list[str]) -> bool:
        """Whether every run of the stack of type `kind` that succeeds passes through a line of
        one of `modules` and takes its result into account: libpam's dispatch, run with each
        such line failing (any code but success and PAM_IGNORE), every other module returning
        what it may, never ends in success."""
        kind = kind.lower()
        if kind not in _DENY:
            raise EvaluationError(
                f"{self.describe()}.cannot_succeed_without({kind!r}): libpam runs a stack of"
                " auth, account or session lines once; a password stack runs twice (see"
                " cannot_store_password_without)"
            )
        keys = {_module_key(m) for m in modules}
        return _cannot_succeed(_steps(self.lines_of(kind), keys, _FAILS, _DENY[kind]))

    def cannot_store_password_without(self, modules: list[str]) -> bool:
        """Whether no password change (pam_chauthtok) through this stack can store a new
        password that a line of one of `modules` rejects.

        libpam 1.5.2 dispatches the password lines twice, each run a dispatch of its own
        (_pam_dispatch() asks _pam_dispatch_aux() to freeze the chain in both; pamtester: a
        `[success=1 default=ignore]` checker over pam_deny stops a rejected password in the
        second run although the checker succeeded in the first): first with PAM_PRELIM_CHECK,
        where nothing is stored and the checkers succeed (pam_pwquality does), and, only when
        that run succeeds, with PAM_UPDATE_AUTHTOK. Modules store the password while the second
        run goes on, whatever it ends in, so the question is which lines that run reaches: with
        each checker line failing and dropping the password (pam_pwquality unsets PAM_AUTHTOK),
        no line of a module that may store one is reached holding one. pam_unix stores the
        password it holds or asks for, except that with `use_authtok` and none held it fails
        with PAM_AUTHTOK_ERR; pam_permit and pam_deny store nothing; any other module may store
        one (and may ask for one)."""
        keys = {_module_key(m) for m in modules}
        lines = self.lines_of("password")
        # the first run: the checkers succeed there
        if _cannot_succeed(_steps(lines, keys, (_SUCCESS,), _AUTHTOK_ERR)):
            return True  # the second run, the one that stores, never starts
        return not _may_store(lines, keys)

    def where(self, name: str, *args: Any) -> str | None:
        hit = None
        if name in ("has_module", "module") and args:
            hit = self._find(str(args[0]))
        elif name == "entry" and len(args) == 2:
            hit = self._find(str(args[1]), str(args[0]).lower())
        elif (name, len(args)) in (("cannot_store_password_without", 1), ("cannot_succeed_without", 2)):
            # the first line of one of the modules, in the stack the member runs
            kind = "password" if len(args) == 1 else str(args[0]).lower()
            mods = args[-1] if isinstance(args[-1], (list, tuple)) else ()
            hit = next((e for m in mods if (e := self._find(str(m), kind))), None)
        if hit is not None:
            return at(hit.file, hit.lineno)
        if self.exists:
            return self._path
        if not self.entries and os.path.basename(self._path) == self.service:
            return (
                f"{self._path} (absent, nor in {DIST_DIR}, and no `other` either: libpam cannot"
                " start the service)"
            )
        return (
            f"{self._path} (read for {self.service!r}: neither {PAM_DIR} nor {DIST_DIR} holds it)"
        )


def parse_pam(ctx: FactContext, service: str) -> PamStack:
    if "/" in service or service in ("", ".", ".."):
        raise EvaluationError(f"pam({service!r}): a service is a file name in {PAM_DIR}")
    reader = _Reader(ctx)
    own = reader.service(service)
    # libpam reads `other` for every service, after the service's own file: a file it cannot
    # read to its end there fails every service (pamtester: "Initialization failure")
    try:
        other = reader.service("other")
    except EvaluationError as e:
        if service == "other":
            raise
        raise EvaluationError(
            f"{e} (libpam reads `other` for every service, {service!r} too)"
        ) from None
    if own is None:
        if other is None:
            # libpam cannot start the service (pam_start fails): no line of it is in force.
            # That is read, not unreadable: an empty stack (exists false), as for an image
            # without PAM configuration, whose controls are simply not there.
            return PamStack(service, os.path.join(PAM_DIR, service), [], exists=False)
        return PamStack(service, other[0], other[1], exists=False, other=other[1])
    if service == "other" and other is not None:
        # libpam reads the file as the service's and again as the default, both into the
        # default stack: every line runs twice (pamtester over pam_echo lines)
        return PamStack(service, own[0], own[1] + other[1], exists=True)
    # libpam runs `other`'s lines of a type the service's file has none of; that is left out
    # of `entries`, since policies read include files such as common-auth through pam() as
    # files, but cannot_succeed_without() runs them
    return PamStack(service, own[0], own[1], exists=True, other=other[1] if other else None)


def register(reg: FactRegistry) -> None:
    reg.register(
        "pam",
        parse_pam,
        params=(STR,),
        returns=PAM,
        doc="the PAM stack of a service (etc/pam.d, usr/lib/pam.d, else other)",
    )
