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
    perm_added: bool = False
    exe_added: bool = False
    fields: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    path: str | None = None
    perm: str | None = None
    watch: bool = False
    control: tuple[str, str] | None = None
    flag: str | None = None
    stop: bool = False  # an option ends option processing (-D, -l with their own arguments)
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
    r.multiple += 1
    if r.multiple != 1:
        raise RuleSyntaxError("Multiple rule insert/delete operations are not allowed")
    parts = value.split(",")
    if len(parts) != 2:
        raise RuleSyntaxError(f"{_VERB[opt]} rule - bad keyword {value}")
    a, b = parts
    if a in _LISTS and b in ("always", "never"):
        a, b = b, a
    if a not in ("always", "never") or b not in _LISTS:
        raise RuleSyntaxError(f"{_VERB[opt]} rule - bad keyword {value}")
    if b == "task" and r.syscall_added:
        raise RuleSyntaxError("Error: syscall auditing being added to task list")
    r.action, r.lst = a, b
    r.op = {"-a": "add", "-A": "prepend", "-d": "delete"}[opt]


_VERB = {"-a": "Append", "-A": "Add", "-d": "Delete"}


def _syscall(r: _Rule, _opt: str, value: str) -> None:
    if r.lst in ("task", "user", "filesystem"):
        raise RuleSyntaxError(f"Error: syscall auditing being added to {r.lst} list")
    if r.lst == "exclude":
        raise RuleSyntaxError("Error: syscall auditing cannot be put on exclude list")
    table = SYSCALLS.get(r.arch or "b64")
    for name in value.split(","):
        if not name:
            continue
        if name == "all":
            r.syscalls.append(ALL)
            continue
        if name.isdigit():
            if int(name) > 2047:
                raise RuleSyntaxError(f"Syscall name unknown: {name}")
        elif table is not None and name not in table:
            raise RuleSyntaxError(f"Syscall name unknown: {name}")
        r.syscalls.append(name)
    r.syscall_added = True


def _field(r: _Rule, _opt: str, value: str) -> None:
    if not r.has_list:
        raise RuleSyntaxError("List must be given before field")
    name, op, val = _split_field(value)
    if name == "key":
        _add_key(r, val)
        return
    _check_field(r, name, op, val)


def _compare(r: _Rule, _opt: str, value: str) -> None:
    if not r.has_list:
        raise RuleSyntaxError("List must be given before field")
    a, op, b = _split_field(value)
    if op not in ("=", "!="):
        raise RuleSyntaxError(f"-C only takes = or != ({value})")
    a, b = _FIELD_ALIASES.get(a, a), _FIELD_ALIASES.get(b.lower(), b.lower())
    for side, name in (("left", a), ("right", b)):
        if name not in _COMPARABLE:
            where = "left" if side == "left" else "right"
            raise RuleSyntaxError(f"-C unknown {where} hand value for comparison with: {a}")
    lo, hi = sorted((a, b))
    f = f"-C {lo}{op}{hi}"
    r.fields.append(f)
    r.order.append(f)


def _watch(r: _Rule, opt: str, value: str) -> None:
    if r.has_list and opt == "-w":
        raise RuleSyntaxError("watch option can't be given with a syscall")
    if not value.startswith("/"):
        raise RuleSyntaxError("The path must start with '/'")
    path = value.rstrip("/") if len(value) > 2 else value
    r.lst, r.action, r.path, r.watch = "exit", "always", path or "/", True
    r.syscall_added = True
    r.order.append(f"path={r.path}")
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


def _perm(value: str, message: str) -> str:
    letters = value.lower()
    bad = [c for c in letters if c not in _PERM_ORDER]
    if bad:
        raise RuleSyntaxError(message.format(bad[0]))
    return "".join(c for c in _PERM_ORDER if c in letters)


def _key_option(r: _Rule, _opt: str, value: str) -> None:
    if not (r.syscall_added or r.perm_added or r.exe_added) or not r.has_list:
        raise RuleSyntaxError("key option needs a watch or syscall given prior to it")
    _add_key(r, value)


def _add_key(r: _Rule, value: str) -> None:
    if len(value) + sum(len(k) + 1 for k in r.keys) > 256:
        raise RuleSyntaxError("key option exceeds size limit")
    r.keys.append(value)


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
        # auditctl 3.0.9 then adds the key to an empty rule and refuses it
        raise RuleSyntaxError("Key field needs a watch, syscall or exe path given prior to it")
    r.control = ("-D", "")
    r.stop = True


def _flag(r: _Rule, opt: str, _value: str) -> None:
    if opt in ("-i", "-c"):
        r.flag = opt
    elif opt == "-h":
        raise RuleSyntaxError("-h prints the usage, it is not a rule")
    elif opt == "-l":
        r.flag = "-l"
        r.stop = True
    else:
        r.flag = r.flag or opt


def _refuse(_r: _Rule, opt: str, _value: str) -> None:
    if opt == "-R":
        raise RuleSyntaxError("Error - nested rule files not supported")
    raise RuleSyntaxError(f"{opt} is not a rule option")


def _simple_control(r: _Rule, opt: str, _value: str) -> None:
    r.control = (opt, "")


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
    "-t": _refuse,
    "-q": _refuse,
    "-m": _refuse,
    "-R": _refuse,
    "--signal": _refuse,
}


# --- fields (-F) ---------------------------------------------------------------------------------
_FIELD_ALIASES = {"loginuid": "auid"}
_UID_FIELDS = {"auid", "uid", "euid", "suid", "fsuid", "obj_uid"}
_GID_FIELDS = {"gid", "egid", "sgid", "fsgid", "obj_gid"}
_NUMBER_FIELDS = {
    "pid",
    "ppid",
    "pers",
    "devmajor",
    "devminor",
    "inode",
    "a0",
    "a1",
    "a2",
    "a3",
    "success",
    "saddr_fam",
    "sessionid",
}
_STRING_FIELDS = {
    "subj_user",
    "subj_role",
    "subj_type",
    "subj_sen",
    "subj_clr",
    "obj_user",
    "obj_role",
    "obj_type",
    "obj_lev_low",
    "obj_lev_high",
    "field_compare",
}
_EXIT_ONLY = {"path", "dir", "exe", "perm", "filetype"}
_COMPARABLE = _UID_FIELDS | _GID_FIELDS
_FILETYPES = {"file", "dir", "socket", "link", "character", "block", "fifo"}
_ERRNO = {
    "EPERM": 1,
    "ENOENT": 2,
    "ESRCH": 3,
    "EINTR": 4,
    "EIO": 5,
    "ENXIO": 6,
    "E2BIG": 7,
    "ENOEXEC": 8,
    "EBADF": 9,
    "ECHILD": 10,
    "EAGAIN": 11,
    "ENOMEM": 12,
    "EACCES": 13,
    "EFAULT": 14,
    "ENOTBLK": 15,
    "EBUSY": 16,
    "EEXIST": 17,
    "EXDEV": 18,
    "ENODEV": 19,
    "ENOTDIR": 20,
    "EISDIR": 21,
    "EINVAL": 22,
    "ENFILE": 23,
    "EMFILE": 24,
    "ENOTTY": 25,
    "ETXTBSY": 26,
    "EFBIG": 27,
    "ENOSPC": 28,
    "ESPIPE": 29,
    "EROFS": 30,
    "EMLINK": 31,
    "EPIPE": 32,
    "EDOM": 33,
    "ERANGE": 34,
    "EDEADLK": 35,
    "ENAMETOOLONG": 36,
    "ENOLCK": 37,
    "ENOSYS": 38,
    "ENOTEMPTY": 39,
    "ELOOP": 40,
}
_OPS = ("!=", ">=", "<=", "&=", "=", ">", "<", "&")


def _split_field(spec: str) -> tuple[str, str, str]:
    for i, ch in enumerate(spec):
        if ch in "!<>=&":
            for op in _OPS:
                if spec.startswith(op, i):
                    name, value = spec[:i], spec[i + len(op) :]
                    if name:
                        return name.lower(), op, value
            break
    raise RuleSyntaxError(f"-F missing operation for {spec}")


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


def _id_value(r: _Rule, name: str, value: str) -> str:
    if value == "unset" or value.strip() in ("-1", "4294967295"):
        return "unset"
    if value[:1].isdigit() or value[:1] == "-":
        n = _strtol(value)
        return "unset" if n in (-1, 4294967295) else str(n)
    kind = "user" if name in _UID_FIELDS else "group"
    found = r.resolve(kind, value) if r.resolve else None
    if r.resolve is not None and found is None:
        raise RuleSyntaxError(f"Unknown {kind}: {value}")
    return str(found) if found is not None else value


def _exit_value(value: str) -> str:
    sign = "-" if value.startswith("-") else ""
    body = value.lstrip("-+")
    if body[:1].isdigit():
        n = _strtol(body)
        return f"{sign}{n}"
    if body.upper() not in _ERRNO:
        raise RuleSyntaxError("-F unknown errno - exit")
    return f"{sign}{_ERRNO[body.upper()]}"


def _arch_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if r.syscall_added:
        raise RuleSyntaxError("arch must be before -S")
    if op not in ("=", "!="):
        raise RuleSyntaxError("arch takes = or !=")
    arch = value.lower()
    if arch not in _ARCH and arch not in _FOREIGN_ARCH:
        raise RuleSyntaxError(f"-F unknown arch: {value}")
    normal = _ARCH.get(arch, arch)
    r.order.append(f"arch{op}{normal}")
    if op == "=":
        r.arch = normal
        return None
    r.fields.append(f"arch!={normal}")
    return None


def _path_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if op not in ("=", "!="):
        raise RuleSyntaxError(f"{name} takes = or !=")
    r.path = value.rstrip("/") or "/"
    r.order.append(f"path={r.path}")
    return None


def _perm_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    r.perm = _perm(value, "Permission can only contain  'rwxa'")
    r.perm_added = True
    r.order.append(f"perm={r.perm}")
    return None


def _exe_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    r.exe_added = True
    return value


def _number_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if not (value[:1].isdigit() or value[:1] == "-"):
        raise RuleSyntaxError(f"-F value should be number for {name}")
    return str(_strtol(value))


def _msgtype_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if r.lst not in ("exclude", "user"):
        raise RuleSyntaxError("msgtype field can only be used with exclude or user filter list")
    return value.upper()


def _filetype_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if value.lower() not in _FILETYPES:
        raise RuleSyntaxError("-F unknown file type -  filetype")
    return value.lower()


def _fstype_field(r: _Rule, name: str, op: str, value: str) -> str | None:
    if r.lst != "filesystem":
        raise RuleSyntaxError("fstype field is not valid for the filter")
    return value


# -F name -> how its value is read: None means the handler stored it itself (arch, path,
# perm), a string is the normalised value kept as a filter.
_FieldReader = Callable[[_Rule, str, str, str], "str | None"]
_FIELDS: dict[str, _FieldReader] = {
    "arch": _arch_field,
    "path": _path_field,
    "dir": _path_field,
    "perm": _perm_field,
    "exe": _exe_field,
    "exit": lambda r, n, o, v: _exit_value(v),
    "msgtype": _msgtype_field,
    "filetype": _filetype_field,
    "fstype": _fstype_field,
    **{n: (lambda r, n, o, v: _id_value(r, n, v)) for n in _UID_FIELDS | _GID_FIELDS},
    **{n: _number_field for n in _NUMBER_FIELDS},
    **{n: (lambda r, n, o, v: v) for n in _STRING_FIELDS},
}


def _check_field(r: _Rule, name: str, op: str, value: str) -> None:
    name = _FIELD_ALIASES.get(name, name)
    reader = _FIELDS.get(name)
    if reader is None:
        raise RuleSyntaxError(f"-F unknown field: {name}")
    if name in _EXIT_ONLY and r.lst != "exit":
        raise RuleSyntaxError(f"{name} field is only valid on the exit list")
    normal = reader(r, name, op, value)
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
        if r.stop:
            break
    if rest and not r.stop:
        raise RuleSyntaxError("parameter passed without an option given")
    return _finish(r, text, source)


def _finish(r: _Rule, text: str, source: str | None) -> AuditRule:
    if r.control is not None:
        op = "delete_all" if r.control[0] == "-D" else "add"
        return AuditRule(text, "control", control=r.control, source=source, op=op)
    if r.lst is None:
        if r.syscall_added:
            raise RuleSyntaxError("Error - no list specified")
        kind = "flag" if r.flag in ("-i", "-c") else "noop"
        return AuditRule(text, kind, control=(r.flag or "", ""), source=source)
    syscalls = r.syscalls
    if r.lst == "exit" and not syscalls:
        syscalls = [ALL]  # auditctl: a rule without -S applies to every syscall
    sc = (ALL,) if ALL in syscalls else tuple(sorted(set(syscalls)))
    perm = r.perm
    if r.watch and perm is None:
        perm = _PERM_ORDER
    keys = tuple(sorted(set(r.keys)))
    order = tuple(r.order) + ((f"key={chr(1).join(r.keys)}",) if r.keys else ())
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
