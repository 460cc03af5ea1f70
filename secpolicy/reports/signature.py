"""Detached Ed25519 signatures of rendered reports (`REPORT.sig`, a small JSON document): the
signature covers the report's SHA-256, its size, the SHA-256 of the results it renders and
the signing time; verification recomputes the report's hash and checks the signature."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secpolicy.errors import InputError, IntegrityError, LocatedError
from secpolicy.resultsfile import parse_json

__all__ = ["SIGNATURE_FORMAT", "Verified", "public_key_id", "sign_report", "verify_report"]

SIGNATURE_FORMAT = "secpolicy-report-signature/1"
_SIGNED_FIELDS = ("format", "algorithm", "file", "size", "sha256", "results_sha256", "public_key_sha256", "signed_at")


def public_key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _message(fields: Mapping[str, Any]) -> bytes:
    # Canonical JSON of every signed field: nothing in the file can change unnoticed.
    return json.dumps({k: fields[k] for k in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def sign_report(data: bytes, name: str, results_sha256: str | None, key: Ed25519PrivateKey) -> bytes:
    """The signature document for the report bytes `data` (file name `name`)."""
    fields: dict[str, Any] = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "file": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "results_sha256": results_sha256,
        "public_key_sha256": public_key_id(key.public_key()),
        "signed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    fields["signature"] = base64.b64encode(key.sign(_message(fields))).decode("ascii")
    return (json.dumps(fields, indent=2) + "\n").encode()


@dataclass(frozen=True)
class Verified:
    sha256: str
    results_sha256: str | None
    public_key_sha256: str
    signed_at: str


def _fields(sig: bytes, where: str) -> dict[str, Any]:
    try:
        # The hardened reader: deep nesting or a huge number is a located exit 2, not a crash.
        doc = parse_json(sig, where)
    except LocatedError as e:
        raise LocatedError(f"not a secpolicy report signature: {e.message}", where, e.line, e.column) from None
    except InputError as e:
        raise InputError(f"not a secpolicy report signature: {e.message}", where) from None
    if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT:
        raise InputError(f"not a secpolicy report signature (format {SIGNATURE_FORMAT} expected)", where)
    missing = [k for k in (*_SIGNED_FIELDS, "signature") if k not in doc]
    if missing:
        raise InputError(f"report signature lacks {', '.join(missing)}", where)
    if doc["algorithm"] != "ed25519":
        raise InputError(f"unsupported signature algorithm {doc['algorithm']!r}", where)
    return doc


def verify_report(data: bytes, sig: bytes, key: Ed25519PublicKey, where: str) -> Verified:
    """IntegrityError (exit 5) when the report is not the one signed, or the signature was
    not made by `key`; InputError (exit 2) for a malformed signature file."""
    doc = _fields(sig, where)
    if doc["public_key_sha256"] != public_key_id(key):
        raise IntegrityError(
            f"{where}: signed by key sha256:{str(doc['public_key_sha256'])[:16]}..., "
            f"not by the given key sha256:{public_key_id(key)[:16]}..."
        )
    try:
        key.verify(base64.b64decode(doc["signature"], validate=True), _message(doc))
    except (InvalidSignature, ValueError, TypeError):  # TypeError: a signature that is not a string
        raise IntegrityError(f"{where}: the signature does not verify: the signature file was altered") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != doc["sha256"] or len(data) != doc["size"]:
        raise IntegrityError(
            f"the report does not match its signature: SHA-256 {actual}, signed {doc['sha256']} "
            f"({len(data)} bytes, signed {doc['size']})"
        )
    return Verified(actual, doc["results_sha256"], doc["public_key_sha256"], doc["signed_at"])
