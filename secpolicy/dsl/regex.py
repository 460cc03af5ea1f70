"""The one regular-expression engine for untrusted patterns (policy `matches`, `has_line`,
`grep`, `first`, and anything else that takes a user's regex): RE2, linear in the input."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from secpolicy.dsl.limits import LIMITS
from secpolicy.errors import EvaluationError

__all__ = ["Regex", "RegexError", "compile_regex"]


class RegexError(EvaluationError):
    """A pattern RE2 cannot take, or one past a limit. At load the checker turns it into a
    located error; met during evaluation (a pattern built at run time) it makes an ERROR."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset  # character offset of the problem in the pattern, when known


def _options(capture: bool = False) -> Any:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print its own copy of every error on stderr
    opts.never_capture = not capture  # most callers only ask "is there a match"
    return opts


_OPTIONS = _options()
_CAPTURE_OPTIONS = _options(capture=True)
_COUNTED = re.compile(r"\{(\d+)(?:,(\d*))?\}")


@dataclass(frozen=True, eq=False)
class Regex:
    """A compiled pattern. Text is matched as UTF-8; bytes that were not valid UTF-8 in the
    file (decoded with surrogateescape) are matched as themselves and never crash a search."""

    pattern: str
    _rx: Any

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in `text` (anchor with `^`/`$`)."""
        return self._rx.search(text.encode("utf-8", "surrogateescape")) is not None

    def sub(self, replacement: str, text: str) -> str:
        """Every match replaced by `replacement` taken literally (no group references)."""
        repl = replacement.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\")
        out = self._rx.sub(repl, text.encode("utf-8", "surrogateescape"))
        return str(out.decode("utf-8", "surrogateescape"))

    @property
    def groups(self) -> int:
        """Capturing groups of a pattern compiled with `capture=True` (else 0)."""
        return int(self._rx.groups)

    def spans(self, text: str, group: int = 0) -> list[tuple[int, int]]:
        """(start, end) character offsets in `text` of `group` of every non-overlapping
        match (a pattern compiled with `capture=True` for a group other than 0); a group
        that took no part in a match is left out."""
        data = text.encode("utf-8", "surrogateescape")
        out: list[tuple[int, int]] = []
        ascii_only = len(data) == len(text)
        for m in self._rx.finditer(data):
            a, b = m.span(group)
            if a < 0 or a == b:
                continue
            if not ascii_only:  # RE2 reports byte offsets; the caller indexes characters
                a, b = (len(data[:i].decode("utf-8", "surrogateescape")) for i in (a, b))
            out.append((a, b))
        return out


def _repeat_too_large(pattern: str) -> tuple[int, int] | None:
    """(offset, count) of a counted repetition above the limit. RE2 rejects counts above 1000
    but reads a count too long for an int as literal text, which no author means."""
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if pattern.startswith("^]", i + 1) or pattern.startswith("]", i + 1):
                i += 2 if pattern[i + 1] == "]" else 3  # a leading ] is a member, not the end
                continue
        elif c == "{":
            m = _COUNTED.match(pattern, i)
            if m:
                for g in m.groups():
                    if g and (len(g) > 9 or int(g) > LIMITS.regex_repeat):
                        return i, int(g) if len(g) <= 30 else -1
                i = m.end()
                continue
        i += 1
    return None


@lru_cache(maxsize=2048)
def compile_regex(pattern: str, *, capture: bool = False) -> Regex:
    """Compile `pattern` (RE2 syntax) or raise RegexError saying what is wrong; `capture`
    keeps its groups (for `Regex.spans`), which costs matching speed."""
    if not isinstance(pattern, str):
        raise RegexError(f"a regular expression must be a string, not {type(pattern).__name__}")
    too_large = _repeat_too_large(pattern)
    if too_large is not None:
        offset, count = too_large
        shown = f"{count:,}" if count >= 0 else "a number with more than 30 digits"
        raise RegexError(
            f"repetition count {shown} is above the limit of {LIMITS.regex_repeat:,} (write \\{{ for a literal brace)",
            offset,
        )
    try:
        rx = re2.compile(pattern.encode("utf-8", "surrogateescape"), _CAPTURE_OPTIONS if capture else _OPTIONS)
    except re2.error as e:
        msg = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        hint = ""
        if "(?=" in pattern or "(?!" in pattern or "(?<" in pattern:
            hint = " (RE2 syntax: lookahead and lookbehind are not supported)"
        elif re.search(r"\\[1-9]", pattern):
            hint = " (RE2 syntax: backreferences are not supported)"
        raise RegexError(f"invalid regular expression: {msg}{hint}") from None
    if rx.programsize > LIMITS.regex_program:
        raise RegexError(
            f"regular expression too large: {rx.programsize:,} instructions compiled, "
            f"the limit is {LIMITS.regex_program:,}"
        )
    return Regex(pattern, rx)
