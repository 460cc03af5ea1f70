"""The one exception tree of secpolicy. Library code raises these; only `secpolicy.cli`
prints them and turns them into exit codes (documented in README.md)."""

from __future__ import annotations

import unicodedata

__all__ = [
    "EXIT_INTEGRITY",
    "EXIT_INVALID_INPUT",
    "EXIT_NONCOMPLIANT",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_WAIVED_ONLY",
    "EvaluationError",
    "InputError",
    "IntegrityError",
    "LocatedError",
    "NotApplicable",
    "RuntimeFailure",
    "SecpolicyError",
    "format_location",
]

EXIT_OK = 0
EXIT_NONCOMPLIANT = 1  # failing findings, FIM changes, alerts: the answer is "no"
EXIT_INVALID_INPUT = 2  # policy, waiver, config, options or data files that are malformed
EXIT_RUNTIME = 3  # something prevented the work from being done at all
EXIT_WAIVED_ONLY = 4  # compliant, but only because failures are waived
EXIT_INTEGRITY = 5  # a baseline or audit log failed its integrity check


class SecpolicyError(Exception):
    """Base of every error secpolicy raises on purpose."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def render(self) -> str:
        return self.message


class InputError(SecpolicyError):
    """Invalid input: the user must change a file or an option."""

    exit_code = EXIT_INVALID_INPUT

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def render(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


_EXCERPT = 160  # characters of a source line shown under an error


def _shown_char(c: str) -> str:
    # A control character (ESC, CR, a NUL the YAML reader refused) is never sent to the
    # terminal: it would move the cursor or restyle the screen. One character stands for one.
    return "\ufffd" if unicodedata.category(c) == "Cc" else c


def _cells(text: str) -> int:
    """Terminal cells `text` takes: 2 for a wide (CJK) character, 0 for a combining mark or
    an invisible format character, 1 otherwise, so the caret stands under its character."""
    n = 0
    for c in text:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        n += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return n


def format_location(
    path: str, line: int | None, column: int | None, message: str, source_line: str | None
) -> str:
    """`path:line:col: message`, then the offending line with a caret under the column."""
    where = path
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    text = f"{where}: {message}"
    if source_line is not None:
        shown = source_line.rstrip("\r\n").expandtabs(1)  # one character stays one, as below
        if len(shown) > _EXCERPT:
            # A hostile one-line file must not turn one error into megabytes of output (nor
            # be looked at character by character: only the excerpt is).
            start = max(0, min((column or 1) - 1 - _EXCERPT // 2, len(shown) - _EXCERPT))
            shown = ("..." if start else "") + shown[start : start + _EXCERPT] + "..."
            column = None if column is None else column - start + (3 if start else 0)
        shown = "".join(map(_shown_char, shown))
        text += f"\n    {shown}"
        if column is not None and column >= 1:
            text += "\n    " + " " * _cells(shown[: column - 1]) + "^"
    return text


class LocatedError(InputError):
    """An input error that knows the file, line and column it comes from."""

    def __init__(
        self,
        message: str,
        path: str,
        line: int | None = None,
        column: int | None = None,
        source_line: str | None = None,
    ) -> None:
        super().__init__(message, path)
        self.line = line
        self.column = column
        self.source_line = source_line

    def render(self) -> str:
        return format_location(self.path or "<input>", self.line, self.column, self.message, self.source_line)


class RuntimeFailure(SecpolicyError):
    """The work could not be done (missing privileges, a dependency, the kernel refused)."""

    exit_code = EXIT_RUNTIME


class IntegrityError(SecpolicyError):
    """A baseline database or audit log does not verify: it was modified, truncated or swapped."""

    exit_code = EXIT_INTEGRITY


class EvaluationError(SecpolicyError):
    """A check could not be evaluated; the engine turns it into an ERROR finding."""

    exit_code = EXIT_RUNTIME


class NotApplicable(EvaluationError):
    """A fact does not exist in this scan (e.g. a live-only fact under `--root`)."""
