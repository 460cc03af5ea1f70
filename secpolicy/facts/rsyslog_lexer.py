"""The lines of an rsyslog configuration file as rsyslogd 8 reads them: its preprocessor
(readConfFile: lines read with fgets into 10,240-byte pieces, trailing blanks trimmed, a
trailing backslash joining the next line) and then its flex lexer (grammar/lexer.l), state by
state, longest match first.

What that decides for a compliance check: a `"string"` inside an object (`action(...)`,
`template(...)`) or an expression may run over line breaks, and nothing in it is a directive;
a `$Directive` is one wherever the lexer meets it outside such a string, also after other
statements on the same line; `#` comments and `/* */` comments hold nothing.

`config_lines` gives each statement-bearing line with the line number it starts on: a line
break inside a string or inside one token ends no line (it reads as a space), a `$` directive
is a line of its own, and comments are gone. `config_statements` adds, for each line, the
objects that end on it and the legacy actions on it, in order: an object whole, also where
RainerScript lets it run over lines (`module(\n load="imtcp"\n)`)."""

from __future__ import annotations

import functools
import re

from secpolicy.facts._common import C_SPACE, fgets_pieces

__all__ = ["ACTION", "BRACE", "OBJECT", "Token", "config_lines", "config_scan", "config_statements", "config_tokens"]

_FGETS = 10240  # readConfFile's line buffer

# What a matched token does: kept in the line, dropped (a comment), a `$` directive line, the
# `$IncludeConfig` that sends the lexer to read a file name, or kept as a legacy action (the
# lexer's LEGACY_ACTION: a file, `@host`, `~`, `:omusrmsg:` ... after a filter).
_KEEP, _DROP, _CFSYS, _ACT = "keep", "drop", "cfsys", "act"

_OBJ_STR = r'"(?:[^"\\]|\\[\'"?\\abfnrtv]|\\[0-7]{1,3})*"'
_OBJ_BQ = r"`(?:[^`\\]|\\['`?\\abfnrtv]|\\[0-7]{1,3})*`"
_EXPR_DQ = r'"(?:[^"\\$]|\\["\'\\$bntr]|\\x[0-9a-f][0-9a-f]|\\[0-7][0-7][0-7])*"'
_EXPR_DQ_DOLLAR = r'"(?:[^"\\]|\\["\'\\$bntr]|\\x[0-9a-f][0-9a-f]|\\[0-7][0-7][0-7])*"'
_EXPR_SQ = r"'(?:[^'\\]|\\['\"\\$bntr]|\\x[0-9a-f][0-9a-f]|\\[0-7][0-7][0-7])*'"
_EXPR_BQ = r"`(?:[^`\\]|\\['`\"\\bntr]|\\x[0-9a-f][0-9a-f]|\\[0-7][0-7][0-7])*`"
_OBJECTS = ("main_queue|timezone|parser|global|template|ruleset|property|constant|input|module|lookup_table|dyn_stats"
            "|percentile_stats")
_EOL = r"(?=\n|\Z)"  # flex's `$`

# Each state's rules in lexer.l's order: (pattern, action, next state or None to stay, only at
# the start of a line). Patterns are case-insensitive, as the lexer is.
_Rule = tuple[str, str, "str | None"] | tuple[str, str, "str | None", bool]


class _State:
    """A state's rules, tried at a position in one regex call: each rule is an optional
    lookahead capturing what it would match, so every rule's match length is known at once."""

    def __init__(self, *rules: _Rule) -> None:
        self.rules = rules
        self.actions = [(r[1], r[2]) for r in rules]

    @functools.cached_property
    def rx(self) -> re.Pattern[str]:
        """Compiled on first use: not at start-up of commands that never read rsyslog.conf."""
        bol = r"(?<![^\n])"  # flex's `^`: at the start of the buffer or after a line break
        return re.compile("".join(f"(?=({bol if len(r) > 3 else ''}{r[0]}))?" for r in self.rules), re.IGNORECASE)


_STATES: dict[str, _State] = {
    "INITIAL": _State(
        ("if", _KEEP, "EXPR"),
        ("foreach", _KEEP, "EXPR"),
        ("reload_lookup_table", _KEEP, "PROC"),
        (r"[&{}]|stop|else", _KEEP, None),
        ("call", _KEEP, "INCALL"),
        ("call_indirect|set|reset|unset", _KEEP, "EXPR"),
        ("continue", _KEEP, None),
        (r"preprocfilelinenumber\(", _DROP, "LINENO"),
        (rf"(?:{_OBJECTS}|include|action)[ \n\t]*\(", _KEEP, "INOBJ"),
        (r'[ \t]*:\$?[a-z\-]+[ ]*,[ ]*!?[a-z]+[ ]*,[ ]*"(?:\\"|[^"])*"', _KEEP, None, True),  # property filter
        (r"[ \t]*[*a-z][*a-z]*[0-7]*[.,][,!=;.*a-z0-7]+", _KEEP, None, True),  # priority filter
        (r"~|\*|-/[^*][^\n]*|/[^*][^\n]*|:[a-z0-9]+:[^\n]*|[|.\-@^?~>][^\n]+|[a-z0-9_][a-z0-9_\-+,;]*",
         _ACT, None),  # legacy actions
        (r"/\*", _DROP, "COMMENT"),
        (r"\$[a-z]+[^\n]*", _CFSYS, None),
        (rf"![^ \t\n]+[ \t]*{_EOL}", _KEEP, None),
        (r"[+-]\*[ \t\n]*#[^\n]*", _KEEP, None),
        (rf"[+-]\*[ \t\n]*{_EOL}", _KEEP, None),
        (rf"[ \t]*[+-][a-z0-9.:-]+[ \t]*{_EOL}", _KEEP, None, True),
        (r"#[^\n]*\n", _DROP, None),
        (r"[\n\t ]", _KEEP, None),
        (r".", _KEEP, None),
    ),
    "INOBJ": _State(
        (r"\)", _KEEP, "INITIAL"),
        (r"[a-z][a-z0-9_.]*", _KEEP, None),
        (r"[,\[\]=]", _KEEP, None),
        (_OBJ_STR, _KEEP, None),
        (_OBJ_BQ, _KEEP, None),
        (r"/\*", _DROP, "COMMENT"),
        (rf"#[^\n]*{_EOL}", _DROP, None),
        (r"[ \n\t]", _KEEP, None),
        (r".", _KEEP, None),
    ),
    "EXPR": _State(
        (r"\(", _KEEP, None),
        ("then|do|;", _KEEP, "INITIAL"),
        (r"contains_i|contains|startswith_i|startswith|==|<=|>=|!=|<>|or|and|not|in|[=,*/%+&\-\[\])<>]", _KEEP, None),
        (r"0[0-7]+|0x[0-9a-f]+|[1-9][0-9]*|0", _KEEP, None),
        (r"\$[$!./]?[@a-z_]*[!@a-z0-9\-_.\[\]]*", _KEEP, None),
        (_EXPR_SQ, _KEEP, None),
        (_EXPR_BQ, _KEEP, None),
        (_EXPR_DQ, _KEEP, None),
        (_EXPR_DQ_DOLLAR, _KEEP, None),  # a `$` unescaped: an error message, no token
        (r"[ \t\n]", _KEEP, None),
        ("exists", _KEEP, None),
        (r"[a-z][a-z0-9_]*", _KEEP, None),
        (r"/\*", _DROP, "COMMENT"),
        (r".", _KEEP, None),
    ),
    "INCALL": _State(
        (r"[ \t\n]", _KEEP, None),
        (r".", _KEEP, None),  # before the name's rule: a name of one character is no name
        (r"[a-z][a-z0-9\-_.]*", _KEEP, "INITIAL"),
    ),
    "PROC": _State(
        (r"\(", _KEEP, None),
        (_EXPR_SQ, _KEEP, None),
        (_EXPR_DQ, _KEEP, None),
        (",", _KEEP, None),
        (r"\)", _KEEP, "INITIAL"),
        (r"[ \t\n]*", _KEEP, None),
        (r".", _KEEP, None),
    ),
    "LINENO": _State(
        (r"[0-9]+", _DROP, None),
        (r"\)", _DROP, "INITIAL"),
        (r".|\n", _DROP, None),
    ),
    "INCL": _State(
        (r".|\n", _DROP, None),
        (r"[^ \t\n]+", _KEEP, "INITIAL"),
    ),
    "COMMENT": _State(
        (r"\*/", _DROP, "BACK"),
        (r"(?:[^*]|\n)+|.", _DROP, None),
    ),
}


def preprocessed(text: str) -> tuple[str, list[int]]:
    """(the buffer readConfFile hands the lexer, the source line number each of its lines
    starts on): every fgets piece trimmed of trailing blanks and ended with a newline, unless
    it ends with a backslash, which joins the next piece (its leading blanks dropped)."""
    out: list[str] = []
    starts: list[int] = []
    cont = False
    for n, raw in fgets_pieces(text, _FGETS):
        piece = raw.decode("utf-8", "surrogateescape")
        if not cont:
            starts.append(n)
        start = len(piece) - len(piece.lstrip(C_SPACE)) if cont else 0
        i = len(piece) - 1
        while i >= start and piece[i] in C_SPACE:
            i -= 1
        if i >= 0:
            if piece[i] == "\\":
                i -= 1
                cont = True
            else:
                cont = False
            out.append(piece[start : i + 1])
        if not cont:
            out.append("\n")
    return "".join(out), starts


def config_lines(text: str) -> list[tuple[int, str]]:
    """(source line number, text) of each line of statements, as described above; lines
    left empty are left out."""
    return [(n, shown) for n, shown, _ in config_statements(text)]


# An item of a line: an object's whole text, `name(...)`, a legacy action's, or a block's brace.
OBJECT, ACTION, BRACE = "object", "action", "brace"


def config_statements(text: str) -> list[tuple[int, str, tuple[tuple[str, str], ...]]]:
    """(source line number, text, items) of each line of statements: the items are the
    objects ending on the line (`module(...)`, `action(...)`, `input(...)` ...: (OBJECT, their
    whole text, line breaks and comments read as blanks)), legacy actions
    ((ACTION, text)) and the braces of blocks ((BRACE, "{" or "}")), in the order the lexer
    meets them."""
    return _scan(text)[0]


def config_scan(text: str) -> tuple[list[tuple[int, str, tuple[tuple[str, str], ...]]], list[Token]]:
    """config_statements and config_tokens of one text, read once."""
    return _scan(text)


def _scan(text: str) -> tuple[list[tuple[int, str, tuple[tuple[str, str], ...]]], list[Token]]:
    """config_statements and config_tokens of a text."""
    buf, starts = preprocessed(text)
    out: list[tuple[int, str, tuple[tuple[str, str], ...]]] = []
    line: list[str] = []
    items: list[tuple[str, str]] = []
    obj: list[str] | None = None  # the text of the object the lexer is inside
    row = first = 0  # the buffer line the lexer is on; the one the current line started on

    def flush(next_first: int) -> None:
        nonlocal line, first, items
        shown = "".join(line).strip(C_SPACE)
        if shown:
            out.append((starts[min(first, len(starts) - 1)], shown, tuple(items)))
        line, first, items = [], next_first, []

    state = back = "INITIAL"
    pos = 0
    tokens: list[Token] = []
    while pos < len(buf):
        end, action, nxt, rule = _longest(state, buf, pos)
        token = buf[pos:end]
        kind = _token(state, rule, token)
        if kind is not None and not (kind == "CFSYS" and token[:14].lower() == "$includeconfig"):
            tokens.append((kind, token, starts[min(row, len(starts) - 1)]))
        if action == _CFSYS and token[:14].lower() == "$includeconfig":
            flush(row)
            line.append(token[:14] + " ")  # the file name follows, read in state INCL
            end, nxt = pos + 14, "INCL"
        elif action == _CFSYS:
            flush(row)
            line.append(token)
            flush(row)
        elif state == "INCL":  # blanks and line breaks, then the file name: a line of its own
            if action == _KEEP:
                line.append(token)
                flush(row)
        elif "\n" in token and (action == _DROP or token.strip(C_SPACE) == ""):
            flush(row + token.count("\n"))  # a line break outside any string or token
            if obj is not None:
                obj.append(" ")  # an object goes on over line breaks
        elif action == _DROP:
            if obj is not None:
                obj.append(" ")  # a comment inside an object
        elif action in (_KEEP, _ACT):
            shown = token.replace("\n", " ")  # a string, token or object over a line break
            line.append(shown)
            if action == _ACT and state == "INITIAL":
                items.append((ACTION, shown.strip(C_SPACE)))
            elif state == "INITIAL" and token in ("{", "}"):
                items.append((BRACE, token))
            if obj is not None:
                obj.append(shown)
        if nxt == "INOBJ" and state == "INITIAL":
            obj = [token.replace("\n", " ")]
        elif state == "INOBJ" and nxt == "INITIAL":  # its closing parenthesis
            items.append((OBJECT, "".join(obj or ())))
            obj = None
        row += buf.count("\n", pos, end)
        if nxt == "COMMENT":
            back = state
        state = back if nxt == "BACK" else (nxt or state)
        pos = end
    flush(row)
    return out, tokens


def _longest(state: str, buf: str, pos: int) -> tuple[int, str, str | None, int]:
    """(end, action, next state, the rule's index, -1 for none) of the rule flex applies at
    `pos`: the longest match, the first rule of equal ones; one character as it is where nothing
    matches."""
    st = _STATES[state]
    m = st.rx.match(buf, pos)  # never None: every lookahead is optional
    best: tuple[int, str, str | None, int] = (pos + 1, _KEEP, None, -1)
    longest = pos
    if m is not None:
        for i, (action, nxt) in enumerate(st.actions, 1):
            end = m.end(i)
            if end > longest:  # strictly longer: of equal matches the first rule's stands
                best, longest = (end, action, nxt, i - 1), end
    return best


# The parser's token each lexer rule returns (lexer.l), by state and rule index: a name, "text"
# for the token's own text (lower-cased: `{`, `&`, `stop`, `==` ...), "object" for an object's
# opener; rules left out return no token (blanks, comments, invalid characters).
_TEXT, _OPENER = "text", "object"
_TOKENS: dict[str, dict[int, str]] = {
    "INITIAL": {0: "if", 1: "foreach", 2: "reload_lookup_table", 3: _TEXT, 4: "call", 5: _TEXT, 6: "continue",
                8: _OPENER, 9: "PROPFILT", 10: "PRIFILT", 11: "LEGACY_ACTION", 13: "CFSYS", 14: "BSD_SELECTOR",
                15: "BSD_SELECTOR", 16: "BSD_SELECTOR", 17: "BSD_SELECTOR"},
    "INOBJ": {0: "ENDOBJ", 1: "NAME", 2: _TEXT, 3: "STRING", 4: "STRING"},
    "EXPR": {0: _TEXT, 1: _TEXT, 2: _TEXT, 3: "NUMBER", 4: "VAR", 5: "STRING", 6: "STRING", 7: "STRING",
             10: "exists", 11: "FUNC"},
    "INCALL": {2: "NAME"},
    "PROC": {0: _TEXT, 1: "STRING", 2: "STRING", 3: _TEXT, 4: _TEXT},
    "INCL": {1: "INCLUDECONFIG"},
}
_COMPARE = {"==", "<=", ">=", "!=", "<>", "<", ">", "contains", "contains_i", "startswith", "startswith_i"}


def _token(state: str, rule: int, text: str) -> str | None:
    """The parser's token for what rule `rule` of `state` matched, None for none."""
    kind = _TOKENS.get(state, {}).get(rule)
    low = text.lower()
    if kind == _TEXT:
        return "CMP" if low in _COMPARE else low
    if kind == _OPENER:
        word = low.split("(")[0].strip(C_SPACE)
        return {"template": "BEGIN_TPL", "ruleset": "BEGIN_RULESET", "property": "BEGIN_PROPERTY",
                "constant": "BEGIN_CONSTANT", "include": "BEGIN_INCLUDE", "action": "BEGIN_ACTION"}.get(word, "BEGINOBJ")
    if kind == "CFSYS" and low.startswith("$ruleset "):
        return "LEGACY_RULESET"
    return kind


# A token the parser reads: (kind, text, the source line it starts on).
Token = tuple[str, str, int]


def config_tokens(text: str) -> list[Token]:
    """The tokens rsyslogd's lexer hands its parser for a file, in order, each with the source
    line it starts on; also `$` directives ("CFSYS", which the lexer carries out itself) and the
    file name of a `$IncludeConfig` ("INCLUDECONFIG")."""
    return _scan(text)[1]


# --- the parser (grammar/grammar.y) -------------------------------------------------------------------
class _Refused(Exception):
    """The token at `at` (len(tokens): the end of the input) is where bison's parser stops."""

    def __init__(self, at: int) -> None:
        self.at = at


_STMT_START = {"if", "foreach", "set", "reset", "unset", "PRIFILT", "PROPFILT", "reload_lookup_table",
               "BEGIN_INCLUDE", "BEGINOBJ", "BEGIN_ACTION", "LEGACY_ACTION", "stop", "call", "call_indirect",
               "continue"}
_BINARY = {"and", "or", "CMP", "&", "+", "-", "*", "/", "%"}


class _Parser:
    """A recursive descent over grammar.y's rules: the same language, so the token it cannot
    take is the one bison's LALR parser stops at (the parser never takes a token no
    configuration could go on with)."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.i = 0

    def peek(self) -> str:
        return self.kinds[self.i] if self.i < len(self.kinds) else "EOF"

    def take(self, *kinds: str) -> str:
        kind = self.peek()
        if kind not in kinds:
            raise _Refused(self.i)
        self.i += 1
        return kind

    def conf(self) -> None:
        while (kind := self.peek()) != "EOF":
            if kind in ("LEGACY_RULESET", "BSD_SELECTOR"):
                self.i += 1
            elif kind == "BEGINOBJ":  # an object (a statement only inside a block)
                self.i += 1
                self.nvlst()
                self.take("ENDOBJ")
            elif kind == "BEGIN_TPL":
                self.i += 1
                self.nvlst()
                self.take("ENDOBJ")
                if self.peek() == "{":
                    self.i += 1
                    while self.peek() in ("BEGIN_PROPERTY", "BEGIN_CONSTANT"):
                        self.i += 1
                        self.nvlst()
                        self.take("ENDOBJ")
                    self.take("}")
            elif kind == "BEGIN_RULESET":
                self.i += 1
                self.nvlst()
                self.take("ENDOBJ")
                self.take("{")
                while self.peek() != "}":
                    self.stmt()
                self.i += 1
            else:
                self.stmt()

    def nvlst(self) -> None:
        while self.peek() == "NAME":
            self.i += 1
            self.take("=")
            if self.take("STRING", "[") == "[":
                self.strings()

    def strings(self) -> None:
        """An array's strings after its `[`: at least one."""
        self.take("STRING")
        while self.take(",", "]") == ",":
            self.take("STRING")

    def stmt(self) -> None:
        kind = self.take(*_STMT_START)
        if kind == "if":
            self.expr()
            self.take("then")
            self.block()
            if self.peek() == "else":
                self.i += 1
                self.block()
        elif kind == "foreach":
            self.take("(")
            self.take("VAR")
            self.take("in")
            self.expr()
            self.take(")")
            self.take("do")
            self.block()
        elif kind in ("set", "reset"):
            self.take("VAR")
            self.take("=")
            self.expr()
            self.take(";")
        elif kind == "unset":
            self.take("VAR")
            self.take(";")
        elif kind in ("PRIFILT", "PROPFILT"):
            self.block()
        elif kind == "reload_lookup_table":
            self.take("(")
            self.params()
            self.take(")")
        elif kind == "BEGIN_INCLUDE":
            self.nvlst()
            self.take("ENDOBJ")
        elif kind != "BEGINOBJ":  # an action list (BEGINOBJ: an object in a block, a statement alone)
            self.i -= 1
            self.action()
            while self.peek() == "&":
                self.i += 1
                self.action()

    def action(self) -> None:
        kind = self.take("BEGIN_ACTION", "LEGACY_ACTION", "stop", "call", "call_indirect", "continue")
        if kind == "BEGIN_ACTION":
            self.nvlst()
            self.take("ENDOBJ")
        elif kind == "call":
            self.take("NAME")
        elif kind == "call_indirect":
            self.expr()
            self.take(";")

    def block(self) -> None:
        if self.peek() != "{":
            self.stmt()
            return
        self.i += 1
        self.stmt()  # a block holds one statement at least
        while self.peek() != "}":
            self.stmt()
        self.i += 1

    def expr(self) -> None:
        self.operand()
        while self.peek() in _BINARY:  # precedence aside, the same language as bison's rules
            self.i += 1
            self.operand()

    def operand(self) -> None:
        while self.peek() in ("not", "-"):
            self.i += 1
        kind = self.take("(", "exists", "FUNC", "NUMBER", "STRING", "VAR", "[")
        if kind == "(":
            self.expr()
            self.take(")")
        elif kind == "exists":
            self.take("(")
            self.take("VAR")
            self.take(")")
        elif kind == "FUNC":
            self.take("(")
            if self.peek() != ")":
                self.params()
            self.take(")")
        elif kind == "[":
            self.strings()

    def params(self) -> None:
        self.expr()
        while self.peek() == ",":
            self.i += 1
            self.expr()


def syntax_error(tokens: list[Token]) -> int | None:
    """The index of the token where rsyslogd's parser finds a syntax error (len(tokens): at
    the end of the input), None where the tokens are a configuration. `$` directives and
    includes are the lexer's, not the parser's: left out."""
    kept = [i for i, t in enumerate(tokens) if t[0] not in ("CFSYS", "INCLUDECONFIG")]
    parser = _Parser([tokens[i][0] for i in kept])
    try:
        parser.conf()
    except _Refused as e:
        return kept[e.at] if e.at < len(kept) else len(tokens)
    except RecursionError:  # nested beyond Python's stack: bison's stack (10,000) is deeper
        return None
    return None
