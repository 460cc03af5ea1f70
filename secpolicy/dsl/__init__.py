"""The policy expression language: parse (Lark), type-check, compile to closures.

    expr = compile_expression('file("/etc/shadow").mode & 0o077 == 0', catalogue)
    expr.fn(env)                # fast path
    expr.traced(env, records)   # appends a TraceRecord per comparison: the evidence
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from secpolicy.dsl import ast
from secpolicy.dsl.checker import Catalogue, Macro, Signature, check_expression
from secpolicy.dsl.compiler import EvalEnv, compile_check, compile_event
from secpolicy.dsl.parser import PLAIN_ORIGIN, Origin, parse_duration, parse_expression, parse_size
from secpolicy.dsl.traced import Observed, Sourced, Traced, TraceRecord, compile_traced, expectation

__all__ = [
    "PLAIN_ORIGIN",
    "Catalogue",
    "CompiledExpr",
    "EvalEnv",
    "Macro",
    "Observed",
    "Origin",
    "Signature",
    "Sourced",
    "TraceRecord",
    "Traced",
    "ast",
    "compile_expression",
    "expectation",
    "parse_duration",
    "parse_expression",
    "parse_size",
]


@dataclass(frozen=True)
class CompiledExpr:
    text: str
    node: ast.Node  # the typed, resolved AST
    kind: str  # "check" or "event"
    fn: Callable[[Any], Any]
    traced: Traced | None  # checks only: fn(env, trace) -> bool, recording evidence
    facts_used: frozenset[str]
    fields_used: frozenset[tuple[str, ...]]
    vars_used: frozenset[str] = frozenset()


def compile_expression(
    text: str,
    catalogue: Catalogue,
    origin: Origin | None = None,
    *,
    kind: str = "check",
    parsed: ast.Node | None = None,
) -> CompiledExpr:
    """Parse (unless `parsed` is given), check and compile `text`. Raises LocatedError."""
    origin = origin or PLAIN_ORIGIN(text)
    node = parsed if parsed is not None else parse_expression(text, origin)
    checked = check_expression(node, catalogue, origin, text)
    if kind == "event":
        return CompiledExpr(
            text, checked.node, kind, compile_event(checked), None, checked.facts_used, checked.fields_used, checked.vars_used
        )
    return CompiledExpr(
        text,
        checked.node,
        kind,
        compile_check(checked),
        compile_traced(checked),
        checked.facts_used,
        checked.fields_used,
        checked.vars_used,
    )
