"""The policy expression language: parse (Lark), type-check, compile to closures.

    expr = compile_expression('file("/etc/shadow").mode & 0o077 == 0', catalogue)
    expr.fn(env)                # fast path
    expr.traced(env, records)   # appends a TraceRecord per comparison: the evidence
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl import ast
from secpolicy.dsl.checker import Catalogue, Checked, Macro, check_expression
from secpolicy.dsl.compiler import ALWAYS, NEVER, EvalEnv, compile_check, compile_event
from secpolicy.dsl.parser import PLAIN_ORIGIN, Origin, parse_duration, parse_expression, parse_size
from secpolicy.dsl.regex import Regex, RegexError, compile_regex
from secpolicy.dsl.types import Signature

if TYPE_CHECKING:
    from secpolicy.dsl.traced import Observed, Sourced, Traced, TraceRecord, expectation

__all__ = [
    "ALWAYS",
    "NEVER",
    "PLAIN_ORIGIN",
    "Catalogue",
    "CompiledExpr",
    "EvalEnv",
    "Macro",
    "Observed",
    "Origin",
    "Regex",
    "RegexError",
    "Signature",
    "Sourced",
    "TraceRecord",
    "Traced",
    "ast",
    "compile_expression",
    "compile_regex",
    "event_predicate",
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
    macros_used: frozenset[str] = frozenset()  # directly or through other macros
    nslots: int = 0  # quantifier variables: the size of an evaluation's frame


# The traced compiler (evidence of checks) is imported when a check is compiled or one of its
# names is asked for: runs of event rules alone (replay, monitor) never need it.
_TRACED = frozenset({"Observed", "Sourced", "Traced", "TraceRecord", "compile_traced", "expectation"})


def __getattr__(name: str) -> Any:
    if name in _TRACED:
        from secpolicy.dsl import traced

        return getattr(traced, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The predicates compile_expression built from their node: only those may be recompiled
# from it (a CompiledExpr given another fn, a test's stand-in, keeps it).
_FROM_NODE: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def event_predicate(expr: CompiledExpr, event_type: str | None = None) -> Callable[[Mapping[str, Any]], bool]:
    """The predicate of an event expression, specialised for events of `event_type` when it
    reads the type (see compile_event: it may be ALWAYS or NEVER)."""
    if event_type is None or ("type",) not in expr.fields_used or expr.fn not in _FROM_NODE:
        return expr.fn
    return compile_event(Checked(expr.node, expr.nslots, expr.facts_used, expr.fields_used), event_type)


def _lazy_check(checked: Checked) -> Callable[[Any], Any]:
    """The plain closure of a check, compiled on first use: scans evaluate the traced one."""
    compiled: list[Callable[[Any], Any]] = []

    def fn(env: Any) -> Any:
        if not compiled:
            compiled.append(compile_check(checked))
        return compiled[0](env)

    return fn


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
        fn = compile_event(checked)
        _FROM_NODE.add(fn)
        return CompiledExpr(
            text, checked.node, kind, fn, None, checked.facts_used, checked.fields_used,
            checked.vars_used, checked.macros_used, checked.nslots,
        )
    from secpolicy.dsl.traced import compile_traced

    return CompiledExpr(
        text,
        checked.node,
        kind,
        _lazy_check(checked),
        compile_traced(checked),
        checked.facts_used,
        checked.fields_used,
        checked.vars_used,
        checked.macros_used,
        checked.nslots,
    )
