"""Indexes event rules by event type and by a discriminating literal (exact exe, comm, user
id or file path prefix) so each event is evaluated only against the rules that could match it.

Index keys are read from the checked AST of a rule's condition: a conjunct such as
`type == "exec"`, `proc.exe in ["/usr/bin/sudo", "/usr/bin/su"]` or
`file.path startswith "/etc/"` constrains one dimension; `and` intersects, `or` unites when
every branch constrains the same dimension, anything else (not, functions, other fields)
constrains nothing. The index only ever over-approximates: a candidate rule is still
evaluated with its compiled condition, so an index never changes what fires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from secpolicy.dsl import CompiledExpr
from secpolicy.dsl import ast as A
from secpolicy.events.model import EVENT_TYPES
from secpolicy.models import Event
from secpolicy.rules import Rule

__all__ = [
    "ANY_KEYS",
    "IndexKeys",
    "KernelFilter",
    "Matcher",
    "describe_rule",
    "kernel_filter",
    "keys_of",
    "rule_conditions",
    "rule_keys",
]

T = TypeVar("T")


@dataclass(frozen=True)
class IndexKeys:
    """What an event must have for a condition to possibly hold; None = no constraint.
    `uids` constrain `user.uid`; `path_prefixes` constrain `file.path`."""

    types: frozenset[str] | None = None
    exe: frozenset[str] | None = None
    comm: frozenset[str] | None = None
    path_prefixes: tuple[str, ...] | None = None
    uids: frozenset[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        def show(v: Any) -> Any:
            if v is None:
                return None
            return sorted(v)

        return {
            "types": show(self.types),
            "exe": show(self.exe),
            "comm": show(self.comm),
            "path_prefixes": show(self.path_prefixes),
            "uids": show(self.uids),
        }


ANY_KEYS = IndexKeys()


@dataclass(frozen=True)
class KernelFilter:
    """The union of the index keys of a rule set, for sources that can filter at the source
    (the eBPF monitor): an event outside it cannot match any rule. None = no filter."""

    types: frozenset[str]
    exe: frozenset[str] | None
    comm: frozenset[str] | None
    path_prefixes: tuple[str, ...] | None
    uids: frozenset[int] | None


_DIMENSIONS = {
    ("type",): "types",
    ("proc", "exe"): "exe",
    ("proc", "comm"): "comm",
    ("file", "path"): "path_prefixes",
    ("user", "uid"): "uids",
}
_GLOB_CHARS = "*?["


def _literal_values(node: A.Node) -> list[Any] | None:
    if isinstance(node, A.Literal):
        return [node.value]
    if isinstance(node, A.ListLit):
        out = []
        for item in node.items:
            if not isinstance(item, A.Literal):
                return None
            out.append(item.value)
        return out
    return None


def _compare_keys(node: A.Compare) -> tuple[str, frozenset[Any] | tuple[str, ...]] | None:
    """The (dimension, values) one comparison constrains, with the field on the left."""
    if not isinstance(node.left, A.Field):
        return None
    dim = _DIMENSIONS.get(tuple(node.left.path))
    if dim is None:
        return None
    values = _literal_values(node.right)
    if values is None:
        return None
    op = node.op
    if op == "==" and isinstance(node.right, A.Literal) or op == "in" and isinstance(node.right, A.ListLit) or dim == "path_prefixes" and op == "startswith" or dim == "path_prefixes" and op == "glob" and isinstance(node.right, A.Literal):
        pass
    else:
        return None
    if dim == "uids":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return None
        return dim, frozenset(values)
    if not all(isinstance(v, str) for v in values):
        return None
    if dim == "path_prefixes":
        prefixes = []
        for v in values:
            if op == "glob":
                cut = min((v.find(c) for c in _GLOB_CHARS if c in v), default=len(v))
                v = v[:cut]
            prefixes.append(v)
        return dim, tuple(sorted(set(prefixes)))
    return dim, frozenset(values)


def _merge_and(a: IndexKeys, b: IndexKeys) -> IndexKeys:
    def inter(x: Any, y: Any) -> Any:
        if x is None:
            return y
        if y is None:
            return x
        return x & y

    # Two prefix sets under `and`: either alone is a valid over-approximation; keep the one
    # with the longest shortest prefix (the more selective).
    if a.path_prefixes is None:
        paths = b.path_prefixes
    elif b.path_prefixes is None:
        paths = a.path_prefixes
    else:
        paths = max(a.path_prefixes, b.path_prefixes, key=lambda p: min((len(s) for s in p), default=0))
    return IndexKeys(
        types=inter(a.types, b.types),
        exe=inter(a.exe, b.exe),
        comm=inter(a.comm, b.comm),
        path_prefixes=paths,
        uids=inter(a.uids, b.uids),
    )


def _merge_or(a: IndexKeys, b: IndexKeys) -> IndexKeys:
    def union(x: Any, y: Any) -> Any:
        if x is None or y is None:
            return None
        return x | y

    paths = None
    if a.path_prefixes is not None and b.path_prefixes is not None:
        paths = tuple(sorted(set(a.path_prefixes) | set(b.path_prefixes)))
    return IndexKeys(
        types=union(a.types, b.types),
        exe=union(a.exe, b.exe),
        comm=union(a.comm, b.comm),
        path_prefixes=paths,
        uids=union(a.uids, b.uids),
    )


def keys_of(node: A.Node | None) -> IndexKeys:
    """Index keys of one checked condition AST."""
    if node is None:
        return ANY_KEYS
    if isinstance(node, A.And):
        out = ANY_KEYS
        for item in node.items:
            out = _merge_and(out, keys_of(item))
        return out
    if isinstance(node, A.Or):
        if not node.items:
            return ANY_KEYS
        out = keys_of(node.items[0])
        for item in node.items[1:]:
            out = _merge_or(out, keys_of(item))
        return out
    if isinstance(node, A.Compare):
        found = _compare_keys(node)
        if found is None:
            return ANY_KEYS
        dim, values = found
        return IndexKeys(**{dim: values})  # type: ignore[arg-type]  # dim names the field
    return ANY_KEYS


def rule_conditions(rule: Rule) -> list[CompiledExpr]:
    """The compiled conditions of an event rule: its `when`, or its sequence steps."""
    if rule.sequence is not None:
        return list(rule.sequence.steps)
    return [rule.when] if rule.when is not None else []


def step_keys(rule: Rule) -> list[IndexKeys]:
    """Index keys per condition of a rule (one per sequence step; `when` narrows each)."""
    when = rule.when
    base = keys_of(when.node) if when is not None else ANY_KEYS
    seq = rule.sequence
    if seq is None:
        return [base]
    return [_merge_and(base, keys_of(step.node)) for step in seq.steps]


def rule_keys(rule: Rule) -> IndexKeys:
    """Index keys of a whole rule: for sequences the union over its steps."""
    keys = step_keys(rule)
    out = keys[0]
    for k in keys[1:]:
        out = _merge_or(out, k)
    return out


def kernel_filter(rules: Iterable[Rule]) -> KernelFilter:
    """The union of the rules' keys; a dimension filters only when every rule constrains it."""
    keys = [rule_keys(r) for r in rules]
    types: set[str] = set()
    for k in keys:
        types |= set(EVENT_TYPES) if k.types is None else set(k.types)

    def unite(attr: str) -> Any:
        vals = [getattr(k, attr) for k in keys]
        if not vals or any(v is None for v in vals):
            return None
        acc: set[Any] = set()
        for v in vals:
            acc |= set(v)
        return tuple(sorted(acc)) if attr == "path_prefixes" else frozenset(acc)

    return KernelFilter(
        types=frozenset(types),
        exe=unite("exe"),
        comm=unite("comm"),
        path_prefixes=unite("path_prefixes"),
        uids=unite("uids"),
    )


# --- The index --------------------------------------------------------------------------


class _Bucket(Generic[T]):
    """Entries of one event type, each filed under its most selective discriminator."""

    __slots__ = ("always", "always_items", "by_comm", "by_exe", "by_prefix", "by_uid", "plain", "prefix_lens")

    def __init__(self) -> None:
        self.always: list[tuple[int, T]] = []
        self.always_items: list[T] = []
        self.by_exe: dict[str, list[tuple[int, T]]] = {}
        self.by_comm: dict[str, list[tuple[int, T]]] = {}
        self.by_uid: dict[int, list[tuple[int, T]]] = {}
        self.by_prefix: dict[str, list[tuple[int, T]]] = {}
        self.prefix_lens: tuple[int, ...] = ()
        self.plain: list[T] | None = None

    def add(self, order: int, keys: IndexKeys, item: T) -> None:
        entry = (order, item)
        if keys.exe is not None:
            for v in keys.exe:
                self.by_exe.setdefault(v, []).append(entry)
        elif keys.comm is not None:
            for v in keys.comm:
                self.by_comm.setdefault(v, []).append(entry)
        elif keys.path_prefixes is not None:
            for v in keys.path_prefixes:
                self.by_prefix.setdefault(v, []).append(entry)
        elif keys.uids is not None:
            for u in keys.uids:
                self.by_uid.setdefault(u, []).append(entry)
        else:
            self.always.append(entry)

    def freeze(self) -> None:
        self.prefix_lens = tuple(sorted({len(p) for p in self.by_prefix}))
        self.always_items = [item for _, item in self.always]
        if not (self.by_exe or self.by_comm or self.by_prefix or self.by_uid):
            self.plain = [item for _, item in self.always]


class Matcher(Generic[T]):
    """`candidates(event)` returns, in insertion order, the items whose keys the event
    satisfies on its type and discriminator (a superset of those whose condition holds). The
    list may be shared between calls: read it, do not change it.

    `specialise(item, type)` gives the item filed for events of that type (a condition
    compiled for it), or None when no event of the type can match; events of a type no
    bucket knows get the items as given."""

    def __init__(self, entries: Sequence[tuple[IndexKeys, T]],
                 specialise: Callable[[T, str], T | None] | None = None) -> None:
        self._buckets: dict[str, _Bucket[T]] = {}
        any_bucket: _Bucket[T] = _Bucket()
        for t in EVENT_TYPES:
            self._buckets[t] = _Bucket()
        for order, (keys, item) in enumerate(entries):
            targets = EVENT_TYPES if keys.types is None else sorted(keys.types)
            for t in targets:
                bucket = self._buckets.get(t)
                if bucket is None:  # a type no source produces: keep it indexed anyway
                    bucket = self._buckets[t] = _Bucket()
                filed = item if specialise is None else specialise(item, t)
                if filed is not None:
                    bucket.add(order, keys, filed)
            if keys.types is None:
                any_bucket.add(order, keys, item)
        for b in self._buckets.values():
            b.freeze()
        any_bucket.freeze()
        self._any = any_bucket
        self.size = len(entries)

    def plain_candidates(self) -> dict[str, list[T]]:
        """The candidates of every event type whose bucket has no discriminator: for those
        types `candidates(event)` is this list whatever else the event holds."""
        return {t: b.plain for t, b in self._buckets.items() if b.plain is not None}

    def candidates(self, event: Event) -> list[T]:
        bucket = self._buckets.get(event.get("type"), self._any)  # type: ignore[arg-type]
        plain = bucket.plain
        if plain is not None:
            return plain
        always = bucket.always
        found: list[tuple[int, T]] = always
        copied = False
        proc = event.get("proc")
        if type(proc) is dict:
            # Lookups only with strings/ints: JSONL input may carry any JSON value there.
            if bucket.by_exe:
                exe = proc.get("exe")
                if type(exe) is str:
                    hit = bucket.by_exe.get(exe)
                    if hit:
                        found, copied = found + hit, True
            if bucket.by_comm:
                comm = proc.get("comm")
                if type(comm) is str:
                    hit = bucket.by_comm.get(comm)
                    if hit:
                        found, copied = found + hit, True
        if bucket.by_prefix:
            f = event.get("file")
            path = f.get("path") if type(f) is dict else None
            if type(path) is str:
                by_prefix = bucket.by_prefix
                plen = len(path)
                for n in bucket.prefix_lens:
                    if n > plen:
                        break
                    hit = by_prefix.get(path[:n])
                    if hit:
                        found, copied = found + hit, True
        if bucket.by_uid:
            u = event.get("user")
            uid = u.get("uid") if type(u) is dict else None
            if type(uid) is int:
                hit = bucket.by_uid.get(uid)
                if hit:
                    found, copied = found + hit, True
        if not copied:
            return bucket.always_items  # in order already: no sort, no copy
        if len(found) > 1:
            found.sort(key=_order)
            # A rule filed under several prefixes of the same path appears once.
            out: list[T] = []
            last = -1
            for order, item in found:
                if order != last:
                    out.append(item)
                    last = order
            return out
        return [item for _, item in found]


def _order(entry: tuple[int, Any]) -> int:
    return entry[0]


# --- explain ---------------------------------------------------------------------------


def _residual_nodes(node: A.Node, keys: IndexKeys) -> list[A.Node]:
    """Top-level conjuncts the index does not already decide exactly."""
    items = list(node.items) if isinstance(node, A.And) else [node]
    chosen = _chosen_dimension(keys)
    residual = []
    for item in items:
        found = _compare_keys(item) if isinstance(item, A.Compare) else None
        if found is not None:
            dim, values = found
            if dim == "types":
                continue
            if dim == chosen and dim != "path_prefixes":
                continue
            if (
                dim == chosen == "path_prefixes"
                and isinstance(item, A.Compare)
                and item.op == "startswith"
                and values == keys.path_prefixes
            ):
                continue
        residual.append(item)
    return residual


def _chosen_dimension(keys: IndexKeys) -> str | None:
    for dim in ("exe", "comm", "path_prefixes", "uids"):
        if getattr(keys, dim) is not None:
            return dim
    return None


def _node_text(expr_text: str, node: A.Node) -> str:
    own = getattr(node, "text", "")
    if own:
        return str(own)
    if node.end > node.start:
        return expr_text[node.start : node.end].strip()
    return "<expression>"


def _describe_condition(expr: CompiledExpr, keys: IndexKeys) -> dict[str, Any]:
    text = expr.text
    node = expr.node
    residual_text = text.strip()
    rest = _residual_nodes(node, keys)
    whole = list(node.items) if isinstance(node, A.And) else [node]
    if not rest:
        residual_text = "true"
    elif len(rest) < len(whole):
        residual_text = " and ".join(
            f"({_node_text(text, n)})" if isinstance(n, A.Or) else _node_text(text, n)
            for n in rest
        )
    return {
        "condition": text.strip(),
        "index": keys.to_dict(),
        "discriminator": _chosen_dimension(keys),
        "residual": residual_text,
    }


def describe_rule(rule: Rule) -> dict[str, Any]:
    """What `secpolicy explain RULE_ID` shows for an event rule: the index keys it is filed
    under, the discriminator used, and the residual condition evaluated per candidate event."""
    keys = step_keys(rule)
    out: dict[str, Any] = {"rule_id": rule.id}
    threshold = rule.threshold
    seq = rule.sequence
    when = rule.when
    if seq is not None:
        out["kind"] = "sequence"
        out["sequence"] = {"by": list(seq.by), "within": seq.within}
        out["steps"] = [_describe_condition(step, k) for step, k in zip(seq.steps, keys)]
        if when is not None:
            out["when"] = when.text
    else:
        out["kind"] = "threshold" if threshold is not None else "match"
        if when is not None:
            out.update(_describe_condition(when, keys[0]))
        if threshold is not None:
            out["threshold"] = {
                "count": threshold.count,
                "within": threshold.within,
                "by": list(threshold.by),
            }
    out["keys"] = rule_keys(rule).to_dict()
    return out


Evaluator = Callable[[Event], bool]
