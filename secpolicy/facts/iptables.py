"""The iptables and ip6tables rule sets (`iptables`, `ip6tables`): on the live host what
`iptables-save` prints of the kernel's tables; under --root the file netfilter-persistent loads
(/etc/iptables/rules.v4, rules.v6), read as iptables-restore 1.8 reads it."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, STR, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at, run_tool, sbin_tool

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["IPTABLES", "IptablesRuleset", "register"]

IPTABLES = ObjectType(
    "iptables_ruleset",
    {"live": BOOL, "source": STR, "drops_loopback_source": BOOL},
    methods={
        "policy": Method((STR,), STR, 'the policy of a built-in chain of the filter table ("INPUT", "FORWARD",'
                         ' "OUTPUT"): "ACCEPT" or "DROP" ("ACCEPT", the kernel\'s own, when nothing sets it)'),
        "accepts_loopback": Method((STR,), BOOL, 'whether INPUT has `-i lo -j ACCEPT` ("INPUT"), or OUTPUT'
                                   ' `-o lo -j ACCEPT` ("OUTPUT"): a rule matching that interface alone (a'
                                   " comment aside), in the chain or in a chain it jumps to unconditionally"),
    },
    doc="the iptables (IPv4) or ip6tables (IPv6) filter rules: on the live host the ones in force, as"
    " `iptables-save` prints them (what the CIS audits' `iptables -L` shows); under --root the file"
    " netfilter-persistent restores at boot, read as iptables-restore reads it (a file it would refuse is an error)",
    field_docs={
        "live": "the rules are the kernel's, printed by iptables-save (the backend `iptables` is an alternative for)",
        "source": '"iptables-save" ("ip6tables-save"), or the saved file: /etc/iptables/rules.v4 (rules.v6)',
        "drops_loopback_source": "whether INPUT (or a chain it jumps to unconditionally) drops packets whose"
        " source is the loopback network (127.0.0.0/8, ::1): `-s 127.0.0.0/8 -j DROP`, or with `! -i lo`",
    },
)

_SAVED = {4: "/etc/iptables/rules.v4", 6: "/etc/iptables/rules.v6"}
_TABLES = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
_LOOPBACK = {4: ipaddress.ip_network("127.0.0.0/8"), 6: ipaddress.ip_network("::1/128")}
# Options of a rule this reader understands, with how many values each takes; an option of a
# match (after -m NAME) or of a target (after -j NAME) is that extension's, and makes the rule
# match less (a match) or do something else (a target): such rules are kept, never counted.
_GENERIC = {
    "-p": "proto", "--protocol": "proto", "-s": "src", "--source": "src", "--src": "src",
    "-d": "dst", "--destination": "dst", "--dst": "dst", "-i": "in", "--in-interface": "in",
    "-o": "out", "--out-interface": "out", "-j": "jump", "--jump": "jump", "-g": "goto", "--goto": "goto",
    "-m": "match", "--match": "match", "-f": "fragment", "--fragment": "fragment",
    "-c": "counters", "--set-counters": "counters", "-4": "ipv4", "--ipv4": "ipv4", "-6": "ipv6", "--ipv6": "ipv6",
}
_COMMANDS = {"-A": "append", "--append": "append", "-I": "insert", "--insert": "insert",
             "-P": "policy", "--policy": "policy", "-N": "new", "--new-chain": "new"}
_PORT_OPTIONS = {"--dport", "--sport", "--dports", "--sports", "--destination-port", "--source-port",
                 "--destination-ports", "--source-ports"}
_STANDARD_TARGETS = {"ACCEPT", "DROP", "RETURN", "QUEUE"}
_EXTENSION_TARGET = re.compile(r"[A-Z][A-Z0-9_]*\Z")  # REJECT, LOG, MASQUERADE ...


@dataclass
class _Rule:
    chain: str
    at: str
    matches: list[tuple[bool, str, str]] = field(default_factory=list)  # (negated, kind, value)
    target: str = ""
    target_args: bool = False

    def only(self, allowed: set[tuple[bool, str]]) -> bool:
        """Whether the rule's matches are all of kinds `allowed` ((negated, kind)), a comment aside."""
        for neg, kind, value in self.matches:
            if kind == "match" and value == "comment" and not neg:
                continue
            if kind == "comment" or (kind == "proto" and value in ("all", "0") and not neg):
                continue
            if (neg, kind) not in allowed:
                return False
        return True


@dataclass
class _Table:
    policies: dict[str, tuple[str, str]]  # chain -> (policy, where set)
    chains: set[str]
    rules: list[_Rule] = field(default_factory=list)


def _tokens(line: str, where: str) -> list[str]:
    """A rule line split as iptables-restore splits it: blanks separate words, a double-quoted
    string is one word (its quotes gone)."""
    words: list[str] = []
    cur, quoted, started = "", False, False
    for ch in line:
        if ch == '"':
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                words.append(cur)
            cur, started = "", False
        else:
            cur, started = cur + ch, True
    if quoted:
        raise EvaluationError(f"{where}: unterminated quote: iptables-restore refuses the file")
    if started:
        words.append(cur)
    return words


class _Reader:
    """The tables a rules file (or iptables-save's output) makes, as iptables-restore loads them."""

    def __init__(self, family: int, path: str, legacy: bool) -> None:
        self.family, self.path, self.legacy = family, path, legacy
        self.tables: dict[str, _Table] = {}

    def refuse(self, n: int, why: str) -> EvaluationError:
        return EvaluationError(f"{at(self.path, n)}: {why}: iptables-restore refuses the file, netfilter-persistent"
                               " loads nothing from it")

    def read(self, text: str) -> dict[str, _Table]:
        table: _Table | None = None
        name = ""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for n, line in enumerate(lines, 1):
            if line == "" or line.startswith("#"):
                continue  # only an empty line or one starting with `#`: not blanks, not `  #`
            if line == "COMMIT":
                if table is None:
                    raise self.refuse(n, "COMMIT outside a table")
                self.tables[name], table = table, None
                continue
            if line.startswith("*"):
                if table is not None:
                    raise self.refuse(n, f"table {name} not committed before {line!r}")
                name = line[1:].split(None, 1)[0] if line[1:].strip() else ""
                if name not in _TABLES:
                    raise self.refuse(n, f"table name {name!r} invalid")
                builtin = _TABLES[name]
                old = self.tables.get(name)
                # Opening a table flushes it; the nft backend makes it anew (policies ACCEPT),
                # the legacy one keeps the policies set before.
                if old is not None and self.legacy:
                    pol = dict(old.policies)
                else:
                    pol = {c: ("ACCEPT", f"{at(self.path, n)} (*{name}: policy not set)") for c in builtin}
                table = _Table(pol, set(builtin))
                continue
            if table is None:
                raise self.refuse(n, "a line outside a table (no `*table` before it)")
            if line.startswith(":"):
                words = line[1:].split()
                if len(words) < 2:
                    raise self.refuse(n, "a chain line without a policy")
                chain, policy = words[0], words[1]
                if chain in _TABLES[name]:
                    if policy != "-":
                        if policy not in ("ACCEPT", "DROP"):
                            raise self.refuse(n, f"bad policy name {policy!r}")
                        table.policies[chain] = (policy, at(self.path, n))
                elif policy != "-":
                    raise self.refuse(n, f"a policy for user-defined chain {chain}")
                else:
                    table.chains.add(chain)
                continue
            self._command(table, name, _tokens(line, at(self.path, n)), n)
        if table is not None:
            raise self.refuse(len(lines) + 1, f"COMMIT expected (table {name} is never committed)")
        return self.tables

    def _command(self, table: _Table, name: str, words: list[str], n: int) -> None:
        where = at(self.path, n)
        other = "-6" if self.family == 4 else "-4"
        if other in words or ("--ipv6" if self.family == 4 else "--ipv4") in words:
            return  # iptables ignores a line meant for the other family (and ip6tables one for IPv4)
        words = [w for w in words if w not in ("-4", "--ipv4", "-6", "--ipv6")]
        if not words or words[0] not in _COMMANDS:
            raise EvaluationError(f"{where}: {words[0] if words else 'an empty command'!r}: a command this"
                                  " reader does not follow (only -A, -I, -P and -N), so it cannot tell what is loaded")
        cmd, rest = _COMMANDS[words[0]], words[1:]
        if not rest:
            raise self.refuse(n, f"{words[0]} without a chain")
        chain = rest.pop(0)
        if cmd == "new":
            table.chains.add(chain)
            return
        if chain not in table.chains:
            raise self.refuse(n, f"chain {chain!r} does not exist")
        if cmd == "policy":
            if chain not in _TABLES[name] or len(rest) != 1 or rest[0] not in ("ACCEPT", "DROP"):
                raise self.refuse(n, f"bad policy for {chain}")
            table.policies[chain] = (rest[0], where)
            return
        if cmd == "insert" and rest and rest[0].isdigit():
            rest.pop(0)
        table.rules.append(self._rule(table, chain, rest, n))

    def _rule(self, table: _Table, chain: str, words: list[str], n: int) -> _Rule:
        rule = _Rule(chain, at(self.path, n))
        neg, i, in_target = False, 0, False
        while i < len(words):
            w = words[i]
            i += 1
            if w == "!":
                neg = True
                continue
            kind = _GENERIC.get(w)
            if kind is None:
                if not w.startswith("-") or rule.matches == [] and not rule.target:
                    raise self.refuse(n, f"bad argument {w!r}")
                # an extension's option and its values: the match or target it follows takes them
                if in_target:
                    rule.target_args = True
                elif not (w == "--comment" and rule.matches and rule.matches[-1][1:] == ("match", "comment")):
                    # a comment matches every packet: the rule is the same without it
                    rule.matches.append((neg, "option", w))
                while i < len(words) and not words[i].startswith("-") and words[i] != "!":
                    if w in _PORT_OPTIONS:
                        self._ports(words[i], n)
                    i += 1
                neg = False
                continue
            if kind in ("ipv4", "ipv6"):
                continue
            if kind == "fragment":
                rule.matches.append((neg, kind, ""))
                neg = False
                continue
            if i >= len(words):
                raise self.refuse(n, f"option {w} requires a value")
            value = words[i]
            i += 1
            if kind == "counters":
                i += 1
                continue
            if kind in ("jump", "goto"):
                if value not in _STANDARD_TARGETS and value not in table.chains and not _EXTENSION_TARGET.match(value):
                    raise self.refuse(n, f"chain or target {value!r} does not exist")
                rule.target, in_target = (value if kind == "jump" else f"goto:{value}"), True
                continue
            in_target = False
            if kind in ("src", "dst"):
                self._addresses(value, n)
            rule.matches.append((neg, kind, value))
            neg = False
        return rule

    def _ports(self, value: str, n: int) -> None:
        for part in re.split(r"[,:]", value):
            if part.isdigit() and int(part) > 65535:
                raise self.refuse(n, f"invalid port/service {part!r}")

    def _addresses(self, value: str, n: int) -> None:
        for part in value.split(","):
            try:
                net = ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise EvaluationError(f"{at(self.path, n)}: address {part!r}: a host name iptables resolves when"
                                      " it loads the file (or an invalid address): this reader cannot tell") from None
            if net.version != self.family:
                raise self.refuse(n, f"address {part!r} is not IPv{self.family}")


def _legacy(ctx: FactContext) -> bool:
    """Whether `iptables` is iptables-legacy in the root (update-alternatives; Debian 12's default is nft)."""
    if ctx.lstat("/etc/alternatives/iptables") is None:
        return False
    try:
        return "legacy" in ctx.readlink("/etc/alternatives/iptables")
    except OSError:
        return False


class IptablesRuleset:
    """The filter rules of one family: iptables-save's on the live host, the saved file elsewhere."""

    family = 4

    def __init__(self, ctx: FactContext) -> None:
        tool = "iptables-save" if self.family == 4 else "ip6tables-save"
        path = sbin_tool(tool) if ctx.live else None
        self.live = path is not None
        if path is not None:
            done = run_tool([path], tool)
            if done.returncode != 0:
                said = done.stderr.strip().splitlines()
                raise EvaluationError(f"{tool} failed (exit {done.returncode}): "
                                      f"{said[-1] if said else 'no output'}; the CIS audits need it (run as root)")
            if "legacy tables present" in done.stderr:
                raise EvaluationError(f"{tool}: {done.stderr.strip()}: the kernel holds rules of both the nft and"
                                      " the legacy backend, and one view shows only half of them")
            self.source = tool
            tables = _Reader(self.family, tool, legacy=False).read(done.stdout)
        else:
            self.source = _SAVED[self.family]
            text = ctx.read_text(self.source)
            if text is None:
                self.source += " (absent: netfilter-persistent loads nothing, the chains keep ACCEPT)"
                tables = {}
            else:
                tables = _Reader(self.family, self.source, legacy=_legacy(ctx)).read(text)
        self._filter = tables.get("filter") or _Table({c: ("ACCEPT", f"{self.source} (no *filter table)")
                                                      for c in _TABLES["filter"]}, set(_TABLES["filter"]))
        spoof = self._find("INPUT", self._is_spoof_drop)
        self.drops_loopback_source = spoof is not None
        self._spoof_at = spoof.at if spoof else None

    def _reached(self, chain: str) -> list[_Rule]:
        """The rules of a chain and of the chains it jumps or goes to with no match at all."""
        seen, todo, rules = {chain}, [chain], []
        while todo:
            c = todo.pop(0)
            for r in self._filter.rules:
                if r.chain != c:
                    continue
                rules.append(r)
                nxt = r.target.removeprefix("goto:")
                if not r.matches and nxt in self._filter.chains and nxt not in seen and nxt not in _TABLES["filter"]:
                    seen.add(nxt)
                    todo.append(nxt)
        return rules

    def _find(self, chain: str, test: Any) -> _Rule | None:
        return next((r for r in self._reached(chain) if test(r)), None)

    def _is_spoof_drop(self, r: _Rule) -> bool:
        if r.target != "DROP" or r.target_args or not r.only({(False, "src"), (True, "in")}):
            return False
        if any(k == "in" and v != "lo" for _, k, v in r.matches):
            return False
        srcs = [v for neg, k, v in r.matches if k == "src"]
        return len(srcs) == 1 and any(ipaddress.ip_network(s, strict=False) == _LOOPBACK[self.family]
                                      for s in srcs[0].split(","))

    def _lo_accept(self, chain: str) -> _Rule | None:
        kind = {"INPUT": "in", "OUTPUT": "out"}.get(chain)
        if kind is None:
            raise EvaluationError(f'accepts_loopback: "INPUT" or "OUTPUT", not {chain!r}')
        return self._find(chain, lambda r: r.target == "ACCEPT" and not r.target_args and r.only({(False, kind)})
                          and [(k, v) for _, k, v in r.matches if k == kind] == [(kind, "lo")])

    def policy(self, chain: str) -> str:
        if chain not in self._filter.policies:
            raise EvaluationError(f'policy: a built-in chain of the filter table (INPUT, FORWARD, OUTPUT), not {chain!r}')
        return self._filter.policies[chain][0]

    def accepts_loopback(self, chain: str) -> bool:
        return self._lo_accept(chain) is not None

    def describe(self) -> str:
        return "iptables" if self.family == 4 else "ip6tables"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "policy" and args and str(args[0]) in self._filter.policies:
            return self._filter.policies[str(args[0])][1]
        if name == "accepts_loopback" and args and str(args[0]) in ("INPUT", "OUTPUT"):
            rule = self._lo_accept(str(args[0]))
            return rule.at if rule else f"{self.source} (no rule accepting lo alone in {args[0]})"
        if name == "drops_loopback_source":
            return self._spoof_at or f"{self.source} (no rule in INPUT drops the loopback source network)"
        return self.source


class Ip6tablesRuleset(IptablesRuleset):
    family = 6


def register(reg: FactRegistry) -> None:
    reg.register("iptables", IptablesRuleset, returns=IPTABLES,
                 doc="the iptables filter rules: `iptables-save` on the live host, /etc/iptables/rules.v4 under --root")
    reg.register("ip6tables", Ip6tablesRuleset, returns=IPTABLES,
                 doc="the ip6tables filter rules: `ip6tables-save` on the live host, /etc/iptables/rules.v6 under --root")
