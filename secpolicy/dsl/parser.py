"""Parse policy expressions with Lark into frozen AST nodes, with errors located in the file
the expression came from (`path:line:col` and a caret), never a Lark traceback."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.dsl import ast
from secpolicy.dsl.limits import LIMITS
from secpolicy.dsl.types import BOOL, CIDR, DURATION, FLOAT, INT, IP, MODE, NULL, SIZE, STR
from secpolicy.errors import LocatedError

if TYPE_CHECKING:
    from lark import Lark, Tree

# Lark is imported on the first parse: a load served by the compile cache (replay's start-up)
# parses nothing, and importing Lark costs more than the rest of the package.

__all__ = ["PLAIN_ORIGIN", "Origin", "parse_duration", "parse_expression", "parse_size"]

_GRAMMAR = Path(__file__).with_name("grammar.lark")


@dataclass(frozen=True)
class Origin:
    """Where an expression's text came from, so errors point into the policy file.

    `locate(line, col)` maps a 1-based position inside the expression to a position in the
    file and returns (line, column, that file line's text)."""

    path: str
    locate: Callable[[int, int], tuple[int, int, str | None]]


def _plain_locate_factory(text: str) -> Callable[[int, int], tuple[int, int, str | None]]:
    lines = text.split("\n")

    def locate(line: int, col: int) -> tuple[int, int, str | None]:
        src = lines[line - 1] if 0 < line <= len(lines) else None
        return line, col, src

    return locate


def PLAIN_ORIGIN(text: str, path: str = "<expression>") -> Origin:
    return Origin(path, _plain_locate_factory(text))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    from lark import Lark

    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        # The basic lexer keeps keywords reserved everywhere: `a and and b` is an error,
        # not a comparison with a field called "and".
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=False,
    )


_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUM_UNIT = re.compile(r"^(\d+(?:\.\d+)?)([A-Za-z]+)$")


def parse_size(text: str) -> int:
    m = _NUM_UNIT.match(text)
    if not m or m.group(2) not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_duration(text: str) -> float:
    """`30s`, `5m`, `1h`, `7d` -> seconds."""
    m = _NUM_UNIT.match(text.strip())
    if not m or m.group(2) not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {text!r} (write e.g. 30s, 5m, 1h, 7d)")
    value = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return int(value) if value == int(value) else value


def _unescape(raw: str) -> str:
    body = raw[1:-1]
    out = []
    i = 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in escapes:
                out.append(escapes[nxt])
                i += 2
                continue
            # Unknown escapes are kept verbatim so regexes like "\d" read naturally.
            out.append(c + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _pos(meta_or_token: object) -> dict[str, int]:
    m = meta_or_token
    return {
        "line": getattr(m, "line", 1) or 1,
        "column": getattr(m, "column", 1) or 1,
        "start": getattr(m, "start_pos", 0) or 0,
        "end": getattr(m, "end_pos", 0) or 0,
    }


class _AstRules:
    """The rules of the transformer from Lark's tree to our nodes (see _to_ast)."""

    def or_(self, meta, items):
        return ast.Or(tuple(items), **_pos(meta))

    def and_(self, meta, items):
        return ast.And(tuple(items), **_pos(meta))

    def not_(self, meta, items):
        return ast.Not(items[0], **_pos(meta))

    def compare(self, meta, items):
        left, op, right = items
        return ast.Compare(str(op), left, right, **_pos(meta))

    def in_(self, meta, items):
        return ast.Compare("in", items[0], items[1], **_pos(meta))

    def not_in(self, meta, items):
        return ast.Compare("not in", items[0], items[1], **_pos(meta))

    def exists(self, meta, items):
        return ast.Exists(items[0], **_pos(meta))  # items[1] is the keyword token

    def bitand(self, meta, items):
        return ast.BitAnd(tuple(items), **_pos(meta))

    def add(self, meta, items):
        return ast.Add(tuple(items), **_pos(meta))

    def method_call(self, meta, items):
        obj, name, *rest = items
        args = rest[0] if rest else ()
        return ast.MethodCall(obj, str(name), tuple(args), **_pos(meta))

    def getattr(self, meta, items):
        return ast.Attr(items[0], str(items[1]), **_pos(meta))

    def index(self, meta, items):
        return ast.Index(items[0], items[1], **_pos(meta))

    def call(self, meta, items):
        name, *rest = items
        args = rest[0] if rest else ()
        return ast.Call(str(name), tuple(args), **_pos(meta))

    def quantifier(self, meta, items):
        kind, var, coll, cond = items
        return ast.Quantifier(str(kind), str(var), coll, cond, **_pos(meta))

    def paren(self, meta, items):
        return replace(items[0], paren=True)

    def name(self, meta, items):
        return ast.Name(str(items[0]), **_pos(meta))

    def list_lit(self, meta, items):
        return ast.ListLit(tuple(items[0]) if items else (), **_pos(meta))

    def args(self, meta, items):
        return list(items)

    def negative(self, meta, items):
        tok = items[0]
        value = -(float(tok) if tok.type == "FLOAT" else _int(str(tok)))
        return ast.Literal(value, type=FLOAT if tok.type == "FLOAT" else INT, **_pos(meta))

    def string(self, meta, items):
        return ast.Literal(_unescape(str(items[0])), type=STR, **_pos(meta))

    def int_(self, meta, items):
        text = str(items[0])
        t = MODE if text[:2].lower() == "0o" else INT
        return ast.Literal(_int(text), type=t, **_pos(meta))

    def float_(self, meta, items):
        return ast.Literal(float(items[0]), type=FLOAT, **_pos(meta))

    def size(self, meta, items):
        return ast.Literal(parse_size(str(items[0])), type=SIZE, **_pos(meta))

    def duration(self, meta, items):
        return ast.Literal(parse_duration(str(items[0])), type=DURATION, **_pos(meta))

    def ip(self, meta, items):
        return ast.Literal(ipaddress.ip_address(str(items[0])), type=IP, **_pos(meta))

    def cidr(self, meta, items):
        return ast.Literal(ipaddress.ip_network(str(items[0]), strict=False), type=CIDR, **_pos(meta))

    def true(self, meta, items):
        return ast.Literal(True, type=BOOL, **_pos(meta))

    def false(self, meta, items):
        return ast.Literal(False, type=BOOL, **_pos(meta))

    def null(self, meta, items):
        return ast.Literal(None, type=NULL, **_pos(meta))


@lru_cache(maxsize=1)
def _to_ast() -> Any:
    """The transformer, made on the first parse: a Lark Transformer with the rules above,
    each called with the node's position (`meta`)."""
    from lark import Transformer, v_args

    rules = {k: v for k, v in vars(_AstRules).items() if not k.startswith("__")}
    return v_args(meta=True)(type("_ToAst", (Transformer,), rules))()


def _int(text: str) -> int:
    if text[:2].lower() in ("0x", "0o", "0b"):
        return int(text, 0)
    if len(text) > 1 and text[0] == "0" and text.strip("0"):
        # As Python does: `0644` is neither octal nor a number anyone means in decimal
        # (decimal 644 is 0o1204, so `mode <= 0644` would let 0o777 pass).
        raise ValueError(f"{text} is not octal: write 0o{text.lstrip('0')} for a mode")
    return int(text)


_TOKEN_NAMES = {
    "RPAR": "')'",
    "LPAR": "'('",
    "RSQB": "']'",
    "LSQB": "'['",
    "COMMA": "','",
    "COLON": "':'",
    "DOT": "'.'",
    "NAME": "a name",
    "STRING": "a string",
    "INT": "a number",
    "COMP_OP": "a comparison",
    "WORD_OP": "an operator",
    "_AND": "'and'",
    "_OR": "'or'",
    "_IN": "'in'",
    "$END": "end of expression",
}


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e.lower()) for e in expected})
    if len(names) > 6:
        return "an operand or operator"
    return " or ".join(names)


def parse_expression(text: str, origin: Origin | None = None) -> ast.Node:
    """Parse `text`; raise LocatedError pointing into the origin file on any error."""
    origin = origin or PLAIN_ORIGIN(text)
    if len(text) > LIMITS.expression_chars:
        raise _located(
            origin, 1, 1, f"expression of {len(text):,} characters: the limit is {LIMITS.expression_chars:,}"
        )
    from lark.exceptions import (
        UnexpectedCharacters,
        UnexpectedEOF,
        UnexpectedInput,
        UnexpectedToken,
        VisitError,
    )

    try:
        tree = _parser().parse(text)
        _check_bounds(tree, origin)
        return _to_ast().transform(tree)  # type: ignore[no-any-return]
    except UnexpectedEOF as e:
        lines = text.rstrip().split("\n")
        line = len(lines)
        col = len(lines[-1]) + 1
        raise _located(origin, line, col, f"unexpected end of expression, expected {_describe_expected(set(e.expected))}")
    except UnexpectedToken as e:
        if e.token.type == "$END":
            lines = text.rstrip().split("\n")
            line, col = len(lines), len(lines[-1]) + 1
            msg = f"unexpected end of expression, expected {_describe_expected(set(e.expected))}"
        else:
            line, col = e.line, e.column
            msg = f"unexpected {_shorten(str(e.token.value))!r}, expected {_describe_expected(set(e.expected))}"
        raise _located(origin, line, col, msg)
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream or 0
        ch = text[pos] if 0 <= pos < len(text) else "?"
        raise _located(origin, e.line, e.column, f"unexpected character {ch!r}")
    except UnexpectedInput as e:  # pragma: no cover - other Lark input errors
        raise _located(origin, getattr(e, "line", 1), getattr(e, "column", 1), "syntax error")
    except VisitError as e:
        # A literal the lexer accepted but Python rejects (e.g. 999.1.1.1).
        node = getattr(e, "obj", None)
        meta = getattr(node, "meta", None)
        line = getattr(meta, "line", 1) if meta is not None and not getattr(meta, "empty", True) else 1
        col = getattr(meta, "column", 1) if meta is not None and not getattr(meta, "empty", True) else 1
        raise _located(origin, line, col, f"invalid literal: {_shorten(str(e.orig_exc))}")


def _shorten(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else text[:keep] + f"... ({len(text):,} characters)"


def _check_bounds(tree: Tree, origin: Origin) -> None:
    """Nesting depth and literal sizes, walked without recursion: the transformer, checker
    and compiler recurse over the tree, so its depth must be bounded before they run."""
    from lark import Token

    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Token):
            if node.type == "STRING" and len(node) - 2 > LIMITS.literal_chars:
                raise _located(
                    origin, node.line or 1, node.column or 1,
                    f"string literal of {len(node) - 2:,} characters: the limit is {LIMITS.literal_chars:,}",
                )
            continue
        if depth > LIMITS.expression_depth:
            meta = node.meta
            line = 1 if meta.empty else meta.line
            col = 1 if meta.empty else meta.column
            raise _located(
                origin, line, col, f"expression nested more than {LIMITS.expression_depth} levels deep"
            )
        stack.extend((child, depth + 1) for child in node.children)


def _located(origin: Origin, line: int, col: int, message: str) -> LocatedError:
    fline, fcol, src = origin.locate(line, col)
    return LocatedError(message, origin.path, fline, fcol, src)

