"""Checkpoints of the audit log: the RFC 6962 tree head of every entry so far, optionally
signed with Ed25519, in a one-line JSON form that can be copied off the host."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.auditlog.canonical import canonical, loads
from secpolicy.errors import InputError, IntegrityError, LocatedError

if TYPE_CHECKING:  # cryptography is imported where keys are used: `log verify` starts faster without it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "Checkpoint",
    "evolve_key",
    "generate_signing_key",
    "key_id",
    "load_checkpoints",
    "load_private_key",
    "load_public_key",
    "open_regular",
    "read_regular",
    "read_small_file",
]

_SIGNING_CONTEXT = b"secpolicy.auditlog.checkpoint.v1\n"
_EVOLVE_CONTEXT = b"secpolicy.auditlog.evolve.v1\x00"
_KEYID_CONTEXT = b"secpolicy.auditlog.keyid.v1\x00"


def evolve_key(key: bytes) -> bytes:
    """key_{i+1} = H(key_i): one-way, so the key of a later epoch does not give earlier ones."""
    return hashlib.sha256(_EVOLVE_CONTEXT + key).digest()


def key_id(initial_key: bytes) -> str:
    """A public name for the initial key, so a verifier can tell a wrong key from tampering."""
    return hashlib.sha256(_KEYID_CONTEXT + initial_key).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """Tree head of the first `tree_size` entries of log `log_id` at time `ts`."""

    log_id: str
    tree_size: int
    root: str
    ts: str
    signature: str | None = None
    public_key: str | None = None

    def signed_bytes(self) -> bytes:
        return _SIGNING_CONTEXT + canonical(
            {"log_id": self.log_id, "root": self.root, "tree_size": self.tree_size, "ts": self.ts}
        )

    def sign(self, key: Ed25519PrivateKey) -> Checkpoint:
        from cryptography.hazmat.primitives import serialization

        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return Checkpoint(
            self.log_id, self.tree_size, self.root, self.ts,
            signature=key.sign(self.signed_bytes()).hex(), public_key=pub.hex(),
        )

    def verify_signature(self, key: Ed25519PublicKey) -> None:
        """Raises IntegrityError unless the checkpoint carries a valid signature by `key`."""
        from cryptography.exceptions import InvalidSignature

        if not self.signature:
            raise IntegrityError(f"checkpoint at tree size {self.tree_size} is not signed")
        try:
            key.verify(bytes.fromhex(self.signature), self.signed_bytes())
        except (InvalidSignature, ValueError) as exc:
            raise IntegrityError(
                f"checkpoint at tree size {self.tree_size} ({self.ts}) has an invalid signature"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "log_id": self.log_id, "tree_size": self.tree_size, "root": self.root, "ts": self.ts,
        }
        if self.signature:
            data["signature"] = self.signature
            data["public_key"] = self.public_key
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise InputError("checkpoint is not a JSON object")
        # Types as a writer writes them: a size of 5.7, "5" or Infinity, a signature that is a
        # number, is no checkpoint (and must not crash whoever checks it).
        for name, typ in _CHECKPOINT_FIELDS.items():
            if name not in data:
                raise InputError(f"checkpoint lacks the field {name!r}")
            if not isinstance(data[name], typ) or isinstance(data[name], bool):
                raise InputError(f"checkpoint field {name!r} is mistyped")
        for name in ("signature", "public_key"):
            if not isinstance(data.get(name), str | None):
                raise InputError(f"checkpoint field {name!r} is mistyped")
        cp = cls(log_id=data["log_id"], tree_size=data["tree_size"], root=data["root"], ts=data["ts"],
                 signature=data.get("signature"), public_key=data.get("public_key"))
        if cp.tree_size < 0 or len(cp.root) != 64:
            raise InputError("checkpoint has a negative size or a root that is not 32 bytes of hex")
        return cp


_CHECKPOINT_FIELDS: dict[str, type] = {"log_id": str, "tree_size": int, "root": str, "ts": str}


def load_checkpoints(path: str | Path) -> list[Checkpoint]:
    """Checkpoints from a JSON-lines file (one per line) or a single JSON object."""
    try:
        text = read_regular(path, "checkpoint file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read checkpoint file: {exc}", str(path)) from exc
    out: list[Checkpoint] = []
    for lineno, line in _lines(text):
        try:
            out.append(Checkpoint.from_dict(loads(line)))
        except json.JSONDecodeError as exc:
            raise LocatedError(f"not JSON: {exc.msg}", str(path), lineno, exc.colno, line) from exc
        except InputError as exc:
            raise LocatedError(exc.message, str(path), lineno, None, line) from exc
    if not out:
        raise InputError("checkpoint file holds no checkpoint", str(path))
    return out


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield i, line


# Key files hold 64 hex digits, PEM keys a few hundred bytes: anything longer is not a key.
MAX_KEY_FILE_BYTES = 16 * 1024


def open_regular(path: str | Path, what: str, flags: int = os.O_RDONLY, *, follow: bool = True,
                 verb: str = "read") -> int:
    """A descriptor of the regular file `path`, opened without blocking (and, unless `follow`,
    without following a symbolic link): a FIFO, a device such as /dev/zero or a directory in
    its place is refused (InputError naming it) rather than waited on or read without end."""
    nofollow = 0 if follow else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | nofollow, 0o600)
    except OSError as exc:
        # A FIFO opened for writing without a reader is ENXIO, a symbolic link refused ELOOP:
        # both are "not a regular file", which says more than the errno does.
        if exc.errno in (errno.ENXIO, errno.ELOOP, errno.EISDIR) and _not_regular(path):
            raise InputError(f"{what} is not a regular file", str(path)) from None
        raise InputError(f"cannot {verb} {what}: {exc.strerror}", str(path)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{what} is not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _not_regular(path: str | Path) -> bool:
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: str | Path, what: str, limit: int | None = None, *, follow: bool = True,
                 too_long: str = "not a key file") -> bytes:
    """The bytes of the regular file `path` (see `open_regular`); with `limit`, a file longer
    than that is refused (InputError, saying `too_long`) rather than read."""
    with os.fdopen(open_regular(path, what, follow=follow), "rb") as f:
        try:
            data = f.read() if limit is None else f.read(limit + 1)
        except OSError as exc:
            raise InputError(f"cannot read {what}: {exc.strerror}", str(path)) from None
    if limit is not None and len(data) > limit:
        raise InputError(f"{what} holds more than {limit} bytes: {too_long}", str(path))
    return data


def read_small_file(path: str | Path, what: str, limit: int = MAX_KEY_FILE_BYTES) -> bytes:
    """The bytes of a key (or witness) file, opened without blocking: a FIFO, a device such
    as /dev/zero or a directory in its place is refused (InputError), and so is a file longer
    than `limit`, rather than waited on or read without end."""
    return read_regular(path, what, limit)


def generate_signing_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(read_small_file(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot load Ed25519 private key: {exc}", str(path)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("not an Ed25519 private key", str(path))
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(read_small_file(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot load Ed25519 public key: {exc}", str(path)) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError("not an Ed25519 public key", str(path))
    return key
