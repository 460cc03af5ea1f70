"""Burst: open(O_CREAT) events every rule wants, generated at 20,000 per second and then as fast
as this machine can, under `secpolicy monitor`; prints generated, delivered and counted as lost
(kernel ring buffer and user-space queue), and whether every event is accounted for.

Usage: bench/burst_bench.py [--seconds 3] [--rate 20000]   (root, bcc)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exec_storm_bench import secpolicy_monitor

POLICY = """\
metadata: {{id: burst-bench, title: burst bench, version: "1.0.0"}}
rules:
  - id: burst-write
    title: write in the burst directory
    severity: info
    when: type == "write" and file.path startswith "{d}/"
"""

# Paced in 1 ms slices so the rate holds over the whole burst; rate 0 = as fast as possible.
GENERATOR = """
import os, sys, time
d, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
flags = os.O_WRONLY | os.O_CREAT
op, cl = os.open, os.close
path = os.path.join(d, "f")
n = 0
t0 = time.perf_counter()
end = t0 + seconds
if rate:
    per_ms = rate / 1000.0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - t0) * 1000.0 * per_ms)
        while n < due:
            cl(op(path, flags, 0o600)); n += 1
        time.sleep(0.0002)
else:
    while time.perf_counter() < end:
        for _ in range(1000):
            cl(op(path, flags, 0o600))
        n += 1000
print(n, time.perf_counter() - t0)
"""


def burst(rate: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sp-burst-") as d:
        policy = Path(d) / "policy.yaml"
        policy.write_text(POLICY.format(d=d))
        work = Path(d) / "w"
        work.mkdir()
        with secpolicy_monitor([str(policy)]) as summary:
            out = subprocess.run([sys.executable, "-c", GENERATOR, str(work), str(rate), str(seconds)],
                                 check=True, capture_output=True, text=True).stdout.split()
    generated, took = int(out[0]), float(out[1])
    delivered = summary.get("events_by_type", {}).get("write", 0)
    lost = summary.get("lost_by_type", {}).get("write", 0)
    kernel = summary.get("kernel_lost", {}).get("write", 0)
    queue = summary.get("queue_dropped", {}).get("write", 0)
    label = f"{rate}/s" if rate else "max"
    print(f"{label:>8}: generated {generated} in {took:.2f} s ({generated / took:,.0f}/s); "
          f"delivered {delivered}; lost {lost} (kernel {kernel}, queue {queue}); "
          f"accounted {'exactly' if delivered + lost == generated else f'NOT ({delivered + lost - generated:+d})'}; "
          f"loss windows {len(summary.get('loss_windows', []))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=20_000)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF)")
    burst(opts.rate, opts.seconds)
    burst(0, opts.seconds)


if __name__ == "__main__":
    main()
