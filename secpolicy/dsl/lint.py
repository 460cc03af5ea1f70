"""Warnings about expressions that are valid but easy to misread, for `secpolicy lint`:
`and` mixed with `or` without parentheses, and macros no rule uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from secpolicy.dsl import ast
from secpolicy.dsl.checker import Macro
from secpolicy.dsl.parser import Origin
from secpolicy.errors import format_location

__all__ = ["LintWarning", "mixed_and_or", "unused_macros"]


@dataclass(frozen=True)
class LintWarning:
    message: str
    path: str
    line: int
    column: int
    source_line: str | None = None

    def render(self) -> str:
        return format_location(self.path, self.line, self.column, f"warning: {self.message}", self.source_line)


def _located(origin: Origin, node: ast.Node, message: str) -> LintWarning:
    line, col, src = origin.locate(node.line, node.column)
    return LintWarning(message, origin.path, line, col, src)


def mixed_and_or(node: ast.Node, origin: Origin, text: str) -> list[LintWarning]:
    """`a or b and c` reads as `a or (b and c)`; many readers (and authors) expect
    `(a or b) and c`. Warn on every `and` directly inside an `or` without parentheses."""
    out: list[LintWarning] = []
    stack: list[Any] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple):
            stack.extend(n)
            continue
        if not isinstance(n, ast.Node):
            continue
        if isinstance(n, ast.Or):
            for item in n.items:
                if isinstance(item, ast.And) and not item.paren:
                    shown = " ".join(text[item.start : item.end].split()) if item.end > item.start else "..."
                    if len(shown) > 60:
                        shown = shown[:57] + "..."
                    out.append(_located(
                        origin, item,
                        f"'and' inside 'or' without parentheses: write ({shown}) to say it is meant",
                    ))
        stack.extend(v for v in vars(n).values() if isinstance(v, (ast.Node, tuple)))
    out.sort(key=lambda w: (w.line, w.column))
    return out


def unused_macros(macros: Mapping[str, Macro], used: Iterable[str]) -> list[LintWarning]:
    """Macros that no rule expression reaches, directly or through other macros."""
    seen = set(used)
    out = []
    for name, m in macros.items():
        if name not in seen:
            line, col, src = m.origin.locate(1, 1)
            out.append(LintWarning(f"macro {name!r} is never used", m.origin.path, line, col, src))
    return out
