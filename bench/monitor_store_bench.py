"""What `monitor --store` (with an audit log and a file sink) costs: the exec storm (5,000
fork+exec) with nothing watching, under `secpolicy monitor`, and under `secpolicy monitor
--store DB --audit-log DIR --sink file:...`, interleaved in one run; then a burst of writes at
20,000/s and as fast as possible, checking that the store keeps every delivered event.

Usage: bench/monitor_store_bench.py [--count 5000] [--rounds 3] [--rate 20000] [--seconds 3]
(root, bcc)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from burst_bench import GENERATOR
from exec_storm_bench import BUNDLED_EVENT_RULES, REPO, exec_storm, run_modes

# The kernel passes every write under the directory up (path prefix); the pid test in user
# space never holds, so the burst measures events into the store, not an alert flood.
POLICY = """\
metadata: {{id: store-bench, title: store bench, version: "1.0.0"}}
rules:
  - id: store-bench-write
    title: write in the burst directory by init
    severity: info
    when: type == "write" and file.path startswith "{d}/" and proc.pid == 1
"""
CODE = ("import sys; from secpolicy.cli.live import monitor_cmd; "
        "monitor_cmd.main(sys.argv[1:], prog_name='secpolicy monitor')")


@contextmanager
def monitor(policies: list[str], outputs: bool) -> Iterator[dict[str, Any]]:
    """`secpolicy monitor` in its own process, with the store, an audit log and a file sink
    when `outputs`; yields a dict holding the summary (and the stored counts) afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="sp-store-bench-"))
    ready, summary = tmp / "ready", tmp / "summary.json"
    args = ["--output", os.devnull, "--summary-json", str(summary), "--ready-file", str(ready)]
    for p in policies:
        args += ["--policy", p]
    if outputs:
        subprocess.run([sys.executable, "-m", "secpolicy", "log", "init", str(tmp / "log"),
                        "--key-out", str(tmp / "key")], check=True, capture_output=True, cwd=REPO)
        args += ["--store", str(tmp / "events.db"), "--audit-log", str(tmp / "log"),
                 "--sink", f"file://{tmp / 'alerts.jsonl'}"]
    with open(tmp / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", CODE, *args], cwd=REPO, stderr=err)
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"secpolicy monitor did not start: {(tmp / 'stderr').read_text()}")
            time.sleep(0.05)
        yield out
    finally:
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        out["exit_s"] = time.perf_counter() - t0
        if summary.exists():
            out.update(json.loads(summary.read_text()))
        if outputs and (tmp / "events.db").exists():
            with sqlite3.connect(tmp / "events.db") as db:
                out["rows"] = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        shutil.rmtree(tmp, ignore_errors=True)


def burst(rate: int, seconds: float, outputs: bool = True) -> None:
    with tempfile.TemporaryDirectory(prefix="sp-store-burst-") as d:
        policy = Path(d) / "policy.yaml"
        policy.write_text(POLICY.format(d=d))
        work = Path(d) / "w"
        work.mkdir()
        with monitor([str(policy)], outputs=outputs) as s:
            gen = subprocess.run([sys.executable, "-c", GENERATOR, str(work), str(rate), str(seconds)],
                                 check=True, capture_output=True, text=True)
        n, took = gen.stdout.split()
    o = s.get("outputs", {})
    label = (f"{rate}/s" if rate else "max rate") + (" +store" if outputs else ", monitor alone")
    line = (f"burst {label}: generated {n} in {float(took):.2f} s ({int(n) / float(took):,.0f}/s); monitor "
            f"delivered {s.get('events')} events, lost {s.get('lost')}")
    if outputs:
        line += (f"; store holds {s.get('rows')} (dropped {o.get('store_dropped')}); "
                 f"{'store kept up' if s.get('rows') == s.get('events') else 'store behind, excess counted'}")
    print(line + f"; stop-to-exit {s['exit_s']:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=3.0)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF)")
    n = opts.count
    exec_storm(200)  # warm the page cache
    runs: list[dict[str, Any]] = []

    def watched(outputs: bool) -> float:
        with monitor(BUNDLED_EVENT_RULES, outputs) as s:
            t = exec_storm(n)
        runs.append(s)
        return t

    print(f"exec storm: {n} fork+exec of /bin/true, {opts.rounds} rounds; rules: {', '.join(BUNDLED_EVENT_RULES)}")
    times = run_modes({"baseline": lambda: exec_storm(n), "monitor": lambda: watched(False),
                       "+store": lambda: watched(True)}, opts.rounds)
    base = statistics.median(times["baseline"])
    print("\nmedians:")
    for mode, ts in times.items():
        med = statistics.median(ts)
        print(f"  {mode:<9} {med:7.3f} s  x{med / base:.3f} of baseline")
    mon, store = statistics.median(times["monitor"]), statistics.median(times["+store"])
    print(f"cost of --store/--audit-log/--sink on the storm: x{store / mon:.3f} of the monitor alone "
          f"({(store - mon) / base * 100:+.1f} points of baseline)")
    for s in runs:
        if "rows" in s:
            print(f"  +store run: {s.get('events')} events delivered, {s.get('rows')} stored, "
                  f"lost {s.get('lost')}, stop-to-exit {s['exit_s']:.2f} s")
    burst(opts.rate, opts.seconds)
    burst(0, opts.seconds, outputs=False)
    burst(0, opts.seconds)


if __name__ == "__main__":
    main()
