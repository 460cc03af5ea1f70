"""`pam(service)`: the PAM stack of a service from etc/pam.d, with `@include`, `include` and
`substack` expanded in place, each entry knowing its file and line."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import ascii_lower, at

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["PAM", "PAM_ENTRY", "PamEntry", "PamStack", "parse_pam", "register"]

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
        "must_fail": "a `TYPE include` or `substack` line whose file libpam cannot open: libpam"
        " runs it as a step that fails (as `[default=bad]`: the lines around it still run, the"
        " stack's result is a failure); its module is empty",
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
    },
    doc="the PAM configuration of one service (etc/pam.d/<service>), includes expanded",
)

PAM_DIR = "/etc/pam.d"
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
_TOKEN = re.compile(r"\[(?:[^\]\\]|\\.)*\]|[^ \t\n]+")


def _tokens(line: str) -> list[str]:
    """Split like libpam: `[...]` groups (controls, arguments with spaces) stay whole."""
    out: list[str] = []
    for tok in _TOKEN.findall(line):
        if tok.startswith("[") and tok.endswith("]") and out and len(out) >= 2:
            tok = tok[1:-1].replace("\\]", "]")  # an argument in brackets: brackets dropped
        out.append(tok)
    return out


_BUF_SIZE = 1024  # libpam's BUF_SIZE: the buffer _pam_assemble_line() builds a line in


def _lines(text: str) -> list[tuple[int, str]]:
    """(first line number, logical line) as libpam 1.5's _pam_assemble_line() builds them.

    It reads with fgets() into one 1024-byte buffer: a physical line longer than the room
    left is read in pieces, and each piece that does not end at its `\n` is a line of its
    own (so a directive past byte 1023 of a long line is read as a line). In a piece, what
    follows a `#` is dropped and ends the line; a backslash before trailing blanks, tabs and
    the newline becomes a blank and the next piece is added behind it (blank and comment
    lines in between are skipped). A continuation cut by the end of the file is dropped. A
    continued line that fills the buffer to its last byte makes libpam 1.5.2 loop forever
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
                return out  # end of file; a started continuation is dropped with the rest
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


def _crash(path: str, n: int, line: str) -> EvaluationError:
    return EvaluationError(
        f"{path}:{n}: `{line}` names no file: libpam 1.5.2 crashes (segmentation fault) reading"
        " it, so every program using this service crashes"
    )


def _unopened_include(path: str, n: int, target: str, only_type: str | None) -> EvaluationError:
    shown = target if target.startswith("/") else os.path.join(PAM_DIR, target)
    head = f"{path}:{n}: @include {target}: {shown} cannot be opened (absent or a dangling link)"
    if only_type is None:
        return EvaluationError(
            f"{head}: libpam cannot start a service that reads this (pam_start fails with"
            " a critical error), so no program can use the service and no setting of it is in force"
        )
    return EvaluationError(
        f"{head}: this file is read for an `{only_type} include` or `substack` line, and there"
        " libpam 1.5.2 runs a failing step in place of the @include with whatever control the"
        " line read before it left behind (no file says which)"
    )


class _Reader:
    def __init__(self, ctx: FactContext) -> None:
        self.ctx = ctx

    def read(
        self, service: str, only_type: str | None, depth: int, seen: tuple[str, ...]
    ) -> list[PamEntry] | None:
        if depth > _MAX_DEPTH or service in seen:
            raise EvaluationError(
                f"{PAM_DIR}/{service}: include loop ({' -> '.join(seen + (service,))})"
            )
        path = service if service.startswith("/") else os.path.join(PAM_DIR, service)
        st = self.ctx.stat(path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return []  # libpam fopen()s a directory and its first fgets() fails: an empty file
        text = self.ctx.read_text(path)
        if text is None:
            return None
        entries: list[PamEntry] = []
        try:
            lines = _lines(text)
        except _Hang as h:
            raise EvaluationError(
                f"{path}:{h.line}: libpam never finishes reading this file (a continued line fills its "
                f"{_BUF_SIZE}-byte line buffer): every program using it hangs"
            ) from None
        for n, line in lines:
            toks = _tokens(line)
            # libpam compares `@include`, the type and the `include`/`substack` controls
            # with strcasecmp(): `@INCLUDE x` and `auth Include x` include x
            if ascii_lower(toks[0]) == "@include":
                if len(toks) < 2:
                    raise _crash(path, n, line)
                got = self.read(toks[1], only_type, depth + 1, seen + (service,))
                if got is None:
                    raise _unopened_include(path, n, toks[1], only_type)
                entries += got
                continue
            if len(toks) < 2:
                continue
            raw_type, control = toks[0], toks[1]
            optional = raw_type.startswith("-")
            kind = raw_type.lstrip("-").lower()
            if only_type is not None and kind != only_type:
                continue
            if ascii_lower(control) in ("include", "substack"):
                if len(toks) < 3:
                    raise _crash(path, n, line)
                got = self.read(toks[2], kind, depth + 1, seen + (service,))
                if got is None:
                    # libpam 1.5.2 puts a PAM_HT_MUST_FAIL handler in its place, every return
                    # value mapped to `bad`: the stack goes on and ends in failure
                    got = [PamEntry(kind, "[default=bad]", "", (), line, path, n, must_fail=True)]
                entries += got
                continue
            if len(toks) < 3:
                continue
            control = control if control.startswith("[") else control.lower()
            entries.append(
                PamEntry(
                    kind,
                    control,
                    os.path.basename(toks[2]),
                    tuple(toks[3:]),
                    line,
                    path,
                    n,
                    optional,
                )
            )
        return entries


class PamStack:
    def __init__(self, service: str, path: str, entries: list[PamEntry] | None) -> None:
        self.service = service
        self._path = path
        self.exists = entries is not None
        self.entries = tuple(entries or ())
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

    def where(self, name: str, *args: Any) -> str | None:
        hit = None
        if name in ("has_module", "module") and args:
            hit = self._find(str(args[0]))
        elif name == "entry" and len(args) == 2:
            hit = self._find(str(args[1]), str(args[0]).lower())
        if hit is not None:
            return at(hit.file, hit.lineno)
        return self._path if self.exists else f"{self._path} (absent)"


def parse_pam(ctx: FactContext, service: str) -> PamStack:
    if "/" in service or service in ("", ".", ".."):
        raise EvaluationError(f"pam({service!r}): a service is a file name in {PAM_DIR}")
    return PamStack(
        service, os.path.join(PAM_DIR, service), _Reader(ctx).read(service, None, 0, ())
    )


def register(reg: FactRegistry) -> None:
    reg.register(
        "pam", parse_pam, params=(STR,), returns=PAM, doc="the PAM stack of a service (etc/pam.d)"
    )
