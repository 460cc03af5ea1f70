"""Load YAML while remembering where every value stood, so schema, syntax and type errors
can name `file:line:col`; duplicate keys are rejected instead of silently overwritten."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml
import yaml.reader

from secpolicy.dsl.limits import LIMITS
from secpolicy.errors import LocatedError

__all__ = ["Positioned", "Span", "expression_origin", "load_yaml"]

try:  # libyaml is ~10x faster; the pure-Python loader gives the same nodes.
    _Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe loading without implicit timestamps: `expires: 2027-13-45` stays a string that the
    waiver loader rejects with its position, instead of crashing the YAML constructor."""


# YAML 1.1 reads `010` as 8 (octal), `1:30` as 90 (base 60) and `1_000` as 1000: a var
# `default: 010` or a tailored `max_auth_tries: 010` would silently be 8. Plain decimal (and
# 0x / 0b) integers only; anything else stays a string, which a number field then refuses
# with its position (`mode: 0644` in a test's files is still the octal string it reads as).
_INT = "tag:yaml.org,2002:int"
_STRICT_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|[-+]?0x[0-9a-fA-F]+|[-+]?0b[01]+)$")

_Loader.yaml_implicit_resolvers = {
    first: [(tag, _STRICT_INT if tag == _INT else rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
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


_PROPERTY = re.compile(r"(?:!<[^>\s]*>|[&!][^ \t\r\n,\[\]{}]*)[ \t]*(?:#[^\r\n]*)?(?:\r?\n[ \t]*(?:#[^\r\n]*)?)*")


def _span(node: yaml.Node, text: str, line_starts: list[int]) -> Span:
    """The node's span. Line and column come from the character offset, counting lines at
    "\n" as editors do (YAML also breaks lines at U+0085, U+2028 and U+2029, which would
    shift every line after one in a description). A node's start mark stands on its
    properties (`&anchor`, `!!tag`): the span starts at the value itself, so a caret and an
    expression's columns point at the character at fault, not at the anchor."""
    sm, em = node.start_mark, node.end_mark
    style = getattr(node, "style", None)
    start = sm.index
    while start < em.index and start < len(text) and text[start] in "&!":
        m = _PROPERTY.match(text, start, em.index)
        if m is None or m.end() == start:
            break
        start = m.end()
    if start >= em.index:
        start = sm.index
    line = bisect.bisect_right(line_starts, start)
    return Span(line, start - line_starts[line - 1] + 1, start, em.index, style)


def load_yaml(text: str, path: str) -> Positioned:
    """Parse one YAML document. Raises LocatedError on syntax errors, duplicate keys, and
    input past the limits of `secpolicy.dsl.limits` (size, nesting, alias expansion)."""
    if len(text) > LIMITS.yaml_bytes:
        raise LocatedError(f"file of {len(text):,} characters: the limit is {LIMITS.yaml_bytes:,}", path, 1, 1)
    # The YAML reader skips a byte order mark without counting it in its offsets, and an
    # editor does not show it: positions are into the text after it.
    text = text.removeprefix("\ufeff")
    try:
        if len(text) > LIMITS.yaml_nodes // 2:
            _count_values(text, path)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return Positioned(None, {}, {}, text, path)
            spans: dict[tuple, Span] = {}
            key_spans: dict[tuple, Span] = {}
            _walk(node, spans, key_spans, text, path)
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
        raise _at(text, path, mark.index, f"invalid YAML: {msg}") from None
    except yaml.reader.ReaderError as e:
        # A NUL or other control character: the reader knows only the offset.
        ch = chr(e.character) if isinstance(e.character, int) else e.character
        what = f"character {ch!r}" if isinstance(ch, str) else "byte"
        position = e.position
        if _Base is not yaml.SafeLoader:
            # libyaml reads the text as UTF-8 and reports a byte offset: back to characters.
            position = len(text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore"))
        raise _at(text, path, position, f"invalid YAML: {what} is not allowed ({e.reason})") from None
    except yaml.YAMLError as e:
        raise LocatedError(f"invalid YAML: {e}", path) from None
    except (ValueError, TypeError, RecursionError) as e:  # a value the constructor cannot build
        raise LocatedError(f"invalid YAML value: {e}", path) from None
    return Positioned(data, spans, key_spans, text, path)


_VALUE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


def _count_values(text: str, path: str) -> None:
    """Refuse a file of more than `yaml_nodes` values before any node is built (libyaml
    builds the whole tree first: a 16 MB list of `a,` is 8 million objects). Only files long
    enough to hold that many are counted (a value takes at least half a character)."""
    loader = _Loader(text)
    try:
        n = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, _VALUE_EVENTS):
                n += 1
                if n > LIMITS.yaml_nodes:
                    raise _at(text, path, event.start_mark.index,
                              f"more than {LIMITS.yaml_nodes:,} values in one YAML file (the limit)")
    finally:
        loader.dispose()


def _at(text: str, path: str, index: int, message: str) -> LocatedError:
    index = max(0, min(index, len(text)))
    line_start = text.rfind("\n", 0, index) + 1
    line_end = text.find("\n", index)
    line_no = text.count("\n", 0, index) + 1
    src = text[line_start : line_end if line_end >= 0 else len(text)]
    return LocatedError(message, path, line_no, index - line_start + 1, src)


def _node_error(node: yaml.Node, text: str, path: str, message: str) -> LocatedError:
    return _at(text, path, node.start_mark.index, message)


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"  # `<<: *base`, which the constructor folds in
_KEY_KINDS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
}


def _check_key(knode: yaml.Node, text: str, path: str) -> None:
    """Every key in these files is a name (a field, a var, a rule id, a framework, a path):
    `5:`, `true:` or `null:` would reach the code as an int, a bool or None, so it is an
    error here, once, instead of a crash wherever a name is compared or sorted."""
    if isinstance(knode, yaml.ScalarNode):
        if knode.tag in (_STR, _MERGE):
            return
        kind = _KEY_KINDS.get(knode.tag, f"a {knode.tag.rsplit(':', 1)[-1]}")
        quoted = knode.value.replace('"', '\\"')
        raise _node_error(knode, text, path, f'key {knode.value or "~"} is read as {kind}, not a name: quote it ("{quoted}") if a name is meant')
    kind = "a mapping" if isinstance(knode, yaml.MappingNode) else "a list"
    raise _node_error(knode, text, path, f"a key is {kind}, not a name")


_EXIT = object()  # marks leaving a collection during the walk


def _walk(root: yaml.Node, spans: dict, key_spans: dict, text: str, path: str) -> None:
    """Record the span of every value by its path, without recursion. Aliases are walked
    again (each path needs its span) but only up to a bounded number of nodes, so a
    "billion laughs" document is an error instead of an exponential walk."""
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    seen: set[int] = set()
    open_: set[int] = set()
    through_aliases = 0
    stack: list[Any] = [(root, ())]
    while stack:
        item = stack.pop()
        if item[0] is _EXIT:
            open_.discard(item[1])
            continue
        node, at = item
        if id(node) in open_:
            # `&a [*a]`: a structure containing itself; nothing in a policy needs that.
            raise _node_error(node, text, path, "recursive YAML alias (a value that contains itself)")
        if id(node) in seen:
            through_aliases += 1
            if through_aliases > LIMITS.yaml_alias_nodes:
                raise _node_error(
                    node, text, path,
                    f"aliases expand to more than {LIMITS.yaml_alias_nodes:,} values (the limit): "
                    "an alias bomb?",
                )
        seen.add(id(node))
        if len(at) > LIMITS.yaml_depth:
            raise _node_error(node, text, path, f"YAML nested more than {LIMITS.yaml_depth} levels deep")
        spans[at] = _span(node, text, line_starts)
        if isinstance(node, yaml.MappingNode):
            stack.append((_EXIT, id(node)))
            open_.add(id(node))
            first: dict[Any, yaml.Node] = {}
            children = []
            for knode, vnode in node.value:
                _check_key(knode, text, path)
                key = knode.value
                if key in first:
                    raise _node_error(
                        knode, text, path, f"duplicate key {key!r} (first at line {bisect.bisect_right(line_starts, first[key].start_mark.index)})"
                    )
                first[key] = knode
                key_spans[at + (key,)] = _span(knode, text, line_starts)
                children.append((vnode, at + (key,)))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.append((_EXIT, id(node)))
            open_.add(id(node))
            stack.extend(reversed([(child, at + (i,)) for i, child in enumerate(node.value)]))


_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
    "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _quoted_source(text: str, sp: Span, expr: str) -> list[int] | None:
    """For each character of a quoted scalar's value, the index in `text` it was read from
    (the closing quote stands for the end of the value), following YAML's escapes (`\\"`,
    `\\x41`, `''`) and line folding; None when the rebuilt value is not `expr` (a position
    the parser did not give), so the caller falls back to counting from the opening quote."""
    double = sp.style == '"'
    quote = '"' if double else "'"
    i, stop = sp.start + 1, sp.end - 1
    if not (0 <= sp.start < stop < len(text)) or text[sp.start] != quote or text[stop] != quote:
        return None
    chars: list[str] = []
    where: list[int] = []
    blanks: list[tuple[str, int]] = []  # spaces that a line break would drop

    def skip_breaks(i: int, escaped: bool) -> int:
        """Past a line break at `i`: the blank lines that follow each give a newline, the
        first gives a space unless it was escaped; indentation is dropped."""
        first, n = i, 0
        while i < stop and text[i] in "\r\n":
            i += 2 if text.startswith("\r\n", i) else 1
            n += 1
            while i < stop and text[i] in " \t":
                i += 1
        folded = " " if n == 1 and not escaped else "\n" * (n - 1)
        chars.extend(folded)
        where.extend([first] * len(folded))
        return i

    while i < stop:
        c = text[i]
        if c in " \t":
            blanks.append((c, i))
            i += 1
            continue
        if c in "\r\n":
            blanks.clear()
            i = skip_breaks(i, escaped=False)
            continue
        for b, at in blanks:
            chars.append(b)
            where.append(at)
        blanks.clear()
        if double and c == "\\" and i + 1 < stop:
            n = text[i + 1]
            if n in "\r\n":
                i = skip_breaks(i + 1, escaped=True)
                continue
            if n in _HEX_ESCAPES:
                width = _HEX_ESCAPES[n]
                try:
                    chars.append(chr(int(text[i + 2 : i + 2 + width], 16)))
                except ValueError:
                    return None
                where.append(i)
                i += 2 + width
                continue
            if n not in _ESCAPES:
                return None
            chars.append(_ESCAPES[n])
            where.append(i)
            i += 2
            continue
        if not double and c == "'" and text.startswith("''", i):
            chars.append("'")
            where.append(i)
            i += 2
            continue
        chars.append(c)
        where.append(i)
        i += 1
    for b, at in blanks:
        chars.append(b)
        where.append(at)
    if "".join(chars) != expr:
        return None
    return where + [stop]


def expression_origin(doc: Positioned, at: tuple, expr: str):  # -> secpolicy.dsl.Origin
    """An Origin mapping positions in the expression stored at `at` back to the YAML file.

    Quoted scalars are mapped character by character through their escapes and folding;
    block (`|`, `>`) and multi-line plain scalars are aligned segment by segment: each source
    line of the scalar, without its indentation, is one segment of the expression text."""
    from secpolicy.dsl.limits import LIMITS
    from secpolicy.dsl.parser import Origin

    sp = doc.spans.get(at)
    lines = doc.lines
    segments: list[tuple[int, int, int]] = []  # (expr offset, file line, file column)
    if sp is not None:
        if sp.style in ("|", ">"):
            first = sp.line + 1  # content starts on the line after the indicator
            # The scalar ends where its end mark stands (the start of the line after it). Its
            # lines are not cut by indentation: with an indicator (`|2`) the first line may be
            # indented more than the others, whose indentation is then part of the value.
            last = doc.text.count("\n", 0, sp.end) + (0 if sp.end > 0 and doc.text[sp.end - 1] == "\n" else 1)
            offset = 0
            for lineno in range(first, min(len(lines), last, first + 10_000) + 1):
                raw = lines[lineno - 1]
                content = raw.strip()
                if content == "":
                    if offset >= len(expr):
                        break
                    continue
                pos = expr.find(content, offset)
                if pos < 0:
                    break
                segments.append((pos, lineno, len(raw) - len(raw.lstrip()) + 1))
                offset = pos + len(content)
        else:
            quote = 1 if sp.style in ("'", '"') else 0
            segments.append((0, sp.line, sp.column + quote))
            offset = 0
            lineno = sp.line
            last_line = doc.text.count("\n", 0, sp.end) + 1
            # Continuation lines of a multi-line plain or quoted scalar.
            while True:
                lineno += 1
                if lineno > len(lines) or lineno > last_line:
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
    exact: list[list[int] | None] = []  # of a quoted scalar, worked out on the first error

    def locate(line: int, col: int) -> tuple[int, int, str | None]:
        off = sum(len(x) + 1 for x in expr_lines[: line - 1]) + (col - 1)
        if sp is not None and sp.style in ("'", '"') and len(expr) <= LIMITS.expression_chars:
            # Escapes (`\\"`) and folded lines move what follows: map character by character
            # (not for an expression refused for its length, whose error is at its start).
            if not exact:
                exact.append(_quoted_source(doc.text, sp, expr))
            if exact[0] is not None:
                index = exact[0][max(0, min(off, len(exact[0]) - 1))]
                fline = doc.text.count("\n", 0, index) + 1
                return fline, index - (doc.text.rfind("\n", 0, index) + 1) + 1, doc.line_text(fline)
        if not segments:
            return (sp.line if sp else 1), (sp.column if sp else 1), doc.line_text(sp.line if sp else 1)
        seg = segments[0]
        for s in segments:
            if s[0] <= off:
                seg = s
        fline, fcol = seg[1], seg[2] + (off - seg[0])
        return fline, fcol, doc.line_text(fline)

    return Origin(doc.path, locate)

