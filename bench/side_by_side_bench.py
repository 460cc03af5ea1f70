"""Side by side: one attack workload watched at once by `secpolicy monitor` (the bundled PCI DSS
event rules, every alert written) and by a private auditd with the equivalent audit rules,
whose log is then replayed through the same rules (`secpolicy replay`). Prints the alerts of
each, matched by rule, file, program and user, and what one side has that the other has not.

The workload runs under a login uid of its own, and both sides keep only its alerts. It does
what tests/fixtures/events/record_auditd.sh records, on the live system: failed PAM logins,
files refused to nobody, the audit log read, a privileged program, a file created, changed and
removed under /etc, an outbound UDP connect (no packet leaves: TEST-NET-1), a throwaway user
added, changed and deleted, an audit rule added and removed. Everything it creates it removes.

Usage: bench/side_by_side_bench.py   (root, bcc, auditd, pamtester)
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exec_storm_bench import REPO, auditd_rules, secpolicy_monitor

RULES_FILE = REPO / "policies" / "pci-dss" / "events.yaml"


def audit_rules(auid: int) -> list[list[str]]:
    """The record script's rules, for this workload's login uid."""
    a = ["-F", f"auid={auid}"]
    return [
        ["-a", "always,exit", "-F", "arch=b64", "-S", "execve", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "open,openat,creat,truncate", "-F", "dir=/etc", "-F", "perm=wa", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "open,openat", "-F", "exit=-EACCES", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "open,openat", "-F", "exit=-EPERM", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "unlink,unlinkat,rename,renameat", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "link,linkat,symlink,symlinkat", "-F", "dir=/etc", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "chmod,fchmodat,chown,fchownat", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", *a],
        ["-a", "always,exit", "-F", "arch=b64", "-S", "setuid,setresuid", *a],
        ["-a", "always,exit", "-F", "dir=/var/log/audit", "-F", "perm=r", *a],
    ]


WORKLOAD = """
set +e
for i in 1 2 3 4 5 6; do echo wrong$i | pamtester -v login root authenticate >/dev/null 2>&1; done
setpriv --reuid=65534 --regid=65534 --clear-groups cat /etc/shadow >/dev/null 2>&1
setpriv --reuid=65534 --regid=65534 --clear-groups cat /etc/gshadow >/dev/null 2>&1
ls /var/log/audit >/dev/null 2>&1
setpriv --reuid=0 id >/dev/null
echo "# secpolicy side by side" > /etc/secpolicy-sbs-$$.conf
chmod 0644 /etc/secpolicy-sbs-$$.conf
ln -s /tmp /etc/secpolicy-sbs-link-$$
ln /etc/secpolicy-sbs-$$.conf /etc/secpolicy-sbs-hard-$$
rm -f /etc/secpolicy-sbs-link-$$ /etc/secpolicy-sbs-hard-$$
python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("192.0.2.10", 443))'
rm -f /etc/secpolicy-sbs-$$.conf
useradd -N -M -s /usr/sbin/nologin "$SBS_USER"
id -u "$SBS_USER" > "$SBS_UID_FILE"
usermod -c "secpolicy side by side" "$SBS_USER"
userdel "$SBS_USER"
auditctl -a exit,never -F path=/nonexistent-sbs-$$ -k sbs-$$ >/dev/null
auditctl -d exit,never -F path=/nonexistent-sbs-$$ -k sbs-$$ >/dev/null
true
"""


def run_workload(auid: int, user: str, d: Path) -> None:
    """The workload under login uid `auid` (written once, inherited by every child)."""
    script = d / "workload.sh"
    script.write_text(WORKLOAD)
    subprocess.run(["/bin/sh", "-c", f"echo {auid} > /proc/self/loginuid; exec /bin/sh {script}"], check=True,
                   env={**os.environ, "SBS_USER": user, "SBS_UID_FILE": str(d / "uid")}, cwd="/tmp", timeout=300)


def summarise(a: dict[str, Any], names: dict[str, str]) -> tuple[str, ...]:
    """What both sides must agree on. Audit records that user space sends carry no euid, and
    an account's id= is named when it is logged (auditd) or decoded (live), before or after
    the account exists: an id is compared as the name it belongs to."""
    ev = a["event"]
    what = (ev.get("file") or {}).get("path") or (ev.get("account") or {}).get("op") \
        or (ev.get("config") or {}).get("op") or (ev.get("auth") or {}).get("user") or ""
    proc = ev.get("proc", {})
    euid = "" if ev["type"] in ("auth", "account_change", "config_change") else f"euid {proc.get('euid')}"
    account = str((ev.get("account") or {}).get("name", ""))
    return (a["rule_id"], str(what), str(proc.get("exe", "")), euid, names.get(account, account))


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF, auditd)")
    auid = 42000 + os.getpid() % 10000
    user = f"sp-sbs-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="sp-sbs-") as d:
        live_out = Path(d) / "live.jsonl"
        with auditd_rules(audit_rules(auid)) as log, \
                secpolicy_monitor([str(RULES_FILE)], output=str(live_out), extra=["--aggregate-window", "0"]):
            run_workload(auid, user, Path(d))
            time.sleep(2)
            auditd_log = Path(d) / "audit.log"
            auditd_log.write_bytes(Path(log).read_bytes())
        try:
            pwd.getpwnam(user)
            subprocess.run(["userdel", user], check=False)
        except KeyError:
            pass
        replayed = subprocess.run([sys.executable, "-m", "secpolicy", "replay", str(auditd_log), "--policy",
                                   str(RULES_FILE)], capture_output=True, text=True, cwd=REPO, check=False).stdout
        live = [a for a in map(json.loads, live_out.read_text().splitlines())
                if a["event"].get("proc", {}).get("auid") == auid]
        uid_file = Path(d) / "uid"
        names = {uid_file.read_text().strip(): user} if uid_file.exists() else {}
    audit = [a for a in map(json.loads, replayed.splitlines()) if a["event"].get("proc", {}).get("auid") == auid]
    lc = Counter(summarise(a, names) for a in live)
    ac = Counter(summarise(a, names) for a in audit)
    both = lc & ac
    print(f"workload login uid {auid}: live {sum(lc.values())} alerts, auditd replayed {sum(ac.values())}, "
          f"matching (rule, file or operation, program, effective uid, account) {sum(both.values())}")
    for k, n in sorted(both.items()):
        print(f"  both      {n} x {' | '.join(k)}")
    for k, n in sorted((ac - lc).items()):
        print(f"  auditd only {n} x {' | '.join(k)}")
    for k, n in sorted((lc - ac).items()):
        print(f"  live only {n} x {' | '.join(k)}")


if __name__ == "__main__":
    main()
