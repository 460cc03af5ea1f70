"""Redaction of secrets and personal data in everything secpolicy writes (audit log, alerts,
recordings, the event store, sinks and reports); rules still see the raw event in memory."""

from __future__ import annotations

from secpolicy.redaction.detectors import (
    MASK,
    Detector,
    TextDetector,
    builtin_detectors,
    luhn_ok,
    mask_pan,
)
from secpolicy.redaction.redactor import ACTIONS, FIELD_CLASSES, RedactionSettings, Redactor

__all__ = [
    "ACTIONS",
    "FIELD_CLASSES",
    "MASK",
    "Detector",
    "RedactionSettings",
    "Redactor",
    "TextDetector",
    "builtin_detectors",
    "luhn_ok",
    "mask_pan",
]
