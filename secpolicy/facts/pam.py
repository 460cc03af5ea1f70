"""`pam(service)`: the PAM stack of a service from etc/pam.d, with `@include`, `include` and
`substack` expanded in place, each entry knowing its file and line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at, c_lines

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
    },
    doc="one line of a PAM stack",
    field_docs={
        "module": "the module file name as written, without directory (pam_unix.so)",
        "line": "the configuration line as written (continuations joined)",
        "optional_module": "the line started with `-` (skipped when the module is missing)",
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


def _lines(text: str) -> list[tuple[int, str]]:
    """Logical lines as libpam 1.5's _pam_assemble_line() builds them: fgets() lines (only
    `\n` ends one), a `#` anywhere ends the logical line (no continuation after it), a
    backslash before trailing blanks, tabs and newlines joins the next non-blank line."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for n, raw in enumerate(c_lines(text), 1):
        line = raw.lstrip(_PAM_BLANKS)
        if not line or line.startswith("#"):
            continue  # a blank or comment line does not end a continued line
        if not pending:
            start = n
        if "#" in line:
            full = (pending + line.split("#", 1)[0]).strip(_PAM_BLANKS)
        elif line.rstrip(_PAM_BLANKS).endswith("\\"):
            pending += line.rstrip(_PAM_BLANKS)[:-1] + " "
            continue
        else:
            full = (pending + line).strip(_PAM_BLANKS)
        pending = ""
        if full:
            out.append((start, full))
    if pending.strip(_PAM_BLANKS):
        out.append((start, pending.strip(_PAM_BLANKS)))
    return out


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
        text = self.ctx.read_text(path)
        if text is None:
            return None
        entries: list[PamEntry] = []
        for n, line in _lines(text):
            toks = _tokens(line)
            if toks[0] == "@include":
                if len(toks) > 1:
                    entries += self.read(toks[1], only_type, depth + 1, seen + (service,)) or []
                continue
            if len(toks) < 3:
                continue
            raw_type, control = toks[0], toks[1]
            optional = raw_type.startswith("-")
            kind = raw_type.lstrip("-").lower()
            if only_type is not None and kind != only_type:
                continue
            if control in ("include", "substack"):
                entries += self.read(toks[2], kind, depth + 1, seen + (service,)) or []
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
        self.modules = tuple(dict.fromkeys(e.module for e in self.entries))

    def describe(self) -> str:
        return f"pam({self.service!r})"

    def _find(self, module: str, kind: str | None = None) -> PamEntry | None:
        key = _module_key(module)
        for e in self.entries:
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
