"""Built-in detectors for secrets in free text and argument vectors: credentials in command
lines, URLs, headers, XML elements and key blocks, and Luhn-checked payment card numbers (PCI DSS 3.4.1)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import re2

_escape_decode = codecs.escape_decode  # type: ignore[attr-defined]

__all__ = ["MASK", "NOT_SECRET", "PEM_BEGIN", "PEM_END", "Detector", "LazyPattern", "ProgramArguments", "TextDetector",
           "argv_secrets", "attached_prefix", "builtin_detectors", "is_program", "is_secret_value", "json_may_hold_secret", "json_quotes_escapes", "json_secret_spans", "json_unescaped", "luhn_ok", "mask_pan", "may_hold_secret",
           "program_secrets", "utf8"]

MASK = "[REDACTED]"


def _prefilter_options() -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = True
    return opts


class LazyPattern:
    """A regular expression compiled when it first runs: the detectors' patterns take about
    20 ms to compile, which every command paid at start-up, while most runs never reach a
    detector (the prefilter clears their records first) and the rest reach a few."""

    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        rx = self._compiled
        if rx is None:
            # Two threads may both compile it; they get equal patterns.
            rx = self._compiled = re.compile(self.pattern, self.flags)
        return rx

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.compiled.finditer(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self.compiled.search(text)

    def fullmatch(self, text: str) -> re.Match[str] | None:
        return self.compiled.fullmatch(text)

    def sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        return self.compiled.sub(repl, text)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyPattern):
            return (self.pattern, self.flags) == (other.pattern, other.flags)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.pattern, self.flags))

    def __repr__(self) -> str:
        return f"LazyPattern({self.pattern!r}, {self.flags!r})"


# Every pattern below is written so that Python's backtracking engine stays linear on it:
# no nested quantifiers, and each repeated class is bounded or disjoint from what follows.


class TextDetector(Protocol):
    @property
    def name(self) -> str: ...

    def spans(self, text: str, lowered: str) -> list[tuple[int, int, str]]:
        """(start, end, replacement) of every secret in `text` (`lowered` is text.lower())."""
        ...


@dataclass(frozen=True)
class Detector:
    """One kind of secret: `find` returns the (start, end) spans to replace in a text and
    `replace` the text that stands in for one span."""

    name: str
    pattern: re.Pattern[str] | LazyPattern
    group: int  # the group holding the secret (0: the whole match)
    replace: Callable[[str], str] = lambda _secret: MASK
    check: Callable[[str], bool] = lambda _secret: True
    # A cheap test on the lower-cased text that must hold for the text to be worth matching
    # (most strings fail it, so the regular expression never runs on them).
    trigger: Callable[[str], bool] = lambda _lowered: True

    def spans(self, text: str, lowered: str) -> list[tuple[int, int, str]]:
        if not self.trigger(lowered):
            return []
        out = []
        for m in self.pattern.finditer(text):
            secret = m.group(self.group)
            if secret and self.check(secret):
                out.append((m.start(self.group), m.end(self.group), self.replace(secret)))
        return out


_SECRET_WORDS = (
    r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"
    r"|private[_-]?key|client[_-]?secret|auth[_-]?token|credentials?|key|requirepass|masterauth|bindpw|rootpw"
    r"|secret[_-]?key[_-]?base"  # Rails: the key every session cookie and signed token rests on
)

# `--password=X`, `--password X`, `-password X` (long options whose value is a secret); in
# `-password = X` the `=` is no value (the pair detectors take X).
_LONG_OPTION = LazyPattern(
    r"(?<![\w-])--?(?:[a-z0-9]+[_-])*(?:" + _SECRET_WORDS + r")(?:=|\s+|([\"']),\s*\1)"
    r"(\"[^\"]*\"|'[^']*'|[^\s\"'=][^\s\"']*)",
    re.IGNORECASE,
)
# `aws_secret_access_key X`, `db_password X`: compound names, so plain words ("any key to
# continue") are left alone.
_COMPOUND_WORD = LazyPattern(
    r"(?<![\w-])(?:[a-z0-9]+[_-])+(?:" + _SECRET_WORDS + r")[ \t]+(\"[^\"]*\"|'[^']*'|[^\s\"'=:]+)",
    re.IGNORECASE,
)
# `password=X`, `db_password: X`, `token=X` pairs in free text, environment assignments,
# connection strings and query strings.
# Not after `/` or `.`: `/etc/passwd:4` is a place, not a pair.
_PAIR = LazyPattern(
    r"(?<![\w/.-])(?:[a-z0-9]+[_.-])*(?:" + _SECRET_WORDS + r")\s*(?:=>?|:)\s*"
    r"(\"[^\"]*\"|\"[^\"\n]*|'[^']*'|'[^'\n]*|[^\s\"'&;,]+)",
    re.IGNORECASE,
)
# Configuration files: a key that ENDS with a secret word (`requirepass`, `db.password`,
# `"api_key"`), so settings about secrets (`PasswordAuthentication`, `PermitEmptyPasswords`)
# keep their values. Matching starts only at the start of a key (the lookbehinds), so the
# lazy prefix keeps the scan linear in the text's length.
_CONFIG_KEY = (
    r"[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|pass|pwd|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|credentials?|psk|bindpw|rootpw|masterpw|masterauth"
    r"|secret[_-]?key[_-]?base)"
)
_CONFIG_VALUE = r"(\"[^\"\n]*\"?|'[^'\n]*'?|[^\s\"'#;,]+)"
# `key = value`, `key: value`, `"key": "value"`, `export KEY=value`; not after `/`, as in
# `/etc/passwd: Permission denied` (a path and a message).
_CONFIG_PAIR = LazyPattern(
    r"(?<![A-Za-z0-9_./-])[\"']?" + _CONFIG_KEY + r"[\"']?(?![A-Za-z0-9_])\s*(?:=>?|:)\s*" + _CONFIG_VALUE,
    re.IGNORECASE,
)
# `requirepass value`, `bindpw value`, `rootpw value` at the start of a line (space-separated
# configuration files: nslcd, slapd, redis, ntp.keys, wpa_supplicant ...); a following option
# (`passwd -l alice`) is no value.
# A quoted string in a list, a tuple or an object (`["bindpw X"]`, `{'line': 'bindpw X'}`) starts a
# line of its own: evidence renders a file's matching lines as a list.
_CONFIG_SPACED = LazyPattern(
    r"(?m)(?:^[ \t]*[\"']?" + _CONFIG_KEY + r"[\"']?|(?:(?<=[\[(,{:=])|(?<=[\[(,{:=] ))[\"']" + _CONFIG_KEY + r")"
    r"(?![A-Za-z0-9_=:])[ \t]+(?![=:-])" + _CONFIG_VALUE,
    re.IGNORECASE,
)
# `Authorization: Bearer X` and the other headers that carry credentials.
_HEADER = LazyPattern(
    r"(?:proxy-)?(?:authorization|x-api-key|x-auth-token|cookie)[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:basic|bearer|token|digest|negotiate)\s+)?([^\s\"']+)",
    re.IGNORECASE,
)
# `scheme://user:password@host`: the password goes, the user stays.
# Both parts stop at a `/`, so every start (a scheme's `://`) scans only its own authority: linear
# whatever the bounds; they are wide because an access token is often the password.
_URL_USERINFO = LazyPattern(r"[a-z][a-z0-9+.-]{0,30}://[^\s/:@]{0,4096}:([^\s/@]{1,8192})@", re.IGNORECASE)
_PRIVATE_KEY = LazyPattern(
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-(?!----END))*"
    r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
)
# The first and last lines of a private key block (text read line by line, as FIM diffs are).
PEM_BEGIN = LazyPattern(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
PEM_END = LazyPattern(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
# Token shapes issued by well-known services (they need no keyword to be recognised).
_TOKENS = LazyPattern(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b"  # GitHub tokens
    r"|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"  # GitHub fine-grained personal access tokens
    r"|\bglpat-[A-Za-z0-9_-]{20,64}\b"  # GitLab personal access tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,255}"  # Slack tokens
    r"|\b[rs]k_live_[A-Za-z0-9]{16,255}\b"  # Stripe secret and restricted keys
    r"|\bAIza[0-9A-Za-z_-]{35}\b"  # Google API keys
    # JWTs: no part has a bound (claims such as group lists make a payload long); a token starts
    # only where no run of its characters does, so each run is scanned from one place.
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|\$(?:1|2[abxy]?|5|6|7|y|gy|apr1|sha1|md5)\$[^\s:\"']{8,4096}"  # crypt(3) password hashes
)
# `sk-` API keys: OpenAI's project, service account and admin shapes (a long base64url body),
# its older keys, which hold `T3BlbkFJ` ("OpenAI" in base64), and Anthropic's.
_SK_KEY = LazyPattern(
    r"(?<![A-Za-z0-9_-])sk-(?:proj|svcacct|admin|ant-(?:api|admin)[0-9]{2})-[A-Za-z0-9_-]{40,1024}"
    r"|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b"
)


def _random_body(key: str) -> bool:
    """A key's body mixes cases and digits; a name (`sk-proj-frontend-deployment-...`) does not."""
    body = key.split("-", 2)[-1]
    return any(c.isdigit() for c in body) and any(c.isupper() for c in body) and any(c.islower() for c in body)


# `<password>X</password>`, `<db:Password type="x">X</db:Password>`, `<clientSecret><![CDATA[X]]>`:
# an XML element whose name ends with a secret word. The tags stay, the content goes.
# (Not `pass`, `key` or `credentials`: `<bypass>`, a plist's `<key>`, an element of elements.)
_XML_WORDS = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|secret[_-]?key|private[_-]?key|psk|bindpw|rootpw|masterpw|secret[_-]?key[_-]?base)"
)
_XML_ELEMENT = LazyPattern(
    r"<([A-Za-z0-9_.:-]{0,64}?" + _XML_WORDS + r")(?:\s[^<>]{0,1024})?>"
    r"(<!\[CDATA\[(?:[^\]]|\](?!\]>)){1,8192}\]\]>|[^<]{1,8192})</\1\s*>",
    re.IGNORECASE,
)


def _after_program(program: str) -> str:
    """`program`, then the rest of its command up to an option (a shell separator or a line's
    end stops it): a bounded stretch that stops where `program` is named again, so every
    character is scanned from one start at most."""
    return program + r"(?:(?!" + program + r")[^\n|;&]){0,2048}?"


# Samba's `-U [DOMAIN\]USER%PASSWORD` (`--user=`, smbclient, rpcclient, net ads join ...): the
# password after the first `%` goes, the user stays.
_SAMBA_USER = LazyPattern(
    _after_program(r"(?<![\w.-])(?:smbclient|rpcclient|smbcacls|smbcquotas|smbget|smbtree|samba-tool|wbinfo|net)"
                   r"[\"']?(?=[\s,])")
    + r"(?<![\w-])(?:-U|--user(?:name)?(?![\w-])|--authenticate(?![\w-]))(?:=|[\s\"',]{0,4})"
    r"[^\s%\"',]{0,256}%([^\s\"']+)"
)
# `docker login -u USER -p PASSWORD` (and podman, buildah, nerdctl, oras, helm registry): `-p` is a
# password only after `login` (`docker run -p 80:80` publishes a port). `--password` is an option
# like any other (`_LONG_OPTION`).
_REGISTRY_LOGIN = LazyPattern(
    _after_program(r"(?<![\w.-])(?:docker|podman|buildah|nerdctl|oras|registry|az|acr)[\"']?[\s,]+[\"']?login[\"']?"
                   r"(?=[\s,])")
    + r"(?<![\w-])-p(?:[\s\"',]{1,4}|=)?(?![\s\"',)\]}-])([^\s\"',]+)"
)
# `openssl enc -k PASSWORD` (the legacy passphrase option; `-kfile`, `-pass file:` name a file).
_OPENSSL_K = LazyPattern(
    _after_program(r"(?<![\w.-])openssl[\"']?(?=[\s,])")
    + r"(?<![\w-])-k[\s\"',]{1,4}(?![\s\"',)\]}-])([^\s\"',]+)"
)
# `sqlcmd -P PASSWORD`, `bcp ... -PPASSWORD` (SQL Server's tools; `-p`, lower case, is no password).
_SQLCMD_P = LazyPattern(
    _after_program(r"(?<![\w.-])(?:sqlcmd|bcp|osql)(?:\.exe)?[\"']?(?=[\s,])")
    + r"(?<![\w-])-P(?:[\s\"',]{1,4}|=)?(?![\s\"',)\]}-])([^\s\"',]+)"
)
# `net use \\srv\share PASSWORD /user:u`, `net use \\srv\share /user:u PASSWORD`: the word after
# the share that is no `/option` (nor `*`, which prompts).
_NET_USE = LazyPattern(
    _after_program(r"(?<![\w.-])(?i:net)(?:\.exe)?[\"']?[\s,]+[\"']?(?i:use)[\"']?(?=[\s,])")
    + r"(?<!\\)\\\\[^\s\"',]+(?:[\s\"',]+/[^\s\"',]+)*[\s\"',]+(?![/*\\\s\"',])([^\s\"',]+)"
)
# `skopeo copy --creds USER:PASSWORD` (`--src-creds`, `--dest-creds`; podman and buildah too): the
# password after the first `:` goes, the user stays.
_CREDS = LazyPattern(r"(?<![\w-])--(?:src-|dest-)?creds(?:=|[\s\"',]{1,4})[^\s\"',:]{0,256}:([^\s\"',]+)")
# `mount.cifs //srv/share /mnt -o user=USER%PASSWORD` (`username=`; `mount -t cifs`, smbmount).
_CIFS_USER = LazyPattern(
    _after_program(r"(?<![\w.-])(?:mount(?:\.cifs|\.smb3)?|smbmount)[\"']?(?=[\s,])")
    + r"(?<![\w.-])user(?:name)?=[^\s,%\"']{0,256}%([^\s,\"']+)"
)
# .NET configuration: `<add key="DbPassword" value="X" />` (appSettings); the value goes, quotes and
# all (`key="..."` is a pair of its own: the secret pair detector masks the name too).
_NET_ADD_KEY = LazyPattern(
    r"<add\s+key\s*=\s*[\"'][A-Za-z0-9_.:-]{0,64}?" + _XML_WORDS + r"[\"']\s+value\s*=\s*"
    r"(\"[^\"<\n]{1,8192}\"|'[^'<\n]{1,8192}')",  # `<` stands escaped in an attribute
    re.IGNORECASE,
)
# A property list: `<key>password</key> <string>X</string>`; the string goes.
_PLIST_KEY = LazyPattern(
    r"<key>[A-Za-z0-9_.:-]{0,64}?" + _XML_WORDS + r"</key>\s{0,64}<string>([^<]{1,8192})</string>",
    re.IGNORECASE,
)
# Values of a secret-named setting that are settings, not secrets (`token: on`).
NOT_SECRET = frozenset({"yes", "no", "true", "false", "on", "off", "none", "null", "prompt",
                        "required", "optional", "without-password", "prohibit-password"})
# 13 to 19 digits, optionally grouped by single spaces or dashes (4-4-4-4, 4-6-5, ...).
# A card number stands on its own: digits inside a longer token of letters and digits (a
# SHA-256 digest, a baseline id, a UUID) are no card, whatever Luhn says of them.
_PAN = LazyPattern(r"(?<![0-9A-Za-z.])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z])")


# What every text a built-in detector can match contains, in one RE2 pattern: the shape each
# detector needs (a secret word followed by `=`, `:` or a space, a header name and its colon,
# userinfo before `@`, 13 digits ...), wider than the detectors, never narrower. One search
# over all of a record's strings, a microsecond or two, tells that most records need nothing
# more: a path such as /etc/passwd names a secret word, but not in a shape that holds one.
_CONFIG_WORDS_RE = _CONFIG_KEY.removeprefix("[A-Za-z0-9_.-]*?")
_PREFILTER = ("(?im)" + "|".join((
    r"-[a-z0-9_-]*(?:" + _SECRET_WORDS + r")(?:=|\s|[\"'],)",  # --password=X, --password X, "--password", "X"
    r"(?:" + _SECRET_WORDS + r")\s*[=:]",  # password=X, token: X
    r"[_-](?:" + _SECRET_WORDS + r")[ \t]",  # db_password X
    _CONFIG_WORDS_RE + r"[\"']?\s*[:=]",  # "api_key": X, requirepass=X
    # requirepass X at a line start (or a string's, in a JSON line)
    r"(?:^|[\"'])[ \t]*[\"']?[a-z0-9_.-]*" + _CONFIG_WORDS_RE + r"[\"']?[ \t]",
    r"(?:authorization|x-api-key|x-auth-token|cookie)[\"']?\s*[:=]",
    r"://[^\s/:@]*:[^\s/@]+@",
    r"private key(?: block)?-----",
    r"akia|asia|gh[pousr]_|github_pat_|glpat-|xox[abprs]-|[rs]k_live_|eyj|aiza|sk-|t3blbkfj",
    # </password> (an XML element's content); -U user%pw; login ... -p pw
    r"</[a-z0-9_.:-]*" + _XML_WORDS + r"\s*>",
    r"(?:-u|--user(?:name)?|--authenticate)(?:=|[\s\"',]*)[^\s%\"',]*%",
    r"(?:docker|podman|buildah|nerdctl|oras|registry|az|acr)[\"']?[\s,]+[\"']?login[\"']?[\s,][^\n|;&]*-p",
    # openssl ... -k pw; sqlcmd ... -P pw; net use \\\\srv\\share ...; --creds u:pw; mount ... user=u%pw
    r"openssl[\"']?[\s,][^\n|;&]*-k[\s\"',]",
    r"(?:sqlcmd|bcp|osql)(?:\.exe)?[\"']?[\s,][^\n|;&]*-p",
    r"net(?:\.exe)?[\"']?[\s,]+[\"']?use[\"']?[\s,][^\n|;&]*\\\\",
    r"--(?:src-|dest-)?creds(?:=|[\s\"',])[^\s\"',:]*:",
    r"user(?:name)?=[^\s,%\"']*%",
    # <add key="Password" value="X"/>, <key>password</key><string>X</string>
    r"<add\s+key\s*=\s*[\"'][a-z0-9_.:-]*" + _XML_WORDS + r"[\"']\s+value",
    r"<key>[a-z0-9_.:-]*" + _XML_WORDS + r"</key>",
    r"\$(?:1|2[abxy]?|5|6|7|y|gy|apr1|sha1|md5)\$",
    r"\d(?:[ -]?\d){12}",  # the shortest card number, grouped any way
    # a program whose options name secrets, then its options (or the end of its JSON string)
    r"(?:mysql[a-z]*|mariadb[a-z-]*|sshpass|redis-cli|keydb-cli|curl|wget|htpasswd|ldap[a-z]+)[\s\"]",
))).encode()


def _first_match(anchor: Any, data: bytes, pos: int, end: int) -> Any:
    """The first search compiles the prefilter (4 ms, which a run that never redacts need
    not pay) and leaves the compiled pattern's matcher in `_MATCH` for every later one."""
    global _MATCH
    _MATCH = re2.compile(_PREFILTER, _prefilter_options())._regexp.Match
    return _MATCH(anchor, data, pos, end)


# The compiled pattern itself: its `search` wrapper costs as much as the search on a short
# record, and this runs for every record written.
_MATCH: Callable[[Any, bytes, int, int], Any] = _first_match
_UNANCHORED = re2._Anchor.UNANCHORED
_NO_MATCH = (-1, -1)


def _search(data: bytes) -> bool:
    return bool(_MATCH(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)


def may_hold_secret(text: str) -> bool:
    return _search(utf8(text))


def utf8(text: str) -> bytes:
    """`text` as the bytes it was read from (undecodable bytes are `\\udcXX`); a surrogate of
    another kind (`\\ud83d` unescaped from a JSON string) is written as it is, not an error."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def json_unescaped(line: bytes) -> bytes | None:
    """A record's JSON line (UTF-8, as orjson writes it) with its escapes undone in one pass:
    a quote, a tab or a newline is what the detectors need to see. orjson escapes with `\\"`,
    `\\\\`, `\\n`, `\\r`, `\\t`, `\\b`, `\\f` and `\\u`; Python's escape decoder reads all but the
    last alike and leaves `\\u` (and `\\/`, which orjson never writes) as they are, with a
    DeprecationWarning (ignored unless warnings are errors). None when the line holds either
    (a control character, or a line not written by orjson): undecided."""
    if b"\\" not in line:
        return line
    try:
        text: bytes = _escape_decode(line)[0]
    except (ValueError, DeprecationWarning):  # a trailing backslash; an odd escape, warnings as errors
        return None
    # A backslash left (rare: most lines escape none) is an escape left as it was, or an
    # escaped backslash: `\\u` or `\\/` after one, either way, leaves the line undecided.
    if b"\\" in text and (b"\\u" in text or b"\\/" in text):
        return None
    return text


def json_may_hold_secret(line: bytes) -> bool:
    """`may_hold_secret` of the strings of a record serialised as a JSON line."""
    data = json_unescaped(line)
    return data is None or _search(data) or json_quotes_escapes(data)


def json_quotes_escapes(data: bytes) -> bool:
    """Whether a string of an unescaped line holds a backslash (an escape of its own, `\\n` or
    `\\u0070`): the detectors also read such text unescaped, so only they can tell."""
    return b"\\" in data


def json_secret_spans(data: bytes) -> list[tuple[int, int]]:
    """Where in `data` (JSON lines, see `json_unescaped`) the prefilter matches: one call into
    RE2 per match, none per line that holds nothing."""
    out = []
    pos, end = 0, len(data)
    while pos <= end:
        a, b = _MATCH(_UNANCHORED, data, pos, end)[0]
        if a < 0:
            break
        out.append((a, b))
        pos = b if b > a else b + 1
    return out


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pan_digits(text: str) -> str:
    return text.replace(" ", "").replace("-", "")


def _is_pan(text: str) -> bool:
    digits = _pan_digits(text)
    # All-same digits (0000 0000 0000 0000) pass Luhn but are no card.
    return 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1


def mask_pan(text: str) -> str:
    """First six and last four digits kept, as PCI DSS 3.4.1 allows for display."""
    digits = _pan_digits(text)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _has_digit_run(text: str) -> bool:
    run = 0
    for ch in text:
        if "0" <= ch <= "9":
            run += 1
            if run >= 4:
                return True
        elif ch not in " -":
            run = 0
    return False


def _has(*needles: str) -> Callable[[str], bool]:
    lowered = tuple(n.lower() for n in needles)

    def test(text: str) -> bool:
        return any(n in text for n in lowered)

    return test


_WORDS = _has("pass", "pwd", "secret", "token", "key", "credential", "masterauth", "bindpw", "rootpw")
_CONFIG_WORDS = _has("pass", "pwd", "pw", "secret", "token", "key", "credential", "psk", "masterauth")


def is_secret_value(value: str) -> bool:
    """Whether the value of a secret-named setting may be a secret: not empty, not already
    masked, and not a setting word (`token: on`, `password = prompt`)."""
    bare = value.strip("\"'")
    return bool(bare) and bare.lower() not in NOT_SECRET and not bare.startswith("[REDACTED")


def builtin_detectors(*, credentials: bool = True, payment_cards: bool = True) -> tuple[TextDetector, ...]:
    out: list[TextDetector] = []
    if credentials:
        out += [
            ProgramArguments(),
            Detector("private_key", _PRIVATE_KEY, 0, trigger=_has("PRIVATE KEY")),
            Detector("url_userinfo", _URL_USERINFO, 1, trigger=_has("://")),
            Detector("auth_header", _HEADER, 1, trigger=_has("authorization", "x-api-key", "x-auth-token", "cookie")),
            Detector("secret_option", _LONG_OPTION, 2, check=is_secret_value, trigger=_WORDS),
            Detector("secret_pair", _PAIR, 1, check=is_secret_value, trigger=_WORDS),
            Detector("secret_word", _COMPOUND_WORD, 1, check=is_secret_value, trigger=_WORDS),
            Detector("secret_setting", _CONFIG_PAIR, 1, check=is_secret_value, trigger=_CONFIG_WORDS),
            Detector("secret_line", _CONFIG_SPACED, 1, check=is_secret_value, trigger=_CONFIG_WORDS),
            Detector("service_token", _TOKENS, 0,
                     trigger=_has("akia", "asia", "gh", "glpat-", "xox", "k_live_", "eyj", "aiza", "$")),
            Detector("sk_api_key", _SK_KEY, 0, check=_random_body, trigger=_has("sk-")),
            Detector("xml_secret", _XML_ELEMENT, 2, check=is_secret_value, trigger=_has("</")),
            Detector("samba_user", _SAMBA_USER, 1, trigger=_has("%")),
            Detector("registry_login", _REGISTRY_LOGIN, 1, trigger=_has("login")),
            Detector("openssl_k", _OPENSSL_K, 1, check=is_secret_value, trigger=_has("openssl")),
            Detector("sqlcmd_password", _SQLCMD_P, 1, check=is_secret_value, trigger=_has("sqlcmd", "bcp", "osql")),
            Detector("net_use_password", _NET_USE, 1, trigger=_has("use")),
            Detector("creds_option", _CREDS, 1, trigger=_has("creds")),
            Detector("cifs_user", _CIFS_USER, 1, trigger=_has("%")),
            Detector("net_config_secret", _NET_ADD_KEY, 1, check=is_secret_value, trigger=_has("<add")),
            Detector("plist_secret", _PLIST_KEY, 1, check=is_secret_value, trigger=_has("</key>")),
        ]
    if payment_cards:
        out.append(Detector("payment_card", _PAN, 0, replace=mask_pan, check=_is_pan, trigger=_has_digit_run))
    return tuple(out)


# Programs whose short option carries its secret attached (`mysql -pS3cret`) or as the next
# argument (`sshpass -p S3cret`). Only these programs: `-p` means a port or a flag elsewhere.
_ATTACHED = {
    "mysql": "-p", "mysqldump": "-p", "mysqladmin": "-p", "mysqlimport": "-p", "mysqlcheck": "-p",
    "mariadb": "-p", "mariadb-dump": "-p", "mariadb-admin": "-p", "mariadb-import": "-p",
    "mariadb-check": "-p", "sshpass": "-p", "redis-cli": "-a", "keydb-cli": "-a",
    # curl -uUSER:PW (getopt-style); the OpenLDAP tools' bind password, -wPW
    "curl": "-u", **{f"ldap{t}": "-w" for t in ("search", "add", "modify", "delete", "modrdn", "passwd", "whoami",
                                              "compare", "exop", "url", "vc")},
}
_NEXT_ARG = {
    "sshpass": ("-p",), "redis-cli": ("-a",), "keydb-cli": ("-a",), "curl": ("-u", "--user", "-U", "--proxy-user"),
    "wget": ("--password", "--http-password", "--ftp-password", "--proxy-password"),
    "htpasswd": ("-b",),
    **{f"ldap{t}": ("-w",) for t in ("search", "add", "modify", "delete", "modrdn", "passwd", "whoami",
                                     "compare", "exop", "url", "vc")},
}
# `curl --user=USER:PW`: long options whose attached value is a secret (whatever its name says).
_EQUALS = {"curl": ("--user=", "--proxy-user=")}


def argv_secrets(program: str, args: Sequence[str]) -> list[int]:
    """Indexes of `args` (args[0] is the program) that are secrets by the program's own
    option syntax. `curl -u user:pass` keeps nothing of the pair, as curl cannot tell."""
    name = program.rsplit("/", 1)[-1]
    if name == "htpasswd":
        return _htpasswd_secret(args)
    found: list[int] = []
    attached = _ATTACHED.get(name)
    following = _NEXT_ARG.get(name, ())
    equals = _EQUALS.get(name, ())
    for i in range(1, len(args)):
        a = args[i]
        if attached and a.startswith(attached) and len(a) > len(attached) and not a.startswith("--"):
            found.append(i)
        elif a in following:
            if i + 1 < len(args):
                found.append(i + 1)
        elif equals and a.startswith(equals):
            found.append(i)
    return found


_PREFIXES = tuple(sorted(set(_ATTACHED.values()) | {p for ps in _EQUALS.values() for p in ps}, key=len, reverse=True))


def attached_prefix(arg: str) -> str:
    """The option a secret argument starts with (`-p` of `-pS3cret`, `--user=` of
    `--user=u:pw`), kept so the masked argument still reads as the option it was."""
    for p in _PREFIXES:
        if arg.startswith(p) and len(arg) > len(p) and (p.startswith("--") or not arg.startswith("--")):
            return p
    return ""


def _htpasswd_secret(args: Sequence[str]) -> list[int]:
    """htpasswd -b[cmBdpsDv] FILE USER PASSWORD, htpasswd -nb USER PASSWORD: in batch mode (a
    `b` in any cluster of flags before the operands: `-bc`, `-cb`, `-b -c`) the third operand,
    or the second with `-n` (no file)."""
    batch = to_stdout = False
    operands: list[int] = []
    for i in range(1, len(args)):
        a = args[i]
        if a.startswith("-") and len(a) > 1 and not a.startswith("--") and not operands:
            batch = batch or "b" in a[1:]
            to_stdout = to_stdout or "n" in a[1:]
        else:
            operands.append(i)
    k = 1 if to_stdout else 2
    return [operands[k]] if batch and len(operands) > k else []


def is_program(path: str) -> bool:
    """Whether `path` names a program whose options this module reads (mysql, sshpass ...)."""
    return path.rsplit("/", 1)[-1] in _PROGRAMS


def program_secrets(program: str, args: Sequence[str]) -> set[int]:
    """Indexes of `args` (args[0] is the program) that are secrets: by the option syntax of
    `program`, of args[0], and of a known program named further on (`sudo mysql -pX`,
    `env A=1 redis-cli -a X`, `sh -c : mysql -pX`), up to a shell separator."""
    hidden = set(argv_secrets(program, args))
    if args and not hidden:
        hidden = set(argv_secrets(args[0], args))
    for i in range(1, len(args)):
        if args[i].rsplit("/", 1)[-1] in _PROGRAMS:
            end = next((j for j in range(i + 1, len(args)) if args[j] in _SEPARATORS), len(args))
            hidden.update(i + k for k in argv_secrets(args[i], args[i:end]))
    return hidden


_SEPARATORS = frozenset({"|", "||", "&&", ";", "&"})
_TRAILING = ",;)]}\"'"
_LEADING = "\"'(`[{"
_PROGRAMS = frozenset(_ATTACHED) | frozenset(_NEXT_ARG)


@dataclass(frozen=True)
class ProgramArguments:
    """`mysql -pS3cret` inside free text (an alert message, a shell history line): the
    words after a known program, up to a shell separator, read with its option syntax."""

    name: str = "program_arguments"

    def spans(self, text: str, lowered: str) -> list[tuple[int, int, str]]:
        if not any(p in lowered for p in _PROGRAMS):
            return []
        # Words without the quotes, brackets and commas around them: `"mysql -pX"` quoted in
        # evidence, `(mysql` in prose, `["mysql", "-pX"]` an argument list rendered as text.
        words: list[tuple[int, int]] = []
        lines: list[int] = []  # the line of each word: a command ends with its line
        line = 0
        start = None
        for i, ch in enumerate(text):
            if ch.isspace():
                if start is not None:
                    words.append(_trimmed(text, start, i))
                    lines.append(line)
                    start = None
                if ch == "\n":
                    line += 1
            elif start is None:
                start = i
        if start is not None:
            words.append(_trimmed(text, start, len(text)))
            lines.append(line)
        tokens = [text[a:b] for a, b in words]
        out: list[tuple[int, int, str]] = []
        for i, tok in enumerate(tokens):
            if tok.rsplit("/", 1)[-1] not in _PROGRAMS:
                continue
            end = next((j for j in range(i + 1, len(tokens)) if tokens[j] in _SEPARATORS or lines[j] != lines[i]),
                       len(tokens))
            for k in argv_secrets(tok, tokens[i:end]):
                a, b = words[i + k]
                a += len(attached_prefix(tokens[i + k]))
                if b > a and not text.startswith("[REDACTED", a):  # masked before (a record redacted twice)
                    out.append((a, b, MASK))
        return out


def _trimmed(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b - 1 and text[a] in _LEADING:
        a += 1
    while b > a + 1 and text[b - 1] in _TRAILING:  # `-pX,` in prose: the comma stays
        b -= 1
    return a, b
