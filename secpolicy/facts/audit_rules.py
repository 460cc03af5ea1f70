"""`audit_rules`: the audit rules the kernel gets at boot (rules.d joined by augenrules, then
loaded line by line by `auditctl -R`, which stops at the first line it refuses) and the loaded
ones (`auditctl -l`), normalised so that one rule compares equal however it is spelled."""

from __future__ import annotations

import functools
import os
import re
import socket
import stat
import struct
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, INT, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts import augenrules as augenrules_check
from secpolicy.facts._common import at, sbin_tool, text_lines
from secpolicy.facts.auditctl import ALL, AuditRule, RuleSyntaxError, parse_rule, parse_words, words

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "AUDIT_RULE",
    "AUDIT_RULES",
    "AuditRule",
    "AuditRules",
    "Load",
    "RuleSyntaxError",
    "Verdict",
    "audit_status",
    "augenrules",
    "boot_rules",
    "compare_loaded",
    "covers",
    "load",
    "parse_rule",
    "register",
    "verdict",
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
        "stopped_at": STR,
        "keys": ListType(STR),
        "backlog_limit": INT,
        "failure_mode": INT,
        "augenrules_check": STR,
        "loaded_as_on_disk": BOOL,
    },
    methods={
        "has": Method(
            (STR,),
            BOOL,
            "whether the persisted rules record every event of a rule written in auditctl syntax: "
            "a rule covers it and no earlier never rule, exclude, task or filesystem rule takes them away",
        ),
        "has_loaded": Method(
            (STR,), BOOL, "the same of the rules loaded in the kernel, in their order (live only)"
        ),
    },
    doc="audit rules loaded at boot from etc/audit/rules.d (or audit.rules), and loaded now in the kernel",
    field_docs={
        "immutable": "the last persisted `-e` sets 2 (rules locked until reboot)",
        "enabled": "the kernel's audit flag: 0 off, 1 on, 2 locked (live only, null under --root)",
        "errors": "lines auditctl refuses, as file:line: message",
        "stopped_at": "file:line of the refused line that ended the load (later lines are not loaded), or null",
        "persisted": "the rules the kernel holds once auditctl -R has loaded the boot rules",
        "augenrules_check": 'what `augenrules --check` says: "No change" (audit.rules holds exactly the merge '
        'of rules.d), "Rules have changed and should be updated" or "No rules directory - /etc/audit/rules.d"',
        "loaded_as_on_disk": "the rules loaded in the kernel are those auditctl -R loads from /etc/audit/audit.rules, "
        "in the kernel's order (live only, null under --root)",
    },
)

RULES_D = "/etc/audit/rules.d"
AUDIT_RULES_FILE = "/etc/audit/audit.rules"


# An atom is one (list, action, arch, syscall, filters, perm) cell a rule covers; keys ride along.
# The perm mask stands apart from the other filters: the kernel (audit_match_perm) matches an
# event when any of the mask's access classes holds, so a rule with more letters (or with no
# perm filter at all) matches every event a rule with fewer letters matches.
Atom = tuple[str | None, str | None, str | None, str | None, frozenset[str], str | None]


def _filters(rule: AuditRule) -> frozenset[str]:
    extra = set(rule.fields)
    if rule.path is not None:
        extra.add(f"path={rule.path}")
    return frozenset(extra)


def perm_covers(have: str | None, want: str | None) -> bool:
    """Whether a rule with perm mask `have` matches every event a rule with mask `want` matches
    (None: no perm filter, every event)."""
    if have is None:
        return True
    return want is not None and set(want) <= set(have)


@functools.lru_cache(maxsize=4096)
def atoms(rule: AuditRule) -> frozenset[Atom]:
    """The cells of a rule (a rule is hashable on what it means, so equal rules share them)."""
    filters, perm = _filters(rule), rule.perm
    if rule.list != "exit":
        return frozenset({(rule.list, rule.action, None, None, filters, perm)})
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
    return frozenset((rule.list, rule.action, a, s, filters, perm) for a in arches for s in calls)


Index = dict[tuple, list[tuple[str | None, frozenset[str], str | None]]]


def index(rules: Iterable[AuditRule]) -> Index:
    """(list, action, arch, filters) -> [(syscall, keys, perm)] of the rules' cells."""
    out: Index = {}
    for r in rules:
        if r.kind not in ("syscall", "watch"):
            continue
        for lst, action, arch, call, filters, perm in atoms(r):
            out.setdefault((lst, action, arch, filters), []).append((call, frozenset(r.keys), perm))
    return out


def _cell_covers(have: Atom, arch: str | None, call: str | None, filters: frozenset[str], perm: str | None) -> bool:
    return (
        have[2] == arch and have[4] == filters and have[3] in (call, ALL) and perm_covers(have[5], perm)
    )


def covers(rules: Iterable[AuditRule] | Index, query: AuditRule) -> bool:
    """Whether every cell of `query` is covered by some rule: same list, action, arch and
    filters, the syscall listed (or all), the perm letters of the query among the rule's (or
    the rule without a perm filter), and each key of the query carried by that rule. (For a
    `never` query this reads the same way: it asks for a rule, not for what the kernel records.)"""
    idx = rules if isinstance(rules, dict) else index(rules)
    return _index_covers(idx, atoms(query), frozenset(query.keys))


def _index_covers(idx: Index, cells: Iterable[Atom], want: frozenset[str]) -> bool:
    for lst, action, arch, call, filters, perm in cells:
        held = idx.get((lst, action, arch, filters), ())
        if not any((c == call or c == ALL) and want <= keys and perm_covers(p, perm) for c, keys, p in held):
            return False
    return True


# --- the kernel's order: the first matching rule decides ------------------------------------------
# The kernel walks the exit list (watches included: they rank by when they were added, `-A`
# puts a rule first) and the first rule whose filters match an event decides: `never` records
# nothing, `always` records it under that rule's key. `-a never,task` rules turn auditing off
# for the tasks they match, `never,filesystem` rules keep the names on a file system out (so no
# watch there fires), and any exclude-list rule, `always` or `never`, drops the record types it
# matches (without its SYSCALL record a syscall event is not logged at all).
@dataclass(frozen=True)
class Verdict:
    covered: bool
    by: AuditRule | None = None  # the rule that takes the query's events away, if one does
    why: str = ""  # what it does to them


_UNSET = 4294967295
_ID_FIELDS = frozenset({"auid", "uid", "euid", "suid", "fsuid", "obj_uid", "gid", "egid", "sgid", "fsgid", "obj_gid"})
_NUMERIC_FIELDS = _ID_FIELDS | frozenset(
    {"pid", "ppid", "pers", "devmajor", "devminor", "inode", "a0", "a1", "a2", "a3", "success", "saddr_fam",
     "sessionid", "exit"}
)
# Fields whose equal values may still name one object: exe is an inode (a hard link of the
# binary matches too), so two different names do not make two rules disjoint.
_SAME_OBJECT_FIELDS = frozenset({"exe"})
_FIELD_RE = re.compile(r"([a-z_0-9]+)(!=|>=|<=|&=|=|>|<|&)(.*)\Z", re.DOTALL)
_MSGTYPES = {"SYSCALL": 1300, "PATH": 1302}
_SYS_ONLY_FS = frozenset({"debugfs", "tracefs", "0x64626720", "0x74726163"})


def _constraints(filters: Iterable[str]) -> dict[str, list[tuple[str, str]]] | None:
    """name -> [(op, value)] of `-F` filters; -C comparisons under "-C". None if unreadable."""
    out: dict[str, list[tuple[str, str]]] = {}
    for f in filters:
        if f.startswith("-C "):
            out.setdefault("-C", []).append(("", f[3:]))
            continue
        m = _FIELD_RE.match(f)
        if m is None:
            return None
        out.setdefault(m.group(1), []).append((m.group(2), m.group(3)))
    return out


def _number(value: str, name: str) -> int | None:
    if value == "unset" and name in _ID_FIELDS:
        return _UNSET
    try:
        return int(value, 0)
    except ValueError:
        return None


def _satisfiable(name: str, cons: list[tuple[str, str]]) -> bool:
    """Whether one value can meet all of a field's constraints; True when that cannot be told
    (bit tests, user names, two exe paths that may be one inode)."""
    if name == "-C":
        values = {v for _op, v in cons}
        return not any(v.replace("!=", "=", 1) in values for v in values if "!=" in v)
    if any(op in ("&", "&=") for op, _v in cons):
        return True
    if name in _NUMERIC_FIELDS:
        nums = [(op, _number(v, name)) for op, v in cons]
        lo, hi = (0, _UNSET) if name in _ID_FIELDS else (-(1 << 64), 1 << 64)
        excluded = set()
        for op, n in nums:
            if n is None:
                return True
            if op in ("=", ">=", ">"):
                lo = max(lo, n + (op == ">"))
            if op in ("=", "<=", "<"):
                hi = min(hi, n - (op == "<"))
            if op == "!=":
                excluded.add(n)
        return lo <= hi and hi - lo + 1 > len({n for n in excluded if lo <= n <= hi})
    equal = {v for op, v in cons if op == "="}
    if equal & {v for op, v in cons if op == "!="}:
        return False
    return len(equal) <= 1 or name in _SAME_OBJECT_FIELDS or any(op not in ("=", "!=") for op, _v in cons)


def _may_meet(a: Iterable[str], b: Iterable[str]) -> bool:
    """Whether an event can match both filter sets (True unless they provably exclude each other)."""
    cons = _constraints([*a, *b])
    return cons is None or all(_satisfiable(name, c) for name, c in cons.items())


def _related(a: str | None, b: str | None) -> bool:
    """Whether a path or directory filter can match an event of the other: the same path, or
    one inside the other (a dir rule takes the tree, a watch on a directory its entries)."""
    if a is None or b is None:
        return True
    return a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/")


def _matches_cell(rule: AuditRule, arch: str | None, call: str | None, query: AuditRule) -> bool:
    """Whether `rule` (exit list) can match an event of the query's cell (arch, syscall)."""
    if (rule.arch is not None and rule.arch != arch) or f"arch!={arch}" in rule.fields:
        return False
    # a rule without an arch matches every ABI, its syscall numbers read as native: on b32
    # they are other syscalls, which the names here do not tell, so it may match any of them
    blind = rule.arch is None and arch == "b32"
    if rule.syscalls != ("all",) and call != ALL and call not in rule.syscalls and not blind:
        return False
    if not _related(rule.path, query.path):
        return False
    return _may_meet(
        (f for f in rule.fields if not f.startswith("arch!=")),
        (f for f in query.fields if not f.startswith("arch!=")),
    )


def _admits(rule: AuditRule, kind: str) -> bool:
    """Whether an exclude rule's msgtype filters let it match records of `kind` (SYSCALL, PATH)."""
    cons = _constraints(rule.fields) or {}
    for op, value in cons.get("msgtype", ()):
        n = _MSGTYPES.get(value, _number(value, "msgtype"))
        if n is None:  # the name of another type, whose number is not in the table
            if op == "=":
                return False
            continue  # != holds; an order against a name cannot be told: it may match
        if op in _ORDER and not _ORDER[op](_MSGTYPES[kind], n):
            return False
    return True


_ORDER: dict[str, Callable[[int, int], bool]] = {
    "=": int.__eq__, "!=": int.__ne__, ">": int.__gt__, "<": int.__lt__, ">=": int.__ge__, "<=": int.__le__,
}


def _off_list(rules: Sequence[AuditRule], query: AuditRule) -> Verdict | None:
    """A task, filesystem or exclude rule that takes the query's events away, wherever it is."""
    wants_path = query.path is not None
    for r in rules:
        if r.list == "exclude":
            task = [f for f in r.fields if not f.startswith("msgtype")]
            for kind in ("SYSCALL", "PATH") if wants_path else ("SYSCALL",):
                if _admits(r, kind) and _may_meet(task, query.fields):
                    return Verdict(False, r, f"drops the {kind} records")
        elif r.list == "task" and r.action == "never" and _may_meet(r.fields, query.fields):
            return Verdict(False, r, "turns auditing off for the tasks it matches")
        elif r.list == "filesystem" and r.action == "never" and wants_path:
            fstypes = {v.lower() for op, v in (_constraints(r.fields) or {}).get("fstype", ()) if op == "="}
            # debugfs and tracefs hold nothing a policy watches outside /sys
            if not (fstypes and fstypes <= _SYS_ONLY_FS and not _related("/sys", query.path)):
                return Verdict(False, r, "keeps the names on that file system out of every event")
    return None


# The exit list's syscall and watch rules, in order, each with its cells and keys.
ExitCells = list[tuple[AuditRule, frozenset[Atom], frozenset[str]]]


def exit_cells(rules: Sequence[AuditRule]) -> ExitCells:
    return [(r, atoms(r), frozenset(r.keys)) for r in rules if r.list == "exit" and r.kind in ("syscall", "watch")]


def verdict(rules: Sequence[AuditRule], query: AuditRule, cells: ExitCells | None = None) -> Verdict:
    """Whether the kernel, holding `rules` in this order, records every event of `query`: each
    cell covered by an `always` rule (as `covers` says) with no earlier `never` rule that could
    match an event of that cell, and no exclude, task or filesystem rule that takes the events
    away. Where filters cannot be told apart, a rule is taken to match: a false FAIL names the
    rule, a false PASS hides a blind spot. (An earlier `always` rule records the event, under
    its own key: keys are asked of the covering rule only.) `cells` is exit_cells(rules), for
    a caller asking many queries of one rule list."""
    if query.list != "exit" or query.action != "always":
        return Verdict(covers(rules, query))
    off = _off_list(rules, query)
    if off is not None:
        return off
    if cells is None:
        cells = exit_cells(rules)
    want = frozenset(query.keys)
    for _lst, _action, arch, call, filters, perm in atoms(query):
        for r, have, keys in cells:
            if r.action == "always":
                if want <= keys and any(_cell_covers(a, arch, call, filters, perm) for a in have):
                    break  # this cell is recorded under the query's keys
            elif r.action == "never" and _matches_cell(r, arch, call, query):
                return Verdict(False, r, "comes first and records nothing")
        else:
            return Verdict(False)
    return Verdict(True)


# --- augenrules: rules.d/*.rules joined into one file -------------------------------------------
@dataclass(frozen=True)
class Line:
    text: str
    source: str  # file:line it came from


def augenrules(ctx: FactContext) -> tuple[list[Line], list[str]]:
    """The lines auditctl -R reads at boot, each with the file and line it came from, and the
    files read. With a rules.d directory, augenrules rebuilds audit.rules from it at every
    start (`augenrules.merge`: an empty rules.d leaves no rules); without one, audit.rules is
    loaded as it is."""
    merged = augenrules_check.merge(ctx)
    if merged is None:
        text = ctx.read_text(AUDIT_RULES_FILE)
        if text is None:
            return [], []
        return [Line(t, at(AUDIT_RULES_FILE, n)) for n, t in enumerate(text.split("\n"), 1)], [
            AUDIT_RULES_FILE
        ]
    lines = [Line(text.decode("utf-8", "surrogateescape"), src) for text, src in merged.lines]
    return lines, list(merged.files)


# --- auditctl -R: one rule per line, the first refused line ends the load -----------------------
@dataclass(frozen=True)
class Load:
    rules: tuple[AuditRule, ...]  # what the kernel holds afterwards
    controls: dict[str, tuple[str, str]]  # option -> (value, source) of each applied setting
    errors: tuple[str, ...]  # "file:line: message" for every refused line
    stopped: str | None  # "file:line" of the line that ended the load, if one did


class _Loader:
    def __init__(self, resolve: Callable[[str, str], int | None] | None) -> None:
        self.resolve = resolve
        self.rules: list[AuditRule] = []
        self.controls: dict[str, tuple[str, str]] = {}
        self.errors: list[str] = []
        self.ignore = False
        self.locked = False

    def line(self, line: Line) -> None:
        argv = words(line.text)
        if argv is None:
            return
        r = parse_words(argv, line.text, line.source, resolve=self.resolve)
        if r.kind == "flag":
            self.ignore = True  # -i and -c: report the errors and go on
            return
        if r.kind == "noop":
            return
        if self.locked:
            raise RuleSyntaxError(
                "the rules are locked (-e 2 was loaded earlier): Operation not permitted"
            )
        if r.kind == "control":
            self._control(r)
        elif r.op == "delete":
            hits = [x for x in self.rules if x.identity == r.identity]
            if not hits:
                raise RuleSyntaxError(
                    "Error sending delete rule data request (No such file or directory)"
                )
            self.rules.remove(hits[0])
        elif any(x.identity == r.identity for x in self.rules):
            raise RuleSyntaxError("Error sending add rule data request (Rule exists)")
        elif r.op == "prepend":
            self.rules.insert(0, r)
        else:
            self.rules.append(r)

    def _control(self, r: AuditRule) -> None:
        assert r.control is not None
        opt, value = r.control
        if opt == "-D":
            self.rules = []
        self.controls[opt] = (value, r.source or "")
        if opt == "-e" and value == "2":
            self.locked = True


def load(lines: Iterable[Line], resolve: Callable[[str, str], int | None] | None = None) -> Load:
    r"""What `auditctl -R` leaves in the kernel: lines in order, each one rule; a refused line
    (a syntax error, an unknown syscall, a duplicate, a rule split with `\`) ends the load
    unless an earlier `-i` or `-c` line said to go on."""
    ld = _Loader(resolve)
    stopped = None
    for line in lines:
        try:
            ld.line(line)
        except RuleSyntaxError as e:
            ld.errors.append(f"{line.source}: {e}")
            if not ld.ignore:
                stopped = line.source
                break
    return Load(tuple(ld.rules), ld.controls, tuple(ld.errors), stopped)


# --- the kernel's audit status and rule list over netlink ---------------------------------
NETLINK_AUDIT = 9
AUDIT_GET = 1000
AUDIT_LIST_RULES = 1013
NLMSG_ERROR = 2
NLMSG_DONE = 3
_NLMSG = struct.Struct("=IHHII")  # length type flags seq pid
_STATUS = struct.Struct(
    "=IIIIIIII"
)  # mask enabled failure pid rate_limit backlog_limit lost backlog
# struct audit_rule_data: flags action field_count mask[64] fields[64] values[64]
# fieldflags[64] buflen, then buf: the strings of the string fields, in field order.
_RULE_DATA = struct.Struct("=III64I64I64I64II")
_FIELDS_AT = 3 + 64  # index of fields[0] in the unpacked tuple
# Fields whose value is a string in buf (its length in values[]): the SELinux subject and
# object fields, watch, dir, exe and the key (several keys joined by \x01).
_STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, 210})
AUDIT_WATCH, AUDIT_DIR, AUDIT_EXE, AUDIT_FILTERKEY = 105, 107, 112, 210
_KEY_SEPARATOR = "\x01"


def _audit_request(kind: int, what: str) -> list[tuple[int, bytes]]:
    """(type, body) of every message the kernel answers an audit netlink request of `kind`
    with, up to its single reply or, for a multipart answer, NLMSG_DONE."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError as e:
        raise EvaluationError(f"{what}: cannot open an audit netlink socket: {e.strerror or e}") from None
    got: list[tuple[int, bytes]] = []
    with sock:
        sock.settimeout(2.0)
        try:
            sock.bind((0, 0))
            sock.send(_NLMSG.pack(_NLMSG.size, kind, 0x1 | 0x4, 1, 0))  # NLM_F_REQUEST|NLM_F_ACK
            while True:
                data = sock.recv(1 << 20)
                off = 0
                while off + _NLMSG.size <= len(data):
                    length, mtype, flags, _seq, _pid = _NLMSG.unpack_from(data, off)
                    if length < _NLMSG.size:
                        break
                    body = data[off + _NLMSG.size : off + length]
                    off += (length + 3) & ~3
                    if mtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", body)
                        if err:
                            raise EvaluationError(f"{what}: the kernel refused the request: {os.strerror(-err)}")
                        continue  # the acknowledgement
                    if mtype == NLMSG_DONE:
                        return got
                    got.append((mtype, body))
                    if mtype == kind and not flags & 0x2:  # a single reply, not NLM_F_MULTI
                        return got
        except TimeoutError:
            raise EvaluationError(f"{what}: no answer from the kernel over netlink") from None
        except OSError as e:
            raise EvaluationError(f"{what}: {e.strerror or e}") from None


def audit_status() -> dict[str, int]:
    """AUDIT_GET over a netlink socket: the kernel's enabled flag, failure mode, backlog."""
    for kind, body in _audit_request(AUDIT_GET, "audit status"):
        if kind == AUDIT_GET and len(body) >= _STATUS.size:
            _m, enabled, failure, pid, rate, backlog_limit, lost, backlog = _STATUS.unpack_from(body)
            return {
                "enabled": enabled,
                "failure": failure,
                "pid": pid,
                "rate_limit": rate,
                "backlog_limit": backlog_limit,
                "lost": lost,
                "backlog": backlog,
            }
    raise EvaluationError("audit status: no AUDIT_GET reply")


def kernel_rule_strings() -> list[tuple[tuple[int, str], ...]]:
    """AUDIT_LIST_RULES over netlink: each loaded rule, in the kernel's order, as the (field,
    value) of its string fields (watch, dir, exe, key, SELinux labels), values decoded as
    file names are (undecodable bytes kept as surrogates)."""
    rules = []
    for kind, body in _audit_request(AUDIT_LIST_RULES, "loaded audit rules"):
        if kind != AUDIT_LIST_RULES or len(body) < _RULE_DATA.size:
            continue
        head = _RULE_DATA.unpack_from(body)
        count = min(head[2], 64)
        fields, values = head[_FIELDS_AT : _FIELDS_AT + count], head[_FIELDS_AT + 64 : _FIELDS_AT + 64 + count]
        buf = body[_RULE_DATA.size : _RULE_DATA.size + head[-1]]
        strings = []
        pos = 0
        for field, value in zip(fields, values, strict=True):
            if field in _STRING_FIELDS:
                strings.append((field, buf[pos : pos + value].decode("utf-8", "surrogateescape")))
                pos += value
        rules.append(tuple(strings))
    return rules


class AuditRules:
    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        lines, files = augenrules(ctx)
        self._lines = lines
        result = load(lines, self._resolve)
        self.files = tuple(files)
        self.errors = result.errors
        self.stopped_at = result.stopped
        self.persisted = result.rules
        self._controls = result.controls
        e = self._controls.get("-e")
        self.immutable = e is not None and e[0] == "2"
        self.backlog_limit = _int(self._controls.get("-b"))
        self.failure_mode = _int(self._controls.get("-f"))
        self.keys = tuple(sorted({k for r in self.persisted for k in r.keys}))
        self._loaded: tuple[AuditRule, ...] | None = None
        self._kernel: list[tuple[tuple[int, str], ...]] | None = None  # netlink's strings per loaded rule
        self._check: augenrules_check.Check | None = None
        self._same: tuple[bool, str] | None = None
        self._status: dict[str, int] | None = None
        self._twin = False
        self._by_rule: list[tuple[AuditRule, Index]] | None = None
        self._verdicts: dict[tuple[bool, AuditRule], Verdict] = {}
        self._cells: dict[bool, ExitCells] = {}  # exit_cells of the persisted (True) and loaded rules

    def _resolve(self, kind: str, name: str) -> int | None:
        """A user or group name in a rule, as auditctl resolves it on the host it loads on."""
        try:
            if kind == "user":
                return next((u.uid for u in self._ctx.fact("users", ()) if u.name == name), None)
            return next((g.gid for g in self._ctx.fact("groups", ()) if g.name == name), None)
        except EvaluationError:
            return None

    @classmethod
    def twin(cls, ctx: FactContext, data: Any) -> AuditRules:
        """For inline tests: persisted rules from the test's files, loaded rules (in
        `auditctl -l` syntax) and the enabled flag from `data`."""
        if not isinstance(data, dict) or set(data) - {"loaded", "enabled"}:
            raise EvaluationError(
                "audit_rules stand-in: a mapping with loaded: [rules] and enabled: 0|1|2"
            )
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
            rules, self._kernel = _read_loaded()
            self._loaded = tuple(rules)
        return self._loaded

    # --- CIS 6.2.3.21: augenrules --check, and the loaded rules against audit.rules -------------
    def _augenrules(self) -> augenrules_check.Check:
        if self._check is None:
            self._check = augenrules_check.check(self._ctx)
        return self._check

    @property
    def augenrules_check(self) -> str:
        return self._augenrules().message

    @property
    def loaded_as_on_disk(self) -> bool | None:
        if not self._ctx.live and not self._twin:
            return None
        if self._same is None:
            self._same = self._compare_loaded()
        return self._same[0]

    def _compare_loaded(self) -> tuple[bool, str]:
        st = self._ctx.stat(AUDIT_RULES_FILE)
        data = self._ctx.read_bytes(AUDIT_RULES_FILE) if st is not None and stat.S_ISREG(st.st_mode) else None
        want, read = boot_rules(data, self._resolve)
        have = self.loaded or ()
        return compare_loaded(want, have, self._kernel, self._ctx, read)

    @property
    def enabled(self) -> int | None:
        if not self._ctx.live and not self._twin:
            return None
        if self._status is None:
            self._status = audit_status()
        return self._status["enabled"]

    def _rule_indexes(self) -> list[tuple[AuditRule, Index]]:
        """Each persisted rule that has a source, with the index of its own cells."""
        if self._by_rule is None:
            self._by_rule = [(r, index([r])) for r in self.persisted if r.source]
        return self._by_rule

    def _verdict(self, rules: Sequence[AuditRule], q: AuditRule) -> Verdict:
        persisted = rules is self.persisted
        key = (persisted, q)
        if key not in self._verdicts:
            if persisted not in self._cells:
                self._cells[persisted] = exit_cells(rules)
            self._verdicts[key] = verdict(rules, q, self._cells[persisted])
        return self._verdicts[key]

    def has(self, rule: str) -> bool:
        return self._verdict(self.persisted, _query(rule)).covered

    def has_loaded(self, rule: str) -> bool:
        if not self._twin:
            self._ctx.require_live("audit_rules.has_loaded")
        return self._verdict(self.loaded or (), _query(rule)).covered

    def _taken_note(self, q: AuditRule) -> str:
        """For has_loaded: the loaded rule that takes the query's events away, if one does."""
        if not self._ctx.live and not self._twin:
            return ""
        try:
            v = self._verdict(self.loaded or (), q)
        except EvaluationError:  # has_loaded itself says why
            return ""
        return f"; {_taken(v)}" if v.by is not None else ""

    def _read_from(self) -> str:
        return ", ".join(self.files) or f"{RULES_D} (no rules)"

    def _stop_note(self) -> str:
        if self.stopped_at is None:
            return ""
        why = next((e for e in self.errors if e.startswith(self.stopped_at + ":")), self.stopped_at)
        return f"; auditctl stops loading at {why}"

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("has", "has_loaded") and args:
            try:
                q = _query(str(args[0]))
            except EvaluationError:
                return LOADED_SOURCE if name == "has_loaded" else None
            if name == "has_loaded":
                return LOADED_SOURCE + self._taken_note(q)
            v = self._verdict(self.persisted, q)
            if v.by is not None:
                return _taken(v) + self._stop_note()
            if v.covered:
                cells, want = atoms(q), frozenset(q.keys)
                hit = next((r.source for r, idx in self._rule_indexes() if _index_covers(idx, cells, want)), None)
                if hit:
                    return hit
            partial = [r.source for r in self.persisted if r.source and _overlaps(r, q)]
            seen = f"partly {', '.join(partial[:3])}" if partial else self._read_from()
            return seen + self._stop_note()
        if name == "immutable":
            e = self._controls.get("-e")
            return e[1] if e else self._read_from() + self._stop_note()
        if name == "augenrules_check":
            return self._augenrules().where
        if name == "loaded_as_on_disk":
            if not self._ctx.live and not self._twin:
                return "the loaded rules are only known on the live host"
            try:
                self.loaded_as_on_disk  # noqa: B018 - computes the evidence
            except EvaluationError:
                return LOADED_SOURCE
            assert self._same is not None
            return self._same[1]
        if name in ("loaded", "enabled"):
            return LOADED_SOURCE if name == "loaded" else "netlink AUDIT_GET"
        if name in ("errors", "stopped_at"):
            return self._read_from()
        return self._read_from() + self._stop_note()


def boot_rules(data: bytes | None, resolve: Callable[[str, str], int | None] | None = None,
               name: str = AUDIT_RULES_FILE) -> tuple[list[AuditRule], str]:
    """The rules `auditctl -R` leaves in an empty kernel from the file `name` holding `data`,
    in the order the kernel lists them (list by list, each in the order added), and what was
    read, for evidence."""
    if data is None:
        return [], f"{name} (absent: nothing to load)"
    text = data.decode("utf-8", "surrogateescape")
    lines = [Line(t, at(name, n)) for n, t in enumerate(text.split("\n"), 1)]
    for line in lines:
        argv = words(line.text) or []
        if argv and argv[0].startswith("-D") and any(w.startswith("-k") for w in argv[1:]):
            raise EvaluationError(
                f"{line.source}: {line.text.strip()!r} deletes the loaded rules whose key holds the word "
                "(auditctl 3.0.9), which this reader does not follow: the rules it leaves cannot be told"
            )
    result = load(lines, resolve)
    rules = sorted(result.rules, key=lambda r: _KERNEL_LISTS.index(r.list or "exit"))
    stop = f", up to {result.stopped} where auditctl stops" if result.stopped else ""
    return rules, f"{name}{stop}"


def compare_loaded(want: Sequence[AuditRule], have: Sequence[AuditRule],
                   kernel: Sequence[tuple[tuple[int, str], ...]] | None, ctx: FactContext,
                   read: str) -> tuple[bool, str]:
    """Whether the loaded rules `have` (with the kernel's strings of each, when read live) are
    `want`, rule by rule in the kernel's order, and the evidence: the first rule that differs.
    A difference the normalised form cannot tell (a syscall or message type number, which
    auditctl -l prints by name) is an error naming the rule, never a pass."""
    unsure: str | None = None
    for i in range(max(len(want), len(have))):
        n = i + 1
        if i >= len(have):
            return False, (f"the kernel holds {len(have)} rules; {want[i].source}: {want[i].text.strip()!r} "
                           f"(rule {n} of {read} as the kernel lists them) is not loaded")
        if i >= len(want):
            return False, (f"loaded rule {n} {have[i].text!r} ({LOADED_SOURCE}) is not loaded by {read}, "
                           f"which loads {len(want)} rules")
        why = _differs(want[i], have[i], kernel[i] if kernel is not None else None, ctx)
        if why is None:
            continue
        where = (f"loaded rule {n} {have[i].text!r} is not {want[i].source}: {want[i].text.strip()!r} "
                 f"(rule {n} of {read} as the kernel lists them): {why}")
        if _untellable(want[i]) or _untellable(have[i]):
            unsure = unsure or where
            continue
        return False, where
    if unsure is not None:
        raise EvaluationError(
            f"{unsure}; auditctl -l prints syscall and message type names where the rule has numbers, "
            "which this reader does not map: whether they are the same rule cannot be told"
        )
    return True, f"the {len(have)} loaded rules ({LOADED_SOURCE}) are those of {read}, in the kernel's order"


_KERNEL_LISTS = ("user", "task", "exit", "exclude", "filesystem")  # AUDIT_FILTER_* order: how the kernel lists
_FIELD_SPEC = re.compile(r"([^!<>=&]*)")


def _path_form(rule: AuditRule, ctx: FactContext) -> int | None:
    """Whether the kernel holds the rule's path as a watch (AUDIT_WATCH) or a tree (AUDIT_DIR):
    `-F dir=` and `-F path=` say so, `-w` is a tree when the path is a directory (auditctl
    stats it when it loads the rule)."""
    if rule.path is None:
        return None
    argv = words(rule.text) or []
    for i, w in enumerate(argv):
        if w in ("-w", "-W") or w[:2] in ("-w", "-W"):
            st = ctx.stat(rule.path)
            return AUDIT_DIR if st is not None and stat.S_ISDIR(st.st_mode) else AUDIT_WATCH
        spec = argv[i + 1] if w == "-F" and i + 1 < len(argv) else w[2:] if w.startswith("-F") else ""
        name = _FIELD_SPEC.match(spec).group(1).lower()  # type: ignore[union-attr]
        if name in ("dir", "path"):
            return AUDIT_DIR if name == "dir" else AUDIT_WATCH
    return None


def _counted_fields(rule: AuditRule) -> list[str]:
    """The rule's filters with their repeats (a filter given twice is two fields)."""
    return sorted(o for o in rule.order if o in rule.fields)


def _differs(want: AuditRule, have: AuditRule, strings: tuple[tuple[int, str], ...] | None,
             ctx: FactContext) -> str | None:
    """How a loaded rule differs from the one audit.rules puts at its place, or None. With the
    kernel's strings (live), the keys as the kernel holds them and watch against tree too."""
    if want != have:
        return "a different rule"
    if _counted_fields(want) != _counted_fields(have):
        return "a filter is repeated on one side only"
    if strings is None:
        return None
    keys = sorted(v for f, v in strings if f == AUDIT_FILTERKEY)
    if keys != sorted(o[4:] for o in want.order if o.startswith("key=")):
        return f"the kernel holds the keys {keys!r}"
    held = next((f for f, _v in strings if f in (AUDIT_WATCH, AUDIT_DIR)), None)
    form = _path_form(want, ctx)
    if form is not None and held is not None and form != held:
        return f"the kernel holds {have.path} as a {'tree (dir=)' if held == AUDIT_DIR else 'single watch (path=)'}"
    return None


def _untellable(rule: AuditRule) -> bool:
    """A rule holding a syscall or message type as a number, which auditctl -l prints by name."""
    return any(s.isdigit() for s in rule.syscalls) or any(
        f.startswith("msgtype") and f.lstrip("msgtype!=<>").isdigit() for f in rule.fields
    )


def _taken(v: Verdict) -> str:
    """Evidence of a rule that takes the query's events away: where it is and what it does."""
    assert v.by is not None
    return f"{v.by.source or 'a rule'}: {v.by.text.strip()} {v.why}"


def _overlaps(rule: AuditRule, query: AuditRule) -> bool:
    """Whether the rule covers at least one cell of the query (keys aside)."""
    mine = atoms(rule)
    return any(
        any(m[:2] == q[:2] and _cell_covers(m, q[2], q[3], q[4], q[5]) for m in mine)
        for q in atoms(query)
    )


def _int(entry: tuple[str, str | None] | None) -> int | None:
    if entry is None:
        return None
    try:
        return int(entry[0], 0)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _query(text: str) -> AuditRule:
    """A policy's rule text, parsed once (a rule is immutable; a refused one raises each time)."""
    try:
        q = parse_rule(text)
    except RuleSyntaxError as e:
        raise EvaluationError(f"audit rule {text!r}: {e}") from None
    if q.kind == "control":
        raise EvaluationError(f"audit rule {text!r}: a control option, not a rule")
    return q


_READ_ATTEMPTS = 5
_FIELD_NAMES = {AUDIT_WATCH: "watch", AUDIT_DIR: "dir", AUDIT_EXE: "exe", AUDIT_FILTERKEY: "key"}
LOADED_SOURCE = "auditctl -l, checked against the kernel's rule list (netlink AUDIT_LIST_RULES)"


def _read_loaded() -> tuple[list[AuditRule], list[tuple[tuple[int, str], ...]]]:
    """The rules the kernel holds, read from `auditctl -l` and checked against the kernel's own
    list. auditctl prints keys and paths as they are, so one holding a line break or a space
    could pass for a rule of its own (`-k "x<newline>-w /etc/passwd -p wa"` reads as a watch
    that does not exist): such a rule, or any disagreement between the two, is an error."""
    auditctl = sbin_tool("auditctl")
    if auditctl is None:
        raise EvaluationError("loaded audit rules: auditctl is not installed (package auditd)")
    for _ in range(_READ_ATTEMPTS):
        kernel = kernel_rule_strings()
        lines = _auditctl_list(auditctl)
        if kernel_rule_strings() == kernel:  # no rule added or deleted meanwhile
            return _checked(kernel, lines), kernel
    raise EvaluationError(f"loaded audit rules: the rules changed each of the {_READ_ATTEMPTS} times they were read")


def _auditctl_list(auditctl: str) -> list[str]:
    try:
        out = subprocess.run([auditctl, "-l"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EvaluationError(f"loaded audit rules: auditctl -l failed: {e}") from None
    if out.returncode != 0:
        said = out.stderr.decode("utf-8", "replace").strip()
        raise EvaluationError(f"loaded audit rules: auditctl -l: {said or 'exit ' + str(out.returncode)}")
    text = out.stdout.decode("utf-8", "surrogateescape")  # keys are bytes: never a decoding error
    return [line for line in text_lines(text) if line.strip(" ") and line != "No rules"]


def _checked(kernel: list[tuple[tuple[int, str], ...]], lines: list[str]) -> list[AuditRule]:
    for n, strings in enumerate(kernel, 1):
        for field, value in strings:
            if " " in value or "\n" in value:
                raise EvaluationError(
                    f"loaded audit rules: the {_FIELD_NAMES.get(field, 'label')} {value!r} of loaded rule {n} holds "
                    "a space or line break, which auditctl -l prints as it is: where that rule ends cannot be told"
                )
    if len(lines) != len(kernel):
        raise EvaluationError(f"loaded audit rules: the kernel holds {len(kernel)} rules, auditctl -l printed {len(lines)}")
    rules = []
    for n, (line, strings) in enumerate(zip(lines, kernel, strict=True), 1):
        try:  # auditctl -l escapes nothing: its words are what lies between spaces
            rule = parse_words([w for w in line.split(" ") if w], line, f"auditctl -l:{n}")
        except RuleSyntaxError as e:
            raise EvaluationError(f"loaded audit rules: cannot read {line!r}: {e}") from None
        keys = tuple(sorted({k for f, v in strings if f == AUDIT_FILTERKEY for k in v.split(_KEY_SEPARATOR)}))
        path = next((v for f, v in strings if f in (AUDIT_WATCH, AUDIT_DIR)), None)
        if rule.keys != keys or (rule.kind == "watch" and rule.path != path):
            raise EvaluationError(
                f"loaded audit rules: auditctl -l line {n} ({line!r}) is not the kernel's rule {n} "
                f"(key {keys!r}, path {path!r})"
            )
        rules.append(rule)
    return rules


def register(reg: FactRegistry) -> None:
    reg.register(
        "audit_rules",
        AuditRules,
        returns=AUDIT_RULES,
        doc="persisted and loaded audit rules",
        twin=AuditRules.twin,
    )
