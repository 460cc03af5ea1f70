"""Compile a type-checked AST into nested Python closures, once, at load time.

Check expressions run against an evaluation environment (`env.fact(name, args)`,
`env.var(name)`); event expressions run against a plain event dict. The traced variant of a
check, which records evidence, lives in traced.py and shares the operators defined here."""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
import os.path
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Protocol

from secpolicy.dsl import ast
from secpolicy.dsl.checker import Checked
from secpolicy.dsl.event_fast import ALWAYS, NEVER, field_compare, fold_event_type
from secpolicy.dsl.regex import compile_regex
from secpolicy.dsl.types import CIDR, ListType, Type
from secpolicy.errors import EvaluationError

__all__ = [
    "ALWAYS", "BUILTINS", "NEVER", "EvalEnv", "Fn", "absent_operand", "compile_check", "compile_event", "is_const",
    "node_label", "operator_for",
]

Fn = Callable[[Any, list], Any]


class EvalEnv(Protocol):
    """What a compiled check evaluates against: facts by name and arguments, vars by name."""

    def fact(self, name: str, args: tuple) -> Any: ...

    def var(self, name: str) -> Any: ...


BUILTINS: dict[str, Callable[[Any], Any]] = {
    "len": len,
    "lower": str.lower,
    "upper": str.upper,
    "int": lambda s: int(s, 0),
    "ip": lambda s: str(ipaddress.ip_address(s)),
    "cidr": lambda s: ipaddress.ip_network(s, strict=False),
    "basename": os.path.basename,
    "dirname": os.path.dirname,
}


@lru_cache(maxsize=4096)
def _as_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of `value`; an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
    socket connects to) as the IPv4 address it carries, so IPv4 networks hold it."""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def node_label(n: ast.Node) -> str:
    """How an error names a sub-expression: its source text, else its name or node kind."""
    return n.text or str(getattr(n, "name", "")) or type(n).__name__


def absent_operand(n: ast.Node, symbol: str) -> EvaluationError:
    return EvaluationError(f"{node_label(n)}: no value for '{symbol}'")


class _Compiler:
    def __init__(self, event: bool, fast: bool = True) -> None:
        self.event = event
        self.fast = fast and event  # event_fast.py's closures for field comparisons

    def c(self, n: ast.Node, want: bool | None = True) -> Fn:
        fn: Fn = getattr(self, "c_" + type(n).__name__)(n, want)
        return fn

    # leaves -----------------------------------------------------------------------------
    def c_Literal(self, n: ast.Literal, want: bool | None) -> Fn:
        v = n.value
        return lambda env, fr: v

    def c_ListLit(self, n: ast.ListLit, want: bool | None) -> Fn:
        if all(isinstance(i, ast.Literal) for i in n.items):
            const = tuple(i.value for i in n.items)  # type: ignore[attr-defined]
            return lambda env, fr: const
        fns = [self.c(i, None) for i in n.items]
        return lambda env, fr: tuple(f(env, fr) for f in fns)

    def c_Var(self, n: ast.Var, want: bool | None) -> Fn:
        slot = n.slot
        return lambda env, fr: fr[slot]

    def c_PolicyVar(self, n: ast.PolicyVar, want: bool | None) -> Fn:
        name = n.name
        return lambda env, fr: env.var(name)

    def c_Field(self, n: ast.Field, want: bool | None) -> Fn:
        path = n.path
        if len(path) == 1:
            (a,) = path
            return lambda ev, fr: ev.get(a)
        if len(path) == 2:
            a, b = path

            def f2(ev: dict, fr: list) -> Any:
                d = ev.get(a)
                return None if d is None else d.get(b)

            return f2

        def fn(ev: dict, fr: list) -> Any:
            d: Any = ev
            for k in path:
                if d is None:
                    return None
                d = d.get(k)
            return d

        return fn

    def c_Fact(self, n: ast.Fact, want: bool | None) -> Fn:
        name = n.name
        if all(isinstance(a, ast.Literal) for a in n.args):
            const = tuple(a.value for a in n.args)  # type: ignore[attr-defined]
            return lambda env, fr: env.fact(name, const)
        fns = [self.c(a, None) for a in n.args]
        return lambda env, fr: env.fact(name, tuple(f(env, fr) for f in fns))

    def c_Attr(self, n: ast.Attr, want: bool | None) -> Fn:
        obj = self.c(n.obj, None)
        name = n.name

        def plain(env: Any, fr: list) -> Any:
            o = obj(env, fr)
            if o is None:
                return None
            return getattr(o, name, None) if not isinstance(o, dict) else o.get(name)

        return plain

    def c_MethodCall(self, n: ast.MethodCall, want: bool | None) -> Fn:
        obj = self.c(n.obj, None)
        name = n.name
        argf = [self.c(a, None) for a in n.args]

        def fn(env: Any, fr: list) -> Any:
            o = obj(env, fr)
            if o is None:
                return None
            return getattr(o, name)(*[f(env, fr) for f in argf])

        return fn

    def c_Index(self, n: ast.Index, want: bool | None) -> Fn:
        obj = self.c(n.obj, None)
        idx = self.c(n.index, None)

        def fn(env: Any, fr: list) -> Any:
            o = obj(env, fr)
            i = idx(env, fr)
            if o is None or i is None:
                return None
            try:
                return o[i]
            except (IndexError, KeyError, TypeError):
                return None

        return fn

    def c_Builtin(self, n: ast.Builtin, want: bool | None) -> Fn:
        (arg,) = [self.c(a, None) for a in n.args]
        impl = BUILTINS[n.name]
        name = n.name

        def fn(env: Any, fr: list) -> Any:
            v = arg(env, fr)
            if v is None:
                return None
            try:
                return impl(v)
            except (ValueError, TypeError) as e:
                raise EvaluationError(f"{name}({v!r}): {e}") from None

        return fn

    def cond(self, n: ast.Node, want: bool | None) -> Fn:
        """`n` where a condition stands (an operand of and/or/not, a quantifier's condition).
        In a check, a value there that is absent (a boolean field or method without a value)
        counts as false only when true is what the rule wants; under `not`, `none()` or in
        `count()` it is an evaluation error, never a pass."""
        f = self.c(n, want)
        if self.event or want is True or isinstance(n, _BOOLEAN) or (isinstance(n, ast.Quantifier) and n.kind != "count"):
            return f
        text = node_label(n)

        def present(env: Any, fr: Any = ()) -> Any:
            v = f(env, fr)
            if v is None:
                raise EvaluationError(f"{text}: no value (absent) to negate or count")
            return v

        return present

    # logic -------------------------------------------------------------------------------
    # `fr` defaults to no frame: an event predicate without quantifiers is called with the
    # event alone (compile_event), one call less per evaluation.
    def c_And(self, n: ast.And, want: bool | None) -> Fn:
        fns = [self.cond(i, want) for i in n.items]
        # `True if x else False`: the truth bool() gives, without calling it.
        if len(fns) == 2:
            a, b = fns

            def and2(env: Any, fr: Any = ()) -> bool:
                return True if a(env, fr) and b(env, fr) else False  # noqa: SIM210

            return and2
        if len(fns) == 3:
            a, b, c = fns

            def and3(env: Any, fr: Any = ()) -> bool:
                return True if a(env, fr) and b(env, fr) and c(env, fr) else False  # noqa: SIM210

            return and3

        def fn(env: Any, fr: Any = ()) -> bool:
            for f in fns:
                if not f(env, fr):
                    return False
            return True

        return fn

    def c_Or(self, n: ast.Or, want: bool | None) -> Fn:
        fns = [self.cond(i, want) for i in n.items]
        if len(fns) == 2:
            a, b = fns

            def or2(env: Any, fr: Any = ()) -> bool:
                return True if a(env, fr) or b(env, fr) else False  # noqa: SIM210

            return or2
        if len(fns) == 3:
            a, b, c = fns

            def or3(env: Any, fr: Any = ()) -> bool:
                return True if a(env, fr) or b(env, fr) or c(env, fr) else False  # noqa: SIM210

            return or3

        def fn(env: Any, fr: Any = ()) -> bool:
            for f in fns:
                if f(env, fr):
                    return True
            return False

        return fn

    def c_Not(self, n: ast.Not, want: bool | None) -> Fn:
        f = self.cond(n.item, None if want is None else not want)

        def negate(env: Any, fr: Any = ()) -> bool:
            return not f(env, fr)

        return negate

    def _fold(self, n: ast.BitAnd | ast.Add, combine: Callable[[Any, Any], Any], symbol: str) -> Fn:
        """`a & b & ...` or `a + b + ...`. In a check an absent operand is an error
        (docs/language.md), not an absent result that `!=` would then call different; in an
        event a missing field stays missing."""
        fns = [self.c(i, None) for i in n.items]
        items = None if self.event else n.items

        def fn(env: Any, fr: list) -> Any:
            acc = None
            for k, f in enumerate(fns):
                v = f(env, fr)
                if v is None:
                    if items is not None:
                        raise absent_operand(items[k], symbol)
                    return None
                acc = v if acc is None else combine(acc, v)
            return acc

        return fn

    def c_BitAnd(self, n: ast.BitAnd, want: bool | None) -> Fn:
        return self._fold(n, operator.and_, "&")

    def c_Add(self, n: ast.Add, want: bool | None) -> Fn:
        return self._fold(n, operator.add, "+")

    def c_Exists(self, n: ast.Exists, want: bool | None) -> Fn:
        item = n.item
        if self.fast and isinstance(item, ast.Field) and len(item.path) == 2:
            a, b = item.path

            def field_exists(ev: Any, fr: Any = ()) -> bool:
                d = ev.get(a)  # read as c_Field reads it
                v = None if d is None else d.get(b)
                return v is not None and getattr(v, "exists", True) is not False

            return field_exists
        f = self.c(item, None)

        def fn(env: Any, fr: Any = ()) -> bool:
            v = f(env, fr)
            return v is not None and getattr(v, "exists", True) is not False

        return fn

    def c_Quantifier(self, n: ast.Quantifier, want: bool | None) -> Fn:
        coll = self.c(n.collection, None)
        inner_want = want if n.kind == "all" else (None if n.kind == "count" else (want if n.kind == "any" else (None if want is None else not want)))
        cond = self.cond(n.cond, inner_want)
        slot = n.slot
        kind = n.kind
        event = self.event
        text = n.text

        def items(env: Any, fr: list) -> Any:
            c = coll(env, fr)
            if c is None:
                if event:
                    return ()
                raise EvaluationError(f"{text}: the collection has no value")
            return c

        if kind == "all":

            def q_all(env: Any, fr: list) -> bool:
                for it in items(env, fr):
                    fr[slot] = it
                    if not cond(env, fr):
                        return False
                return True

            return q_all
        if kind == "any":

            def q_any(env: Any, fr: list) -> bool:
                for it in items(env, fr):
                    fr[slot] = it
                    if cond(env, fr):
                        return True
                return False

            return q_any
        if kind == "none":

            def q_none(env: Any, fr: list) -> bool:
                for it in items(env, fr):
                    fr[slot] = it
                    if cond(env, fr):
                        return False
                return True

            return q_none

        def q_count(env: Any, fr: list) -> int:
            k = 0
            for it in items(env, fr):
                fr[slot] = it
                if cond(env, fr):
                    k += 1
            return k

        return q_count

    # comparisons -------------------------------------------------------------------------
    def c_Compare(self, n: ast.Compare, want: bool | None) -> Fn:
        op = n.op
        left = self.c(n.left, None)
        rt = n.right.type
        lt = n.left.type
        right_const = isinstance(n.right, (ast.Literal, ast.ListLit)) and _is_const(n.right)
        rv = _const_value(n.right) if right_const else None
        right = self.c(n.right, None)
        test = _operator(op, rv, right_const, rt, lt)
        text = n.text

        if self.event:
            fast = (
                field_compare(op, n.left.path, left, rv, test, rt, lt)
                if self.fast and right_const and isinstance(n.left, ast.Field)
                else None
            )
            if fast is not None:
                return fast

            def ev_fn(ev: Any, fr: Any = ()) -> bool:
                lv = left(ev, fr)
                if lv is None:
                    return False
                r = rv if right_const else right(ev, fr)
                if r is None and op not in ("==", "!="):
                    return False
                try:
                    return test(lv, r)
                except (TypeError, ValueError, AttributeError):
                    return False

            return ev_fn

        def fn(env: Any, fr: list) -> bool:
            lv = left(env, fr)
            r = rv if right_const else right(env, fr)
            if (lv is None or r is None) and op not in ("==", "!="):
                raise EvaluationError(f"{(n.left if lv is None else n.right).text or text}: no value to compare")
            try:
                return bool(test(lv, r))
            except (TypeError, ValueError, AttributeError) as e:
                raise EvaluationError(f"{text}: cannot evaluate ({e})") from None

        return fn


def _is_const(n: ast.Node) -> bool:
    if isinstance(n, ast.Literal):
        return True
    if isinstance(n, ast.ListLit):
        return all(isinstance(i, ast.Literal) for i in n.items)
    return False


def _const_value(n: ast.Node) -> Any:
    if isinstance(n, ast.Literal):
        return n.value
    assert isinstance(n, ast.ListLit)
    return tuple(i.value for i in n.items)  # type: ignore[attr-defined]


def _seq(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


Test = Callable[[Any, Any], Any]
# (right value when constant, whether it is constant, right type, left type) -> the test
Builder = Callable[[Any, bool, "Type | None", "Type | None"], Test]


def _listy(lt: Type | None, rt: Type | None) -> bool:
    # Lists compare by content whatever their Python sequence type (facts may return lists,
    # literals are tuples).
    return isinstance(lt, ListType) or isinstance(rt, ListType)


def _eq(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
    return (lambda a, b: _seq(a) == _seq(b)) if _listy(lt, rt) else operator.eq


def _ne(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
    return (lambda a, b: _seq(a) != _seq(b)) if _listy(lt, rt) else operator.ne


def _plain(op: Test) -> Builder:
    return lambda rv, const, rt, lt: op


def _in_any_net(nets: Any, a: Any) -> bool:
    addr = _as_ip(a) if isinstance(a, str) else a
    return addr is not None and any(addr.version == x.version and addr in x for x in nets)


def _membership(neg: bool) -> Builder:
    def build(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
        if rt == CIDR:
            return lambda a, b: _in_any_net((b,), a) != neg
        if const and isinstance(rt, ListType):
            try:
                members = frozenset(rv)
            except TypeError:
                members = None
            if members is not None:
                if rt.elem == CIDR:
                    nets = tuple(rv)
                    return lambda a, b: _in_any_net(nets, a) != neg
                return (lambda a, b: a not in members) if neg else (lambda a, b: a in members)
        return (lambda a, b: a not in b) if neg else (lambda a, b: a in b)

    return build


def _icontains(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
    if isinstance(lt, ListType):
        return lambda a, b: any(isinstance(x, str) and x.lower() == b.lower() for x in a)
    return lambda a, b: b.lower() in a.lower()


def _affix(method: str) -> Builder:
    def build(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
        if const and isinstance(rv, tuple):
            return lambda a, b: getattr(a, method)(rv)
        return lambda a, b: getattr(a, method)(tuple(b) if isinstance(b, (list, tuple)) else b)

    return build


def _glob(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
    # fnmatch's translation is safe from catastrophic backtracking (no nested repeats).
    rx = re.compile(fnmatch.translate(rv))
    return lambda a, b: rx.match(a) is not None


def _matches(rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
    rx = compile_regex(rv)  # RE2: linear in the input, whatever the pattern
    return lambda a, b: rx.search(a)


_OPERATORS: dict[str, Builder] = {
    "==": _eq,
    "!=": _ne,
    "<": _plain(operator.lt),
    "<=": _plain(operator.le),
    ">": _plain(operator.gt),
    ">=": _plain(operator.ge),
    "in": _membership(neg=False),
    "not in": _membership(neg=True),
    "contains": _plain(operator.contains),  # `a contains b` is `b in a`
    "icontains": _icontains,
    "startswith": _affix("startswith"),
    "endswith": _affix("endswith"),
    "glob": _glob,
    "matches": _matches,
}


def _operator(op: str, rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Test:
    """The Python test for `op`, specialised when the right side is a constant."""
    return _OPERATORS[op](rv, const, rt, lt)


def compile_check(checked: Checked) -> Callable[[EvalEnv], Any]:
    """A check callable: `fn(env) -> bool` (no evidence; see traced.py for the traced one)."""
    f = _Compiler(event=False).c(checked.node, True)
    n = checked.nslots
    if n == 0:
        empty: list = []
        return lambda env: f(env, empty)
    return lambda env: f(env, [None] * n)


# Nodes whose event closure returns a bool: no bool() around them at the top.
_BOOLEAN = (ast.And, ast.Or, ast.Not, ast.Compare, ast.Exists)


def compile_event(checked: Checked, event_type: str | None = None, *, fast: bool = True) -> Callable[[Mapping[str, Any]], bool]:
    """An event predicate: `fn(event_dict) -> bool`. Missing fields make comparisons false.
    With `event_type`, the predicate is for events of that type only: comparisons of `type`
    with constants are folded away, and a condition that folds to a constant is ALWAYS or
    NEVER (callers may skip calling those). `fast=False` builds the generic closures only:
    the reference the specialised ones are tested against."""
    comp = _Compiler(event=True, fast=fast)
    node = checked.node
    if event_type is not None:
        node = fold_event_type(node, event_type, lambda c: comp.c(c, None))
        if isinstance(node, ast.Literal) and isinstance(node.value, bool):
            return ALWAYS if node.value else NEVER
    f = comp.c(node, True)
    n = checked.nslots
    if n == 0:
        if isinstance(node, _BOOLEAN):
            return f  # type: ignore[return-value]  # called with the event alone (fr defaults)
        empty: list = []
        return lambda ev: bool(f(ev, empty))
    return lambda ev: bool(f(ev, [None] * n))


# The traced compiler (traced.py) shares these.
is_const = _is_const
operator_for = _operator
