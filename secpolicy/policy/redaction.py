"""Loads a redaction policy file (YAML, validated against `redaction.schema.json`) into the
settings `secpolicy.redaction.Redactor` applies; errors are located like policy errors."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from secpolicy.dsl.regex import Regex, RegexError, compile_regex
from secpolicy.errors import InputError
from secpolicy.policy.loader import read_text_file
from secpolicy.policy.yamlpos import load_yaml
from secpolicy.redaction import MASK, RedactionSettings
from secpolicy.redaction.detectors import TextDetector
from secpolicy.resources import load_schema

__all__ = ["PatternDetector", "load_redaction", "read_key_file"]


@dataclass(frozen=True)
class PatternDetector:
    """A policy's own pattern, matched by the policy language's linear-time engine (RE2):
    every match, or its first group when it has groups, is replaced."""

    name: str
    regex: Regex
    replacement: str = MASK

    def spans(self, text: str, lowered: str) -> list[tuple[int, int, str]]:
        group = 1 if self.regex.groups else 0
        return [(a, b, self.replacement) for a, b in self.regex.spans(text, group)]

_MIN_KEY = 32


def read_key_file(path: str) -> bytes:
    """The pseudonym key: at least 32 bytes, a regular file only its owner can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"cannot read the pseudonym key: {exc.strerror}", path) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError("the pseudonym key is not a regular file", path)
        if st.st_mode & 0o077:
            raise InputError(f"the pseudonym key is readable by others (mode {st.st_mode & 0o777:04o}); "
                             "chmod 600 it", path)
        key = f.read(4096)
    if len(key) < _MIN_KEY:
        raise InputError(f"the pseudonym key holds {len(key)} bytes; it needs at least {_MIN_KEY}", path)
    return key


def load_redaction(path: Path, default_key: tuple[bytes, str] | None = None) -> RedactionSettings:
    """The redaction policy in `path`. Its pseudonym key is its own `pseudonym_key_file`, else
    `default_key` (the key and where it lives, e.g. beside an audit log), else a key per run."""
    shown = str(path)
    text, _ = read_text_file(path)
    doc = load_yaml(text, shown)
    data: Any = {} if doc.data is None else doc.data
    validator = jsonschema.Draft202012Validator(load_schema("redaction"))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            if extra:
                raise doc.error(where + (extra[0],), f"unknown field {extra[0]!r}", key=True)
        raise doc.error(where, f"invalid redaction policy: {err.message}")
    detectors = data.get("detectors") or {}
    custom: list[TextDetector] = []
    for i, p in enumerate(data.get("patterns") or []):
        try:
            rx = compile_regex(p["regex"], capture=True)
        except RegexError as exc:
            raise doc.error(("patterns", i, "regex"), exc.message) from None
        custom.append(PatternDetector(p["name"], rx, p.get("replace", MASK)))
    key, key_source = default_key if default_key is not None else (None, None)
    if data.get("pseudonym_key_file"):
        key_path = data["pseudonym_key_file"]
        if not os.path.isabs(key_path):
            key_path = os.path.join(os.path.dirname(os.path.abspath(shown)), key_path)
        key, key_source = read_key_file(key_path), "file"
    return RedactionSettings(
        enabled=data.get("enabled", True),
        credentials=detectors.get("credentials", True),
        payment_cards=detectors.get("payment_cards", True),
        custom=tuple(custom),
        fields=dict(data.get("fields") or {}),
        key=key,
        source=shown,
        key_source=key_source,
    )
