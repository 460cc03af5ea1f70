"""The nftables ruleset (`nft_ruleset`): on the live host what `nft list ruleset` prints; under
--root the saved configuration nftables.service loads (/etc/nftables.conf and its includes),
read as `nft -f` reads it: tables, chains, hooks and the last policy each base chain gets."""

from __future__ import annotations

import re
import stat
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.regex import compile_regex
from secpolicy.dsl.types import BOOL, REGEX, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at, run_tool, sbin_tool

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["NFT_RULESET", "NFT_SAVED", "NftRuleset", "nft_includes", "nft_lines", "nft_tokens", "register"]


# --- nftables ------------------------------------------------------------------------------------------
NFT_RULESET = ObjectType(
    "nft_ruleset",
    {"live": BOOL, "source": STR, "tables": ListType(STR), "saved_tables": ListType(STR)},
    methods={
        "has_line": Method((REGEX,), BOOL, "whether a line of the ruleset matches the regex (the"
                           " text of comments and quoted strings is data: it makes no line of its own)"),
        "base_chain": Method((STR,), BOOL, "whether a filter base chain on the hook (input, forward, output) is"
                             " in an ip, ip6 or inet table that is not dormant"),
        "policy_drop": Method((STR, STR), BOOL, 'whether IPv4 ("ip") or IPv6 ("ip6") traffic on the hook meets'
                              " a filter base chain whose final policy is drop (a drop in any base chain is final)"),
        "has_rule": Method((STR, REGEX), BOOL, "whether a rule of a filter base chain on the hook, or of a chain"
                           " it jumps or goes to, matches the regex; a rule is one line, its words separated by"
                           " one blank, `$variables` replaced, a quoted string's blanks shown as `_`"),
    },
    doc="the nftables ruleset: on the live host the one in force, as `nft list ruleset` prints it (what the CIS"
    " audits read); under --root, or where nft is not installed, the saved configuration",
    field_docs={
        "live": "the ruleset is the one in force, printed by nft (its own spelling: `priority filter; policy drop;`"
        " on the hook line, `counter packets 0 bytes 0`)",
        "source": '"nft list ruleset", or the saved files read: /etc/nftables.conf and the files its `include`'
        " statements name, as nft resolves them",
        "tables": '"family name" of each table of the ruleset ("inet filter")',
        "saved_tables": '"family name" of each table `nft -f /etc/nftables.conf` makes, what nftables.service'
        " loads at boot (read on the live host too)",
    },
)
NFT_SAVED = "/etc/nftables.conf"  # what nftables.service loads: nft -f /etc/nftables.conf
_NFT_INCLUDE_PATH = "/etc"  # where nft looks for a relative include (no -I given)
_NFT_MAX_INCLUDE_DEPTH = 16  # nft's own limit
_NFT_INCLUDE_BEFORE = re.compile(r"(?:^|[\s;{}])include[ \t]+\Z")
# What nft's scanner takes whole: a quoted string (no escapes: it cannot hold a quote, but may
# hold line breaks) and a `#` comment, to the end of its line.
_NFT_DATA = re.compile(r'"[^"]*"|#[^\n]*')
_BLANK = re.compile(r"[\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
# Statements that undo what the ruleset has said so far, at the start of a statement of a line
# of nft_lines() (comments gone, quoted strings made one word): `flush ruleset` drops every
# table before it; what deleting or flushing one table or chain leaves, only nft can tell.
_NFT_FLUSH_RULESET = re.compile(r"(?:^|[;{}])[ \t]*flush[ \t]+ruleset\b")
_NFT_UNDO = re.compile(r"(?:^|[;{}])[ \t]*(?:delete|destroy|flush)[ \t]+(?:table|chain)\b")


def nft_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines of an nft ruleset as its syntax has them: a line
    break inside a quoted string (a comment, a log prefix) ends no line, the blanks inside
    one are shown as `_`, and `#` comments are dropped, so text given as data never reads as
    a statement: `comment "x<newline>iif lo accept"` or `comment "hook input policy drop"`
    match no rule's pattern. A line is numbered by where it starts."""
    out: list[tuple[int, str]] = []
    line: list[str] = []
    start = n = 1  # where the current line starts; the physical line reached

    def plain(chunk: str) -> None:
        nonlocal line, start, n
        *ended, rest = chunk.split("\n")
        for piece in ended:
            out.append((start, "".join(line) + piece))
            line, n = [], n + 1
            start = n
        line.append(rest)

    pos = 0
    for m in _NFT_DATA.finditer(text):
        plain(text[pos : m.start()])
        token = m.group()
        if token.startswith('"'):
            line.append(_BLANK.sub("_", token))
            n += token.count("\n")
        pos = m.end()
    plain(text[pos:])
    if "".join(line):
        out.append((start, "".join(line)))
    return out


def nft_includes(text: str) -> list[tuple[int, str]]:
    """(line number, file name) of each `include "file"` statement of an nft file, comments and
    quoted strings other than the name left aside."""
    out: list[tuple[int, str]] = []
    pos = 0
    for m in _NFT_DATA.finditer(text):
        if m.group().startswith('"') and _NFT_INCLUDE_BEFORE.search(text, pos, m.start()):
            out.append((text.count("\n", 0, m.start()) + 1, m.group()[1:-1]))
        pos = m.end()
    return out


# The structure of a saved ruleset, as nft 1.0's parser reads it far enough to know each table,
# each chain's type, hook and final policy, and each chain's rules: nft_tokens() takes the text
# as its scanner does, _NftReader the block syntax and the commands of `nft -f`. What it cannot
# follow is an error naming the line: nft refuses a whole file for one error, loading nothing.
_NFT_TOKEN = re.compile(r'"[^"]*"|#[^\n]*|\\\n|\n|[{};]|(?:[^\s{};"#\\]|\\(?!\n))+|[^\S\n]+|"')
_NFT_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_./-]*)")
_NFT_JUMP = re.compile(r"\b(?:jump|goto) (\S+)")
_NFT_FAMILIES = frozenset({"ip", "ip6", "inet", "arp", "bridge", "netdev"})
_NFT_HOOKS = frozenset({"prerouting", "input", "forward", "output", "postrouting", "ingress", "egress"})
_NFT_IP_FAMILIES = {"ip": ("ip", "inet"), "ip6": ("ip6", "inet")}  # the tables IPv4 / IPv6 traffic meets
# nft's named chain priorities (bridge has its own) and what they stand for
_NFT_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_NFT_BRIDGE_PRIORITIES = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}
_NFT_PRIORITY = re.compile(r"([a-z]+)?([+-]?\d+)?")
# Objects of a table other than chains: their blocks are skipped (no 4.3.x control reads them).
_NFT_OBJECTS = frozenset({"set", "map", "flowtable", "counter", "quota", "limit", "secmark", "synproxy", "ct",
                          "element", "meter"})
# The words a rule can start with in nft 1.0 (a statement or an expression's first keyword); a
# rule starting with another word is one nft refuses (a misspelt `polcy drop;` or `iff lo accept`).
_NFT_RULE_START = frozenset({
    "accept", "drop", "reject", "continue", "return", "jump", "goto", "queue", "counter", "log",
    "limit", "quota", "notrack", "masquerade", "snat", "dnat", "redirect", "tproxy", "synproxy", "dup",
    "fwd", "meta", "ct", "ip", "ip6", "inet", "tcp", "udp", "udplite", "sctp", "dccp", "th", "icmp",
    "icmpv6", "igmp", "ah", "esp", "comp", "ipcomp", "ether", "vlan", "arp", "rt", "rt0", "rt2", "rt4",
    "hbh", "frag", "dst", "mh", "srh", "exthdr", "fib", "numgen", "hash", "jhash", "symhash", "osf",
    "socket", "xfrm", "ipsec", "iif", "oif", "iifname", "oifname", "iiftype", "oiftype", "iifgroup",
    "oifgroup", "iifkind", "oifkind", "mark", "skuid", "skgid", "nfproto", "l4proto", "length",
    "protocol", "pkttype", "cpu", "cgroup", "rtclassid", "ibrname", "obrname", "ibriport", "obriport",
    "ibrpvid", "ibrvproto", "nftrace", "secmark", "secpath", "time", "day", "hour", "random", "sdif",
    "sdifname", "set", "add", "update", "delete", "meter", "flow", "comment", "gre", "gretap",
    "geneve", "vxlan", "last", "xt", "tcpopt",
})
_NftToken = tuple[str, str, str, int]  # kind ("word", "str", "sep", "{", "}", "end"), text, path, line
_NftTables = dict[tuple[str, str], "_NftTable"]  # by (family, name), in the order made


def nft_tokens(text: str, path: str) -> list[_NftToken]:
    """The tokens of an nft file as its scanner takes them: a quoted string whole (it may hold
    line breaks), `#` comments and a backslash before a line break dropped, `;` and a line break
    both separators; the file's end is one too."""
    out: list[_NftToken] = []
    n = 1
    for m in _NFT_TOKEN.finditer(text):
        tok = m.group()
        if tok == '"':
            raise EvaluationError(f"{at(path, n)}: a quoted string is not closed: nft refuses the whole file"
                                  " and nftables.service loads none of it")
        if tok.startswith('"'):
            out.append(("str", tok, path, n))
        elif tok in ("\n", ";"):
            out.append(("sep", tok, path, n))
        elif tok in ("{", "}"):
            out.append((tok, tok, path, n))
        elif not (tok.startswith("#") or tok.isspace() or tok == "\\\n"):
            out.append(("word", tok, path, n))
        n += tok.count("\n")
    out.append(("sep", "", path, n))
    return out


class _NftChain:
    def __init__(self, table: _NftTable, name: str, where: str) -> None:
        self.table, self.name, self.where = table, name, where
        self.type: str | None = None
        self.hook: str | None = None
        self.hook_at = where
        self.spec: tuple[str, ...] = ()  # what identifies a base chain: type, hook, device, priority
        self.policy: str | None = None
        self.policy_at = where
        self.rules: list[tuple[str, str]] = []  # (where, the rule as one line: tokens joined by a blank)

    def __str__(self) -> str:
        return f"{self.table} {self.name}"


class _NftTable:
    def __init__(self, family: str, name: str, where: str) -> None:
        self.family, self.name, self.where = family, name, where
        self.dormant = False  # `flags dormant`: its chains see no packet
        self.chains: dict[str, _NftChain] = {}

    def __str__(self) -> str:
        return f"{self.family} {self.name}"


class _NftFrame:
    def __init__(self, tokens: list[_NftToken], depth: int) -> None:
        self.tokens, self.pos, self.depth = tokens, 0, depth


class _NftReader:
    """The tables and chains a ruleset file makes, read as `nft -f` reads it: tables, chains and
    their blocks, `type .. hook .. priority ..;` and `policy ..;` statements, rules, the `add`,
    `create` and `insert` commands, `define` (scoped by block), `include` where it stands and
    `flush ruleset`. A block, a later `chain` statement or command adds to a chain made before
    (the last policy given is the chain's). `strict` (a saved file) also refuses a rule that
    starts with no word nft knows; the listing of `nft list ruleset` is taken as nft wrote it."""

    def __init__(self, tokens: list[_NftToken], strict: bool, saved: NftRuleset | None = None) -> None:
        self.tables: _NftTables = {}
        self._stack = [_NftFrame(tokens, 0)]
        self._end: _NftToken = ("end", "", tokens[-1][2], tokens[-1][3]) if tokens else ("end", "", "?", 0)
        self._strict, self._saved = strict, saved
        self._scopes: list[dict[str, str]] = [{}]
        self._pending: list[_NftFrame] = []

    # -- tokens --
    def _peek(self) -> _NftToken:
        while self._stack:
            frame = self._stack[-1]
            if frame.pos < len(frame.tokens):
                return frame.tokens[frame.pos]
            self._stack.pop()
        return self._end

    def _next(self) -> _NftToken:
        tok = self._peek()
        if self._stack:
            self._stack[-1].pos += 1
        return tok

    def _refuse(self, tok: _NftToken, why: str) -> EvaluationError:
        return EvaluationError(f"{at(tok[2], tok[3])}: {why}: nft refuses the whole ruleset, and nftables.service"
                              " loads none of it")

    def _cannot_tell(self, tok: _NftToken, why: str) -> EvaluationError:
        return EvaluationError(f"{at(tok[2], tok[3])}: {why}: which ruleset nft makes of it this reader cannot"
                              " tell; `nft list ruleset` on the host tells")

    def _word(self, what: str) -> _NftToken:
        tok = self._next()
        if tok[0] != "word":
            raise self._refuse(tok, f"{what} expected, found {tok[1].strip() or tok[0]!r}")
        return tok

    def _separator(self) -> None:
        """A statement ends with a `;` or a line break (or the file's end at the top level); an
        include takes effect after it."""
        tok = self._peek()
        if tok[0] == "sep":
            self._next()
        elif tok[0] != "end" or len(self._scopes) > 1:
            raise self._refuse(tok, f"{tok[1] or 'the end of the file'!r} where a statement should have ended"
                              " (a newline or `;` is missing)")
        self._stack.extend(reversed(self._pending))
        self._pending = []

    def _rest(self, first: _NftToken | None = None) -> list[_NftToken]:
        """The tokens up to the statement's end, braces balanced (a set may span lines)."""
        out, depth = ([first] if first else []), 0
        while True:
            tok = self._peek()
            if tok[0] == "end":
                if depth:
                    raise self._refuse(tok, "a `{` is not closed")
                return out
            if depth == 0 and tok[0] in ("sep", "}"):
                return out
            depth += {"{": 1, "}": -1}.get(tok[0], 0)
            out.append(self._next())

    def _text(self, tokens: list[_NftToken]) -> str:
        """A statement as one line: `$name` replaced by its definition, a quoted string's
        blanks shown as `_` (text given as data reads as no statement)."""
        words = []
        for tok in tokens:
            if tok[0] == "str":
                words.append(_BLANK.sub("_", tok[1]))
            else:
                words.append(self._substitute(tok))
        return " ".join(words)

    def _substitute(self, tok: _NftToken) -> str:
        return _NFT_VAR.sub(lambda m: self._variable(tok[2], tok[3], m.group(1)), tok[1])

    def _variable(self, path: str, line: int, name: str) -> str:
        for scope in reversed(self._scopes):
            if name in scope:
                return scope[name]
        raise self._refuse(("word", name, path, line), f"${name} is not defined here")

    # -- statements --
    def read(self) -> _NftTables:
        while (tok := self._next())[0] != "end":
            if tok[0] != "sep":
                self._command(tok)
                self._separator()
        return self.tables

    def _common(self, tok: _NftToken) -> bool:
        """`include` and `define`, which any block may hold."""
        if tok[1] == "include":
            name = self._next()
            if name[0] != "str":
                raise self._refuse(name, "include takes a quoted file name")
            depth = self._stack[-1].depth + 1 if self._stack else 1
            if self._saved is None:
                raise self._cannot_tell(tok, "an include in nft's own listing")
            self._pending = [_NftFrame(t, depth) for t in self._saved.included_tokens(name[1][1:-1], at(tok[2], tok[3]), depth)]
        elif tok[1] in ("define", "redefine"):
            name = self._word("a variable name")
            if self._next()[1] != "=":
                raise self._refuse(name, f"{tok[1]} {name[1]} without `=`")
            if tok[1] == "define" and name[1] in self._scopes[-1]:  # nft: redefinition of symbol
                raise self._refuse(name, f"${name[1]} is defined twice (nft's `redefine` changes a variable)")
            self._scopes[-1][name[1]] = self._text(self._rest())
        elif tok[1] == "undefine":
            name = self._word("a variable name")
            if self._scopes[-1].pop(name[1], None) is None:
                raise self._refuse(name, f"undefine {name[1]}: not defined here")
        else:
            return False
        return True

    def _command(self, tok: _NftToken) -> None:
        verb = tok[1] if tok[0] == "word" else ""
        what = self._word(f"what to {verb}") if verb in ("add", "create", "insert", "flush") else tok
        if self._common(tok):
            pass
        elif verb in ("table", "chain") or (verb in ("add", "create") and what[1] in ("table", "chain")):
            self._object(what[1], create=verb == "create")
        elif verb in ("add", "insert") and what[1] == "rule":
            self._add_rule()
        elif (verb in ("add", "create") and what[1] in _NFT_OBJECTS) or (verb == "flush" and what[1] in ("set", "map", "meter")):
            self._rest()  # sets, maps and other objects: no 4.3.x control reads them
        elif verb == "flush" and what[1] == "ruleset":
            self._rest()
            self.tables.clear()  # nft drops every table made before it, in any file
        elif verb == "flush" and what[1] in ("table", "chain"):
            self._undo(verb, what[1])
        elif verb == "delete" and self._peek()[1] in ("table", "chain"):
            self._undo(verb, self._next()[1])
        elif verb in ("add", "create", "insert"):
            raise self._cannot_tell(what, f"{verb} {what[1]}")
        elif verb in ("flush", "delete", "destroy", "replace", "rename", "reset"):
            raise self._cannot_tell(tok, f"{verb} {(what if verb == 'flush' else self._peek())[1]}...: what it leaves only nft can tell (the saved lines"
                                   " before it are not the ruleset loaded)")
        elif tok[0] == "word":
            raise self._cannot_tell(tok, f"`{verb}`: no nft command this reader follows")
        else:
            raise self._refuse(tok, f"{tok[1]!r} where a command should start")

    def _undo(self, verb: str, kind: str) -> None:
        """`delete table|chain` and `flush table|chain` on what was made before, as nft does in
        its transaction: a table or chain that does not exist, a chain that still holds rules
        or that a rule jumps to, is refused (ENOENT, EBUSY), and nft then loads nothing.
        Flushing keeps the chains, their hooks and policies, and drops their rules."""
        if kind == "table":
            first = self._word("a table family or name")
            family, name = ("ip", first) if first[1] not in _NFT_FAMILIES else (first[1], self._word("a table name"))
            if name[1] == "handle":
                raise self._cannot_tell(name, f"{verb} table by handle")
            table = self.tables.get((family, name[1]))
            if table is None:
                raise self._refuse(name, f"{verb} table {family} {name[1]}: no such table")
            chains = list(table.chains.values())
            if verb == "delete":
                del self.tables[(family, name[1])]
        else:
            table, name = self._existing()
            if name[1] == "handle":
                raise self._cannot_tell(name, f"{verb} chain by handle")
            chain = table.chains.get(name[1])
            if chain is None:
                raise self._refuse(name, f"{verb} chain {table} {name[1]}: no such chain")
            chains = [chain]
            if verb == "delete":
                jumped = {m.group(1) for other in table.chains.values() for _, rule in other.rules
                          for m in _NFT_JUMP.finditer(rule)}
                if chain.rules or chain.name in jumped:
                    raise self._refuse(name, f"delete chain {chain}: it still holds rules or a rule jumps to it"
                                             " (the kernel refuses it: EBUSY)")
                del table.chains[name[1]]
        if verb == "flush":
            for chain in chains:
                chain.rules.clear()
        self._rest()

    def _table(self, create: bool) -> _NftTable:
        first = self._word("a table family or name")
        family, name = ("ip", first) if first[1] not in _NFT_FAMILIES else (first[1], self._word("a table name"))
        key = (family, name[1])
        if create and key in self.tables:
            raise self._refuse(name, f"create table {family} {name[1]}: it exists")
        return self.tables.setdefault(key, _NftTable(family, name[1], at(name[2], name[3])))

    def _existing(self) -> tuple[_NftTable, _NftToken]:
        """The table a `chain` or `rule` command names, which must exist, and the chain's name."""
        first = self._word("a table family or name")
        family, name = ("ip", first) if first[1] not in _NFT_FAMILIES else (first[1], self._word("a table name"))
        table = self.tables.get((family, name[1]))
        if table is None:
            raise self._refuse(name, f"{family} {name[1]}: no such table")
        return table, self._word("a chain name")

    def _object(self, kind: str, create: bool) -> None:
        if kind == "table":
            table = self._table(create)
            if self._peek()[0] == "{":
                self._block(self._next(), table, new=False)
            return
        table, name = self._existing()
        if create and name[1] in table.chains:
            raise self._refuse(name, f"create chain {table} {name[1]}: it exists")
        self._chain(table, name)

    def _chain(self, table: _NftTable, name: _NftToken) -> None:
        chain = table.chains.get(name[1])
        new = chain is None
        if chain is None:
            chain = table.chains[name[1]] = _NftChain(table, name[1], at(name[2], name[3]))
        if self._peek()[0] == "{":
            self._block(self._next(), chain, new)
        if chain.policy is not None and chain.hook is None:
            raise self._refuse(name, f"chain {chain}: a policy on a chain with no hook (the kernel refuses it)")

    def _block(self, opened: _NftToken, into: _NftTable | _NftChain, new: bool) -> None:
        """A table's or chain's `{ ... }`: each statement ends with a newline or `;`."""
        self._scopes.append({})
        while (tok := self._next())[0] != "}":
            if tok[0] == "end":
                raise self._refuse(opened, "this `{` is never closed")
            if tok[0] == "sep":
                continue
            if isinstance(into, _NftTable):
                self._table_item(into, tok)
            else:
                self._chain_item(into, tok, new)
            self._separator()
        self._scopes.pop()

    def _table_item(self, table: _NftTable, tok: _NftToken) -> None:
        what = tok[1] if tok[0] == "word" else ""
        if self._common(tok):
            return
        if what == "chain":
            self._chain(table, self._word("a chain name"))
        elif what == "flags":
            table.dormant = "dormant" in self._text(self._rest()).replace(",", " ").split()
        elif what == "comment":
            if self._next()[0] != "str":
                raise self._refuse(tok, "comment takes a quoted string")
        elif what in _NFT_OBJECTS or not self._strict:
            self._rest()
        else:
            raise self._refuse(tok, f"{tok[1]!r}: not something a table block holds")

    def _chain_item(self, chain: _NftChain, tok: _NftToken, new: bool) -> None:
        what = tok[1] if tok[0] == "word" else ""
        if self._common(tok):
            return
        if what == "type":
            self._hook(chain, tok, new)
        elif what == "policy":
            policy = self._next()
            value = self._text([policy])  # a variable's value is a quoted "accept" or "drop"
            if policy[1].startswith("$"):
                value = value[1:-1] if value[:1] == '"' else f"{policy[1]} ({value})"
            if policy[0] != "word" or value not in ("accept", "drop"):
                raise self._refuse(policy, f"policy {policy[1]}: a chain's policy is accept or drop")
            chain.policy, chain.policy_at = value, at(policy[2], policy[3])
        elif what in ("comment", "flags", "devices"):
            self._rest()
        else:
            self._rule(chain, tok)

    def _hook(self, chain: _NftChain, tok: _NftToken, new: bool) -> None:
        """`type T hook H [device D] priority P`, all on one line."""
        kind = self._word("a chain type")
        if kind[1] not in ("filter", "nat", "route"):
            raise self._refuse(kind, f"type {kind[1]}: not a chain type (filter, nat, route)")
        if self._word("hook")[1] != "hook":
            raise self._refuse(kind, "`type` without `hook`")
        hook = self._word("a hook")
        if hook[1] not in _NFT_HOOKS:
            raise self._refuse(hook, f"hook {hook[1]}: not a hook nft knows")
        spec = self._rest()
        words = [t[1] for t in spec]
        if "priority" not in words or words[-1] == "priority":
            raise self._refuse(hook, "a base chain without a priority")
        device, priority = words[: words.index("priority")], "".join(words[words.index("priority") + 1 :])
        named = _NFT_BRIDGE_PRIORITIES if chain.table.family == "bridge" else _NFT_PRIORITIES
        m = _NFT_PRIORITY.fullmatch(priority)
        if m and m.group(0) and (m.group(1) is None or m.group(1) in named):
            priority = str(named.get(m.group(1) or "", 0) + int(m.group(2) or 0))
        key = (kind[1], hook[1], *device, priority)
        if chain.hook is None and not new:
            raise self._refuse(tok, f"chain {chain}: made before with no hook (the kernel refuses to hook it now)")
        if chain.hook is not None and chain.spec != key:
            raise self._cannot_tell(tok, f"chain {chain}: its type, hook or priority is not the one it was made with")
        chain.type, chain.hook, chain.spec, chain.hook_at = kind[1], hook[1], key, at(tok[2], tok[3])

    def _rule(self, chain: _NftChain, first: _NftToken) -> None:
        tokens = self._rest(first)
        if self._strict and not (first[0] == "word" and (first[1] in _NFT_RULE_START or first[1].startswith("@"))):
            raise self._refuse(first, f"{first[1]!r}: no nft statement starts so")
        chain.rules.append((at(first[2], first[3]), self._text(tokens)))

    def _add_rule(self) -> None:
        """`add rule`/`insert rule` [family] table chain [position N | handle N | index N] rule."""
        table, name = self._existing()
        chain = table.chains.get(name[1])
        if chain is None:
            raise self._refuse(name, f"chain {table} {name[1]}: no such chain")
        if self._peek()[1] in ("position", "handle", "index"):
            self._next()
            self._word("a number")
        first = self._next()
        if first[0] != "word":
            raise self._refuse(first, "a rule expected")
        self._rule(chain, first)


class NftRuleset:
    """The ruleset nftables holds, asked of nft on the live host; the saved files elsewhere."""

    def __init__(self, ctx: FactContext) -> None:
        self._line_of: dict[str, str | None] = {}
        self._lines_undone: str | None = None  # where a saved file deletes or flushes a table or chain
        self._rule_of: dict[tuple[str, str], str | None] = {}
        self._ctx = ctx
        self._saved: _NftTables | None = None  # what /etc/nftables.conf makes, read when asked
        # has_line's view: the lines, in nft's order (for the saved files, read when first asked)
        self._lines: list[tuple[str, int, str]] | None = None
        self._files: list[str] = []  # the saved files the structure was read from
        self._tables: _NftTables
        nft = sbin_tool("nft") if ctx.live else None
        if nft is not None:
            done = run_tool([nft, "list", "ruleset"], "nft list ruleset")
            if done.returncode != 0:
                said = done.stderr.strip().splitlines()
                raise EvaluationError(f"nft list ruleset failed (exit {done.returncode}): "
                                      f"{said[-1] if said else 'no output'}; the CIS audits need it (run as root)")
            self.live, self.source = True, "nft list ruleset"
            self._lines = [(self.source, n, line) for n, line in nft_lines(done.stdout)]
            self._tables = _NftReader(nft_tokens(done.stdout, self.source), strict=False).read()
            return
        self.live = False
        self._tables = self._saved = self._read_structure()
        self.source = ", ".join(self._files) or f"{NFT_SAVED} (absent)"

    def _read_saved(self, path: str, depth: int) -> None:
        """A saved file's lines in the order nft reads them: an `include` statement's files
        where it stands (nft reads an included file there, as if its text were inline)."""
        text = self._ctx.read_text(path)
        if text is None:
            if depth == 0:
                return
            raise EvaluationError(f"{path}: included but absent")
        includes = nft_includes(text)
        for n, line in nft_lines(text):
            self._statement(path, n, line)
            while includes and includes[0][0] <= n:
                where, name = at(path, includes[0][0]), includes.pop(0)[1]
                if depth + 1 >= _NFT_MAX_INCLUDE_DEPTH:
                    raise EvaluationError(f"{where}: include nested too deeply (nft stops at {_NFT_MAX_INCLUDE_DEPTH} levels)")
                for included in self._included(name, where):
                    self._read_saved(included, depth + 1)

    def _statement(self, path: str, n: int, line: str) -> None:
        """Keep a saved line, after what `flush ruleset` leaves of the lines before it. After a
        `delete` or `flush` of a table or chain the lines are not the ruleset loaded: has_line
        cannot tell (the tables and chains read as nft reads them can)."""
        undo = _NFT_UNDO.search(line)
        if undo is not None and self._lines_undone is None:
            self._lines_undone = f"{at(path, n)}: {undo.group().strip(' ;{}')}"
        flushed = None
        for flushed in _NFT_FLUSH_RULESET.finditer(line):
            pass
        assert self._lines is not None
        if flushed is not None:
            self._lines.clear()  # nft drops every table defined before it, in any file
            line = line[flushed.end():]
        self._lines.append((path, n, line))

    def _included(self, name: str, where: str) -> list[str]:
        """The files `include "name"` reads, as nft 1.0 resolves it: a relative name in /etc;
        a pattern (`*`, `?`, `[`) matching regular files, hidden ones only when named so, in
        sorted order and possibly none; a plain name, one file that must exist, else nft
        refuses the whole ruleset and nftables.service loads none."""
        path = name if name.startswith("/") else f"{_NFT_INCLUDE_PATH}/{name}"
        if not any(c in name for c in "*?["):
            if self._ctx.lstat(path) is None:
                raise EvaluationError(f'{where}: include "{name}": no such file, so nft refuses the whole ruleset')
            return [path]
        return [p for p in self._ctx.glob(path) if (st := self._ctx.stat(p)) is not None and not stat.S_ISDIR(st.st_mode)]

    def _read_structure(self) -> _NftTables:
        """The tables `nft -f /etc/nftables.conf` makes, with their chains (none without the file)."""
        text = self._ctx.read_text(NFT_SAVED)
        self._files = [] if text is None else [NFT_SAVED]
        return {} if text is None else _NftReader(nft_tokens(text, NFT_SAVED), strict=True, saved=self).read()

    def included_tokens(self, name: str, where: str, depth: int) -> list[list[_NftToken]]:
        """The tokens of each file an `include` statement at `where` reads, in nft's order."""
        if depth >= _NFT_MAX_INCLUDE_DEPTH:
            raise EvaluationError(f"{where}: include nested too deeply (nft stops at {_NFT_MAX_INCLUDE_DEPTH} levels)")
        out = []
        for path in self._included(name, where):
            text = self._ctx.read_text(path)
            if text is None:
                raise EvaluationError(f"{path}: included but absent")
            self._files.append(path)
            out.append(nft_tokens(text, path))
        return out

    def _match_line(self, regex: str) -> str | None:
        if self._lines is None:
            self._lines = []
            self._read_saved(NFT_SAVED, 0)
        if self._lines_undone is not None:
            raise EvaluationError(
                f"{self._lines_undone}...: which lines of the saved files make the ruleset only nft can tell (has_line"
                " reads lines; base_chain, policy_drop and has_rule follow what it deletes and flushes)")
        if regex not in self._line_of:
            rx = compile_regex(regex)
            self._line_of[regex] = next((at(path, n) for path, n, line in self._lines if rx.search(line)), None)
        return self._line_of[regex]

    def has_line(self, regex: str) -> bool:
        return self._match_line(regex) is not None

    @property
    def tables(self) -> list[str]:
        return [str(t) for t in self._tables.values()]

    @property
    def saved_tables(self) -> list[str]:
        if self._saved is None:
            self._saved = self._read_structure()
        return [str(t) for t in self._saved.values()]

    def _base_chains(self, hook: str, families: tuple[str, ...] = ("ip", "ip6", "inet")) -> list[_NftChain]:
        """The filter chains on `hook` of the tables of `families` that see packets (not dormant)."""
        return [c for t in self._tables.values() if t.family in families and not t.dormant
                for c in t.chains.values() if c.type == "filter" and c.hook == hook]

    def base_chain(self, hook: str) -> bool:
        return bool(self._base_chains(hook))

    def _met_by(self, hook: str, family: str) -> list[_NftChain]:
        if family not in _NFT_IP_FAMILIES:
            raise EvaluationError(f'nft_ruleset.policy_drop: family {family!r}: "ip" (IPv4) or "ip6" (IPv6)')
        return self._base_chains(hook, _NFT_IP_FAMILIES[family])

    def policy_drop(self, hook: str, family: str) -> bool:
        # Every base chain on a hook sees the packet, and a drop in any is final: one is enough.
        return any(c.policy == "drop" for c in self._met_by(hook, family))

    def _rule_at(self, hook: str, regex: str) -> str | None:
        """Where the first rule matching `regex` is, of a filter base chain on `hook` or of a
        chain one of their rules jumps or goes to (the rules of that chain are theirs)."""
        if (hook, regex) not in self._rule_of:
            rx, found = compile_regex(regex), None
            todo, seen = self._base_chains(hook), set()
            while todo and found is None:
                chain = todo.pop(0)
                if id(chain) in seen:
                    continue
                seen.add(id(chain))
                for where, text in chain.rules:
                    if rx.search(text):
                        found = where
                        break
                    todo += [chain.table.chains[n] for n in _NFT_JUMP.findall(text) if n in chain.table.chains]
            self._rule_of[hook, regex] = found
        return self._rule_of[hook, regex]

    def has_rule(self, hook: str, regex: str) -> bool:
        return self._rule_at(hook, regex) is not None

    def describe(self) -> str:
        return "nft_ruleset"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "has_line" and args:
            return self._match_line(str(args[0])) or f"{self.source} (no line matches)"
        if name == "saved_tables":
            return NFT_SAVED
        hook = str(args[0]) if args else ""
        if name == "base_chain" and args:
            chains = self._base_chains(hook)
            return (chains[0].hook_at if chains
                    else f"{self.source} (no filter base chain on hook {hook} in an ip, ip6 or inet table)")
        if name == "policy_drop" and len(args) == 2:
            chains = self._met_by(hook, str(args[1]))
            dropping = [c for c in chains if c.policy == "drop"]
            if dropping:
                return f"{dropping[0].policy_at} ({dropping[0]}: policy drop)"
            return ("; ".join(f"{c.policy_at} ({c}: policy {c.policy or 'accept'})" for c in chains)
                    or f"{self.source} (no filter base chain on hook {hook} that {args[1]} traffic meets)")
        if name == "has_rule" and len(args) == 2:
            return (self._rule_at(hook, str(args[1]))
                    or f"{self.source} (no rule of a filter base chain on hook {hook}, or of a chain it jumps to, matches)")
        return self.source


def register(reg: FactRegistry) -> None:
    reg.register(
        "nft_ruleset", NftRuleset, returns=NFT_RULESET,
        doc="the nftables ruleset: `nft list ruleset` on the live host, the saved files under --root",
    )
