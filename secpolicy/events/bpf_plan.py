"""The kernel tier of the live monitor: which probes the loaded rules need and the cheap filters
(uids, comm, path prefixes) kept in BPF maps so that events no rule can match stay in the kernel."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.events.fields import EVENT_TYPES

if TYPE_CHECKING:  # the dsl is imported when a plan is made from rules, not for the constants
    from secpolicy.dsl.ast import Node
    from secpolicy.events.matcher import IndexKeys
    from secpolicy.rules import Rule

__all__ = [
    "COMM_MAX_LEN",
    "FIM_TYPES",
    "LIVE_TYPES",
    "MAX_PREFIXES",
    "PREFIX_MAX_LEN",
    "Clause",
    "KernelPlan",
    "LinkHeads",
    "RuleCoverage",
    "TypeFilter",
    "link_heads",
    "plan_for_rules",
    "plan_from_keys",
    "watched_files",
    "with_watched_paths",
]

# Event types the eBPF programs can produce: all of them (account and configuration changes
# from the audit messages user space sends the kernel); whether this kernel offers each is
# `secpolicy.events.live.available_types()`.
LIVE_TYPES: tuple[str, ...] = EVENT_TYPES
# Types whose records carry a file path the kernel can test against prefixes.
PATH_TYPES = frozenset({"open", "write", "unlink", "rename", "chmod", "chown", "setxattr"})

MAX_PREFIXES = 32  # SP_MAX_PREFIXES in bpf/secpolicy.h
MAX_CLAUSES = 8  # SP_MAX_CLAUSES
PREFIX_MAX_LEN = 128  # SP_PREFIX_WORDS * 8
COMM_MAX_LEN = 15  # the kernel keeps 15 bytes of a task's name
HEAD_MAX_LEN = 31  # SP_HEAD_MAX - 1: the longest first path component link_heads holds
HEAD_STEMS = 8  # SP_HEAD_STEMS


@dataclass(frozen=True)
class Clause:
    """What one rule needs of an event of one type, beyond uid and comm: a path prefix
    (file.path or, for rename, file.target) and the syscall's outcome."""

    path_prefixes: tuple[str, ...] | None = None
    result: str | None = None  # "success" | "failure" | None (either)
    errnos: frozenset[int] | None = None

    def describe(self) -> str:
        parts = []
        if self.path_prefixes is not None:
            parts.append("path starts with " + " or ".join(self.path_prefixes))
        if self.errnos is not None:
            parts.append("fails with errno " + "/".join(str(e) for e in sorted(self.errnos)))
        elif self.result is not None:
            parts.append(f"{self.result}")
        return " and ".join(parts) if parts else "anything"

    @property
    def unconstrained(self) -> bool:
        return self.path_prefixes is None and self.result is None and self.errnos is None


@dataclass(frozen=True)
class TypeFilter:
    """What an event of one type must have for some rule to possibly match; None = anything.
    An event passes when its uid and comm are in the unions and one clause holds. `exe` is
    applied in user space only (the kernel has no cheap full path of the executable)."""

    uids: frozenset[int] | None = None
    comm: frozenset[str] | None = None
    path_prefixes: tuple[str, ...] | None = None
    exe: frozenset[str] | None = None
    clauses: tuple[Clause, ...] | None = None

    def describe(self) -> str:
        parts = []
        if self.uids is not None:
            parts.append("user.uid in {" + ", ".join(str(u) for u in sorted(self.uids)) + "}")
        if self.comm is not None:
            parts.append("proc.comm in {" + ", ".join(sorted(self.comm)) + "}")
        if self.clauses is not None:
            parts.append("(" + ") or (".join(c.describe() for c in self.clauses) + ")")
        elif self.path_prefixes is not None:
            parts.append("file.path starts with one of " + ", ".join(self.path_prefixes))
        kernel = " and ".join(parts) if parts else "no kernel filter (every event of this type)"
        if self.exe is not None:
            kernel += "; in user space: proc.exe in {" + ", ".join(sorted(self.exe)) + "}"
        return kernel


@dataclass(frozen=True)
class RuleCoverage:
    """A rule some of whose event types this kernel cannot produce: `missing` lists them;
    `can_fire` is False when every condition (or some step of a sequence) needs one of them."""

    rule_id: str
    missing: tuple[str, ...]
    can_fire: bool

    def describe(self) -> str:
        types = ", ".join(self.missing)
        if self.can_fire:
            return f"{self.rule_id}: fires live except on {types} (not produced here)"
        return f"{self.rule_id}: cannot fire live ({types} not produced here)"


@dataclass(frozen=True)
class KernelPlan:
    """Types to trace (exec is always traced: it keeps the process context current) and,
    per type, the filter compiled into the kernel."""

    types: frozenset[str]
    filters: Mapping[str, TypeFilter] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    coverage: tuple[RuleCoverage, ...] = ()

    @property
    def blind_rules(self) -> tuple[str, ...]:
        """Ids of the rules that cannot fire live here."""
        return tuple(c.rule_id for c in self.coverage if not c.can_fire)

    def filter_for(self, etype: str) -> TypeFilter:
        return self.filters.get(etype, TypeFilter())

    def describe(self, etype: str) -> str:
        if etype not in LIVE_TYPES:
            return f"{etype}: not produced by the eBPF probes (comes from auditd or file checks)"
        if etype not in self.types:
            return f"{etype}: probes not attached (no loaded rule needs them)"
        if etype == "exec":
            return "exec: always delivered (keeps the process context current); " + (
                self.filter_for(etype).describe()
            )
        return f"{etype}: {self.filter_for(etype).describe()}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in sorted(self.types):
            f = self.filter_for(t)
            out[t] = {
                "uids": None if f.uids is None else sorted(f.uids),
                "comm": None if f.comm is None else sorted(f.comm),
                "path_prefixes": None if f.path_prefixes is None else list(f.path_prefixes),
                "exe": None if f.exe is None else sorted(f.exe),
                "clauses": None if f.clauses is None else [c.describe() for c in f.clauses],
            }
        return out


class _Acc:
    """Per-type union of rule keys; a dimension one rule leaves open stays open."""

    def __init__(self) -> None:
        self.uids: set[int] | None = set()
        self.comm: set[str] | None = set()
        self.prefixes: set[str] | None = set()
        self.exe: set[str] | None = set()

    def add(self, keys: Any, path_ok: bool) -> None:
        self.uids = _unite(self.uids, getattr(keys, "uids", None))
        comm = getattr(keys, "comm", None)
        self.comm = _unite(self.comm, None if comm is None else {c[:COMM_MAX_LEN] for c in comm})
        prefixes = getattr(keys, "path_prefixes", None) if path_ok else None
        if prefixes is not None and not all(p.startswith("/") for p in prefixes):
            prefixes = None  # a relative or empty prefix can match anything once resolved
        if prefixes is not None:
            prefixes = {p[:PREFIX_MAX_LEN] for p in prefixes}
        self.prefixes = _unite(self.prefixes, prefixes)
        self.exe = _unite(self.exe, getattr(keys, "exe", None))

    def result(self) -> TypeFilter:
        prefixes: tuple[str, ...] | None = None
        if self.prefixes is not None:
            prefixes = _minimal_prefixes(self.prefixes)
        return TypeFilter(
            uids=None if self.uids is None else frozenset(self.uids),
            comm=None if self.comm is None else frozenset(self.comm),
            path_prefixes=prefixes,
            exe=None if self.exe is None else frozenset(self.exe),
        )


def _unite(acc: set[Any] | None, values: Iterable[Any] | None) -> set[Any] | None:
    if acc is None or values is None:
        return None
    return acc | set(values)


def _minimal_prefixes(prefixes: set[str]) -> tuple[str, ...]:
    """Drop prefixes covered by a shorter one: fewer comparisons in the kernel."""
    out: list[str] = []
    for p in sorted(prefixes, key=len):
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return tuple(sorted(out))


def plan_from_keys(keys: Iterable[Any], available: Iterable[str] | None = None) -> KernelPlan:
    """The plan for rules given by their index keys (objects with types, exe, comm,
    path_prefixes, uids; None = no constraint). `available` limits the types to those this
    kernel offers; the others are listed in `notes`."""
    per_type: dict[str, _Acc] = {}
    for k in keys:
        types = getattr(k, "types", None)
        wanted = LIVE_TYPES if types is None else [t for t in types if t in LIVE_TYPES]
        for t in wanted:
            per_type.setdefault(t, _Acc()).add(k, t in PATH_TYPES)
    return _finish(per_type, available)


def _finish(per_type: dict[str, _Acc], available: Iterable[str] | None) -> KernelPlan:
    types = set(per_type) | {"exec"}
    notes: list[str] = []
    if available is not None:
        avail = set(available)
        for t in sorted(types - avail):
            notes.append(f"{t}: needed by a rule but not available on this kernel")
        types &= avail | {"exec"}
    filters = {t: acc.result() for t, acc in per_type.items() if t in types}
    # From bare index keys, the path prefixes make the one clause of a type.
    filters = {t: f if f.path_prefixes is None else
               TypeFilter(f.uids, f.comm, f.path_prefixes, f.exe, (Clause(f.path_prefixes),))
               for t, f in filters.items()}
    total = sum(len(f.path_prefixes or ()) for f in filters.values())
    if total > MAX_PREFIXES:
        # Too many to test in the kernel: drop the prefix filter of the types with most.
        for t in sorted(filters, key=lambda t: -len(filters[t].path_prefixes or ())):
            f = filters[t]
            if f.path_prefixes:
                total -= len(f.path_prefixes)
                filters[t] = TypeFilter(f.uids, f.comm, None, f.exe)
                notes.append(f"{t}: more than {MAX_PREFIXES} path prefixes; filtered in user space")
            if total <= MAX_PREFIXES:
                break
    return KernelPlan(frozenset(types), filters, tuple(notes))


@dataclass(frozen=True)
class LinkHeads:
    """What a write-open's opened file must have as its first path component (the name just below
    `/`) for one of its type's success-accepting prefixes to hold: one of `names`, or a name that
    starts with one of `stems` (at most HEAD_STEMS, of at most 8 bytes each)."""

    names: frozenset[bytes]
    stems: frozenset[bytes]


def link_heads(flt: TypeFilter) -> LinkHeads | None:
    """The first components of the prefixes of `flt`'s clauses that accept a success, as the
    kernel's pre-filter of write-opens kept for the file they opened looks them up
    (bpf/secpolicy.bpf.c, sp_link_head_ok): only a file whose top-level directory is one of them
    gets the full prefix test. A prefix that ends inside its first component (`/etc` also
    matches `/etcetera/`), or whose first component is longer than HEAD_MAX_LEN bytes, gives a
    stem: its first 8 bytes, which the name must start with. None when the pre-filter could
    drop a file the full test keeps, so the kernel tests every such file in full: no clauses, a
    success-accepting clause without prefixes, a prefix that is `/`, relative or starts with
    `//`, or more than HEAD_STEMS stems. Prefixes are taken as the kernel holds them (their
    first PREFIX_MAX_LEN bytes); failure-only clauses are left out (a failed open is never
    tested on the file it opened)."""
    if flt.clauses is None:
        return None
    names: set[bytes] = set()
    stems: set[bytes] = set()
    for clause in flt.clauses:
        # as kernel.py flags them: SP_C_ERRNO (with SP_C_FAILURE) or SP_C_FAILURE
        if clause.result == "failure" or (clause.errnos is not None and all(0 < e < 64 for e in clause.errnos)):
            continue
        if clause.path_prefixes is None:
            return None
        for p in clause.path_prefixes:
            raw = p.encode()[:PREFIX_MAX_LEN]
            if not raw.startswith(b"/"):
                return None
            head, slash, _rest = raw[1:].partition(b"/")
            if not head:
                return None
            if slash and len(head) <= HEAD_MAX_LEN:
                names.add(head)
            else:
                stems.add(head[:8])
    stems = {s for s in stems if not any(s != t and s.startswith(t) for t in stems)}
    if len(stems) > HEAD_STEMS:
        return None
    return LinkHeads(frozenset(names), frozenset(stems))


def watched_files(flt: TypeFilter) -> tuple[str, ...]:
    """The prefixes of `flt`'s success-accepting clauses that may name one file (absolute, not
    ending in `/`, at most PREFIX_MAX_LEN bytes): the kernel also knows these by inode, so a
    write-open that reaches one under another name (a hard link made elsewhere, a bind mount
    of the file) is named by it, as an audit file watch, which matches the inode, records it.
    Which of them are regular files, and their inodes, is the live monitor's to find out."""
    if flt.clauses is None:
        return ()
    out: dict[str, None] = {}
    for clause in flt.clauses:
        if clause.result == "failure" or (clause.errnos is not None and all(0 < e < 64 for e in clause.errnos)):
            continue
        for p in clause.path_prefixes or ():
            if p.startswith("/") and not p.endswith("/") and len(p.encode()) <= PREFIX_MAX_LEN:
                out[p] = None
    return tuple(out)


# ---- planning from the rules' ASTs: one clause per rule (or sequence step) and event type ----


def _restrict(node: Node, etype: str, keys_of: Callable[[Node], IndexKeys]) -> Node | None:
    """`node` with the `or` branches that cannot match an event of `etype` removed; None when
    nothing of it can."""
    from secpolicy.dsl import ast as A

    if isinstance(node, A.Or):
        kept = [r for r in (_restrict(i, etype, keys_of) for i in node.items) if r is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else A.Or(tuple(kept))
    if isinstance(node, A.And):
        items = []
        for i in node.items:
            r = _restrict(i, etype, keys_of)
            if r is None:
                return None
            items.append(r)
        return A.And(tuple(items))
    types = keys_of(node).types
    if types is not None and etype not in types:
        return None
    return node


def _outcome(node: Node) -> tuple[str | None, frozenset[int] | None]:
    """The outcome a condition requires, read from its top-level conjuncts."""
    from secpolicy.dsl import ast as A

    conjuncts = node.items if isinstance(node, A.And) else (node,)
    result: str | None = None
    errnos: frozenset[int] | None = None
    for c in conjuncts:
        neg = False
        if isinstance(c, A.Not):
            neg, c = True, c.item
        if not isinstance(c, A.Compare) or not isinstance(c.left, A.Field):
            continue
        path = tuple(c.left.path)
        if path == ("outcome", "result") and c.op == "==" and isinstance(c.right, A.Literal):
            if c.right.value in ("success", "failure"):
                value = c.right.value
                if neg:
                    value = "success" if value == "failure" else "failure"
                result = value
        elif path == ("outcome", "errno") and not neg and c.op in ("==", "in"):
            vals = [c.right] if isinstance(c.right, A.Literal) else list(getattr(c.right, "items", []))
            if vals and all(isinstance(v, A.Literal) and type(v.value) is int for v in vals):
                nums = frozenset(v.value for v in vals)
                errnos = nums if errnos is None else errnos & nums
    if errnos is not None:
        result = "failure"
    return result, errnos


def _conditions(rule: Rule) -> list[Node]:
    """The AST of each condition of a rule: `when`, or `when and step` per sequence step."""
    from secpolicy.dsl import ast as A

    when = rule.when
    seq = rule.sequence
    if seq is None:
        return [when.node] if when is not None else []
    out: list[Node] = []
    for step in seq.steps:
        out.append(step.node if when is None else A.And((when.node, step.node)))
    return out


def plan_for_rules(rules: Iterable[Rule], available: Iterable[str] | None = None) -> KernelPlan:
    """The plan for compiled event rules: per event type, the union of uids and comms and one
    clause (path prefixes, outcome) per rule condition that can match the type."""
    from secpolicy.events.matcher import keys_of

    per_type: dict[str, _Acc] = {}
    clauses: dict[str, list[Clause] | None] = {}
    avail = None if available is None else set(available) | {"exec"}
    coverage: list[RuleCoverage] = []
    for rule in rules:
        per_condition: list[list[str]] = []
        for node in _conditions(rule):
            matched = []
            for t in LIVE_TYPES:
                r = _restrict(node, t, keys_of)
                if r is None:
                    continue
                k = keys_of(r)
                if k.types is not None and t not in k.types:
                    continue
                matched.append(t)
                per_type.setdefault(t, _Acc()).add(k, t in PATH_TYPES)
                prefixes = k.path_prefixes if t in PATH_TYPES else None
                if prefixes is not None and not all(p.startswith("/") for p in prefixes):
                    prefixes = None
                if prefixes is not None:
                    prefixes = _minimal_prefixes({p[:PREFIX_MAX_LEN] for p in prefixes})
                result, errnos = _outcome(r)
                clause = Clause(prefixes, result, errnos)
                current = clauses.setdefault(t, [])
                if current is None:
                    continue
                if clause.unconstrained:
                    clauses[t] = None  # one rule takes every event of this type
                elif clause not in current:
                    current.append(clause)
            per_condition.append(matched)
        if avail is not None:
            missing = {t for matched in per_condition for t in matched if t not in avail}
            if missing:
                # Every condition (each step of a sequence) must match some type produced here.
                can_fire = all(any(t in avail for t in matched) for matched in per_condition)
                coverage.append(RuleCoverage(rule.id, tuple(sorted(missing)), can_fire))
    plan = _finish(per_type, available)
    filters = dict(plan.filters)
    notes = list(plan.notes)
    for t, f in filters.items():
        cl = clauses.get(t)
        if cl is not None and len(cl) > MAX_CLAUSES:
            notes.append(f"{t}: more than {MAX_CLAUSES} rule clauses; path and outcome filtered in user space")
            cl = None
        filters[t] = TypeFilter(f.uids, f.comm, f.path_prefixes, f.exe, tuple(cl) if cl is not None else None)
    total = len({p for f in filters.values() for c in (f.clauses or ()) for p in (c.path_prefixes or ())})
    if total > MAX_PREFIXES:
        notes.append(f"more than {MAX_PREFIXES} distinct path prefixes; paths filtered in user space")
        filters = {t: TypeFilter(f.uids, f.comm, f.path_prefixes, f.exe,
                                 tuple(Clause(None, c.result, c.errnos) for c in f.clauses)
                                 if f.clauses is not None else None)
                   for t, f in filters.items()}
    return KernelPlan(plan.types, filters, tuple(notes), tuple(coverage))


# ---- live file integrity monitoring: the watched trees of a FIM configuration ----

# Event types that can change a watched entry (a `write` is an open that may modify or create).
FIM_TYPES: tuple[str, ...] = ("write", "rename", "chmod", "chown", "unlink")


def _fit_prefixes(prefixes: Iterable[str], budget: int) -> tuple[str, ...]:
    """At most `budget` prefixes covering all of `prefixes`: the prefixes under the deepest
    directory that holds two or more of them are replaced by it, until they fit (an
    over-approximation that user space narrows again)."""
    import posixpath
    from collections import Counter

    def ancestors(p: str) -> list[str]:
        out = []
        p = p.rstrip("/")
        while p not in ("", "/"):
            p = posixpath.dirname(p)
            out.append(p or "/")
        return out

    out = set(_minimal_prefixes({p[:PREFIX_MAX_LEN] for p in prefixes}))
    while len(out) > max(budget, 1):
        counts = Counter(a for p in out for a in ancestors(p))
        best = max((a for a, n in counts.items() if n >= 2), key=lambda a: (a.count("/") if a != "/" else 0,
                                                                           counts[a], a))
        out = set(_minimal_prefixes({p for p in out if best not in ancestors(p)} | {best}))
    return tuple(sorted(out))


def with_watched_paths(plan: KernelPlan, prefixes: Iterable[str],
                       available: Iterable[str] | None = None) -> KernelPlan:
    """`plan` extended so that successful writes, renames, chmods, chowns and unlinks under
    `prefixes` (absolute paths) reach user space too, whoever makes them: a clause per type
    beside the rules' own, and no uid, comm or exe filter on those types any more."""
    wanted = [p for p in prefixes if p.startswith("/")]
    if not wanted:
        return plan
    avail = None if available is None else set(available)
    types = set(plan.types)
    filters = dict(plan.filters)
    notes = list(plan.notes)
    used = {p for f in filters.values() for c in (f.clauses or ()) for p in (c.path_prefixes or ())}
    fim = _fit_prefixes(wanted, MAX_PREFIXES - len(used))
    if len(used | set(fim)) > MAX_PREFIXES:
        notes.append(f"file integrity: no room for its paths among {MAX_PREFIXES} kernel prefixes; "
                     "paths filtered in user space")
        clause = Clause(None, "success")
    else:
        if len(fim) < len(_minimal_prefixes(set(wanted))):
            notes.append("file integrity: watched paths merged into " + ", ".join(fim) + " in the kernel")
        clause = Clause(fim, "success")
    for t in FIM_TYPES:
        if avail is not None and t not in avail:
            notes.append(f"{t}: needed by file integrity monitoring but not available on this kernel")
            continue
        if t not in types:
            types.add(t)
            filters[t] = TypeFilter(path_prefixes=clause.path_prefixes, clauses=(clause,))
            continue
        f = filters.get(t, TypeFilter())
        if f.clauses is None:
            # Already every event of the type (within uid/comm): now for every user and program.
            filters[t] = TypeFilter()
            continue
        clauses = f.clauses if clause in f.clauses else (*f.clauses, clause)
        if len(clauses) > MAX_CLAUSES:
            notes.append(f"{t}: more than {MAX_CLAUSES} clauses with file integrity; path and outcome "
                         "filtered in user space")
            filters[t] = TypeFilter()
            continue
        paths = None
        if f.path_prefixes is not None and clause.path_prefixes is not None:
            paths = _minimal_prefixes(set(f.path_prefixes) | set(clause.path_prefixes))
        filters[t] = TypeFilter(path_prefixes=paths, clauses=clauses)
    return KernelPlan(frozenset(types), filters, tuple(notes), plan.coverage)
