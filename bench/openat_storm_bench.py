"""Openat storm: 200,000 open(O_WRONLY|O_CREAT)+close of a file outside every watched path, with
nothing watching, under `secpolicy monitor` (bundled rules: the kernel drops these opens) and
under a private auditd with the equivalent rules, interleaved in one run; prints the overheads
on the storm's own CPU time (and wall time) and their ratio (goal: secpolicy <= auditd).

Usage: bench/openat_storm_bench.py [--count 200000] [--rounds 3]   (root, bcc, auditd)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exec_storm_bench import auditd_rules, report_cpu, run_modes_cpu, secpolicy_monitor, timed

# The bundled rules' file events as audit rules: writes under /etc, any access to the audit
# trail, and opens refused with EACCES or EPERM.
AUDIT_EQUIVALENT = [
    ["-w", "/etc", "-p", "wa"],
    ["-w", "/var/log/audit", "-p", "rwa"],
    ["-a", "always,exit", "-F", "arch=b64", "-S", "open,openat,openat2,creat", "-F", "exit=-EACCES"],
    ["-a", "always,exit", "-F", "arch=b64", "-S", "open,openat,openat2,creat", "-F", "exit=-EPERM"],
]

STORM = """
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
flags = os.O_WRONLY | os.O_CREAT
op, cl = os.open, os.close
for _ in range(n):
    cl(op(path, flags, 0o600))
"""


def openat_storm(count: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the storm process (interpreter start included, the same in
    every mode)."""
    with tempfile.TemporaryDirectory(prefix="sp-openat-") as d:
        return timed([sys.executable, "-c", STORM, os.path.join(d, "f"), str(count)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF and auditd)")
    n = opts.count
    openat_storm(10_000)
    summaries: list[dict[str, Any]] = []

    def with_monitor() -> tuple[float, float]:
        with secpolicy_monitor() as s:
            t = openat_storm(n)
        summaries.append(s)
        return t

    def with_auditd() -> tuple[float, float]:
        with auditd_rules(AUDIT_EQUIVALENT):
            return openat_storm(n)

    print(f"openat storm: {n} open+close, {opts.rounds} rounds")
    samples = run_modes_cpu({"baseline": lambda: openat_storm(n), "secpolicy": with_monitor,
                             "auditd": with_auditd}, opts.rounds)
    report_cpu(samples, f"{n} opens", goal_ratio=1.0)
    for s in summaries:
        ev = s.get("events_by_type", {})
        print(f"monitor run: write events delivered {ev.get('write', 0)} (the storm's are dropped in "
              f"the kernel), open {ev.get('open', 0)}, lost {s.get('lost')}, the monitor's own CPU "
              f"{s.get('_monitor_cpu_s', 0):.2f} s")


if __name__ == "__main__":
    main()
