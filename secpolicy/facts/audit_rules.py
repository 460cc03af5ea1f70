"""`audit_rules`: persisted (rules.d, as augenrules builds them) and loaded (`auditctl -l`) audit
rules, normalised so that one rule compares equal however it is spelled or split."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at, version_key

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "AUDIT_RULE",
    "AUDIT_RULES",
    "AuditRule",
    "AuditRules",
    "RuleSyntaxError",
    "audit_status",
    "covers",
    "parse_rule",
    "parse_rules",
    "register",
]

AUDIT_RULE = ObjectType(
    "audit_rule",
    {
        "text": STR,
        "kind": STR,
        "list": STR,
        "action": STR,
        "arch": STR,
        "syscalls": ListType(STR),
        "fields": ListType(STR),
        "keys": ListType(STR),
        "path": STR,
        "perm": STR,
        "source": STR,
    },
    doc="one audit rule, normalised (auditctl syntax)",
    field_docs={
        "kind": '"syscall", "watch" (a -w rule, or a path/dir rule), or "control" (-b, -e, -f, ...)',
        "syscalls": 'syscall names, sorted; ["all"] for a rule on every syscall',
        "fields": "normalised `-F` filters (`auid>=1000`, `auid!=unset`, `exit=-13`), sorted; arch and key apart",
    },
)

AUDIT_RULES = ObjectType(
    "audit_rules",
    {
        "persisted": ListType(AUDIT_RULE),
        "loaded": ListType(AUDIT_RULE),
        "immutable": BOOL,
        "enabled": INT,
        "files": ListType(STR),
        "errors": ListType(STR),
        "keys": ListType(STR),
        "backlog_limit": INT,
        "failure_mode": INT,
    },
    methods={
        "has": Method(
            (STR,), BOOL, "whether the persisted rules cover a rule written in auditctl syntax"
        ),
        "has_loaded": Method(
            (STR,), BOOL, "whether the rules loaded in the kernel cover it (live only)"
        ),
    },
    doc="audit rules persisted in etc/audit/rules.d (or audit.rules) and loaded in the kernel",
    field_docs={
        "immutable": "the last persisted `-e` sets 2 (rules locked until reboot)",
        "enabled": "the kernel's audit flag: 0 off, 1 on, 2 locked (live only, null under --root)",
        "errors": "persisted lines that are not valid rules, as file:line: message",
    },
)

RULES_D = "/etc/audit/rules.d"
AUDIT_RULES_FILE = "/etc/audit/audit.rules"

_ID_FIELDS = {
    "auid",
    "uid",
    "euid",
    "suid",
    "fsuid",
    "gid",
    "egid",
    "sgid",
    "fsgid",
    "obj_uid",
    "obj_gid",
    "loginuid",
}
_INT_FIELDS = {
    "pid",
    "ppid",
    "pers",
    "devmajor",
    "devminor",
    "inode",
    "sessionid",
    "a0",
    "a1",
    "a2",
    "a3",
    "exit",
}
_FIELD_ALIASES = {"loginuid": "auid"}
_ARCH = {
    "b64": "b64",
    "x86_64": "b64",
    "amd64": "b64",
    "aarch64": "b64",
    "ppc64": "b64",
    "ppc64le": "b64",
    "s390x": "b64",
    "b32": "b32",
    "i386": "b32",
    "i486": "b32",
    "i586": "b32",
    "i686": "b32",
    "arm": "b32",
    "s390": "b32",
}
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
    "EBUSY": 16,
    "EEXIST": 17,
    "EXDEV": 18,
    "ENODEV": 19,
    "ENOTDIR": 20,
    "EISDIR": 21,
    "EINVAL": 22,
    "ENFILE": 23,
    "EMFILE": 24,
    "ETXTBSY": 26,
    "EFBIG": 27,
    "ENOSPC": 28,
    "ESPIPE": 29,
    "EROFS": 30,
    "EMLINK": 31,
    "EPIPE": 32,
    "ENAMETOOLONG": 36,
    "ENOSYS": 38,
    "ENOTEMPTY": 39,
    "ELOOP": 40,
}
_OPS = ("!=", ">=", "<=", "&=", "=", ">", "<", "&")
_LISTS = {"exit", "task", "user", "exclude", "filesystem", "io_uring", "entry"}
_ACTIONS = {"always", "never"}
_PERM_ORDER = "rwxa"
ALL = "*"  # every syscall

# control options: those taking a value, and flags
_CONTROL_VALUE = {"-b", "-f", "-e", "-r", "--backlog_wait_time", "--reset_backlog_wait_time_actual"}
_CONTROL_FLAG = {"-D", "-i", "-c", "--loginuid-immutable", "--reset-lost", "-l", "-s"}


class RuleSyntaxError(ValueError):
    """A line that is not a valid auditctl rule."""


@dataclass(frozen=True)
class AuditRule:
    """Equality is on the normalised parts only: text and source say how it was written."""

    text: str = field(compare=False)
    kind: str  # syscall | watch | control
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
    op: str = field(default="add", compare=False)  # add | delete | delete_all

    def describe(self) -> str:
        return self.text

    def where(self, name: str, *args: Any) -> str | None:
        return self.source

    @property
    def normalized(self) -> str:
        """One canonical text for the rule (keys included), for equality and display."""
        if self.kind == "control":
            assert self.control is not None
            return " ".join(p for p in self.control if p)
        if (
            self.path is not None
            and not self.arch
            and self.syscalls == ("all",)
            and not self.fields
        ):
            parts = [f"-w {self.path}", f"-p {self.perm or _PERM_ORDER}"]
        else:
            parts = [f"-a {self.action},{self.list}"]
            if self.arch:
                parts.append(f"-F arch={self.arch}")
            if self.syscalls:
                parts.append("-S " + ",".join(self.syscalls))
            if self.path is not None:
                parts.append(f"-F path={self.path}")
            if self.perm is not None:
                parts.append(f"-F perm={self.perm}")
            parts += [f"-F {f}" if not f.startswith("-C ") else f for f in self.fields]
        parts += [f"-k {k}" for k in self.keys]
        return " ".join(parts)


def _int_text(value: str) -> str | None:
    try:
        return str(int(value, 0))
    except ValueError:
        return None


def _field_value(name: str, value: str) -> str:
    if name in _ID_FIELDS:
        v = value.strip()
        if v.lower() == "unset" or v in ("-1", "4294967295"):
            return "unset"
        return _int_text(v) or v
    if name == "exit":
        sign = "-" if value.startswith("-") else ""
        body = value.lstrip("-+")
        if body.upper() in _ERRNO:
            return f"{sign}{_ERRNO[body.upper()]}" if sign else str(_ERRNO[body.upper()])
        return _int_text(value) or value
    if name in _INT_FIELDS:
        return _int_text(value) or value
    if name == "success":
        return {"yes": "1", "no": "0"}.get(value.lower(), value)
    if name == "perm":
        letters = set(value.lower())
        if not letters <= set(_PERM_ORDER):
            raise RuleSyntaxError(f"bad permission {value!r} (use r, w, x, a)")
        return "".join(c for c in _PERM_ORDER if c in letters)
    if name == "msgtype":
        return value.upper()
    if name in ("path", "dir"):
        return value.rstrip("/") or "/"
    return value


def _split_field(spec: str) -> tuple[str, str, str]:
    for i, ch in enumerate(spec):
        if ch in "!<>=&":
            for op in _OPS:
                if spec.startswith(op, i):
                    name, value = spec[:i], spec[i + len(op) :]
                    if not name or value == "":
                        break
                    return name.lower(), op, value
            break
    raise RuleSyntaxError(f"bad field {spec!r} (expected name, operator, value)")


def parse_rule(text: str, source: str | None = None) -> AuditRule:  # noqa: C901 - to be split
    """One auditctl rule line (continuations already joined) -> AuditRule."""
    try:
        toks = shlex.split(text, comments=False, posix=True)
    except ValueError as e:
        raise RuleSyntaxError(str(e)) from None
    if not toks:
        raise RuleSyntaxError("empty rule")
    first = toks[0]
    if first in _CONTROL_FLAG or first in _CONTROL_VALUE:
        if first in _CONTROL_VALUE:
            if len(toks) < 2:
                raise RuleSyntaxError(f"{first} needs a value")
            value = toks[1]
        else:
            value = ""
        op = "delete_all" if first == "-D" else "add"
        return AuditRule(text, "control", control=(first, value), source=source, op=op)

    lst = action = arch = path = perm = None
    syscalls: list[str] = []
    fields: list[str] = []
    keys: list[str] = []
    op = "add"
    watch = False
    i = 0

    def value_of(opt: str) -> str:
        nonlocal i
        if i + 1 >= len(toks):
            raise RuleSyntaxError(f"{opt} needs a value")
        i += 1
        return toks[i]

    while i < len(toks):
        t = toks[i]
        if t in ("-a", "-A", "-d"):
            parts = [p.strip().lower() for p in value_of(t).split(",")]
            if len(parts) != 2:
                raise RuleSyntaxError(f"{t} needs list,action (e.g. always,exit)")
            a, b = parts
            if a in _LISTS and b in _ACTIONS:
                a, b = b, a
            if a not in _ACTIONS or b not in _LISTS:
                raise RuleSyntaxError(f"unknown list/action {','.join(parts)!r}")
            action, lst = a, ("exit" if b == "entry" else b)
            if t == "-d":
                op = "delete"
        elif t in ("-w", "-W"):
            path = _field_value("path", value_of(t))
            watch = True
            if t == "-W":
                op = "delete"
        elif t == "-p":
            perm = _field_value("perm", value_of(t))
        elif t == "-k":
            keys.append(value_of(t))
        elif t == "-S":
            for s in value_of(t).split(","):
                s = s.strip()
                if s:
                    syscalls.append(ALL if s == "all" else s)
        elif t == "-F":
            name, fop, value = _split_field(value_of(t))
            name = _FIELD_ALIASES.get(name, name)
            if name == "arch":
                if fop != "=" or value.lower() not in _ARCH:
                    raise RuleSyntaxError(f"bad arch {value!r}")
                arch = _ARCH[value.lower()]
            elif name == "key":
                keys.append(value)
            elif name in ("path", "dir"):
                if fop != "=":
                    raise RuleSyntaxError(f"{name} only takes =")
                path = _field_value(name, value)
            elif name == "perm":
                perm = _field_value("perm", value)
            else:
                fields.append(f"{name}{fop}{_field_value(name, value)}")
        elif t == "-C":
            spec = value_of(t)
            a_, cop, b_ = _split_field(spec)
            if cop not in ("=", "!="):
                raise RuleSyntaxError(f"-C only compares with = or != ({spec!r})")
            a_, b_ = sorted(
                (_FIELD_ALIASES.get(a_, a_), _FIELD_ALIASES.get(b_.lower(), b_.lower()))
            )
            fields.append(f"-C {a_}{cop}{b_}")
        else:
            raise RuleSyntaxError(f"unknown option {t!r}")
        i += 1

    if watch:
        if lst is not None:
            raise RuleSyntaxError("-w cannot be combined with -a")
        lst, action = "exit", "always"
        perm = perm or _PERM_ORDER
    if lst is None:
        raise RuleSyntaxError("a rule needs -a list,action or -w path")
    if lst == "exit" and not syscalls:
        syscalls = [ALL]  # auditctl: a filter rule without -S applies to every syscall
    if lst != "exit" and syscalls:
        raise RuleSyntaxError(f"-S is only valid on the exit list, not {lst}")
    kind = "watch" if path is not None else "syscall"
    sc = (ALL,) if ALL in syscalls else tuple(sorted(set(syscalls)))
    return AuditRule(
        text,
        kind,
        lst,
        action,
        arch,
        ("all",) if sc == (ALL,) else sc,
        tuple(sorted(set(fields))),
        tuple(sorted(set(keys))),
        path,
        perm,
        source,
        op=op,
    )


# An atom is one (list, action, arch, syscall, filters) cell a rule covers; keys ride along.
Atom = tuple[str | None, str | None, str | None, str | None, frozenset[str]]


def _filters(rule: AuditRule) -> frozenset[str]:
    extra = set(rule.fields)
    if rule.path is not None:
        extra.add(f"path={rule.path}")
    if rule.perm is not None:
        extra.add(f"perm={rule.perm}")
    return frozenset(extra)


def atoms(rule: AuditRule) -> set[Atom]:
    filters = _filters(rule)
    if rule.list != "exit":
        return {(rule.list, rule.action, None, None, filters)}
    every = rule.syscalls == ("all",)
    if rule.arch:
        arches: Iterable[str] = (rule.arch,)
    elif every:
        # no arch and no syscall list (a watch): the kernel applies it to every ABI
        arches = ("b32", "b64")
    else:
        # syscall names without an arch are resolved for the native (64-bit) ABI
        arches = ("b64",)
    calls = (ALL,) if every else rule.syscalls
    return {(rule.list, rule.action, a, s, filters) for a in arches for s in calls}


def covers(rules: Iterable[AuditRule], query: AuditRule) -> bool:
    """Whether every cell of `query` is covered by some rule: same list, action, arch and
    filters, the syscall listed (or all), and each key of the query carried by that rule."""
    index: dict[tuple, list[tuple[str | None, frozenset[str]]]] = {}
    for r in rules:
        if r.kind == "control":
            continue
        for lst, action, arch, call, filters in atoms(r):
            index.setdefault((lst, action, arch, filters), []).append((call, frozenset(r.keys)))
    want = frozenset(query.keys)
    for lst, action, arch, call, filters in atoms(query):
        cells = index.get((lst, action, arch, filters), ())
        if not any((c == call or c == ALL) and want <= keys for c, keys in cells):
            return False
    return True


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield start, " ".join(p for p in pending if p)
        pending = []
    if pending:
        yield start, " ".join(p for p in pending if p)


def parse_rules(text: str, path: str) -> tuple[list[AuditRule], list[str]]:
    """Rules of one file, in order, and `file:line: message` for the lines that are not."""
    rules: list[AuditRule] = []
    errors: list[str] = []
    for n, line in _logical_lines(text):
        try:
            rules.append(parse_rule(line, at(path, n)))
        except RuleSyntaxError as e:
            errors.append(f"{at(path, n)}: {e}")
    return rules, errors


def apply(rules: Iterable[AuditRule]) -> list[AuditRule]:
    """The rule list the kernel ends up with: `-D` clears, `-d`/`-W` delete an equal rule."""
    out: list[AuditRule] = []
    for r in rules:
        if r.op == "delete_all":
            out = [x for x in out if x.kind == "control"]
            out.append(r)
        elif r.op == "delete":
            target = AuditRule(
                "", r.kind, r.list, r.action, r.arch, r.syscalls, r.fields, r.keys, r.path, r.perm
            )
            out = [x for x in out if not (x.kind != "control" and _same(x, target))]
        else:
            out.append(r)
    return out


def _same(a: AuditRule, b: AuditRule) -> bool:
    return (a.list, a.action, a.arch, a.syscalls, a.fields, a.path, a.perm) == (
        b.list,
        b.action,
        b.arch,
        b.syscalls,
        b.fields,
        b.path,
        b.perm,
    ) and (not b.keys or a.keys == b.keys)


# --- the kernel's audit status over netlink ------------------------------------------------
NETLINK_AUDIT = 9
AUDIT_GET = 1000
NLMSG_ERROR = 2
_STATUS = struct.Struct(
    "=IIIIIIII"
)  # mask enabled failure pid rate_limit backlog_limit lost backlog


def audit_status() -> dict[str, int]:
    """AUDIT_GET over a netlink socket: the kernel's enabled flag, failure mode, backlog."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError as e:
        raise EvaluationError(
            f"audit status: cannot open an audit netlink socket: {e.strerror or e}"
        ) from None
    with sock:
        sock.settimeout(2.0)
        try:
            sock.bind((0, 0))
            sock.send(
                struct.pack("=IHHII", 16, AUDIT_GET, 0x1 | 0x4, 1, 0)
            )  # NLM_F_REQUEST|NLM_F_ACK
            for _ in range(4):
                data = sock.recv(65536)
                off = 0
                while off + 16 <= len(data):
                    length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
                    body = data[off + 16 : off + length]
                    if kind == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", body)
                        if err:
                            raise EvaluationError(
                                f"audit status: the kernel refused AUDIT_GET: {os.strerror(-err)}"
                            )
                    elif kind == AUDIT_GET and len(body) >= _STATUS.size:
                        _m, enabled, failure, pid, rate, backlog_limit, lost, backlog = (
                            _STATUS.unpack_from(body)
                        )
                        return {
                            "enabled": enabled,
                            "failure": failure,
                            "pid": pid,
                            "rate_limit": rate,
                            "backlog_limit": backlog_limit,
                            "lost": lost,
                            "backlog": backlog,
                        }
                    if length < 16:
                        break
                    off += (length + 3) & ~3
        except TimeoutError:
            raise EvaluationError("audit status: no answer from the kernel over netlink") from None
        except OSError as e:
            raise EvaluationError(f"audit status: {e.strerror or e}") from None
    raise EvaluationError("audit status: no AUDIT_GET reply")


class AuditRules:
    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        files = [p for p in ctx.glob(f"{RULES_D}/*.rules") if ctx.stat(p) is not None]
        files.sort(key=lambda p: version_key(os.path.basename(p)))  # augenrules: `ls -v` order
        if not files and ctx.exists(AUDIT_RULES_FILE):
            files = [AUDIT_RULES_FILE]
        parsed: list[AuditRule] = []
        errors: list[str] = []
        for f in files:
            rules, errs = parse_rules(ctx.read_text(f) or "", f)
            parsed += rules
            errors += errs
        self.files = tuple(files)
        self.errors = tuple(errors)
        final = apply(parsed)
        self.persisted = tuple(r for r in final if r.kind != "control")
        controls = {r.control[0]: (r.control[1], r.source) for r in final if r.control}
        self._controls = controls
        e = controls.get("-e")
        self.immutable = e is not None and e[0] == "2"
        self.backlog_limit = _int(controls.get("-b"))
        self.failure_mode = _int(controls.get("-f"))
        self.keys = tuple(sorted({k for r in self.persisted for k in r.keys}))
        self._loaded: tuple[AuditRule, ...] | None = None
        self._status: dict[str, int] | None = None
        self._twin = False

    @classmethod
    def twin(cls, ctx: FactContext, data: Any) -> AuditRules:
        """For inline tests: persisted rules from the test's files, loaded rules (in
        `auditctl -l` syntax) and the enabled flag from `data`."""
        if not isinstance(data, dict) or set(data) - {"loaded", "enabled"}:
            raise EvaluationError("audit_rules stand-in: a mapping with loaded: [rules] and enabled: 0|1|2")
        obj = cls(ctx)
        obj._twin = True
        rules = []
        for n, line in enumerate(data.get("loaded") or [], 1):
            try:
                rules.append(parse_rule(str(line), f"test stand-in loaded:{n}"))
            except RuleSyntaxError as e:
                raise EvaluationError(f"audit_rules stand-in: cannot read {line!r}: {e}") from None
        obj._loaded = tuple(rules)
        obj._status = {"enabled": int(data.get("enabled", 1))}
        return obj

    def describe(self) -> str:
        return "audit_rules"

    @property
    def loaded(self) -> tuple[AuditRule, ...] | None:
        if not self._ctx.live and not self._twin:
            return None
        if self._loaded is None:
            self._loaded = tuple(_loaded_rules())
        return self._loaded

    @property
    def enabled(self) -> int | None:
        if not self._ctx.live and not self._twin:
            return None
        if self._status is None:
            self._status = audit_status()
        return self._status["enabled"]

    def has(self, rule: str) -> bool:
        return covers(self.persisted, _query(rule))

    def has_loaded(self, rule: str) -> bool:
        if not self._twin:
            self._ctx.require_live("audit_rules.has_loaded")
        return covers(self.loaded or (), _query(rule))

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("has", "has_loaded") and args:
            if name == "has_loaded":
                return "auditctl -l"
            try:
                q = _query(str(args[0]))
            except EvaluationError:
                return None
            hits = [r.source for r in self.persisted if r.source and covers([r], q)]
            if hits:
                return hits[0]
            partial = [r.source for r in self.persisted if r.source and _overlaps(r, q)]
            return (
                f"partly {', '.join(partial[:3])}"
                if partial
                else (", ".join(self.files) or f"{RULES_D} (no rules)")
            )
        if name == "immutable":
            e = self._controls.get("-e")
            return e[1] if e else (", ".join(self.files) or f"{RULES_D} (no rules)")
        if name in ("loaded", "enabled"):
            return "auditctl -l" if name == "loaded" else "netlink AUDIT_GET"
        return ", ".join(self.files) or f"{RULES_D} (no rules)"


def _overlaps(rule: AuditRule, query: AuditRule) -> bool:
    """Whether the rule covers at least one cell of the query (keys aside)."""
    mine = atoms(rule)
    return any(
        any(m[:3] == q[:3] and m[4] == q[4] and m[3] in (q[3], ALL) for m in mine)
        for q in atoms(query)
    )


def _int(entry: tuple[str, str | None] | None) -> int | None:
    if entry is None:
        return None
    try:
        return int(entry[0], 0)
    except ValueError:
        return None


def _query(text: str) -> AuditRule:
    try:
        q = parse_rule(text)
    except RuleSyntaxError as e:
        raise EvaluationError(f"audit rule {text!r}: {e}") from None
    if q.kind == "control":
        raise EvaluationError(f"audit rule {text!r}: a control option, not a rule")
    return q


def _loaded_rules() -> list[AuditRule]:
    auditctl = shutil.which("auditctl") or (
        "/sbin/auditctl" if os.path.exists("/sbin/auditctl") else None
    )
    if auditctl is None:
        raise EvaluationError("loaded audit rules: auditctl is not installed (package auditd)")
    try:
        out = subprocess.run(
            [auditctl, "-l"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EvaluationError(f"loaded audit rules: auditctl -l failed: {e}") from None
    if out.returncode != 0:
        raise EvaluationError(
            f"loaded audit rules: auditctl -l: {out.stderr.strip() or 'exit ' + str(out.returncode)}"
        )
    rules = []
    for n, line in enumerate(out.stdout.splitlines(), 1):
        line = line.strip()
        if not line or line == "No rules":
            continue
        try:
            rules.append(parse_rule(line, f"auditctl -l:{n}"))
        except RuleSyntaxError as e:
            raise EvaluationError(f"loaded audit rules: cannot read {line!r}: {e}") from None
    return rules


def register(reg: FactRegistry) -> None:
    reg.register(
        "audit_rules",
        AuditRules,
        returns=AUDIT_RULES,
        doc="persisted and loaded audit rules",
        twin=AuditRules.twin,
    )
