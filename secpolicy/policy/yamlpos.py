"""Load YAML while remembering where every value stood, so schema, syntax and type errors
can name `file:line:col`; duplicate keys are rejected instead of silently overwritten."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from secpolicy.errors import LocatedError

__all__ = ["Positioned", "Span", "expression_origin", "load_yaml"]

try:  # libyaml is ~10x faster; the pure-Python loader gives the same nodes.
    _Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe loading without implicit timestamps: `expires: 2027-13-45` stays a string that the
    waiver loader rejects with its position, instead of crashing the YAML constructor."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

Path_ = tuple  # a JSON path: keys and indexes


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    column: int  # 1-based
    start: int  # character offsets into the file text
    end: int
    style: str | None  # YAML scalar style: None (plain), "'", '"', "|", ">"


@dataclass(frozen=True, eq=False)
class Positioned:
    data: Any
    spans: dict[tuple, Span]  # path -> span of the value
    key_spans: dict[tuple, Span]  # path -> span of the mapping key naming it
    text: str
    path: str

    def span(self, path: tuple) -> Span | None:
        while path:
            if path in self.spans:
                return self.spans[path]
            path = path[:-1]
        return self.spans.get(())

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    def line_text(self, line: int) -> str | None:
        lines = self.lines
        return lines[line - 1] if 0 < line <= len(lines) else None

    def error(self, path: tuple, message: str, *, key: bool = False) -> LocatedError:
        sp = (self.key_spans.get(path) if key else None) or self.span(path)
        if sp is None:
            return LocatedError(message, self.path)
        return LocatedError(message, self.path, sp.line, sp.column, self.line_text(sp.line))


def _span(node: yaml.Node) -> Span:
    sm, em = node.start_mark, node.end_mark
    style = getattr(node, "style", None)
    return Span(sm.line + 1, sm.column + 1, sm.index, em.index, style)


def load_yaml(text: str, path: str) -> Positioned:
    """Parse one YAML document. Raises LocatedError on syntax errors and duplicate keys."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return Positioned(None, {}, {}, text, path)
            spans: dict[tuple, Span] = {}
            key_spans: dict[tuple, Span] = {}
            _walk(node, (), spans, key_spans, text, path)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if e.context_mark is not None and mark is not None and mark.index >= len(text.rstrip()):
            # "did not find expected ']'" at end of file: the opening bracket is the useful place.
            mark = e.context_mark
        msg = " ".join(p for p in (e.context, e.problem) if p) or "invalid YAML"
        if mark is None:
            raise LocatedError(f"invalid YAML: {msg}", path) from None
        lines = text.split("\n")
        src = lines[mark.line] if mark.line < len(lines) else None
        raise LocatedError(f"invalid YAML: {msg}", path, mark.line + 1, mark.column + 1, src) from None
    except yaml.YAMLError as e:
        raise LocatedError(f"invalid YAML: {e}", path) from None
    except (ValueError, TypeError, RecursionError) as e:  # a value the constructor cannot build
        raise LocatedError(f"invalid YAML value: {e}", path) from None
    return Positioned(data, spans, key_spans, text, path)


def _walk(
    node: yaml.Node, at: tuple, spans: dict, key_spans: dict, text: str, path: str, open_: frozenset = frozenset()
) -> None:
    if id(node) in open_:
        # `&a [*a]`: a structure containing itself; nothing in a policy needs that.
        sm = node.start_mark
        lines = text.split("\n")
        raise LocatedError(
            "recursive YAML alias (a value that contains itself)",
            path,
            sm.line + 1,
            sm.column + 1,
            lines[sm.line] if sm.line < len(lines) else None,
        )
    open_ = open_ | {id(node)}
    spans[at] = _span(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else repr(knode)
            if key in seen:
                sm = knode.start_mark
                lines = text.split("\n")
                raise LocatedError(
                    f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    path,
                    sm.line + 1,
                    sm.column + 1,
                    lines[sm.line] if sm.line < len(lines) else None,
                )
            seen[key] = knode
            key_spans[at + (key,)] = _span(knode)
            _walk(vnode, at + (key,), spans, key_spans, text, path, open_)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, at + (i,), spans, key_spans, text, path, open_)


def expression_origin(doc: Positioned, at: tuple, expr: str):  # -> secpolicy.dsl.Origin
    """An Origin mapping positions in the expression stored at `at` back to the YAML file.

    Block (`|`, `>`) and multi-line scalars are aligned segment by segment: each source line
    of the scalar, without its indentation, is one segment of the expression text."""
    from secpolicy.dsl.parser import Origin

    sp = doc.spans.get(at)
    lines = doc.lines
    segments: list[tuple[int, int, int]] = []  # (expr offset, file line, file column)
    if sp is not None:
        if sp.style in ("|", ">"):
            first = sp.line + 1  # content starts on the line after the indicator
            indent = None
            offset = 0
            for lineno in range(first, min(len(lines), first + 10_000) + 1):
                raw = lines[lineno - 1]
                if raw.strip() == "":
                    if offset >= len(expr):
                        break
                    continue
                ind = len(raw) - len(raw.lstrip(" "))
                if indent is None:
                    indent = ind
                if ind < indent:
                    break
                content = raw[indent:]
                pos = expr.find(content.strip(), offset)
                if pos < 0:
                    break
                segments.append((pos, lineno, indent + 1 + (len(content) - len(content.lstrip()))))
                offset = pos + len(content.strip())
        else:
            quote = 1 if sp.style in ("'", '"') else 0
            segments.append((0, sp.line, sp.column + quote))
            offset = 0
            lineno = sp.line
            # Continuation lines of a multi-line plain or quoted scalar.
            while True:
                lineno += 1
                if lineno > len(lines) or lineno - 1 > doc.text.count("\n", 0, sp.end):
                    break
                raw = lines[lineno - 1]
                content = raw.strip().rstrip("'\"")
                if not content:
                    continue
                pos = expr.find(content, offset)
                if pos <= 0:
                    break
                segments.append((pos, lineno, len(raw) - len(raw.lstrip()) + 1))
                offset = pos + len(content)

    expr_lines = expr.split("\n")

    def locate(line: int, col: int) -> tuple[int, int, str | None]:
        if not segments:
            return (sp.line if sp else 1), (sp.column if sp else 1), doc.line_text(sp.line if sp else 1)
        off = sum(len(x) + 1 for x in expr_lines[: line - 1]) + (col - 1)
        seg = segments[0]
        for s in segments:
            if s[0] <= off:
                seg = s
        fline, fcol = seg[1], seg[2] + (off - seg[0])
        return fline, fcol, doc.line_text(fline)

    return Origin(doc.path, locate)

