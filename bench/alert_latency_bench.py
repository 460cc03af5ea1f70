"""Alert latency: `secpolicy monitor` under a stream of events every one of which is an alert
(open(O_CREAT) in a watched directory at 20,000 per second), every alert written
(--aggregate-window 0); then a storm of opens refused with EACCES (as nobody) hitting the
bundled pci-10.2.1.4-access-denied rule with storm control on, while a canary alert fires
every 100 ms from another program. Prints, from one run: alerts written, p50/p99/max latency
(from the event to its line in the output file) in the first and last third of the run (a
growing backlog shows as a later third slower than the first), the canary's latency during
the storm, and the output size of the storm against what every alert written would take.

The anchor is the monitor's own reorder hold (events are kept 0.25 s to be written in time
order): p99 / hold is printed.

Usage: bench/alert_latency_bench.py [--rate 20000] [--seconds 3]   (root, bcc)
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from burst_bench import GENERATOR
from exec_storm_bench import REPO, secpolicy_monitor

HOLD = 0.25  # LiveSource.reorder

POLICY = """\
metadata: {{id: latency-bench, title: alert latency bench, version: "1.0.0"}}
rules:
  - id: bench-write
    title: write in the bench directory
    severity: info
    when: type == "write" and file.path startswith "{d}/w/"
  - id: bench-canary
    title: canary
    severity: info
    when: type == "write" and file.path startswith "{d}/canary/"
"""

# Opens refused with EACCES, paced in 1 ms slices like burst_bench's generator.
DENIED = """
import os, sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
op = os.open
n = 0
t0 = time.perf_counter()
end = t0 + seconds
per_ms = rate / 1000.0
while True:
    now = time.perf_counter()
    if now >= end:
        break
    due = int((now - t0) * 1000.0 * per_ms)
    while n < due:
        n += 1
        try:
            op(path, os.O_RDONLY)
        except PermissionError:
            pass
    time.sleep(0.0002)
print(n, time.perf_counter() - t0)
"""

# One canary alert every 100 ms, each by another user: storm control folds by rule, program
# and user, so each canary is an alert of its own, to be written at once.
CANARY = """
import os, sys, time
d, seconds = sys.argv[1], float(sys.argv[2])
end = time.perf_counter() + seconds
i = 0
while time.perf_counter() < end:
    if os.fork() == 0:
        os.setuid(20000 + i)
        os.close(os.open(os.path.join(d, f"c{i}"), os.O_WRONLY | os.O_CREAT, 0o600))
        os._exit(0)
    os.wait()
    i += 1
    time.sleep(0.1)
print(i)
"""


class Tail:
    """Reads the monitor's alert file as it grows; notes when each line arrived. Lines are
    decoded after the run (`seen`): decoding 20,000 lines a second as they come would take
    much of a core from the two the monitor and the generator share."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.arrived: list[tuple[float, list[bytes]]] = []
        self.bytes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.path.exists() and not self.stop.is_set():
            time.sleep(0.01)
        with open(self.path, "rb") as f:
            buf = b""
            while True:
                chunk = f.read()
                if chunk:
                    now = time.time()
                    self.bytes += len(chunk)
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    self.arrived.append((now, lines))
                elif self.stop.is_set():
                    break
                else:
                    time.sleep(0.01)

    @property
    def seen(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, alert) of every line, once the run is over."""
        return [(now, json.loads(line)) for now, lines in self.arrived for line in lines if line]


def _ts(alert: dict[str, Any]) -> float:
    ts = alert["ts"]
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + int(ts[20:29]) / 1e9


def _pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def _line(label: str, lat: list[float]) -> str:
    return (f"{label:<26} n={len(lat):>6}  p50 {statistics.median(lat) * 1000:7.0f} ms  "
            f"p99 {_pct(lat, 0.99) * 1000:7.0f} ms  max {max(lat) * 1000:7.0f} ms") if lat else f"{label}: none"


def every_alert_written(rate: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sp-latency-") as d:
        base = Path(d)
        (base / "w").mkdir()
        policy = base / "policy.yaml"
        policy.write_text(POLICY.format(d=d))
        out = base / "alerts.jsonl"
        tail = Tail(out)
        tail.thread.start()
        with secpolicy_monitor([str(policy)], output=str(out), extra=["--aggregate-window", "0"]) as summary:
            gen = subprocess.run([sys.executable, "-c", GENERATOR, str(base / "w"), str(rate), str(seconds)],
                                 check=True, capture_output=True, text=True).stdout.split()
            time.sleep(1.0)
        tail.stop.set()
        tail.thread.join()
    generated = int(gen[0])
    seen = tail.seen
    lat = [arrived - _ts(a) for arrived, a in seen if a["rule_id"] == "bench-write"]
    third = max(1, len(lat) // 3)
    print(f"every alert written: generated {generated} at {generated / float(gen[1]):,.0f}/s, alerts written "
          f"{len(lat)}, lost {summary.get('lost')}")
    print("  " + _line("latency, whole run", lat))
    print("  " + _line("latency, first third", lat[:third]))
    print("  " + _line("latency, last third", lat[-third:]))
    print(f"  p99 / reorder hold ({HOLD} s) = {_pct(lat, 0.99) / HOLD:.2f}")


def storm(rate: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="sp-storm-") as d:
        base = Path(d)
        os.chmod(base, 0o755)
        (base / "canary").mkdir()
        os.chmod(base / "canary", 0o1777)
        secret = base / "secret"
        secret.write_text("x")
        os.chmod(secret, 0o600)
        policy = base / "policy.yaml"
        policy.write_text(POLICY.format(d=d))
        out = base / "alerts.jsonl"
        tail = Tail(out)
        tail.thread.start()
        policies = [str(policy), str(REPO / "policies" / "pci-dss" / "events.yaml")]
        with secpolicy_monitor(policies, output=str(out)) as summary:
            canary = subprocess.Popen([sys.executable, "-c", CANARY, str(base / "canary"), str(seconds)],
                                      stdout=subprocess.PIPE, text=True)
            gen = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                  "-c", DENIED, str(secret), str(rate), str(seconds)],
                                 check=True, capture_output=True, text=True).stdout.split()
            canary.wait()
            time.sleep(6.0)  # the storm control's window (5 s) closes: its aggregate is written
        tail.stop.set()
        tail.thread.join()
    generated = int(gen[0])
    # The storm's alerts: access denied to nobody's python (its start-up's refused opens of
    # libraries under /root included: same rule, program and user).
    seen = tail.seen
    denied = [a for _t, a in seen if a["rule_id"] == "pci-10.2.1.4-access-denied"
              and a["event"]["user"]["uid"] == 65534 and a["event"]["proc"].get("exe") == os.path.realpath(sys.executable)]
    folded = sum(a.get("aggregate", {}).get("count", 1) for a in denied)
    named = any(str(secret) in a.get("aggregate", {}).get("paths", []) or a["event"]["file"].get("path") == str(secret)
                for a in denied)
    lat = [arrived - _ts(a) for arrived, a in seen if a["rule_id"] == "bench-canary"]
    per_alert = tail.bytes / max(1, len(seen))
    print(f"storm: {generated} refused opens at {generated / float(gen[1]):,.0f}/s; access-denied alerts raised "
          f"{summary.get('alerts_by_rule', {}).get('pci-10.2.1.4-access-denied')}, lines written {len(denied)} "
          f"(standing for {folded}; the refused file named: {named}), lost {summary.get('lost')}")
    print(f"  output {tail.bytes / 1e6:.2f} MB; every alert written would take about "
          f"{folded * per_alert / 1e6:.0f} MB")
    print("  " + _line("canary latency in the storm", lat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF)")
    every_alert_written(opts.rate, opts.seconds)
    storm(opts.rate, opts.seconds)


if __name__ == "__main__":
    main()
