"""Key/value configuration facts: `login_defs`, `pwquality`, `faillock`, `auditd_conf` and
`journald`, each read with its program's own syntax, file order and override rules."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, MODE, SIZE, STR, ListType, Method, ObjectType
from secpolicy.facts._common import at, dropin_files

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["KV", "KvConfig", "c_integer", "parse_size", "register"]

KV = ObjectType(
    "kv",
    {"exists": BOOL, "path": STR, "files": ListType(STR)},
    methods={
        "option": Method((STR,), STR, "the effective value of a key, or null when unset"),
        "int": Method((STR,), INT, "the value as an integer (null when unset or not a number)"),
        "mode": Method((STR,), MODE, "the value read as octal permission bits (UMASK 027)"),
        "size": Method((STR,), SIZE, "the value as bytes (500M, 1G; K/M/G/T are powers of 1024)"),
        "has": Method((STR,), BOOL, "whether the key is set at all"),
    },
    doc="a key/value configuration file and its drop-ins",
)


@dataclass(frozen=True)
class _Entry:
    value: str
    source: str


def c_integer(text: str | None) -> int | None:
    """An integer as C's strtol(s, NULL, 0) reads it: `0x1f` hex, `022` octal, `-5` decimal."""
    if text is None:
        return None
    s = text.strip()
    neg = s.startswith("-")
    body = s[1:] if neg or s.startswith("+") else s
    try:
        if body.lower().startswith("0x"):
            n = int(body, 16)
        elif len(body) > 1 and body.startswith("0"):
            n = int(body, 8)
        else:
            n = int(body, 10)
    except ValueError:
        return None
    return -n if neg else n


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTPE]?)(i?B?)\Z", re.IGNORECASE)
_SIZE_POW = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    m = _SIZE.match(text.strip())
    if not m:
        return None
    return int(float(m.group(1)) * (1024 ** _SIZE_POW[m.group(2).upper()]))


class KvConfig:
    """Settings from one or more files in the order the program applies them (later wins)."""

    def __init__(
        self,
        name: str,
        path: str,
        files: list[str],
        entries: dict[str, _Entry],
        exists: bool,
        *,
        ignore_case: bool,
        int_reader: Callable[[str | None], int | None],
    ) -> None:
        self._name = name
        self.path = path
        self.files = files
        self.exists = exists
        self._entries = entries
        self._lower = {k.lower(): v for k, v in entries.items()} if ignore_case else None
        self._int = int_reader

    def describe(self) -> str:
        return self._name

    def _get(self, key: str) -> _Entry | None:
        hit = self._entries.get(key)
        if hit is None and self._lower is not None:
            hit = self._lower.get(key.lower())
        return hit

    def option(self, key: str) -> str | None:
        e = self._get(key)
        return None if e is None else e.value

    def int(self, key: str) -> int | None:
        return self._int(self.option(key))

    def mode(self, key: str) -> builtins.int | None:
        v = self.option(key)
        if v is None:
            return None
        try:
            return int(v, 8)
        except ValueError:
            return None

    def size(self, key: str) -> builtins.int | None:
        return parse_size(self.option(key))

    def has(self, key: str) -> bool:
        return self._get(key) is not None

    def where(self, name: str, *args: Any) -> str | None:
        if args:
            e = self._get(str(args[0]))
            if e is not None:
                return e.source
            return f"{self.path} (not set)" if self.exists else f"{self.path} (absent)"
        return self.path


def _read_kv(
    ctx: FactContext,
    paths: Iterable[str],
    *,
    sep: str | None,
    flags: bool = False,
    section: str | None = None,
    entries: dict[str, _Entry] | None = None,
) -> tuple[dict[str, _Entry], list[str]]:
    """Parse `KEY value` (sep None) or `key = value` lines; with `section`, only that INI
    section counts; with `flags`, a bare word means "true"."""
    out: dict[str, _Entry] = {} if entries is None else entries
    read: list[str] = []
    for path in paths:
        text = ctx.read_text(path)
        if text is None:
            continue
        read.append(path)
        current: str | None = None
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if section is not None and line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip()
                continue
            if section is not None and current != section:
                continue
            if sep is None:
                parts = line.split(None, 1)
                key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
            else:
                key, has_sep, value = line.partition(sep)
                key, value = key.strip(), value.strip()
                if not has_sep:
                    if not flags:
                        continue
                    value = "true"
            out[key] = _Entry(value, at(path, n))
    return out, read


def _config(
    ctx: FactContext,
    name: str,
    main: str,
    files: list[str],
    *,
    sep: str | None,
    flags: bool = False,
    section: str | None = None,
    ignore_case: bool = False,
    int_reader: Callable[[str | None], int | None] = lambda s: None if s is None else _dec(s),
) -> KvConfig:
    entries, read = _read_kv(ctx, files, sep=sep, flags=flags, section=section)
    return KvConfig(
        name, main, read, entries, main in read, ignore_case=ignore_case, int_reader=int_reader
    )


def _dec(s: str) -> int | None:
    try:
        return int(s.strip(), 10)
    except ValueError:
        return None


def collect_login_defs(ctx: FactContext) -> KvConfig:
    # shadow-utils' getdef: `NAME value`, the last definition wins, numbers read by strtol(.., 0)
    return _config(
        ctx, "login_defs", "/etc/login.defs", ["/etc/login.defs"], sep=None, int_reader=c_integer
    )


def collect_pwquality(ctx: FactContext) -> KvConfig:
    # libpwquality reads pwquality.conf.d/*.conf in ASCII order first, then pwquality.conf
    main = "/etc/security/pwquality.conf"
    drop = [p for p in ctx.glob("/etc/security/pwquality.conf.d/*.conf")]
    return _config(
        ctx, "pwquality", main, sorted(drop) + [main], sep="=", flags=True, ignore_case=True
    )


def collect_faillock(ctx: FactContext) -> KvConfig:
    main = "/etc/security/faillock.conf"
    return _config(ctx, "faillock", main, [main], sep="=", flags=True, ignore_case=True)


def collect_auditd_conf(ctx: FactContext) -> KvConfig:
    main = "/etc/audit/auditd.conf"
    return _config(ctx, "auditd_conf", main, [main], sep="=", ignore_case=True)


JOURNALD_DIRS = (
    "/etc/systemd/journald.conf.d",
    "/run/systemd/journald.conf.d",
    "/usr/lib/systemd/journald.conf.d",
)


def collect_journald(ctx: FactContext) -> KvConfig:
    # systemd: the main file, then drop-ins from all journald.conf.d dirs sorted by name
    main = "/etc/systemd/journald.conf"
    files = [main] + dropin_files(ctx, JOURNALD_DIRS, ".conf")
    return _config(ctx, "journald", main, files, sep="=", section="Journal")


def register(reg: FactRegistry) -> None:
    reg.register(
        "login_defs", collect_login_defs, returns=KV, doc="/etc/login.defs (last definition wins)"
    )
    reg.register(
        "pwquality",
        collect_pwquality,
        returns=KV,
        doc="/etc/security/pwquality.conf and pwquality.conf.d",
    )
    reg.register(
        "faillock",
        collect_faillock,
        returns=KV,
        doc="/etc/security/faillock.conf (bare flags read true)",
    )
    reg.register("auditd_conf", collect_auditd_conf, returns=KV, doc="/etc/audit/auditd.conf")
    reg.register(
        "journald", collect_journald, returns=KV, doc="journald.conf [Journal] and its drop-ins"
    )
