"""CIS Debian 12 sections 3 and 4 against the benchmark's own audit procedures and the real
components, on crafted trees: the 3.3.x audit script (real sysctl and systemd-sysctl over the
tree's proc/sys, sys/module and sysctl.d, in a private mount and network namespace), ufw's own
ufw-init loading the tree's rules in a network namespace, and nft loading the tree's saved
ruleset in one. No host sysctl, module or ruleset is touched."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from secpolicy.app.policies import load_policy_set
from secpolicy.engine import scan
from secpolicy.facts.base import FactRegistry
from secpolicy.rules import PolicySet
from secpolicy.vocabulary import builtin_registry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "conformance"))
import corpus
from corpus import disable, install, write

ORACLES = Path(sys.prefix) / "oracles"  # what scripts/setup.sh --with-test-tools unpacks
SYSTEMD_SYSCTL = "/usr/lib/systemd/systemd-sysctl"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount and network namespaces)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed"),
]


@functools.cache
def _cis() -> tuple[PolicySet, FactRegistry]:
    """The CIS pack, loaded once per worker: each verdict is a scan of one rule, in process."""
    reg = builtin_registry()
    return load_policy_set([str(REPO / "policies" / "cis")], reg), reg


def _verdicts(root: Path, rule_ids: Iterable[str]) -> dict[str, str]:
    """rule id -> status of a scan of ROOT (the CIS number as the key: `4.3.8`)."""
    ps, reg = _cis()
    results = scan(ps, reg, root=str(root), rule_ids=list(rule_ids)).to_results()["results"]
    return {r["rule_id"].split("-")[1]: r["status"] for r in results}


def _verdict(root: Path, rule_id: str) -> str:
    (status,) = _verdicts(root, (rule_id,)).values()
    return status


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.build_base(tmp_path_factory.mktemp("corpus"))


# --- 3.3.x: IPv6 off as the audit's f_ipv6_chk tells it ------------------------------------------
# The tree's proc/sys, sys/module/ipv6/parameters and sysctl.d directories are bound over the
# host's in a private mount namespace (a network namespace too): the audit's `sysctl` reads the
# tree's running values, `systemd-sysctl --cat-config` its files. Then the CIS Debian Linux 12
# v1.1.0 3.3.x audit script for one parameter, which prints PASS or FAIL first.
_CIS_SYSCTL = r"""
T="$1"; P="$2"
set -e
mount --bind "$T/proc/sys" /proc/sys
mount --bind "$T/sys/module/ipv6/parameters" /sys/module/ipv6/parameters
mount -t tmpfs tmpfs /run; mkdir -p /run/sysctl.d
mount -t tmpfs tmpfs /usr/local/lib; mkdir -p /usr/local/lib/sysctl.d
for d in etc/sysctl.d run/sysctl.d usr/local/lib/sysctl.d usr/lib/sysctl.d; do
  mkdir -p "$T/$d"; mount --bind "$T/$d" "/$d"
done
set +e
{
   l_output="" l_output2=""
   l_ipv6_disabled=""
   a_parlist=("$P")
   l_ufwscf="$([ -f /etc/default/ufw ] && awk -F= '/^\s*IPT_SYSCTL=/ {print $2}' /etc/default/ufw)"
   f_ipv6_chk()
   {
      l_ipv6_disabled=""
      ! grep -Pqs -- '^\h*0\b' /sys/module/ipv6/parameters/disable && l_ipv6_disabled="yes"
      if sysctl net.ipv6.conf.all.disable_ipv6 | grep -Pqs -- "^\h*net\.ipv6\.conf\.all\.disable_ipv6\h*=\h*1\b" && \
         sysctl net.ipv6.conf.default.disable_ipv6 | grep -Pqs -- "^\h*net\.ipv6\.conf\.default\.disable_ipv6\h*=\h*1\b"; then
         l_ipv6_disabled="yes"
      fi
      [ -z "$l_ipv6_disabled" ] && l_ipv6_disabled="no"
   }
   f_kernel_parameter_chk()
   {
      l_running_parameter_value="$(sysctl "$l_parameter_name" | awk -F= '{print $2}' | xargs)"
      if grep -Pq -- '\b'"$l_parameter_value"'\b' <<< "$l_running_parameter_value"; then
         l_output="$l_output\n - \"$l_parameter_name\" is correctly set to \"$l_running_parameter_value\" in the running configuration"
      else
         l_output2="$l_output2\n - \"$l_parameter_name\" is incorrectly set to \"$l_running_parameter_value\" in the running configuration"
      fi
      unset A_out; declare -A A_out
      while read -r l_out; do
         if [ -n "$l_out" ]; then
            if [[ $l_out =~ ^\s*# ]]; then
               l_file="${l_out//# /}"
            else
               l_kpar="$(awk -F= '{print $1}' <<< "$l_out" | xargs)"
               [ "$l_kpar" = "$l_parameter_name" ] && A_out+=(["$l_kpar"]="$l_file")
            fi
         fi
      done < <(/usr/lib/systemd/systemd-sysctl --cat-config | grep -Po '^\h*([^#\n\r]+|#\h*\/[^#\n\r\h]+\.conf\b)')
      if [ -n "$l_ufwscf" ]; then
         l_kpar="$(grep -Po "^\h*$l_parameter_name\b" "$l_ufwscf" | xargs)"
         l_kpar="${l_kpar//\//.}"
         [ "$l_kpar" = "$l_parameter_name" ] && A_out+=(["$l_kpar"]="$l_ufwscf")
      fi
      if (( ${#A_out[@]} > 0 )); then
         while IFS="=" read -r l_fkpname l_file_parameter_value; do
            l_fkpname="${l_fkpname// /}"; l_file_parameter_value="${l_file_parameter_value// /}"
            if grep -Pq -- '\b'"$l_parameter_value"'\b' <<< "$l_file_parameter_value"; then
               l_output="$l_output\n - \"$l_parameter_name\" is correctly set to \"$l_file_parameter_value\" in \"$(printf '%s' "${A_out[@]}")\"\n"
            else
               l_output2="$l_output2\n - \"$l_parameter_name\" is incorrectly set to \"$l_file_parameter_value\" in \"$(printf '%s' "${A_out[@]}")\"\n"
            fi
         done < <(grep -Po -- "^\h*$l_parameter_name\h*=\h*\H+" "${A_out[@]}")
      else
         l_output2="$l_output2\n - \"$l_parameter_name\" is not set in an included file\n"
      fi
   }
   while IFS="=" read -r l_parameter_name l_parameter_value; do
      l_parameter_name="${l_parameter_name// /}"; l_parameter_value="${l_parameter_value// /}"
      if grep -q '^net.ipv6.' <<< "$l_parameter_name"; then
         [ -z "$l_ipv6_disabled" ] && f_ipv6_chk
         if [ "$l_ipv6_disabled" = "yes" ]; then
            l_output="$l_output\n - IPv6 is disabled on the system, \"$l_parameter_name\" is not applicable"
         else
            f_kernel_parameter_chk
         fi
      else
         f_kernel_parameter_chk
      fi
   done < <(printf '%s\n' "${a_parlist[@]}")
   if [ -z "$l_output2" ]; then echo PASS; else echo FAIL; fi
   echo -e "$l_output$l_output2"
}
"""


def _cis_sysctl(root: Path, parameter: str) -> str:
    if not os.path.exists("/sys/module/ipv6/parameters"):
        pytest.skip("this kernel has no ipv6 module parameters to bind over")
    done = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", _CIS_SYSCTL,
                           "bash", str(root), parameter], capture_output=True, text=True, timeout=120, check=False)
    first = done.stdout.split("\n", 1)[0]
    assert first in ("PASS", "FAIL"), (done.stdout, done.stderr)
    return first.lower()


def _running(disable: str, all_off: str | None, default_off: str, forwarding: str) -> dict[str, str]:
    files = {"sys/module/ipv6/parameters/disable": disable + "\n", "proc/sys/net/ipv4/ip_forward": "0\n"}
    if all_off is not None:  # None: booted with ipv6.disable=1, the kernel has no net/ipv6 at all
        files |= {"proc/sys/net/ipv6/conf/all/disable_ipv6": all_off + "\n",
                  "proc/sys/net/ipv6/conf/default/disable_ipv6": default_off + "\n",
                  "proc/sys/net/ipv6/conf/all/forwarding": forwarding + "\n"}
    return files


_DISABLE_BOTH = "net.ipv6.conf.all.disable_ipv6 = 1\nnet.ipv6.conf.default.disable_ipv6 = 1\n"
_FORWARD = "etc/sysctl.d/60-net.conf"
_IPV6_CASES = {
    # persisted only: IPv6 is on until the next boot, and forwards now
    "disable_ipv6-persisted-not-running": {**_running("0", "0", "0", "1"),
                                           _FORWARD: _DISABLE_BOTH + "net.ipv6.conf.all.forwarding = 1\n"},
    # written with sysctl -w and not persisted: the audit finds IPv6 off
    "disable_ipv6-running-not-persisted": {**_running("0", "1", "1", "0"), _FORWARD: "net.ipv6.conf.all.forwarding = 1\n"},
    # booted with ipv6.disable=1 (the kernel's own parameter), grub.cfg saying nothing of it
    "ipv6-disable-on-the-running-kernel": {**_running("1", None, "0", "0"), _FORWARD: "net.ipv6.conf.all.forwarding = 1\n"},
    # all but not default: IPv6 on; forwarding persisted and running 0
    "only-all-disabled": {**_running("0", "1", "0", "0"), _FORWARD: "net.ipv6.conf.all.forwarding = 0\n"},
}


def test_ipv6_forwarding_follows_the_running_kernel_as_the_audit_does(tmp_path: Path) -> None:
    """cis-3.3.1-ipv6-all-forwarding (every IPv6 rule of 3.3 and 4.3.6 through one macro) on a
    root that carries the running kernel's state: IPv6 is off when the kernel says so now, as
    the audit reads it, not when a sysctl.d file or grub.cfg will say so at the next boot."""
    if not os.path.exists(SYSTEMD_SYSCTL):
        pytest.skip("systemd-sysctl is not installed")
    got = {}
    for name, files in _IPV6_CASES.items():
        root = _tree(tmp_path / name, files)
        got[name] = (_verdict(root, "cis-3.3.1-ipv6-all-forwarding"), _cis_sysctl(root, "net.ipv6.conf.all.forwarding=0"))
    assert got == {"disable_ipv6-persisted-not-running": ("fail", "fail"),
                   "disable_ipv6-running-not-persisted": ("pass", "pass"),
                   "ipv6-disable-on-the-running-kernel": ("pass", "pass"),
                   "only-all-disabled": ("pass", "pass")}


# --- 4.2.4: the loopback rules ufw-init loads -----------------------------------------------------
def _ufw_init(root: Path) -> tuple[str, str]:
    """ufw's own ufw-init (`start quiet`, as ufw.service runs it) on ROOT's /etc in a private
    network namespace: what iptables -S and ip6tables -S show there afterwards."""
    (root / "lib/ufw").mkdir(parents=True, exist_ok=True)
    shutil.copy(ORACLES / "lib/ufw/ufw-init-functions", root / "lib/ufw/ufw-init-functions")
    script = (f"sh {ORACLES}/lib/ufw/ufw-init --rootdir {root} --datadir {root} start quiet >/dev/null 2>&1; "
              "iptables -S; echo ====; ip6tables -S")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                         check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
    v4, _, v6 = out.partition("====")
    assert "-N ufw-user-input" in v4, out  # ufw-init started the firewall
    return v4, v6


def test_ufw_loopback_is_the_ipv6_loopback_drop_ufw_init_loads(base_tree: Path, tmp_path: Path) -> None:
    """cis-4.2.4-ufw-loopback: the benchmark wants `DENY IN ::1` besides 127.0.0.0/8 (IPv6 is on
    in the tree). The rule passes exactly when ufw-init loads both drops: it reads user6.rules
    only with IPV6=yes."""
    if not (ORACLES / "lib/ufw/ufw-init").exists() or shutil.which("ip6tables") is None:
        pytest.skip("ufw is not unpacked by scripts/setup.sh --with-test-tools, or ip6tables is missing")
    shipped = {p.name: p.read_text() for p in (ORACLES / "usr/share/ufw/iptables").iterdir()}
    v4 = shipped["user.rules"].replace(
        "### RULES ###\n", "### RULES ###\n\n### tuple ### deny any any 0.0.0.0/0 any 127.0.0.0/8 in\n"
        "-A ufw-user-input -s 127.0.0.0/8 -j DROP\n")
    v6 = shipped["user6.rules"].replace(
        "### RULES ###\n", "### RULES ###\n\n### tuple ### deny any any ::/0 any ::1 in\n-A ufw6-user-input -s ::1 -j DROP\n")
    defaults = (ORACLES / "etc/default/ufw").read_text()
    assert "\nIPV6=yes\n" in "\n" + defaults
    cases = {"no-ipv6-drop": (defaults, shipped["user6.rules"]), "ipv6-drop": (defaults, v6),
             "ipv6-drop-but-IPV6=no": (("\n" + defaults).replace("\nIPV6=yes\n", "\nIPV6=no\n"), v6)}
    got = {}
    for name, (dflt, user6) in cases.items():
        edits = [install("ufw"), disable("nftables.service"), write("etc/ufw/ufw.conf", "ENABLED=yes\nLOGLEVEL=low\n"),
                 write("etc/default/ufw", dflt), *(write(f"etc/ufw/{n}", t) for n, t in shipped.items()),
                 write("etc/ufw/user.rules", v4), write("etc/ufw/user6.rules", user6)]
        (tmp_path / name).mkdir()
        root = corpus.edited_copy(tmp_path / name, base_tree, edits)
        loaded4, loaded6 = _ufw_init(root)
        real = bool(re.search(r"^-A ufw-user-input -s 127\.0\.0\.0/8 -j DROP$", loaded4, re.MULTILINE)
                    and re.search(r"^-A ufw6-user-input -s ::1/128 -j DROP$", loaded6, re.MULTILINE))
        got[name] = (_verdict(root, "cis-4.2.4-ufw-loopback"), "pass" if real else "fail")
    assert got == {"no-ipv6-drop": ("fail", "fail"), "ipv6-drop": ("pass", "pass"),
                   "ipv6-drop-but-IPV6=no": ("fail", "fail")}


# --- 4.3.x: the saved ruleset nft loads ------------------------------------------------------------
def _nft(tmp_path: Path) -> Path:
    nft = ORACLES / "usr/sbin/nft"
    if not nft.exists():
        pytest.skip("nftables is not unpacked by scripts/setup.sh --with-test-tools")
    wrapper = tmp_path / "bin/nft"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH={ORACLES}/usr/lib/x86_64-linux-gnu exec {nft} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _cis_default_deny(nft: Path, ruleset: Path) -> str:
    """4.3.8's audit over what nftables.service loads: the file loaded with `nft -f` in a network
    namespace of its own, then `nft list ruleset | grep 'hook <h>'` must show policy drop for
    input, forward and output; "refused" where nft refuses the file (it then loads nothing)."""
    script = f'"{nft}" -f "{ruleset}" >/dev/null 2>&1 || {{ echo REFUSED; exit 0; }}; "{nft}" list ruleset'
    listed = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                            check=True).stdout
    if listed.startswith("REFUSED"):
        return "refused"  # nothing is loaded at boot: the audit fails, and the file cannot pass here
    hooks = [line for line in listed.split("\n") if "hook " in line]
    ok = all(any(f"hook {h} " in line and "policy drop;" in line for line in hooks) for h in ("input", "forward", "output"))
    return "pass" if ok else "fail"


_DROP = ("table inet filter {\n"
         "\tchain input { type filter hook input priority 0; policy drop; }\n"
         "\tchain forward { type filter hook forward priority 0; policy drop; }\n"
         "\tchain output { type filter hook output priority 0; policy drop; }\n}\n")
_ACCEPT = _DROP.replace("drop;", "accept;")
_NFT_CASES = {
    "flush-ruleset-then-accept": f"#!/usr/sbin/nft -f\nflush ruleset\n{_DROP}flush ruleset\n{_ACCEPT}",
    "flush-ruleset-in-an-include": f'{_DROP}include "/etc/nftables.d/reset.nft"\n',
    "delete-table": f"flush ruleset\n{_DROP}delete table inet filter\n",
    "flush-ruleset-first": f"#!/usr/sbin/nft -f\nflush ruleset\n{_DROP}",
    # the idempotent-reload idiom: make the table, delete it, define it again
    "delete-then-define": f"table inet filter\ndelete table inet filter\n{_DROP}",
    "delete-then-define-accept": f"{_DROP}delete table inet filter\n{_ACCEPT}",
    "flush-table-keeps-the-policies": f"{_DROP}flush table inet filter\n",
    "flush-chain-keeps-its-policy": f"{_DROP}flush chain inet filter input\n",
    "delete-a-table-that-is-not-there": f"delete table inet filter\n{_DROP}",
    "delete-an-empty-chain": f"{_DROP}delete chain inet filter forward\n",
}


def test_nftables_default_deny_is_the_ruleset_nft_loads(base_tree: Path, tmp_path: Path) -> None:
    """cis-4.3.8-nftables-default-deny under --root: a `flush ruleset` (in the file or one it
    includes) drops the tables before it, `delete` drops a table or an empty chain, `flush`
    keeps chains and policies, as nft does; deleting what is not there makes nft refuse the
    file (an error here, never a pass)."""
    nft = _nft(tmp_path)
    got = {}
    for name, text in _NFT_CASES.items():
        (tmp_path / name).mkdir()
        root = corpus.edited_copy(tmp_path / name, base_tree, [
            write("etc/nftables.conf", text), write("etc/nftables.d/reset.nft", f"flush ruleset\n{_ACCEPT}")])
        # nft resolves the include against the host's /etc: it is given the tree's file instead
        loaded = tmp_path / f"{name}.nft"
        loaded.write_text(text.replace("/etc/nftables.d/", f"{root}/etc/nftables.d/"))
        got[name] = (_verdict(root, "cis-4.3.8-nftables-default-deny"), _cis_default_deny(nft, loaded))
    verdict = {"pass": "pass", "fail": "fail", "refused": "error"}
    assert {name: ours for name, (ours, _) in got.items()} == {name: verdict[nft] for name, (_, nft) in got.items()}
    assert got["delete-then-define"] == ("pass", "pass") and got["delete-a-table-that-is-not-there"][1] == "refused"


# --- 4.3.x: the tables and chains nft makes of the saved file -----------------------------------
# The saved file is read as `nft -f` reads it (tables, chains, hooks, the last policy given to
# each base chain), and a file nft refuses (it then loads nothing) is an error, never a pass. Each
# case is loaded with the real nft in a network namespace of its own and its listing read.
_NFT_RULES = ("cis-4.3.4-nftables-table", "cis-4.3.5-nftables-base-chains", "cis-4.3.6-nftables-loopback",
              "cis-4.3.8-nftables-default-deny", "cis-4.3.10-nftables-rules-permanent")
_NFT_FULL = ('table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n'
             '\t\tiif "lo" accept\n\t\tip saddr 127.0.0.0/8 counter drop\n\t\tip6 saddr ::1 counter drop\n\t}\n'
             "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n"
             "\tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n\t}\n}\n")


def _nft_listing(nft: Path, root: Path, text: str, tmp_path: Path, name: str) -> str | None:
    """What nft lists after loading TEXT (the tree's includes given as the tree's files), or
    None where it refuses the file (it then loads nothing)."""
    loaded = tmp_path / f"{name}.nft"
    loaded.write_text(text.replace('"/etc/nftables.d/', f'"{root}/etc/nftables.d/'))
    script = f'"{nft}" -f "{loaded}" >/dev/null 2>&1 || {{ echo REFUSED; exit 0; }}; "{nft}" list ruleset'
    out = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return None if out.startswith("REFUSED") else out


def _listed_chains(listing: str) -> list[tuple[str, bool, str | None, str | None, list[str]]]:
    """(family, dormant, hook, policy, rules) of each chain nft lists: its output has one table,
    chain, hook line or rule a line, tables and chains closed by a `}` line of their own."""
    chains: list[tuple[str, bool, str | None, str | None, list[str]]] = []
    family, dormant, chain = "", False, None
    for line in listing.split("\n"):
        s = line.strip()
        if m := re.match(r"table (\S+) ", s):
            family, dormant = m.group(1), False
        elif s == "flags dormant":
            dormant = True
        elif m := re.match(r"chain (\S+) \{", s):
            chain = (family, dormant, None, None, [m.group(1)])
        elif chain is not None and (m := re.match(r"type filter hook (\w+) .*policy (\w+);", s)):
            chain = (family, dormant, m.group(1), m.group(2), chain[4])
        elif chain is not None and s == "}":
            chains.append(chain)
            chain = None
        elif chain is not None and s and not s.startswith("type "):
            chain[4].append(s)
    return chains


def _loaded_default_deny(listing: str | None, ipv6: bool = True) -> str:
    """Default deny as netfilter applies it: each hook has, for IPv4 (ip, inet tables) and IPv6
    (ip6, inet), a filter base chain of a table that is not dormant whose policy is drop."""
    if listing is None:
        return "fail"  # nothing loaded
    chains = _listed_chains(listing)
    families = [("ip", "inet")] + ([("ip6", "inet")] if ipv6 else [])
    ok = all(any(c[0] in fams and not c[1] and c[2] == hook and c[3] == "drop" for c in chains)
             for hook in ("input", "forward", "output") for fams in families)
    return "pass" if ok else "fail"


def test_nftables_policy_is_the_last_one_nft_gives_each_base_chain(base_tree: Path, tmp_path: Path) -> None:
    """cis-4.3.8-nftables-default-deny under --root: `policy drop;` on its own line is the chain's
    policy; a later `chain`, `add chain` or table block giving `policy accept;` replaces it; a
    `$variable` policy is its value; an ip table leaves IPv6 open, arp and bridge chains and a
    dormant table filter no IP traffic at all."""
    nft = _nft(tmp_path)
    own_line = _NFT_FULL.replace("priority filter; policy drop;\n\t\tiif", "priority filter;\n\t\tpolicy drop\n\t\tiif")
    cases = {
        "policy-on-its-own-line": own_line,
        "later-chain-statement": f"{_NFT_FULL}chain inet filter input {{ policy accept; }}\n",
        "later-add-chain": f"{_NFT_FULL}add chain inet filter input {{ policy accept; }}\n",
        "later-table-block": f"{_NFT_FULL}table inet filter {{\n\tchain input {{\n\t\tpolicy accept;\n\t}}\n}}\n",
        "policy-variable": 'define DROP = "drop"\n' + _NFT_FULL.replace("policy drop;", "policy $DROP;"),
        "ip-table-only": _NFT_FULL.replace("table inet", "table ip"),
        "arp-and-bridge": ("table arp a {\n\tchain i { type filter hook input priority 0; policy drop; }\n"
                           "\tchain o { type filter hook output priority 0; policy drop; }\n}\n"
                           "table bridge b {\n\tchain f { type filter hook forward priority 0; policy drop; }\n}\n"),
        "dormant-table": _NFT_FULL.replace("table inet filter {\n", "table inet filter {\n\tflags dormant\n"),
    }
    got = {}
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        root = corpus.edited_copy(tmp_path / name, base_tree, [write("etc/nftables.conf", f"flush ruleset\n{text}")])
        listing = _nft_listing(nft, root, f"flush ruleset\n{text}", tmp_path, name)
        got[name] = (_verdict(root, "cis-4.3.8-nftables-default-deny"), _loaded_default_deny(listing))
    assert got == {"policy-on-its-own-line": ("pass", "pass"), "later-chain-statement": ("fail", "fail"),
                   "later-add-chain": ("fail", "fail"), "later-table-block": ("fail", "fail"),
                   "policy-variable": ("pass", "pass"), "ip-table-only": ("fail", "fail"),
                   "arp-and-bridge": ("fail", "fail"), "dormant-table": ("fail", "fail")}


def test_nftables_file_nft_refuses_is_an_error_not_a_pass(base_tree: Path, tmp_path: Path) -> None:
    """4.3.4, 4.3.5, 4.3.6, 4.3.8 and 4.3.10 under --root on a saved file nft refuses as a whole
    (nftables.service then loads nothing): each is an error naming the line, not a pass read
    from the lines of a file that never loads. The valid file passes all five."""
    nft = _nft(tmp_path)
    cases = {
        "valid": _NFT_FULL,
        "brace-not-closed": _NFT_FULL.rstrip("}\n") + "\n",
        "chain-closed-without-separator": _NFT_FULL.replace("\t}\n}\n", "\t} }\n"),
        "misspelt-policy": _NFT_FULL.replace("forward priority filter; policy drop;", "forward priority filter; polcy drop;"),
        "policy-on-a-regular-chain": _NFT_FULL.replace("}\n}\n", "}\n\tchain lo_in {\n\t\tpolicy drop;\n\t}\n}\n"),
        "variable-not-a-string": "define DROP = drop\n" + _NFT_FULL.replace("policy drop;", "policy $DROP;"),
        "hook-split-over-lines": _NFT_FULL.replace("type filter hook output", "type filter\n\t\thook output"),
        "missing-include": f'{_NFT_FULL}include "/etc/nftables.d/none.nft"\n',
    }
    got = {}
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        root = corpus.edited_copy(tmp_path / name, base_tree, [write("etc/nftables.conf", f"flush ruleset\n{text}")])
        listing = _nft_listing(nft, root, f"flush ruleset\n{text}", tmp_path, name)
        verdicts = set(_verdicts(root, _NFT_RULES).values())
        got[name] = (verdicts.pop() if len(verdicts) == 1 else verdicts, "refused" if listing is None else "loaded")
    assert got == {"valid": ("pass", "loaded"), **{n: ("error", "refused") for n in cases if n != "valid"}}


def test_nftables_loopback_rules_are_those_of_the_input_chains(base_tree: Path, tmp_path: Path) -> None:
    """cis-4.3.6-nftables-loopback under --root: the loopback rules count in an input filter base
    chain or a chain it jumps to, where nft lists them there (a `$variable` is its value); in the
    output chain, or a chain nothing jumps to, they filter no input."""
    nft = _nft(tmp_path)
    lo = '\t\tiif "lo" accept\n\t\tip saddr 127.0.0.0/8 counter drop\n\t\tip6 saddr ::1 counter drop\n'
    bare = _NFT_FULL.replace(lo, "")
    cases = {
        "in-input": _NFT_FULL,
        "in-a-chain-input-jumps-to": bare.replace("policy drop;\n\t}\n\tchain forward",
                                                  f"policy drop;\n\t\tjump lo_in\n\t}}\n\tchain lo_in {{\n{lo}\t}}\n\tchain forward"),
        "in-a-chain-nothing-jumps-to": bare.replace("\tchain forward", f"\tchain lo_in {{\n{lo}\t}}\n\tchain forward"),
        "in-output": bare.replace("output priority filter; policy drop;\n", f"output priority filter; policy drop;\n{lo}"),
        "interface-variable": 'define LO = "lo"\n' + _NFT_FULL.replace('iif "lo"', "iif $LO"),
    }
    got = {}
    for name, text in cases.items():
        (tmp_path / name).mkdir()
        root = corpus.edited_copy(tmp_path / name, base_tree, [write("etc/nftables.conf", f"flush ruleset\n{text}")])
        listing = _nft_listing(nft, root, f"flush ruleset\n{text}", tmp_path, name)
        assert listing is not None, name
        chains = {c[4][0]: c for c in _listed_chains(listing)}
        seen, todo = set(), [n for n, c in chains.items() if c[2] == "input"]
        while todo:  # the input chains' rules and those of the chains they jump to
            seen.add(todo[0])
            todo += [m for r in chains[todo.pop(0)][4][1:] for m in re.findall(r"jump (\S+)", r) if m not in seen]
        rules = [r for n in seen for r in chains[n][4][1:]]
        real = all(any(re.search(rx, r) for r in rules) for rx in (
            r'^iif "lo" accept$', r"^ip saddr 127\.0\.0\.0/8 counter packets \d+ bytes \d+ drop$",
            r"^ip6 saddr ::1 counter packets \d+ bytes \d+ drop$"))
        got[name] = (_verdict(root, "cis-4.3.6-nftables-loopback"), "pass" if real else "fail")
    assert got == {"in-input": ("pass", "pass"), "in-a-chain-input-jumps-to": ("pass", "pass"),
                   "in-a-chain-nothing-jumps-to": ("fail", "fail"), "in-output": ("fail", "fail"),
                   "interface-variable": ("pass", "pass")}


def test_nftables_rules_permanent_is_a_table_nft_loads_at_boot(base_tree: Path, tmp_path: Path) -> None:
    """cis-4.3.10-nftables-rules-permanent under --root: an `include` line is not a table; what
    counts is a table `nft -f /etc/nftables.conf` makes, from the file or what it includes."""
    nft = _nft(tmp_path)
    cases = {
        "table-in-an-include": ('include "/etc/nftables.d/*.nft"\n', {"etc/nftables.d/filter.nft": _NFT_FULL}),
        "include-of-an-empty-file": ('include "/etc/nftables.d/*.nft"\n', {"etc/nftables.d/empty.nft": "# none yet\n"}),
        "include-matching-nothing": ('include "/etc/nftables.d/*.nft"\n', {}),
        "only-an-arp-table": ("table arp a {\n\tchain i { type filter hook input priority 0; policy drop; }\n}\n", {}),
    }
    got = {}
    for name, (text, extra) in cases.items():
        (tmp_path / name).mkdir()
        root = corpus.edited_copy(tmp_path / name, base_tree, [
            write("etc/nftables.conf", f"flush ruleset\n{text}"), *(write(p, t) for p, t in extra.items())])
        (root / "etc/nftables.d").mkdir(exist_ok=True)
        listing = _nft_listing(nft, root, f"flush ruleset\n{text}", tmp_path, name)
        real = listing is not None and re.search(r"^table (inet|ip|ip6) ", listing, re.MULTILINE) is not None
        got[name] = (_verdict(root, "cis-4.3.10-nftables-rules-permanent"), "pass" if real else "fail")
    assert got == {"table-in-an-include": ("pass", "pass"), "include-of-an-empty-file": ("fail", "fail"),
                   "include-matching-nothing": ("fail", "fail"), "only-an-arp-table": ("fail", "fail")}
