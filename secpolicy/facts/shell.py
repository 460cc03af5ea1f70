"""What a POSIX shell (dash, Debian's /bin/sh) makes of a configuration file it sources with
`.`, for files that only assign variables: /etc/default/ufw and /etc/ufw/ufw.conf, which
ufw-init sources.

The file is never run. It is read as dash reads it: commands end at a newline or `;`, `#`
starts a comment at the start of a word, a backslash-newline joins lines, quoting is sh's
(single quotes take everything literally; in double quotes a backslash escapes only `$`,
`` ` ``, `"`, `\\` and a newline), and `$NAME` and `${NAME}` expand to the value assigned
before. A command made only of `NAME=value` words assigns them left to right (no field
splitting or globbing in assignments).

Anything else is something only running the shell could tell: a command (`ufw-init` would
run it; it may set any variable, or fail and stop ufw-init under `set -e`), a command
substitution, a parameter operation (`${X:-y}`), a positional or special parameter, tilde
expansion, a redirection, a pipe, a syntax error. For those `source()` raises
`CannotTell`, naming the line, rather than guess."""

from __future__ import annotations

import re
from collections.abc import MutableMapping

from secpolicy.facts._common import at

__all__ = ["CannotTell", "source"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLANK = " \t"
_OPERATORS = "&|()<>"  # what ends an unquoted word besides a blank, newline or `;`
_DQ_ESCAPES = '$`"\\'  # and a newline, which joins lines


class CannotTell(Exception):
    """Only running the shell could tell what the file does from here on."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


class _Reader:
    def __init__(self, text: str, path: str, env: MutableMapping[str, str], origin: MutableMapping[str, str]) -> None:
        self.text = text
        self.path = path
        self.env = env
        self.origin = origin
        self.pos = 0
        self.line = 1

    def fail(self, why: str) -> CannotTell:
        return CannotTell(at(self.path, self.line), why)

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.text[i] if i < len(self.text) else ""

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def skip_continuations(self) -> None:
        while self.peek() == "\\" and self.peek(1) == "\n":
            self.advance(2)

    def run(self) -> None:
        words = 0  # in the command read so far
        while True:
            self.skip_continuations()
            c = self.peek()
            if c == "":
                return
            if c in _BLANK:
                self.advance()
            elif c == "#":
                while self.peek() not in ("\n", ""):
                    self.advance()
            elif c == "\n" or c == ";":
                if c == ";" and not words:
                    raise self.fail("';' with no command before it: a syntax error to sh")
                words = 0
                self.advance()
            elif c in _OPERATORS:
                raise self.fail(f"'{c}': a redirection, pipe, list or subshell")
            else:
                # Assignments take effect in order, each seeing the ones before it.
                name, value, line = self.word()
                if name is None:
                    shown = value if len(value) <= 40 else value[:40] + "..."
                    raise CannotTell(at(self.path, line), f"runs a command ({shown}): only running it could tell what it does")
                self.env[name] = value
                self.origin[name] = at(self.path, line)
                words += 1

    def word(self) -> tuple[str | None, str, int]:
        """One word: for an assignment its name and value (after expansion), for another word
        None and its raw text; and the line it starts on."""
        line = self.line
        raw: list[str] = []  # the word as written (for a command: its name in a message)
        value: list[str] = []  # after quote removal and expansion (of an assignment: its value)
        name: str | None = None
        plain = True  # so far only unquoted characters a NAME may hold
        tilde = False  # an unquoted ~ here would be expanded (after NAME= or an unquoted :)
        while True:
            self.skip_continuations()
            c = self.peek()
            if c == "" or c in _BLANK or c in "\n;" or c in _OPERATORS:
                break
            if name is None and plain:
                if c == "=" and raw and _NAME.fullmatch("".join(raw)):
                    name = "".join(raw)
                    raw.append(c)
                    value = []
                    tilde = True
                    self.advance()
                    continue
                plain = c.isascii() and (c.isalnum() or c == "_")
            if c == "\0":
                raise self.fail("a NUL byte")
            if c == "~" and tilde:
                raise self.fail("tilde expansion (~)")
            tilde = name is not None and c == ":"
            if c == "\\":
                raw.append(c + self.peek(1))
                value.append(self.peek(1))
                self.advance(2 if self.peek(1) else 1)
            elif c == "'":
                close = self.text.find("'", self.pos + 1)
                if close == -1:
                    raise self.fail("a single quote never closed: a syntax error to sh")
                raw.append(self.text[self.pos : close + 1])
                value.append(self.text[self.pos + 1 : close])
                self.advance(close + 1 - self.pos)
            elif c == '"':
                begin = self.pos
                value.append(self.double_quoted())
                raw.append(self.text[begin : self.pos])
            elif c == "$":
                begin = self.pos
                value.append(self.dollar())
                raw.append(self.text[begin : self.pos])
            elif c == "`":
                raise self.fail("a command substitution (`...`)")
            else:
                raw.append(c)
                value.append(c)
                self.advance()
        return name, "".join(value) if name is not None else "".join(raw), line

    def double_quoted(self) -> str:
        self.advance()  # the opening quote
        out: list[str] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.fail("a double quote never closed: a syntax error to sh")
            if c == '"':
                self.advance()
                return "".join(out)
            if c == "\\":
                nxt = self.peek(1)
                if nxt == "\n":
                    self.advance(2)
                elif nxt and nxt in _DQ_ESCAPES:
                    out.append(nxt)
                    self.advance(2)
                else:
                    out.append(c)
                    self.advance()
            elif c == "$":
                out.append(self.dollar())
            elif c == "`":
                raise self.fail("a command substitution (`...`)")
            elif c == "\0":
                raise self.fail("a NUL byte")
            else:
                out.append(c)
                self.advance()

    def dollar(self) -> str:
        """A `$` and what follows it: a variable's value, or the `$` itself where sh keeps it."""
        nxt = self.peek(1)
        if nxt == "{":
            m = _NAME.match(self.text, self.pos + 2)
            if m is None or self.peek(m.end() - self.pos) != "}":
                raise self.fail("a parameter expansion other than ${NAME}")
            name = m.group(0)
            length = m.end() + 1 - self.pos
        elif nxt == "(":
            raise self.fail("a command substitution or arithmetic ($(...))")
        else:
            m = _NAME.match(self.text, self.pos + 1)
            if m is None:
                if nxt and (nxt.isdigit() or nxt in "@*#?-$!"):
                    raise self.fail(f"a special parameter (${nxt})")
                self.advance()
                return "$"  # a lone $ is taken literally
            name = m.group(0)
            length = m.end() - self.pos
        if name not in self.env:
            raise self.fail(f"${name}, which this file sets nowhere before: it would come from the shell's environment")
        self.advance(length)
        return self.env[name]


def source(text: str, path: str, env: MutableMapping[str, str], origin: MutableMapping[str, str]) -> None:
    """Apply the assignments of a file sourced by sh to `env` (name -> value), recording in
    `origin` where each was last set; raise CannotTell where only running sh could tell."""
    _Reader(text, path, env, origin).run()
