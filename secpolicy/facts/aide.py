"""`aide_rule(path)`: the rule AIDE 0.18 applies to a regular file, as
`aide --config /etc/aide/aide.conf --path-check f:PATH` tells it.

On the live host with AIDE installed, AIDE itself is asked: its configuration may run programs
(`@@x_include` runs an executable file and reads its output; Debian's own aide.conf.d has
twenty such files) and only AIDE should run them. Elsewhere (under --root, in inline tests, or
where AIDE is not installed) the configuration is read as AIDE reads it:

- Lines as AIDE's lexer splits them: comments, `@@define`/`@@undef`, `@@{VAR}`, `@@if`
  (`defined`, `exists`, `not`), `@@ifdef`/`@@ifndef`, `@@else`/`@@endif`, backslash escapes,
  option lines, group definitions (`Name = expression`), and selective (`/rx`), equal (`=/rx`)
  and negative (`!/rx`) rules with file-type restrictions.
- `@@include` and `@@x_include` of a file, or of a directory's regular files whose names match
  a regex, in byte order, with rule prefixes. Each file is parsed whole before any of it
  counts, and anything AIDE refuses (an unknown option, an undefined group, a bad restriction,
  a syntax error, a missing include) is an error naming the line: AIDE stops there and checks
  nothing.
- The rules go into AIDE's selection tree, keyed by the part of each regex before its first
  special character, and a path is matched as AIDE's `check_seltree()` does: from the
  deepest node holding its parent, equal rules at that node only, the first selective match
  of the deepest node that has one, then negative rules on the way back.

What only running something could tell is an error saying so, never a guess: an executable
`@@x_include`, `hostname` conditions and `@@{HOSTNAME}`, `root_prefix`, relative paths, and a
regex RE2 cannot take (AIDE uses PCRE2).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.regex import RegexError, compile_regex
from secpolicy.dsl.types import BOOL, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at, real_path

if TYPE_CHECKING:
    from secpolicy.dsl.regex import Regex
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["AIDE_CONF", "AIDE_CONFIG", "AIDE_RULE", "AideConfig", "AideRule", "CannotTell", "Refused", "register"]

AIDE_CONF = "/etc/aide/aide.conf"

AIDE_RULE = ObjectType(
    "aide_rule",
    {"path": STR, "selected": BOOL, "kind": STR, "rule": STR, "attributes": ListType(STR)},
    methods={"missing": Method((ListType(STR),), ListType(STR),
                               "those of the given attributes AIDE does not check for the file (all of them "
                               "when no rule selects it)")},
    doc="the rule AIDE applies to a regular file (`aide -p f:PATH`), found at the file's real path",
    field_docs={
        "path": "the path AIDE sees: the file's real path (AIDE does not follow symbolic links)",
        "selected": "whether AIDE adds the file to its database",
        "kind": '"selective", "equal", "negative" (a negative rule drops it) or "none"',
        "rule": "the rule, as AIDE prints it, or null",
        "attributes": "the attributes AIDE checks (`p`, `sha512`, `acl`, ...), groups expanded",
    },
)

# -- attributes and groups (AIDE 0.18.3 as Debian builds it: see `aide --version`) -------------
_HASHES = frozenset({"md5", "sha1", "rmd160", "tiger", "crc32", "haval", "gost", "crc32b", "sha256",
                     "sha512", "whirlpool"})
_UNSUPPORTED = frozenset({"stribog256", "stribog512"})  # named, not compiled in: dropped from rules
_X = frozenset({"acl", "selinux", "xattrs", "e2fsattrs", "caps"})
_COMMON = frozenset({"p", "ftype", "i", "n", "u", "g"})
_ATTRIBUTES = ("l", "p", "u", "g", "s", "a", "c", "m", "i", "b", "n", "md5", "sha1", "rmd160", "tiger",
               "crc32", "haval", "gost", "crc32b", "acl", "S", "I", "ANF", "ARF", "sha256", "sha512", "selinux",
               "xattrs", "whirlpool", "ftype", "e2fsattrs", "caps", "stribog256", "stribog512", "growing",
               "compressed")  # in AIDE's order (attributes.c), as it prints them
_GROUPS: dict[str, frozenset[str]] = {
    **{a: frozenset({a}) for a in _ATTRIBUTES},
    "R": _COMMON | {"s", "l", "m", "c", "md5"} | _X,
    "L": _COMMON | {"l"} | _X,
    ">": _COMMON | {"s", "growing", "l"} | _X,
    "H": _HASHES,
    "X": _X,
    "E": frozenset(),
}
_RESTRICTIONS = {"f": 1, "d": 2, "l": 4, "c": 8, "b": 16, "p": 32, "s": 64, "D": 128, "P": 256}
_FT_FILE, _FT_DIR = _RESTRICTIONS["f"], _RESTRICTIONS["d"]

# -- the lexer's vocabulary (conf_lex.l) --------------------------------------------------------
_STRING_OPTIONS = frozenset({
    "database_in", "database", "database_out", "database_new", "warn_dead_symlinks", "grouped",
    "report_grouped", "summarize_changes", "report_summarize_changes", "acl_no_symlink_follow",
    "report_format", "report_level", "verbose", "log_level", "database_add_metadata", "report_url",
    "report_detailed_init", "report_base16", "report_quiet", "report_append", "report_ignore_e2fsattrs",
    "gzip_dbout", "root_prefix", "config_version", "config_check_warn_unrestricted_rules", "num_workers",
})
_ATTR_OPTIONS = frozenset({"database_attrs", "report_ignore_added_attrs", "report_ignore_removed_attrs",
                           "report_ignore_changed_attrs", "report_force_attrs"})
_OPTION_NAMES = _STRING_OPTIONS | _ATTR_OPTIONS
_BOOL_OPTIONS = frozenset({
    "warn_dead_symlinks", "grouped", "report_grouped", "summarize_changes", "report_summarize_changes",
    "acl_no_symlink_follow", "database_add_metadata", "report_detailed_init", "report_base16",
    "report_quiet", "report_append", "gzip_dbout", "config_check_warn_unrestricted_rules",
})
_CHOICES = {
    "log_level": ("error", "warning", "notice", "info", "rule", "compare", "config", "debug", "thread", "trace"),
    "report_level": ("minimal", "summary", "database_attributes", "list_entries", "changed_attributes",
                     "added_removed_attributes", "added_removed_entries"),
    "report_format": ("plain", "json"),
}
# What each database option and report_url take (conf_eval.c do_dbdef(), do_repurldef(),
# commandconf.c parse_url()); "database" is database_in. Debian builds AIDE without curl.
_URL_TYPES = frozenset({"file", "stdin", "stdout", "stderr", "fd", "syslog", "http", "https", "ftp"})
_URL_OPTIONS = {"database_in": "database_in", "database": "database_in", "database_out": "database_out",
                "database_new": "database_new", "report_url": "report_url"}
_URL_REFUSED = {"database_in": ("stdout", "stderr", "syslog"), "database_new": ("stdout", "stderr", "syslog"),
                "database_out": ("stdin", "stderr", "syslog"), "report_url": ("stdin",)}
_WORKERS = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)(%?)")  # strtol(3) in base 10, then nothing or a %
_LONG_MAX = (1 << 63) - 1
_CHECKED_OPTIONS = frozenset({"verbose", "root_prefix", "num_workers", *_URL_OPTIONS})  # besides bools and choices
_MACROS = ("@@x_include_setenv", "@@x_include", "@@include", "@@ifnhost", "@@ifhost", "@@ifndef", "@@ifdef",
           "@@endif", "@@else", "@@undef", "@@define", "@@if")  # longest first: flex takes the longest
_MACRO_STATES = {"@@define": "defstmt", "@@undef": "defstmt", "@@if": "condition", "@@include": "strings",
                 "@@x_include": "strings", "@@x_include_setenv": "envvar", "@@else": "config", "@@endif": "config"}
_O = re.compile(r"[a-z_]+")
_G = re.compile(r"[a-zA-Z0-9]+")
_L = re.compile(r"[a-zA-Z0-9_%]+")
_V = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_EXPR = re.compile(r"[a-zA-Z0-9_%>]+")
_EQ = re.compile(r" *= *")
_BLANK = re.compile(r"[ \t]+")
_VARIABLE = re.compile(r"@@\{([a-zA-Z0-9_%]+)\}")
_PLAIN = re.compile(r"[^@\\ \t\r\n]+")
_AIDE_P = re.compile(r"\[([X ])\] \w '.*?': (?:(selective|equal|negative) rule: '(.*?) (\S+) ?(\S*)' \((.*?):(\d+): '"
                     r"|no matching rule)")

_NO_MATCH, _NEGATIVE, _SELECTIVE, _EQUAL, _RESTRICTED, _PARTIAL = 0, 1, 2, 4, 8, 16
_DEEP_EQUAL, _DEEP_SELECTIVE, _RECURSED = 32, 64, 128
_RULE_MATCH = _SELECTIVE | _EQUAL  # seltree.c's RULE_MATCH: a list's unrestricted rule matched
_SELECTED = _SELECTIVE | _EQUAL  # a result that adds the file


class Refused(EvaluationError):
    """AIDE itself would stop at this configuration and check nothing."""


class CannotTell(EvaluationError):
    """Only running something (a program, the host's name) could tell what AIDE reads."""


# -- reading: lines to statements ---------------------------------------------------------------
Frag = tuple[str, str]  # ("s", text) or ("v", variable name)


@dataclass
class _Line:
    where: str
    text: str
    tokens: list[tuple[str, Any]] = field(default_factory=list)


class _Lexer:
    """AIDE's flex scanner (conf_lex.l) over one line: each start condition is a method that
    consumes from `i`, appends tokens and may switch `state`."""

    def __init__(self, line: _Line) -> None:
        self.line, self.s, self.i, self.state = line, line.text, 0, "config"

    def run(self) -> None:
        while self.i < len(self.s):
            if self.s[self.i] == "\r":
                raise self.refuse("unexpected character '\\r'")
            if self.state in ("string", "strings", "path"):
                self.fragment()
            elif not getattr(self, self.state)():
                break  # an inline comment: the rest of the line is not read

    def refuse(self, why: str) -> Refused:
        return Refused(f"{self.line.where}: {why} (line: {self.line.text!r})")

    def emit(self, kind: str, value: Any = None, state: str | None = None, length: int = 0) -> bool:
        self.line.tokens.append((kind, value))
        self.i += length
        self.state = state or self.state
        return True

    def skip_blanks(self) -> bool:
        m = _BLANK.match(self.s, self.i)
        if m:
            self.i = m.end()
        return m is not None

    def unexpected(self) -> EvaluationError:
        c = self.s[self.i]
        if ord(c) > 127:  # AIDE's lexer takes some Latin-1 bytes as letters: not worth guessing which
            return CannotTell(f"{self.line.where}: a character AIDE's lexer may or may not take: {c!r} "
                              f"(line: {self.line.text!r})")
        return self.refuse(f"unexpected character {c!r}")

    def fragment(self) -> None:
        """STRING, STRINGS, PATH: pieces of a string up to a blank."""
        s, i = self.s, self.i
        if self.skip_blanks():
            if self.state == "strings":
                self.emit("SPACE")
            else:
                self.state = "config" if self.state == "string" else "expr"
        elif m := _VARIABLE.match(s, i):
            self.emit("FRAG", ("v", m.group(1)), length=m.end() - i)
        elif s[i] == "\\" and s[i + 1: i + 2] in ("\\", "@", " "):
            self.emit("FRAG", ("s", s[i + 1]), length=2)
        elif s[i] in "\\@":
            self.emit("FRAG", ("s", s[i]), length=1)
        else:
            m = _PLAIN.match(s, i)
            assert m is not None
            self.emit("FRAG", ("s", m.group()), length=m.end() - i)

    def stringhunt(self) -> bool:
        self.skip_blanks()
        self.state = "string"
        return True

    def eqhunt(self, then: str = "string") -> bool:
        m = _EQ.match(self.s, self.i)
        if not m:
            raise self.unexpected()
        return self.emit("=", state=then, length=m.end() - self.i)

    def expreqhunt(self) -> bool:
        return self.eqhunt("expr")

    def expr(self) -> bool:
        if self.skip_blanks():
            return True
        if m := _EXPR.match(self.s, self.i):
            return self.emit("EXPR", m.group(), length=m.end() - self.i)
        if self.s[self.i] in "+-,":
            return self.emit(self.s[self.i], length=1)
        raise self.unexpected()

    def defstmt(self, name: re.Pattern[str] = _L) -> bool:
        if self.skip_blanks():
            return True
        m = name.match(self.s, self.i)
        if not m:
            raise self.unexpected()
        return self.emit("VARIABLE", m.group(), "stringhunt", m.end() - self.i)

    def envvar(self) -> bool:
        return self.defstmt(_V)

    def condition(self) -> bool:
        if self.skip_blanks():
            return True
        word = next((w for w in ("not", "defined", "hostname", "exists") if self.s.startswith(w, self.i)), None)
        if word is None:
            raise self.unexpected()
        if word == "not":
            return self.emit("NOT", length=3)
        return self.emit("FUNC", word, "stringhunt", len(word))

    def config(self) -> bool:
        s, i = self.s, self.i
        if self.skip_blanks():
            return True
        if s[i] == "#":  # an inline comment, up to the end of the line or a stray carriage return
            if "\r" in s[i:]:
                raise self.refuse("unexpected character '\\r'")
            return False
        if s.startswith(("=/", "!/", "/"), i):
            kind = {"=": "equal", "!": "negative", "/": "selective"}[s[i]]
            return self.emit("RULE", kind, "path", 0 if s[i] == "/" else 1)
        macro = next((k for k in _MACROS if s.startswith(k, i)), None)
        if macro is not None:
            return self.emit("MACRO", macro, _MACRO_STATES.get(macro, "stringhunt"), len(macro))
        # flex takes the longest match, and the earliest rule on a tie: an option's name, then
        # any lower-case word (an unknown option), then a group name
        option = max((len(k) for k in _OPTION_NAMES if s.startswith(k, i)), default=0)
        lengths = [option] + [len(m.group()) if m else 0 for m in (rx.match(s, i) for rx in (_O, _G, _L))]
        n, rule = max((n, -order) for order, n in enumerate(lengths))
        if not n:
            raise self.unexpected()
        word = s[i: i + n]  # (a non-ASCII letter after it is met as the next token)
        if rule == -1:
            raise self.refuse(f"unknown config option: {word!r}")
        if rule == 0:
            return self.emit("OPTION", word, "expreqhunt" if word in _ATTR_OPTIONS else "eqhunt", n)
        return self.emit("GROUP", word, "expreqhunt", n)


@dataclass
class _Stmt:
    kind: str
    where: str
    text: str
    args: tuple[Any, ...]
    body: list[_Stmt] = field(default_factory=list)
    orelse: list[_Stmt] = field(default_factory=list)


class _Parser:
    """The grammar of conf_yacc.y over the tokens of each line."""

    def __init__(self, line: _Line) -> None:
        self.line, self.toks, self.i = line, line.tokens, 0

    def refuse(self) -> Refused:
        return Refused(f"{self.line.where}: syntax error (line: {self.line.text!r})")

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self, kind: str) -> Any:
        if self.peek() != kind:
            raise self.refuse()
        self.i += 1
        return self.toks[self.i - 1][1]

    def string(self, required: bool = True) -> list[Frag]:
        frags = []
        while self.peek() == "FRAG":
            frags.append(self.take("FRAG"))
        if required and not frags:
            raise self.refuse()
        return frags

    def exprs(self) -> list[tuple[str, str]]:
        """An attribute expression: [(op, name)] with op "=" first, then "+" or "-"."""
        out = [("=", self.take("EXPR"))]
        while (op := self.peek()) in ("+", "-"):
            self.i += 1
            out.append((str(op), self.take("EXPR")))
        return out

    def restriction_then_attrs(self, negative: bool) -> tuple[list[str] | None, list[tuple[str, str]] | None]:
        if self.peek() is None:
            if negative:
                return None, None
            raise self.refuse()
        first = self.take("EXPR")
        if self.peek() in (",", "EXPR") or (negative and self.peek() is None):
            names = [first]
            while self.peek() == ",":
                self.take(",")
                names.append(self.take("EXPR"))
            if negative:
                if self.peek() is not None:
                    raise Refused(f"{self.line.where}: negative rule must not have an attribute expression "
                                  f"(line: {self.line.text!r})")
                return names, None
            return names, self.exprs()
        self.i -= 1
        if negative:
            raise self.refuse()
        return None, self.exprs()

    def statement(self) -> _Stmt:
        kind, value = self.toks[0]
        self.i = 1
        where, text = self.line.where, self.line.text
        args: tuple[Any, ...]
        if kind == "RULE":
            path = self.string()
            restriction, attrs = self.restriction_then_attrs(value == "negative")
            args = (value, path, restriction, attrs)
        elif kind == "OPTION":
            self.take("=")
            args = (value, self.exprs() if value in _ATTR_OPTIONS else self.string())
        elif kind == "GROUP":
            self.take("=")
            args = (value, self.exprs())
        elif value in ("@@define", "@@undef"):
            name = self.take("VARIABLE")
            args = (name, self.string(required=False) if value == "@@define" else None)
            if value == "@@undef" and self.peek() == "FRAG":
                raise self.refuse()
        elif value == "@@x_include_setenv":
            args = (self.take("VARIABLE"), self.string())
        elif value in ("@@include", "@@x_include"):
            parts: list[list[Frag]] = []
            while self.peek() == "SPACE" and len(parts) < 3:
                self.take("SPACE")
                parts.append(self.string())
            if not parts:
                raise self.refuse()
            args = (value == "@@x_include", parts)
        elif value == "@@if":
            negations = 0
            while self.peek() == "NOT":
                self.take("NOT")
                negations += 1
            args = (negations % 2 == 1, self.take("FUNC"), self.string())
        elif value in ("@@ifdef", "@@ifndef", "@@ifhost", "@@ifnhost"):
            args = (value in ("@@ifndef", "@@ifnhost"), "hostname" if "host" in value else "defined", self.string())
        else:  # @@else, @@endif
            args = ()
        if self.peek() is not None:
            raise self.refuse()
        return _Stmt("if" if value in ("@@if", "@@ifdef", "@@ifndef", "@@ifhost", "@@ifnhost")
                     else value if kind == "MACRO" else kind.lower(), where, text, args)


def _parse(text: str, name: str) -> list[_Stmt]:
    """A whole file's statements (AIDE parses a file before it evaluates any of it)."""
    top: list[_Stmt] = []
    stack: list[tuple[_Stmt, bool]] = []  # open @@if blocks, and whether @@else was seen
    for n, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")
        stripped = raw.lstrip(" \t")
        if not stripped or stripped.startswith("#") and "\r" not in stripped:
            continue  # an empty line, or a comment line
        line = _Line(at(name, n), raw)
        _Lexer(line).run()
        if not line.tokens:
            continue
        stmt = _Parser(line).statement()
        block = top if not stack else (stack[-1][0].orelse if stack[-1][1] else stack[-1][0].body)
        if stmt.kind in ("@@else", "@@endif"):
            if not stack or stack[-1][1] and stmt.kind == "@@else" or not block:
                raise Refused(f"{line.where}: syntax error, unexpected {stmt.kind} (line: {raw!r})")
            if stmt.kind == "@@else":
                stack[-1] = (stack[-1][0], True)
            else:
                stack.pop()
        else:
            block.append(stmt)
            if stmt.kind == "if":
                stack.append((stmt, False))
    if stack:
        raise Refused(f"{stack[-1][0].where}: syntax error: @@if without @@endif")
    return top


# -- evaluating: statements to the rule tree ----------------------------------------------------
@dataclass(eq=False)
class _Rule:
    kind: str
    rx: str
    restriction: int
    attrs: frozenset[str]
    where: str
    line: str
    prefix: str
    compiled: Regex

    def shown(self) -> str:
        """The rule as `aide -p` prints it."""
        names = [n for n, bit in _RESTRICTIONS.items() if self.restriction & bit]
        mark = {"equal": "=", "negative": "!"}.get(self.kind, "")
        attrs = "" if self.kind == "negative" else " " + "+".join(a for a in _ATTRIBUTES if a in self.attrs)
        prefix = f"', prefix: '{self.prefix}" if self.prefix else ""
        return f"'{mark}{self.rx} {','.join(names) or '(none)'}{attrs}' ({self.where}: '{self.line}{prefix}')"


@dataclass(eq=False)
class _Node:
    path: str
    parent: _Node | None
    depth: int
    children: list[_Node] = field(default_factory=list)
    rules: dict[str, list[_Rule]] = field(default_factory=lambda: {"equal": [], "selective": [], "negative": []})


def _rxtok(rx: str) -> str:
    """The node a rule belongs to: the regex up to its last '/' before a special character, with
    backslashes dropped (seltree.c strrxtok())."""
    p, i, last = list("/" + rx[1:]), 1, 1
    while i < len(p):
        if p[i] == "/":
            last = i
        elif p[i] in "(^$?*[":
            break
        elif p[i] == "\\":
            del p[i]  # the escaped character is then stepped over
        i += 1
    return "".join(p[:last])


def _utf8(text: str) -> bool:
    """Whether a name read with surrogateescape was valid UTF-8 (PCRE2 in UTF mode, as AIDE
    uses it, matches nothing against anything else)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ndirname(path: str, depth: int) -> str:
    count = 0
    for i, c in enumerate(path):
        count += c == "/"
        if count == depth:
            return path[:i]
    return path


class _Tree:
    def __init__(self) -> None:
        self.root = _Node("/", None, 1)

    def get(self, path: str, node: _Node | None = None) -> _Node | None:
        """seltree.c get_seltree_node(): down the children whose path is the next directory."""
        node = node or self.root
        if path == node.path:
            return node
        step = _ndirname(path, node.depth + 1)
        for child in node.children:
            if child.path == step:
                found = self.get(path, child)
                if found is not None:
                    return found
        return None

    def node_for(self, path: str) -> _Node:
        node = self.get(path)
        if node is None:
            parent = self.node_for(_rxtok(path))
            node = _Node(path, parent, parent.depth + 1)
            parent.children.append(node)
            parent.children.sort(key=lambda n: n.path.encode("utf-8", "surrogateescape"))
        return node

    def add(self, rule: _Rule) -> None:
        tok = _rxtok(rule.rx)
        if "//" in tok:
            raise Refused(f"{rule.where}: error in rule {rule.rx!r}: invalid double slash")
        self.node_for(tok).rules[rule.kind].append(rule)

    def check(self, path: str, file_type: int) -> tuple[int, _Rule | None]:
        """seltree.c check_seltree() for one path: the match and the rule that decided it."""
        if not _utf8(path):
            return _NO_MATCH, None  # PCRE2 in UTF mode matches no rule against it
        parent, retval = path, 0
        while True:
            k = parent.rfind("/")
            parent = parent[:k] if k > 0 else "/"
            node = self.get(parent)
            if node is not None:
                break
            retval |= _RECURSED
        hit: list[_Rule | None] = [None]
        return _node_match(node, path, file_type, retval, hit), hit[0]


def _list_match(rules: list[_Rule], text: str, file_type: int, hit: list[_Rule | None],
                unrestricted_only: bool = False) -> int:
    result = _NO_MATCH
    for rule in rules:
        if unrestricted_only and rule.restriction:
            continue
        if rule.compiled.search(text):
            if not rule.restriction or file_type & rule.restriction:
                hit[0] = rule
                return _RESTRICTED if rule.restriction else _RULE_MATCH
            result = _PARTIAL
    return result


def _node_match(node: _Node | None, text: str, file_type: int, retval: int, hit: list[_Rule | None]) -> int:
    """seltree.c check_node_for_match(): up to the root, then the negative rules on the way back."""
    if node is None:
        return retval
    equal, selective, negative = node.rules["equal"], node.rules["selective"], node.rules["negative"]
    if equal or selective or negative:
        if not retval & _RECURSED:
            retval |= _RECURSED
            if equal:
                found = _list_match(equal, text, file_type, hit)
                retval |= _EQUAL | _DEEP_EQUAL if found in (_RESTRICTED, _RULE_MATCH) else found & _PARTIAL
        if not retval & (_DEEP_EQUAL | _DEEP_SELECTIVE) and selective:
            found = _list_match(selective, text, file_type, hit)
            retval |= _SELECTIVE | _DEEP_SELECTIVE if found in (_RESTRICTED, _RULE_MATCH) else found & _PARTIAL
        retval = _node_match(node.parent, text, file_type, retval, hit)
        if retval & _SELECTED and negative:
            parent, dropped = text, False
            while True:
                k = parent.rfind("/")
                parent = parent[:k] if k > 0 else "/"
                if parent <= node.path:
                    break
                if _list_match(negative, parent, _FT_DIR, hit, unrestricted_only=True) == _RULE_MATCH:
                    retval, dropped = _NEGATIVE, True
                    break
            if not dropped:
                found = _list_match(negative, text, file_type, hit)
                if found == _RESTRICTED:
                    retval = _PARTIAL
                elif found == _RULE_MATCH:
                    retval = _NEGATIVE
    else:
        retval = _node_match(node.parent, text, file_type, retval | _RECURSED, hit)
    return retval & _SELECTED if retval & _SELECTED else retval & _PARTIAL


def _url_refusal(option: str, url: str) -> str | None:
    """Why AIDE 0.18.3 refuses a URL for a database option or report_url, as parse_url() and
    the option read it: the type before the first `:` (all of it without one), and for file
    URLs a host after `//`, which this version refuses even when it is localhost."""
    kind, _, rest = url.partition(":")
    if kind not in _URL_TYPES:
        return f"unknown URL-type: {kind!r}"
    if kind in ("http", "https", "ftp"):
        return "http, https and ftp URL support not compiled in, recompile AIDE with '--with-curl'"
    if kind == "file" and rest.startswith("//") and not rest.startswith("///"):
        if "/" not in rest[2:]:
            return f"invalid file-URL {url!r}: no path after hostname"
        return f"invalid file-URL {url!r}: AIDE 0.18.3 refuses a host name in a file URL, localhost included"
    if kind not in _URL_REFUSED[option]:
        return None
    if option == "report_url":
        return f"unsupported report URL-type: {kind!r}"
    return f"{option!r}: unsupported URL-type: {kind!r}"


def _workers_ok(text: str) -> bool:
    """Whether AIDE takes a num_workers value: a whole number strtol reads to the end, within a
    long and not negative, or such a number up to 100 followed by `%`. A lone `%` passes too:
    strtol stops before it, which is where AIDE wants it to stop."""
    if text == "%":
        return True
    m = _WORKERS.fullmatch(text)
    if m is None:
        return False
    n = int(m.group(1))
    return 0 <= n <= (100 if m.group(2) else _LONG_MAX)


class _Config:
    """AIDE's configuration evaluated (conf_eval.c) into its rule tree."""

    def __init__(self, ctx: FactContext) -> None:
        self.ctx = ctx
        self.tree = _Tree()
        self.groups = dict(_GROUPS)
        self.defines: dict[str, str] = {}
        self.databases: set[str] = set()  # the database options set so far
        self.database_in: tuple[str, str] | None = None  # its URL (@@{HOSTNAME} as NUL) and where
        self.include_file(AIDE_CONF, execute=False, depth=0, prefix="")

    def string(self, frags: list[Frag], where: str, hostname: str | None = None) -> str:
        """The text of a string with its macros expanded; @@{HOSTNAME} (unless defined) is
        `hostname` where given, and otherwise what only the host AIDE runs on could tell."""
        out = []
        for kind, text in frags:
            if kind == "s":
                out.append(text)
            elif text in self.defines:
                out.append(self.defines[text])
            elif text == "HOSTNAME":
                if hostname is None:
                    raise CannotTell(f"{where}: @@{{HOSTNAME}} is the name of the host AIDE runs on")
                out.append(hostname)
        return "".join(out)

    def attrs(self, expr: list[tuple[str, str]], where: str, text: str) -> frozenset[str]:
        value: frozenset[str] = frozenset()
        for op, name in expr:
            group = self.groups.get(name)
            if group is None:
                raise Refused(f"{where}: group {name!r} is not defined (line: {text!r})")
            value = group if op == "=" else value | group if op == "+" else value - group
        return value

    def path(self, value: str, where: str) -> str:
        if not value.startswith("/"):
            raise CannotTell(f"{where}: {value!r} is relative to the directory AIDE is started in")
        return value

    def run(self, stmts: list[_Stmt], depth: int, prefix: str) -> None:
        for s in stmts:
            getattr(self, "do_" + s.kind.lstrip("@"))(s, depth, prefix)

    def do_rule(self, s: _Stmt, depth: int, prefix: str) -> None:
        kind, frags, restriction, expr = s.args
        rx = prefix + self.string(frags, s.where)
        bits = 0
        for name in restriction or ():
            if not name.startswith("0"):
                if name not in _RESTRICTIONS:
                    raise Refused(f"{s.where}: invalid restriction {name!r} (line: {s.text!r})")
                bits |= _RESTRICTIONS[name]
        attrs = self.attrs(expr, s.where, s.text) - _UNSUPPORTED if expr else frozenset()
        try:
            compiled = compile_regex("^(?:" + rx + ")")
        except RegexError as e:
            raise CannotTell(f"{s.where}: AIDE's regex {rx!r} is PCRE2; secpolicy's RE2 cannot read it: {e}") from None
        self.tree.add(_Rule(kind, rx, bits, attrs, s.where, s.text, prefix, compiled))

    def do_group(self, s: _Stmt, depth: int, prefix: str) -> None:
        name, expr = s.args
        self.groups[name] = self.attrs(expr, s.where, s.text)

    def do_option(self, s: _Stmt, depth: int, prefix: str) -> None:
        name, value = s.args
        if name in _ATTR_OPTIONS:
            attrs = self.attrs(value, s.where, s.text)
            if name == "database_attrs" and attrs - _HASHES - _UNSUPPORTED:
                raise Refused(f"{s.where}: invalid attribute(s) for database_attrs (line: {s.text!r})")
            return
        if name not in _BOOL_OPTIONS and name not in _CHOICES and name not in _CHECKED_OPTIONS:
            return  # the others are read by AIDE for its database and report, and checked later
        if name in _URL_OPTIONS:
            if _URL_OPTIONS[name] in self.databases:
                return  # a database is set once: AIDE ignores a later value without reading it
            # the host's name can make a URL's path, not its type (unless it stands before the `:`)
            url = self.string(value, s.where, hostname="\0")
            if "\0" in url.partition(":")[0]:
                raise CannotTell(f"{s.where}: the URL's type holds @@{{HOSTNAME}}, the name of the host AIDE runs on")
            why = _url_refusal(_URL_OPTIONS[name], url)
            if why is not None:
                raise Refused(f"{s.where}: {why} (line: {s.text!r})")
            if name != "report_url":
                self.databases.add(_URL_OPTIONS[name])
            if _URL_OPTIONS[name] == "database_in":
                self.database_in = (url, s.where)
            return
        text = self.string(value, s.where)
        if name == "num_workers":
            if not _workers_ok(text):
                raise Refused(f"{s.where}: invalid number of workers: {text!r} (line: {s.text!r})")
            return
        if name == "verbose":
            raise Refused(f"{s.where}: 'verbose' option is no longer supported (line: {s.text!r})")
        if name == "root_prefix":
            raise CannotTell(f"{s.where}: root_prefix moves what AIDE checks away from /")
        if (name in _BOOL_OPTIONS and text not in ("true", "yes", "false", "no")
                or text not in _CHOICES.get(name, (text,))):
            raise Refused(f"{s.where}: invalid value {text!r} for {name} (line: {s.text!r})")

    def do_define(self, s: _Stmt, depth: int, prefix: str) -> None:
        name, frags = s.args
        self.defines[name] = self.string(frags, s.where)

    def do_undef(self, s: _Stmt, depth: int, prefix: str) -> None:
        self.defines.pop(s.args[0], None)

    def do_x_include_setenv(self, s: _Stmt, depth: int, prefix: str) -> None:
        self.string(s.args[1], s.where)  # only programs AIDE runs see it

    def do_if(self, s: _Stmt, depth: int, prefix: str) -> None:
        negate, func, frags = s.args
        value = self.string(frags, s.where)
        if func == "hostname":
            raise CannotTell(f"{s.where}: a hostname condition depends on the host AIDE runs on")
        if func == "exists":
            result = self.ctx.stat(self.path(value, s.where)) is not None
        else:
            result = value in self.defines
        self.run(s.body if result != negate else s.orelse, depth, prefix)

    def do_include(self, s: _Stmt, depth: int, prefix: str) -> None:
        execute, parts = s.args
        if depth + 1 >= 16:
            raise Refused(f"{s.where}: include files are nested too deeply")
        values = [self.string(p, s.where) for p in parts]
        path = self.path(values[0], s.where)
        if len(values) == 1:
            st = self.ctx.lstat(path)
            if st is None or not stat.S_ISREG(st.st_mode):
                raise Refused(f"{s.where}: @@include {path!r}: " + ("no such file" if st is None else "not a regular file"))
            self.include_file(path, execute and bool(st.st_mode & stat.S_IXUSR), depth + 1, prefix)
            return
        self.include_directory(s, path, values[1], values[2] if len(values) > 2 else None, execute, depth + 1, prefix)

    do_x_include = do_include

    def include_directory(self, s: _Stmt, path: str, rx: str, new_prefix: str | None, execute: bool,
                          depth: int, prefix: str) -> None:
        macro = "@@x_include" if execute else "@@include"
        try:
            names = compile_regex(rx)
        except RegexError as e:
            raise CannotTell(f"{s.where}: AIDE's regex {rx!r} is PCRE2; secpolicy's RE2 cannot read it: {e}") from None
        st = self.ctx.stat(path)
        if execute:
            if st is None:
                raise Refused(f"{s.where}: {macro}: stat for {path!r} failed")
            self.check_owner(s, path, st)
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise Refused(f"{s.where}: {macro}: failed to open directory {path!r}")
        if new_prefix:
            new_prefix = new_prefix.removesuffix("/")
            if not new_prefix.startswith("/"):
                raise Refused(f"{s.where}: {macro}: invalid rule prefix {new_prefix!r}")
        for name in sorted(self.ctx.listdir(path), key=lambda n: n.encode("utf-8", "surrogateescape")):
            file = f"{path}/{name}"
            try:
                fst = self.ctx.stat(file)
            except EvaluationError as e:  # a symlink loop
                raise Refused(f"{s.where}: {macro}: stat for {file!r} failed: {e}") from None
            if fst is None:
                raise Refused(f"{s.where}: {macro}: stat for {file!r} failed")
            if stat.S_ISREG(fst.st_mode) and _utf8(name) and names.search(name):
                run = execute and bool(fst.st_mode & stat.S_IXUSR)
                if run:
                    self.check_owner(s, file, fst)
                self.include_file(file, run, depth, prefix + (new_prefix or ""))

    def check_owner(self, s: _Stmt, path: str, st: os.stat_result) -> None:
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise Refused(f"{s.where}: @@x_include: bad ownership or modes for {path!r}")

    def include_file(self, path: str, execute: bool, depth: int, prefix: str) -> None:
        if execute:
            raise CannotTell(f"AIDE runs {path} and reads its output as configuration; secpolicy runs no "
                             "program from the system it scans")
        text = self.ctx.read_text(path)
        if text is None:
            raise Refused(f"cannot open config file {path!r}")
        self.run(_parse(text, path), depth, prefix)


_CONFIGS: weakref.WeakKeyDictionary[FactContext, _Config | EvaluationError] = weakref.WeakKeyDictionary()


def _config(ctx: FactContext) -> _Config:
    """The scanned root's AIDE configuration, evaluated once per scan."""
    config = _CONFIGS.get(ctx)
    if config is None:
        try:
            config = _Config(ctx)
        except EvaluationError as e:
            config = e
        _CONFIGS[ctx] = config  # read once per scan, for every path asked about
    if isinstance(config, EvaluationError):
        raise config
    return config


class AideRule:
    def __init__(self, ctx: FactContext, path: str) -> None:
        # AIDE walks the file system without following links: /sbin/auditctl is checked (if at
        # all) as /usr/sbin/auditctl where /sbin links to usr/sbin
        self.path = real_path(ctx, path)
        self.selected, self.kind, self.rule = False, "none", None
        self.attributes: list[str] = []
        if ctx.stat(AIDE_CONF) is None:
            self._where = f"{AIDE_CONF} (absent: AIDE has no configuration)"
            return
        self._where = f"{AIDE_CONF} (no rule selects {self.path})"
        aide = shutil.which("aide") if ctx.live else None
        if aide is not None:
            self._ask(aide)
            return
        config = _config(ctx)
        found, rule = config.tree.check(self.path, _FT_FILE)
        if rule is not None:
            self.rule, self._where = rule.shown(), f"{rule.where} (the rule for {self.path})"
            self.kind = "negative" if not found & _SELECTED else rule.kind
        if found & _SELECTED:
            assert rule is not None
            self.selected = True
            self.attributes = [a for a in _ATTRIBUTES if a in rule.attrs]

    def _ask(self, aide: str) -> None:
        """The live host's AIDE, asked as the CIS audit asks it."""
        command = [aide, "--config", AIDE_CONF, "-p", f"f:{self.path}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EvaluationError(f"{' '.join(command)}: {e}") from None
        m = _AIDE_P.match(done.stdout)
        if done.returncode not in (0, 1) or m is None:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise EvaluationError(f"{' '.join(command)} failed (exit {done.returncode}): "
                                  f"{said[-1] if said else 'no output'}")
        if m.group(2):
            self.rule, self.kind = done.stdout.split(" rule: ", 1)[1].strip(), m.group(2)
            self._where = f"{m.group(6)}:{m.group(7)} (the rule for {self.path})"
        if m.group(1) == "X":
            self.selected = True
            self.attributes = [a for a in m.group(5).split("+") if a]

    def missing(self, wanted: list[str]) -> list[str]:
        return [a for a in wanted if a not in self.attributes]

    def describe(self) -> str:
        return f"AIDE's rule for {self.path}"

    def where(self, name: str, *args: Any) -> str | None:
        return self._where


class AideConfig:
    """Where AIDE reads its baseline database from (`database_in`), as its configuration says."""

    def __init__(self, ctx: FactContext) -> None:
        self.exists = ctx.stat(AIDE_CONF) is not None
        self.database_in: str | None = None
        if not self.exists:
            self._where = f"{AIDE_CONF} (absent: AIDE has no configuration)"
            return
        config = _config(ctx)
        if config.database_in is None:
            self._where = f"{AIDE_CONF} (no database_in: AIDE refuses to check without one)"
            return
        url, where = config.database_in
        self._where = where
        kind, _, rest = url.partition(":")
        if kind != "file":
            self._where = f"{where} (database_in is read from {kind}, not a file)"
            return
        path = rest[2:] if rest.startswith("///") else rest
        if "\0" in path:
            raise CannotTell(f"{where}: the database's path holds @@{{HOSTNAME}}, the name of the host AIDE runs on")
        self.database_in = config.path(path, where)

    def describe(self) -> str:
        return "AIDE's configuration"

    def where(self, name: str, *args: Any) -> str | None:
        return self._where


AIDE_CONFIG = ObjectType(
    "aide_config",
    {"exists": BOOL, "database_in": STR},
    doc="AIDE's configuration (/etc/aide/aide.conf and what it includes), evaluated as AIDE 0.18.3 does",
    field_docs={
        "exists": "whether /etc/aide/aide.conf exists",
        "database_in": "the file AIDE reads its baseline database from (`database_in` or `database`, the first"
        " one set, macros expanded, a `file:` URL): null when no configuration, no database_in (AIDE refuses"
        " to check) or a database read from stdin or a descriptor",
    },
)


def register(reg: FactRegistry) -> None:
    reg.register(
        "aide_config",
        AideConfig,
        returns=AIDE_CONFIG,
        doc="where AIDE reads its baseline database from, as its configuration says (`aide --check` opens it)",
    )
    reg.register(
        "aide_rule",
        AideRule,
        params=(STR,),
        returns=AIDE_RULE,
        doc="the rule AIDE applies to a regular file, as `aide -p f:PATH` tells it",
    )
