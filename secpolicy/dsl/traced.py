"""Traced evaluation of checks, which is how a scan evaluates them: the semantics of the plain
closures in compiler.py, but every value travels with where it was read (`Observed`) and every
comparison appends a `TraceRecord` to the trace it is handed. Those records are the evidence.

Where a value was read is asked of the fact object that holds it, through `Sourced.where`;
nothing is passed on the side: a closure returns its value and its provenance together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from secpolicy.dsl import ast
from secpolicy.dsl.checker import Checked
from secpolicy.dsl.compiler import (
    BUILTINS,
    EvalEnv,
    absent_operand,
    is_const,
    node_label,
    operator_for,
)
from secpolicy.dsl.types import Type, format_value
from secpolicy.errors import EvaluationError

__all__ = ["Masked", "Observed", "Sourced", "TraceRecord", "Traced", "compile_traced", "expectation"]


class Sourced(Protocol):
    """A fact object that can say where one of its fields, or a method's result, was read:
    `/etc/ssh/sshd_config:41`, `/proc/sys/net/ipv4/ip_forward`, `default`, or None.
    `where("")` names where the object as a whole was read (a user's line in /etc/passwd)."""

    def where(self, name: str, *args: Any) -> str | None: ...


class Masked:
    """A masked mode as evidence shows it, formatted only if it becomes evidence:
    the whole mode, not only the masked bits (`0o644 & 0o77 = 0o44`)."""

    __slots__ = ("result", "type", "values")

    def __init__(self, values: list[Any], result: Any, t: Type | None) -> None:
        self.values, self.result, self.type = values, result, t

    def __str__(self) -> str:
        return " & ".join(format_value(v, self.type) for v in self.values) + " = " + format_value(self.result, self.type)


class Observed(NamedTuple):
    """A value seen while evaluating, with where it was read and, when evidence should show
    more than the value itself, how (a `Masked` mode, `present`)."""

    value: Any
    source: str | None = None
    shown: str | Masked | None = None


@dataclass(frozen=True)
class TraceRecord:
    """One comparison seen while evaluating. `op` and the expected side are from the observed
    side's point of view: for `"use_authtok" in e.args` the host's list is observed and the
    record reads `contains "use_authtok"`. Values are formatted only when read: most records
    never become evidence."""

    text: str
    op: str
    observed_value: Any
    expected_value: Any
    result: bool
    want: bool | None  # the result that makes the rule pass; None inside count()
    source: str | None
    # A guard the verdict did not turn on: `not sshd.exists` in a failed `not sshd.exists or X`.
    context: bool = False
    observed_type: Type | None = None
    expected_type: Type | None = None
    shown: str | Masked | None = None  # the observed side as text, when not its value's
    note: str = ""  # after the expected value: ` (password_min_length)` for a var
    expected_text: str | None = None  # the expected side as text (`true`, `present`)

    @property
    def observed(self) -> str:
        return str(self.shown) if self.shown is not None else format_value(self.observed_value, self.observed_type)

    @property
    def expected(self) -> str:
        """The expected side, formatted, without the operator."""
        if self.expected_text is not None:
            return self.expected_text
        return format_value(self.expected_value, self.expected_type) + self.note


# What an operator reads as when the literal stands on the left and the host value on the right.
_SWAPPED = {
    "==": "==",
    "!=": "!=",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
    "in": "contains",
    "not in": "not contains",
    "contains": "in",
    "icontains": "in (ignoring case)",
    "startswith": "is a prefix of",
    "endswith": "is a suffix of",
}
_NEGATED = {
    "==": "!=",
    "!=": "==",
    "<": ">=",
    "<=": ">",
    ">": "<=",
    ">=": "<",
    "in": "not in",
    "not in": "in",
    "contains": "not contains",
    "not contains": "contains",
    "is a prefix of": "is not a prefix of",
    "is a suffix of": "is not a suffix of",
}


def expectation(op: str, expected: str, positive: bool) -> str:
    """What the rule wanted, as evidence says it: `"no"`, `<= 4`, `not in [...]`, `absent`."""
    if op == "is":
        return expected if positive else ("false" if expected == "true" else "true")
    if op == "exists":
        return "present" if positive else "absent"
    shown = op if positive else _NEGATED.get(op, f"not {op}")
    return expected if shown == "==" else f"{shown} {expected}"


Traced = Callable[[EvalEnv, list[TraceRecord]], bool]
_Cond = Callable[[EvalEnv, list, list[TraceRecord]], bool]
_Value = Callable[[EvalEnv, list, list[TraceRecord]], Observed]

_CONDITIONS = (ast.And, ast.Or, ast.Not, ast.Compare, ast.Exists)


def _is_condition(n: ast.Node) -> bool:
    return isinstance(n, _CONDITIONS) or (isinstance(n, ast.Quantifier) and n.kind != "count")


def _policy_side(n: ast.Node) -> bool:
    """Whether a node holds what the policy expects rather than what the host has."""
    if isinstance(n, ast.Literal):
        return True
    if isinstance(n, ast.PolicyVar):
        return n.type is not None and n.name != "scan"
    if isinstance(n, (ast.ListLit, ast.Add, ast.BitAnd)):
        return all(_policy_side(i) for i in n.items)
    if isinstance(n, ast.Builtin):
        return all(_policy_side(a) for a in n.args)
    return False


def _is_guard(n: ast.Node) -> bool:
    """A branch of an `or` that makes the rule hold vacuously: `not X`, `x == null`."""
    if isinstance(n, ast.Not):
        return True
    return isinstance(n, ast.Compare) and n.op == "==" and isinstance(n.right, ast.Literal) and n.right.value is None


def _first_source(obs: list[Observed]) -> str | None:
    return next((o.source for o in obs if o.source is not None), None)


class _Compiler:
    def __init__(self) -> None:
        # Slots of the quantifiers around the node being compiled, innermost last.
        self.items: list[int] = []

    def item_source(self) -> Callable[[list], str | None]:
        """Where the item under examination was read, for a comparison whose own values carry
        no source (`count(v in users: v.uid == u.uid) == 1` is about user `u`)."""
        if not self.items:
            return lambda fr: None
        slot = self.items[-1]

        def source(fr: list) -> str | None:
            where: Callable[..., str | None] | None = getattr(fr[slot], "where", None)
            return where("") if where is not None else None

        return source

    def scoped(self, n: ast.Quantifier, want: bool | None) -> _Cond:
        self.items.append(n.slot)
        try:
            return self.cond(n.cond, want)
        finally:
            self.items.pop()

    def cond(self, n: ast.Node, want: bool | None) -> _Cond:
        if not _is_condition(n):
            return self.truth(n, want)
        fn: _Cond = getattr(self, "k_" + type(n).__name__)(n, want)
        if want is not None and isinstance(n, (ast.And, ast.Or, ast.Not, ast.Quantifier)):
            return _pruning(fn, want)
        return fn

    def value(self, n: ast.Node) -> _Value:
        if _is_condition(n):
            c = self.cond(n, None)
            return lambda env, fr, tr: Observed(c(env, fr, tr))
        fn: _Value = getattr(self, "v_" + type(n).__name__)(n)
        return fn

    def truth(self, n: ast.Node, want: bool | None) -> _Cond:
        """A value used as a condition (`fim("web").verified`, a bool var) is evidence too."""
        v = self.value(n)
        text = node_label(n)
        item = self.item_source()

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
            o = v(env, fr, tr)
            if o.value is None and want is not True:
                # Absent counts as false only where false cannot make the rule pass: under
                # `not`, `none()` or inside `count()` it would turn "unknown" into a pass.
                raise EvaluationError(f"{text}: no value (absent) to negate or count")
            res = bool(o.value)
            if want is not None:
                source = o.source if o.source is not None else item(fr)
                tr.append(TraceRecord(text, "is", o.value, None, res, want, source, expected_text="true"))
            return res

        return fn

    # values ------------------------------------------------------------------------------
    def v_Literal(self, n: ast.Literal) -> _Value:
        obs = Observed(n.value)
        return lambda env, fr, tr: obs

    def v_ListLit(self, n: ast.ListLit) -> _Value:
        if is_const(n):
            obs = Observed(tuple(i.value for i in n.items))  # type: ignore[attr-defined]
            return lambda env, fr, tr: obs
        fns = [self.value(i) for i in n.items]
        return lambda env, fr, tr: Observed(tuple(f(env, fr, tr).value for f in fns))

    def v_Var(self, n: ast.Var) -> _Value:
        slot = n.slot
        return lambda env, fr, tr: Observed(fr[slot])

    def v_PolicyVar(self, n: ast.PolicyVar) -> _Value:
        name = n.name
        return lambda env, fr, tr: Observed(env.var(name))

    def v_Fact(self, n: ast.Fact) -> _Value:
        name = n.name
        if all(isinstance(a, ast.Literal) for a in n.args):
            const = tuple(a.value for a in n.args)  # type: ignore[attr-defined]
            return lambda env, fr, tr: Observed(env.fact(name, const))
        fns = [self.value(a) for a in n.args]
        return lambda env, fr, tr: Observed(env.fact(name, tuple(f(env, fr, tr).value for f in fns)))

    def v_Attr(self, n: ast.Attr) -> _Value:
        obj = self.value(n.obj)
        name = n.name

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            o = obj(env, fr, tr)
            x = o.value
            if x is None:
                return Observed(None, o.source)
            where: Callable[..., str | None] | None = getattr(x, "where", None)
            source = where(name) if where is not None else o.source
            return Observed(x.get(name) if isinstance(x, dict) else getattr(x, name, None), source)

        return fn

    def v_MethodCall(self, n: ast.MethodCall) -> _Value:
        obj = self.value(n.obj)
        name = n.name
        argf = [self.value(a) for a in n.args]

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            o = obj(env, fr, tr)
            x = o.value
            if x is None:
                return Observed(None, o.source)
            args = [f(env, fr, tr).value for f in argf]
            where: Callable[..., str | None] | None = getattr(x, "where", None)
            source = where(name, *args) if where is not None else o.source
            return Observed(getattr(x, name)(*args), source)

        return fn

    def v_Index(self, n: ast.Index) -> _Value:
        obj = self.value(n.obj)
        idx = self.value(n.index)

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            o = obj(env, fr, tr)
            i = idx(env, fr, tr).value
            if o.value is None or i is None:
                return Observed(None, o.source)
            try:
                return Observed(o.value[i], o.source)
            except (IndexError, KeyError, TypeError):
                return Observed(None, o.source)

        return fn

    def v_Builtin(self, n: ast.Builtin) -> _Value:
        (arg,) = [self.value(a) for a in n.args]
        impl = BUILTINS[n.name]
        name = n.name

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            a = arg(env, fr, tr)
            if a.value is None:
                return a
            try:
                return Observed(impl(a.value), a.source)
            except (ValueError, TypeError) as e:
                raise EvaluationError(f"{name}({a.value!r}): {e}") from None

        return fn

    def v_BitAnd(self, n: ast.BitAnd) -> _Value:
        fns = [self.value(i) for i in n.items]
        t = n.type

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            obs = [f(env, fr, tr) for f in fns]
            source = _first_source(obs)
            missing = next((i for i, o in zip(n.items, obs, strict=True) if o.value is None), None)
            if missing is not None:
                raise absent_operand(missing, "&")
            acc = obs[0].value
            for o in obs[1:]:
                acc &= o.value
            return Observed(acc, source, Masked([o.value for o in obs], acc, t))

        return fn

    def v_Add(self, n: ast.Add) -> _Value:
        fns = [self.value(i) for i in n.items]

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            obs = [f(env, fr, tr) for f in fns]
            missing = next((i for i, o in zip(n.items, obs, strict=True) if o.value is None), None)
            if missing is not None:
                raise absent_operand(missing, "+")
            acc = obs[0].value
            for o in obs[1:]:
                acc = acc + o.value
            return Observed(acc, _first_source(obs))

        return fn

    def v_Quantifier(self, n: ast.Quantifier) -> _Value:  # count(): the only quantifier with a value
        items = self.collection(n)
        cond = self.scoped(n, None)
        slot = n.slot

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Observed:
            k = 0
            for it in items(env, fr, tr):
                fr[slot] = it
                if cond(env, fr, tr):
                    k += 1
            return Observed(k)

        return fn

    # conditions --------------------------------------------------------------------------
    def k_And(self, n: ast.And, want: bool | None) -> _Cond:
        fns = [self.cond(i, want) for i in n.items]

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
            return all(f(env, fr, tr) for f in fns)

        return fn

    def k_Or(self, n: ast.Or, want: bool | None) -> _Cond:
        fns = [self.cond(i, want) for i in n.items]
        guards = [_is_guard(i) for i in n.items]
        # When `not sshd.exists or X` fails, the guard held and X decided: the guard's
        # records stay, marked as context, after the deciding ones.
        mark = want is True and any(guards) and not all(guards)

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
            spans = []
            for f, guard in zip(fns, guards):
                start = len(tr)
                if f(env, fr, tr):
                    return True
                if guard:
                    spans.append((start, len(tr)))
            if mark:
                for a, b in spans:
                    tr[a:b] = [replace(r, context=True) for r in tr[a:b]]
            return False

        return fn

    def k_Not(self, n: ast.Not, want: bool | None) -> _Cond:
        f = self.cond(n.item, None if want is None else not want)
        return lambda env, fr, tr: not f(env, fr, tr)

    def k_Exists(self, n: ast.Exists, want: bool | None) -> _Cond:
        v = self.value(n.item)
        text = n.text
        item = self.item_source()

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
            o = v(env, fr, tr)
            x = o.value
            res = x is not None and getattr(x, "exists", True) is not False
            source = o.source if o.source is not None else item(fr)
            tr.append(TraceRecord(
                text, "exists", None, None, res, want, source, shown="present" if res else "absent", expected_text="present"
            ))
            return res

        return fn

    def collection(self, n: ast.Quantifier) -> Callable[[EvalEnv, list, list[TraceRecord]], Any]:
        coll = self.value(n.collection)
        text = n.text

        def items(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> Any:
            c = coll(env, fr, tr).value
            if c is None:
                raise EvaluationError(f"{text}: the collection has no value")
            return c

        return items

    def k_Quantifier(self, n: ast.Quantifier, want: bool | None) -> _Cond:
        items = self.collection(n)
        inner = want if n.kind == "all" else (want if n.kind == "any" else (None if want is None else not want))
        cond = self.scoped(n, inner)
        slot = n.slot
        kind = n.kind

        # all() and none() look at every item, so evidence names every offender, not the first.
        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
            ok = True
            for it in items(env, fr, tr):
                fr[slot] = it
                hit = cond(env, fr, tr)
                if kind == "any":
                    if hit:
                        return True
                elif hit != (kind == "all"):
                    ok = False
            return ok if kind != "any" else False

        return fn

    def k_Compare(self, n: ast.Compare, want: bool | None) -> _Cond:
        op = n.op
        lt, rt = n.left.type, n.right.type
        const = isinstance(n.right, (ast.Literal, ast.ListLit)) and is_const(n.right)
        test = operator_for(op, self.const_value(n.right) if const else None, const, rt, lt)
        left, right = self.value(n.left), self.value(n.right)
        text = n.text
        swap = _policy_side(n.left) and not _policy_side(n.right)
        shown_op = _SWAPPED.get(op, op) if swap else op
        var_note = _var_note(n.left if swap else n.right)
        item = self.item_source()

        def fn(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
            lo = left(env, fr, tr)
            ro = right(env, fr, tr)
            obs, exp, et, ot = (ro, lo, lt, rt) if swap else (lo, ro, rt, lt)
            source = obs.source if obs.source is not None else exp.source if exp.source is not None else item(fr)
            if (lo.value is None or ro.value is None) and op not in ("==", "!="):
                tr.append(TraceRecord(
                    text, shown_op, obs.value, exp.value, False, want, source,
                    observed_type=ot, expected_type=et, shown=obs.shown, note=var_note,
                ))
                side = n.left if lo.value is None else n.right
                raise EvaluationError(f"{side.text or text}: no value to compare")
            try:
                res = bool(test(lo.value, ro.value))
            except (TypeError, ValueError, AttributeError) as e:
                raise EvaluationError(f"{text}: cannot evaluate ({e})") from None
            tr.append(TraceRecord(
                text, shown_op, obs.value, exp.value, res, want, source,
                observed_type=ot, expected_type=et, shown=obs.shown, note=var_note,
            ))
            return res

        return fn

    @staticmethod
    def const_value(n: ast.Node) -> Any:
        if isinstance(n, ast.Literal):
            return n.value
        return tuple(i.value for i in n.items)  # type: ignore[attr-defined]


def _var_note(n: ast.Node) -> str:
    """` (password_min_length)` after a value that comes from a var, so evidence says which."""
    return f" ({n.name})" if isinstance(n, ast.PolicyVar) and n.name != "scan" else ""


def _pruning(fn: _Cond, want: bool) -> _Cond:
    """When a sub-condition came out as the rule wants, the comparisons inside it that went
    the other way did not matter (`u.uid != 0 or u.name == "root"` for root): drop them from
    the evidence, so a finding shows only what decided it."""

    def pruned(env: EvalEnv, fr: list, tr: list[TraceRecord]) -> bool:
        mark = len(tr)
        res = fn(env, fr, tr)
        if res == want and len(tr) > mark:
            tr[mark:] = [r for r in tr[mark:] if r.want is None or r.result == r.want]
        return res

    return pruned


def compile_traced(checked: Checked) -> Traced:
    """`fn(env, trace) -> bool`, appending a TraceRecord to `trace` for every comparison."""
    f = _Compiler().cond(checked.node, True)
    n = checked.nslots
    return lambda env, tr: f(env, [None] * n, tr)
