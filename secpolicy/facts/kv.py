"""Key/value configuration facts: `login_defs`, `useradd_defaults`, `pwquality`, `faillock`,
`auditd_conf`, `journald`, `journal_upload` and `postfix`, each read with its program's own syntax, file order, override rules and built-in
defaults (for the versions Debian 12 ships), so an unset key reads as what the program uses."""

from __future__ import annotations

import builtins
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, MODE, SIZE, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import (
    C_SPACE,
    at,
    config_parse_files,
    fgets_lines,
    fgets_pieces,
    systemd_conf_files,
)
from secpolicy.facts.pam import PAM, PAM_ENTRY, PAM_RETURNS, PamEntry, dispatch
from secpolicy.facts.shell import CannotTell, source

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "AUDITD_DEFAULTS",
    "FAILLOCK",
    "FAILLOCK_DEFAULTS",
    "JOURNALD_DEFAULTS",
    "JOURNAL_UPLOAD",
    "KV",
    "LOGIN_DEFS_DEFAULTS",
    "PWQUALITY_DEFAULTS",
    "USERADD_DEFAULTS",
    "JournalUploadConfig",
    "KvConfig",
    "c_integer",
    "journal_upload_url",
    "parse_size",
    "register",
]

KV = ObjectType(
    "kv",
    {"exists": BOOL, "path": STR, "files": ListType(STR), "errors": ListType(STR)},
    methods={
        "option": Method(
            (STR,),
            STR,
            "the effective value of a key: the files' last setting, else the program's default, else null",
        ),
        "int": Method((STR,), INT, "the value as an integer (null when unset or not a number)"),
        "mode": Method((STR,), MODE, "the value read as octal permission bits (UMASK 027)"),
        "size": Method((STR,), SIZE, "the value as bytes (500M, 1G; K/M/G/T are powers of 1024)"),
        "bool": Method(
            (STR,), BOOL, "the value as a boolean (yes/true/on/1, no/false/off/0; null otherwise)"
        ),
        "has": Method((STR,), BOOL, "whether a file sets the key (a default does not count)"),
    },
    doc="a key/value configuration file and its drop-ins, with the program's built-in defaults",
    field_docs={
        "errors": "lines the program refuses, as file:line: message (auditd then does not start)",
    },
)
KV.methods["with_args"] = Method(
    (PAM_ENTRY,),
    KV,
    "the settings a PAM module uses: the files, then its line's `name=value` arguments in order"
    " (pwquality: an argument libpwquality refuses is skipped, as pam_pwquality does)",
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


_TRUE = {"yes", "true", "on", "1", "y", "t"}
_FALSE = {"no", "false", "off", "0", "n", "f"}
_IEC = (("E", 1024**6), ("P", 1024**5), ("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024), ("B", 1), ("", 1))
_U64 = (1 << 64) - 1
_STRTOULL = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)")


def parse_size(text: str | None) -> int | None:
    """A size as systemd's parse_size(t, 1024) reads it: parts like `1G 512M` added up, each
    an integer with an optional fraction and one of E P T G M K B (in that order, each used
    once, case-sensitive: `1k` and `1KiB` are refused), at most 2^64-1; None where systemd
    refuses it."""
    if text is None:
        return None
    total, start, pos = 0, 0, 0
    while True:
        pos = len(text) - len(text[pos:].lstrip(" \t\n\r"))
        m = _STRTOULL.match(text, pos)
        if m is None or not m.group(2):
            return None
        if text[pos] == "-":
            return None  # ERANGE, as systemd checks the first character after its blanks
        whole, e = int(m.group(2)), m.end()
        if whole > _U64:
            return None
        if m.group(1) == "-":  # behind a \v or \f, strtoull() negates modulo 2^64
            whole = -whole & _U64
        frac = 0.0
        if text[e : e + 1] == ".":
            e += 1
            digits = re.match(r"[0-9]*", text[e:]).group(0)  # type: ignore[union-attr]
            if digits:
                if int(digits) > _U64:  # strtoull() overflows: ERANGE
                    return None
                frac = float(int(digits))
                for _ in digits:  # divided digit by digit, as systemd computes it
                    frac /= 10
                e += len(digits)
        e = len(text) - len(text[e:].lstrip(" \t\n\r"))
        for i in range(start, len(_IEC)):
            if text.startswith(_IEC[i][0], e):
                break
        else:
            return None
        suffix, factor = _IEC[i]
        if whole + (frac > 0) > _U64 // factor:
            return None
        part = whole * factor + int(frac * factor)
        if part > _U64 - total:
            return None
        total += part
        pos = e + len(suffix)
        start = i + 1
        if pos >= len(text):
            return total


def parse_boolean(text: str) -> bool | None:
    """systemd's parse_boolean(): 1/yes/y/true/t/on and 0/no/n/false/f/off, words in any case."""
    v = text if text in ("0", "1") else text.lower()
    return True if v in _TRUE else False if v in _FALSE else None


# --- built-in defaults --------------------------------------------------------------------------
# auditd 3.0.9, clear_config() in src/auditd-config.c: what auditd uses for a key its file does
# not set (its man page says otherwise for some, e.g. flush; the code is what runs).
AUDITD_DEFAULTS: dict[str, str] = {
    "local_events": "yes",
    "write_logs": "yes",
    "log_file": "/var/log/audit/audit.log",
    "log_format": "ENRICHED",
    "log_group": "root",
    "priority_boost": "4",
    "flush": "NONE",
    "freq": "0",
    "num_logs": "0",
    "name_format": "NONE",
    "max_log_file": "0",
    "max_log_file_action": "IGNORE",
    "space_left": "0",
    "space_left_action": "IGNORE",
    "action_mail_acct": "root",
    "verify_email": "yes",
    "admin_space_left": "0",
    "admin_space_left_action": "IGNORE",
    "disk_full_action": "IGNORE",
    "disk_error_action": "SYSLOG",
    "tcp_listen_queue": "5",
    "tcp_max_per_addr": "1",
    "use_libwrap": "yes",
    "tcp_client_ports": "0-65535",
    "tcp_client_max_idle": "0",
    "transport": "TCP",
    "distribute_network": "no",
    "q_depth": "2000",
    "overflow_action": "SYSLOG",
    "max_restarts": "10",
    "plugin_dir": "/etc/audit/plugins.d",
    "end_of_event_timeout": "2",
}
AUDITD_VERSION = "auditd 3.0.9"

# shadow 4.13: what useradd, chage, login, chgpasswd ... use when login.defs does not define a
# name (each passes its own default to getdef_num). ENCRYPT_METHOD is worked out below.
LOGIN_DEFS_DEFAULTS: dict[str, str] = {
    "PASS_MAX_DAYS": "-1",
    "PASS_MIN_DAYS": "-1",
    "PASS_WARN_AGE": "-1",
    "UMASK": "022",
    "UID_MIN": "1000",
    "UID_MAX": "60000",
    "SYS_UID_MIN": "101",
    "SYS_UID_MAX": "999",
    "GID_MIN": "1000",
    "GID_MAX": "60000",
    "SYS_GID_MIN": "101",
    "SYS_GID_MAX": "999",
    "LOGIN_RETRIES": "5",
    "LOGIN_TIMEOUT": "60",
}
SHADOW_VERSION = "shadow 4.13"

# shadow 4.13's useradd: the /etc/default/useradd keys read here and what `useradd -D` prints
# when the file leaves them unset (GROUP and SKEL, which useradd resolves against the system,
# are left out)
USERADD_DEFAULTS: dict[str, str] = {
    "HOME": "/home",
    "INACTIVE": "-1",
    "EXPIRE": "",
    "SHELL": "/bin/bash",
    "CREATE_MAIL_SPOOL": "no",
    "LOG_INIT": "yes",
}

# libpwquality 1.4.5: pwquality.conf(5) values when nothing sets them (flags are off).
PWQUALITY_DEFAULTS: dict[str, str] = {
    "difok": "1",
    "minlen": "8",
    "dcredit": "0",
    "ucredit": "0",
    "lcredit": "0",
    "ocredit": "0",
    "minclass": "0",
    "maxrepeat": "0",
    "maxsequence": "0",
    "maxclassrepeat": "0",
    "gecoscheck": "0",
    "dictcheck": "1",
    "usercheck": "1",
    "usersubstr": "0",
    "enforcing": "1",
    "retry": "1",
}
PWQUALITY_VERSION = "libpwquality 1.4.5"

# Linux-PAM 1.5.2, pam_faillock: faillock.conf values when nothing sets them; root_unlock_time
# follows unlock_time.
FAILLOCK_DEFAULTS: dict[str, str] = {
    "dir": "/var/run/faillock",
    "deny": "3",
    "fail_interval": "900",
    "unlock_time": "600",
}
FAILLOCK_VERSION = "pam_faillock 1.5.2"

# systemd 252 as Debian 12 builds it, journald.conf [Journal]: the commented values of the
# journald.conf the package ships (Debian forwards to syslog by default).
JOURNALD_DEFAULTS: dict[str, str] = {
    "Storage": "auto",
    "Compress": "yes",
    "Seal": "yes",
    "SplitMode": "uid",
    "SyncIntervalSec": "5m",
    "RateLimitIntervalSec": "30s",
    "RateLimitBurst": "10000",
    "ForwardToSyslog": "yes",
    "ForwardToKMsg": "no",
    "ForwardToConsole": "no",
    "ForwardToWall": "yes",
    "TTYPath": "/dev/console",
    "MaxLevelStore": "debug",
    "MaxLevelSyslog": "debug",
    "MaxLevelKMsg": "notice",
    "MaxLevelConsole": "info",
    "MaxLevelWall": "emerg",
    "LineMax": "48K",
    "ReadKMsg": "yes",
    "Audit": "no",
    "SystemMaxFiles": "100",
    "RuntimeMaxFiles": "100",
    "MaxFileSec": "1month",
}
SYSTEMD_VERSION = "Debian systemd 252"


class KvConfig:
    """Settings from one or more files in the order the program applies them (later wins),
    with the program's defaults for what they leave unset."""

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
        defaults: Mapping[str, str] | None = None,
        version: str = "",
        errors: Iterable[str] = (),
        stopped: str | None = None,
        arg_reader: Callable[[str, str], str] | None = None,
        derived: Mapping[str, str] | None = None,
        conf_reader: Callable[[str], KvConfig] | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> None:
        self._name = name
        # key -> "file:line: why" of a line the program ignores for that key
        self._refused = dict(refused or {})
        self._conf_reader = conf_reader
        self._derived = dict(derived or {})
        self._stopped = stopped
        self._arg_reader = arg_reader
        self._ignore_case = ignore_case
        self.path = path
        self.files = files
        self.exists = exists
        self.errors = tuple(errors)
        self._entries = entries
        self._lower = {k.lower(): v for k, v in entries.items()} if ignore_case else None
        self._int = int_reader
        self._defaults = dict(defaults or {})
        self._default_lower = (
            {k.lower(): v for k, v in self._defaults.items()} if ignore_case else None
        )
        self._version = version

    def describe(self) -> str:
        return self._name

    def _get(self, key: str) -> _Entry | None:
        hit = self._entries.get(key)
        if hit is None and self._lower is not None:
            hit = self._lower.get(key.lower())
        return hit

    def default(self, key: str) -> str | None:
        if key in self._derived:  # a default that is another key's value (root_unlock_time)
            return self.option(self._derived[key])
        hit = self._defaults.get(key)
        if hit is None and self._default_lower is not None:
            hit = self._default_lower.get(key.lower())
        return hit

    def option(self, key: str) -> str | None:
        e = self._get(key)
        return self.default(key) if e is None else e.value

    def _read(self, key: str, reader: Callable[[str | None], Any]) -> Any:
        """A value read as a number; one the program cannot parse is logged by it and its
        default used instead (shadow's getdef_num, systemd's config parser)."""
        got = reader(self.option(key))
        if got is None and self._get(key) is not None:
            got = reader(self.default(key))
        return got

    def _unparsed(self, key: str, reader: Callable[[str | None], Any]) -> builtins.bool:
        return self._get(key) is not None and reader(self.option(key)) is None

    def int(self, key: str) -> int | None:
        return self._read(key, self._int)

    def mode(self, key: str) -> builtins.int | None:
        return self._read(key, _octal)

    def size(self, key: str) -> builtins.int | None:
        return self._read(key, parse_size)

    def bool(self, key: str) -> builtins.bool | None:
        v = (self.option(key) or "").strip().lower()
        return True if v in _TRUE else False if v in _FALSE else None

    def has(self, key: str) -> builtins.bool:
        return self._get(key) is not None

    def with_args(self, entry: Any) -> KvConfig:
        """The settings a PAM module works with: these files, then the `name=value` arguments of
        its line in order, each overriding what came before. With an argument reader (pam_pwquality),
        an argument it refuses is skipped, as the module logs it and goes on. Where the module
        takes `conf=FILE` (pam_faillock), the last one names the file read instead of these."""
        base = self
        confs = [a[5:] for a in entry.args if a.startswith("conf=")]
        if confs and self._conf_reader is not None:
            base = self._conf_reader(confs[-1])
        entries = dict(base._entries)
        for a in entry.args:
            if base is not self and a.startswith("conf="):
                continue
            key, sep, value = a.partition("=")
            key = key.lower() if self._ignore_case else key
            if self._arg_reader is not None:
                try:
                    value = self._arg_reader(key, value)
                except ValueError:
                    continue
            elif not sep:
                value = "true"
            if self._ignore_case:
                for k in [k for k in entries if k.lower() == key]:
                    del entries[k]
            entries[key] = _Entry(value, at(entry.file, entry.lineno))
        return KvConfig(
            self._name,
            base.path,
            base.files,
            entries,
            base.exists,
            ignore_case=self._ignore_case,
            int_reader=self._int,
            defaults=self._defaults,
            version=self._version,
            errors=base.errors,
            stopped=base._stopped,
            arg_reader=self._arg_reader,
            derived=self._derived,
            refused=base._refused,
        )

    def where(self, name: str, *args: Any) -> str | None:
        if name == "errors":
            return ", ".join(self.errors) or self.path
        if args:
            e = self._get(str(args[0]))
            reader = {"int": self._int, "mode": _octal, "size": parse_size}.get(name)
            if e is not None and reader is not None and self._unparsed(str(args[0]), reader):
                dflt = self.default(str(args[0]))
                if dflt is not None:
                    return f"{e.source} (a value {self._version} refuses: its default {dflt})"
            if e is not None:
                return e.source
            refused = self._refused.get(str(args[0]))
            if refused is not None and name != "has":
                dflt = self.default(str(args[0]))
                return f"{refused} ({self._version} ignores the line" + (f": its default {dflt})" if dflt else ")")
            if name != "has" and str(args[0]) in self._derived:
                other = self._derived[str(args[0])]
                return f"{self.where(name, other)} ({args[0]} not set: it follows {other})"
            state = "not set" if self.exists else "absent"
            if self._stopped is not None:
                state = f"not set before {self._stopped}, where reading stopped"
            if name != "has" and self.default(str(args[0])) is not None:
                return f"{self.path} ({state}: {self._version} default)"
            return f"{self.path} ({state})"
        return self.path


def _octal(v: str | None) -> int | None:
    if v is None:
        return None
    try:
        return int(v, 8)
    except ValueError:
        return None


_RESET = "reset"  # an assignment that puts the key back to its default


def _getdef_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, name, value) as shadow's getdef.c def_load() reads login.defs: fgets()
    into a 1024-byte buffer (only `\n` ends a line, and a longer line comes in pieces read as
    lines of their own: a setting past byte 1023 of a comment line is read), trailing C
    blanks dropped, the name after leading blanks and tabs up to the next blank or tab (only
    those: `NAME\\v5` is one word, and a line of one word is skipped), the value after any
    blanks, tabs and `"`, up to a `"`."""
    for n, raw in fgets_lines(text, 1024):
        line = raw.rstrip(C_SPACE).lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        cut = min((i for i in (line.find(" "), line.find("\t")) if i != -1), default=-1)
        if cut == -1:
            continue
        value = line[cut + 1 :].lstrip(' "\t')
        yield n, line[:cut], value.split('"', 1)[0]


def _dec(s: str) -> int | None:
    try:
        return int(s.strip(), 10)
    except ValueError:
        return None


def collect_login_defs(ctx: FactContext) -> KvConfig:
    # shadow-utils' getdef: `NAME value`, the last definition wins, numbers read by strtol(.., 0)
    main = "/etc/login.defs"
    text = ctx.read_text(main)
    entries = {key: _Entry(value, at(main, n)) for n, key, value in _getdef_lines(text or "")}
    read = [] if text is None else [main]
    defaults = dict(LOGIN_DEFS_DEFAULTS)
    # Without ENCRYPT_METHOD, shadow's salt code falls back to MD5 when MD5_CRYPT_ENAB is yes,
    # else to DES (chgpasswd shows it: a 13-character DES hash).
    md5 = entries.get("MD5_CRYPT_ENAB")
    defaults["ENCRYPT_METHOD"] = "MD5" if md5 and md5.value.lower() == "yes" else "DES"
    return KvConfig(
        "login_defs",
        "/etc/login.defs",
        read,
        entries,
        "/etc/login.defs" in read,
        ignore_case=False,
        int_reader=c_integer,
        defaults=defaults,
        version=SHADOW_VERSION,
    )


_GETLONG = re.compile(r"[ \t\n\v\f\r]*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_LONG_MAX = (1 << 63) - 1


def _useradd_inactive(value: str | None) -> int | None:
    """INACTIVE as useradd's get_defaults() takes it: shadow's getlong() (strtol base 0, the
    whole value a number: no trailing blank or `\r`, within a long), at least -1; None where
    useradd refuses it (and keeps -1)."""
    if value is None or not _GETLONG.match(value):
        return None
    n = c_integer(value)
    return n if n is not None and -1 <= n <= _LONG_MAX else None


def collect_useradd_defaults(ctx: FactContext) -> KvConfig:
    """/etc/default/useradd as shadow 4.13's useradd reads it (get_defaults(), what `useradd -D`
    prints): fgets() into 1024 bytes (a longer line comes in pieces read as lines), a line
    counts when it starts with exactly `KEY=` (no blank before or around the `=`), its value
    is the rest of the line as is, and the last one wins. CREATE_MAIL_SPOOL= with no value is
    "no"; LOG_INIT= with none changes nothing."""
    path = "/etc/default/useradd"
    text = ctx.read_text(path)
    entries: dict[str, _Entry] = {}
    for n, line in fgets_lines(text or "", 1024):
        key, sep, value = line.partition("=")
        if sep and key in USERADD_DEFAULTS:
            if key == "CREATE_MAIL_SPOOL" and not value:
                value = "no"
            elif key == "LOG_INIT" and not value:
                continue  # useradd keeps what it had
            entries[key] = _Entry(value, at(path, n))
    return KvConfig(
        "useradd_defaults",
        path,
        [] if text is None else [path],
        entries,
        text is not None,
        ignore_case=False,
        int_reader=_useradd_inactive,
        defaults=USERADD_DEFAULTS,
        version=SHADOW_VERSION,
    )


# libpwquality 1.4.5's settings: how pwquality.conf and pam_pwquality's arguments are read
_PWQ_INT = frozenset(
    (
        "difok",
        "minlen",
        "dcredit",
        "ucredit",
        "lcredit",
        "ocredit",
        "minclass",
        "maxrepeat",
        "maxclassrepeat",
        "maxsequence",
        "gecoscheck",
        "dictcheck",
        "usercheck",
        "usersubstr",
        "enforcing",
        "retry",
    )
)
_PWQ_STR = frozenset(("badwords", "dictpath"))
_PWQ_SET = frozenset(("enforce_for_root", "local_users_only"))
_INT_MAX = 2**31 - 1
_C_LONG = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def _pwquality_value(name: str, value: str) -> str:
    """The value libpwquality stores for `name`, or ValueError with its complaint."""
    if name in _PWQ_SET:
        return "true"  # the value is ignored: the flag is on
    if name in _PWQ_STR:
        return value
    if name not in _PWQ_INT:
        raise ValueError(f"unknown setting {name!r}")
    # strtol(value, &end, 10): the whole value, within int's range
    if not value or _C_LONG.fullmatch(value) is None or not -_INT_MAX < int(value) < _INT_MAX:
        raise ValueError(f"{name}: {value!r} is not an integer")
    n = int(value)
    if name == "minlen":
        n = max(n, 6)  # PWQ_BASE_MIN_LENGTH
    elif name == "minclass":
        n = min(n, 4)  # PWQ_NUM_CLASSES
    return str(n)


_C_CONF_LINE = re.compile(r"([^ \t\n\v\f\r=]*)[ \t\n\v\f\r]*=?[ \t\n\v\f\r]*(.*)$", re.DOTALL)


class _LineTooLong(Exception):
    """A line libpwquality's and pam_faillock's readers refuse the whole file for."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _c_conf_lines(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, name, value) as libpwquality's and pam_faillock's readers split a line:
    fgets() into 1024 bytes (only `\n` ends a line), up to a `#`, C blanks (isspace) trimmed,
    a name ended by a blank or `=`, then blanks, at most one `=`, blanks and the value. A line
    that does not fit (1023 bytes or more before its newline, unless the file ends there)
    raises _LineTooLong after the lines before it: both readers give up on the file there."""
    pieces = fgets_pieces(text, 1024)
    for i, (n, piece) in enumerate(pieces):
        if not piece.endswith(b"\n") and i + 1 < len(pieces):
            raise _LineTooLong(n)
        raw = piece.split(b"\0", 1)[0].rstrip(b"\n").decode("utf-8", "surrogateescape")
        line = raw.split("#", 1)[0].strip(C_SPACE)
        if line:
            m = _C_CONF_LINE.match(line)
            assert m is not None  # the pattern matches every line
            yield n, m.group(1), m.group(2)


def _read_pwquality(
    ctx: FactContext, files: list[str]
) -> tuple[dict[str, _Entry], list[str], list[str]]:
    """pwquality_read_config: each line up to a `#`, a name (case-insensitive) ended by a blank
    or `=`, then blanks, at most one `=`, blanks and the value. The first line it refuses (an
    unknown name, a value that is not an integer) ends the reading of every file: what came
    before stays in force, pam_pwquality logs the error and goes on with it."""
    out: dict[str, _Entry] = {}
    read: list[str] = []
    for path in files:
        text = ctx.read_text(path)
        if text is None:
            continue
        read.append(path)
        try:
            for n, name, raw_value in _c_conf_lines(text):
                name = name.lower()
                try:
                    value = _pwquality_value(name, raw_value)
                except ValueError as e:
                    where = at(path, n)
                    return out, read, [f"{where}: {e}; libpwquality stops reading here"]
                out[name] = _Entry(value, at(path, n))
        except _LineTooLong as long_line:
            where = at(path, long_line.line)
            why = "line longer than 1022 bytes (malformed configuration file); libpwquality stops reading here"
            return out, read, [f"{where}: {why}"]
    return out, read, []


def collect_pwquality(ctx: FactContext) -> KvConfig:
    # libpwquality reads pwquality.conf.d/*.conf in ASCII order first, then pwquality.conf
    main = "/etc/security/pwquality.conf"
    drop = sorted(ctx.glob("/etc/security/pwquality.conf.d/*.conf"))
    entries, read, errors = _read_pwquality(ctx, drop + [main])
    return KvConfig(
        "pwquality",
        main,
        read,
        entries,
        main in read,
        ignore_case=True,
        int_reader=lambda v: None if v is None else _dec(v),
        defaults=PWQUALITY_DEFAULTS,
        version=PWQUALITY_VERSION,
        errors=errors,
        stopped=errors[0].split(": ", 1)[0] if errors else None,
        arg_reader=_pwquality_value,
    )


# pam_faillock 1.5.2's set_conf_opt: names compared case-sensitively, numbers read by sscanf
_FAILLOCK_FLAGS = frozenset(
    (
        "even_deny_root",
        "audit",
        "silent",
        "no_log_info",
        "local_users_only",
        "nodelay",
        "uid_based_files",
    )
)
_MAX_TIME_INTERVAL = 604800
_SCANF_UNSIGNED = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


def _scanf_unsigned(value: str, bits: int) -> int:
    """sscanf(value, "%u" or "%hu"): blanks, a sign, digits (what follows is left unread),
    converted as strtoul does (a minus wraps round) and cut to the target's width."""
    m = _SCANF_UNSIGNED.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not a number")
    n = min(int(m.group(2)), 2**64 - 1)
    if m.group(1) == "-":
        n = (-n) % 2**64
    return n % 2**bits


def _faillock_value(name: str, value: str) -> str:
    """The value pam_faillock stores for `name`, or ValueError where it logs and keeps the
    earlier value."""
    if name in _FAILLOCK_FLAGS:
        return "true"  # whatever follows the flag
    if name == "deny":
        return str(_scanf_unsigned(value, 16))
    if name in ("fail_interval", "unlock_time", "root_unlock_time"):
        if value == "never" and name != "fail_interval":
            return "0"
        n = _scanf_unsigned(value, 32)
        if n > _MAX_TIME_INTERVAL:
            raise ValueError(f"{name}: {n} is more than {_MAX_TIME_INTERVAL}")
        return str(n)
    if name == "dir":
        if not value.startswith("/"):
            raise ValueError(f"dir: {value!r} is not an absolute path")
        return value
    if name == "admin_group":
        return value
    raise ValueError(f"unknown option {name!r}")


FAILLOCK_CONF = "/etc/security/faillock.conf"


def collect_faillock(ctx: FactContext, conf: str | None = None) -> KvConfig:
    """faillock.conf as pam_faillock reads it: `#` comments anywhere, `name [=] value`, a line
    it refuses (unknown option, bad number) logged and skipped, the last setting winning;
    root_unlock_time follows unlock_time unless set. `conf`: the file a module line names with
    `conf=` (`with_args` reads it), which must exist where faillock.conf need not."""
    main = conf or FAILLOCK_CONF
    entries: dict[str, _Entry] = {}
    errors: list[str] = []
    refused: dict[str, str] = {}
    text = ctx.read_text(main)
    if conf is not None and text is None:
        raise EvaluationError(
            f"pam_faillock conf={conf}: the file cannot be read, so pam_faillock fails every authentication it "
            "takes part in (PAM_SERVICE_ERR): no lockout policy can be read"
        )
    try:
        for n, name, raw_value in _c_conf_lines(text or ""):
            try:
                entries[name] = _Entry(_faillock_value(name, raw_value), at(main, n))
            except ValueError as e:
                errors.append(f"{at(main, n)}: {e}; pam_faillock ignores the line")
                refused[name] = f"{at(main, n)}: {e}"
    except _LineTooLong as long_line:
        raise EvaluationError(
            f"{at(main, long_line.line)}: line longer than 1022 bytes: pam_faillock refuses the file and fails "
            "every authentication it takes part in (PAM_SERVICE_ERR)"
        ) from None
    return FaillockConfig(
        "faillock",
        main,
        [] if text is None else [main],
        entries,
        text is not None,
        ignore_case=False,
        int_reader=lambda v: None if v is None else _dec(v),
        defaults=FAILLOCK_DEFAULTS,
        version=FAILLOCK_VERSION,
        errors=errors,
        arg_reader=_faillock_value,
        derived={"root_unlock_time": "unlock_time"},
        conf_reader=None if conf is not None else (lambda path: collect_faillock(ctx, path)),
        refused=refused,
    )


# --- pam_faillock at work: libpam running an auth stack for an ordinary account ------------------
_SUCCESS, _AUTH_ERR, _IGNORE = (PAM_RETURNS.index(n) for n in ("success", "auth_err", "ignore"))
# what a module this model does not know may return: for a wrong password it refuses or stays
# out of it; for the right one it may also accept it
_UNKNOWN_WRONG = (_AUTH_ERR, _IGNORE)
_UNKNOWN_RIGHT = (_SUCCESS, _AUTH_ERR, _IGNORE)
_MAX_UNKNOWN = 4


@dataclass
class _FaillockLine:
    action: str
    deny: int
    fail_interval: int
    unlock_time: int
    dir: str


class _Lockout:
    """libpam's dispatch over an auth stack (pam.dispatch), for a local account that is neither
    root nor in an admin_group: pam_unix accepts the right password and refuses a wrong one,
    pam_deny refuses, pam_permit accepts, pam_faillock counts, checks and resets as pam_faillock
    1.5.2 does, and any other module returns what `unknown` says for it."""

    def __init__(self, lines: Sequence[PamEntry], faillock: dict[int, _FaillockLine]) -> None:
        self.lines = lines
        self.faillock = faillock
        self.tally: dict[str, list[int]] = {}  # tally dir -> times of the valid failures

    def _check(self, fl: _FaillockLine, now: int) -> tuple[bool, bool]:
        """check_tally: (locked, lock expired)."""
        times = self.tally.get(fl.dir, [])
        latest = max(times, default=0)
        failures = sum(1 for t in times if latest - t < fl.fail_interval)
        if fl.deny and failures >= fl.deny:
            if fl.unlock_time and latest + fl.unlock_time < now:
                return False, True
            return True, False
        return False, False

    def _faillock(self, fl: _FaillockLine, now: int) -> int:
        locked, expired = self._check(fl, now)
        if locked:
            return _AUTH_ERR
        if fl.action == "authsucc":
            self.tally[fl.dir] = []
            return _SUCCESS
        if fl.action == "authfail":
            kept = [] if expired else [t for t in self.tally.get(fl.dir, []) if now - t < fl.fail_interval]
            self.tally[fl.dir] = kept + [now]
            return _IGNORE
        return _SUCCESS

    def attempt(self, right: bool, now: int, unknown: Mapping[str, int]) -> bool:
        """One pam_authenticate(): whether it succeeds."""

        def result(i: int, e: PamEntry) -> int:
            fl = self.faillock.get(i)
            if fl is not None:
                return self._faillock(fl, now)
            if e.module == "pam_unix.so":
                return _SUCCESS if right else _AUTH_ERR
            if e.module == "pam_deny.so":
                return _AUTH_ERR
            if e.module == "pam_permit.so":
                return _SUCCESS
            return unknown[e.module]

        return dispatch(self.lines, result)


_LOCK_START = 1_000_000  # the time of the failures; any time will do


def faillock_lockout(cfg: KvConfig, stack: Any, attempts: int, seconds: int) -> tuple[bool, str]:
    """Whether libpam running this auth stack refuses an ordinary account's right password
    `seconds` after `attempts` wrong ones (0: a year after), for every return of the modules it
    does not model; and why not."""
    entries = stack.lines_of("auth")
    lines: dict[int, _FaillockLine] = {}
    for i, e in enumerate(entries):
        if e.module != "pam_faillock.so" or e.must_fail or e.substack:
            continue
        opts = cfg.with_args(e)
        action = next((a for a in reversed(e.args) if a in ("preauth", "authfail", "authsucc")), "preauth")
        lines[i] = _FaillockLine(
            action,
            opts.int("deny") or 0,
            opts.int("fail_interval") or 0,
            opts.int("unlock_time") or 0,
            opts.option("dir") or FAILLOCK_DEFAULTS["dir"],
        )
    unknown = sorted({e.module for i, e in enumerate(entries) if i not in lines and not e.must_fail
                      and not e.substack and e.module not in ("pam_unix.so", "pam_deny.so", "pam_permit.so")})
    if len(unknown) > _MAX_UNKNOWN:
        raise EvaluationError(
            f"{stack.describe()}: {len(unknown)} auth modules whose answers decide the lockout ({', '.join(unknown)}); "
            "cannot tell whether pam_faillock locks"
        )
    later = _LOCK_START + (seconds if seconds > 0 else 366 * 86400)
    for wrong in _choices(unknown, _UNKNOWN_WRONG):
        for right in _choices(unknown, _UNKNOWN_RIGHT):
            run = _Lockout(entries, lines)
            for _ in range(attempts):
                if run.attempt(False, _LOCK_START, wrong):
                    return False, f"{stack.describe()}: a wrong password gets in{_given(wrong)}"
            if run.attempt(True, later, right):
                after = f"{seconds} s" if seconds > 0 else "a year"
                return False, (
                    f"{stack.describe()}: after {attempts} wrong passwords the right one gets in {after} later "
                    f"(pam_faillock lines: {', '.join(f'{entries[i].file}:{entries[i].lineno}' for i in lines)})"
                    f"{_given({**wrong, **right})}"
                )
    return True, f"{stack.describe()}: locked after {attempts} wrong passwords"


def _choices(names: list[str], values: tuple[int, ...]) -> Iterator[dict[str, int]]:
    if not names:
        yield {}
        return
    for rest in _choices(names[1:], values):
        for v in values:
            yield {names[0]: v, **rest}


def _given(unknown: Mapping[str, int]) -> str:
    if not unknown:
        return ""
    return " when " + ", ".join(f"{m} returns {PAM_RETURNS[r]}" for m, r in unknown.items())


class FaillockConfig(KvConfig):
    """faillock.conf, and what pam_faillock does with it in an auth stack (`locks`)."""

    _lockouts: dict[tuple[Any, int, int], tuple[bool, str]] | None = None

    def _lockout(self, stack: Any, attempts: int, seconds: int) -> tuple[bool, str]:
        """faillock_lockout, worked out once per question (a stack is keyed by identity): the
        verdict and its evidence ask it in turn, and it may run the stack thousands of times."""
        if self._lockouts is None:
            self._lockouts = {}
        key = (stack, attempts, seconds)
        if key not in self._lockouts:
            self._lockouts[key] = faillock_lockout(self, stack, attempts, seconds)
        return self._lockouts[key]

    def locks(self, stack: Any, attempts: int, seconds: int) -> builtins.bool:
        return self._lockout(stack, attempts, seconds)[0]

    def where(self, name: str, *args: Any) -> str | None:
        if name == "locks" and len(args) == 3:
            return self._lockout(*args)[1]
        return super().where(name, *args)


FAILLOCK = ObjectType(
    "faillock",
    dict(KV.fields),
    {
        **KV.methods,
        "locks": Method(
            (PAM, INT, INT),
            BOOL,
            "whether libpam, running the stack's auth lines for a local account that is not root,"
            " refuses the right password `seconds` after `attempts` wrong ones (0: a year later):"
            " pam_unix checks the password, pam_deny refuses, pam_permit accepts, each pam_faillock"
            " line counts, checks or resets with its own settings (`with_args`), and every other"
            " module may refuse or ignore a wrong password and accept, refuse or ignore the right one",
        ),
    },
    doc="/etc/security/faillock.conf as pam_faillock reads it, and what its lines do in a stack",
    field_docs=KV.field_docs,
)

# --- auditd.conf: auditd's own parser --------------------------------------------------------------
_AUDITD_YES_NO = {
    "local_events",
    "write_logs",
    "verify_email",
    "use_libwrap",
    "distribute_network",
    "enable_krb5",
}
_AUDITD_NUMBERS = {
    "freq": None,
    "num_logs": 999,
    "priority_boost": None,
    "max_log_file": None,
    "tcp_listen_port": 65535,
    "tcp_listen_queue": None,
    "tcp_max_per_addr": 1024,
    "tcp_client_max_idle": None,
    "q_depth": 99999,
    "max_restarts": None,
    "end_of_event_timeout": None,
}
_FAILURE_ACTIONS = {"ignore", "syslog", "rotate", "email", "exec", "suspend", "single", "halt"}
_AUDITD_CHOICES = {
    "log_format": {"raw", "nolog", "enriched"},
    "flush": {"none", "incremental", "incremental_async", "data", "sync"},
    "name_format": {"none", "hostname", "fqd", "numeric", "user"},
    "max_log_file_action": {"ignore", "syslog", "suspend", "rotate", "keep_logs"},
    "space_left_action": _FAILURE_ACTIONS,
    "admin_space_left_action": _FAILURE_ACTIONS,
    "disk_full_action": _FAILURE_ACTIONS,
    "disk_error_action": _FAILURE_ACTIONS,
    "overflow_action": {"ignore", "syslog", "suspend", "single", "halt"},
    "transport": {"tcp", "krb5"},
}
_AUDITD_KEYWORDS = (
    {"log_file", "log_group", "dispatcher", "name", "disp_qos", "space_left", "admin_space_left"}
    | {"action_mail_acct", "tcp_client_ports", "krb5_principal", "krb5_key_file", "plugin_dir"}
    | _AUDITD_YES_NO
    | set(_AUDITD_NUMBERS)
    | set(_AUDITD_CHOICES)
)
_AUDITD_WITH_OPTION = {
    "space_left_action",
    "admin_space_left_action",
    "disk_full_action",
    "disk_error_action",
}


def _auditd_value(key: str, value: str, option: str | None) -> str | None:
    """Why auditd 3.0.9 refuses this value, or None."""
    if option is not None and key not in _AUDITD_WITH_OPTION:
        return f'Keyword "{key}" has invalid option "{option}"'
    if key in _AUDITD_YES_NO and value.lower() not in ("yes", "no"):
        return f"Option {value} not found"
    if key in _AUDITD_CHOICES and value.lower() not in _AUDITD_CHOICES[key]:
        return f"Option {value} not found"
    if key in _AUDITD_NUMBERS:
        if not value.isdigit():
            return f"Value {value} should only be numbers"
        limit = _AUDITD_NUMBERS[key]
        if limit is not None and int(value) > limit:
            return f"{key} must be {limit} or less"
    if key in ("space_left", "admin_space_left") and not re.fullmatch(r"\d+(\.\d+)?%?", value):
        return f"Value {value} should only be numbers or a percentage"
    return None


def _auditd_sanity(entries: dict[str, _Entry], source: str) -> str | None:
    def num(k: str) -> float:
        v = entries[k].value if k in entries else AUDITD_DEFAULTS.get(k, "0")
        return float(v.rstrip("%")) if re.fullmatch(r"\d+(\.\d+)?%?", v) else 0.0

    percent = any(
        k in entries and entries[k].value.endswith("%") for k in ("space_left", "admin_space_left")
    )
    if not percent and num("space_left") <= num("admin_space_left"):
        return (
            f"{source}: space_left({int(num('space_left'))}) must be larger than "
            f"admin_space_left({int(num('admin_space_left'))})"
        )
    flush = (entries["flush"].value if "flush" in entries else "none").lower()
    if flush in ("incremental", "incremental_async") and num("freq") == 0:
        return f"{source}: incremental flushing chosen, but 0 selected for freq"
    group = entries["log_group"].value if "log_group" in entries else "root"
    log_file = entries["log_file"].value if "log_file" in entries else AUDITD_DEFAULTS["log_file"]
    if group not in ("root", "0") and log_file.rsplit("/", 1)[0] == "/var/log":
        return (
            f"{source}: log_file is directly in /var/log and chgrp would alter a system directory"
        )
    return None


def _auditd_line(ctx: FactContext, raw: str, entries: dict[str, _Entry], where: str) -> str | None:
    """Read one line into `entries`; return why auditd refuses it (and stops), if it does."""
    parts = raw.split(" ")
    parts = [p for p in parts if p]  # audit_strsplit: words between spaces (a tab is a letter)
    if not parts or parts[0].startswith("#"):
        return None
    if len(parts) == 1:
        return "Wrong number of arguments"
    if parts[1] != "=":
        return "Missing equal sign"
    if len(parts) == 2:
        return "Wrong number of arguments"
    key = parts[0].lower()
    if key not in _AUDITD_KEYWORDS:
        return f'Unknown keyword "{parts[0]}"'
    value = parts[2]
    why = _auditd_value(key, value, parts[3] if len(parts) > 3 else None)
    if why is None and key == "log_file":
        why = _auditd_log_file(ctx, value)
        value = _from_root(value)
    if why is None:
        entries[key] = _Entry(value, where)
    return why


def _dirname(path: str) -> str:
    """POSIX dirname(3): trailing slashes dropped, "." for a name without a slash."""
    path = path.rstrip("/") or "/"
    if "/" not in path:
        return "."
    return path.rsplit("/", 1)[0].rstrip("/") or "/"


def _from_root(path: str) -> str:
    """A path as auditd opens it: a relative one from its working directory, which is / (auditd.service
    sets no WorkingDirectory=, and systemd starts a system service in /)."""
    return path if path.startswith("/") else "/" + path


def _auditd_log_file(ctx: FactContext, path: str) -> str | None:
    """Why auditd 3.0.9's log_file_parser refuses the value: the dirname(3) of it shorter than
    "/var" (so "audit.log", whose dirname is ".", is refused), a directory it cannot open, or a
    file there that is not a regular file owned by root."""
    parent = _dirname(path)
    if len(parent) < 4:
        return f"The directory name: {parent} is too short"
    st = ctx.stat(_from_root(parent))
    if st is None or not stat.S_ISDIR(st.st_mode):
        return f"Could not open dir {parent} (No such file or directory)"
    st = ctx.stat(_from_root(path).rstrip("/") or "/")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st is not None and st.st_uid != 0:
        return f"{path} is not owned by root"
    return None


def _auditd_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) as auditd's get_line() hands them over: fgets() into 160 bytes, and a
    line whose newline it does not find with strchr() skipped whole ("Skipping line N: too
    long", and its setting never applies): one of 159 bytes or more, or one holding a NUL,
    which also takes the line after it along; a last line without a newline is read."""
    pieces = fgets_pieces(text, 160)
    too_long = False
    for i, (n, piece) in enumerate(pieces):
        if piece.endswith(b"\n") and b"\0" not in piece:
            if not too_long:
                yield n, piece[:-1].decode("utf-8", "surrogateescape")
            too_long = False
        elif not too_long and i + 1 == len(pieces) and len(piece) < 159:
            # fgets met the end of the file
            yield n, piece.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        else:
            too_long = True


def collect_auditd_conf(ctx: FactContext) -> KvConfig:
    """auditd.conf as auditd 3.0.9 loads it: `name = value [option]` words split at spaces, the
    last setting wins; a line it refuses (no ` = `, an unknown keyword, a bad value), a file not
    owned by root or world-writable, or a failed sanity check stops auditd from starting."""
    main = "/etc/audit/auditd.conf"
    entries: dict[str, _Entry] = {}
    errors: list[str] = []
    text = ctx.read_text(main)
    st = ctx.stat(main)
    if text is not None and st is not None:
        if st.st_uid != 0:
            errors.append(f"{main}: isn't owned by root")
        elif st.st_mode & stat.S_IWOTH:
            errors.append(f"{main}: is world writable")
        for n, raw in _auditd_lines(text):
            if errors:
                break
            why = _auditd_line(ctx, raw, entries, at(main, n))
            if why:
                errors.append(f"{at(main, n)}: {why}")
        if not errors and entries:
            why = _auditd_sanity(entries, main)
            if why:
                errors.append(why)
    return KvConfig(
        "auditd_conf",
        main,
        [main] if text is not None else [],
        entries,
        text is not None,
        ignore_case=True,
        int_reader=lambda s: None if s is None else _dec(s),
        defaults=AUDITD_DEFAULTS,
        version=AUDITD_VERSION,
        errors=errors,
    )


_JOURNALD_BOOLS = {"Seal", "ForwardToSyslog", "ForwardToKMsg", "ForwardToConsole", "ForwardToWall", "ReadKMsg", "Audit"}
_JOURNALD_STORAGE = {"volatile", "persistent", "auto", "none"}


def _journald_refusal(key: str, value: str) -> str | None:
    """Why journald 252 ignores an assignment of a key the packs read, keeping the value
    before it (its parsers: config_parse_bool, the storage table, config_parse_compress)."""
    if key in _JOURNALD_BOOLS and parse_boolean(value) is None:
        return f"Failed to parse boolean value, ignoring: {value}"
    if key == "Storage" and value not in _JOURNALD_STORAGE:
        return f"Failed to parse storage setting, ignoring: {value}"
    if key == "Compress":
        if not value:
            return _RESET
        if parse_boolean(value) is None and parse_size(value) is None:
            return f"Failed to parse Compress= value, ignoring: {value}"
    return None


def _systemd_daemon_conf(
    ctx: FactContext, name: str, section: str, keep: Callable[[str, str], str]
) -> tuple[str, list[str], dict[str, _Entry], list[str], str | None]:
    """A systemd daemon's configuration `name` (`systemd/journald.conf`): the files in
    systemd's order, the `section` assignments systemd reads, each passed through `keep(key,
    value)`, which gives the value kept, _RESET (back to the default) or raises ValueError
    with why the daemon ignores it. Returns (main file, files read, entries, errors, the file
    where systemd stopped reading)."""
    files = systemd_conf_files(ctx, name)
    assignments, read, stopped = config_parse_files(ctx, files, {section})
    entries: dict[str, _Entry] = {}
    errors: list[str] = []
    for path, a in assignments:
        try:
            value = keep(a.key, a.value)
        except ValueError as exc:
            errors.append(f"{at(path, a.line)}: {exc}")
            continue
        if value == _RESET:
            entries.pop(a.key, None)
        else:
            entries[a.key] = _Entry(value, at(path, a.line))
    if stopped is not None:
        errors.append(f"{stopped[0]}: {stopped[1]}; systemd reads no further (nor the files after it)")
    return files[0], read, entries, errors, None if stopped is None else stopped[0]


def _journald_value(key: str, value: str) -> str:
    why = _journald_refusal(key, value)
    if why is not None and why != _RESET:
        raise ValueError(why)
    return _RESET if why == _RESET else value


def collect_journald(ctx: FactContext) -> KvConfig:
    # systemd: the main file, then the drop-ins of all journald.conf.d directories sorted by
    # name, a name in an earlier directory hiding the same name later (and a link to /dev/null
    # hiding it); [Journal] only, keys as written
    return _systemd_daemon_kv(ctx, "journald", "Journal", _journald_value, JOURNALD_DEFAULTS)


def _systemd_daemon_kv(ctx: FactContext, name: str, section: str, value: Callable[[str, str], str],
                       defaults: Mapping[str, str]) -> KvConfig:
    """`systemd/NAME.conf` and its drop-ins as a systemd 252 daemon reads them (see
    `_systemd_daemon_conf`), its defaults for what they leave unset."""
    main, read, entries, errors, stopped = _systemd_daemon_conf(ctx, f"systemd/{name}.conf", section, value)
    return KvConfig(
        name,
        main,
        read,
        entries,
        main in read,
        ignore_case=False,
        int_reader=lambda v: None if v is None else _dec(v),
        defaults=defaults,
        version=SYSTEMD_VERSION,
        errors=errors,
        stopped=stopped,
    )


_JOURNAL_UPLOAD_PATHS = frozenset(("ServerKeyFile", "ServerCertificateFile", "TrustedCertificateFile"))
_SIMPLIFY = re.compile(r"/+")
_UNSAFE = re.compile(r"[\x01-\x1f\x7f\"'\\]")  # what systemd's string_is_safe() refuses


def _journal_upload_value(key: str, value: str) -> str | None:
    """The value systemd-journal-upload 252 keeps for an assignment: _RESET for an empty URL or
    path (or `-` for a path: config_parse_path_or_ignore), the path simplified (runs of `/`
    and `/./` folded, no trailing `/`), None where it refuses a path that is not absolute or a
    URL with a control character, a quote or a backslash (CONFIG_PARSE_STRING_SAFE), and keeps
    the value before."""
    if key not in _JOURNAL_UPLOAD_PATHS:
        return None if key == "URL" and _UNSAFE.search(value) else value or _RESET
    if value in ("", "-"):
        return _RESET
    if not value.startswith("/") or "/../" in f"{value}/":
        return None
    parts = [p for p in _SIMPLIFY.split(value) if p not in ("", ".")]
    return "/" + "/".join(parts)


def _journal_upload_kept(key: str, value: str) -> str:
    kept = _journal_upload_value(key, value)
    if kept is None:
        why = "is not an absolute path" if key in _JOURNAL_UPLOAD_PATHS else "contains unsafe characters"
        raise ValueError(f"{key}= {value!r} {why}: ignored")
    return kept


JOURNAL_UPLOAD = ObjectType(
    "journal_upload",
    {**KV.fields, "upload_url": STR},
    methods={k: m for k, m in KV.methods.items() if k != "with_args"},
    doc="journal-upload.conf and its drop-ins, with the address systemd-journal-upload sends to",
    field_docs={
        **KV.field_docs,
        "upload_url": "the URL systemd-journal-upload 252 uploads to, as it prints it: a URL= value without"
        " http:// or https:// gets https:// (and port 19532 with no `:` after the scheme); null when URL is"
        " unset or a file stops systemd's parser (the uploader does not start)",
    },
)
_UPLOAD_PORT = 19532  # DEFAULT_PORT in journal-upload.c


def journal_upload_url(url: str | None) -> str | None:
    """The address systemd-journal-upload 252 builds from URL= (setup_uploader()): a value not
    starting with `http://` or `https://` (case matters) gets `https://` in front; with no `:` after
    the scheme, one trailing `/` goes and the default port is added; then `/upload`."""
    if url is None:
        return None
    scheme = next((s for s in ("http://", "https://") if url.startswith(s)), "")
    proto = "" if scheme else "https://"
    if ":" in url[len(scheme):]:
        return f"{proto}{url}/upload"
    return f"{proto}{url.removesuffix('/')}:{_UPLOAD_PORT}/upload"


class JournalUploadConfig(KvConfig):
    """journal-upload.conf as the uploader reads it, and the URL it builds from it."""

    @property
    def upload_url(self) -> str | None:
        if self._stopped is not None:  # a file it cannot parse: the uploader does not start
            return None
        return journal_upload_url(self.option("URL"))

    def where(self, name: str, *args: Any) -> str | None:
        if name != "upload_url":
            return super().where(name, *args)
        if self._stopped is not None:
            return f"{self._stopped} (systemd-journal-upload stops reading there and does not start)"
        return self.where("option", "URL")


def collect_journal_upload(ctx: FactContext) -> JournalUploadConfig:
    # systemd-journal-upload: journal-upload.conf and its drop-ins, [Upload]; the same files and
    # order as journald's
    main, read, entries, errors, stopped = _systemd_daemon_conf(
        ctx, "systemd/journal-upload.conf", "Upload", _journal_upload_kept
    )
    return JournalUploadConfig(
        "journal_upload",
        main,
        read,
        entries,
        main in read,
        ignore_case=False,
        int_reader=lambda v: None,
        version=SYSTEMD_VERSION,
        errors=errors,
        stopped=stopped,
    )


# --- postfix main.cf ------------------------------------------------------------------------------
POSTFIX_MAIN = "/etc/postfix/main.cf"
# What postfix 3.7 (Debian 12) uses where main.cf is silent (`postconf -d`), for what the packs read.
POSTFIX_DEFAULTS = {"inet_interfaces": "all", "inet_protocols": "all"}
_POSTFIX_BLANK = " \t\n\v\f\r"  # isspace() in the C locale
_POSTFIX_MACRO = re.compile(r"\$(?:([A-Za-z0-9_]+)|\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\))")


def _postfix_logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """main.cf's logical lines as postfix's readllines() makes them: blank lines and lines whose
    first non-blank character is `#` are skipped (inside a continued line too); a line starting
    with a blank continues the logical line before it (joined with one space); one with nothing
    before it is ignored (postfix warns "logical line must not start with whitespace")."""
    start = 0
    parts: list[str] = []
    for n, raw in enumerate(text.split("\n"), 1):
        stripped = raw.strip(_POSTFIX_BLANK)
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in _POSTFIX_BLANK:
            if parts:
                parts.append(stripped)
            continue
        if parts:
            yield start, " ".join(parts)
        start, parts = n, [raw.rstrip(_POSTFIX_BLANK)]
    if parts:
        yield start, " ".join(parts)


def _postfix_expand(value: str, raw: Mapping[str, str], depth: int = 0) -> str:
    """`$name`, `${name}` and `$(name)` replaced as postconf -x does (an undefined name by
    nothing); other forms (`${name?text}`) are left as written, so they match no value a check
    asks for."""
    if "$" not in value or depth > 20:
        return value

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        got = raw.get(name, POSTFIX_DEFAULTS.get(name, ""))
        return _postfix_expand(got, raw, depth + 1)

    return _POSTFIX_MACRO.sub(one, value)


def collect_postfix(ctx: FactContext) -> KvConfig:
    """/etc/postfix/main.cf as postfix reads it: `name = value` (blanks around `=` and at the end
    go; `#` starts a comment only at a line's start), the last setting wins, names are case
    sensitive, values with `$name` expanded (what `postconf -x` prints)."""
    text = ctx.read_text(POSTFIX_MAIN)
    raw: dict[str, str] = {}
    where: dict[str, str] = {}
    errors = []
    for n, line in _postfix_logical_lines(text or ""):
        name, sep, value = line.partition("=")
        name = name.strip(_POSTFIX_BLANK)
        if not sep or not name:
            errors.append(f"{at(POSTFIX_MAIN, n)}: missing '=' after attribute name (postfix stops)")
            continue
        raw[name] = value.strip(_POSTFIX_BLANK)
        where[name] = at(POSTFIX_MAIN, n)
    entries = {name: _Entry(_postfix_expand(value, raw), where[name]) for name, value in raw.items()}
    return KvConfig(
        "postfix",
        POSTFIX_MAIN,
        [] if text is None else [POSTFIX_MAIN],
        entries,
        text is not None,
        ignore_case=False,
        int_reader=c_integer,
        defaults=POSTFIX_DEFAULTS,
        version="postfix 3.7",
        errors=errors,
    )


# --- systemd-coredump: coredump.conf --------------------------------------------------------------
# What systemd-coredump 252 uses where coredump.conf is silent (64-bit: ProcessSizeMax 32G).
COREDUMP_DEFAULTS = {"Storage": "external", "ProcessSizeMax": "32G"}
_COREDUMP_STORAGE = ("none", "external", "journal")


def _coredump_value(key: str, value: str) -> str:
    """The value systemd-coredump 252 keeps for an assignment; a ValueError with its warning where
    it ignores one and keeps the value before (its storage table, config_parse_iec_uint64)."""
    if key == "Storage" and value not in _COREDUMP_STORAGE:
        raise ValueError(f"Failed to parse storage setting, ignoring: {value}")
    if key == "ProcessSizeMax" and parse_size(value) is None:
        raise ValueError(f"Failed to parse size value, ignoring: {value}")
    return value


def collect_coredump(ctx: FactContext) -> KvConfig:
    """coredump.conf as systemd-coredump 252 reads it: /etc/systemd/coredump.conf, then the
    coredump.conf.d drop-ins of /etc, /run, /usr/local/lib and /usr/lib sorted by name (what
    `systemd-analyze cat-config systemd/coredump.conf` shows), [Coredump] only, the last
    assignment it accepts winning."""
    return _systemd_daemon_kv(ctx, "coredump", "Coredump", _coredump_value, COREDUMP_DEFAULTS)


# --- exim4: update-exim4.conf.conf ---------------------------------------------------------------
EXIM4_CONF = "/etc/exim4/update-exim4.conf.conf"


def collect_exim4(ctx: FactContext) -> KvConfig:
    """/etc/exim4/update-exim4.conf.conf as Debian's update-exim4.conf reads it: it sources the
    file with /bin/sh, so the last assignment wins, quotes are sh's (`dc_local_interfaces='127.0.0.1
    ; ::1'`), and what only running sh could tell (a command, `$(...)`) is an error naming the line."""
    text = ctx.read_text(EXIM4_CONF)
    env: dict[str, str] = {}
    origin: dict[str, str] = {}
    if text is not None:
        try:
            source(text, EXIM4_CONF, env, origin)
        except CannotTell as e:
            raise EvaluationError(f"{e} (update-exim4.conf sources the file with sh)") from None
    entries = {name: _Entry(value, origin.get(name, EXIM4_CONF)) for name, value in env.items()}
    return KvConfig(
        "exim4",
        EXIM4_CONF,
        [] if text is None else [EXIM4_CONF],
        entries,
        text is not None,
        ignore_case=False,
        int_reader=c_integer,
        version="update-exim4.conf (exim4-config 4.96)",
    )


def register(reg: FactRegistry) -> None:
    reg.register(
        "login_defs",
        collect_login_defs,
        returns=KV,
        doc="/etc/login.defs (last definition wins; shadow 4.13 defaults)",
    )
    reg.register(
        "useradd_defaults",
        collect_useradd_defaults,
        returns=KV,
        doc="/etc/default/useradd as useradd reads it (what `useradd -D` prints; shadow 4.13 defaults)",
    )
    reg.register(
        "pwquality",
        collect_pwquality,
        returns=KV,
        doc="/etc/security/pwquality.conf and pwquality.conf.d (libpwquality 1.4.5 defaults)",
    )
    reg.register(
        "faillock",
        collect_faillock,
        returns=FAILLOCK,
        doc="/etc/security/faillock.conf (bare flags read true; pam_faillock 1.5.2 defaults)",
    )
    reg.register(
        "auditd_conf",
        collect_auditd_conf,
        returns=KV,
        doc="/etc/audit/auditd.conf as auditd 3.0.9 reads it (its defaults, its refusals)",
    )
    reg.register(
        "journal_upload",
        collect_journal_upload,
        returns=JOURNAL_UPLOAD,
        doc="journal-upload.conf [Upload] and its drop-ins, as systemd-journal-upload 252 reads them",
    )
    reg.register(
        "exim4",
        collect_exim4,
        returns=KV,
        doc="/etc/exim4/update-exim4.conf.conf as update-exim4.conf reads it (sourced by sh: the last assignment wins)",
    )
    reg.register(
        "postfix",
        collect_postfix,
        returns=KV,
        doc="/etc/postfix/main.cf as postfix 3.7 reads it (last setting wins, $name expanded as postconf -x)",
    )
    reg.register(
        "journald",
        collect_journald,
        returns=KV,
        doc="journald.conf [Journal] and its drop-ins (systemd 252 defaults)",
    )
    reg.register(
        "coredump",
        collect_coredump,
        returns=KV,
        doc="coredump.conf [Coredump] and its drop-ins, as systemd-coredump 252 reads them (its defaults)",
    )
