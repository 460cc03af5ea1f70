"""Frozen AST nodes of the policy language. The parser builds them with positions; the checker
returns a resolved copy where names became Field/Fact/Var nodes and every node has a type."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from secpolicy.dsl.types import Type

__all__ = [
    "Add",
    "And",
    "Attr",
    "BitAnd",
    "Builtin",
    "Call",
    "Compare",
    "Exists",
    "Fact",
    "Field",
    "Index",
    "ListLit",
    "Literal",
    "MethodCall",
    "Name",
    "Node",
    "Not",
    "Or",
    "PolicyVar",
    "Quantifier",
    "Var",
    "retype",
]


@dataclass(frozen=True)
class Node:
    # Positions inside the expression text: 1-based line/column, 0-based character offsets.
    line: int = field(default=1, kw_only=True, compare=False, repr=False)
    column: int = field(default=1, kw_only=True, compare=False, repr=False)
    start: int = field(default=0, kw_only=True, compare=False, repr=False)
    end: int = field(default=0, kw_only=True, compare=False, repr=False)
    type: Type | None = field(default=None, kw_only=True, compare=False, repr=False)
    # The node's own source text, filled by the checker where evidence needs it.
    text: str = field(default="", kw_only=True, compare=False, repr=False)


@dataclass(frozen=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Attr(Node):
    obj: Node
    name: str


@dataclass(frozen=True)
class MethodCall(Node):
    obj: Node
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index(Node):
    obj: Node
    index: Node


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Exists(Node):
    item: Node


@dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Node


@dataclass(frozen=True)
class BitAnd(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Add(Node):
    """`a + b`: string concatenation, or the sum of numbers or durations."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Quantifier(Node):
    kind: str  # all | any | none | count
    var: str
    collection: Node
    cond: Node
    slot: int = -1  # assigned by the checker


# Resolved nodes (produced by the checker) -------------------------------------------------


@dataclass(frozen=True)
class Field(Node):
    """An event field, e.g. ("proc", "exe")."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class Fact(Node):
    """A call of a registered fact collector: `file("/etc/shadow")`, `users`."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Var(Node):
    """A quantifier variable, kept in slot `slot` of the evaluation frame."""

    name: str
    slot: int


@dataclass(frozen=True)
class PolicyVar(Node):
    """A policy var (`vars:`) or the scan context, read from the evaluation's values."""

    name: str


@dataclass(frozen=True)
class Builtin(Node):
    """A built-in function: len, lower, upper, int, ip, cidr."""

    name: str
    args: tuple[Node, ...]


def retype(node: Node, t: Type, **changes: Any) -> Node:
    return replace(node, type=t, **changes)
