"""Redaction of secrets and personal data in everything secpolicy writes (audit log, alerts,
recordings, the event store, sinks and reports); rules still see the raw event in memory."""

from __future__ import annotations

import re

from secpolicy.redaction.detectors import MASK, Detector, builtin_detectors, luhn_ok, mask_pan
from secpolicy.redaction.redactor import ACTIONS, FIELD_CLASSES, RedactionSettings, Redactor

__all__ = [
    "ACTIONS",
    "FIELD_CLASSES",
    "MASK",
    "Detector",
    "RedactionSettings",
    "Redactor",
    "builtin_detectors",
    "compile_pattern",
    "luhn_ok",
    "mask_pan",
]


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A user's detector pattern; ValueError says why it is refused."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(str(exc)) from None
