"""The `iptables` and `ip6tables` facts (CIS 4.4.2.x, 4.4.3.x) against the real iptables-restore:
each rules file is loaded in a private network namespace, and what the kernel then holds
(`iptables -S`, the CIS audit's view) must be what the fact reads from the same file under
--root, and what it reads live in that namespace. A file iptables-restore refuses is an error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts.base import FactContext, FactRegistry
from secpolicy.facts.builtin import register_builtins

pytestmark = [
    pytest.mark.xdist_group("live"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (private network namespaces)"),
]

_LOOP = {4: "127.0.0.0/8", 6: "::1/128"}
_HEAD = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n"
_CASES = {
    "plain": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\n-A INPUT -s 127.0.0.0/8 -j DROP\n-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"),
    "no-commit": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\n"),
    "accept-final-drop": (4, ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                          "-A INPUT -j DROP\n-A FORWARD -j REJECT\n-A OUTPUT -j DROP\nCOMMIT\n")),
    "long-options": (4, "# comment\n" + _HEAD + ":LOOP - [0:0]\n-A INPUT -j LOOP\n"
                     '-A LOOP --in-interface lo -m comment --comment "lo in" -j ACCEPT\n'
                     "-A LOOP ! -i lo -s 127.0.0.1/8 -j DROP\n-4 -A OUTPUT --out-interface lo --jump ACCEPT\nCOMMIT\n"),
    "other-family-prefix": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\n-6 -A INPUT -s 127.0.0.0/8 -j DROP\n"
                            "-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"),
    "mangle-only": (4, ("*mangle\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n"
                    "-A INPUT -i lo -j ACCEPT\n-A INPUT -s 127.0.0.0/8 -j DROP\n-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"
                    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")),
    "filter-twice": (4, _HEAD + "COMMIT\n*filter\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n"),
    "no-counters-p-line": (4, "*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT DROP [3:4]\n-P INPUT DROP\nCOMMIT\n"),
    "indented-comment": (4, _HEAD + "  # indented\nCOMMIT\n"),
    "trailing-comment": (4, _HEAD + "-A INPUT -i lo -j ACCEPT # lo\nCOMMIT\n"),
    "bad-port": (4, _HEAD + "-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n"),
    "bad-policy": (4, "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n"),
    "lo-tcp-only": (4, _HEAD + "-A INPUT -i lo -p tcp -j ACCEPT\n-A INPUT -s 127.0.0.0/8 -p udp -j DROP\n"
                    "-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"),
    "v6-plain": (6, _HEAD + "-A INPUT --in-interface lo -j ACCEPT\n-A INPUT ! -i lo -s ::1 -j DROP\n"
                 "-A OUTPUT -o lo -j ACCEPT\n-4 -A INPUT -s 10.0.0.1 -j DROP\nCOMMIT\n"),
    "v6-no-commit": (6, _HEAD),
    # Values of match and target extensions, as iptables 1.8.9 parses them: all accepted here ...
    "extensions-accepted": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\n-A INPUT -s 127.0.0.0/8 -j DROP\n"
                            "-A OUTPUT -o lo -j ACCEPT\n-A INPUT -m state --state new,Established -j ACCEPT\n"
                            "-A INPUT -m state --state NEW -m state --state RELATED -j ACCEPT\n"
                            "-A INPUT -m conntrack --ctstate NEW,SNAT,DNAT --ctstatus ASSURED -j ACCEPT\n"
                            "-A INPUT -p tcp ! --dport ssh -j ACCEPT\n-A INPUT -p tcp --dport :80 --sport 1024: -j ACCEPT\n"
                            "-A INPUT -p tcp --destination-port 0x16 -j ACCEPT\n-A INPUT -p udp --dport domain -j ACCEPT\n"
                            "-A INPUT -p 6 --dport 022 -j ACCEPT\n-A INPUT -p TCP -m tcp --dport ssh:http -j ACCEPT\n"
                            "-A INPUT -p tcp -m multiport --dports 22,80:90,443 -j ACCEPT\n"
                            "-A INPUT -p udp -m multiport ! --sports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT\n"
                            "-A INPUT -p icmp --icmp-type echo-request -j ACCEPT\n-A INPUT -p icmp --icmp-type 8/0 -j ACCEPT\n"
                            "-A INPUT -p icmp --icmp-type any -j ACCEPT\n-A INPUT -p icmp -m icmp ! --icmp-type ECHO-REPLY -j ACCEPT\n"
                            "-A INPUT -p icmp --icmp-type ping -m limit --limit 3/min --limit-burst 5 -j ACCEPT\n"
                            "-A INPUT -m limit --limit 3/SEC -m limit --limit 3abc --limit-burst 0x10 -j ACCEPT\n"
                            '-A INPUT -m comment --comment "a b" -j LOG --log-prefix "x: " --log-level 4\n'
                            "-A INPUT -j LOG --log-level warning\n-A INPUT -j LOG --log-level panic --log-uid\n"
                            "-A INPUT -j REJECT --reject-with icmp-host-prohibited\n-A INPUT -j REJECT --reject-with host-prohib\n"
                            "-A INPUT -j REJECT --reject-with icmp-host\n-A INPUT -p tcp -j REJECT --reject-with tcp-reset\n"
                            "-A INPUT ! -p tcp --dport 22 -j ACCEPT\n-A INPUT ! -p udp -m udp --sport 53 -j ACCEPT\n"
                            "-A INPUT -p tcp -m multiport --dports ssh,http -j ACCEPT\n-A INPUT -p tcp --dpo 25 -j ACCEPT\n"
                            "-A INPUT -p udp -m multiport --sport 7:9 -m comment --comm x -j LOG --log-pre y --log-l 3\n-A INPUT -m limit -j ACCEPT\n"
                            "-A INPUT -p tcp --syn -j ACCEPT\n-A INPUT -p tcp --tcp-flags SYN,ACK SYN -j ACCEPT\nCOMMIT\n"),
    # ... and each refused (each was read as a pass before)
    "state-without-state": (4, _HEAD + "-A INPUT -m state -j ACCEPT\nCOMMIT\n"),
    "icmp-without-type": (4, _HEAD + "-A INPUT -p icmp -m icmp -j ACCEPT\nCOMMIT\n"),
    "port-twice": (4, _HEAD + "-A INPUT -p tcp --sport 1 --source-port 2 -j ACCEPT\nCOMMIT\n"),
    "udp-match-with-tcp": (4, _HEAD + "-A INPUT -p tcp -m udp --dport 22 -j ACCEPT\nCOMMIT\n"),
    "multiport-open-range": (4, _HEAD + "-A INPUT -p tcp -m multiport --dports 80: -j ACCEPT\nCOMMIT\n"),
    "multiport-negated-proto": (4, _HEAD + "-A INPUT ! -p tcp -m multiport --dports 22 -j ACCEPT\nCOMMIT\n"),
    "multiport-without-ports": (4, _HEAD + "-A INPUT -p udp -m multiport -j ACCEPT\nCOMMIT\n"),
    "unknown-option": (4, _HEAD + "-A INPUT -p icmp --dport 22 -j ACCEPT\nCOMMIT\n"),
    "limit-option-without-limit": (4, _HEAD + "-A INPUT -m state --state NEW --limit 3/s -j ACCEPT\nCOMMIT\n"),
    "abbreviated-multiport-option": (4, _HEAD + "-A INPUT -p udp -m multiport --sport :9 -j ACCEPT\nCOMMIT\n"),
    "protocol-twice": (4, _HEAD + "-A INPUT -p tcp -p tcp -j ACCEPT\nCOMMIT\n"),
    "bad-state": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\n-A INPUT -m state --state BOGUS -j ACCEPT\nCOMMIT\n"),
    "state-twice": (4, _HEAD + "-A INPUT -m state --state NEW --state RELATED -j ACCEPT\nCOMMIT\n"),
    "bad-ctstate": (4, _HEAD + "-A INPUT -m conntrack --ctstate NEWX -j ACCEPT\nCOMMIT\n"),
    "bad-port-range": (4, _HEAD + "-A INPUT -p tcp --dport 80:22 -j ACCEPT\nCOMMIT\n"),
    "bad-service": (4, _HEAD + "-A INPUT -p tcp --dport nosuchsvc -j ACCEPT\nCOMMIT\n"),
    "port-list-in-dport": (4, _HEAD + "-A INPUT -p tcp --dport 22,80 -j ACCEPT\nCOMMIT\n"),
    "dport-two-values": (4, _HEAD + "-A INPUT -p tcp --dport 22 33 -j ACCEPT\nCOMMIT\n"),
    "negation-after-dport": (4, _HEAD + "-A INPUT -p tcp --dport ! 22 -j ACCEPT\nCOMMIT\n"),
    "tcp-match-without-proto": (4, _HEAD + "-A INPUT -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"),
    "multiport-without-proto": (4, _HEAD + "-A INPUT -m multiport --dports 22 -j ACCEPT\nCOMMIT\n"),
    "multiport-too-many": (4, _HEAD + "-A INPUT -p tcp -m multiport --ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:16"
                           " -j ACCEPT\nCOMMIT\n"),
    "multiport-bad-port": (4, _HEAD + "-A INPUT -p tcp -m multiport --dports 22,99999 -j ACCEPT\nCOMMIT\n"),
    "bad-icmp-type": (4, _HEAD + "-A INPUT -p icmp --icmp-type bogus -j ACCEPT\nCOMMIT\n"),
    "ambiguous-icmp-type": (4, _HEAD + "-A INPUT -p icmp --icmp-type echo -j ACCEPT\nCOMMIT\n"),
    "bad-icmp-code": (4, _HEAD + "-A INPUT -p icmp --icmp-type 8/300 -j ACCEPT\nCOMMIT\n"),
    "bad-limit": (4, _HEAD + "-A INPUT -m limit --limit abc -j ACCEPT\nCOMMIT\n"),
    "bad-limit-unit": (4, _HEAD + "-A INPUT -m limit --limit 3/x -j ACCEPT\nCOMMIT\n"),
    "limit-too-fast": (4, _HEAD + "-A INPUT -m limit --limit 10001/s -j ACCEPT\nCOMMIT\n"),
    "bad-limit-burst": (4, _HEAD + "-A INPUT -m limit --limit-burst 10001 -j ACCEPT\nCOMMIT\n"),
    "comment-without-text": (4, _HEAD + "-A INPUT -m comment -j ACCEPT\nCOMMIT\n"),
    "bad-reject-with": (4, _HEAD + "-A INPUT -j REJECT --reject-with nonsense\nCOMMIT\n"),
    "tcp-reset-without-tcp": (4, _HEAD + "-A INPUT -j REJECT --reject-with tcp-reset\nCOMMIT\n"),
    "bad-log-level": (4, _HEAD + "-A INPUT -j LOG --log-level WARNING\nCOMMIT\n"),
    "v6-bad-ctstate": (6, _HEAD + "-A INPUT -m conntrack --ctstate NEWX -j ACCEPT\nCOMMIT\n"),
    "v6-extensions-accepted": (6, _HEAD + "-A INPUT -i lo -j ACCEPT\n-A INPUT -s ::1 -j DROP\n-A OUTPUT -o lo -j ACCEPT\n"
                               "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
                               "-A INPUT -p tcp --dport 22 -m limit --limit 1/s -j ACCEPT\n"
                               "-A INPUT -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT\n"
                               "-A INPUT -j REJECT --reject-with icmp6-adm-prohibited\nCOMMIT\n"),
    # `lo+` is lo and every interface whose name starts with lo (lowpan0, lo0 ...): neither the
    # loopback accept nor, with `! -i lo+`, the drop of 127.0.0.0/8 from the other interfaces
    "lo-wildcard": (4, _HEAD + "-A INPUT -i lo+ -j ACCEPT\n-A INPUT -s 127.0.0.0/8 ! -i lo+ -j DROP\n"
                    "-A OUTPUT -o lo+ -j ACCEPT\nCOMMIT\n"),
    # Refused after a COMMIT: the tables committed before stay in the kernel (_PARTIAL) ...
    "partial-bad-mangle-after-filter": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\n-A INPUT -s 127.0.0.0/8 -j DROP\n"
                                        "-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n*mangle\n"
                                        "-A INPUT -m state --state BOGUS -j ACCEPT\nCOMMIT\n"),
    "partial-uncommitted-after-filter": (4, _HEAD + "-A INPUT -i lo -j ACCEPT\nCOMMIT\n*mangle\n-A INPUT -j ACCEPT\n"),
    "partial-filter-again-refused": (4, _HEAD + "-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n"
                                     "-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n"),
    "v6-partial-bad-raw-after-filter": (6, _HEAD + "-A INPUT -i lo -j ACCEPT\nCOMMIT\n*raw\n-A NOPE -j ACCEPT\nCOMMIT\n"),
    # ... but without the filter table among them, what it holds is not the file's: an error
    "partial-filter-refused-after-mangle": (4, "*mangle\n:INPUT ACCEPT [0:0]\nCOMMIT\n" + _HEAD
                                            + "-A INPUT -m conntrack --ctstate NEWX -j ACCEPT\nCOMMIT\n"),
}
_PARTIAL = {c for c in _CASES if "partial" in c and "after-mangle" not in c}
_SERVICES = "ssh\t\t22/tcp\t\t\t\t# SSH\nhttp\t\t80/tcp\t\twww\ndomain\t\t53/tcp\ndomain\t\t53/udp\n"
_LIVE = ("plain", "long-options", "mangle-only", "v6-plain", "extensions-accepted", "v6-extensions-accepted")  # also read live, in the namespace


def _tool(name: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (scripts/setup.sh installs iptables)")
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs iptables)")
    return path


def _kernel(family: int, rules: Path, backend: str = "") -> tuple[int, str]:
    """Load RULES with the real iptables-restore in a private network namespace: its exit
    status and what `iptables -S` then lists."""
    base = "iptables" if family == 4 else "ip6tables"
    restore, show = _tool(f"{base}{backend}-restore"), _tool(f"{base}{backend}")
    done = subprocess.run(["unshare", "-n", "sh", "-c", f'{restore} < "$1"; echo "rc=$?"; {show} -S', "sh", str(rules)],
                          capture_output=True, text=True, timeout=60, check=False)
    head, _, listing = done.stdout.partition("\n")
    assert head.startswith("rc="), (done.stdout, done.stderr)
    return int(head[3:]), listing


def _verdict(family: int, listing: str) -> dict[str, object]:
    """The CIS audit's reading of `iptables -S`: the filter policies, and the loopback rules in
    INPUT/OUTPUT or a chain INPUT jumps to with no match (iptables' canonical spelling)."""
    policies = dict(re.findall(r"^-P (\w+) (\w+)$", listing, re.MULTILINE))
    reached = {"INPUT"} | set(re.findall(r"^-A INPUT -j ([\w-]+)$", listing, re.MULTILINE))
    rules = [(c, r) for c, r in re.findall(r"^-A ([\w-]+) (.*)$", listing, re.MULTILINE) if c in reached]
    comment = r'(?: -m comment --comment (?:"[^"]*"|\S+))?'
    return {
        "INPUT": policies["INPUT"], "FORWARD": policies["FORWARD"], "OUTPUT": policies["OUTPUT"],
        "lo_in": any(re.fullmatch(rf"-i lo{comment} -j ACCEPT", r) for _, r in rules),
        "lo_out": bool(re.search(rf"^-A OUTPUT -o lo{comment} -j ACCEPT$", listing, re.MULTILINE)),
        "spoof": any(re.fullmatch(rf"-s {re.escape(_LOOP[family])}(?: ! -i lo)?{comment} -j DROP", r) for _, r in rules),
    }


_OURS = """
import json, sys
from secpolicy.errors import EvaluationError
from secpolicy.facts.base import FactContext, FactRegistry
from secpolicy.facts.builtin import register_builtins
reg = FactRegistry(); register_builtins(reg)
try:
    f = FactContext(reg, root=sys.argv[1]).fact(sys.argv[2], ())
    out = {c: f.policy(c) for c in ("INPUT", "FORWARD", "OUTPUT")}
    out.update(lo_in=f.accepts_loopback("INPUT"), lo_out=f.accepts_loopback("OUTPUT"), spoof=f.drops_loopback_source)
except EvaluationError as e:
    out = {"error": str(e)}
print(json.dumps(out))
"""


def _ours(root: str, family: int) -> dict[str, object]:
    reg = FactRegistry()
    register_builtins(reg)
    try:
        f = FactContext(reg, root=root).fact("iptables" if family == 4 else "ip6tables", ())
    except EvaluationError as e:
        return {"error": str(e)}
    return {**{c: f.policy(c) for c in ("INPUT", "FORWARD", "OUTPUT")},
            "lo_in": f.accepts_loopback("INPUT"), "lo_out": f.accepts_loopback("OUTPUT"), "spoof": f.drops_loopback_source}


def _ours_live(family: int, rules: Path, backend: str = "") -> dict[str, object]:
    restore = _tool(("iptables" if family == 4 else "ip6tables") + f"{backend}-restore")
    script = f'{restore} < "$1" || exit 9; exec "$2" -c "$3" / "$4"'
    done = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", str(rules), sys.executable, _OURS,
                           "iptables" if family == 4 else "ip6tables"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", sorted(_CASES))
def test_saved_rules_read_as_iptables_restore_loads_them(tmp_path: Path, case: str) -> None:
    family, text = _CASES[case]
    rules = tmp_path / "etc/iptables" / f"rules.v{family}"
    rules.parent.mkdir(parents=True)
    rules.write_text(text)
    # the root's service names, as netbase has them (iptables-restore here reads this host's)
    (tmp_path / "etc/services").write_text(_SERVICES)
    rc, listing = _kernel(family, rules)
    assert rc == 0 or "accepted" not in case, (case, listing)  # the case means what it says
    ours = _ours(str(tmp_path), family)
    if case in _PARTIAL:  # iptables-restore fails, the filter table committed before it stays
        assert rc != 0 and ours == _verdict(family, listing), (case, listing, ours)
        return
    if rc != 0:
        assert "error" in ours, (case, listing, ours)  # a refused file is never a pass
        return
    assert ours == _verdict(family, listing), (case, listing)
    if case in _LIVE:
        assert _ours_live(family, rules) == ours


def test_legacy_rules_beside_nft_are_an_error_live(tmp_path: Path) -> None:
    """Rules loaded with iptables-legacy while `iptables` is iptables-nft: the nft view
    (iptables-save, `iptables -L`) shows an empty ACCEPT ruleset; the fact must not pass on it."""
    if "nft" not in os.path.realpath(_tool("iptables-save")):
        pytest.skip("iptables is not the nft backend here")
    rules = tmp_path / "rules.v4"
    rules.write_text(_CASES["plain"][1])
    ours = _ours_live(4, rules, backend="-legacy")
    assert "legacy tables present" in str(ours.get("error")), ours


def test_partial_restore_says_where_it_stopped(tmp_path: Path) -> None:
    """A file refused after its *filter COMMIT: the fact reads the committed filter table and its
    source names the refused line; the CIS audit's verdict on it is the kernel's."""
    rules = tmp_path / "etc/iptables/rules.v4"
    rules.parent.mkdir(parents=True)
    rules.write_text(_CASES["partial-bad-mangle-after-filter"][1])
    reg = FactRegistry()
    register_builtins(reg)
    f = FactContext(reg, root=str(tmp_path)).fact("iptables", ())
    assert f.source == ("/etc/iptables/rules.v4 (/etc/iptables/rules.v4:10: bad state 'BOGUS': iptables-restore"
                        " stops there; only the tables committed before it stay loaded (filter))")
    assert (f.policy("INPUT"), f.accepts_loopback("INPUT"), f.drops_loopback_source) == ("DROP", True, True)
