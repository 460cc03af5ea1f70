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
                                   " comment aside), in the chain or in a chain it jumps to unconditionally; `lo+`"
                                   " (every interface named lo...) is not lo alone"),
    },
    doc="the iptables (IPv4) or ip6tables (IPv6) filter rules: on the live host the ones in force, as"
    " `iptables-save` prints them (what the CIS audits' `iptables -L` shows); under --root the file"
    " netfilter-persistent restores at boot, read as iptables-restore reads it (a file it would refuse is an error,"
    " unless the refused line comes after the *filter table's COMMIT: that table is loaded, and read)",
    field_docs={
        "live": "the rules are the kernel's, printed by iptables-save (the backend `iptables` is an alternative for)",
        "source": '"iptables-save" ("ip6tables-save"), or the saved file: /etc/iptables/rules.v4 (rules.v6),'
        " with the line iptables-restore stopped at when it refused one after committing the filter table",
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
_PROTO_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "33": "dccp", "58": "ipv6-icmp", "132": "sctp", "136": "udplite"}
_STATES = {"INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED"}
_CTSTATUS = {"NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"}
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LOG_LEVELS = {"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug", "panic"}
# libipt_REJECT's names and aliases in its table's order: a prefix picks the first it starts.
_REJECT_WITH = ("icmp-net-unreachable", "net-unreach", "icmp-host-unreachable", "host-unreach",
                "icmp-proto-unreachable", "proto-unreach", "icmp-port-unreachable", "port-unreach",
                "icmp-net-prohibited", "net-prohib", "icmp-host-prohibited", "host-prohib", "tcp-reset",
                "tcp-rst", "icmp-admin-prohibited", "admin-prohib")
_ICMP_TYPES = (
    "any", "echo-reply", "pong", "destination-unreachable", "network-unreachable", "host-unreachable",
    "protocol-unreachable", "port-unreachable", "fragmentation-needed", "source-route-failed", "network-unknown",
    "host-unknown", "network-prohibited", "host-prohibited", "TOS-network-unreachable", "TOS-host-unreachable",
    "communication-prohibited", "host-precedence-violation", "precedence-cutoff", "source-quench", "redirect",
    "network-redirect", "host-redirect", "TOS-network-redirect", "TOS-host-redirect", "echo-request", "ping",
    "router-advertisement", "router-solicitation", "time-exceeded", "ttl-exceeded", "ttl-zero-during-transit",
    "ttl-zero-during-reassembly", "parameter-problem", "ip-header-bad", "required-option-missing",
    "timestamp-request", "timestamp-reply", "address-mask-request", "address-mask-reply")
_PORTED = ("tcp", "udp", "udplite", "sctp", "dccp")  # the protocols multiport accepts
# The options of the extensions whose values this reader checks as iptables 1.8.9 parses them
# (the same option's other spellings share a key: an option may be given once per match).
# Options it does not know (other extensions', abbreviations getopt accepts) are kept unchecked.
_PORT_KEYS = {"--sport": "sport", "--source-port": "sport", "--dport": "dport", "--destination-port": "dport"}
_MULTI_KEYS = {"--sports": "sports", "--source-ports": "sports", "--dports": "dports",
               "--destination-ports": "dports", "--ports": "ports"}
# All the options of the extensions whose options this reader knows entirely (iptables 1.8.9), and
# iptables' own long ones: getopt_long takes an exact name or an unambiguous prefix of one of them.
_KNOWN = {
    "tcp": ("source-port", "sport", "destination-port", "dport", "tcp-flags", "syn", "tcp-option"),
    "udp": ("source-port", "sport", "destination-port", "dport"), "icmp": ("icmp-type",), "state": ("state",),
    "limit": ("limit", "limit-burst"), "comment": ("comment",),
    "multiport": ("source-ports", "sports", "destination-ports", "dports", "ports"), "REJECT": ("reject-with",),
    "LOG": ("log-level", "log-prefix", "log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid",
            "log-macdecode"),
}
_OWN_LONG = ("append", "check", "delete", "insert", "replace", "list", "list-rules", "flush", "zero", "new-chain",
             "delete-chain", "rename-chain", "policy", "source", "src", "destination", "dst", "protocol",
             "in-interface", "jump", "table", "match", "numeric", "out-interface", "verbose", "wait",
             "wait-interval", "exact", "fragment", "version", "help", "line-numbers", "modprobe", "set-counters",
             "goto", "ipv4", "ipv6")
_CHECKED: dict[str, dict[str, str]] = {
    "tcp": _PORT_KEYS, "udp": _PORT_KEYS, "icmp": {"--icmp-type": "icmp-type"}, "multiport": _MULTI_KEYS,
    "state": {"--state": "state"}, "conntrack": {"--ctstate": "ctstate", "--ctstatus": "ctstatus"},
    "limit": {"--limit": "limit", "--limit-burst": "limit-burst"}, "comment": {"--comment": "comment"},
    "REJECT": {"--reject-with": "reject-with"}, "LOG": {"--log-level": "log-level", "--log-prefix": "log-prefix"},
}


def _c_uint(text: str) -> int | None:
    """TEXT as strtoul(3) with base 0 reads all of it (blanks and a sign first; 0x hex, 0 octal), else None."""
    t = text.lstrip(" \t\n\r\f\v")
    if t[:1] in ("+", "-"):
        if t[0] == "-":
            return None  # wraps to a huge number: out of every range here
        t = t[1:]
    if t[:2].lower() == "0x" and len(t) > 2 and all(c in "0123456789abcdefABCDEF" for c in t[2:]):
        return int(t, 0)
    if t.startswith("0"):
        return int(t, 8) if all(c in "01234567" for c in t) else None
    if t and all(c in "0123456789" for c in t):
        return int(t)
    return None
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


class _Refused(EvaluationError):
    """A line iptables-restore refuses: it stops there, the tables committed before it stay loaded."""


class _Reader:
    """The tables a rules file (or iptables-save's output) makes, as iptables-restore loads them."""

    def __init__(self, family: int, path: str, legacy: bool, services: str | None = None) -> None:
        self.family, self.path, self.legacy = family, path, legacy
        self.tables: dict[str, _Table] = {}
        self.refused: _Refused | None = None  # the refusal that stopped a file after a COMMIT
        self._services = services or ""

    def refuse(self, n: int, why: str) -> _Refused:
        if not self.tables:
            return _Refused(f"{at(self.path, n)}: {why}: iptables-restore refuses the file, netfilter-persistent"
                            " loads nothing from it")
        return _Refused(f"{at(self.path, n)}: {why}: iptables-restore stops there; only the tables committed"
                        f" before it stay loaded ({', '.join(sorted(self.tables))})")

    def read(self, text: str) -> dict[str, _Table]:
        """The tables committed: all of them, or (a refused line after a COMMIT) those before it,
        which iptables-restore has already handed to the kernel, the refusal in `refused`."""
        try:
            return self._read(text)
        except _Refused as e:
            if not self.tables:
                raise
            self.refused = e
            return self.tables

    def _read(self, text: str) -> dict[str, _Table]:
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
        neg, i, in_target, target_ext = False, 0, False, ""
        loaded: list[str] = []  # the matches loaded, in order (-m NAME, or the protocol's, implicitly)
        given: set[tuple[int, str]] = set()  # (which extension, option) checked so far
        flags: set[str] = set()  # iptables' own options given (each at most once)
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
                owner = self._owner(w, rule, loaded, target_ext, n)
                if owner is not None:
                    i = self._checked(rule, owner, w, words, i, given, n)
                    if owner[0] < 0:
                        rule.target_args = True
                    elif owner[1] != "comment":  # a comment matches every packet
                        rule.matches.append((neg, "option", w))
                    neg = False
                    continue
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
            flag = "jump" if kind == "goto" else kind
            if flag in flags and flag != "match":
                raise self.refuse(n, f"multiple {w} flags not allowed")
            flags.add(flag)
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
                if kind == "jump" and value not in _STANDARD_TARGETS and value not in table.chains:
                    target_ext = value
                continue
            in_target = False
            if kind in ("src", "dst"):
                self._addresses(value, n)
            if kind == "match":
                loaded.append(value)
            rule.matches.append((neg, kind, value))
            neg = False
        self._requirements(rule, loaded, given, n)
        return rule

    def _ports(self, value: str, n: int) -> None:
        """An unchecked extension's ports (sctp, dccp ...): a number above 65535 is refused."""
        for part in re.split(r"[,:]", value):
            if part.isdigit() and int(part) > 65535:
                raise self.refuse(n, f"invalid port/service {part!r}")

    def _proto(self, rule: _Rule, negated: bool = False) -> str:
        """The rule's protocol by name ("" when none is given, or it is negated and NEGATED is false)."""
        for neg, kind, value in rule.matches:
            if kind == "proto" and (negated or not neg):
                return _PROTO_NUMBERS.get(value, value.lower())
        return ""

    def _known(self, name: str) -> bool:
        """Whether NAME's options are all in _KNOWN (ip6tables' icmp6 and REJECT are other modules)."""
        return name in _KNOWN and not (self.family == 6 and name in ("icmp", "REJECT"))

    def _owner(self, option: str, rule: _Rule, loaded: list[str], target_ext: str,
               n: int) -> tuple[int, str, str] | None:
        """Which checked extension takes OPTION, as getopt_long finds it in iptables' options and those
        of the extensions loaded: (its place, -1 for the target; its name; the option's full name), or
        None when it is not one this reader checks (or it cannot tell whose it is)."""
        exts = [*enumerate(loaded), *([(-1, target_ext)] if target_ext else [])]
        for k, name in reversed(exts):
            if option in _CHECKED.get(name, {}) and (self._known(name) or name == "conntrack"):
                return (k, name, option)
        proto = self._proto(rule, negated=True)  # `! -p tcp --dport 22` loads tcp all the same
        implicit = proto in ("tcp", "udp") or (proto == "icmp" and self.family == 4)
        if not option.startswith("--") or not all(self._known(name) for _, name in exts):
            # an extension this reader does not know entirely may take it (or an abbreviation)
            if implicit and proto not in loaded and option in _CHECKED[proto]:
                loaded.append(proto)  # iptables loads the protocol's match for an option it does not know
                return (len(loaded) - 1, proto, option)
            return None
        found = self._getopt(option[2:], exts)
        if found is None and implicit and proto not in loaded:
            loaded.append(proto)  # iptables loads the protocol's match for an option it does not know
            exts.insert(len(loaded) - 1, (len(loaded) - 1, proto))
            found = self._getopt(option[2:], exts)
        if found is None:
            if proto in ("", "all") or proto in loaded:
                raise self.refuse(n, f"unknown option {option!r}")
            return None  # the protocol's own match (sctp, esp ...) may take it
        k, name, full = found
        return (k, name, "--" + full) if name and "--" + full in _CHECKED.get(name, {}) else None

    @staticmethod
    def _getopt(text: str, exts: list[tuple[int, str]]) -> tuple[int, str, str] | None:
        """The option TEXT names (exact, else the one it is a prefix of): (place, extension or "" for
        iptables' own, full name), or None (unknown, or a prefix of several)."""
        table = [(-2, "", o) for o in _OWN_LONG] + [(k, name, o) for k, name in exts for o in _KNOWN[name]]
        exact = [t for t in table if t[2] == text]
        if exact:
            return exact[-1]
        prefixed = [t for t in table if t[2].startswith(text)]
        return prefixed[0] if len(prefixed) == 1 else None

    def _checked(self, rule: _Rule, owner: tuple[int, str, str], option: str, words: list[str], i: int,
                 given: set[tuple[int, str]], n: int) -> int:
        """Check OPTION's value (words[i]) as its extension parses it; the index after it."""
        key = _CHECKED[owner[1]][owner[2]]
        if (owner[0], key) in given:
            raise self.refuse(n, f"{owner[1]}: option {option} can only be used once")
        given.add((owner[0], key))
        if i >= len(words):
            raise self.refuse(n, f"option {option} requires a value")
        value, proto = words[i], self._proto(rule)
        bad: str | None = None
        if key in ("sport", "dport"):
            bad = self._port_range(value, proto, single=True)
        elif key in ("sports", "dports", "ports"):
            parts = value.split(",")
            bad = next((b for b in (self._port_range(p, proto, single=False) for p in parts) if b), None)
            if bad is None and len(parts) + sum(":" in p for p in parts) > 15:
                bad = "too many ports specified"
        elif key == "icmp-type":
            bad = self._icmp_type(value)
        elif key in ("state", "ctstate", "ctstatus"):
            names = _CTSTATUS if key == "ctstatus" else _STATES | ({"SNAT", "DNAT"} if key == "ctstate" else set())
            wrong = next((p for p in value.split(",") if p.upper() not in names), None)
            bad = None if wrong is None else f"bad {key} {wrong or ','!r}"
        elif key == "limit":
            bad = self._rate(value)
        elif key == "limit-burst":
            burst = _c_uint(value)
            bad = None if burst is not None and burst <= 10000 else f"bad --limit-burst {value!r} (0-10000)"
        elif key == "reject-with":
            if not any(r.startswith(value.lower()) for r in _REJECT_WITH):
                bad = f"unknown reject type {value!r}"
            elif next(r for r in _REJECT_WITH if r.startswith(value.lower())).startswith("tcp-") and proto != "tcp":
                bad = "--reject-with tcp-reset without -p tcp (the kernel refuses the rule)"
        elif key == "log-level":
            level = _c_uint(value)
            bad = None if value in _LOG_LEVELS or (level is not None and level <= 7) else f"log level {value!r} unknown"
        if bad is not None:
            raise self.refuse(n, bad)
        if i + 1 < len(words) and not words[i + 1].startswith("-") and words[i + 1] != "!":
            raise self.refuse(n, f"bad argument {words[i + 1]!r}")
        return i + 1

    def _requirements(self, rule: _Rule, loaded: list[str], given: set[tuple[int, str]], n: int) -> None:
        """What a checked match needs besides its options (its protocol, its one required option)."""
        proto = self._proto(rule)
        for k, name in enumerate(loaded):
            if name in ("tcp", "udp") or (name == "icmp" and self.family == 4):
                if self._proto(rule, negated=True) != name:  # `! -p tcp -m tcp` is taken
                    raise self.refuse(n, f"{name} match requires '-p {name}'")
                if name == "icmp" and (k, "icmp-type") not in given:
                    raise self.refuse(n, 'icmp: option "--icmp-type" must be specified')
            elif name == "state" and (k, "state") not in given:
                raise self.refuse(n, 'state: option "--state" must be specified')
            elif name == "multiport" and proto not in _PORTED:
                raise self.refuse(n, "multiport needs -p tcp, udp, udplite, sctp or dccp")
            elif name == "multiport" and not any(place == k for place, _ in given):
                raise self.refuse(n, "multiport expects an option")
            elif name == "comment" and (k, "comment") not in given:
                raise self.refuse(n, 'comment: option "--comment" must be specified')

    def _port(self, text: str, proto: str) -> int | None:
        number = _c_uint(text)
        if number is not None:
            return number if number <= 65535 else None
        for line in self._services.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and text in (words[0], *words[2:]) and words[1].endswith("/" + proto):
                port = _c_uint(words[1].split("/", 1)[0])
                return port if port is not None and port <= 65535 else None
        return None

    def _port_range(self, value: str, proto: str, single: bool) -> str | None:
        """Why iptables refuses a port or `lo:hi` range (an empty end is 0 or 65535 in tcp/udp), or None."""
        lo, sep, hi = value.partition(":")
        ends = [(lo, 0), (hi, 65535)] if sep else [(lo, 0)]
        got = []
        for text, default in ends:
            port = default if text == "" and sep and single else self._port(text, proto)
            if port is None:
                return f"invalid port/service {text!r} (not a number up to 65535 nor a {proto} service" \
                       " of /etc/services)"
            got.append(port)
        return "invalid portrange (min > max)" if len(got) == 2 and got[0] > got[1] else None

    def _icmp_type(self, value: str) -> str | None:
        if value[:1].isdigit():
            parts = value.split("/", 1)
            if any(_c_uint(p) is None or (_c_uint(p) or 0) > 255 for p in parts):
                return f"unknown ICMP type or code {value!r}"
            return None
        names = [t for t in _ICMP_TYPES if t.lower().startswith(value.lower())]
        if len(names) != 1:
            return f"unknown ICMP type {value!r}" if not names else f"ambiguous ICMP type {value!r}"
        return None

    def _rate(self, value: str) -> str | None:
        """Why the limit match refuses a rate `N[/second|minute|hour|day]` (a unit's prefix will do), or None."""
        digits = re.match(r"[ \t\n\r\f\v]*[+-]?[0-9]+", value)  # atoi(3)
        rate = int(digits.group(0)) if digits else 0
        mult: int | None = 1
        if "/" in value:
            unit = value.split("/", 1)[1].lower()
            mult = next((m for name, m in _RATE_UNITS.items() if unit and name.startswith(unit)), None)
        if mult is None or rate <= 0:
            return f"bad rate {value!r}"
        return f"rate too fast {value!r}" if 10000 * mult // rate == 0 else None

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
                reader = _Reader(self.family, self.source, legacy=_legacy(ctx), services=ctx.read_text("/etc/services"))
                tables = reader.read(text)
                if reader.refused is not None:
                    # A *filter section committed before the refused line replaced the whole table
                    # in the kernel, whatever it held; without one, what it holds is unknown here.
                    if "filter" not in tables:
                        raise reader.refused
                    self.source += f" ({reader.refused})"
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
