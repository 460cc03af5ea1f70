"""Start-up: seconds from starting `secpolicy monitor` (the bundled packs, no --policy) to its
--ready-file (probes attached and armed), wall and the process's own CPU time, on a first run
(empty caches: the policies are compiled and bcc compiles the BPF programs) and on later runs
(both reused). The anchor, measured in the same run: a process that imports bcc and compiles
and loads the smallest tracepoint program (what any bcc tool pays before it watches anything).

Usage: bench/monitor_startup_bench.py [--rounds 3]   (root, bcc)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ANCHOR = """
from bcc import BPF
b = BPF(text=b"int sp_probe(void *ctx) { return 0; }")
b.load_func(b"sp_probe", BPF.TRACEPOINT)
"""


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ready_time(cache: Path) -> tuple[float, float]:
    """(wall, CPU) seconds until `secpolicy monitor` is ready, with XDG_CACHE_HOME=cache."""
    with tempfile.TemporaryDirectory(prefix="sp-start-") as d:
        ready = Path(d) / "ready"
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "secpolicy", "monitor", "--output", os.devnull,
                                 "--ready-file", str(ready)], cwd=REPO, env=env,
                                stderr=subprocess.DEVNULL)
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    raise SystemExit("secpolicy monitor exited before it was ready")
                time.sleep(0.005)
            wall = time.perf_counter() - t0
            cpu = _cpu(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    return wall, cpu


def anchor() -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", ANCHOR])
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(_status)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF)")
    rows: dict[str, list[tuple[float, float]]] = {"first run": [], "later run": [], "anchor": []}
    for r in range(opts.rounds):
        with tempfile.TemporaryDirectory(prefix="sp-cache-") as cache:
            rows["first run"].append(ready_time(Path(cache)))
            rows["later run"].append(ready_time(Path(cache)))
        rows["anchor"].append(anchor())
        print(f"  round {r + 1}: " + "  ".join(f"{k} {v[-1][0]:.2f} s wall / {v[-1][1]:.2f} s cpu"
                                               for k, v in rows.items()), flush=True)
    med = {k: (statistics.median(w for w, _c in v), statistics.median(c for _w, c in v)) for k, v in rows.items()}
    load = os.getloadavg()[0]
    print(f"\nmedians (load average {load:.1f} on {os.cpu_count()} CPUs):")
    for k, (w, c) in med.items():
        print(f"  {k:<10} ready {w:6.2f} s wall, {c:5.2f} s CPU   x{w / med['anchor'][0]:.2f} the anchor's wall")
    goal = med["later run"][0]
    print(f"monitor ready in {goal:.2f} s wall on a later run (goal <= 3 s on an idle 2-core machine: "
          f"{'met' if goal <= 3 else 'NOT met'}), {med['first run'][0]:.2f} s on the first")


if __name__ == "__main__":
    main()
