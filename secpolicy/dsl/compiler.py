"""Compile a type-checked AST into nested Python closures, once, at load time.

Check expressions run against an evaluation environment (`env.fact(name, args)`,
`env.var(name)`); event expressions run against a plain event dict. The traced variant of a
check, which records evidence, lives in traced.py and shares the operators defined here."""

from __future__ import annotations

import fnmatch
import ipaddress
import os.path
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from secpolicy.dsl import ast
from secpolicy.dsl.checker import Checked
from secpolicy.dsl.types import CIDR, ListType, Type
from secpolicy.errors import EvaluationError

__all__ = ["BUILTINS", "EvalEnv", "Fn", "compile_check", "compile_event", "is_const", "operator_for"]

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
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class _Compiler:
    def __init__(self, event: bool) -> None:
        self.event = event

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

    # logic -------------------------------------------------------------------------------
    def c_And(self, n: ast.And, want: bool | None) -> Fn:
        fns = [self.c(i, want) for i in n.items]
        if len(fns) == 2:
            a, b = fns
            return lambda env, fr: bool(a(env, fr)) and bool(b(env, fr))

        def fn(env: Any, fr: list) -> bool:
            for f in fns:
                if not f(env, fr):
                    return False
            return True

        return fn

    def c_Or(self, n: ast.Or, want: bool | None) -> Fn:
        fns = [self.c(i, want) for i in n.items]
        if len(fns) == 2:
            a, b = fns
            return lambda env, fr: bool(a(env, fr)) or bool(b(env, fr))

        def fn(env: Any, fr: list) -> bool:
            for f in fns:
                if f(env, fr):
                    return True
            return False

        return fn

    def c_Not(self, n: ast.Not, want: bool | None) -> Fn:
        f = self.c(n.item, None if want is None else not want)
        return lambda env, fr: not f(env, fr)

    def c_BitAnd(self, n: ast.BitAnd, want: bool | None) -> Fn:
        fns = [self.c(i, None) for i in n.items]

        def fn(env: Any, fr: list) -> Any:
            acc = None
            for f in fns:
                v = f(env, fr)
                if v is None:
                    return None
                acc = v if acc is None else acc & v
            return acc

        return fn

    def c_Add(self, n: ast.Add, want: bool | None) -> Fn:
        fns = [self.c(i, None) for i in n.items]

        def fn(env: Any, fr: list) -> Any:
            acc = None
            for f in fns:
                v = f(env, fr)
                if v is None:
                    return None
                acc = v if acc is None else acc + v
            return acc

        return fn

    def c_Exists(self, n: ast.Exists, want: bool | None) -> Fn:
        f = self.c(n.item, None)

        def fn(env: Any, fr: list) -> bool:
            v = f(env, fr)
            return v is not None and v is not False and getattr(v, "exists", True) is not False

        return fn

    def c_Quantifier(self, n: ast.Quantifier, want: bool | None) -> Fn:
        coll = self.c(n.collection, None)
        inner_want = want if n.kind == "all" else (None if n.kind == "count" else (want if n.kind == "any" else (None if want is None else not want)))
        cond = self.c(n.cond, inner_want)
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
        right_const = isinstance(n.right, (ast.Literal, ast.ListLit)) and is_const(n.right)
        rv = _const_value(n.right) if right_const else None
        right = self.c(n.right, None)
        test = operator_for(op, rv, right_const, rt, lt)
        text = n.text

        if self.event:

            def ev_fn(ev: Any, fr: list) -> bool:
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


def is_const(n: ast.Node) -> bool:
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


def operator_for(op: str, rv: Any, const: bool, rt: Type | None, lt: Type | None) -> Callable[[Any, Any], Any]:  # noqa: C901 - to be split
    """The Python test for `op`, specialised when the right side is a constant."""
    if isinstance(lt, ListType) or isinstance(rt, ListType):
        # Lists compare by content whatever their Python sequence type (facts may return
        # lists, literals are tuples).
        if op == "==":
            return lambda a, b: _seq(a) == _seq(b)
        if op == "!=":
            return lambda a, b: _seq(a) != _seq(b)
    if op == "==":
        return lambda a, b: a == b
    if op == "!=":
        return lambda a, b: a != b
    if op == "<":
        return lambda a, b: a < b
    if op == "<=":
        return lambda a, b: a <= b
    if op == ">":
        return lambda a, b: a > b
    if op == ">=":
        return lambda a, b: a >= b
    if op in ("in", "not in"):
        neg = op == "not in"
        if rt == CIDR:

            def in_net(a: Any, b: Any) -> bool:
                addr = _as_ip(a) if isinstance(a, str) else a
                res = addr is not None and addr.version == b.version and addr in b
                return res != neg

            return in_net
        if const and isinstance(rt, ListType):
            try:
                members = frozenset(rv)
            except TypeError:
                members = None
            if members is not None:
                if rt.elem == CIDR:
                    nets = tuple(rv)

                    def in_nets(a: Any, b: Any) -> bool:
                        addr = _as_ip(a) if isinstance(a, str) else a
                        res = addr is not None and any(addr.version == x.version and addr in x for x in nets)
                        return res != neg

                    return in_nets
                return (lambda a, b: a not in members) if neg else (lambda a, b: a in members)
        return (lambda a, b: a not in b) if neg else (lambda a, b: a in b)
    if op == "contains":
        return lambda a, b: b in a
    if op == "icontains":
        if isinstance(lt, ListType):
            return lambda a, b: any(isinstance(x, str) and x.lower() == b.lower() for x in a)
        return lambda a, b: b.lower() in a.lower()
    if op == "startswith":
        if const and isinstance(rv, tuple):
            return lambda a, b: a.startswith(rv)
        return lambda a, b: a.startswith(tuple(b) if isinstance(b, (list, tuple)) else b)
    if op == "endswith":
        if const and isinstance(rv, tuple):
            return lambda a, b: a.endswith(rv)
        return lambda a, b: a.endswith(tuple(b) if isinstance(b, (list, tuple)) else b)
    if op == "glob":
        rx = re.compile(fnmatch.translate(rv))
        return lambda a, b: rx.match(a) is not None
    if op == "matches":
        rx = re.compile(rv)
        return lambda a, b: rx.search(a) is not None
    raise ValueError(f"unknown operator {op}")  # pragma: no cover - the grammar has no other


def compile_check(checked: Checked) -> Callable[[EvalEnv], Any]:
    """A check callable: `fn(env) -> bool` (no evidence; see traced.py for the traced one)."""
    f = _Compiler(event=False).c(checked.node, True)
    n = checked.nslots
    if n == 0:
        empty: list = []
        return lambda env: f(env, empty)
    return lambda env: f(env, [None] * n)


def compile_event(checked: Checked) -> Callable[[dict], bool]:
    """An event predicate: `fn(event_dict) -> bool`. Missing fields make comparisons false."""
    f = _Compiler(event=True).c(checked.node, True)
    n = checked.nslots
    if n == 0:
        empty: list = []
        return lambda ev: bool(f(ev, empty))
    return lambda ev: bool(f(ev, [None] * n))

