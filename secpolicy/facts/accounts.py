"""`users`, `user(name)`, `groups`, `group(name)`: accounts from the root's passwd, shadow and
group files, each field knowing the file and line it came from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, INT, STR, ListType, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import C_SPACE, at, c_lines, parse_int

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "ACCOUNT_CONFLICTS",
    "GROUP",
    "USER",
    "Group",
    "User",
    "hash_algorithm",
    "id_names",
    "password_status",
    "register",
]

USER = ObjectType(
    "user",
    {
        "name": STR,
        "uid": INT,
        "gid": INT,
        "gecos": STR,
        "home": STR,
        "shell": STR,
        "password": STR,
        "password_status": STR,
        "hash_algorithm": STR,
        "last_change": INT,
        "min_days": INT,
        "max_days": INT,
        "warn_days": INT,
        "inactive": INT,
        "expire": INT,
        "groups": ListType(STR),
        "primary_group": STR,
    },
    doc="an account from /etc/passwd with its /etc/shadow entry and group memberships",
    field_docs={
        "password": "the passwd file's password field (`x` when the hash is in shadow)",
        "password_status": '"set", "locked" (`!` or `*` prefix), "empty", or "none" (no shadow entry)',
        "hash_algorithm": "yescrypt, sha512, sha256, md5, bcrypt, des, ... or null when no hash",
        "groups": "the primary group's name first, then supplementary groups from /etc/group",
    },
)

GROUP = ObjectType(
    "group",
    {"name": STR, "gid": INT, "members": ListType(STR), "password": STR},
    doc="a group from /etc/group",
)

ACCOUNT_CONFLICTS = ObjectType(
    "account_conflicts",
    {
        "duplicate_uids": ListType(STR),
        "duplicate_gids": ListType(STR),
        "duplicate_user_names": ListType(STR),
        "duplicate_group_names": ListType(STR),
        "users_without_group": ListType(STR),
        "empty_shadow_passwords": ListType(STR),
    },
    doc="what the account files share or lack, found in one pass (CIS 7.2.2, 7.2.3, 7.2.5 to 7.2.8)",
    field_docs={
        "duplicate_uids": 'each uid two or more passwd lines carry, as "1001: bob, carol"',
        "duplicate_gids": 'each gid two or more group lines carry, as "0: root, wheel0"',
        "duplicate_user_names": "each user name passwd lists more than once",
        "duplicate_group_names": "each group name /etc/group lists more than once",
        "users_without_group": 'users whose primary gid no group has, as "bob (gid 1999)"',
        "empty_shadow_passwords": "the name of each /etc/shadow entry whose password field is empty,"
        " every entry counted (a second entry for a name, or one without a passwd line, too)",
    },
)

PASSWD, SHADOW, GROUPS = "/etc/passwd", "/etc/shadow", "/etc/group"

_HASH_IDS = {
    "1": "md5",
    "2": "bcrypt",
    "2a": "bcrypt",
    "2b": "bcrypt",
    "2x": "bcrypt",
    "2y": "bcrypt",
    "3": "nthash",
    "5": "sha256",
    "6": "sha512",
    "7": "scrypt",
    "y": "yescrypt",
    "gy": "gost-yescrypt",
    "sha1": "sha1crypt",
    "md5": "sunmd5",
}
_DES = re.compile(r"[./0-9A-Za-z]{13}\Z")


def password_status(hashed: str | None) -> str:
    if hashed is None:
        return "none"
    if hashed == "":
        return "empty"
    if hashed.startswith(("!", "*")):
        return "locked"
    return "set"


def hash_algorithm(hashed: str | None) -> str | None:
    if not hashed:
        return None
    h = hashed.lstrip("!")
    if h.startswith("$"):
        ident = h[1:].split("$", 1)[0]
        return _HASH_IDS.get(ident, f"unknown(${ident}$)")
    if h.startswith("_") and len(h) == 20:
        return "bsdi-des"
    if _DES.match(h):
        return "des"
    return None


@dataclass(frozen=True)
class _ShadowEntry:
    fields: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class _GroupTable:
    groups: tuple[Group, ...]
    memberships: Mapping[str, tuple[str, ...]]


_NO_GROUPS = _GroupTable((), {})


_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_U32 = 0xFFFFFFFF


class _Reject(Exception):
    """A line glibc's parser refuses: getpwent() and friends skip it."""


def _number(line: str, pos: int, *, maybe_null: bool) -> tuple[int | None, int]:
    """nss_files' INT_FIELD (or INT_FIELD_MAYBE_NULL): strtoul(line + pos, &end, 10), which
    takes C blanks, a sign (a minus wraps round) and ASCII digits; more than 32 bits is
    refused, and the number must end the line or its field. Returns (value, next field)."""
    if maybe_null and pos >= len(line):
        raise _Reject  # "we expect some more input"
    m = _NUMBER.match(line, pos)
    value: int | None = None
    end = pos
    if m is not None:
        value = min(int(m.group(2)), 2**64 - 1)
        value = (-value) % 2**64 if m.group(1) == "-" else value
        if value > _U32:
            raise _Reject
        end = m.end()
    elif not maybe_null:
        raise _Reject
    if end < len(line):
        if line[end] != ":":
            raise _Reject
        end += 1
    return value, end


def _string(line: str, pos: int) -> tuple[str, int]:
    """nss_files' STRING_FIELD: up to the next `:` (or the end of the line)."""
    end = line.find(":", pos)
    if end == -1:
        return line[pos:], len(line)
    return line[pos:end], end + 1


def _db_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) as nss_readline() hands lines to the parser: lines end at `\n`
    only, a NUL ends the string, leading C blanks go, blank and `#` lines are skipped."""
    out = []
    for n, raw in enumerate(c_lines(text), 1):
        line = raw.lstrip(C_SPACE)
        if line and not line.startswith("#"):
            out.append((n, line))
    return out


def _passwd_entry(line: str) -> tuple[str, ...]:
    """fgetpwent_r's line parser: name, password, uid and gid (numbers, or the line is
    skipped), then gecos, home and shell, empty when the line ends early (`toor:x:0:0` is
    an account); the shell is the rest of the line, colons and all."""
    name, pos = _string(line, 0)
    password, pos = _string(line, pos)
    uid, pos = _number(line, pos, maybe_null=False)
    gid, pos = _number(line, pos, maybe_null=False)
    gecos, pos = _string(line, pos)
    home, pos = _string(line, pos)
    return (name, password, str(uid), str(gid), gecos, home, line[pos:])


def _group_entry(line: str) -> tuple[str, str, int | None, tuple[str, ...]]:
    """fgetgrent_r's line parser: name, password, gid (a number, or the line is skipped),
    then the members: the rest of the line split at commas, each without leading C blanks,
    empty ones dropped (`wheel0:x:0` is a group without members)."""
    name, pos = _string(line, 0)
    password, pos = _string(line, pos)
    gid, pos = _number(line, pos, maybe_null=False)
    members = tuple(m for m in (p.lstrip(C_SPACE) for p in line[pos:].split(",")) if m)
    return name, password, gid, members


def _shadow_entry(line: str) -> tuple[str, ...]:
    """sgetspent_r's line parser: name, hash, then last change, min and max (each empty or a
    number) and, unless the line ends there, warn, inactive, expire and the flag, which must
    end the line. An empty field where the line ends before one of these is refused (`toor:`
    is no entry)."""
    name, pos = _string(line, 0)
    hashed, pos = _string(line, pos)
    fields = [name, hashed]
    for _ in range(3):
        start = pos
        _value, pos = _number(line, pos, maybe_null=True)
        fields.append(line[start:pos].rstrip(":"))
    if line[pos:].lstrip(C_SPACE):
        for _ in range(3):
            start = pos
            _value, pos = _number(line, pos, maybe_null=True)
            fields.append(line[start:pos].rstrip(":"))
        if pos < len(line):
            m = _NUMBER.match(line, pos)
            if (m.end() if m else pos) < len(line):
                raise _Reject  # the flag ends the line: nothing, not even `:`, may follow
    return tuple(fields)


def _entries(text: str, parse: Any) -> list[tuple[Any, int]]:
    """The lines glibc reads from a passwd-style file, parsed; the NIS compat lines (`+...`,
    `-...`) stay out: nss_files never answers a lookup with them."""
    out = []
    for n, line in _db_lines(text):
        if line[0] in "+-":
            continue
        try:
            out.append((parse(line), n))
        except _Reject:
            continue
    return out


def id_names(text: str, *, group: bool) -> dict[int, str]:
    """uid (or gid) -> name as getpwuid() (getgrgid()) answers from this passwd (group) text:
    the first entry with the id wins."""
    out: dict[int, str] = {}
    if group:
        for (name, _pw, gid, _members), _n in _entries(text, _group_entry):
            if gid is not None:
                out.setdefault(gid, name)
    else:
        for fields, _n in _entries(text, _passwd_entry):
            out.setdefault(int(fields[2]), fields[0])
    return out


def _required(ctx: FactContext, path: str) -> str:
    text = ctx.read_text(path)
    if text is None:
        raise EvaluationError(f"{path} does not exist: no account can be checked without it")
    return text


@dataclass(frozen=True)
class Group:
    name: str
    gid: int | None
    members: tuple[str, ...]
    password: str
    line: int = field(default=0, compare=False)

    def describe(self) -> str:
        return f"group {self.name!r}"

    def where(self, name: str, *args: Any) -> str | None:
        return at(GROUPS, self.line)


def _passwd(ctx: FactContext) -> tuple[tuple[tuple[str, ...], int], ...]:
    return tuple(_entries(_required(ctx, PASSWD), _passwd_entry))


def _group_table(ctx: FactContext) -> _GroupTable | None:
    """/etc/group parsed, or None where the file does not exist."""
    text = ctx.read_text(GROUPS)
    if text is None:
        return None
    groups = []
    members: dict[str, list[str]] = {}
    for (name, password, gid, mem), n in _entries(text, _group_entry):
        g = Group(name, gid, mem, password, n)
        groups.append(g)
        for m in mem:
            members.setdefault(m, []).append(g.name)
    return _GroupTable(tuple(groups), {k: tuple(v) for k, v in members.items()})


def _groups(ctx: FactContext) -> tuple[Group, ...]:
    table: _GroupTable | None = ctx.fact("_groups", ())
    if table is None:
        _required(ctx, GROUPS)  # raises: no group can be checked without the file
    assert table is not None
    return table.groups


def _memberships(ctx: FactContext) -> _GroupTable:
    """The groups users belong to: none where /etc/group does not exist (glibc finds none)."""
    return ctx.fact("_groups", ()) or _NO_GROUPS


def _shadow(ctx: FactContext) -> dict[str, _ShadowEntry]:
    out: dict[str, _ShadowEntry] = {}
    for parts, n in _entries(_required(ctx, SHADOW), _shadow_entry):
        out.setdefault(parts[0], _ShadowEntry(parts, n))
    return out


class User:
    """One passwd entry. Shadow fields are read on first use, so a scan that never asks for
    them does not need read access to /etc/shadow."""

    _SHADOW_FIELDS = ("last_change", "min_days", "max_days", "warn_days", "inactive", "expire")

    def __init__(
        self, ctx: FactContext, parts: tuple[str, ...], line: int, tables: _GroupTable
    ) -> None:
        self._ctx = ctx
        self._line = line
        self.name = parts[0]
        self.password = parts[1]
        self.uid = parse_int(parts[2])
        self.gid = parse_int(parts[3])
        self.gecos = parts[4]
        self.home = parts[5]
        self.shell = parts[6]
        primary = next((g.name for g in tables.groups if g.gid == self.gid), None)
        self.primary_group = primary
        extra = [g for g in tables.memberships.get(self.name, ()) if g != primary]
        self.groups = tuple(([primary] if primary else []) + extra)

    def describe(self) -> str:
        return f"user {self.name!r}"

    def _entry(self) -> _ShadowEntry | None:
        try:
            return self._ctx.fact("_shadow", ()).get(self.name)
        except EvaluationError as e:
            raise EvaluationError(f"user {self.name!r}: {e.message}") from None

    def _hash(self) -> str | None:
        if self.password not in ("x", "*x*"):
            return self.password  # the hash is in passwd itself (no shadow in use)
        entry = self._entry()
        return None if entry is None else entry.fields[1]

    @property
    def password_status(self) -> str:
        return password_status(self._hash())

    @property
    def hash_algorithm(self) -> str | None:
        return hash_algorithm(self._hash())

    def _shadow_int(self, index: int) -> int | None:
        entry = self._entry()
        if entry is None or len(entry.fields) <= index:
            return None
        return parse_int(entry.fields[index])

    @property
    def last_change(self) -> int | None:
        return self._shadow_int(2)

    @property
    def min_days(self) -> int | None:
        return self._shadow_int(3)

    @property
    def max_days(self) -> int | None:
        return self._shadow_int(4)

    @property
    def warn_days(self) -> int | None:
        return self._shadow_int(5)

    @property
    def inactive(self) -> int | None:
        return self._shadow_int(6)

    @property
    def expire(self) -> int | None:
        return self._shadow_int(7)

    def where(self, name: str, *args: Any) -> str | None:
        if name in self._SHADOW_FIELDS or (
            name in ("password_status", "hash_algorithm") and self.password in ("x", "*x*")
        ):
            entry = self._entry()
            return at(SHADOW, entry.line) if entry else f"{SHADOW} (no entry for {self.name})"
        if name in ("groups", "primary_group"):
            return GROUPS
        return at(PASSWD, self._line)


def collect_users(ctx: FactContext) -> list[User]:
    tables = _memberships(ctx)
    return [User(ctx, parts, n, tables) for parts, n in ctx.fact("_passwd", ())]


def collect_user(ctx: FactContext, name: str) -> User | None:
    return next((u for u in ctx.fact("users", ()) if u.name == name), None)


def collect_groups(ctx: FactContext) -> list[Group]:
    return list(_groups(ctx))


def collect_group(ctx: FactContext, name: str) -> Group | None:
    return next((g for g in _groups(ctx) if g.name == name), None)


class AccountConflicts:
    """Each field is found when first asked, from the file(s) it needs: the passwd checks
    need no /etc/group and the group checks no /etc/passwd."""

    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        self._where: dict[str, str] = {}

    def _users(self) -> list[tuple[str, int | None, int | None, int]]:
        return [
            (parts[0], parse_int(parts[2]), parse_int(parts[3]), n)
            for parts, n in self._ctx.fact("_passwd", ())
        ]

    @property
    def duplicate_uids(self) -> tuple[str, ...]:
        return self._dups("duplicate_uids", PASSWD, [(u[1], u[0], u[3]) for u in self._users()])

    @property
    def duplicate_user_names(self) -> tuple[str, ...]:
        users = self._users()
        return self._dups("duplicate_user_names", PASSWD, [(u[0], u[0], u[3]) for u in users])

    @property
    def duplicate_gids(self) -> tuple[str, ...]:
        groups = _groups(self._ctx)
        return self._dups("duplicate_gids", GROUPS, [(g.gid, g.name, g.line) for g in groups])

    @property
    def duplicate_group_names(self) -> tuple[str, ...]:
        groups = _groups(self._ctx)
        return self._dups(
            "duplicate_group_names", GROUPS, [(g.name, g.name, g.line) for g in groups]
        )

    @property
    def users_without_group(self) -> tuple[str, ...]:
        users = self._users()
        gids = {g.gid for g in _memberships(self._ctx).groups}
        missing = [(name, gid, n) for name, _uid, gid, n in users if gid not in gids]
        self._where["users_without_group"] = (
            ", ".join(at(PASSWD, n) for *_x, n in missing) or f"{PASSWD}, {GROUPS}"
        )
        return tuple(f"{name} (gid {gid})" for name, gid, _n in missing)

    @property
    def empty_shadow_passwords(self) -> tuple[str, ...]:
        # CIS 7.2.2 reads every line of /etc/shadow, not only the entry getspnam() returns first
        hits = [
            (parts[0], n)
            for parts, n in _entries(_required(self._ctx, SHADOW), _shadow_entry)
            if parts[1] == ""
        ]
        self._where["empty_shadow_passwords"] = ", ".join(at(SHADOW, n) for _name, n in hits) or SHADOW
        return tuple(name for name, _n in hits)

    def _dups(self, field: str, path: str, items: list[tuple[Any, str, int]]) -> tuple[str, ...]:
        by: dict[Any, list[tuple[str, int]]] = {}
        for key, name, line in items:
            by.setdefault(key, []).append((name, line))
        dups = {k: v for k, v in by.items() if len(v) > 1}
        self._where[field] = ", ".join(at(path, n) for v in dups.values() for _name, n in v) or path
        return tuple(f"{k}: {', '.join(name for name, _ in v)}" for k, v in dups.items())

    def describe(self) -> str:
        return "account_conflicts"

    def where(self, name: str, *args: Any) -> str | None:
        if name not in self._where and isinstance(getattr(type(self), name, None), property):
            try:
                getattr(self, name)
            except EvaluationError:
                pass
        return self._where.get(name, PASSWD)


def register(reg: FactRegistry) -> None:
    reg.register(
        "account_conflicts",
        AccountConflicts,
        returns=ACCOUNT_CONFLICTS,
        doc="duplicate ids and names, users without a primary group (one pass over the files)",
    )
    reg.register(
        "users",
        collect_users,
        returns=ListType(USER),
        doc="accounts from /etc/passwd (+ shadow, group)",
    )
    reg.register(
        "user", collect_user, params=(STR,), returns=USER, doc="the account named so, or null"
    )
    reg.register("groups", collect_groups, returns=ListType(GROUP), doc="groups from /etc/group")
    reg.register(
        "group", collect_group, params=(STR,), returns=GROUP, doc="the group named so, or null"
    )
    reg.register("_passwd", _passwd, returns=ANY, doc="internal: parsed passwd")
    reg.register("_groups", _group_table, returns=ANY, doc="internal: parsed group")
    reg.register("_shadow", _shadow, returns=ANY, doc="internal: parsed shadow")
