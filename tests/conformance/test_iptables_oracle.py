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
}
_LIVE = ("plain", "long-options", "mangle-only", "v6-plain")  # also read live, in the namespace


def _tool(name: str) -> str:
    path = shutil.which(name, path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    if path is None:
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
    rc, listing = _kernel(family, rules)
    ours = _ours(str(tmp_path), family)
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
