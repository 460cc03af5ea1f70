"""auditctl's reading of one rule line (audit 3.0.9): its word splitting, getopt, and what each
option accepts, as a table of small handlers, so a rule is loaded or refused as auditctl would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from secpolicy.facts.audit_syscalls import SYSCALLS

__all__ = ["ALL", "AuditRule", "RuleSyntaxError", "parse_rule", "parse_words", "words"]

ALL = "*"  # every syscall
_PERM_ORDER = "rwxa"


class RuleSyntaxError(ValueError):
    """A line auditctl refuses (the message says why, in auditctl's words where it has some)."""


@dataclass(frozen=True)
class AuditRule:
    """One parsed line. Equality is on the normalised rule only: text, source and the order
    of its fields (which the kernel's duplicate check compares) say how it was written."""

    text: str = field(compare=False)
    kind: str  # syscall | watch | control | flag | noop
    list: str | None = None
    action: str | None = None
    arch: str | None = None
    syscalls: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    path: str | None = None
    perm: str | None = None
    source: str | None = field(default=None, compare=False)
    control: tuple[str, str] | None = None
    op: str = field(default="add", compare=False)  # add | prepend | delete | delete_all
    order: tuple[str, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        return self.text

    def where(self, name: str, *args: Any) -> str | None:
        return self.source

    @property
    def identity(self) -> tuple:
        """What the kernel compares to refuse a duplicate (`Rule exists`) or find a rule to
        delete: list, action, syscalls and the fields in the order given, key included."""
        return (self.list, self.action, self.syscalls, self.order)


# --- words -------------------------------------------------------------------------------------
def words(line: str) -> list[str] | None:
    """The words auditctl -R makes of a line (split at spaces only; `\\ ` is a space inside a
    word, `\\\\` a backslash), or None for a blank line or one whose first word starts with #."""
    if not line.strip(" "):
        return None
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] in " \\":
            cur.append(line[i + 1])
            i += 2
            continue
        if ch == " ":
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        out.append("".join(cur))
    if out[0].startswith("#"):
        return None
    return out


# --- getopt_long over "hicslDvtC:e:f:r:b:a:A:d:S:F:m:R:w:W:k:p:q:" ------------------------------
_SHORT_ARG = set("CefrbaAdSFmRwWkpq")
_SHORT_FLAG = set("hicslDvt")
_LONG = {
    "loginuid-immutable": False,
    "backlog_wait_time": True,
    "reset-lost": False,
    "reset_backlog_wait_time_actual": False,
    "signal": True,
}


def _getopt(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """GNU getopt_long with permutation: options in order (an unknown one as ("?", word)) and
    the words that are not options."""
    opts: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        w = argv[i]
        i += 1
        if w == "--":
            rest += argv[i:]
            break
        if w.startswith("--"):
            name, eq, val = w[2:].partition("=")
            hits = [n for n in _LONG if n == name] or [n for n in _LONG if n.startswith(name)]
            if len(hits) != 1 or (eq and not _LONG[hits[0]]):
                opts.append(("?", w))
                continue
            if _LONG[hits[0]] and not eq:
                if i >= len(argv):
                    opts.append(("?", w))
                    continue
                val = argv[i]
                i += 1
            opts.append(("--" + hits[0], val if _LONG[hits[0]] else None))
            continue
        if not w.startswith("-") or w == "-":
            rest.append(w)
            continue
        for j in range(1, len(w)):
            c = w[j]
            if c in _SHORT_ARG:
                if j + 1 < len(w):
                    opts.append(("-" + c, w[j + 1 :]))
                elif i < len(argv):
                    opts.append(("-" + c, argv[i]))
                    i += 1
                else:
                    opts.append(("?", "-" + c))
                break
            opts.append(("-" + c, None) if c in _SHORT_FLAG else ("?", "-" + c))
    return opts, rest


# --- the rule being built ------------------------------------------------------------------------
@dataclass
class _Rule:
    argc: int
    opts: list[tuple[str, str | None]]
    index: int = 0
    lst: str | None = None
    action: str | None = None
    op: str = "add"
    multiple: int = 0
    arch: str | None = None
    syscalls: list[str] = field(default_factory=list)
    syscall_added: bool = False
    perm_added: bool = False  # -p, -F perm, and -F path/dir (libaudit counts a watch as a perm)
    exe_added: bool = False
    fs_added: bool = False  # -F fstype
    inode: bool = False
    table: str | None = None  # the arch whose syscall table -S reads (-F arch= or arch!=)
    key: str | None = None  # auditctl's key buffer: every -k and -F key=, joined with \x01
    key_fields: int = 0  # keys spelled as another field (-F KEY=x): each its own field
    field_count: int = 0  # fields sent to the kernel (at most 63 with the key)
    kernel: list[str] = field(default_factory=list)  # why the kernel refuses what auditctl sends
    fields: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # key fields of their own (-F KEY=x)
    path: str | None = None
    perm: str | None = None
    watch: bool = False
    control: tuple[str, str] | None = None
    flag: str | None = None
    stop: bool = False  # an option ends option processing (-D, -l, -i, -c ...)
    done: bool = False  # setopt returned at once: the words after it are never looked at
    resolve: Callable[[str, str], int | None] | None = None

    @property
    def has_list(self) -> bool:
        return self.lst is not None


_ARCH = {
    "b64": "b64",
    "x86_64": "b64",
    "amd64": "b64",
    "b32": "b32",
    "i386": "b32",
    "i486": "b32",
    "i586": "b32",
    "i686": "b32",
}
_FOREIGN_ARCH = {"aarch64", "arm", "armeb", "ppc", "ppc64", "ppc64le", "s390", "s390x"}
_LISTS = {"task", "exit", "user", "exclude", "filesystem"}


def _list_action(r: _Rule, opt: str, value: str) -> None:
    # auditctl checks "task" anywhere in the value against an earlier -S (not -d)
    if opt != "-d" and "task" in value and r.syscall_added:
        raise RuleSyntaxError(
            ("Error: syscall auditing" if opt == "-A" else "Syscall auditing") + " requested for task list"
        )
    r.multiple += 1
    if r.multiple != 1:
        raise RuleSyntaxError("Multiple rule insert/delete operations are not allowed")
    # audit_rule_setup(): "a,b" with exactly one comma; the first part is tried as an action,
    # then as a list; the second part is the list if no list is set yet, else the action. A
    # list set by an earlier -w/-W counts, so `-w /x -a exit,always` is one rule.
    bad = RuleSyntaxError(f"{_VERB[opt]} rule - bad keyword {value}")
    parts = value.split(",")
    if len(parts) != 2:
        raise bad
    first, second = parts
    # -w sets the add list (-W the delete list) and the action "always" before this runs
    lst = r.lst if r.watch and (opt == "-d") == (r.op == "delete") else None
    action = r.action
    if first in ("always", "never"):
        action = first
    elif first != "possible":
        if first not in _LISTS:
            raise bad
        lst = first
    if lst is None:
        lst = second if second in _LISTS else None
    elif second == "possible":
        r.flag, r.done = "possible", True  # "possible is deprecated": the line is dropped
        return
    elif second in ("always", "never"):
        action = second
    else:
        raise bad
    if lst is None or action is None:
        raise bad
    r.action, r.lst = action, lst
    r.op = {"-a": "add", "-A": "prepend", "-d": "delete"}[opt]


_VERB = {"-a": "Append", "-A": "Add", "-d": "Delete"}


def _syscall(r: _Rule, _opt: str, value: str) -> None:
    if r.lst in ("task", "user", "filesystem"):
        raise RuleSyntaxError(f"Error: syscall auditing being added to {r.lst} list")
    if r.lst == "exclude":
        raise RuleSyntaxError("Error: syscall auditing cannot be put on exclude list")
    table = SYSCALLS.get(r.table or "b64")  # no arch yet: the host's (x86_64)
    # names are looked up without regard to case; a word that is not a name but starts with
    # a digit is read with strtol(word, NULL, 0) ("0x2", "2x" and "02" are syscall 2)
    for name in value.split(","):
        if not name:
            continue
        low = name.lower()
        if name == "all":  # "all" is compared with case; "ALL" is looked up as a name
            r.syscalls.append(ALL)
            continue
        if table is None and not name[:1].isdigit() or table is not None and low in table and low != "all":
            r.syscalls.append(low)  # a foreign arch's table is not kept here
            continue
        n = _strtol(name) if name[:1].isdigit() else None
        if n is None or not 0 <= n < 2048:
            raise RuleSyntaxError(f"Syscall name unknown: {name}")
        r.syscalls.append(str(n))  # the kernel lists it by name: no number table here
    r.syscall_added = True


def _field(r: _Rule, _opt: str, value: str) -> None:
    if not r.has_list:
        raise RuleSyntaxError("List must be given before field")
    if value.startswith("key="):  # exactly "key=": added to the key buffer, checked at the end
        _add_key(r, value[4:])
        return
    _check_field(r, value)


def _compare(r: _Rule, _opt: str, value: str) -> None:
    if r.field_count >= _MAX_FIELDS:
        raise RuleSyntaxError(f"Too many fields in rule: {value}")
    a, op, b = _split(value, ("!=", "="), "-C only takes = or != operators")
    if not a:
        raise RuleSyntaxError(f"-C missing field name before operator for {a}")
    if not b:
        raise RuleSyntaxError(f"-C missing value after operation for {a}")
    left, right = _field_name(a), _field_name(b)
    if left is None:
        raise RuleSyntaxError(f"-C unknown field: {a}")
    if right is None:
        raise RuleSyntaxError(f"-C unknown right hand value for comparison with: {a}")
    if r.lst != "exit":
        raise RuleSyntaxError(f"{a} can only be used with exit filter list")
    # any two different uid fields, or two different gid fields
    if left == right or not ({left, right} <= _UID_FIELDS or {left, right} <= _GID_FIELDS):
        raise RuleSyntaxError(f"-C incompatible comparison {a}")
    lo, hi = sorted((left, right))
    f = f"-C {lo}{op}{hi}"
    r.fields.append(f)
    r.order.append(f)
    r.field_count += 1


def _watch(r: _Rule, opt: str, value: str) -> None:
    if r.has_list and opt == "-w":
        raise RuleSyntaxError("watch option can't be given with a syscall")
    if len(value) >= _PATH_MAX:
        raise RuleSyntaxError("The path passed for the watch is too big")
    if not value.startswith("/"):
        raise RuleSyntaxError("The path must start with '/'")
    if len(value.rstrip("/").rsplit("/", 1)[-1]) > _NAME_MAX:
        raise RuleSyntaxError("The base name of the path is too big")
    path = value.rstrip("/") or "/" if len(value) > 2 else value
    r.lst, r.action, r.path, r.watch = "exit", "always", path, True
    r.syscall_added = True
    r.order.append(f"path={r.path}")
    r.field_count += 1
    if opt == "-W":
        r.op = "delete"


def _perm_option(r: _Rule, _opt: str, value: str) -> None:
    if not r.has_list:
        raise RuleSyntaxError("permission option needs a watch given prior to it")
    if len(value) > 4:
        raise RuleSyntaxError(f"permission {value} is too long")
    r.perm = _perm(value, "Permission {} isn't supported")
    r.perm_added = True
    r.order.append(f"perm={r.perm}")
    r.field_count += 1


def _perm(value: str, message: str) -> str:
    letters = value.lower()
    bad = [c for c in letters if c not in _PERM_ORDER]
    if bad:
        raise RuleSyntaxError(message.format(bad[0]))
    return "".join(c for c in _PERM_ORDER if c in letters)


def _key_option(r: _Rule, _opt: str, value: str) -> None:
    # a path or dir field counts as a watch (libaudit sets its perm flag), an exe or fstype
    # field as what the key may describe: `-a never,exit -F dir=/x -k K` is loaded
    if not (r.syscall_added or r.perm_added or r.exe_added or r.fs_added) or not r.has_list:
        raise RuleSyntaxError("key option needs a watch or syscall given prior to it")
    _add_key(r, value)


def _add_key(r: _Rule, value: str) -> None:
    key = r.key or ""
    if len(value) + len(key) + (1 if key else 0) > _MAX_KEY:
        raise RuleSyntaxError("key option exceeds size limit")
    # an empty first key leaves the buffer empty: `-F key=` adds no key
    r.key = key + ("\x01" if key else "") + value


def _control(r: _Rule, opt: str, value: str) -> None:
    if opt in ("-e", "-f") and value not in ("0", "1", "2"):
        what = "Enable" if opt == "-e" else "Failure"
        raise RuleSyntaxError(f"{what} must be 0, 1, or 2 was {value}")
    if opt in ("-b", "-r", "--backlog_wait_time") and not value[:1].isdigit():
        what = {"-b": "Backlog", "-r": "Rate", "--backlog_wait_time": "Backlog_wait_time"}[opt]
        raise RuleSyntaxError(f"{what} must be a numeric value was {value}")
    r.control = (opt, value)


def _delete_all(r: _Rule, opt: str, _value: str) -> None:
    if r.argc not in (2, 4):
        raise RuleSyntaxError("Wrong number of options for Delete all request")
    if r.argc == 4:
        nxt = r.opts[r.index + 1] if r.index + 1 < len(r.opts) else None
        if nxt is None or nxt[0] != "-k":
            raise RuleSyntaxError("Only the -k option is allowed")
        # FIXME: auditctl 3.0.9 deletes the rules whose key holds K (strstr) and goes on (rc 0,
        # checked against the real tool); the loader has no keyed delete, so this stays refused
        raise RuleSyntaxError("Key field needs a watch, syscall or exe path given prior to it")
    r.control = ("-D", "")
    r.stop = True


def _flag(r: _Rule, opt: str, _value: str) -> None:
    if opt in ("-i", "-c"):
        # from here on errors are reported and the load goes on, and this line ends here:
        # what follows on it is not read, a rule before it is not sent
        r.flag, r.done = opt, True
    elif opt == "-h":
        raise RuleSyntaxError("-h prints the usage, it is not a rule")
    elif opt == "-l":
        # -l, -l -i, -l -k KEY and nothing else
        nxt = r.opts[r.index + 1] if r.index + 1 < len(r.opts) else None
        if r.argc > 4:
            raise RuleSyntaxError("Wrong number of options for list request")
        if r.argc == 3 and nxt != ("-i", None) or r.argc == 4 and (nxt is None or nxt[0] != "-k"):
            raise RuleSyntaxError("Only -k or -i options are allowed")
        r.flag = "-l"
        r.stop = True
    elif opt == "-t":
        r.flag, r.done = r.flag or opt, True  # trims the kernel's directory watches
    else:
        r.flag = r.flag or opt


def _refuse(_r: _Rule, opt: str, _value: str) -> None:
    if opt == "-R":
        raise RuleSyntaxError("Error - nested rule files not supported")
    raise RuleSyntaxError(f"{opt} is not a rule option")


def _simple_control(r: _Rule, opt: str, _value: str) -> None:
    r.control = (opt, "")
    r.done = True  # auditctl returns at once: words after it are not looked at


_OPTIONS: dict[str, Callable[[_Rule, str, str], None]] = {
    "-a": _list_action,
    "-A": _list_action,
    "-d": _list_action,
    "-S": _syscall,
    "-F": _field,
    "-C": _compare,
    "-w": _watch,
    "-W": _watch,
    "-p": _perm_option,
    "-k": _key_option,
    "-e": _control,
    "-f": _control,
    "-b": _control,
    "-r": _control,
    "--backlog_wait_time": _control,
    "--loginuid-immutable": _simple_control,
    "--reset-lost": _simple_control,
    "--reset_backlog_wait_time_actual": _simple_control,
    "-D": _delete_all,
    "-i": _flag,
    "-c": _flag,
    "-s": _flag,
    "-v": _flag,
    "-l": _flag,
    "-h": _flag,
    "-t": _flag,
    "-q": _refuse,
    "-m": _refuse,
    "-R": _refuse,
    "--signal": _refuse,
}


# --- fields (-F) ---------------------------------------------------------------------------------
_MAX_FIELDS = 63  # AUDIT_MAX_FIELDS - 1: libaudit refuses the 64th
_MAX_KEY = 256
_PATH_MAX = 4096
_NAME_MAX = 255
_AF_MAX = 46  # glibc's AF_MAX on Debian 12: -F saddr_fam must be below it
_FIELD_ALIASES = {"loginuid": "auid"}
_UID_FIELDS = {"auid", "uid", "euid", "suid", "fsuid", "obj_uid"}
_GID_FIELDS = {"gid", "egid", "sgid", "fsgid", "obj_gid"}
_NUMBER_FIELDS = {"pid", "ppid", "pers", "devmajor", "devminor", "inode", "success", "field_compare"}
_ARG_FIELDS = {"a0", "a1", "a2", "a3"}
_LSM_NAMES = {"subj_user", "subj_role", "subj_type", "obj_user", "obj_role", "obj_type"}
_LSM_LEVELS = {"subj_sen", "subj_clr", "obj_lev_low", "obj_lev_high"}
_KNOWN = (
    _UID_FIELDS | _GID_FIELDS | _NUMBER_FIELDS | _ARG_FIELDS | _LSM_NAMES | _LSM_LEVELS
    | {"loginuid", "arch", "msgtype", "sessionid", "exit", "path", "perm", "dir", "filetype",
       "fstype", "key", "exe", "saddr_fam"}
)
# libaudit refuses these on any list but exit ("X can only be used with exit filter list")
_EXIT_ONLY = {"exit", "obj_user", "obj_role", "obj_type", "obj_lev_low", "obj_lev_high", "path",
              "dir", "perm", "filetype", "devmajor", "devminor", "inode", "success", "ppid"}
# the fields an exclude rule may hold where the kernel has AUDIT_FEATURE_BITMAP_EXCLUDE_EXTEND
# (every kernel since 4.17; an older one takes msgtype only)
_EXCLUDE = {"pid", "uid", "gid", "auid", "msgtype", "subj_user", "subj_role", "subj_type",
            "subj_sen", "subj_clr", "exe"}
# the kernel (audit_field_valid) takes & and &= on syscall arguments, pers and devminor only,
# and = or != only on these
_BIT_OPS = _ARG_FIELDS | {"pers", "devminor"}
_EQ_ONLY = _LSM_NAMES | {"field_compare", "filetype", "path", "dir", "exe", "key"}
_FILETYPES = {"socket": 0o140000, "link": 0o120000, "file": 0o100000, "block": 0o60000,
              "dir": 0o40000, "character": 0o20000, "fifo": 0o10000}
_FSTYPES = {"tracefs": 0x74726163, "debugfs": 0x64626720}
_ERRNO = {
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7,
    "ENOEXEC": 8, "EBADF": 9, "ECHILD": 10, "EAGAIN": 11, "ENOMEM": 12, "EACCES": 13,
    "EFAULT": 14, "ENOTBLK": 15, "EBUSY": 16, "EEXIST": 17, "EXDEV": 18, "ENODEV": 19,
    "ENOTDIR": 20, "EISDIR": 21, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24, "ENOTTY": 25,
    "ETXTBSY": 26, "EFBIG": 27, "ENOSPC": 28, "ESPIPE": 29, "EROFS": 30, "EMLINK": 31,
    "EPIPE": 32, "EDOM": 33, "ERANGE": 34, "EDEADLK": 35, "ENAMETOOLONG": 36, "ENOLCK": 37,
    "ENOSYS": 38, "ENOTEMPTY": 39, "ELOOP": 40,
}
_OPS = ("!=", ">=", "<=", "&=", "=", ">", "<", "&")


def _split(spec: str, ops: tuple[str, ...], missing: str) -> tuple[str, str, str]:
    """libaudit's split: the first operator *in this order* found anywhere in the text wins
    (so `uid=1!=2` is field `uid=1`, operator `!=`)."""
    for op in ops:
        i = spec.find(op)
        if i >= 0:
            return spec[:i], op, spec[i + len(op) :]
    raise RuleSyntaxError(missing)


def _field_name(name: str) -> str | None:
    """A field's name as libaudit's table reads it (without regard to case), or None."""
    low = name.lower()
    return _FIELD_ALIASES.get(low, low) if low in _KNOWN else None


def _strtol(value: str) -> int | None:
    """C's strtol(value, NULL, 0) as auditctl calls it: leading digits count, the rest is
    ignored; None when there is no digit at all."""
    s = value.strip()
    sign = -1 if s.startswith("-") else 1
    body = s[1:] if s[:1] in "+-" else s
    base, digits = 10, body
    if body[:2].lower() == "0x":
        base, digits = 16, body[2:]
    elif body[:1] == "0" and len(body) > 1:
        base, digits = 8, body[1:]
    ok = "0123456789abcdef"[:base]
    n = 0
    seen = False
    for ch in digits.lower():
        if ch not in ok:
            break
        n = n * base + int(ch, 16)
        seen = True
    if not seen and not (base == 8 and body[:1] == "0"):
        return None
    return sign * n


def _u32(n: int) -> int:
    return n & 0xFFFFFFFF


def _s32(n: int) -> int:
    """A value as the kernel's 32-bit field holds it, read back signed (as auditctl -l
    prints most numbers)."""
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def _signed_number(value: str) -> int | None:
    """libaudit's "a digit, or - then a digit" test, then strtol/strtoul."""
    if value[:1].isdigit() or len(value) >= 2 and value[0] == "-" and value[1].isdigit():
        return _strtol(value)
    return None


def _id_value(r: _Rule, name: str, op: str, value: str) -> str:
    uid = name in _UID_FIELDS
    n = _signed_number(value) if uid else (_strtol(value) if value[:1].isdigit() else None)
    if n is None and uid and value == "unset":
        n = -1
    if n is None:
        kind = "user" if uid else "group"
        found = r.resolve(kind, value) if r.resolve else None
        if r.resolve is not None and found is None:
            raise RuleSyntaxError(f"Unknown {kind}: {value}")
        if found is None:
            return value
        n = found
    if _u32(n) == 0xFFFFFFFF:
        if name != "auid":
            # the kernel takes no uid or gid -1 but auid's (which means "not set")
            r.kernel.append(f"{name} -1 is not a valid id")
        elif op not in ("=", "!="):
            r.kernel.append("auid unset takes = or != only")
        return "unset"
    return str(_s32(n))


def _exit_value(r: _Rule, name: str, op: str, value: str) -> str:
    n = _signed_number(value)
    if n is None:
        neg = value.startswith("-")
        errno = _ERRNO.get((value[1:] if neg else value).upper(), 0)
        if not errno:
            raise RuleSyntaxError(f"-F unknown errno - {value}")
        n = -errno if neg else errno
    return str(_s32(n))


def _arch_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if r.syscall_added:
        raise RuleSyntaxError(f"{name} must be before -S")
    if op not in ("=", "!="):
        raise RuleSyntaxError(f"{name} only takes = or != operators")
    arch = value.lower()
    if value[:1].isdigit():  # an ELF machine number (AUDIT_ARCH_*)
        normal = _ELF.get(_u32(_strtol(value) or 0))
        if normal is None:
            raise RuleSyntaxError(f"{name} elf mapping not found")
    elif arch in _ARCH or arch in _FOREIGN_ARCH:
        normal = _ARCH.get(arch, arch)
    else:
        raise RuleSyntaxError(f"-F unknown arch: {value}")
    r.table = normal  # even arch!=: -S reads that arch's table
    r.order.append(f"arch{op}{normal}")
    if op == "=":
        r.arch = normal
        return None
    r.fields.append(f"arch!={normal}")
    return None


_ELF = {0xC000003E: "b64", 0x40000003: "b32"}


def _path_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    # the kernel's audit_to_watch/audit_make_tree: = only, an absolute path, a path= not
    # ending in '/', one path or dir per rule (and a dir= that exists on the host when the
    # rule loads, which only the host can tell). The value is kept as written.
    if op != "=":
        r.kernel.append(f"{name} takes = only")
    if not value.startswith("/") or name == "path" and value.endswith("/"):
        r.kernel.append(f"{name} {value} is not an absolute path without a trailing /")
    if r.path is not None or r.inode:
        r.kernel.append("a rule holds one path or dir, and no inode with it")
    if len(value) > _PATH_MAX:
        raise RuleSyntaxError("String value too long")
    if name == "dir" and any(len(part) > _NAME_MAX for part in value.split("/")):
        r.kernel.append("a name in the dir is too long (ENAMETOOLONG)")
    # the kernel keeps a dir without its trailing slashes ("//" stays as it is)
    r.path = value.rstrip("/") or value if name == "dir" else value
    r.perm_added = True
    r.order.append(f"path={r.path}")
    return None


def _perm_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if op != "=":
        raise RuleSyntaxError(f"{name} only takes = operator")
    if len(value) > 4:
        raise RuleSyntaxError("String value too long")
    r.perm = _perm(value, "Permission can only contain  'rwxa'")
    r.perm_added = True
    r.order.append(f"perm={r.perm}")
    return None


def _exe_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    # needs AUDIT_FEATURE_BITMAP_EXECUTABLE_PATH (kernels since 4.8)
    if op not in ("=", "!="):
        raise RuleSyntaxError(f"{name} only takes = or != operators")
    if len(value) > _PATH_MAX:
        raise RuleSyntaxError("String value too long")
    if not value.startswith("/") or value.endswith("/"):
        r.kernel.append(f"exe {value} is not an absolute path without a trailing /")
    if r.exe_added:
        r.kernel.append("a rule holds one exe")
    r.exe_added = True
    return value


def _string_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    # subj_*/obj_*: whether the kernel's LSM takes the value is the kernel's to say
    if len(value) > _PATH_MAX:
        raise RuleSyntaxError("String value too long")
    return value


def _key_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    # a key spelled otherwise than "key=" (KEY=x, key!=x) is a field of its own: the kernel
    # takes one key field per rule
    if not (r.syscall_added or r.perm_added or r.exe_added or r.fs_added):
        raise RuleSyntaxError("Key field needs a watch, syscall or exe path given prior to it")
    if len(value) > _MAX_KEY:
        raise RuleSyntaxError("String value too long")
    r.key_fields += 1
    r.keys.append(value)
    r.order.append(f"key={value}")
    return None


def _number_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if name == "inode" and op not in ("=", "!="):
        raise RuleSyntaxError(f"{name} only takes = or != operators")
    if name == "inode":
        if r.path is not None or r.inode:
            r.kernel.append("a rule holds one inode, and no path or dir with it")
        r.inode = True
    if name == "ppid" and r.lst != "exit":
        raise RuleSyntaxError(f"{name} can only be used with exit filter list")
    # libaudit wants a digit first; a leading - is taken here all the same, as auditctl -l
    # prints a value of 2^31 or more as a negative number (`-F pid=-1`)
    n = _signed_number(value)
    if n is None:
        raise RuleSyntaxError(f"-F value should be number for {name}")
    return str(_s32(n))


def _arg_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    n = _signed_number(value)
    if n is None:
        raise RuleSyntaxError(f"-F value should be number for {name}")
    return str(_u32(n))  # auditctl -l prints syscall arguments unsigned


def _sessionid_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    # needs AUDIT_FEATURE_BITMAP_SESSIONID_FILTER (kernels since 4.10)
    if r.lst not in ("exclude", "user", "exit"):
        raise RuleSyntaxError(f"{name} must be used with exclude, user, or exit filter")
    n = _signed_number(value)
    if n is None:
        n = -1 if value == "unset" else 0  # libaudit leaves any other word as 0
    return str(_s32(n))


def _saddr_fam_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    n = _strtol(value) or 0  # strtoul: a word is 0, a negative number a huge one
    if n < 0 or n >= _AF_MAX:
        raise RuleSyntaxError(f"value is too large for field: {name}")
    return str(n)


def _msgtype_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if r.lst not in ("exclude", "user"):
        raise RuleSyntaxError("msgtype field can only be used with exclude or user filter list")
    if value[:1].isdigit():
        return str(_strtol(value))  # auditctl -l prints the type's name: no table here
    return value.upper()


def _filetype_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if value.lower() in _FILETYPES:
        return value.lower()
    # auditctl -R takes names only, but auditctl -l prints the number (S_IFREG ...)
    n = _strtol(value) if value[:1].isdigit() else None
    names = {v: k for k, v in _FILETYPES.items()}
    if n is None or n not in names:
        raise RuleSyntaxError(f"-F unknown file type - {value}")
    return names[n]


def _fstype_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if r.lst != "filesystem":
        raise RuleSyntaxError(f"{name} field is not valid for the filter")
    if op not in ("=", "!="):
        raise RuleSyntaxError(f"{name} only takes = or != operators")
    if not value[:1].isdigit() and value.lower() not in _FSTYPES:
        raise RuleSyntaxError(f"file system type is unknown for field: {value}")
    r.fs_added = True
    return value


# -F name -> how its value is read: None means the handler stored it itself (arch, path,
# perm, key), a string is the normalised value kept as a filter.
_FieldReader = Callable[[_Rule, str, str, str], "str | None"]
_FIELDS: dict[str, _FieldReader] = {
    "arch": _arch_field,
    "path": _path_field,
    "dir": _path_field,
    "perm": _perm_field,
    "exe": _exe_field,
    "key": _key_field,
    "exit": _exit_value,
    "msgtype": _msgtype_field,
    "filetype": _filetype_field,
    "fstype": _fstype_field,
    "sessionid": _sessionid_field,
    "saddr_fam": _saddr_fam_field,
    **{n: _id_value for n in _UID_FIELDS | _GID_FIELDS},
    **{n: _number_field for n in _NUMBER_FIELDS},
    **{n: _arg_field for n in _ARG_FIELDS},
    **{n: _string_field for n in _LSM_NAMES | _LSM_LEVELS},
}


def _check_field(r: _Rule, spec: str) -> None:
    """audit_rule_fieldpair_data(): its checks in its order."""
    if r.field_count >= _MAX_FIELDS:
        raise RuleSyntaxError(f"Too many fields in rule: {spec}")
    typed, op, value = _split(spec, _OPS, f"-F missing operation for {spec}")
    if not typed:
        raise RuleSyntaxError(f"-F missing field name before operator for {typed}")
    if not value:
        raise RuleSyntaxError(f"-F missing value after operation for {typed}")
    name = _field_name(typed)
    if name is None:
        raise RuleSyntaxError(f"-F unknown field: {typed}")
    if r.lst == "exclude" and name not in _EXCLUDE:
        raise RuleSyntaxError(
            "Only msgtype, *uid, *gid, pid, and subj* fields can be used with exclude filter"
        )
    if name in _EXIT_ONLY and r.lst != "exit" and name != "ppid":
        raise RuleSyntaxError(f"{typed} can only be used with exit filter list")
    if op in ("&", "&=") and name not in _BIT_OPS or op not in ("=", "!=") and name in _EQ_ONLY:
        r.kernel.append(f"{name} does not take {op}")
    normal = _FIELDS[name](r, name, op, value)
    r.field_count += 1
    if r.lst == "filesystem" and name not in ("fstype", "key"):
        r.kernel.append("a filesystem rule holds fstype and key fields only")
    if normal is not None:
        f = f"{name}{op}{normal}"
        r.fields.append(f)
        r.order.append(f)


# --- one line ----------------------------------------------------------------------------------
def parse_words(
    argv: list[str],
    text: str,
    source: str | None = None,
    *,
    resolve: Callable[[str, str], int | None] | None = None,
) -> AuditRule:
    """A line's words (as `words()` gives them) -> AuditRule, or RuleSyntaxError with
    auditctl's reason. `resolve(kind, name)` turns user and group names into ids."""
    opts, rest = _getopt(argv)
    if not opts:
        raise RuleSyntaxError("no option on the line")
    r = _Rule(argc=len(argv) + 1, opts=opts, resolve=resolve)
    for i, (opt, value) in enumerate(opts):
        r.index = i
        if opt == "?":
            raise RuleSyntaxError(f"Option {value} is invalid")
        _OPTIONS[opt](r, opt, value or "")
        if r.stop or r.done:
            break
    if r.done:
        # -i/-c (errors after them are reported and the load goes on), a dropped "possible"
        # rule, or an option that made auditctl return before it looked at the rest
        if r.control is not None:
            return AuditRule(text, "control", control=r.control, source=source)
        kind = "flag" if r.flag in ("-i", "-c") else "noop"
        return AuditRule(text, kind, control=(r.flag or "", ""), source=source)
    if rest and not r.stop:
        raise RuleSyntaxError("parameter passed without an option given")
    if r.key and r.lst is not None:
        # the key buffer becomes one "key=" field at the end, checked as any -F
        if not (r.syscall_added or r.perm_added or r.exe_added or r.fs_added):
            raise RuleSyntaxError("Key field needs a watch, syscall or exe path given prior to it")
        if r.field_count >= _MAX_FIELDS:
            raise RuleSyntaxError(f"Too many fields in rule: key={r.key}")
        if r.lst == "exclude":
            raise RuleSyntaxError(
                "Only msgtype, *uid, *gid, pid, and subj* fields can be used with exclude filter"
            )
        r.key_fields += 1
    return _finish(r, text, source)


def _finish(r: _Rule, text: str, source: str | None) -> AuditRule:
    if r.control is not None:
        op = "delete_all" if r.control[0] == "-D" else "add"
        return AuditRule(text, "control", control=r.control, source=source, op=op)
    if r.lst is None:
        if r.syscall_added:
            raise RuleSyntaxError("Error - no list specified")
        if r.key:
            raise RuleSyntaxError("Key field needs a watch, syscall or exe path given prior to it")
        kind = "flag" if r.flag in ("-i", "-c") else "noop"
        return AuditRule(text, kind, control=(r.flag or "", ""), source=source)
    if r.key_fields > 1:
        r.kernel.append("a rule holds one key field")
    if r.kernel:
        # auditctl sends the rule; the kernel (audit_data_to_entry) answers EINVAL
        verb = "delete" if r.op == "delete" else "add"
        raise RuleSyntaxError(
            f"Error sending {verb} rule data request (Invalid argument): {r.kernel[0]}"
        )
    syscalls = r.syscalls
    if r.watch or r.lst == "exit" and not r.syscall_added:
        syscalls = [ALL]  # a rule without -S, and a watch whatever -S says, is on every syscall
    # (`-S ,` names no syscall: the kernel holds a rule that matches none)
    sc = (ALL,) if ALL in syscalls else tuple(sorted(set(syscalls)))
    perm = r.perm
    if r.watch and perm is None:
        perm = _PERM_ORDER
    if r.key:
        r.keys.extend(r.key.split("\x01"))
    keys = tuple(sorted({k for k in r.keys if k}))  # auditctl -l prints no empty key
    order = tuple(r.order) + ((f"key={r.key}",) if r.key else ())
    return AuditRule(
        text,
        "watch" if r.path is not None else "syscall",
        r.lst,
        r.action,
        r.arch,
        ("all",) if sc == (ALL,) else sc,
        tuple(sorted(set(r.fields))),
        keys,
        r.path,
        perm,
        source,
        op=r.op,
        order=order,
    )


def parse_rule(text: str, source: str | None = None) -> AuditRule:
    """One rule written in auditctl syntax (a policy's query, a line of `auditctl -l`)."""
    argv = words(text)
    if argv is None:
        raise RuleSyntaxError("empty rule")
    return parse_words(argv, text, source)
