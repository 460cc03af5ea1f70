"""FIM attribute vocabulary: AIDE-compatible attribute names, named groups (R, L, >, E, X)
and the `R+b-m` expression syntax that turns a rule's `attrs` into a frozen attribute set."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from secpolicy.errors import InputError

__all__ = [
    "ATTRIBUTES",
    "ATTR_ORDER",
    "BUILTIN_GROUPS",
    "FLAG_ATTRS",
    "HASH_ATTRS",
    "XATTR_ATTRS",
    "resolve_attrs",
]

# name -> what it covers; names follow AIDE where AIDE has one.
ATTRIBUTES: dict[str, str] = {
    "ftype": "file type",
    # Compared wherever ftype is too (a device is told by its type and its number), so the
    # groups, and the configuration digest of every baseline made with them, stay as they were.
    "rdev": "device number (major:minor) of a character or block device",
    "p": "permissions (mode bits, including setuid/setgid/sticky)",
    "i": "inode number",
    "n": "number of hard links",
    "u": "owner (uid)",
    "g": "group (gid)",
    "s": "size",
    "S": "growing size: the size may only grow (append-only files)",
    "b": "block count",
    "m": "modification time",
    "c": "inode change time",
    "l": "symbolic link target",
    "sha256": "SHA-256 of the content",
    "blake3": "BLAKE3 of the content",
    "xattrs": "extended attributes other than ACLs, capabilities and SELinux labels",
    "acl": "POSIX ACLs (system.posix_acl_access / system.posix_acl_default)",
    "caps": "file capabilities (security.capability)",
    "selinux": "SELinux label (security.selinux)",
    "e2fsattrs": "inode flags set with chattr (immutable, append-only, ...; FS_IOC_GETFLAGS)",
}

HASH_ATTRS = frozenset({"sha256", "blake3"})
XATTR_ATTRS = frozenset({"xattrs", "acl", "caps", "selinux"})
FLAG_ATTRS = frozenset({"e2fsattrs"})

# Stable order for reports: the order AIDE prints its attributes in.
ATTR_ORDER: tuple[str, ...] = (
    "ftype", "rdev", "l", "s", "S", "b", "p", "u", "g", "i", "n", "m", "c",
    "acl", "xattrs", "selinux", "e2fsattrs", "caps", "sha256", "blake3",
)

# `hash` stands for the configuration's default content hash (sha256 unless set).
BUILTIN_GROUPS: dict[str, tuple[str, ...]] = {
    # As AIDE's X: e2fsattrs (chattr flags) included.
    "X": ("acl", "xattrs", "selinux", "e2fsattrs", "caps"),
    "R": ("p", "ftype", "i", "l", "n", "u", "g", "s", "m", "c", "hash", "X"),
    "L": ("p", "ftype", "i", "l", "n", "u", "g", "X"),
    # Growing log: size may only grow and the old content must stay a prefix of the new.
    ">": ("p", "ftype", "l", "u", "g", "i", "n", "S", "hash", "X"),
    "E": (),
    "H": ("hash",),
}

_TOKEN = re.compile(r"\s*([+-]?)\s*([A-Za-z_][A-Za-z0-9_]*|>)\s*")


def _split_expression(text: str) -> list[tuple[str, str]]:
    """`R+b-m` -> [('+', 'R'), ('+', 'b'), ('-', 'm')]."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InputError(f"invalid attribute expression {text!r} at character {pos + 1}")
        sign = m.group(1) or "+"
        if not out and m.group(1) == "-":
            raise InputError(f"attribute expression {text!r} cannot start with '-'")
        out.append((sign, m.group(2)))
        pos = m.end()
    if not out:
        raise InputError("empty attribute expression")
    return out


def _expand(
    name: str,
    groups: Mapping[str, Sequence[str] | str],
    default_hash: str,
    seen: tuple[str, ...],
) -> set[str]:
    if name == "hash":
        return {default_hash}
    if name in ATTRIBUTES:
        return {name}
    if name in seen:
        raise InputError(f"attribute group {name!r} refers to itself ({' -> '.join(seen + (name,))})")
    if name in groups:
        return _resolve(groups[name], groups, default_hash, seen + (name,))
    if name in BUILTIN_GROUPS:
        out: set[str] = set()
        for member in BUILTIN_GROUPS[name]:
            out |= _expand(member, groups, default_hash, seen + (name,))
        return out
    known = sorted(set(ATTRIBUTES) | set(BUILTIN_GROUPS) | set(groups))
    raise InputError(f"unknown attribute or group {name!r} (known: {', '.join(known)})")


def _resolve(
    spec: Sequence[str] | str,
    groups: Mapping[str, Sequence[str] | str],
    default_hash: str,
    seen: tuple[str, ...],
) -> set[str]:
    items: list[tuple[str, str]] = []
    if isinstance(spec, str):
        items = _split_expression(spec)
    else:
        for part in spec:
            items.extend(_split_expression(part))
    result: set[str] = set()
    for sign, name in items:
        members = _expand(name, groups, default_hash, seen)
        if sign == "+":
            result |= members
        else:
            result -= members
    return result


def resolve_attrs(
    spec: Sequence[str] | str,
    groups: Mapping[str, Sequence[str] | str] | None = None,
    default_hash: str = "sha256",
    growing: bool = False,
) -> frozenset[str]:
    """Resolve an attribute expression or list into concrete attribute names.

    A rule may name one content hash only; `growing` swaps `s` for `S` (append-only)."""
    attrs = _resolve(spec, groups or {}, default_hash, ())
    if growing:
        attrs.discard("s")
        attrs.add("S")
    if "S" in attrs:
        attrs.discard("s")  # S is the weaker, growing form of s
    hashes = attrs & HASH_ATTRS
    if len(hashes) > 1:
        raise InputError(f"a rule may use one content hash, not {' and '.join(sorted(hashes))}")
    return frozenset(attrs)
