"""Loads a redaction policy file (YAML, validated against `redaction.schema.json`) into the
settings `secpolicy.redaction.Redactor` applies; errors are located like policy errors."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from secpolicy.errors import InputError
from secpolicy.policy.loader import read_text_file
from secpolicy.policy.yamlpos import load_yaml
from secpolicy.redaction import MASK, Detector, RedactionSettings, compile_pattern
from secpolicy.redaction.detectors import TextDetector
from secpolicy.resources import load_schema

__all__ = ["load_redaction", "read_key_file"]

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


def _constant(text: str) -> Callable[[str], str]:
    return lambda _secret: text


def load_redaction(path: Path) -> RedactionSettings:
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
            rx = compile_pattern(p["regex"])
        except ValueError as exc:
            raise doc.error(("patterns", i, "regex"), f"invalid regular expression: {exc}") from None
        custom.append(Detector(p["name"], rx, 1 if rx.groups else 0, replace=_constant(p.get("replace", MASK))))
    key = None
    if data.get("pseudonym_key_file"):
        key_path = data["pseudonym_key_file"]
        if not os.path.isabs(key_path):
            key_path = os.path.join(os.path.dirname(os.path.abspath(shown)), key_path)
        key = read_key_file(key_path)
    return RedactionSettings(
        enabled=data.get("enabled", True),
        credentials=detectors.get("credentials", True),
        payment_cards=detectors.get("payment_cards", True),
        custom=tuple(custom),
        fields=dict(data.get("fields") or {}),
        key=key,
        source=shown,
    )
