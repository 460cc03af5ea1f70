"""One baseline entry as stored: a packed record of stat fields, link target, content hash,
extended attributes and inode flags, plus the attribute-by-attribute comparison of two records."""

from __future__ import annotations

import datetime as _dt
import os
import stat
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HASH_IDS",
    "AttrChange",
    "Record",
    "compare",
    "display_path",
    "flags_text",
    "ftype_name",
    "pack",
    "stat_key",
    "unpack",
]

# mode, ino, nlink, uid, gid, size, blocks, mtime_ns, ctime_ns, flags, len(link), len(hash),
# len(xattrs), inode flags; then the link, hash and xattrs, and (F_CONTENT) the SHA-256 of
# the stored content copy. The first nine are what a `check` compares before re-reading.
_FIXED = struct.Struct("<IQQIIQQqqBHBII")
FIXED_SIZE = _FIXED.size
CONTENT_DIGEST_SIZE = 32

F_XATTRS = 1  # extended attributes were collected
F_NOHASH = 2  # the content could not be hashed when the record was made
F_FSFLAGS = 4  # inode flags were collected (the filesystem has them)
F_CONTENT = 8  # a copy of the content is stored (report_changes), its digest ends the record
F_NOFSFLAGS = 16  # inode flags were asked for: the filesystem has none
F_NOCOPY = 32  # a content copy was asked for: the file is not text or is too large
# The device number (st_rdev) of a character or block device ends the record (8 bytes, after
# any content digest). A flag rather than a new fixed field: records made before it are read
# as they are (no device number known, nothing compared) and the format stays 2.
F_RDEV = 64
_RDEV = struct.Struct("<Q")

Xattrs = tuple[tuple[str, bytes], ...]
# Packs the nine stat fields exactly as they start a record (`check`'s fast comparison).
_STAT = struct.Struct("<IQQIIQQqq")
STAT_PACK = _STAT.pack
STAT_SIZE = _STAT.size

# lsattr's letters in lsattr's order (e2fsprogs lib/e2p/pf.c), with the flag bits.
FS_FLAG_LETTERS: tuple[tuple[int, str], ...] = (
    (0x00000001, "s"), (0x00000002, "u"), (0x00000008, "S"), (0x00010000, "D"),
    (0x00000010, "i"), (0x00000020, "a"), (0x00000040, "d"), (0x00000080, "A"),
    (0x00000004, "c"), (0x00000800, "E"), (0x00004000, "j"), (0x00001000, "I"),
    (0x00008000, "t"), (0x00020000, "T"), (0x00080000, "e"), (0x00800000, "C"),
    (0x02000000, "x"), (0x40000000, "F"), (0x10000000, "N"), (0x20000000, "P"),
    (0x00100000, "V"), (0x00000400, "m"),
)
_KNOWN_FLAGS = sum(bit for bit, _ in FS_FLAG_LETTERS)

HASH_IDS = {"sha256": 1, "blake3": 2}
HASH_NAMES = {v: k for k, v in HASH_IDS.items()}
_HASH_PREFIX = {k: bytes([v]) for k, v in HASH_IDS.items()}

ACL_NAMES = frozenset({"system.posix_acl_access", "system.posix_acl_default"})
CAPS_NAME = "security.capability"
SELINUX_NAME = "security.selinux"


@dataclass(frozen=True)
class Record:
    mode: int
    ino: int
    nlink: int
    uid: int
    gid: int
    size: int
    blocks: int
    mtime_ns: int
    ctime_ns: int
    flags: int = 0
    link: bytes = b""
    hash_algo: str | None = None
    digest: bytes = b""
    xattrs: tuple[tuple[str, bytes], ...] = ()
    fsflags: int = 0
    content_digest: bytes = b""
    rdev: int | None = None  # device number of a character or block device, when recorded

    @property
    def has_xattrs(self) -> bool:
        return bool(self.flags & F_XATTRS)

    @property
    def has_fsflags(self) -> bool:
        return bool(self.flags & F_FSFLAGS)


@dataclass(frozen=True)
class AttrChange:
    """One attribute that differs, with display-ready old and new values."""

    name: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.name, "old": self.old, "new": self.new}


def stat_key(st: os.stat_result) -> tuple[int, ...]:
    """What must be equal for a `check` to trust the stored hash and extended attributes:
    writing content moves mtime and ctime, every metadata or xattr change moves ctime."""
    return (
        st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid,
        st.st_size, st.st_blocks, st.st_mtime_ns, st.st_ctime_ns,
    )


def _xattr_blob(xattrs: tuple[tuple[str, bytes], ...]) -> bytes:
    parts = []
    for name, value in xattrs:
        b = name.encode("utf-8", "surrogateescape")
        parts.append(struct.pack("<HI", len(b), len(value)) + b + value)
    return b"".join(parts)


def _xattr_parse(blob: bytes) -> tuple[tuple[str, bytes], ...]:
    out = []
    pos = 0
    while pos < len(blob):
        nlen, vlen = struct.unpack_from("<HI", blob, pos)
        pos += 6
        name = blob[pos : pos + nlen].decode("utf-8", "surrogateescape")
        pos += nlen
        out.append((name, blob[pos : pos + vlen]))
        pos += vlen
    return tuple(out)


def pack(
    st_fields: tuple[int, ...],
    flags: int,
    link: bytes,
    hash_algo: str | None,
    digest: bytes,
    xattrs: tuple[tuple[str, bytes], ...] | None,
    fsflags: int | None = None,
    content_digest: bytes = b"",
    rdev: int | None = None,
) -> bytes:
    """Pack a record. `st_fields` is `stat_key(st)`; `xattrs` and `fsflags` None mean not
    collected; `content_digest` is the SHA-256 of a stored content copy; `rdev` the device
    number of a character or block device."""
    if xattrs is not None:
        flags |= F_XATTRS
        xblob = _xattr_blob(xattrs) if xattrs else b""
    else:
        xblob = b""
    if fsflags is not None:
        flags |= F_FSFLAGS
    if content_digest:
        flags |= F_CONTENT
    tail = b""
    if rdev is not None:
        flags |= F_RDEV
        tail = _RDEV.pack(rdev)
    hbytes = _HASH_PREFIX[hash_algo] + digest if hash_algo and digest else b""
    head = _FIXED.pack(*st_fields, flags, len(link), len(hbytes), len(xblob), fsflags or 0)
    if link or xblob or content_digest or tail:
        return b"".join((head, link, hbytes, xblob, content_digest, tail))
    return head + hbytes  # most records: one concatenation, not five


def fixed_fields(rec: bytes) -> tuple[int, ...]:
    """The nine stat fields of a packed record, comparable with `stat_key`."""
    return _FIXED.unpack_from(rec)[:9]


def unpack(rec: bytes) -> Record:
    (mode, ino, nlink, uid, gid, size, blocks, mt, ct, flags, llen, hlen, xlen, fsflags) = _FIXED.unpack_from(rec)
    pos = FIXED_SIZE
    link = rec[pos : pos + llen]
    pos += llen
    hbytes = rec[pos : pos + hlen]
    pos += hlen
    xblob = rec[pos : pos + xlen]
    pos += xlen
    cdigest = b""
    if flags & F_CONTENT:
        cdigest = rec[pos : pos + CONTENT_DIGEST_SIZE]
        pos += CONTENT_DIGEST_SIZE
    rdev = _RDEV.unpack_from(rec, pos)[0] if flags & F_RDEV else None
    algo = HASH_NAMES.get(hbytes[0]) if hbytes else None
    return Record(
        mode, ino, nlink, uid, gid, size, blocks, mt, ct, flags, link,
        algo, hbytes[1:] if hbytes else b"", _xattr_parse(xblob), fsflags, cdigest, rdev,
    )


def flags_text(flags: int) -> str:
    """Inode flags as `lsattr` prints them (`----i---------e-------`); bits lsattr has no
    letter for follow as hex."""
    text = "".join(letter if flags & bit else "-" for bit, letter in FS_FLAG_LETTERS)
    unknown = flags & ~_KNOWN_FLAGS
    return f"{text}+0x{unknown:x}" if unknown else text


_FTYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def ftype_name(mode: int) -> str:
    return _FTYPES.get(stat.S_IFMT(mode), "unknown")


def display_path(path: str) -> str:
    """Unambiguous printable form of a path: non-UTF-8 bytes and control characters as
    \\xNN, a backslash as \\\\."""
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif not ch.isprintable():
            out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def _time(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    t = _dt.datetime.fromtimestamp(sec, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{t}.{frac:09d}Z"


def _bytes_text(b: bytes) -> str:
    try:
        s = b.decode("utf-8")
        if s.isprintable():
            return s
    except UnicodeDecodeError:
        pass
    return "0x" + b.hex()


def _xattr_text(items: tuple[tuple[str, bytes], ...]) -> str | None:
    if not items:
        return None
    shown = []
    for name, value in items:
        if name == SELINUX_NAME:
            value = value.rstrip(b"\0")  # labels carry a trailing NUL
        shown.append(f"{display_path(name)}={_bytes_text(value)}")
    return "; ".join(shown)


def _xattr_split(items: tuple[tuple[str, bytes], ...]) -> dict[str, tuple[tuple[str, bytes], ...]]:
    groups: dict[str, list[tuple[str, bytes]]] = {"acl": [], "caps": [], "selinux": [], "xattrs": []}
    for name, value in items:
        if name in ACL_NAMES:
            groups["acl"].append((name, value))
        elif name == CAPS_NAME:
            groups["caps"].append((name, value))
        elif name == SELINUX_NAME:
            groups["selinux"].append((name, value))
        else:
            groups["xattrs"].append((name, value))
    return {k: tuple(v) for k, v in groups.items()}


def value_of(rec: Record, attr: str) -> Any:
    """The display value of one attribute of a record."""
    if attr == "ftype":
        return ftype_name(rec.mode)
    if attr == "p":
        return f"{stat.S_IMODE(rec.mode):04o}"
    if attr == "i":
        return rec.ino
    if attr == "n":
        return rec.nlink
    if attr == "u":
        return rec.uid
    if attr == "g":
        return rec.gid
    if attr in ("s", "S"):
        return rec.size
    if attr == "b":
        return rec.blocks
    if attr == "m":
        return _time(rec.mtime_ns)
    if attr == "c":
        return _time(rec.ctime_ns)
    if attr == "l":
        return display_path(os.fsdecode(rec.link)) if stat.S_ISLNK(rec.mode) else None
    if attr in ("sha256", "blake3"):
        return rec.digest.hex() if rec.hash_algo == attr and rec.digest else None
    if attr in ("acl", "caps", "selinux", "xattrs"):
        return _xattr_text(_xattr_split(rec.xattrs)[attr])
    if attr == "e2fsattrs":
        return flags_text(rec.fsflags) if rec.has_fsflags else None
    if attr == "rdev":
        return None if rec.rdev is None else f"{os.major(rec.rdev)}:{os.minor(rec.rdev)}"
    raise KeyError(attr)


def compare(
    old: Record, new: Record, attrs: frozenset[str], prefix_digest: bytes | None = None
) -> list[AttrChange]:
    """Attributes in `attrs` that differ between `old` and `new`.

    For a growing file (`S`), a smaller size is a change, and the content hash compares the
    old digest with `prefix_digest`, the digest of the new file's first `old.size` bytes."""
    changes: list[AttrChange] = []
    type_changed = stat.S_IFMT(old.mode) != stat.S_IFMT(new.mode)
    if "ftype" in attrs and type_changed:
        changes.append(AttrChange("ftype", value_of(old, "ftype"), value_of(new, "ftype")))
    # A device swapped for another at the same path (/dev/null for /dev/mem, same type and
    # maybe the same inode number). A record made before device numbers were kept has none.
    if (("rdev" in attrs or "ftype" in attrs) and old.rdev is not None and new.rdev is not None
            and old.rdev != new.rdev):
        changes.append(AttrChange("rdev", value_of(old, "rdev"), value_of(new, "rdev")))
    if "l" in attrs and (old.link != new.link or type_changed) and (old.link or new.link):
        changes.append(AttrChange("l", value_of(old, "l"), value_of(new, "l")))
    if "s" in attrs and old.size != new.size:
        changes.append(AttrChange("s", old.size, new.size))
    if "S" in attrs and new.size < old.size:
        changes.append(AttrChange("S", old.size, new.size))
    if "b" in attrs and old.blocks != new.blocks:
        changes.append(AttrChange("b", old.blocks, new.blocks))
    if "p" in attrs and stat.S_IMODE(old.mode) != stat.S_IMODE(new.mode):
        changes.append(AttrChange("p", value_of(old, "p"), value_of(new, "p")))
    for attr, a, b in (
        ("u", old.uid, new.uid), ("g", old.gid, new.gid),
        ("i", old.ino, new.ino), ("n", old.nlink, new.nlink),
    ):
        if attr in attrs and a != b:
            changes.append(AttrChange(attr, a, b))
    if "m" in attrs and old.mtime_ns != new.mtime_ns:
        changes.append(AttrChange("m", value_of(old, "m"), value_of(new, "m")))
    if "c" in attrs and old.ctime_ns != new.ctime_ns:
        changes.append(AttrChange("c", value_of(old, "c"), value_of(new, "c")))
    if attrs & {"acl", "caps", "selinux", "xattrs"} and old.has_xattrs and new.has_xattrs:
        so, sn = _xattr_split(old.xattrs), _xattr_split(new.xattrs)
        for attr in ("acl", "xattrs", "selinux", "caps"):
            if attr in attrs and so[attr] != sn[attr]:
                changes.append(AttrChange(attr, _xattr_text(so[attr]), _xattr_text(sn[attr])))
    if "e2fsattrs" in attrs and old.has_fsflags and new.has_fsflags and old.fsflags != new.fsflags:
        changes.append(AttrChange("e2fsattrs", flags_text(old.fsflags), flags_text(new.fsflags)))
    for algo in ("sha256", "blake3"):
        if algo not in attrs or not stat.S_ISREG(new.mode) or not stat.S_ISREG(old.mode):
            continue
        if old.hash_algo != algo or new.hash_algo != algo:
            continue
        if "S" in attrs:
            if new.size < old.size or prefix_digest != old.digest:
                changes.append(AttrChange(algo, old.digest.hex(), new.digest.hex()))
        elif old.digest != new.digest:
            changes.append(AttrChange(algo, old.digest.hex(), new.digest.hex()))
    return changes
