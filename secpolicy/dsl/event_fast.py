"""Event predicates specialised for the hot path of replay and the live monitor: the event
type folded into constants, and comparisons of a field with a constant read in one closure.

Every closure here gives exactly what the generic closure of compiler.py gives, value and
exception alike (tests/unit/test_dsl_event_fast.py compares both over generated events)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from secpolicy.dsl import ast
from secpolicy.dsl.types import BOOL, CIDR, ListType, Type

__all__ = ["ALWAYS", "NEVER", "field_compare", "fold_event_type"]

Fn = Callable[..., Any]
_TYPE = ("type",)


def ALWAYS(ev: Any, fr: Any = ()) -> bool:
    """The predicate a condition folds to when it holds for every event of a type."""
    return True


def NEVER(ev: Any, fr: Any = ()) -> bool:
    """The predicate a condition folds to when no event of a type can satisfy it."""
    return False


def _truth(value: bool) -> ast.Literal:
    return ast.Literal(value, type=BOOL)


def _is_truth(n: ast.Node, value: bool) -> bool:
    return isinstance(n, ast.Literal) and n.value is value


def fold_event_type(node: ast.Node, event_type: str, compare: Callable[[ast.Compare], Fn]) -> ast.Node:
    """`node` for events whose `type` is `event_type`: a comparison of the type field with a
    constant becomes a true or false literal, and the and/or/not around it simplify.

    Only conditions (the top, and the operands of and, or and not, where only truth counts)
    are folded. `compare` compiles a comparison; it is evaluated on `{"type": event_type}`,
    which is all a comparison of the type field with a constant reads. Operands before a
    deciding literal stay: they may raise on a malformed event, which must not change."""
    if isinstance(node, ast.Compare):
        if isinstance(node.left, ast.Field) and node.left.path == _TYPE and _constant(node.right):
            return _truth(bool(compare(node)({"type": event_type}, [])))
        return node
    if isinstance(node, ast.Not):
        item = fold_event_type(node.item, event_type, compare)
        if isinstance(item, ast.Literal):
            return _truth(not item.value)
        return node if item is node.item else replace(node, item=item)
    if isinstance(node, (ast.And, ast.Or)):
        decides = isinstance(node, ast.Or)  # the value that ends the evaluation
        items: list[ast.Node] = []
        for it in node.items:
            f = fold_event_type(it, event_type, compare)
            if _is_truth(f, not decides):
                continue  # `true and x` is x, `false or x` is x
            items.append(f)
            if _is_truth(f, decides):
                break
        if not items:
            return _truth(not decides)
        if len(items) == 1 and isinstance(items[0], ast.Literal):
            return items[0]
        if len(items) == len(node.items) and all(a is b for a, b in zip(items, node.items)):
            return node
        return replace(node, items=tuple(items))
    return node


def _constant(n: ast.Node) -> bool:
    if isinstance(n, ast.Literal):
        return True
    return isinstance(n, ast.ListLit) and all(isinstance(i, ast.Literal) for i in n.items)


_CAUGHT = (TypeError, ValueError, AttributeError)


def field_compare(op: str, path: tuple[str, ...], left: Fn, rv: Any, test: Fn, rt: Type | None,
                  lt: Type | None) -> Fn | None:
    """The closure of `FIELD op CONSTANT` in an event predicate, reading a two-part field
    (`proc.exe`) inline and testing ==, !=, in and startswith without another call;
    None when the generic closure is needed (`rv` None, lists compared by content, CIDRs).
    Same results as compiler.py's: a missing field is false, a test that cannot be
    evaluated (TypeError, ValueError, AttributeError) is false, reading a field of a
    value that is not an object raises."""
    if rv is None or isinstance(lt, ListType) or isinstance(rt, ListType) and op in ("==", "!="):
        return None
    if rt == CIDR or isinstance(rt, ListType) and rt.elem == CIDR:
        return None
    if len(path) != 2:
        return _any_field(left, rv, test)
    kind = op
    members: Any = None
    if op == "in":
        if not isinstance(rt, ListType):
            return None
        try:
            members = frozenset(rv)
        except TypeError:
            return None
    elif op == "startswith":
        if not isinstance(rv, (str, tuple)):
            return None
    elif op not in ("==", "!="):
        kind = "test"
    return _TWO[kind](path[0], path[1], rv, members, test)


# Two-part fields, read inline ------------------------------------------------------------------
def _two_eq(a: str, b: str, rv: Any, members: Any, test: Fn) -> Fn:
    def f(ev: Any, fr: Any = ()) -> Any:
        d = ev.get(a)
        lv = None if d is None else d.get(b)
        if lv is None:
            return False
        try:
            return lv == rv
        except _CAUGHT:
            return False

    return f


def _two_ne(a: str, b: str, rv: Any, members: Any, test: Fn) -> Fn:
    def f(ev: Any, fr: Any = ()) -> Any:
        d = ev.get(a)
        lv = None if d is None else d.get(b)
        if lv is None:
            return False
        try:
            return lv != rv
        except _CAUGHT:
            return False

    return f


def _two_in(a: str, b: str, rv: Any, members: Any, test: Fn) -> Fn:
    def f(ev: Any, fr: Any = ()) -> Any:
        d = ev.get(a)
        lv = None if d is None else d.get(b)
        if lv is None:
            return False
        try:
            return lv in members
        except _CAUGHT:  # an unhashable value (a list where a string was expected)
            return False

    return f


def _two_startswith(a: str, b: str, rv: Any, members: Any, test: Fn) -> Fn:
    def f(ev: Any, fr: Any = ()) -> Any:
        d = ev.get(a)
        lv = None if d is None else d.get(b)
        if lv is None:
            return False
        try:
            return lv.startswith(rv)
        except _CAUGHT:
            return False

    return f


def _two_test(a: str, b: str, rv: Any, members: Any, test: Fn) -> Fn:
    def f(ev: Any, fr: Any = ()) -> Any:
        d = ev.get(a)
        lv = None if d is None else d.get(b)
        if lv is None:
            return False
        try:
            return test(lv, rv)
        except _CAUGHT:
            return False

    return f


# Any other field (`type`, `ts`, `host`: a comparison of `type` is usually folded away), read
# by its own closure, tested with the compiler's own test.
def _any_field(left: Fn, rv: Any, test: Fn) -> Fn:
    def f(ev: Any, fr: Any = ()) -> Any:
        lv = left(ev, fr)
        if lv is None:
            return False
        try:
            return test(lv, rv)
        except _CAUGHT:
            return False

    return f


_TWO: dict[str, Callable[..., Fn]] = {
    "==": _two_eq, "!=": _two_ne, "in": _two_in, "startswith": _two_startswith, "test": _two_test,
}
