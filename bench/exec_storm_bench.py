"""Exec storm: 5,000 fork+exec of /bin/true with nothing watching, under `secpolicy monitor`
(bundled rules) and under auditd with an execve rule, interleaved in one run; prints ratios.

Needs root, bcc and auditd. auditd is started (and stopped) only if it was not running; the
audit rules added are removed afterwards and the rule list is checked to be as before.
Usage: bench/exec_storm_bench.py [--count 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_KEY = "secpolicy-bench"
# The bundled event rules (the check-rule packs are not needed by the monitor).
BUNDLED_EVENT_RULES = [str(p.relative_to(REPO)) for p in sorted((REPO / "policies").rglob("events*.yaml"))]


def exec_storm(count: int) -> float:
    """Seconds for `count` fork+exec of /bin/true from a shell loop."""
    script = f"i=0; while [ $i -lt {count} ]; do /bin/true; i=$((i+1)); done"
    t0 = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", script], check=True)
    return time.perf_counter() - t0


@contextmanager
def secpolicy_monitor(policies: list[str] | None = None, *, output: str = os.devnull,
                      extra: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """`secpolicy monitor` in its own process (bundled rules unless `policies`); yields a dict
    that holds the JSON summary once the block ends."""
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-"))
    ready, summary = tmp / "ready", tmp / "summary.json"
    args = ["--output", output, "--summary-json", str(summary), "--ready-file", str(ready), *(extra or [])]
    for p in policies if policies is not None else BUNDLED_EVENT_RULES:
        args += ["--policy", p]
    code = ("import sys; from secpolicy.cli.live import monitor_cmd; "
            "monitor_cmd.main(sys.argv[1:], prog_name='secpolicy monitor')")
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO,
                            stderr=open(tmp / "stderr", "w"))  # noqa: SIM115 - closed by the caller
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"secpolicy monitor did not start: {(tmp / 'stderr').read_text()}")
            time.sleep(0.05)
        yield out
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        if summary.exists():
            out.update(json.loads(summary.read_text()))
        shutil.rmtree(tmp, ignore_errors=True)


def _auditctl(*args: str) -> str:
    return subprocess.run(["auditctl", *args], check=True, capture_output=True, text=True).stdout


def _auditd_pid() -> int | None:
    try:
        pid = int(Path("/var/run/auditd.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@contextmanager
def auditd_rules(rules: list[list[str]]) -> Iterator[None]:
    """auditd running with `rules` added (each an auditctl -a/-w argument list, keyed
    BENCH_KEY); everything this started or added is undone afterwards."""
    if shutil.which("auditd") is None:
        raise SystemExit("auditd is not installed (scripts/setup.sh --with-test-tools installs it)")
    before = _auditctl("-l")
    status = _auditctl("-s")
    was_enabled = "enabled 1" in status or "enabled 2" in status
    started = None
    if _auditd_pid() is None:
        subprocess.run(["auditd"], check=True)
        for _ in range(100):
            started = _auditd_pid()
            if started:
                break
            time.sleep(0.05)
    if not was_enabled:
        _auditctl("-e", "1")
    added: list[list[str]] = []
    try:
        for r in rules:
            _auditctl(*r, "-k", BENCH_KEY)
            added.append(r)
        yield
    finally:
        for r in reversed(added):
            if r[0] == "-a":
                _auditctl("-d", *r[1:], "-k", BENCH_KEY)
            elif r[0] == "-w":
                _auditctl("-W", *r[1:], "-k", BENCH_KEY)
        if not was_enabled:
            _auditctl("-e", "0")
        if started:
            os.kill(started, signal.SIGTERM)
            for _ in range(100):
                if _auditd_pid() is None:
                    break
                time.sleep(0.05)
        after = _auditctl("-l")
        if after != before:
            print(f"WARNING: audit rules differ from before the bench:\n{after}", file=sys.stderr)


def run_modes(modes: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each mode once per round, in rotating order (drift on a shared VM hits all alike)."""
    times: dict[str, list[float]] = {m: [] for m in modes}
    names = list(modes)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for m in order:
            times[m].append(modes[m]())
            print(f"  round {r + 1} {m:<10} {times[m][-1]:.3f} s", flush=True)
    return times


def report(times: dict[str, list[float]], unit: str, goal_ratio: float | None = None) -> None:
    base = statistics.median(times["baseline"])
    print(f"\nmedians ({unit}):")
    for m, ts in times.items():
        med = statistics.median(ts)
        print(f"  {m:<10} {med:8.3f} s   x{med / base:.3f}  ({(med / base - 1) * 100:+.1f}%)")
    if "secpolicy" in times and "auditd" in times:
        sp = statistics.median(times["secpolicy"]) / base - 1
        au = statistics.median(times["auditd"]) / base - 1
        ratio = sp / au if au > 0 else float("inf")
        print(f"secpolicy overhead / auditd overhead = {ratio:.2f}"
              + (f" (goal <= {goal_ratio:.2f}: {'met' if ratio <= goal_ratio else 'NOT met'})"
                 if goal_ratio is not None else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (eBPF and auditd)")
    n = opts.count
    exec_storm(200)  # warm the page cache
    summaries: list[dict[str, Any]] = []

    def with_monitor() -> float:
        with secpolicy_monitor() as s:
            t = exec_storm(n)
        summaries.append(s)
        return t

    def with_auditd() -> float:
        with auditd_rules([["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat"]]):
            return exec_storm(n)

    print(f"exec storm: {n} fork+exec of /bin/true, {opts.rounds} rounds; "
          f"secpolicy rules: {', '.join(BUNDLED_EVENT_RULES)}")
    times = run_modes({"baseline": lambda: exec_storm(n), "secpolicy": with_monitor, "auditd": with_auditd},
                      opts.rounds)
    report(times, f"{n} execs", goal_ratio=1 / 3)
    for s in summaries:
        ex = s.get("events_by_type", {}).get("exec", 0)
        print(f"monitor run: exec events {ex} (storm {n} + the shell), lost {s.get('lost')}")


if __name__ == "__main__":
    main()
