"""CIS Debian 12 sections 3 and 4 against the benchmark's own audit procedures and the real
components, on crafted trees: the 3.3.x audit script (real sysctl and systemd-sysctl over the
tree's proc/sys, sys/module and sysctl.d, in a private mount and network namespace), ufw's own
ufw-init loading the tree's rules in a network namespace, and nft loading the tree's saved
ruleset in one. No host sysctl, module or ruleset is touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _verdict(root: Path, rule_id: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "secpolicy", "scan", "--root", str(root), "-p", "policies/cis", "--rule", rule_id,
         "--format", "json", "-q"], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert done.stdout, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    return result["status"]


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
    input, forward and output (nothing is loaded when nft refuses the file)."""
    script = f'"{nft}" -f "{ruleset}" >/dev/null 2>&1; "{nft}" list ruleset'
    listed = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                            check=True).stdout
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
}


def test_nftables_default_deny_is_the_ruleset_nft_loads(base_tree: Path, tmp_path: Path) -> None:
    """cis-4.3.8-nftables-default-deny under --root: a `flush ruleset` (in the file or one it
    includes) drops the tables before it, as nft does; what `delete table` leaves only nft can
    tell, so the rule is an error there, never a pass."""
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
    assert got == {"flush-ruleset-then-accept": ("fail", "fail"), "flush-ruleset-in-an-include": ("fail", "fail"),
                   "delete-table": ("error", "fail"), "flush-ruleset-first": ("pass", "pass")}
