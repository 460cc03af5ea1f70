"""`pam_limits(user)`: the resource limits pam_limits (Linux-PAM 1.5.2) sets for a user's
session from /etc/security/limits.conf and limits.d, read as the module reads them.

- Files: limits.conf, then limits.d/*.conf sorted by name; each line from fgets() into 1024
  bytes (a longer line comes in pieces read as lines), cut at `#`, split at C blanks into
  domain, type, item and value (more words are ignored, fewer drop the line). Type, item and
  value are read without regard to case.
- A value is `unlimited`, `infinity`, `-` or `-1` (no limit), else the number strtoul() reads
  at its start (a negative one wraps to no limit); one with no number is ignored.
- Domains: the user's name, `:uid`, `min:max` and `min:` are user entries; `@group` (the user
  a member), `@:gid` (any of the user's groups) and `@min:max`, `@min:` (the primary group)
  are group entries; `*` is the default. A user entry beats a group entry, which beats the
  default, whatever the order; among entries of one kind the last one wins. A `-` entry
  whose soft limit a stronger entry has set sets neither. A malformed range drops the line;
  `%` entries are for maxlogins only. root gets no `*` and no `@group` entries, and its gid
  entries are as strong as its user entries (the last one wins).
- `DOMAIN -` (two words, the second starting with `-`) for the user means no limits at all:
  pam_limits stops reading and sets nothing.

tests/conformance runs pam_limits itself through pamtester on generated files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import INT, STR, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import C_SPACE, at, fgets_lines

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["PAM_LIMITS", "PamLimits", "register"]

PAM_LIMITS = ObjectType(
    "pam_limits",
    {"user": STR, "exempt": STR},
    methods={
        "hard": Method((STR,), INT, "the hard limit pam_limits sets for an item (`core`, `nofile`, ...) in the "
                       "file's units (KiB for core), -1 for unlimited; null when no line sets it"),
        "soft": Method((STR,), INT, "the soft limit, as `hard`"),
    },
    doc="the limits pam_limits sets for a user's session (/etc/security/limits.conf and limits.d)",
    field_docs={"exempt": "where a `DOMAIN -` line lifts every limit for the user (then none is set), or null"},
)

LIMITS_CONF = "/etc/security/limits.conf"
LIMITS_D = "/etc/security/limits.d"
_USER, _GROUP, _DEFAULT = 0, 1, 4  # pam_limits' sources: a stronger (lower) one is never overridden
_STRTOUL = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_RANGE = re.compile(r"([0-9]*):([0-9]*)")
_C_SPLIT = re.compile(f"[{re.escape(C_SPACE)}]+")
_NO_LIMIT = ("-1", "-", "unlimited", "infinity")
_ULONG = 1 << 64


@dataclass(frozen=True)
class _Setting:
    value: int
    source: int
    where: str


def _value(text: str) -> int | None:
    """A limit in the file's units, -1 for none; None where pam_limits refuses the value."""
    if text in _NO_LIMIT:
        return -1
    m = _STRTOUL.match(text)
    if m is None:
        return None
    n = min(int(m.group(2)), _ULONG - 1)
    if m.group(1) == "-" and n:
        n = _ULONG - n  # strtoul() negates in unsigned arithmetic
    return -1 if n >= _ULONG // 1024 else n  # RLIM_INFINITY once scaled (core: KiB)


def _range(domain: str) -> tuple[int | None, int | None] | None:
    """(min, max) of a `min:max` domain (either None when left out), or None for a domain with
    no `:`; raises ValueError where pam_limits finds the range malformed."""
    if ":" not in domain:
        return None
    m = _RANGE.fullmatch(domain[1:] if domain[0] in "@%" else domain)
    if m is None or not m.group(2) and not m.group(1):
        raise ValueError(domain)
    return (int(m.group(1)) if m.group(1) else None), (int(m.group(2)) if m.group(2) else None)


class PamLimits:
    def __init__(self, ctx: FactContext, user: str) -> None:
        account = ctx.fact("user", (user,))
        if account is None:
            raise EvaluationError(f"pam_limits: no user {user!r} in /etc/passwd")
        self.user = user
        self._uid, self._gid, self._root = account.uid, account.gid, account.uid == 0
        self._groups = set(account.groups)
        names = {g.name: g.gid for g in ctx.fact("groups", ())}
        self._gids = {account.gid} | {names[g] for g in self._groups if g in names}
        self._settings: dict[tuple[str, str], _Setting] = {}
        self.exempt: str | None = None
        for path in [LIMITS_CONF, *sorted(ctx.glob(f"{LIMITS_D}/*.conf"))]:
            for n, line in fgets_lines(ctx.read_text(path) or "", 1024):
                if self._line(line.lstrip(C_SPACE).split("#", 1)[0], at(path, n)):
                    self._settings.clear()
                    self.exempt = at(path, n)
                    return

    def _line(self, line: str, where: str) -> bool:
        """Apply one line; True for a no-limit line that names the user."""
        words = [w for w in _C_SPLIT.split(line) if w]
        if len(words) < 2:
            return False
        kind = words[1].lower()
        try:
            bounds = _range(words[0])
        except ValueError:
            return False
        if len(words) == 2:  # `DOMAIN -`: the user's name, a group or a uid range (not `*`)
            domain = words[0]
            return kind.startswith("-") and (
                domain == self.user
                or (self._source(domain, bounds) is not None if domain.startswith("@") else self._uid_in(bounds))
            )
        source = self._source(words[0], bounds)
        if len(words) < 4 or source is None or kind not in ("soft", "hard", "-"):
            return False
        value = _value(words[3].lower())
        if value is None:
            return False
        item = words[2].lower()
        for k in (("soft", "hard") if kind == "-" else (kind,)):
            old = self._settings.get((item, k))
            if old is not None and old.source < source:
                break  # process_limit() returns: for `-`, a soft limit set by a stronger entry
                # keeps the hard one from being set too
            self._settings[(item, k)] = _Setting(value, source, where)
        return False

    def _source(self, domain: str, bounds: tuple[int | None, int | None] | None) -> int | None:
        """The source an entry for `domain` has for this user, or None when it is not theirs."""
        if domain == self.user:
            return _USER
        if domain.startswith("%"):
            return None  # maxlogins only
        if domain.startswith("@"):
            if bounds is None:
                return _GROUP if not self._root and domain[1:] in self._groups else None
            low, high = bounds
            group = _USER if self._root else _GROUP  # for root a gid entry is as strong as a user entry
            if low is None:
                return group if high in self._gids else None
            return group if self._gid >= low and (high is None or self._gid <= high) else None
        if bounds is None:
            return _DEFAULT if domain == "*" and not self._root else None
        return _USER if self._uid_in(bounds) else None

    def _uid_in(self, bounds: tuple[int | None, int | None] | None) -> bool:
        if bounds is None:
            return False
        low, high = bounds
        if low is None:
            return self._uid == high
        return self._uid >= low and (high is None or self._uid <= high)

    def _get(self, item: str, kind: str) -> int | None:
        hit = self._settings.get((item.lower(), kind))
        return None if hit is None else hit.value

    def hard(self, item: str) -> int | None:
        return self._get(item, "hard")

    def soft(self, item: str) -> int | None:
        return self._get(item, "soft")

    def describe(self) -> str:
        return f"pam_limits for {self.user}"

    def where(self, name: str, *args: Any) -> str | None:
        if self.exempt is not None:
            return f"{self.exempt} (no limits for {self.user}: pam_limits sets none)"
        if name in ("hard", "soft") and args:
            hit = self._settings.get((str(args[0]).lower(), name))
            if hit is not None:
                return hit.where
            return f"{LIMITS_CONF}, {LIMITS_D}/*.conf (no line sets {args[0]} for {self.user})"
        return f"{LIMITS_CONF}, {LIMITS_D}/*.conf"


def register(reg: FactRegistry) -> None:
    reg.register(
        "pam_limits",
        PamLimits,
        params=(STR,),
        returns=PAM_LIMITS,
        doc="the limits pam_limits sets for a user's session",
    )
