"""`sshd`: the OpenSSH server configuration parsed the way sshd reads it (first value wins,
`Include` followed, `Match` blocks kept apart) with values as `sshd -T` prints them, and every
value a Match block can give some connection."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at
from secpolicy.facts.sshd_defaults import DEFAULTS, DEFAULTS_VERSION, GLOBAL_ONLY, KEYWORDS

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["SSHD", "SSHD_MATCH", "SSHD_VALUE", "SshdConfig", "SshdValue", "parse_sshd", "register"]

SSHD_MATCH = ObjectType(
    "sshd_match",
    {"criteria": STR, "line": STR},
    methods={
        "option": Method((STR,), STR, "the value a keyword is set to inside this block, or null")
    },
    doc="a Match block of sshd_config",
)

SSHD_VALUE = ObjectType(
    "sshd_value",
    {"value": STR, "criteria": STR, "source": STR},
    doc="a value a keyword takes for some connections",
    field_docs={
        "value": "as `sshd -T -C ...` prints it for the connections concerned",
        "criteria": "the Match criteria that give it, or null for the global value (or default)",
        "source": "file:line that sets it, or the default it comes from",
    },
)

SSHD = ObjectType(
    "sshd",
    {
        "exists": BOOL,
        "path": STR,
        "files": ListType(STR),
        "matches": ListType(SSHD_MATCH),
        "errors": ListType(STR),
    },
    methods={
        "option": Method(
            (STR,),
            STR,
            "the value `sshd -T` prints (first value wins, `Match all` applied, defaults)",
        ),
        "values": Method(
            (STR,),
            ListType(SSHD_VALUE),
            "every value the keyword takes for some connection: option() and each Match block that can change it",
        ),
        "is_set": Method((STR,), BOOL, "whether a file sets the keyword globally (not a default)"),
    },
    doc="the OpenSSH server configuration (/etc/ssh/sshd_config and its Includes)",
    field_docs={
        "errors": "lines sshd refuses, as file:line: message in sshd's words (sshd -T fails and"
        " sshd does not start with this configuration)",
    },
)

CONFIG = "/etc/ssh/sshd_config"
_MAX_INCLUDE_DEPTH = 16  # sshd's own limit (SERVCONF_MAX_DEPTH)

# Old names sshd still accepts for the same setting.
ALIASES = {
    "challengeresponseauthentication": "kbdinteractiveauthentication",
    "skeyauthentication": "kbdinteractiveauthentication",
    "pubkeyacceptedkeytypes": "pubkeyacceptedalgorithms",
    "hostbasedacceptedkeytypes": "hostbasedacceptedalgorithms",
    "dsaauthentication": "pubkeyauthentication",
    "authorizedkeysfile2": "authorizedkeysfile",
    "keepalive": "tcpkeepalive",
    "gssapicleanupcreds": "gssapicleanupcredentials",
}
# Keywords that add up across lines instead of keeping the first.
ACCUMULATE = {
    "acceptenv",
    "allowusers",
    "denyusers",
    "allowgroups",
    "denygroups",
    "hostkey",
    "hostcertificate",
    "listenaddress",
    "port",
    "subsystem",
    "setenv",
}
# Keywords sshd 9.2 sets on every occurrence (its parser has no first-value guard for them):
# the last value wins, as `sshd -T` shows.
LAST_WINS = {
    "fingerprinthash",
    "maxstartups",
    "ipqos",
    "persourcemaxstartups",
    "persourcenetblocksize",
    "streamlocalbindmask",
}
# The keywords sshd reads from a table of words (servconf.c's multistate tables): each word
# it accepts, compared case-insensitively, and the word `sshd -T` prints for it (the first of
# the table with the same meaning: `delayed` is printed `yes`). Any other word is refused.
_FLAG = {"yes": "yes", "no": "no"}
_FORWARDING = {"yes": "yes", "all": "yes", "no": "no", "local": "local", "remote": "remote"}
_CHOICES: dict[str, dict[str, str]] = {
    **dict.fromkeys(
        [
            "allowagentforwarding", "debianbanner", "disableforwarding", "exposeauthinfo",
            "gssapiauthentication", "gssapicleanupcredentials", "gssapikeyexchange",
            "gssapistorecredentialsonrekey", "gssapistrictacceptorcheck", "hostbasedauthentication",
            "hostbasedusesnamefrompacketonly", "ignoreuserknownhosts", "kbdinteractiveauthentication",
            "kerberosauthentication", "kerberosorlocalpasswd", "kerberosticketcleanup",
            "passwordauthentication", "permitemptypasswords", "permittty", "permituserrc", "printlastlog",
            "printmotd", "pubkeyauthentication", "streamlocalbindunlink", "strictmodes", "tcpkeepalive",
            "usedns", "usepam", "x11forwarding", "x11uselocalhost",
        ],
        _FLAG,
    ),
    "addressfamily": {"inet": "inet", "inet6": "inet6", "any": "any"},
    "permitrootlogin": {
        # sshd -T names PERMIT_NO_PASSWD by the first entry of its table
        "without-password": "without-password", "prohibit-password": "without-password",
        "forced-commands-only": "forced-commands-only", "yes": "yes", "no": "no",
    },
    "compression": {"yes": "yes", "delayed": "yes", "no": "no"},
    "gatewayports": {"clientspecified": "clientspecified", "yes": "yes", "no": "no"},
    "allowtcpforwarding": _FORWARDING,
    "allowstreamlocalforwarding": _FORWARDING,
    "ignorerhosts": {"yes": "yes", "no": "no", "shosts-only": "shosts-only"},
}
# PermitTunnel's words are compared as they are (strcmp): `Yes` is refused.
_TUNNEL = {"yes", "no", "point-to-point", "ethernet"}
# PermitUserEnvironment is `yes`, `no` (strcmp again) or a pattern list printed as written:
# `NO` allows the variable NO. Its value is kept as it is.
_UPPER = {"loglevel", "syslogfacility", "fingerprinthash"}
_TIME = {"logingracetime", "clientaliveinterval", "unusedconnectiontimeout"}
_ALGORITHMS = {
    "ciphers",
    "macs",
    "kexalgorithms",
    "hostkeyalgorithms",
    "pubkeyacceptedalgorithms",
    "hostbasedacceptedalgorithms",
    "casignaturealgorithms",
    "gssapikexalgorithms",
}
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# strtol(p, &endp, 10) then one unit letter: C blanks, a sign, ASCII digits
_TIME_PART = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)([smhdwSMHDW]?)")
_STRTOLL = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_INT_MAX = 2**31 - 1


def canonical_keyword(name: str) -> str:
    k = name.strip().lower()
    return ALIASES.get(k, k)


def _convtime(value: str) -> int | None:
    """misc.c convtime(): `1m30s`, `90` as seconds, None where sshd says -1 (a negative part,
    a stray character, more than INT_MAX)."""
    if not value:
        return None
    pos, total = 0, 0
    while pos < len(value):
        m = _TIME_PART.match(value, pos)
        if m is None:
            return None
        secs, multiplier = int(m.group(2)), _TIME_UNITS[m.group(3).lower()]
        if m.group(1) == "-" and secs:
            return None
        if secs > _INT_MAX // multiplier:
            return None
        secs *= multiplier
        if total > _INT_MAX - secs:
            return None
        total += secs
        pos = m.end()
    return total


def _seconds(value: str) -> str:
    """sshd's time format (`1m30s`, `90`) as a number of seconds, as `sshd -T` prints it."""
    if value.lower() == "none":
        return "none"
    secs = _convtime(value)
    return value if secs is None else str(secs)


def _strtonum(text: str | None) -> int | str:
    """misc.c atoi_err(): strtonum(text, 0, INT_MAX), decimal only (`04` is 4, `0x4` and
    `4#x` are refused): the number, or sshd's word for what is wrong with it."""
    if not text:
        return "missing"
    if _STRTOLL.fullmatch(text) is None:
        return "invalid"
    n = int(text.strip(" \t\n\v\f\r"))
    if n < 0:
        return "too small"
    if n > _INT_MAX:
        return "too large"
    return n


def _algorithms(keyword: str, value: str) -> str:
    """`+alg` appends to, `-pattern` removes from, `^alg` prepends to the default list."""
    default = DEFAULTS.get(keyword, "").split(",") if DEFAULTS.get(keyword) else []
    if not value or value[0] not in "+-^":
        return value
    items = [i for i in value[1:].split(",") if i]
    if value[0] == "+":
        out = default + [i for i in items if i not in default]
    elif value[0] == "^":
        out = items + [d for d in default if d not in items]
    else:
        out = [d for d in default if not any(fnmatch.fnmatchcase(d, p) for p in items)]
    return ",".join(out)


# keywords sshd 9.2 reads with atoi_err (strtonum, 0 to INT_MAX) and convtime; each takes
# exactly one argument
_INTEGER = {
    "maxauthtries",
    "maxsessions",
    "clientalivecountmax",
    "x11displayoffset",
    "requiredrsasize",
}
_STRICT_TIME = {"logingracetime", "clientaliveinterval"}
_MAXSTARTUPS = re.compile(  # sscanf("%d:%d:%d"): each %d skips C blanks, a ':' must follow at once
    r"[ \t\n\v\f\r]*([+-]?[0-9]+)(?::[ \t\n\v\f\r]*([+-]?[0-9]+)"
    r"(?::[ \t\n\v\f\r]*([+-]?[0-9]+))?)?"
)
_ONE_ARGUMENT = _INTEGER | _STRICT_TIME | set(_CHOICES) | {"maxstartups", "persourcemaxstartups", "permittunnel"}


def refusal(keyword: str, words: list[str]) -> str | None:
    """Why sshd refuses a line's arguments (its own message), or None. The numeric keywords
    and those that take one word of a table are checked; sshd checks more."""
    key = canonical_keyword(keyword)
    first = words[0] if words else None
    if key in _CHOICES:
        if not first:
            return "missing argument."
        if first.lower() not in _CHOICES[key]:
            return f'unsupported option "{first}".'
    elif key == "permittunnel":
        if not first:
            return f"{keyword} missing argument."
        if first not in _TUNNEL:
            return f"bad {keyword} argument {first}"
    elif key in _INTEGER or (key == "persourcemaxstartups" and first != "none"):
        n = _strtonum(first)
        if isinstance(n, str):
            return f"{keyword} integer value {n}."
    elif key in _STRICT_TIME:
        if not first:
            return "missing time value."
        if _convtime(first) is None:
            return "invalid time value."
    elif key == "maxstartups":
        if not first:
            return f"{keyword} missing argument."
        # sscanf("%d:%d:%d"): three numbers with begin <= full and 1 <= rate <= 100, or one
        m = _MAXSTARTUPS.match(first)
        if m is None or (m.group(2) is not None and m.group(3) is None):
            return f"Invalid {keyword} spec."
        if m.group(3) is not None:
            begin, rate, full = (int(g) for g in m.groups())
            if begin > full or not 1 <= rate <= 100:
                return f"Invalid {keyword} spec."
        else:
            begin = full = int(m.group(1))
        if begin <= 0 or full <= 0:
            return f"Invalid {keyword} spec."
    if key in _ONE_ARGUMENT and len(words) > 1:
        return f"keyword {keyword} extra arguments at end of line"
    return None


def normalize_value(keyword: str, value: str) -> str:
    if keyword in _CHOICES:
        v = value.lower()
        return _CHOICES[keyword].get(v, v)
    if keyword in _UPPER:
        return value.upper()
    if keyword in _TIME:
        return _seconds(value)
    if keyword in _INTEGER:
        n = _strtonum(value)
        return str(n) if isinstance(n, int) else value  # printed with %d: `04` is 4
    if keyword in _ALGORITHMS:
        return _algorithms(keyword, value)
    if keyword == "ipqos" and len(value.split()) == 1:
        return f"{value} {value}"  # one value sets both interactive and bulk traffic
    return value


@dataclass
class _Setting:
    value: str
    source: str


@dataclass
class Block:
    """The settings of one scope: the global section or one Match block."""

    criteria: str | None
    source: str | None
    settings: dict[str, _Setting] = field(default_factory=dict)

    def set(self, keyword: str, value: str, source: str) -> None:
        if keyword in ACCUMULATE:
            prev = self.settings.get(keyword)
            if keyword == "subsystem" and prev is not None:
                # one entry per subsystem name, the first one wins
                name = value.split()[0] if value.split() else ""
                if any(v.split()[0] == name for v in prev.value.split("\n") if v.split()):
                    return
            if prev is None:
                self.settings[keyword] = _Setting(value, source)
            else:
                prev.value += "\n" + value
        elif keyword not in self.settings or keyword in LAST_WINS:
            self.settings[keyword] = _Setting(value, source)

    def get(self, keyword: str) -> _Setting | None:
        return self.settings.get(keyword)


_WHITESPACE = " \t\r\n"  # sshd's WHITESPACE
_KEYWORD = re.compile(r"[A-Za-z0-9]+")


def _config_lines(text: str) -> list[str]:
    """The lines sshd parses (servconf.c): load_server_config() keeps each getline() line
    from its first character not in " \t\r" up to a NUL (strlen), so a NUL also drops the
    newline ending its line; the buffer is then cut at each `\n` only."""
    kept = (line.lstrip(" \t\r").split("\0", 1)[0] for line in re.findall(r"[^\n]*\n|[^\n]+", text))
    return "".join(kept).split("\n")


def _strdelim(s: str | None) -> tuple[str | None, str | None]:
    """misc.c strdelim(): (word, rest) split at WHITESPACE, a quote or one `=`; rest is None
    when the line ended with the word, word is None for an unmatched quote."""
    if s is None:
        return None, None
    m = re.search(r'[ \t\r\n"=]', s)
    if m is None:
        return s, None
    i = m.start()
    if s[i] == '"':
        s = s[:i] + s[i + 1 :]
        j = s.find('"', i)
        if j == -1:
            return None, None
        return s[:j], s[j + 1 :].lstrip(_WHITESPACE)
    rest = s[i + 1 :].lstrip(_WHITESPACE)
    if s[i] != "=" and rest.startswith("="):
        rest = rest[1:].lstrip(_WHITESPACE)
    return s[:i], rest


def _argv_split(s: str) -> list[str] | None:
    """misc.c argv_split(s, terminate_on_comment=1): words split at blanks and tabs only, a
    `#` starting a word ends the line (`4#x` is one word), quotes and `\\` escapes removed;
    None for an unterminated quote."""
    words: list[str] = []
    i, n = 0, len(s)
    while i < n:
        if s[i] in " \t":
            i += 1
            continue
        if s[i] == "#":
            break
        quote = ""
        word: list[str] = []
        while i < n:
            c = s[i]
            if c == "\\" and i + 1 < n and (s[i + 1] in "'\"\\" or (not quote and s[i + 1] == " ")):
                i += 1
                word.append(s[i])
            elif not quote and c in " \t":
                break
            elif not quote and c in "\"'":
                quote = c
            elif quote and c == quote:
                quote = ""
            else:
                word.append(c)
            i += 1
        if i >= n and quote:
            return None
        words.append("".join(word))
    return words


def _split_line(line: str) -> tuple[str, list[str]] | str | None:
    """servconf.c process_server_config_line_depth(): (keyword, arguments), None for a
    blank or comment line, or sshd's complaint about the line."""
    # trailing WHITESPACE and \f go (sshd's loop never looks at the first character)
    line = line[:1] + line[1:].rstrip(_WHITESPACE + "\f")
    keyword, rest = _strdelim(line)
    if keyword == "":
        keyword, rest = _strdelim(rest)
    if not keyword or keyword.startswith("#"):
        return None
    if not rest:
        return f'no argument after keyword "{keyword}"'
    words = _argv_split(rest)
    if words is None:
        return "invalid quotes"
    return keyword, words


class _Parser:
    def __init__(self, ctx: FactContext) -> None:
        self.ctx = ctx
        self.globals = Block(None, None)
        self.matches: list[Block] = []
        self.files: list[str] = []
        self.errors: list[str] = []
        # An AuthenticationMethods line sshd has applied (global, or in a `Match all` block,
        # the blocks `sshd -t` applies): after one, servconf.c refuses an "any" on any later
        # AuthenticationMethods line, in a Match block too ("any" must appear alone ...).
        self._auth_methods_applied = False

    def parse_file(self, path: str, block: Block | None, depth: int) -> None:
        if depth > _MAX_INCLUDE_DEPTH:
            raise EvaluationError(f"{path}: Include nested more than {_MAX_INCLUDE_DEPTH} deep")
        text = self.ctx.read_text(path)
        if text is None:
            return
        self.files.append(path)
        # A Match block started in an included file ends with that file, as in sshd.
        current = block
        for n, line in enumerate(_config_lines(text), 1):
            split = _split_line(line)
            if split is None:
                continue
            where = at(path, n)
            if isinstance(split, str):
                self.errors.append(f"{where}: {split}")
                continue
            keyword, words = split
            if _KEYWORD.fullmatch(keyword) is None:
                # every keyword is ASCII letters and digits, compared by strcasecmp(): a
                # `\x0cPermitRootLogin` is no keyword of sshd's (and not PermitRootLogin)
                self.errors.append(f"{where}: Bad configuration option: {keyword}")
                continue
            value = " ".join(words)
            key = canonical_keyword(keyword)
            if keyword.lower() not in KEYWORDS:
                self.errors.append(f"{where}: Bad configuration option: {keyword}")
                continue
            if current is not None and not _always(current.criteria or "") and keyword.lower() in GLOBAL_ONLY:
                self.errors.append(f"{where}: Directive '{keyword}' is not allowed within a Match block")
                continue
            if key == "match":
                current = Block(" ".join(value.split()), where)
                self.matches.append(current)
                continue
            if key == "include":
                for pattern in words:
                    full = pattern if pattern.startswith("/") else os.path.join("/etc/ssh", pattern)
                    targets = self.ctx.glob(full) if any(c in full for c in "*?[") else [full]
                    for target in targets:
                        self.parse_file(target, current, depth + 1)
                continue
            why = refusal(keyword, words)
            if why is None and key == "authenticationmethods":
                if self._auth_methods_applied and "any" in words:
                    why = '"any" must appear alone in AuthenticationMethods'
                if current is None or _always(current.criteria or ""):
                    self._auth_methods_applied = True
            if why is not None:
                self.errors.append(f"{where}: {why}")
                continue
            (current or self.globals).set(key, normalize_value(key, value), where)


class SshdMatch:
    def __init__(self, block: Block) -> None:
        self._block = block
        self.criteria = block.criteria
        self.line = block.source

    def describe(self) -> str:
        return f"Match {self.criteria}"

    def option(self, name: str) -> str | None:
        s = self._block.get(canonical_keyword(name))
        return None if s is None else s.value.replace("\n", " ")

    def where(self, name: str, *args: Any) -> str | None:
        if name == "option" and args:
            s = self._block.get(canonical_keyword(str(args[0])))
            if s is not None:
                return s.source
        return self._block.source


@dataclass(frozen=True)
class SshdValue:
    value: str
    criteria: str | None
    source: str

    def describe(self) -> str:
        return f"{self.value} ({'Match ' + self.criteria if self.criteria else 'global'})"

    def where(self, name: str, *args: Any) -> str | None:
        return self.source


def _always(criteria: str) -> bool:
    return criteria.lower() == "all"


def _never(criteria: str) -> bool:
    """A block no connection selects: a criterion whose patterns are all negated (OpenSSH's
    pattern lists match only on a positive pattern)."""
    parts = criteria.split()
    for i in range(0, len(parts) - 1, 2):
        patterns = [p for p in parts[i + 1].split(",") if p]
        if patterns and all(p.startswith("!") for p in patterns):
            return True
    return False


class SshdConfig:
    """The effective sshd configuration: what `sshd -T` prints, and per keyword every value
    some connection gets from a Match block."""

    def __init__(
        self,
        path: str,
        exists: bool,
        globals_: Block,
        matches: list[Block],
        files: list[str],
        errors: list[str] | None = None,
    ) -> None:
        self.path = path
        self.errors = tuple(errors or ())
        self.exists = exists
        self._globals = globals_
        self._blocks = matches
        self.matches = [SshdMatch(b) for b in matches]
        self.files = files

    def describe(self) -> str:
        return "sshd"

    def is_set(self, name: str) -> bool:
        return self._globals.get(canonical_keyword(name)) is not None

    def _effective(self, key: str) -> tuple[str, str] | None:
        """(value, source) without connection details: a `Match all` block that sets the
        keyword overrides the global value, as in `sshd -T`."""
        for b in self._blocks:
            if b.criteria is not None and _always(b.criteria):
                s = b.get(key)
                if s is not None:
                    return s.value.replace("\n", " "), s.source
        s = self._globals.get(key)
        if s is not None:
            return s.value.replace("\n", " "), s.source
        if key in DEFAULTS:
            return DEFAULTS[key], f"{self.path} (not set: {DEFAULTS_VERSION} default)"
        return None

    def option(self, name: str) -> str | None:
        if not self.exists:
            return None
        hit = self._effective(canonical_keyword(name))
        return None if hit is None else hit[0]

    def values(self, name: str) -> tuple[SshdValue, ...]:
        """Every value some connection gets: the first Match block a connection matches that
        sets the keyword wins over the global value; a block after an always-matching one that
        sets it, or one no connection can match, changes nothing."""
        if not self.exists:
            return ()
        key = canonical_keyword(name)
        out: list[SshdValue] = []
        hit = self._effective(key)
        if hit is not None:
            out.append(SshdValue(hit[0], None, hit[1]))
        for b in self._blocks:
            assert b.criteria is not None
            s = b.get(key)
            if s is None or _never(b.criteria):
                continue
            if _always(b.criteria):
                break  # it set the value for every connection (already in `out`)
            out.append(SshdValue(s.value.replace("\n", " "), b.criteria, s.source))
        return tuple(out)

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("option", "is_set") and args and self.exists:
            key = canonical_keyword(str(args[0]))
            if name == "is_set":
                s = self._globals.get(key)
                return s.source if s is not None else self.path
            hit = self._effective(key)
            if hit is not None:
                return hit[1]
        if name == "errors":
            return ", ".join(e.split(": ", 1)[0] for e in self.errors) or self.path
        if name == "values" and args and self.exists:
            return ", ".join(v.source for v in self.values(str(args[0]))) or self.path
        return self.path


def parse_sshd(ctx: FactContext, path: str = CONFIG) -> SshdConfig:
    p = _Parser(ctx)
    exists = ctx.stat(path) is not None
    p.parse_file(path, None, 0)
    return SshdConfig(path, exists, p.globals, p.matches, p.files, p.errors)


def register(reg: FactRegistry) -> None:
    reg.register(
        "sshd", lambda ctx: parse_sshd(ctx), returns=SSHD, doc="the OpenSSH server configuration"
    )
