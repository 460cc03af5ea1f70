"""Content changes of watched text files (Wazuh's report_changes): the redacted copy a baseline
keeps, and a bounded unified diff between it and what a check reads now."""

from __future__ import annotations

import hashlib
import hmac
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ContentDiff", "Redactor", "is_text", "pack_copy", "unified_diff", "unpack_copy"]

# Keys whose value is a secret: the key must END with one of these words, so settings about
# secrets (`PasswordAuthentication`, `PermitEmptyPasswords`) keep their values visible.
# Matching starts only at the start of a key (the lookbehinds below), so the lazy prefix
# keeps the scan linear in the line's length.
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|pass|pwd|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|credentials?|psk|bindpw|rootpw|masterauth)"
)
_QUOTED_OR_BARE = r"(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'#;,]+)"
# `key = value`, `key: value`, `"key": "value"`, `export KEY=value`
_PAIR = re.compile(r"(?<![A-Za-z0-9_.-])[\"']?" + _SECRET_KEY + r"[\"']?(?![A-Za-z0-9_])\s*[:=]\s*" + _QUOTED_OR_BARE,
                   re.IGNORECASE)
# `requirepass value`, `rootpw value` (space-separated configuration files)
_SPACED = re.compile(r"^\s*" + _SECRET_KEY + r"(?![A-Za-z0-9_=:])[ \t]+(?![=:])" + _QUOTED_OR_BARE, re.IGNORECASE)
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]{0,30}://[^\s/:@]{0,256}:([^\s/@]{1,256})@", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?:authorization|x-api-key|x-auth-token)\s*[:=]\s*(?:(?:basic|bearer|token|digest)\s+)?"
                          r"([^\s\"']+)", re.IGNORECASE)
_TOKEN = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b"  # GitHub tokens
    r"|\bglpat-[A-Za-z0-9_-]{20,64}\b"  # GitLab tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,255}"  # Slack tokens
    r"|\bsk_live_[A-Za-z0-9]{16,255}\b"  # Stripe secret keys
    r"|\bAIza[0-9A-Za-z_-]{35}\b"  # Google API keys
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
    r"|\$(?:1|2[abxy]?|5|6|7|y|gy|apr1|sha1|md5)\$[^\s:\"']{8,}"  # crypt(3) password hashes
)
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
# Values that are settings, not secrets.
_NOT_SECRET = frozenset({"yes", "no", "true", "false", "on", "off", "none", "null", "prompt",
                         "required", "optional", "without-password", "prohibit-password"})


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
    """Masks values that look like credentials, line by line. With a key, each mask carries
    a keyed fingerprint of the value (`[REDACTED:1a2b3c4d]`), so a diff still shows that a
    secret changed without showing it; without one, only `[REDACTED]`."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    def mask(self, value: str) -> str:
        if self.key is None:
            return "[REDACTED]"
        tag = hmac.new(self.key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:8]
        return f"[REDACTED:{tag}]"

    def _group(self, group: int) -> Callable[[re.Match[str]], str]:
        def sub(m: re.Match[str]) -> str:
            value = m.group(group)
            bare = value.strip("\"'")
            if not bare or bare.lower() in _NOT_SECRET or bare.startswith("[REDACTED"):
                return m.group(0)
            quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[0] and len(value) > 1 else ""
            start, end = m.start(group) - m.start(0), m.end(group) - m.start(0)
            whole = m.group(0)
            return whole[:start] + quote + self.mask(bare) + quote + whole[end:]

        return sub

    def line(self, text: str) -> str:
        text = _PAIR.sub(self._group(1), text)
        text = _SPACED.sub(self._group(1), text)
        text = _URL_PASSWORD.sub(self._group(1), text)
        text = _AUTH_HEADER.sub(self._group(1), text)
        return _TOKEN.sub(lambda m: self.mask(m.group(0)), text)

    def text(self, data: bytes) -> str:
        """The redacted text of UTF-8 `data` (check `is_text` first). Private key blocks keep
        their BEGIN and END lines; every line between is masked."""
        out = []
        in_key = False
        for line in data.decode("utf-8").splitlines(keepends=True):
            body = line.rstrip("\r\n")
            end = line[len(body):]
            if in_key:
                if _PEM_END.search(body):
                    in_key = False
                    out.append(body + end)
                else:
                    out.append(self.mask(body) + end)
                continue
            if _PEM_BEGIN.search(body) and not _PEM_END.search(body):
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
