"""`packages` and `package(name)`: what dpkg records as installed in var/lib/dpkg/status, with
Debian version ordering; `package_files(name)`: a package's files against dpkg's recorded md5sums."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import C_SPACE, at, text_lines

if TYPE_CHECKING:
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


def _stanzas(text: str) -> list[tuple[int, dict[str, str]]]:
    """(first line, fields by lower-case name) of each stanza of a dpkg database file."""
    out: list[tuple[int, dict[str, str]]] = []
    fields: dict[str, str] = {}
    start = 0
    # dpkg's parser (lib/dpkg/parse.c): lines end at `\n` only, a stanza ends at an empty
    # line (one of blanks starts with a blank: it continues a field), C blanks around values
    for n, line in enumerate(text_lines(text), 1):
        if not line:
            if fields:
                out.append((start, fields))
            fields = {}
            continue
        if line[0] in " \t":  # continuation of a multi-line field (Description, Conffiles)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if not fields:
            start = n
        fields[key.strip(C_SPACE).lower()] = value.strip(C_SPACE)
    if fields:
        out.append((start, fields))
    return out


def _state(fields: dict[str, str]) -> list[str]:
    return [w for w in _C_BLANKS.split(fields.get("status", "")) if w]


def parse_status(text: str, file: str = STATUS) -> list[Package]:
    out: list[Package] = []
    for start, fields in _stanzas(text):
        if "package" not in fields:
            continue
        state = _state(fields)
        status = state[2] if len(state) == 3 else "unknown"
        src = fields.get("source")
        out.append(Package(fields["package"], fields.get("version"), fields.get("architecture"), status,
                           status in _ON_DISK, src.split()[0] if src else None, start, file))
    return out


# the states in which the package's files are on the system: what `apt list --installed` lists
# (an interrupted run leaves one unpacked, half-configured or half-installed)
_ON_DISK = frozenset({"installed", "triggers-pending", "triggers-awaited", "half-configured", "unpacked",
                      "half-installed"})
# the words of a Status field dpkg accepts (want, error flag, state)
_WANT = {"unknown", "install", "hold", "deinstall", "purge"}
_EFLAG = {"ok", "reinstreq"}
_STATES = {"not-installed", "config-files", "half-installed", "unpacked", "half-configured", "triggers-awaited",
           "triggers-pending", "installed"}


def _journal_error(text: str) -> str | None:
    """Why dpkg refuses a journal entry (and with it the whole database), if it does."""
    for start, fields in _stanzas(text):
        if "package" not in fields:
            return f"line {start}: a record without a Package field"
        state = _state(fields)
        if "status" in fields and (len(state) != 3 or state[0] not in _WANT or state[1] not in _EFLAG
                                   or state[2] not in _STATES):
            return f"line {start}: Status {fields['status'][:60]!r} is not a dpkg state"
    return None


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
        "unreadable": "files that could not be read to be hashed (permission denied, I/O error)",
    },
)

_MD5_LEN = 32
_CHUNK = 1 << 20
# Debian policy 5.6.1, with an optional :arch; the name becomes part of an info/ file name
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?\Z")


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


def _instances(ctx: FactContext, name: str) -> list[str]:
    """The info/ basenames of a package: `name`, or `name:arch` for each Multi-Arch: same
    instance dpkg records (libc6:amd64 and libc6:i386)."""

    def exists(base: str) -> bool:
        return ctx.exists(f"{INFO}/{base}.md5sums") or ctx.exists(f"{INFO}/{base}.list")

    if exists(name):
        return [name]
    base, _, arch = name.partition(":")
    if arch:
        return [base] if exists(base) else []
    archs = sorted({p.arch for p in ctx.fact("packages", ()) if p.name == name and p.arch})
    return [f"{name}:{a}" for a in archs if exists(f"{name}:{a}")]


def _md5sums(ctx: FactContext, path: str) -> dict[str, tuple[str, int]] | None:
    """path -> (md5, line) of an md5sums file, or None when it does not exist. A malformed line
    makes the fact an evaluation error, as it makes dpkg --verify stop."""
    text = ctx.read_text(path)
    if text is None:
        return None
    out: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        digest, sep, name = line[:_MD5_LEN], line[_MD5_LEN : _MD5_LEN + 2], line[_MD5_LEN + 2 :]
        if sep != "  " or not name.strip("/") or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
            raise EvaluationError(f"{path}:{n}: not an md5sums line ('<md5>  <path>')")
        out[_norm(name)] = (digest.lower(), n)
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
    """What `dpkg --verify` says of one listed path: None (fine), "missing", "modified" or
    "unreadable". Only `lstat`: a hashed path that is now a symlink is modified whatever it
    points to (dpkg's `M` flag), so no final symlink is ever followed, in or out of the root."""
    try:
        st = ctx.lstat(path)
    except EvaluationError:  # a symlink loop among the parent directories
        return "missing"
    except OSError as e:
        return "unreadable" if e.errno in (errno.EACCES, errno.EPERM) else "missing"
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
        return "modified" if e.errno == errno.ELOOP else "unreadable"
    return None if h.hexdigest() == digest else "modified"


def collect_package_files(ctx: FactContext, name: str) -> PackageFiles:
    if not _PACKAGE_NAME.match(name):
        raise EvaluationError(f"package_files({name!r}): not a Debian package name")
    diversions: dict[str, tuple[str, str]] = ctx.fact("_dpkg_diversions", ())
    owner = name.partition(":")[0]
    results: dict[str, list[str]] = {"modified": [], "missing": [], "unreadable": []}
    recorded: dict[str, str] = {}
    seen: set[str] = set()
    exists = False
    checked = 0
    origin = ""
    for base in _instances(ctx, name):
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
            if div is not None and div[1] != owner:
                target = div[0]
            verdict = _verify(ctx, target, digest[0] if digest else None)
            if digest is not None:
                checked += 1
            if verdict is not None:
                results[verdict].append(target)
                recorded[target] = at(md5_path, digest[1]) if digest else at(where_listed, n)
    if not origin:
        origin = f"{INFO}/{name}.md5sums (absent)"
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


def collect_packages(ctx: FactContext) -> list[Package]:
    """The packages of the status file, with dpkg's journal applied as dpkg-query applies it:
    each entry of /var/lib/dpkg/updates (all-digit names, in order) replaces the records of
    the packages it names; a damaged one makes dpkg refuse the database (an error here)."""
    packages = parse_status(ctx.read_text(STATUS) or "")
    journal = sorted(n for n in ctx.listdir(UPDATES) if _JOURNAL_NAME.match(n))
    for name in journal:
        path = f"{UPDATES}/{name}"
        text = ctx.read_text(path) or ""
        why = _journal_error(text)
        if why is not None:
            raise EvaluationError(f"{path}: {why}: dpkg and dpkg-query refuse the database while it is there")
        same = {f.get("package") for _, f in _stanzas(text) if f.get("multi-arch") == "same"}
        for p in parse_status(text, path):
            # a record replaces the package's (of its architecture, for a Multi-Arch: same one)
            packages = [q for q in packages if q.name != p.name or (p.name in same and q.arch != p.arch)] + [p]
    return packages


def collect_package(ctx: FactContext, name: str) -> Package:
    hit = ctx.fact("_package_index", ()).get(name)
    if hit is not None:
        return hit
    return Package(name, None, None, "not-installed", False, None, 0)


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
