"""`dconf(profile)`: the GNOME settings a dconf profile puts in force, read as dconf 0.40 reads
them; `gdm`: what GDM 43 (Debian's gdm3) reads from its daemon configuration (XDMCP).

- Profile: `/etc/dconf/profile/NAME`, else `/usr/local/share/dconf/profile/NAME`, else
  `/usr/share/dconf/profile/NAME` (an absolute NAME is that file). A missing `user` profile is
  `user-db:user`; any other missing profile is dconf's null configuration (no database). Lines:
  blanks trimmed, `#` starts a comment, `user-db:`, `service-db:`, `system-db:` and `file-db:`
  followed by a name, anything else ignored.
- `system-db:NAME` is the compiled `/etc/dconf/db/NAME`, the only file dconf reads for it. The
  keyfiles of `/etc/dconf/db/NAME.d` count only as far as `dconf update` compiled them: they are
  read as it would read them and compared; where they disagree the compiled file decides and the
  evidence names the keyfile line not compiled; without a compiled file nothing of NAME.d is in
  force. `file-db:PATH` is the compiled database at PATH, except Debian gdm3's
  `/var/lib/gdm3/greeter-dconf-defaults`, which gdm3 compiles from `/usr/share/gdm/dconf` each
  time it starts. A keyfile directory is read as `dconf compile` reads it: its regular files
  (links followed, names starting with `.` skipped) read by GLib's GKeyFile, the file whose name
  sorts last setting a key winning, the key `/GROUP/KEY`, its value GVariant text; a file GKeyFile
  refuses, a path dconf refuses or a value g_variant_parse refuses stops the whole database
  (`dconf update` writes nothing for it, so the compiled file stays as it was, or absent; for
  gdm3's greeter defaults an error naming the file and line). Locks: the compiled file's
  `.locks` table, which `dconf update` fills with each line starting with `/` of the files in
  `locks/`, exactly as written.
- Precedence (dconf_engine_read): the last database of the profile, other than the first, that
  locks a key decides where reading starts; the first database from there that sets the key
  wins. The user's own database (user-db, service-db) is per user and not read: `value()` is
  what a user who never changed the key gets, `locked()` whether the user cannot change it.
"""

from __future__ import annotations

import math
import re
import stat
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, STR, Method, ObjectType, list_of
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["DCONF", "GDM", "Dconf", "Gdm", "parse_gvariant", "read_keyfile", "register"]

DCONF = ObjectType(
    "dconf",
    {"profile": STR, "path": STR, "databases": list_of(STR)},
    methods={
        "value": Method(
            (STR,),
            STR,
            "the value in force for a key (`/org/gnome/login-screen/banner-message-enable`) "
            "as `dconf read` prints it (`true`, `uint32 900`, `'text'`), null when no database sets it",
        ),
        "uint32": Method(
            (STR,),
            INT,
            "that value when it is a uint32 (what GSettings reads for a key of type u; "
            "`900` is an int32 and GSettings ignores it), else null",
        ),
        "string": Method((STR,), STR, "that value when it is a string, unquoted, else null"),
        "locked": Method(
            (STR,),
            BOOL,
            "whether a user cannot change the key: a database after the first locks it, "
            "or the profile has no user database",
        ),
    },
    doc="the settings a dconf profile puts in force (profile, compiled databases, locks)",
    field_docs={
        "path": "the profile file read, null when there is none",
        "databases": "the profile's databases as written (`system-db:local`)",
    },
)

GDM = ObjectType(
    "gdm",
    {"xdmcp_enabled": BOOL},
    doc="GDM's daemon configuration: /etc/gdm3/daemon.conf, then /run/gdm3/custom.conf",
    field_docs={
        "xdmcp_enabled": "`[xdmcp] Enable` as GDM reads it: the last one wins, `true` (any case) or `1`"
    },
)

PROFILE_DIRS = ("/etc/dconf/profile", "/usr/local/share/dconf/profile", "/usr/share/dconf/profile")
DB_DIR = "/etc/dconf/db"
# Debian's gdm3 (generate-config, run before gdm starts) compiles this file-db from that directory
COMPILED_AT_START = {"/var/lib/gdm3/greeter-dconf-defaults": "/usr/share/gdm/dconf"}
GDM_CONFS = ("/etc/gdm3/daemon.conf", "/run/gdm3/custom.conf")  # gdm3's custom and runtime files
_SOURCE = re.compile(r"(user-db|service-db|system-db|file-db):(.+)", re.DOTALL)
_C_SPACE = " \t\n\v\f\r"


# --- GKeyFile -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    value: str  # the raw text g_key_file_get_value() returns
    line: int


class KeyFileError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _is_group_name(name: str) -> bool:
    return bool(name) and not any(c in "[]" or ord(c) < 0x20 or ord(c) == 0x7F for c in name)


def _is_key_name(name: str) -> bool:
    m = re.fullmatch(r"([^=\[\]]+)(\[[\w.@-]*\])?", name)
    return m is not None and not name.startswith(" ") and not m.group(1).endswith(" ")


def read_keyfile(text: str) -> dict[str, dict[str, Entry]]:
    """The groups and keys GLib's GKeyFile (2.74) reads from `text`: lines end at `\\n` (a `\\r`
    before it dropped), leading blanks skipped, `#` lines comments, a repeated group merged, the
    last of a repeated key winning, values raw (trailing blanks kept). Raises KeyFileError."""
    groups: dict[str, dict[str, Entry]] = {}
    current: dict[str, Entry] | None = None
    for n, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")
        if any("\udc80" <= c <= "\udcff" for c in raw):
            raise KeyFileError(n, "not UTF-8")
        line = raw.lstrip(_C_SPACE)
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            m = re.fullmatch(r"\[([^\]]*)\][ \t]*", line)
            if m is None or not _is_group_name(m.group(1)):
                raise KeyFileError(n, f"line {line!r} is not a key-value pair, group, or comment")
            current = groups.setdefault(m.group(1), {})
            continue
        if "=" not in line or line.startswith("="):
            raise KeyFileError(n, f"line {line!r} is not a key-value pair, group, or comment")
        key, value = line.split("=", 1)
        key = key.rstrip(_C_SPACE)
        if not _is_key_name(key):
            raise KeyFileError(n, f"invalid key name: {key!r}")
        if current is None:
            raise KeyFileError(n, "key file does not start with a group")
        current.pop(key, None)  # keep file order of the winning occurrence
        current[key] = Entry(value.lstrip(" \t"), n)
    return groups


# --- GVariant text --------------------------------------------------------------------------
_INT_TYPES = {
    "y": (0, 255),
    "n": (-(2**15), 2**15 - 1),
    "q": (0, 2**16 - 1),
    "i": (-(2**31), 2**31 - 1),
    "u": (0, 2**32 - 1),
    "x": (-(2**63), 2**63 - 1),
    "t": (0, 2**64 - 1),
    "h": (-(2**31), 2**31 - 1),
}
_KEYWORDS = {
    "boolean": "b",
    "byte": "y",
    "int16": "n",
    "uint16": "q",
    "int32": "i",
    "uint32": "u",
    "handle": "h",
    "int64": "x",
    "uint64": "t",
    "double": "d",
    "string": "s",
    "objectpath": "o",
    "signature": "g",
}
_PREFIX = {
    "y": "byte ",
    "n": "int16 ",
    "q": "uint16 ",
    "u": "uint32 ",
    "x": "int64 ",
    "t": "uint64 ",
    "h": "handle ",
    "o": "objectpath ",
    "g": "signature ",
}
_NUMBER = re.compile(r"[-+]?(?:[0-9a-zA-Z_.]+|inf|nan)")
_OBJECT_PATH = re.compile(r"/|(?:/[A-Za-z0-9_]+)+")


class GVariantError(ValueError):
    pass


@dataclass(frozen=True)
class GValue:
    type: str  # GVariant type string
    value: Any

    def text(self, annotate: bool = True) -> str:
        """As g_variant_print(value, TRUE) prints it."""
        t, v = self.type, self.value
        if t == "b":
            return "true" if v else "false"
        if t in _INT_TYPES:
            body = f"0x{v:02x}" if t == "y" else str(v)
            return (_PREFIX.get(t, "") if annotate else "") + body
        if t == "d":
            if math.isinf(v) or math.isnan(v):
                return ("-" if v < 0 else "") + ("inf" if math.isinf(v) else "nan")
            s = f"{v:.17g}"
            s = repr(v) if float(repr(v)) == v else s
            return s if any(c in s for c in ".e") else s + ".0"
        if t in "sog":
            return (_PREFIX.get(t, "") if annotate else "") + _quote(v)
        if t.startswith("a"):
            if not v:
                return f"@{t} []"
            return "[" + ", ".join(e.text(annotate and i == 0) for i, e in enumerate(v)) + "]"
        if t.startswith("("):
            inner = ", ".join(e.text(annotate) for e in v)
            return f"({inner},)" if len(v) == 1 else f"({inner})"
        if t == "v":
            return f"<{v.text(True)}>"
        raise GVariantError(f"cannot print type {t}")


def _quote(s: str) -> str:
    q = '"' if "'" in s and '"' not in s else "'"
    out = []
    for c in s:
        if c == q or c == "\\":
            out.append("\\" + c)
        elif c in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(c)])
        elif not c.isprintable():
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return q + "".join(out) + q


@dataclass(frozen=True)
class _Num:
    """A number literal not yet given a type (int32 or double by default, as GVariant infers)."""

    token: str

    @property
    def is_float(self) -> bool:
        t = self.token.lstrip("+-").lower()
        return not t.startswith("0x") and ("." in t or "e" in t or t in ("inf", "nan"))


class _Parser:
    """The part of GLib's g_variant_parse() secpolicy reads: booleans, numbers, strings, the type
    keywords of basic types, `@T`, arrays, tuples and `<variants>`. Other text (dictionaries,
    maybes, bytestrings) raises GVariantError saying it is not read, never a guess."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\n\v\f\r":
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i : self.i + 1]

    def parse(self) -> GValue:
        v = self.value()
        self.ws()
        if self.i != len(self.s):
            raise GVariantError(f"{self.i}:expected end of input")
        return self.settle(v, None)

    def value(self) -> Any:
        c = self.peek()
        if c == "":
            raise GVariantError(f"{self.i}:expected value")
        if c in "'\"":
            return GValue("s", self.string())
        if c == "[":
            return self.array()
        if c == "(":
            return self.tuple()
        if c == "<":
            self.i += 1
            inner = self.settle(self.value(), None)
            if self.peek() != ">":
                raise GVariantError(f"{self.i}:expected '>'")
            self.i += 1
            return GValue("v", inner)
        if c == "@":
            m = re.compile(r"@(a?[bynqiuxthdsog])").match(self.s, self.i)
            if m is None:
                raise GVariantError(f"{self.i}:type annotation secpolicy does not read")
            self.i = m.end()
            return self.settle(self.value(), m.group(1))
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(self.s, self.i)
        if m is not None and not re.fullmatch(r"inf|nan", m.group()):
            word = m.group()
            self.i = m.end()
            if word in ("true", "false"):
                return GValue("b", word == "true")
            if word in _KEYWORDS:
                return self.settle(self.value(), _KEYWORDS[word])
            if word in ("just", "nothing", "b"):
                raise GVariantError(
                    f"{m.start()}:maybe and bytestring values are not read by secpolicy"
                )
            raise GVariantError(f"{m.start()}-{m.end()}:unknown keyword")
        if c == "{":
            raise GVariantError(f"{self.i}:dictionaries are not read by secpolicy")
        m = _NUMBER.match(self.s, self.i)
        if m is None:
            raise GVariantError(f"{self.i}:expected value")
        self.i = m.end()
        return _Num(m.group())

    def string(self) -> str:
        q = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise GVariantError(f"{self.i}:unterminated string constant")
            c = self.s[self.i]
            self.i += 1
            if c == q:
                return "".join(out)
            if c != "\\":
                out.append(c)
                continue
            e = self.s[self.i : self.i + 1]
            self.i += 1
            if e in ("u", "U"):
                n = 4 if e == "u" else 8
                digits = self.s[self.i : self.i + n]
                if not re.fullmatch(f"[0-9a-fA-F]{{{n}}}", digits):
                    raise GVariantError(f"{self.i}:invalid {n}-character unicode escape")
                out.append(chr(int(digits, 16)))
                self.i += n
            elif e and e in "abfnrtv":
                out.append("\a\b\f\n\r\t\v"["abfnrtv".index(e)])
            else:
                out.append(e)

    def array(self) -> tuple[str, list]:
        self.i += 1
        items: list = []
        if self.peek() == "]":
            self.i += 1
            return ("a", items)
        while True:
            items.append(self.value())
            c = self.peek()
            self.i += 1
            if c == "]":
                return ("a", items)
            if c != ",":
                raise GVariantError(f"{self.i - 1}:expected ',' or ']'")

    def tuple(self) -> tuple[str, list]:
        self.i += 1
        items: list = []
        if self.peek() == ")":
            self.i += 1
            return ("(", items)
        while True:
            items.append(self.value())
            c = self.peek()
            self.i += 1
            if c == ")":
                return ("(", items)
            if c != ",":
                raise GVariantError(f"{self.i - 1}:expected ',' or ')'")
            if self.peek() == ")":
                self.i += 1
                return ("(", items)

    def settle(self, v: Any, want: str | None) -> GValue:
        """Give `v` a type: `want`, or the one GVariant infers (int32, double)."""
        if isinstance(v, GValue):
            if want in ("o", "g") and v.type == "s":
                return GValue(want, v.value)
            if want is not None and v.type != want:
                raise GVariantError(f"can not parse as value of type '{want}'")
            return v
        if isinstance(v, _Num):
            return _number(v, want or ("d" if v.is_float else "i"))
        kind, items = v
        if kind == "(":
            vals = [self.settle(e, None) for e in items]
            got = GValue("(" + "".join(e.type for e in vals) + ")", tuple(vals))
            if want is not None and got.type != want:
                raise GVariantError(f"can not parse as value of type '{want}'")
            return got
        elem = want[1:] if want is not None and want.startswith("a") else None
        if want is not None and elem is None:
            raise GVariantError(f"can not parse as value of type '{want}'")
        if elem is None:
            typed = [e.type for e in items if isinstance(e, GValue)]
            if typed:
                elem = typed[0]
            elif items and all(isinstance(e, _Num) for e in items):
                elem = "d" if any(e.is_float for e in items) else "i"
            elif items and any(isinstance(e, _Num) for e in items):
                raise GVariantError("unable to find a common type")
            else:
                settled = [self.settle(e, None) for e in items]
                if not settled:
                    raise GVariantError("unable to infer type")
                elem = settled[0].type
        vals = [self.settle(e, elem) for e in items]
        return GValue("a" + elem, tuple(vals))


def _number(n: _Num, t: str) -> GValue:
    token = n.token
    if t == "d":
        try:
            return GValue("d", float(token))
        except ValueError:
            raise GVariantError(f"invalid character in number: {token}") from None
    if t not in _INT_TYPES:
        raise GVariantError(f"can not parse as value of type '{t}'")
    sign, body = (token[0], token[1:]) if token[0] in "+-" else ("", token)
    if body[:2].lower() == "0x":
        digits, base = body[2:], 16
    elif body.startswith("0") and len(body) > 1:
        digits, base = body[1:], 8
    else:
        digits, base = body, 10
    try:
        value = int(digits, base) if digits and "_" not in digits else None
    except ValueError:
        value = None
    if value is None:
        raise GVariantError(f"invalid character in number: {token}")
    value = -value if sign == "-" else value
    low, high = _INT_TYPES[t]
    if not low <= value <= high:
        raise GVariantError(f"number out of range for type '{t}'")
    return GValue(t, value)


def parse_gvariant(text: str) -> GValue:
    """`text` as g_variant_parse(NULL, text) reads it. Raises GVariantError."""
    v = _Parser(text).parse()
    _check_paths(v)
    return v


def _check_paths(v: GValue) -> None:
    if v.type == "o" and not _OBJECT_PATH.fullmatch(v.value):
        raise GVariantError("not a valid object path")
    if v.type == "g" and not re.fullmatch(r"[bynqiuxthdsogvam(){}]*", v.value):
        raise GVariantError("not a valid signature")
    if v.type.startswith(("a", "(")):
        for e in v.value:
            _check_paths(e)
    elif v.type == "v":
        _check_paths(v.value)


# --- gvdb (a compiled database) -------------------------------------------------------------
def _gvdb(data: bytes, shown: str) -> tuple[dict[str, GValue | None], set[str]]:
    """The keys (with their values where secpolicy reads the type) and locks of a compiled
    dconf database (GLib's gvdb format, little endian)."""
    if len(data) < 24 or data[:8] != b"GVariant":
        raise EvaluationError(f"{shown}: not a dconf database (gvdb) secpolicy reads")

    def table(start: int, end: int) -> dict[str, tuple[str, int, int]]:
        if end > len(data) or start + 8 > end:
            raise EvaluationError(f"{shown}: a corrupt dconf database")
        n_bloom, n_buckets = struct.unpack_from("<II", data, start)
        items = start + 8 + 4 * ((n_bloom & ((1 << 27) - 1)) + n_buckets)
        raw = []
        for off in range(items, end - 23, 24):
            _h, parent, kstart, ksize, typ, _u, vstart, vend = struct.unpack_from(
                "<IIIHccII", data, off
            )
            raw.append(
                (
                    parent,
                    data[kstart : kstart + ksize].decode(errors="surrogateescape"),
                    typ,
                    (vstart, vend),
                )
            )
        names: dict[int, str] = {}

        def name(i: int, depth: int = 0) -> str:
            if i in names:
                return names[i]
            parent, key, _t, _v = raw[i]
            full = (
                name(parent, depth + 1)
                if parent != 0xFFFFFFFF and parent < len(raw) and depth < 64
                else ""
            ) + key
            names[i] = full
            return full

        return {name(i): (r[2].decode(errors="replace"), *r[3]) for i, r in enumerate(raw)}

    start, end = struct.unpack_from("<II", data, 16)
    values: dict[str, GValue | None] = {}
    locks: set[str] = set()
    for key, (typ, vstart, vend) in table(start, end).items():
        if key == ".locks" and typ == "H":  # the value is the locks' own table
            locks = set(table(vstart, vend))
        elif typ == "v" and key.startswith("/") and not key.endswith("/"):
            values[key] = _variant(data[vstart:vend])
    return values, locks


def _variant(body: bytes) -> GValue | None:
    """A serialised GVariant `v` of a basic type; None for a type secpolicy does not decode."""
    nul = body.rfind(b"\0")
    if nul < 0:
        return None
    data, t = body[:nul], body[nul + 1 :].decode(errors="replace")
    sizes = {
        "y": "<B",
        "n": "<h",
        "q": "<H",
        "i": "<i",
        "u": "<I",
        "x": "<q",
        "t": "<Q",
        "h": "<i",
        "d": "<d",
    }
    if t == "b" and len(data) == 1:
        return GValue("b", data != b"\0")
    if t in sizes and len(data) == struct.calcsize(sizes[t]):
        return GValue(t, struct.unpack(sizes[t], data)[0])
    if t in "sog" and len(t) == 1 and data.endswith(b"\0"):
        return GValue(t, data[:-1].decode(errors="replace"))
    return None


# --- databases and profiles -----------------------------------------------------------------
@dataclass(frozen=True)
class _Setting:
    value: GValue | None  # None: set, of a type secpolicy does not decode
    where: str


@dataclass
class _Database:
    spec: str  # as the profile writes it
    user: bool  # the user's own database (not read)
    values: dict[str, _Setting]
    locks: dict[str, str]
    origin: str  # the keyfile directory or compiled file read
    # what the keyfiles of a system-db say that its compiled file does not (not in force)
    pending: dict[str, str] = field(default_factory=dict)
    pending_locks: dict[str, str] = field(default_factory=dict)


class _Refused(EvaluationError):
    def __init__(self, where: str, reason: str, directory: str) -> None:
        super().__init__(f"{where}: dconf update refuses {reason}: {directory} is not compiled")
        self.where, self.reason = where, reason


def _regular_files(ctx: FactContext, directory: str) -> list[str]:
    """The names `dconf compile` reads in a directory: regular files (links followed), no
    names starting with `.`."""
    names = []
    for name in ctx.listdir(directory):
        if name.startswith("."):
            continue
        st = ctx.stat(f"{directory}/{name}")
        if st is not None and stat.S_ISREG(st.st_mode):
            names.append(name)
    return names


def _bytes_order(name: str) -> bytes:
    return name.encode(errors="surrogateescape")


def _keyfile_db(ctx: FactContext, spec: str, directory: str) -> _Database:
    """What `dconf compile`/`dconf update` writes from a keyfile directory; raises _Refused
    for what they refuse (nothing is written then)."""
    values: dict[str, _Setting] = {}
    for name in sorted(_regular_files(ctx, directory), key=_bytes_order, reverse=True):
        path = f"{directory}/{name}"
        text = ctx.read_text(path) or ""
        try:
            groups = read_keyfile(text)
        except KeyFileError as e:
            raise _Refused(at(path, e.line), f"the keyfile ({e})", directory) from None
        found: dict[str, _Setting] = {}
        for group, keys in groups.items():
            for key, entry in keys.items():
                full = f"/{key}" if group == "/" else f"/{group}/{key}"
                if not full.startswith("/") or "//" in full or full.endswith("/"):
                    raise _Refused(
                        at(path, entry.line), f"[{group}] {key}: invalid path {full!r}", directory
                    )
                try:
                    value = parse_gvariant(entry.value)
                except GVariantError as e:
                    raise _Refused(
                        at(path, entry.line), f"[{group}] {key}={entry.value}: {e}", directory
                    ) from None
                found[full] = _Setting(value, at(path, entry.line))
        for full, setting in found.items():
            values.setdefault(full, setting)  # files read in reverse name order: the first set wins
    locks: dict[str, str] = {}
    ldir = f"{directory}/locks"
    for name in sorted(_regular_files(ctx, ldir), key=_bytes_order):
        path = f"{ldir}/{name}"
        for n, line in enumerate((ctx.read_text(path) or "").split("\n"), 1):
            if line.startswith("/"):
                locks.setdefault(line, at(path, n))
    return _Database(spec, False, values, locks, directory)


def _compiled_db(ctx: FactContext, spec: str, path: str) -> _Database:
    data = ctx.read_bytes(path)
    if data is None:  # dconf keeps the source and finds nothing in it
        return _Database(spec, False, {}, {}, f"{path} (absent)")
    values, locks = _gvdb(data, path)
    return _Database(
        spec,
        False,
        {k: _Setting(v, path) for k, v in values.items()},
        dict.fromkeys(locks, path),
        path,
    )


def _system_db(ctx: FactContext, spec: str, name: str) -> _Database:
    """`system-db:NAME`: dconf reads the compiled /etc/dconf/db/NAME and nothing else. The
    keyfiles of NAME.d are in force only as far as `dconf update` (which rewrites every NAME.d's
    database each time it runs, whatever the files' times) has compiled them: where they say
    something else, the compiled file decides and the evidence says what is not compiled."""
    path = f"{DB_DIR}/{name}"
    directory = f"{path}.d"
    db = _compiled_db(ctx, spec, path)
    st = ctx.stat(directory)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return db
    absent = db.origin != path
    try:
        source = _keyfile_db(ctx, spec, directory)
    except _Refused as e:
        if absent:
            db.origin = f"{path} (absent: dconf update refuses {e.where}: {e.reason})"
        else:
            db.origin = (
                f"{path} (compiled, not from the keyfiles of {directory} now: dconf update "
                f"refuses {e.where}: {e.reason})"
            )
            db.values = {k: _Setting(v.value, db.origin) for k, v in db.values.items()}
            db.locks = dict.fromkeys(db.locks, db.origin)
        return db
    if absent:
        db.origin = f"{path} (absent: dconf update has not been run for {directory})"
        stale = f"not compiled: {path} is absent (dconf update has not been run)"
    else:
        stale = f"not compiled: dconf update not run since it changed, {path} is in force"
    for key, setting in source.values.items():
        if key not in db.values:
            db.pending[key] = f"{setting.where} sets it to {_shown(setting)}, {stale}"
        elif db.values[key].value == setting.value:
            db.values[key] = setting  # the line that holds the value in force
        elif db.values[key].value is None:  # not decoded: whether they agree is not known
            db.values[key] = _Setting(
                None, f"{path} (compiled; {setting.where} sets {_shown(setting)})"
            )
        else:
            db.values[key] = _Setting(
                db.values[key].value,
                f"{path} (compiled: {setting.where} sets {_shown(setting)}, {stale})",
            )
    for key, setting in db.values.items():
        if key not in source.values:
            db.values[key] = _Setting(
                setting.value,
                f"{path} (compiled: no keyfile of {directory} sets {key} now, not compiled: "
                "dconf update not run since they changed)",
            )
    for key, where in source.locks.items():
        if key in db.locks:
            db.locks[key] = where
        else:
            db.pending_locks[key] = f"{where} locks it, {stale}"
    for key in db.locks:
        if key not in source.locks:
            db.locks[key] = (
                f"{path} (compiled: locks {key}; no file of {directory}/locks does now, not "
                "compiled: dconf update not run since they changed)"
            )
    return db


def _shown(setting: _Setting) -> str:
    return "a value" if setting.value is None else setting.value.text()


def _database(ctx: FactContext, kind: str, name: str, spec: str) -> _Database:
    if kind in ("user-db", "service-db"):
        return _Database(spec, True, {}, {}, spec)
    if kind == "system-db":
        return _system_db(ctx, spec, name)
    source = COMPILED_AT_START.get(name)
    if source is not None:
        st = ctx.stat(source)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return _keyfile_db(ctx, spec, source)
    return _compiled_db(ctx, spec, name)


def _profile_line(line: str) -> str | None:
    line = line.lstrip(_C_SPACE)
    line = re.split(r"[#\n]", line, maxsplit=1)[0].rstrip(_C_SPACE)
    return line or None


class Dconf:
    def __init__(self, ctx: FactContext, profile: str) -> None:
        self.profile = profile
        self.path: str | None = None
        self.databases: tuple[str, ...] = ()
        self._dbs: list[_Database] = []
        self._specs: list[str] = []
        candidates = (
            [profile] if profile.startswith("/") else [f"{d}/{profile}" for d in PROFILE_DIRS]
        )
        text, found = None, ""
        for found in candidates:
            text = ctx.read_text(found)
            if text is not None:
                break
        if text is None:
            self._origin = (
                f"{candidates[0]} (absent: dconf uses user-db:user)"
                if profile == "user"
                else f"{', '.join(candidates)} (absent: dconf uses no database)"
            )
            if profile == "user":
                self._dbs = [_Database("user-db:user", True, {}, {}, "user-db:user")]
                self.databases = ("user-db:user",)
            return
        self.path = self._origin = found
        specs = []
        for n, line in enumerate(text.split("\n"), 1):
            spec = _profile_line(line)
            m = _SOURCE.fullmatch(spec) if spec else None
            if m is not None:
                specs.append((m.group(1), m.group(2), m.group(0), at(found, n)))
        self.databases = tuple(s[2] for s in specs)
        self._dbs = [_database(ctx, kind, name, spec) for kind, name, spec, _w in specs]
        self._specs = [w for *_x, w in specs]

    def _lock_level(self, key: str) -> int:
        for i in range(len(self._dbs) - 1, 0, -1):
            if key in self._dbs[i].locks:
                return i
        return 0

    def _find(self, key: str) -> tuple[_Setting | None, str]:
        level = self._lock_level(key)
        pending: list[str] = []  # keyfiles of a database read before the one in force, not compiled
        for db in self._dbs[level:]:
            if key in db.values:
                where = db.values[key].where
                return db.values[key], f"{where} ({'; '.join(pending)})" if pending else where
            if key in db.pending:
                pending.append(db.pending[key])
        dbs = ", ".join(db.origin for db in self._dbs if not db.user)
        if not dbs:
            return None, f"{self._origin} (not set: the profile reads no system database)"
        return None, f"{self._origin} (not set: {'; '.join([f'{dbs} set no {key}', *pending])})"

    def _value(self, key: str) -> GValue | None:
        setting, _w = self._find(key)
        if setting is not None and setting.value is None:
            raise EvaluationError(
                f"{setting.where}: {key} has a value of a type secpolicy does not decode"
            )
        return None if setting is None else setting.value

    def value(self, key: str) -> str | None:
        v = self._value(key)
        return None if v is None else v.text()

    def uint32(self, key: str) -> int | None:
        v = self._value(key)
        return v.value if v is not None and v.type == "u" else None

    def string(self, key: str) -> str | None:
        v = self._value(key)
        return v.value if v is not None and v.type == "s" else None

    def locked(self, key: str) -> bool:
        if not self._dbs or not self._dbs[0].user:
            return True
        return self._lock_level(key) > 0

    def describe(self) -> str:
        return f"dconf profile {self.profile}"

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("value", "uint32", "string") and args:
            return self._find(str(args[0]))[1]
        if name == "locked" and args:
            key = str(args[0])
            if not self._dbs:
                return f"{self._origin} (no database: nothing can be changed)"
            if not self._dbs[0].user:
                return f"{self._specs[0]} (the profile's first database is not the user's: nothing can be changed)"
            level = self._lock_level(key)
            if level:
                return self._dbs[level].locks[key]
            dbs = ", ".join(
                f"{db.origin}/locks" if db.origin.endswith(".d") else db.origin
                for db in self._dbs[1:]
                if not db.user
            )
            if not dbs:
                return f"{self._origin} (no lock: the profile reads no system database after the user's)"
            pending = [db.pending_locks[key] for db in self._dbs[1:] if key in db.pending_locks]
            return f"{self._origin} (no lock: {'; '.join([f'{dbs} lock no {key}', *pending])})"
        return self._origin


class Gdm:
    def __init__(self, ctx: FactContext) -> None:
        self.xdmcp_enabled = False
        self._where = f"{', '.join(GDM_CONFS)} (not set: XDMCP is off by default)"
        for path in GDM_CONFS:  # the runtime file read last: its value wins
            text = ctx.read_text(path)
            if text is None:
                continue
            try:
                groups = read_keyfile(text)
            except KeyFileError as e:
                raise EvaluationError(
                    f"{at(path, e.line)}: GDM cannot read {path} ({e}) and ignores all of it"
                ) from None
            entry = groups.get("xdmcp", {}).get("Enable")
            if entry is not None:
                v = entry.value
                self.xdmcp_enabled = v.lower() == "true" or v == "1"
                self._where = at(path, entry.line)

    def describe(self) -> str:
        return "gdm"

    def where(self, name: str, *args: Any) -> str | None:
        return self._where


def register(reg: FactRegistry) -> None:
    reg.register(
        "dconf",
        Dconf,
        params=(STR,),
        returns=DCONF,
        doc="the GNOME settings a dconf profile puts in force (`gdm`: the login screen, `user`: sessions)",
    )
    reg.register("gdm", Gdm, params=(), returns=GDM, doc="GDM's daemon configuration (XDMCP)")
