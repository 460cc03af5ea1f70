"""Content changes of watched text files (Wazuh's report_changes): the redacted copy a baseline
keeps, and a bounded unified diff between it and what a check reads now."""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from secpolicy.redaction.detectors import PEM_BEGIN, PEM_END, TextDetector, builtin_detectors

__all__ = [
    "ContentDiff",
    "Redactor",
    "is_text",
    "pack_copy",
    "redact_diff",
    "unified_diff",
    "unpack_copy",
]

@dataclass(frozen=True)
class ContentDiff:
    """A unified diff cut to `max_lines` lines; `omitted` counts the lines not shown."""

    text: str
    omitted: int


def is_text(data: bytes) -> bool:
    """Text as far as diffs go: UTF-8 without NUL bytes."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Redactor:
    """Masks what the detectors of `secpolicy.redaction` find, line by line. With a key, each
    mask carries a keyed fingerprint of the value (`[REDACTED:1a2b3c4d]`), so a diff still
    shows that a secret changed without showing it; without one, only `[REDACTED]`."""

    def __init__(self, key: bytes | None, detectors: Sequence[TextDetector] | None = None) -> None:
        self.key = key
        self.detectors = tuple(detectors) if detectors is not None else builtin_detectors()

    def mask(self, value: str) -> str:
        if self.key is None:
            return "[REDACTED]"
        tag = hmac.new(self.key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:8]
        return f"[REDACTED:{tag}]"

    def line(self, text: str) -> str:
        lowered = text.lower()
        spans = sorted(s for d in self.detectors for s in d.spans(text, lowered))
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end, _ in spans:
            if start < pos:  # overlapping finds: the earlier (wider) one already covers it
                continue
            value = text[start:end]
            quote = value[0] if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0] else ""
            bare = value[1:-1] if quote else value
            if not bare or bare.startswith("[REDACTED"):
                continue
            out += [text[pos:start], quote, self.mask(bare), quote]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def text(self, data: bytes) -> str:
        """The redacted text of UTF-8 `data` (check `is_text` first). Private key blocks keep
        their BEGIN and END lines; every line between is masked."""
        out = []
        in_key = False
        for line in data.decode("utf-8").splitlines(keepends=True):
            body = line.rstrip("\r\n")
            end = line[len(body):]
            if in_key:
                if PEM_END.search(body):
                    in_key = False
                    out.append(body + end)
                else:
                    out.append(self.mask(body) + end)
                continue
            if PEM_BEGIN.search(body) and not PEM_END.search(body):
                in_key = True
                out.append(body + end)
                continue
            out.append(self.line(body) + end)
        return "".join(out)


def pack_copy(text: str) -> bytes:
    """The stored form of a redacted copy."""
    return zlib.compress(text.encode("utf-8"), 6)


def unpack_copy(blob: bytes) -> str:
    return zlib.decompress(blob).decode("utf-8")


def unified_diff(old: str, new: str, path: str, max_lines: int) -> ContentDiff:
    """`diff -u` of two redacted copies with three lines of context, at most `max_lines`
    lines (headers included)."""
    import difflib  # only when something changed

    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"{path} (baseline)", f"{path} (now)",
                                 lineterm="", n=3)
    shown: list[str] = []
    omitted = 0
    for line in lines:
        if len(shown) < max_lines:
            shown.append(line)
        else:
            omitted += 1
    return ContentDiff("\n".join(shown), omitted)


_HEADERS = ("--- ", "+++ ", "@@ ")


def redact_diff(diff: str, redact: Callable[[str], str]) -> str:
    """`redact` (an output's redaction policy) applied to each line of a unified diff without
    its `-`/`+`/` ` prefix, headers whole: the prefix is not part of the file, and a removed
    `db_password = [REDACTED:..]` must not read as an option `-db_password` whose value is `=`."""
    out = []
    for line in diff.split("\n"):
        if line.startswith(_HEADERS) or not line:
            out.append(redact(line) if line else line)
        else:
            out.append(line[0] + redact(line[1:]))
    return "\n".join(out)

