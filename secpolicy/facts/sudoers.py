"""`sudoers`: /etc/sudoers and the files it includes, read as sudo 1.9 reads them (`@include`,
`@includedir` and their `#` forms, backslash continuations, comments), with its `Defaults`."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, FLOAT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["SUDOERS", "SUDO_DEFAULT", "Sudoers", "register"]

SUDO_DEFAULT = ObjectType(
    "sudo_default",
    {"name": STR, "value": STR, "negated": BOOL, "scope": STR, "source": STR, "minutes": FLOAT},
    doc="one setting of a Defaults line",
    field_docs={
        "value": 'the value after = (quotes removed); "true" for a bare flag, "false" for !flag',
        "scope": 'what follows Defaults: "" (every user), ":user", "@host", "!command", ">runas"',
        "minutes": "the value read as sudo reads a timeout in minutes (timestamp_timeout,"
        " passwd_timeout: `2.5`, `-1`, `.5`), or null where visudo refuses it (`5m`, `0x10`)",
    },
)

SUDOERS = ObjectType(
    "sudoers",
    {
        "exists": BOOL,
        "path": STR,
        "files": ListType(STR),
        "lines": ListType(STR),
        "defaults": ListType(SUDO_DEFAULT),
    },
    methods={
        "option": Method(
            (STR,),
            STR,
            "the global Defaults value in force (the last one wins), or null when unset",
        ),
        "settings": Method(
            (STR,), ListType(SUDO_DEFAULT), "every Defaults setting of a name, any scope, in order"
        ),
        "has_line": Method(
            (STR,),
            BOOL,
            "whether a line sudo reads (comments gone, continuations joined) matches a regex",
        ),
    },
    doc="sudo's policy: /etc/sudoers and what it includes",
    field_docs={
        "files": "the files sudo reads, in order (sudoers.d names with a dot or ending in ~ are skipped)",
        "lines": "the lines sudo reads, comments removed and continuations joined",
    },
)

MAIN = "/etc/sudoers"
_MAX_DEPTH = 128
# sudo's lexer (toke.l) blanks are [[:blank:]], space and tab: not \v, \f, \x1c-\x1f or the
# Unicode spaces Python's \s also takes
_BLANK = " \t"
_INCLUDE = re.compile(r"^[@#](include|includedir)[ \t]+(.+?)[ \t]*$")
_DEFAULTS = re.compile(r"^Defaults([:@!>][^ \t]*)?[ \t]+(.*)$")
_MINUTES = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")


@dataclass(frozen=True)
class SudoDefault:
    name: str
    value: str
    negated: bool
    scope: str
    source: str

    @property
    def minutes(self) -> float | None:
        # sudo's store_timespec: a sign, digits, an optional `.` and digits, nothing else
        m = _MINUTES.fullmatch(self.value)
        if m is None or self.negated or not self.value:
            return None
        whole, frac = m.group(2) or "0", (m.group(3) or "")[:9]
        n = int(whole) + (int(frac) / 10 ** len(frac) if frac else 0.0)
        return -n if m.group(1) == "-" else float(n)

    def describe(self) -> str:
        return f"Defaults{self.scope} {'!' if self.negated else ''}{self.name}"

    def where(self, name: str, *args: Any) -> str | None:
        return self.source


def _strip_comment(line: str) -> str:
    """sudoers: `#` starts a comment unless it introduces a uid (`#1000`) or an include."""
    out = []
    i = 0
    quoted = False
    while i < len(line):
        ch = line[i]
        if ch == '"':
            quoted = not quoted
        if ch == "#" and not quoted and not (i + 1 < len(line) and line[i + 1].isdigit()):
            break
        if ch == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out).strip(_BLANK)


def _sudo_lines(text: str) -> list[str]:
    """The lines sudo's lexer sees: `\r?\n` ends a line, nothing else does (a `#` comment's
    `.*` runs over `\r`, `\v`, `\f`, `\x1c`-`\x1e`, `\x85`, U+2028 and U+2029)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _split_params(text: str) -> list[tuple[str, int]]:
    """Defaults parameters separated by commas, a quoted value keeping its commas, each with
    the offset in `text` where it starts."""
    out: list[tuple[str, int]] = []
    start = 0
    quoted = False
    for i, ch in enumerate(text + ","):
        if ch == '"':
            quoted = not quoted
        if ch == "," and (not quoted or i == len(text)):
            part = text[start:i]
            if part.strip(_BLANK):
                out.append((part.strip(_BLANK), start + len(part) - len(part.lstrip(_BLANK))))
            start = i + 1
    return out


@dataclass(frozen=True)
class _Line:
    """A line sudo reads (continuations joined) and the physical lines it was joined from:
    `breaks` holds (offset in `text`, line number) where each physical line's text starts."""

    text: str
    path: str
    breaks: tuple[tuple[int, int], ...]

    def source(self, offset: int = 0) -> str:
        # the physical line holding text[offset]: `Defaults mail_badpass, \` then `use_pty`
        # names use_pty's own line, not the one the Defaults starts on
        line = self.breaks[0][1]
        for start, n in self.breaks:
            if start <= offset:
                line = n
        return at(self.path, line)


def _included_files(ctx: FactContext, directory: str) -> list[str]:
    # sudo skips names ending in ~ or containing a dot (editor backups, .rpmsave, README.txt)
    names = [n for n in ctx.listdir(directory) if not n.endswith("~") and "." not in n]
    out = []
    for n in sorted(names):
        path = f"{directory.rstrip('/')}/{n}"
        st = ctx.stat(path)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            out.append(path)
    return out


class Sudoers:
    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        self.path = MAIN
        self.files: list[str] = []
        self._lines: list[_Line] = []
        self.exists = ctx.stat(MAIN) is not None
        self._read(MAIN, 0)
        self.lines = tuple(line.text for line in self._lines)
        self.defaults = tuple(self._defaults())

    def _read(self, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise EvaluationError(f"{path}: sudoers includes nested more than {_MAX_DEPTH} deep")
        text = self._ctx.read_text(path)
        if text is None:
            return
        self.files.append(path)
        pending: list[tuple[str, int]] = []
        for n, raw in enumerate(_sudo_lines(text), 1):
            stripped = raw.rstrip(_BLANK)
            if stripped.endswith("\\") and not stripped.lstrip(_BLANK).startswith("#"):
                pending.append((stripped[:-1], n))
                continue
            pending.append((raw, n))
            parts = [(p.strip(_BLANK), k) for p, k in pending]
            line = " ".join(p for p, _ in parts)
            pending = []
            inc = _INCLUDE.match(line.strip(_BLANK))
            if inc:
                self._include(path, inc.group(1), inc.group(2).strip('"'), depth)
                continue
            body = _strip_comment(line)
            if body:
                # _strip_comment only cuts the end and the blanks before the text
                lead = len(line) - len(line.lstrip(_BLANK))
                breaks, offset = [], -lead
                for p, k in parts:
                    breaks.append((offset, k))
                    offset += len(p) + 1
                self._lines.append(_Line(body, path, tuple(breaks)))

    def _include(self, current: str, kind: str, target: str, depth: int) -> None:
        if not target.startswith("/"):
            target = os.path.join(os.path.dirname(current), target)
        if kind == "includedir":
            for f in _included_files(self._ctx, target):
                self._read(f, depth + 1)
        else:
            self._read(target, depth + 1)

    def _defaults(self) -> list[SudoDefault]:
        out = []
        for line in self._lines:
            m = _DEFAULTS.match(line.text)
            if not m:
                continue
            scope = m.group(1) or ""
            for param, offset in _split_params(m.group(2)):
                source = line.source(m.start(2) + offset)
                negated = param.startswith("!")
                name, sep, value = param.lstrip("!").partition("=")
                name = name.rstrip("+-").strip(_BLANK)
                value = value.strip(_BLANK)
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                if not sep:
                    value = "false" if negated else "true"
                out.append(SudoDefault(name, value, negated, scope, source))
        return out

    def describe(self) -> str:
        return "sudoers"

    def settings(self, name: str) -> tuple[SudoDefault, ...]:
        return tuple(d for d in self.defaults if d.name == name)

    def _global(self, name: str) -> SudoDefault | None:
        hits = [d for d in self.defaults if d.name == name and d.scope == ""]
        return hits[-1] if hits else None

    def option(self, name: str) -> str | None:
        d = self._global(name)
        if d is None or (d.negated and d.value == "false" and name in _STRING_SETTINGS):
            return None  # `!logfile` turns a string setting off
        return d.value

    def has_line(self, regex: str) -> bool:
        rx = re.compile(regex)
        return any(rx.search(line.text) for line in self._lines)

    def where(self, name: str, *args: Any) -> str | None:
        if name == "option" and args:
            d = self._global(str(args[0]))
            return d.source if d else f"{', '.join(self.files) or MAIN} (no Defaults {args[0]})"
        if name == "settings" and args:
            hits = self.settings(str(args[0]))
            return ", ".join(d.source for d in hits) or ", ".join(self.files) or MAIN
        if name == "has_line" and args:
            rx = re.compile(str(args[0]))
            for line in self._lines:
                if found := rx.search(line.text):
                    return line.source(found.start())
            return ", ".join(self.files) or f"{MAIN} (absent)"
        return ", ".join(self.files) or f"{MAIN} (absent)"


# settings that hold a path or text: `!name` means unset
_STRING_SETTINGS = {"logfile", "iolog_dir", "iolog_file", "lecture_file", "editor", "secure_path"}


def register(reg: FactRegistry) -> None:
    reg.register("sudoers", Sudoers, returns=SUDOERS, doc="sudo's policy and its Defaults")
