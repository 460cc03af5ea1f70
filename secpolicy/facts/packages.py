"""`packages` and `package(name)`: what dpkg records as installed in var/lib/dpkg/status, with
Debian version ordering; `package_files(name)`: a package's files against dpkg's recorded md5sums."""

from __future__ import annotations

import bisect
import errno
import functools
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy import __version__
from secpolicy.dsl.types import ANY, BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import ascii_lower, at, text_lines

if TYPE_CHECKING:
    from collections.abc import Iterator

    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "PACKAGE",
    "PACKAGE_FILES",
    "Package",
    "PackageFiles",
    "compare_versions",
    "parse_status",
    "register",
]

STATUS = "/var/lib/dpkg/status"
UPDATES = "/var/lib/dpkg/updates"  # dpkg's journal: records of a run not yet folded into status
INFO = "/var/lib/dpkg/info"
DIVERSIONS = "/var/lib/dpkg/diversions"

PACKAGE = ObjectType(
    "package",
    {"name": STR, "version": STR, "arch": STR, "status": STR, "installed": BOOL, "source": STR},
    methods={
        "version_at_least": Method(
            (STR,), BOOL, "installed and version >= v (Debian ordering); null if absent"
        ),
        "version_below": Method(
            (STR,), BOOL, "installed and version < v (Debian ordering); null if absent"
        ),
    },
    doc='a dpkg package (installed false and status "not-installed" when dpkg does not know it)',
    field_docs={
        "status": 'the dpkg state: "installed", "config-files", "half-installed", ... or "not-installed"',
        "installed": "its files are on the system: any state but config-files and not-installed (what "
        "`apt list --installed` lists; an interrupted run leaves a package unpacked or half-configured)",
    },
)


@dataclass(frozen=True)
class Package:
    name: str
    version: str | None
    arch: str | None
    status: str
    installed: bool
    source: str | None
    line: int = 0
    file: str = STATUS  # where the record was read: the status file or a journal entry
    multi_arch: str = field(default="no", compare=False)  # its info/ files are <name>:<arch>.* when "same"

    def describe(self) -> str:
        return f"package {self.name!r}"

    def where(self, name: str, *args: Any) -> str | None:
        return at(self.file, self.line) if self.line else f"{STATUS} (no entry for {self.name})"

    def version_at_least(self, version: str) -> bool | None:
        if not self.installed or self.version is None:
            return None
        return compare_versions(self.version, version) >= 0

    def version_below(self, version: str) -> bool | None:
        if not self.installed or self.version is None:
            return None
        return compare_versions(self.version, version) < 0


_C_BLANKS = re.compile(r"[ \t\n\v\f\r]+")

# dpkg's reader of its database (lib/dpkg/parse.c, fields.c, parsehelp.c and dbmodify.c of
# dpkg 1.21), ported where it decides what a record says and whether the database is refused:
# dpkg-query refuses the whole database for one bad record, so the fact is then an error.
_SPACE = " \t\n\v\f\r"  # c_isspace
_EOF_CHAR = "\x1a"  # MS-DOS end of file: ends a line or a stanza, as a newline does
_SKIP_NEWLINES = re.compile(r"[\n\x1a]*")
_FIELD_NAME = re.compile(r"[^ \t\n\v\f\r:\x1a]*")
_INLINE_SPACE = re.compile(r"[ \t\v\f\r]*")
_LINE_END = re.compile(r"[\n\x1a]")
_NOT_SPACE = re.compile(r"[^ \t\n\v\f\r]")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

_WANTS = ("unknown", "install", "hold", "deinstall", "purge")
_EFLAGS = ("ok", "reinstreq")
_STATUSES = ("not-installed", "config-files", "half-installed", "unpacked", "half-configured",
             "triggers-awaited", "triggers-pending", "installed")
_NOT_INSTALLED, _CONFIG_FILES, _HALF_INSTALLED = 0, 1, 2
_TRIGGERS_AWAITED, _TRIGGERS_PENDING, _INSTALLED = 5, 6, 7
_W_UNKNOWN, _W_INSTALL, _W_DEINSTALL, _W_PURGE = 0, 1, 3, 4
_MULTIARCH = ("no", "same", "allowed", "foreign")
_PRIORITIES = ("required", "important", "standard", "optional", "extra", "unknown")
_BOOLEANS = ("no", "yes")
# the fields dpkg knows (any other is kept as is); names compare case-insensitively
_DEPENDS = ("replaces", "provides", "depends", "pre-depends", "recommends", "suggests", "breaks",
            "conflicts", "enhances", "recommended", "optional")
_NO_ALTERNATIVES = ("replaces", "provides", "breaks", "conflicts")
_TEXT = ("section", "installed-size", "origin", "maintainer", "bugs", "source", "description")
_KNOWN = frozenset(("package", "essential", "protected", "status", "priority", "architecture", "multi-arch",
                    "version", "config-version", "conffiles", "filename", "size", "md5sum", "msdos-filename",
                    "triggers-pending", "triggers-awaited", "class", "revision", "package-revision",
                    "package_revision") + _DEPENDS + _TEXT)


class _Refused(Exception):
    """What dpkg objects to, and the line of the field (or stanza) it objects in."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _deb822(text: str) -> Iterator[tuple[int, list[tuple[str, str, int]]]]:
    """(first line, [(field name, value, line)]) of each stanza, as dpkg's parse_stanza() reads
    them: only `\\n` (or ^Z) ends a line, a line starting with a C blank continues the value
    before it (its newline kept, as dpkg keeps it), an empty line ends the stanza; the value is
    stripped of C blanks after the colon and at its end. What dpkg refuses raises _Refused."""
    end = len(text)
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(i: int) -> int:
        return bisect.bisect_left(newlines, i) + 1

    pos = 0
    while True:
        s = _SKIP_NEWLINES.match(text, pos).end()  # type: ignore[union-attr]
        if s >= end - 1:  # dpkg ignores one last character after the last newline
            return
        start = line_of(s)
        fields: list[tuple[str, str, int]] = []
        while True:
            line = line_of(s)
            j = _FIELD_NAME.match(text, s).end()  # type: ignore[union-attr]
            name = text[s:j]
            if not name:
                raise _Refused(line, "empty field name")
            if name[0] == "-":
                raise _Refused(line, f"field name {name!r} cannot start with hyphen")
            k = _INLINE_SPACE.match(text, j).end()  # type: ignore[union-attr]
            if k >= end - 1:
                raise _Refused(line, f"end of file after field name {name!r}")
            if text[k] == "\n":
                raise _Refused(line, f"newline in field name {name!r} (a line without a colon)")
            if text[k] != ":":
                raise _Refused(line, f"field name {name!r} must be followed by colon")
            v = _INLINE_SPACE.match(text, k + 1).end()  # type: ignore[union-attr]
            if v >= end - 1:
                raise _Refused(line, f"end of file before value of field {name!r} (missing final newline)")
            if text[v] == _EOF_CHAR:
                raise _Refused(line, f"MSDOS end of file (^Z) in value of field {name!r}")
            idx, blank, nxt = v, False, -1
            while True:
                m = _LINE_END.search(text, idx)
                if m is None:
                    raise _Refused(line, f"end of file during value of field {name!r} (missing final newline)")
                t = m.start()
                if blank and _NOT_SPACE.search(text, idx, t):
                    blank = False
                # a line of blanks inside a value: dpkg only warns (its status parser is lax)
                if t == end - 1:
                    value_end = t
                    break
                c = text[t + 1]
                if t + 1 == end - 1 or c == "\n" or c not in _SPACE:
                    value_end, nxt = t + 1, t + 1
                    break
                idx, blank = t + 1, True
            fields.append((name, text[v:value_end].rstrip(_SPACE), line))
            if nxt < 0 or nxt == end - 1 or text[nxt] in "\n\x1a":
                pos = end if nxt < 0 else nxt + 1
                break
            s = nxt
        yield start, fields


def _name_is_illegal(name: str) -> str | None:
    """dpkg's pkg_name_is_illegal(): letters (either case), digits and `-+._`."""
    if not name:
        return "may not be empty string"
    if name[0] not in _ALNUM:
        return "must start with an alphanumeric character"
    for c in name:
        if c not in _ALNUM and c not in "-+._":
            return f"character {c!r} not allowed (only letters, digits and characters '-+._')"
    return None


def _arch_is_illegal(arch: str) -> str | None:
    if not arch:
        return "may not be empty string"
    if arch[0] not in _ALNUM:
        return "must start with an alphanumeric"
    for c in arch[1:]:
        if c not in _ALNUM and c != "-":
            return f"character {c!r} not allowed (only letters, digits and characters '-')"
    return None


def _name_value(value: str, names: tuple[str, ...], *, more: bool = False,
                fallback: bool = False) -> tuple[int, str]:
    """dpkg's parse_nv(): the index of the name `value` starts with (case-insensitively, in
    table order, so "installok" is "install" then "ok"), and the rest after C blanks."""
    if not value:
        raise ValueError("is missing a value")
    for i, name in enumerate(names):
        if len(value) >= len(name) and ascii_lower(value[: len(name)]) == name:
            rest = value[len(name):].lstrip(_SPACE)
            if not more and rest:
                raise ValueError("has trailing junk")
            return i, rest
    if fallback:
        return -1, ""
    raise ValueError(f"has invalid value {value[:50]!r}")


def _parse_version(value: str) -> str:
    """A version as dpkg-query prints it (epoch shown when not 0), or ValueError where dpkg's
    parseversion() fails (what it only warns about, such as a letter first, is accepted)."""
    s = value.lstrip(" \t")
    if not s:
        raise ValueError("version string is empty")
    m = re.match(r"[^ \t]*", s)
    body = m.group() if m else ""
    if s[len(body):].lstrip(" \t"):
        raise ValueError("version string has embedded spaces")
    epoch = 0
    colon = body.find(":")
    if colon >= 0:
        e = re.match(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)", body)
        if e is None or not e.group(2):
            raise ValueError("epoch in version is empty")
        if e.end() != colon:
            raise ValueError("epoch in version is not number")
        epoch = int(e.group(1) + e.group(2))
        if epoch < 0:
            raise ValueError("epoch in version is negative")
        if epoch > 2**31 - 1:
            raise ValueError("epoch in version is too big")
        body = body[colon + 1:]
        if not body:
            raise ValueError("nothing after colon in version number")
    upstream, hyphen, revision = body.rpartition("-")
    if not hyphen:
        upstream, revision = body, ""
    elif not revision:
        raise ValueError("revision number is empty")
    if not upstream:
        raise ValueError("version number is empty")
    return (f"{epoch}:" if epoch else "") + upstream + (f"-{revision}" if revision else "")


def _check_depends(field: str, value: str) -> None:
    """dpkg's f_dependency(), for what it refuses: `a (>= 1), b | c:any, ...`."""
    n, p = len(value), 0

    def skip(i: int) -> int:
        while i < n and value[i] in _SPACE:
            i += 1
        return i

    if not value:
        return
    while True:
        while True:
            start = p
            while p < n and value[p] not in _SPACE and value[p] not in ":(,|":
                p += 1
            dep = value[start:p]
            if not dep:
                raise ValueError(f"{field!r} field, missing package name, or garbage where package name expected")
            why = _name_is_illegal(dep)
            if why:
                raise ValueError(f"{field!r} field, invalid package name {dep!r}: {why}")
            if p < n and value[p] == ":":
                p += 1
                arch_start = p
                while p < n and value[p] not in _SPACE and value[p] not in "(,|":
                    p += 1
                why = _arch_is_illegal(value[arch_start:p])
                if why:
                    raise ValueError(f"{field!r} field, reference to {dep!r}: invalid architecture name: {why}")
            p = skip(p)
            if p < n and value[p] == "(":
                p = skip(p + 1)
                c1 = value[p] if p < n else ""
                if c1 in ("<", ">"):
                    p += 1
                    c2 = value[p] if p < n else ""
                    if c2 in ("=", c1):
                        p += 1
                    elif c2 in ("<", ">"):
                        raise ValueError(f"{field!r} field, reference to {dep!r}: bad version relationship {c1}{c2}")
                elif c1 == "=":
                    p += 1
                p = skip(p)
                version_start = p
                while p < n and value[p] not in "()" and value[p] not in _SPACE:
                    p += 1
                version = value[version_start:p]
                p = skip(p)
                if p >= n:
                    raise ValueError(f"{field!r} field, reference to {dep!r}: version unterminated")
                if value[p] != ")":
                    raise ValueError(f"{field!r} field, reference to {dep!r}: version contains {value[p]!r} instead of ')'")
                try:
                    _parse_version(version)
                except ValueError as e:
                    raise ValueError(f"{field!r} field, reference to {dep!r}: version {version!r}: {e}") from None
                p = skip(p + 1)
            if p >= n or value[p] == ",":
                break
            if value[p] != "|":
                raise ValueError(f"{field!r} field, syntax error after reference to package {dep!r}")
            if field.lower() in _NO_ALTERNATIVES:
                raise ValueError(f"alternatives ('|') not allowed in {field!r} field")
            p = skip(p + 1)
        if p >= n:
            return
        p = skip(p + 1)


def _check_conffiles(value: str) -> None:
    """dpkg's f_conffiles(): lines ` <path> <md5> [obsolete] [remove-on-upgrade]`."""
    malformed = ValueError(f"value for 'Conffiles' field has malformed line {value[:250]!r}")
    p, n = 0, len(value)
    while p < n:
        c = value[p]
        p += 1
        if c == "\n":
            continue
        if c != " ":
            raise ValueError(f"value for 'Conffiles' field has line starting with non-space {c!r}")
        endent = value.find("\n", p)
        endent = n if endent < 0 else endent

        def last_word(frm: int, base: int = p, endent: int = endent) -> tuple[str, int]:
            if frm <= base + 1:
                raise malformed
            space = value.rindex(" ", 0, frm)  # value[base - 1] is a space
            if space <= base + 1 or space >= endent - 1:
                raise malformed
            return value[space + 1:frm], space

        word, end_name = last_word(endent)
        if word == "remove-on-upgrade":
            word, end_name = last_word(end_name)
        if word == "obsolete":
            word, end_name = last_word(end_name)
        q = p
        while q < n and (value[q] == "/" or value.startswith("./", q)):
            q += 1 if value[q] == "/" else 2
        if end_name - q <= 0:
            raise ValueError("root or empty directory listed as a conffile in 'Conffiles' field")
        p = endent


def _status(value: str) -> tuple[int, int, int]:
    """dpkg's f_status(): want, error flag and state."""
    words = []
    for i, (table, which) in enumerate(((_WANTS, "first (want)"), (_EFLAGS, "second (error)"),
                                        (_STATUSES, "third (status)"))):
        try:
            index, value = _name_value(value, table, more=i < 2)
        except ValueError as e:
            raise ValueError(f"{which} word in 'Status' field: {e}") from None
        words.append(index)
    return words[0], words[1], words[2]


def _pending(r: _Record, word: str) -> None:
    if not word.isascii() or any(c <= " " or c >= "\x7f" for c in word):
        raise ValueError(f"illegal pending trigger name {word!r}: trigger name contains invalid character")
    if word in r.trig_pending:
        raise ValueError(f"duplicate pending trigger {word!r}")
    r.trig_pending.add(word)


@dataclass
class _Record:
    """One package instance as dpkg's in-core database holds it."""

    name: str | None = None
    want: int = _W_UNKNOWN
    eflag: int = 0
    status: int = _NOT_INSTALLED
    version: str | None = None
    config_version: bool = False
    arch: str | None = None  # None: no Architecture field; "": an empty one
    multiarch: int = 0
    source: str | None = None
    trig_pending: set[str] = field(default_factory=set)
    trig_awaited: set[str] = field(default_factory=set)
    line: int = 0
    file: str = STATUS
    filled: bool = False  # a record was read into this slot (not only named by a trigger)


class _Database:
    """dpkg's package database as dpkg-query loads it: the status file, then each journal
    entry, each record placed in its package's slot the way parse.c places it."""

    def __init__(self) -> None:
        self.sets: dict[str, list[_Record]] = {}

    def installed(self, name: str) -> int:
        return sum(r.status != _NOT_INSTALLED for r in self.sets.get(name, []))

    def load(self, text: str, file: str, *, status_file: bool) -> None:
        try:
            for start, fields in _deb822(text):
                self._add(self._record(fields, start, file, status_file), status_file)
        except _Refused as e:
            raise EvaluationError(f"{at(file, e.line)}: {e}: dpkg and dpkg-query refuse the database "
                                  "while it is there") from None

    def _record(self, fields: list[tuple[str, str, int]], start: int, file: str, status_file: bool) -> _Record:
        r = _Record(line=start, file=file)
        seen: set[str] = set()
        for name, raw, line in fields:
            key = ascii_lower(name)
            if key in seen:
                raise _Refused(line, f"duplicate value for {name!r} field")
            seen.add(key)
            if key not in _KNOWN and len(name) < 2:
                raise _Refused(line, f"user-defined field name {name!r} too short")
            value = raw.split("\0", 1)[0]  # dpkg's field parsers read a C string
            try:
                self._field(r, key, name, value)
            except ValueError as e:
                raise _Refused(line, str(e)) from None
        self._verify(r, start, status_file)
        return r

    def _field(self, r: _Record, key: str, name: str, value: str) -> None:
        if key == "package":
            why = _name_is_illegal(value)
            if why:
                raise ValueError(f"invalid package name in 'Package' field: {why}")
            r.name = ascii_lower(value)
        elif key == "status":
            r.want, r.eflag, r.status = _status(value)
        elif key in ("version", "config-version"):
            try:
                version = _parse_version(value)
            except ValueError as e:
                raise ValueError(f"{name!r} field value {value[:250]!r}: {e}") from None
            if key == "version":
                r.version = version
            else:
                r.config_version = True
        elif key == "architecture":
            r.arch = value  # an invalid name is only a warning
        elif key in ("essential", "protected", "multi-arch") and value:
            table = _MULTIARCH if key == "multi-arch" else _BOOLEANS
            try:
                index, _ = _name_value(value, table)
            except ValueError as e:
                raise ValueError(f"{name!r} field: {e}") from None
            if key == "multi-arch":
                r.multiarch = index
        elif key in ("priority", "class") and value:
            try:
                _name_value(value, _PRIORITIES, fallback=True)
            except ValueError as e:
                raise ValueError(f"word in {name!r} field: {e}") from None
        elif key == "source":
            r.source = value or None
        elif key in _DEPENDS:
            _check_depends(name, value)
        elif key == "conffiles":
            _check_conffiles(value)
        elif key in ("filename", "size", "md5sum", "msdos-filename"):
            raise ValueError(f"archive details {name!r} field not allowed in status file")
        elif key == "triggers-pending":
            for word in re.split(r"[ \t\n]+", value):  # c_iswhite; any other control is a bad name
                if word:
                    _pending(r, word)
        elif key == "triggers-awaited":
            for word in re.split(r"[ \t\n]+", value):
                if word:
                    self._awaited(r, word)
        elif key in ("revision", "package-revision", "package_revision") and value:
            r.version = (r.version or "") + f"-{value}"  # obsolete; never written since 1995

    def _awaited(self, r: _Record, word: str) -> None:
        pkg, colon, arch = word.partition(":")
        why = _name_is_illegal(pkg)
        if why:
            raise ValueError(f"illegal package name in awaited trigger {word!r}: {why}")
        if colon and _arch_is_illegal(arch):
            raise ValueError(f"illegal architecture name in awaited trigger {word!r}: {_arch_is_illegal(arch)}")
        if not colon and self.installed(ascii_lower(pkg)) > 1:
            raise ValueError(f"awaited trigger {word!r}: ambiguous package name with more than one installed instance")
        key = ascii_lower(pkg) + (f":{arch}" if colon else "")
        if key in r.trig_awaited:
            raise ValueError(f"duplicate awaited trigger package {word!r}")
        r.trig_awaited.add(key)

    @staticmethod
    def _verify(r: _Record, start: int, status_file: bool) -> None:
        """dpkg's pkg_parse_verify(): what a whole record must hold."""
        if r.name is None:
            raise _Refused(start, "missing 'Package' field")
        state = _STATUSES[r.status]
        if r.status not in (_NOT_INSTALLED, _HALF_INSTALLED) and r.version is None:
            raise _Refused(start, f"missing 'Version' field (the package is {state})")
        if r.arch is None:
            r.arch = ""
        if r.multiarch == 1 and r.arch in ("", "all"):
            raise _Refused(start, "package has 'Multi-Arch: same' field but is "
                           + ("missing architecture" if not r.arch else "architecture 'all'"))
        if r.config_version and r.status in (_INSTALLED, _NOT_INSTALLED, _TRIGGERS_PENDING):
            raise _Refused(start, "'Config-Version' field present for package with inappropriate 'Status' field")
        if r.trig_awaited and (r.status <= _CONFIG_FILES or r.status >= _TRIGGERS_PENDING):
            raise _Refused(start, f"package has status {state} but triggers are awaited")
        if r.status == _TRIGGERS_AWAITED and not r.trig_awaited:
            raise _Refused(start, f"package has status {state} but no triggers awaited")
        if r.trig_pending and r.status not in (_TRIGGERS_PENDING, _TRIGGERS_AWAITED):
            raise _Refused(start, f"package has status {state} but triggers are pending")
        if r.status == _TRIGGERS_PENDING and not r.trig_pending:
            raise _Refused(start, f"package has status {state} but no triggers pending")
        if r.status == _NOT_INSTALLED and r.eflag == 0:
            if r.want in (_W_PURGE, _W_DEINSTALL) or (status_file and r.want == _W_INSTALL and not r.arch):
                r.want = _W_UNKNOWN
            if r.want == _W_UNKNOWN:  # forgotten at dpkg's next write: no version, no source
                r.version = r.source = None

    def _add(self, r: _Record, status_file: bool) -> None:
        """dpkg's parse_find_set_slot() and parse_find_pkg_slot(), then the copy."""
        assert r.name is not None
        slots = self.sets.setdefault(r.name, [_Record(name=r.name)])
        live = [s for s in slots if s.status != _NOT_INSTALLED]
        counted = live + ([r] if status_file and r.status != _NOT_INSTALLED else [])
        single = sum(s.multiarch != 1 for s in counted)
        if single > 1:
            raise _Refused(r.line, f"multiple non-coinstallable package instances present ({r.name})")
        if single and len(counted) > single:
            raise _Refused(r.line, f"mixed non-coinstallable and coinstallable package instances present ({r.name})")
        selection = status_file and r.status == _NOT_INSTALLED
        if len(live) > 1 and not selection and r.multiarch != 1:
            raise _Refused(r.line, f"package {r.name} is not co-installable with {r.name} which has multiple "
                           "installed instances")
        index = None
        if not status_file and len(live) == 1 and not (live[0].multiarch == 1 and r.multiarch == 1):
            index = slots.index(live[0])  # a journal record of another architecture cross-grades it
        elif len(slots) == 1 and not slots[0].filled:
            index = 0
        else:
            index = next((i for i, s in enumerate(slots) if s.arch == r.arch), None)
        r.filled = True
        if index is None:
            slots.append(r)
        else:
            slots[index] = r

    def packages(self) -> list[Package]:
        out = []
        for name, slots in self.sets.items():
            for r in slots:
                if r.filled:
                    status = _STATUSES[r.status]
                    source = (r.source or name).split(" ", 1)[0]
                    out.append(Package(name, r.version, r.arch or None, status, status in _ON_DISK, source,
                                       r.line, r.file, _MULTIARCH[r.multiarch]))
        return out


def parse_status(text: str, file: str = STATUS) -> list[Package]:
    """The packages of one status file, as dpkg reads it (an EvaluationError where it refuses)."""
    db = _Database()
    db.load(text, file, status_file=True)
    return db.packages()


# the states in which the package's files are on the system: what `apt list --installed` lists
# (an interrupted run leaves one unpacked, half-configured or half-installed)
_ON_DISK = frozenset({"installed", "triggers-pending", "triggers-awaited", "half-configured", "unpacked",
                      "half-installed"})


# Debian policy 5.6.12: epoch, upstream and revision compared with `~` before everything
# and letters before non-letters.
_VERSION = re.compile(r"^(?:(\d+):)?(.+?)(?:-([^-]+))?$")


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg --compare-versions orders `a` and `b`."""
    ma, mb = _VERSION.match(a.strip()), _VERSION.match(b.strip())
    if not ma or not mb:
        raise EvaluationError(f"not a Debian version: {a!r} / {b!r}")
    ea, eb = int(ma.group(1) or 0), int(mb.group(1) or 0)
    if ea != eb:
        return -1 if ea < eb else 1
    c = _compare_part(ma.group(2), mb.group(2))
    if c:
        return c
    return _compare_part(ma.group(3) or "", mb.group(3) or "")


# package_files ----------------------------------------------------------------------------

PACKAGE_FILES = ObjectType(
    "package_files",
    {
        "package": STR,
        "exists": BOOL,
        "checked": INT,
        "modified": ListType(STR),
        "missing": ListType(STR),
        "unreadable": ListType(STR),
    },
    doc="a package's installed files checked against dpkg's recorded md5sums, as `dpkg --verify` does",
    field_docs={
        "exists": "var/lib/dpkg/info/<name>.md5sums (or <name>:<arch>.md5sums) is present",
        "checked": "files with a recorded md5 that were verified (conffiles excluded)",
        "modified": "files whose md5 differs, or that are no longer regular files (dpkg's 5 and M flags)",
        "missing": "listed files (info/<name>.list) that do not exist, conffiles excluded",
        "unreadable": "files that could not be read to be hashed (an I/O error; a file the scan may not read makes the fact an error)",
    },
)

_MD5_LEN = 32
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackageFiles:
    package: str
    exists: bool
    checked: int
    modified: tuple[str, ...]
    missing: tuple[str, ...]
    unreadable: tuple[str, ...]
    # evidence: the md5sums file (or "<path> (absent)"), and for each reported path the line
    # that records it (`info/<pkg>.md5sums:<line>`, or the .list line for a path without md5)
    origin: str = field(default="", compare=False)
    recorded: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def describe(self) -> str:
        return f"files of package {self.package!r}"

    def where(self, name: str, *args: Any) -> str | None:
        paths = {
            "modified": self.modified,
            "missing": self.missing,
            "unreadable": self.unreadable,
        }.get(name)
        if paths:
            return f"{self.recorded.get(paths[0], self.origin)} ({paths[0]})"
        return self.origin


def _norm(path: str) -> str:
    """A dpkg database path as dpkg's file hash keys it: absolute, no `./`, no trailing `/`."""
    while path.startswith(("./", "/")):
        path = path[2:] if path.startswith("./") else path[1:]
    return "/" + path.rstrip("/")


def _diversions(ctx: FactContext) -> dict[str, tuple[str, str]]:
    """original path -> (diverted-to path, diverting package or ":" for a local diversion)."""
    text = ctx.read_text(DIVERSIONS)
    if not text:
        return {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 3:
        raise EvaluationError(
            f"{DIVERSIONS}: {len(lines)} lines, not groups of three (from, to, package)"
        )
    return {
        _norm(lines[i]): (_norm(lines[i + 1]), lines[i + 2].strip())
        for i in range(0, len(lines), 3)
    }


def _installed_instances(ctx: FactContext, spec: str) -> list[Package]:
    """The instances `dpkg --verify <spec>` verifies, as dpkg resolves the name (in lower case,
    `name:arch` for one architecture); none when it is not installed. A name dpkg rejects is an
    error. Where dpkg refuses a bare name with several installed instances (libc6:amd64 and
    libc6:i386), every instance is verified: bundled rules name Multi-Arch packages bare."""
    name, colon, arch = spec.partition(":")
    why = _name_is_illegal(name) or (_arch_is_illegal(arch) if colon else None)
    if why:
        raise EvaluationError(f"package_files({spec!r}): not a Debian package name: {why}")
    name = ascii_lower(name)
    return [p for p in ctx.fact("packages", ())
            if p.name == name and p.status != "not-installed" and (not colon or p.arch == arch)]


def _infodb_format(ctx: FactContext) -> int | None:
    """dpkg's pkg_infodb_read_format(): info/format (None when absent, which dpkg reads as the
    legacy layout, 0), one ahead while an upgrade of the layout (info/format-new) is under way."""
    text = ctx.read_text(f"{INFO}/format")
    if text is None and not ctx.exists(f"{INFO}/format-new"):
        return None
    m = re.match(r"[ \t\n\v\f\r]*\+?([0-9]+)", text or "0")
    if m is None:
        raise EvaluationError(f"{INFO}/format: corrupt info database format file: dpkg --verify stops there")
    version = int(m.group(1)) + ctx.exists(f"{INFO}/format-new")
    if version > 1:
        raise EvaluationError(f"{INFO}/format: info database format ({version}) is bogus or too new for dpkg")
    return version


def _md5sums(ctx: FactContext, path: str) -> dict[str, tuple[str, int]] | None:
    """path -> (md5, line) of an md5sums file, or None when it does not exist. What dpkg's
    parse_filehash() refuses makes the fact an evaluation error, as it makes dpkg --verify
    stop; the digest is kept as written (an upper-case one matches no file, as in dpkg)."""
    text = ctx.read_text(path)
    if text is None:
        return None
    out: dict[str, tuple[str, int]] = {}
    lines = text.split("\n")
    if lines[-1]:
        raise EvaluationError(f"{path}:{len(lines)}: not an md5sums line ('<md5>  <path>'): missing final newline; "
                              "dpkg --verify stops there")
    for n, line in enumerate(lines[:-1], 1):
        digest, sep, name = line[:_MD5_LEN], line[_MD5_LEN : _MD5_LEN + 2], line[_MD5_LEN + 2 :]
        why = "missing value" if not name else "missing value separator" if sep != "  " else None
        if why:
            raise EvaluationError(f"{path}:{n}: not an md5sums line ('<md5>  <path>'): {why}; "
                                  "dpkg --verify stops there")
        name = name.split("\0", 1)[0]
        out[_norm(name.removesuffix("/"))] = (digest.split("\0", 1)[0], n)
    return out


def _listed(ctx: FactContext, path: str) -> list[tuple[str, int]] | None:
    text = ctx.read_text(path)
    if text is None:
        return None
    return [
        (_norm(line), n)
        for n, line in enumerate(text.split("\n"), 1)
        if line and _norm(line) != "/."
    ]


def _conffiles(ctx: FactContext, path: str) -> set[str]:
    # newer dpkg writes flags before the path ("remove-on-upgrade /etc/x")
    text = ctx.read_text(path) or ""
    out = set()
    for line in text_lines(text):  # dpkg writes one path a line, flags before it
        words = [w for w in _C_BLANKS.split(line) if w]
        if words:
            out.add(_norm(words[-1]))
    return out


def _verify(ctx: FactContext, path: str, digest: str | None) -> str | None:
    """What `dpkg --verify` says of one listed path: None (fine), "missing", "modified",
    "unreadable" (an I/O error) or "denied" (the scan may not read it: dpkg's `?`, which says
    nothing of the file). Only `lstat`: a hashed path that is now a symlink is modified whatever
    it points to (dpkg's `M` flag), so no final symlink is ever followed, in or out of the root."""
    try:
        st = ctx.lstat(path)
    except EvaluationError:  # a symlink loop among the parent directories
        return "missing"
    except OSError as e:
        return "denied" if e.errno in (errno.EACCES, errno.EPERM) else "missing"
    if st is None:
        return "missing"
    if digest is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "modified"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
    try:
        try:
            fd = ctx.open_path(path, flags)
        except PermissionError:  # O_NOATIME needs ownership; retry without it
            fd = ctx.open_path(path, flags & ~getattr(os, "O_NOATIME", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
                return "modified"
            h = hashlib.md5(usedforsecurity=False)
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):  # gone since the lstat
            return "missing"
        if e.errno in (errno.EACCES, errno.EPERM):
            return "denied"
        return "modified" if e.errno == errno.ELOOP else "unreadable"
    return None if h.hexdigest() == digest else "modified"


def collect_package_files(ctx: FactContext, name: str) -> PackageFiles:
    instances = _installed_instances(ctx, name)
    if not instances:  # dpkg --verify: "package is not installed", nothing verified
        return PackageFiles(name, False, 0, (), (), (), f"{STATUS} ({name} is not installed)")
    diversions: dict[str, tuple[str, str]] = ctx.fact("_dpkg_diversions", ())
    results: dict[str, list[str]] = {"modified": [], "missing": [], "unreadable": [], "denied": []}
    recorded: dict[str, str] = {}
    seen: set[str] = set()
    exists = False
    checked = 0
    origin = ""
    layout = _infodb_format(ctx)
    for pkg in instances:
        # dpkg names the info/ files of a Multi-Arch: same instance <name>:<arch> in the
        # multiarch layout of the info database (format 1, what dpkg writes since 1.16.2), and
        # <name> in the legacy one (0); without info/format (a tree dpkg did not write), the
        # qualified files are used where they are present
        base = f"{pkg.name}:{pkg.arch}" if pkg.multi_arch == "same" else pkg.name
        if layout == 0 or (layout is None and not ctx.exists(f"{INFO}/{base}.list")
                           and not ctx.exists(f"{INFO}/{base}.md5sums")):
            base = pkg.name
        md5_path, list_path = f"{INFO}/{base}.md5sums", f"{INFO}/{base}.list"
        hashes = _md5sums(ctx, md5_path)
        listed = _listed(ctx, list_path)
        exists = exists or hashes is not None
        origin = origin or (md5_path if hashes is not None else "")
        conffiles = _conffiles(ctx, f"{INFO}/{base}.conffiles")
        hashes = hashes or {}
        # dpkg walks the .list file (a file taken over by another package has left it, though
        # its old md5 stays); without one, every md5sums entry is checked.
        entries = listed if listed is not None else [(p, n) for p, (_, n) in hashes.items()]
        where_listed = list_path if listed is not None else md5_path
        for path, n in entries:
            if path in conffiles or path in seen:
                continue
            seen.add(path)
            digest = hashes.get(path)
            # dpkg-divert: another package's (or a local) diversion moved this file aside
            target = path
            div = diversions.get(path)
            if div is not None and div[1] != pkg.name:
                target = div[0]
            verdict = _verify(ctx, target, digest[0] if digest else None)
            if digest is not None:
                checked += 1
            if verdict is not None:
                results[verdict].append(target)
                recorded[target] = at(md5_path, digest[1]) if digest else at(where_listed, n)
        origin = origin or f"{md5_path} (absent)"
    if results["denied"]:
        # Not a finding about the files: the scan could not look (a non-root scan, a security
        # module's denial). Such a package cannot be verified, and says so.
        denied = results["denied"]
        raise EvaluationError(f"{denied[0]}: permission denied ({len(denied)} file(s) of package {name} could not "
                              "be read to verify them)")
    return PackageFiles(
        name,
        exists,
        checked,
        tuple(results["modified"]),
        tuple(results["missing"]),
        tuple(results["unreadable"]),
        origin,
        recorded,
    )


def _index(ctx: FactContext) -> dict[str, Package]:
    pkgs = ctx.fact("packages", ())
    index: dict[str, Package] = {}
    for p in pkgs:
        for key in (p.name, f"{p.name}:{p.arch}"):
            prev = index.get(key)
            if prev is None or (p.installed and not prev.installed):
                index[key] = p
    return index


_JOURNAL_NAME = re.compile(r"[0-9]+\Z")
_JOURNAL_MAX = 10  # dpkg's IMPORTANTMAXLEN


def collect_packages(ctx: FactContext) -> list[Package]:
    """The packages of the status file, with dpkg's journal applied as dpkg-query applies it:
    each entry of /var/lib/dpkg/updates (all-digit names, in order) replaces the records of
    the packages it names; what dpkg refuses in either makes it refuse the database (an error).

    Reading dpkg's database takes about a tenth of a scan of a host. With a memo in the scan's
    options (`memo`: the compile cache), the packages of a database read before are taken from
    it when its files hold exactly the same bytes (and the code that reads them is the same)."""
    status = ctx.read_text(STATUS) or ""
    # The journal is read before the status file is parsed (the memo's key needs both), but
    # what is wrong with it is said after what is wrong with the status file, as dpkg says it.
    journal: list[tuple[str, str]] = []
    journal_error: EvaluationError | OSError | None = None
    try:
        journal = [(path, ctx.read_text(path) or "") for path in _journal(ctx)]
    except (EvaluationError, OSError) as e:
        journal_error = e
    memo = ctx.options.get("memo")
    key = ""
    if memo is not None and journal_error is None:
        key = _database_key([(STATUS, status), *journal])
        kept = memo.get_named(_MEMO_NAME)
        if type(kept) is tuple and len(kept) == 2 and kept[0] == key and type(kept[1]) is list \
                and all(type(p) is Package for p in kept[1]):
            return list(kept[1])
    db = _Database()
    db.load(status, STATUS, status_file=True)
    if journal_error is not None:
        raise journal_error
    for path, text in journal:
        db.load(text, path, status_file=False)
    packages = db.packages()
    if memo is not None and key:  # one entry, replaced: the database of the last scan
        memo.put_named(_MEMO_NAME, (key, packages))
    return packages


def _journal(ctx: FactContext) -> list[str]:
    """The entries of dpkg's journal, in the order dpkg applies them; what makes dpkg refuse
    the database raises."""
    st = ctx.stat(UPDATES)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise EvaluationError(f"{UPDATES}: not a directory: dpkg cannot scan its journal and refuses the database")
    journal = sorted(n for n in ctx.listdir(UPDATES) if _JOURNAL_NAME.match(n))
    for name in journal:
        if len(name) > _JOURNAL_MAX:
            raise EvaluationError(f"{UPDATES}/{name}: a journal entry whose name is too long (max={_JOURNAL_MAX}): "
                                  "dpkg and dpkg-query refuse the database while it is there")
        if len(name) != len(journal[0]):
            raise EvaluationError(f"{UPDATES}: journal entries with names of different lengths ({journal[0]}, "
                                  f"{name}): dpkg and dpkg-query refuse the database while they are there")
    return [f"{UPDATES}/{name}" for name in journal]


_MEMO_NAME = "dpkg-database"


@functools.cache
def _code_key() -> bytes:
    """What the packages kept in a memo depend on besides the files: the version and the code
    that reads dpkg's database (this module and the helpers it reads text with)."""
    h = hashlib.sha256(__version__.encode())
    for module in (Path(__file__), Path(__file__).with_name("_common.py")):
        h.update(module.read_bytes() + b"\0")
    return h.digest()


def _database_key(texts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(_code_key())
    for path, text in texts:
        for part in (path, text):
            data = part.encode("utf-8", "surrogateescape")
            h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def collect_package(ctx: FactContext, name: str) -> Package:
    # dpkg looks names up in lower case (`dpkg -s Telnet` is telnet)
    base, colon, arch = name.partition(":")
    key = ascii_lower(base) + colon + arch
    hit = ctx.fact("_package_index", ()).get(key)
    if hit is not None:
        return hit
    return Package(key, None, None, "not-installed", False, None, 0)


def register(reg: FactRegistry) -> None:
    reg.register(
        "packages",
        collect_packages,
        returns=ListType(PACKAGE),
        doc="dpkg packages (var/lib/dpkg/status)",
    )
    reg.register(
        "package",
        collect_package,
        params=(STR,),
        returns=PACKAGE,
        doc="a package by name (or name:arch)",
    )
    reg.register("_package_index", _index, returns=ANY, doc="internal: packages by name")
    reg.register(
        "package_files",
        collect_package_files,
        params=(STR,),
        returns=PACKAGE_FILES,
        doc="a package's files against dpkg's md5sums (var/lib/dpkg/info), like dpkg --verify",
    )
    reg.register("_dpkg_diversions", _diversions, returns=ANY, doc="internal: dpkg-divert table")
