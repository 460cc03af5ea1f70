"""Resolve names and type-check a parsed expression against a catalogue of facts (for
`check:`) or event fields (for `when:`). Returns a typed AST; errors are located."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from secpolicy.dsl import ast
from secpolicy.dsl.limits import LIMITS
from secpolicy.dsl.parser import Origin
from secpolicy.dsl.regex import RegexError, compile_regex
from secpolicy.dsl.types import (
    ANY,
    BOOL,
    CIDR,
    DURATION,
    FLOAT,
    INT,
    IP,
    MODE,
    NULL,
    REGEX,
    STR,
    ListType,
    Method,
    ObjectType,
    Signature,
    Type,
    comparable,
    is_numeric,
)
from secpolicy.errors import LocatedError

__all__ = ["Catalogue", "Checked", "Macro", "MacroPlan", "check_expression", "macro_plan"]


@dataclass(frozen=True)
class Macro:
    name: str
    node: ast.Node
    origin: Origin
    text: str


@dataclass
class Catalogue:
    """Everything a name in an expression can refer to."""

    facts: Mapping[str, Signature] = field(default_factory=dict)
    event_root: ObjectType | None = None  # set for `when:` expressions
    lists: Mapping[str, ast.ListLit] = field(default_factory=dict)
    macros: Mapping[str, Macro] = field(default_factory=dict)
    vars: Mapping[str, Type] = field(default_factory=dict)  # policy vars, read at evaluation


_BUILTINS: dict[str, tuple[tuple[Type, ...], Type]] = {
    "len": ((ANY,), INT),
    "lower": ((STR,), STR),
    "upper": ((STR,), STR),
    "int": ((STR,), INT),
    "ip": ((STR,), IP),
    "cidr": ((STR,), CIDR),
    "basename": ((STR,), STR),
    "dirname": ((STR,), STR),
}

_ORDERED = {"<", "<=", ">", ">="}


def _chain(names: list[str]) -> str:
    if len(names) > 12:
        names = names[:5] + [f"... ({len(names) - 10} more)"] + names[-5:]
    return " -> ".join(names)


class _Checker:
    def __init__(self, catalogue: Catalogue, origin: Origin, text: str) -> None:
        self.cat = catalogue
        self.origin = origin
        self.text = text
        self.scopes: list[dict[str, tuple[int, Type]]] = []
        self.nslots = 0
        self.macro_stack: list[str] = []
        self.macros_used: set[str] = set()
        self.depth = 0
        self.nodes = 0
        self.facts_used: set[str] = set()
        self.fields_used: set[tuple[str, ...]] = set()
        self.vars_used: set[str] = set()

    # errors ------------------------------------------------------------------------------
    def error(self, node: ast.Node, message: str) -> LocatedError:
        line, col, src = self.origin.locate(node.line, node.column)
        return LocatedError(message, self.origin.path, line, col, src)

    def error_at_name(self, node: ast.Node, name: str, message: str) -> LocatedError:
        """Point the caret at `name` where it ends the node (`.mod` in `file(x).mod`)."""
        off = node.end - len(name)
        if node.end <= node.start or self.text[off:node.end] != name:
            return self.error(node, message)
        before = self.text[:off]
        line = before.count("\n") + 1
        col = off - (before.rfind("\n") + 1) + 1
        fline, fcol, src = self.origin.locate(line, col)
        return LocatedError(message, self.origin.path, fline, fcol, src)

    def snippet(self, node: ast.Node) -> str:
        if node.end > node.start:
            return self.text[node.start : node.end]
        return type(node).__name__

    # dispatch ----------------------------------------------------------------------------
    def check(self, node: ast.Node) -> ast.Node:
        # Macros are inlined, so the parser's bound on one expression's depth is not enough.
        if self.depth >= LIMITS.expression_depth:
            raise self.error(
                node, f"expression nested more than {LIMITS.expression_depth} levels deep once macros are expanded"
            )
        self.nodes += 1
        if self.nodes > LIMITS.macro_nodes:
            raise self.error(
                node, f"expression grows past {LIMITS.macro_nodes:,} syntax nodes once macros are expanded (the limit)"
            )
        method = getattr(self, "c_" + type(node).__name__)
        self.depth += 1
        try:
            out: ast.Node = method(node)
        finally:
            self.depth -= 1
        return out

    def expect_bool(self, node: ast.Node) -> ast.Node:
        out = self.check(node)
        if out.type not in (BOOL, ANY):
            raise self.error(node, f"expected a condition (bool), got {out.type}: {self.snippet(node)}")
        return out

    def c_Literal(self, n: ast.Literal) -> ast.Node:
        if isinstance(n.value, bool) or n.type == NULL:
            return n
        if n.type == IP:
            return replace(n, value=str(n.value))
        return n

    def c_ListLit(self, n: ast.ListLit) -> ast.Node:
        items = tuple(self.check(i) for i in n.items)
        elem: Type = ANY
        for it in items:
            if elem == ANY:
                elem = it.type or ANY
            elif not comparable(elem, it.type or ANY):
                raise self.error(it, f"list mixes {elem} and {it.type}")
        return replace(n, items=items, type=ListType(elem))

    def c_Name(self, n: ast.Name) -> ast.Node:
        for scope in reversed(self.scopes):
            if n.name in scope:
                slot, t = scope[n.name]
                return ast.Var(n.name, slot, line=n.line, column=n.column, start=n.start, end=n.end, type=t)
        if n.name in self.cat.macros:
            return self.expand_macro(n)
        if n.name in self.cat.lists:
            lst = self.cat.lists[n.name]
            return replace(lst, line=n.line, column=n.column, start=n.start, end=n.end)
        if n.name in self.cat.vars:
            if self.cat.event_root is not None:
                raise self.error(n, f"{n.name!r} is a var: vars are read by checks and applicability conditions, not by event rules")
            self.vars_used.add(n.name)
            return ast.PolicyVar(n.name, line=n.line, column=n.column, start=n.start, end=n.end, type=self.cat.vars[n.name], text=n.name)
        root = self.cat.event_root
        if root is not None:
            if n.name in root.fields:
                self.fields_used.add((n.name,))
                return ast.Field((n.name,), line=n.line, column=n.column, start=n.start, end=n.end, type=root.fields[n.name])
            raise self.error(
                n,
                f"unknown name {n.name!r}: not an event field, list, macro or variable "
                f"(event fields: {', '.join(sorted(root.fields))})",
            )
        sig = self.cat.facts.get(n.name)
        if sig is not None:
            if sig.params:
                raise self.error(n, f"fact {n.name!r} takes {len(sig.params)} argument(s): write {n.name}(...)")
            self.facts_used.add(n.name)
            return ast.Fact(n.name, (), line=n.line, column=n.column, start=n.start, end=n.end, type=sig.returns)
        raise self.error(n, f"unknown name {n.name!r}: not a fact, list, macro, var or variable")

    def expand_macro(self, n: ast.Name) -> ast.Node:
        if n.name in self.macro_stack:
            raise self.error(n, f"macro cycle: {_chain(self.macro_stack + [n.name])}")
        plan = macro_plan(self.cat.macros)
        if n.name in plan.cycles:
            raise self.error(n, f"macro cycle: {_chain(plan.cycles[n.name])}")
        if len(self.macro_stack) >= LIMITS.macro_depth:
            chain = _chain(self.macro_stack + [n.name])
            raise self.error(n, f"macros nested more than {LIMITS.macro_depth} deep: {chain}")
        if plan.sizes[n.name] > LIMITS.macro_nodes:
            raise self.error(
                n, f"macro {n.name!r} expands to more than {LIMITS.macro_nodes:,} syntax nodes (the limit)"
            )
        self.macros_used.add(n.name)
        macro = self.cat.macros[n.name]
        self.macro_stack.append(n.name)
        saved = (self.origin, self.text)
        self.origin, self.text = macro.origin, macro.text
        try:
            return self.check(macro.node)
        finally:
            self.origin, self.text = saved
            self.macro_stack.pop()

    def c_Attr(self, n: ast.Attr) -> ast.Node:
        obj = self.check(n.obj)
        t = obj.type
        if t == ANY:
            return ast.Attr(obj, n.name, line=n.line, column=n.column, start=n.start, end=n.end, type=ANY)
        if not isinstance(t, ObjectType):
            raise self.error(n, f"{t} has no field {n.name!r}")
        if n.name not in t.fields:
            if n.name in t.methods:
                raise self.error(n, f"{n.name!r} of {t} is a method: write .{n.name}(...)")
            known = ", ".join(sorted(t.fields)) or "none"
            raise self.error_at_name(n, n.name, f"unknown field {n.name!r} of {t} (fields: {known})")
        ft = t.fields[n.name]
        if isinstance(obj, ast.Field):
            path = obj.path + (n.name,)
            self.fields_used.add(path)
            return ast.Field(path, line=n.line, column=n.column, start=n.start, end=n.end, type=ft)
        return ast.Attr(
            obj, n.name, line=n.line, column=n.column, start=n.start, end=n.end, type=ft, text=self.snippet(n)
        )

    def c_MethodCall(self, n: ast.MethodCall) -> ast.Node:
        obj = self.check(n.obj)
        t = obj.type
        args = tuple(self.check(a) for a in n.args)
        if t == ANY:
            return ast.MethodCall(obj, n.name, args, line=n.line, column=n.column, start=n.start, end=n.end, type=ANY)
        if not isinstance(t, ObjectType) or n.name not in t.methods:
            known = ", ".join(sorted(t.methods)) if isinstance(t, ObjectType) else ""
            raise self.error(n, f"{t} has no method {n.name!r}" + (f" (methods: {known})" if known else ""))
        m: Method = t.methods[n.name]
        self.check_args(n, f"{t}.{n.name}", m.params, args)
        return ast.MethodCall(
            obj, n.name, args, line=n.line, column=n.column, start=n.start, end=n.end, type=m.returns,
            text=self.snippet(n),
        )

    def check_args(self, n: ast.Node, what: str, params: tuple[Type, ...], args: tuple[ast.Node, ...]) -> None:
        if len(params) != len(args):
            raise self.error(n, f"{what} takes {len(params)} argument(s), got {len(args)}")
        for p, a in zip(params, args):
            if not comparable(p, a.type or ANY):
                raise self.error(a, f"{what}: expected {p}, got {a.type}")
            if p == REGEX and isinstance(a, ast.Literal):
                self.check_regex(a)

    def check_regex(self, lit: ast.Literal) -> None:
        """A regex literal compiles at load, so a bad pattern never waits for a scan."""
        try:
            compile_regex(lit.value)
        except RegexError as e:
            raise self.error(lit, e.message) from None

    def c_Call(self, n: ast.Call) -> ast.Node:
        args = tuple(self.check(a) for a in n.args)
        pos: dict[str, Any] = {"line": n.line, "column": n.column, "start": n.start, "end": n.end}
        if n.name in _BUILTINS:
            params, ret = _BUILTINS[n.name]
            self.check_args(n, n.name, params, args)
            if n.name == "len" and not (isinstance(args[0].type, ListType) or args[0].type in (STR, ANY)):
                raise self.error(args[0], f"len() takes a list or a string, got {args[0].type}")
            return ast.Builtin(n.name, args, type=ret, **pos)
        if self.cat.event_root is not None:
            raise self.error(n, f"unknown function {n.name!r} (event rules read event fields, not facts)")
        sig = self.cat.facts.get(n.name)
        if sig is None:
            raise self.error(n, f"unknown fact {n.name!r}")
        self.check_args(n, n.name, sig.params, args)
        self.facts_used.add(n.name)
        return ast.Fact(n.name, args, type=sig.returns, **pos)

    def c_Index(self, n: ast.Index) -> ast.Node:
        obj = self.check(n.obj)
        idx = self.check(n.index)
        pos: dict[str, Any] = {"line": n.line, "column": n.column, "start": n.start, "end": n.end}
        if isinstance(obj.type, ListType):
            if idx.type not in (INT, ANY):
                raise self.error(n.index, f"list index must be an int, got {idx.type}")
            return ast.Index(obj, idx, type=obj.type.elem, **pos)
        if obj.type in (STR, ANY):
            return ast.Index(obj, idx, type=obj.type, **pos)
        raise self.error(n, f"cannot index {obj.type}")

    def c_Compare(self, n: ast.Compare) -> ast.Node:
        left = self.check(n.left)
        right = self.check(n.right)
        lt, rt = left.type or ANY, right.type or ANY
        op = n.op
        bad = f"cannot apply {op!r} to {lt} and {rt}: {self.snippet(n)}"
        if op in ("==", "!="):
            if not comparable(lt, rt):
                raise self.error(n, f"cannot compare {lt} with {rt}: {self.snippet(n)}")
        elif op in _ORDERED:
            if not comparable(lt, rt) or lt == BOOL or isinstance(lt, (ListType, ObjectType)):
                raise self.error(n, bad)
            if lt in (IP, CIDR) or rt in (IP, CIDR):
                # Addresses are text at run time, and as text "10.0.0.9" > "10.0.0.10".
                raise self.error(n, f"addresses are not ordered: test a range with 'in' and a CIDR (x in 10.0.0.0/24): {self.snippet(n)}")
        elif op in ("in", "not in"):
            if isinstance(rt, ListType):
                if rt.elem == CIDR:  # membership in any of the networks, as `x in 10.0.0.0/8`
                    if lt not in (IP, ANY, STR):
                        raise self.error(n, f"cannot look for {lt} in {rt}: {self.snippet(n)}")
                elif not comparable(lt, rt.elem):
                    raise self.error(n, f"cannot look for {lt} in {rt}: {self.snippet(n)}")
            elif rt == CIDR:
                if lt not in (IP, ANY, STR):
                    raise self.error(n, bad)
            elif rt in (STR, ANY):
                if lt not in (STR, ANY):
                    raise self.error(n, bad)
            else:
                raise self.error(n.right, f"'in' needs a list, a string or a CIDR on the right, got {rt}")
        elif op in ("contains", "icontains"):
            if isinstance(lt, ListType):
                if not comparable(lt.elem, rt):
                    raise self.error(n, bad)
            elif lt not in (STR, ANY) or rt not in (STR, ANY):
                raise self.error(n, bad)
        elif op in ("startswith", "endswith"):
            ok_right = rt in (STR, ANY) or (isinstance(rt, ListType) and rt.elem in (STR, ANY))
            if lt not in (STR, ANY) or not ok_right:
                raise self.error(n, bad)
        elif op in ("glob", "matches"):
            if lt not in (STR, ANY) or rt not in (STR, ANY):
                raise self.error(n, bad)
            if not isinstance(right, ast.Literal):
                raise self.error(n.right, f"the pattern of {op!r} must be a string literal")
            if op == "matches":
                self.check_regex(right)
        return ast.Compare(
            op, left, right, line=n.line, column=n.column, start=n.start, end=n.end, type=BOOL,
            text=self.snippet(n),
        )

    def c_Exists(self, n: ast.Exists) -> ast.Node:
        return replace(n, item=self.check(n.item), type=BOOL, text=self.snippet(n))

    def c_And(self, n: ast.And) -> ast.Node:
        return replace(n, items=tuple(self.expect_bool(i) for i in n.items), type=BOOL)

    def c_Or(self, n: ast.Or) -> ast.Node:
        return replace(n, items=tuple(self.expect_bool(i) for i in n.items), type=BOOL)

    def c_Not(self, n: ast.Not) -> ast.Node:
        return replace(n, item=self.expect_bool(n.item), type=BOOL)

    def c_BitAnd(self, n: ast.BitAnd) -> ast.Node:
        items = tuple(self.check(i) for i in n.items)
        for it in items:
            if not is_numeric(it.type or ANY) or it.type == FLOAT:
                raise self.error(it, f"'&' needs integers or modes, got {it.type}: {self.snippet(it)}")
        t = MODE if any(i.type == MODE for i in items) else INT
        return replace(n, items=items, type=t)

    def c_Add(self, n: ast.Add) -> ast.Node:
        items = tuple(self.check(i) for i in n.items)
        types = {i.type or ANY for i in items} - {ANY}
        if types <= {STR}:
            t: Type = STR
        elif types <= {DURATION}:
            t = DURATION
        elif all(is_numeric(x) for x in types):
            t = FLOAT if FLOAT in types else INT
        else:
            raise self.error(n, f"'+' joins strings or adds numbers, not {' and '.join(sorted(map(str, types)))}: {self.snippet(n)}")
        return replace(n, items=items, type=t)

    def c_Quantifier(self, n: ast.Quantifier) -> ast.Node:
        coll = self.check(n.collection)
        ct = coll.type or ANY
        if isinstance(ct, ListType):
            elem = ct.elem
        elif ct == ANY:
            elem = ANY
        else:
            raise self.error(n.collection, f"{n.kind}() needs a collection, got {ct}")
        slot = self.nslots
        self.nslots += 1
        self.scopes.append({n.var: (slot, elem)})
        try:
            cond = self.expect_bool(n.cond)
        finally:
            self.scopes.pop()
        t = INT if n.kind == "count" else BOOL
        return replace(n, collection=coll, cond=cond, slot=slot, type=t, text=self.snippet(n))

    # Already-resolved nodes can appear when a named list is reused.
    def c_Field(self, n: ast.Field) -> ast.Node:
        return n

    def c_Var(self, n: ast.Var) -> ast.Node:
        return n

    def c_Fact(self, n: ast.Fact) -> ast.Node:
        return n

    def c_Builtin(self, n: ast.Builtin) -> ast.Node:
        return n

    def c_PolicyVar(self, n: ast.PolicyVar) -> ast.Node:
        return n


@dataclass(frozen=True)
class Checked:
    node: ast.Node
    nslots: int
    facts_used: frozenset[str]
    fields_used: frozenset[tuple[str, ...]]
    vars_used: frozenset[str] = frozenset()
    macros_used: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MacroPlan:
    """What expanding each macro would cost, computed without expanding anything."""

    sizes: dict[str, int]  # syntax nodes once expanded (capped just above the limit)
    cycles: dict[str, list[str]]  # macro -> the cycle it is on or leads into


_PLAN: tuple[Mapping[str, Macro], MacroPlan] | None = None


def macro_plan(macros: Mapping[str, Macro]) -> MacroPlan:
    """Sizes and cycles of all macros, iteratively (a 300-macro cycle must not recurse).
    One load shares one macros mapping, so the last plan is kept for the next expression."""
    global _PLAN
    if _PLAN is not None and _PLAN[0] is macros:
        return _PLAN[1]
    own: dict[str, int] = {}
    refs: dict[str, list[str]] = {}
    for name, m in macros.items():
        count, names = 0, []
        stack: list[Any] = [m.node]
        while stack:
            x = stack.pop()
            if isinstance(x, ast.Node):
                count += 1
                if isinstance(x, ast.Name) and x.name in macros:
                    names.append(x.name)
                stack.extend(v for v in vars(x).values() if isinstance(v, (ast.Node, tuple)))
            elif isinstance(x, tuple):
                stack.extend(x)
        own[name], refs[name] = count, names
    cap = LIMITS.macro_nodes + 1
    sizes: dict[str, int] = {}
    cycles: dict[str, list[str]] = {}
    for start in macros:
        if start in sizes:
            continue
        path: list[str] = [start]
        on_path = {start}
        todo: list[list[str]] = [list(refs[start])]
        while path:
            if todo[-1]:
                nxt = todo[-1].pop()
                if nxt in on_path:
                    cyc = path[path.index(nxt):] + [nxt]
                    for member in path:
                        cycles.setdefault(member, cyc)
                elif nxt not in sizes:
                    path.append(nxt)
                    on_path.add(nxt)
                    todo.append(list(refs[nxt]))
                continue
            done = path.pop()
            on_path.discard(done)
            todo.pop()
            for r in refs[done]:
                if r in cycles:
                    cycles.setdefault(done, cycles[r])
            total = own[done] + sum(sizes.get(r, cap) - 1 for r in refs[done])
            sizes[done] = min(total, cap) if done not in cycles else cap
    plan = MacroPlan(sizes, cycles)
    _PLAN = (macros, plan)
    return plan


def check_expression(
    node: ast.Node, catalogue: Catalogue, origin: Origin, text: str, *, want: Type = BOOL
) -> Checked:
    """Type-check `node`; the expression as a whole must have type `want`."""
    c = _Checker(catalogue, origin, text)
    out = c.check(node)
    if want != ANY and out.type not in (want, ANY):
        raise c.error(node, f"a rule condition must be a condition (bool), this is {out.type}: {c.snippet(node)}")
    return Checked(out, c.nslots, frozenset(c.facts_used), frozenset(c.fields_used), frozenset(c.vars_used),
                   frozenset(c.macros_used))

