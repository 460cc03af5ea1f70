"""Render a typed AST as an indented tree, for `secpolicy explain`."""

from __future__ import annotations

from secpolicy.dsl import ast
from secpolicy.dsl.types import format_value

__all__ = ["render_tree"]


def _label(n: ast.Node) -> str:
    t = f" : {n.type}" if n.type is not None else ""
    if isinstance(n, ast.Literal):
        return f"literal {format_value(n.value, n.type)}{t}"
    if isinstance(n, ast.ListLit):
        return f"list ({len(n.items)} items){t}"
    if isinstance(n, ast.Field):
        return f"event field {'.'.join(n.path)}{t}"
    if isinstance(n, ast.Fact):
        args = ", ".join(format_value(a.value, a.type) if isinstance(a, ast.Literal) else "..." for a in n.args)
        return f"fact {n.name}({args}){t}"
    if isinstance(n, ast.Var):
        return f"variable {n.name}{t}"
    if isinstance(n, ast.PolicyVar):
        return f"var {n.name}{t}"
    if isinstance(n, ast.Attr):
        return f".{n.name}{t}"
    if isinstance(n, ast.MethodCall):
        return f".{n.name}(...){t}"
    if isinstance(n, ast.Builtin):
        return f"{n.name}(...){t}"
    if isinstance(n, ast.Compare):
        return f"compare {n.op}{t}"
    if isinstance(n, ast.Quantifier):
        return f"{n.kind}({n.var} in ...){t}"
    return f"{type(n).__name__.lower()}{t}"


def _children(n: ast.Node) -> list[ast.Node]:
    if isinstance(n, (ast.And, ast.Or, ast.BitAnd, ast.Add, ast.ListLit)):
        return list(n.items)
    if isinstance(n, (ast.Not, ast.Exists)):
        return [n.item]
    if isinstance(n, ast.Compare):
        return [n.left, n.right]
    if isinstance(n, ast.Attr):
        return [n.obj]
    if isinstance(n, ast.MethodCall):
        return [n.obj, *n.args]
    if isinstance(n, (ast.Builtin, ast.Fact)):
        return [a for a in n.args if not isinstance(a, ast.Literal)]
    if isinstance(n, ast.Quantifier):
        return [n.collection, n.cond]
    if isinstance(n, ast.Index):
        return [n.obj, n.index]
    return []


def render_tree(node: ast.Node, indent: str = "") -> str:
    lines: list[str] = []

    def walk(n: ast.Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(f"{indent}{prefix}{branch}{_label(n)}")
        kids = _children(n)
        child_prefix = prefix if top else prefix + ("   " if last else "│  ")
        for i, k in enumerate(kids):
            walk(k, child_prefix, i == len(kids) - 1, False)

    walk(node, "", True, True)
    return "\n".join(lines)
