"""CLI start-up: `secpolicy --version` and `log verify` of a small log, end to end as a user
runs them (interpreter start included), against `python -c pass` measured in the same run."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.15


def median_run(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    exe = [sys.executable, "-m", "secpolicy"]
    with tempfile.TemporaryDirectory(prefix="secpolicy-startup-") as tmp:
        log, key = Path(tmp) / "log", Path(tmp) / "initial.key"
        subprocess.run([*exe, "log", "init", str(log), "--key-out", str(key)], check=True, capture_output=True)
        alerts = "".join(f'{{"rule_id":"r","severity":"high","title":"a{i}","ts":"2026-11-21T10:00:00Z"}}\n'
                         for i in range(50))
        subprocess.run([*exe, "log", "append", str(log), "-"], input=alerts, text=True, check=True,
                       capture_output=True)
        anchor = median_run([sys.executable, "-c", "pass"], args.runs)
        version = median_run([*exe, "--version"], args.runs)
        verify = median_run([*exe, "log", "verify", str(log), "--key-file", str(key)], args.runs)
    print(f"python -c pass (anchor):        {anchor * 1000:7.1f} ms")
    for name, t in (("secpolicy --version", version), ("secpolicy log verify (55 entries)", verify)):
        verdict = "meets" if t <= TARGET_S else "MISSES"
        print(f"{name + ':':32s}{t * 1000:7.1f} ms = anchor + {(t - anchor) * 1000:.1f} ms, "
              f"x{t / anchor:.2f} of the anchor ({verdict} the {TARGET_S * 1000:.0f} ms target)")


if __name__ == "__main__":
    main()
