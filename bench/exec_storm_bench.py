"""Exec storm: 5,000 fork+exec of /bin/true with nothing watching, under `secpolicy monitor`
(bundled rules) and under a private auditd with only an execve rule, interleaved in one run;
prints the overheads and their ratio on the storm's own CPU time (user + system of the shell
and its children: where eBPF programs and the kernel's audit code run; steadier than wall
time on a shared machine), wall time beside it, and what the monitor itself spent.

Needs root, bcc and auditd. auditd runs privately: its own configuration and log in a
temporary directory, started and stopped by pid; it refuses to start if another audit daemon
is registered with the kernel. The audit rules it adds carry their own key and are removed
afterwards; the kernel's audit enabled flag is put back as it was.
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
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BENCH_KEY = "secpolicy-bench"
T = TypeVar("T")
# The bundled event rules (the check-rule packs are not needed by the monitor).
BUNDLED_EVENT_RULES = [str(p.relative_to(REPO)) for p in sorted((REPO / "policies").rglob("events*.yaml"))]


def exec_storm(count: int) -> float:
    """Seconds for `count` fork+exec of /bin/true from a shell loop."""
    return exec_storm_cpu(count)[0]


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and all its children) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[0]} failed with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def exec_storm_cpu(count: int) -> tuple[float, float]:
    """(wall, CPU) seconds of `count` fork+exec of /bin/true from a shell loop."""
    return timed(["/bin/sh", "-c", f"i=0; while [ $i -lt {count} ]; do /bin/true; i=$((i+1)); done"])


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
        _pid, _status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(_status)
        out["_monitor_cpu_s"] = usage.ru_utime + usage.ru_stime
        if summary.exists():
            out.update(json.loads(summary.read_text()))
        shutil.rmtree(tmp, ignore_errors=True)


def _auditctl(*args: str) -> str:
    return subprocess.run(["auditctl", *args], check=True, capture_output=True, text=True).stdout


def _audit_status() -> dict[str, int]:
    return {k: int(v) for k, v in (line.split()[:2] for line in _auditctl("-s").splitlines()
                                   if len(line.split()) >= 2 and line.split()[1].isdigit())}


@contextmanager
def auditd_rules(rules: list[list[str]]) -> Iterator[str]:
    """A private auditd (own configuration and log in a temporary directory) with `rules` added
    (each an auditctl -a/-w argument list, keyed BENCH_KEY); yields its log file; everything
    undone afterwards."""
    if shutil.which("auditd") is None:
        raise SystemExit("auditd is not installed (scripts/setup.sh --with-test-tools installs it)")
    status = _audit_status()
    if status.get("pid"):
        raise SystemExit(f"an audit daemon is already registered with the kernel (pid {status['pid']}): "
                         "the bench starts its own only when none is, and leaves a running one alone")
    before = _auditctl("-l")
    tmp = Path(tempfile.mkdtemp(prefix="sp-auditd-"))
    (tmp / "plugins").mkdir()
    conf = Path("/etc/audit/auditd.conf").read_text(encoding="utf-8").splitlines()
    settings = {"log_file": str(tmp / "audit.log"), "plugin_dir": str(tmp / "plugins"), "log_group": "root",
                "space_left_action": "IGNORE", "admin_space_left_action": "IGNORE",
                "disk_full_action": "IGNORE", "disk_error_action": "IGNORE"}
    lines = [ln for ln in conf if ln.split("=")[0].strip() not in settings]
    (tmp / "auditd.conf").write_text("\n".join([*lines, *(f"{k} = {v}" for k, v in settings.items())]) + "\n")
    os.chmod(tmp / "auditd.conf", 0o600)
    daemon = subprocess.Popen(["auditd", "-n", "-c", str(tmp)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    added: list[list[str]] = []
    try:
        for _ in range(200):
            if _audit_status().get("pid") == daemon.pid:
                break
            if daemon.poll() is not None:
                raise SystemExit("the private auditd did not start")
            time.sleep(0.05)
        else:
            raise SystemExit("the private auditd did not register with the kernel")
        for r in rules:
            _auditctl(*r, "-k", BENCH_KEY)
            added.append(r)
        yield str(tmp / "audit.log")
    finally:
        for r in reversed(added):
            if r[0] == "-a":
                _auditctl("-d", *r[1:], "-k", BENCH_KEY)
            elif r[0] == "-w":
                _auditctl("-W", *r[1:], "-k", BENCH_KEY)
        daemon.terminate()
        daemon.wait(timeout=30)
        if _audit_status().get("enabled") != status.get("enabled"):
            _auditctl("-e", str(status.get("enabled", 0)))
        shutil.rmtree(tmp, ignore_errors=True)
        after = _auditctl("-l")
        if after != before:
            print(f"WARNING: audit rules differ from before the bench:\n{after}", file=sys.stderr)


def run_modes(modes: dict[str, Callable[[], T]], rounds: int,
              show: Callable[[T], str] = lambda t: f"{t:.3f} s") -> dict[str, list[T]]:
    """Each mode once per round, in rotating order (drift on a shared VM hits all alike)."""
    times: dict[str, list[T]] = {m: [] for m in modes}
    names = list(modes)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for m in order:
            times[m].append(modes[m]())
            print(f"  round {r + 1} {m:<10} {show(times[m][-1])}", flush=True)
    return times


def run_modes_cpu(modes: dict[str, Callable[[], tuple[float, float]]],
                  rounds: int) -> dict[str, list[tuple[float, float]]]:
    """run_modes for callables returning (wall, CPU) seconds."""
    return run_modes(modes, rounds, lambda s: f"wall {s[0]:.3f} s  cpu {s[1]:.3f} s")


def report_cpu(samples: dict[str, list[tuple[float, float]]], unit: str, goal_ratio: float) -> float:
    """Medians of CPU and wall per mode, overheads against baseline, and secpolicy's CPU
    overhead over auditd's against `goal_ratio`; returns that ratio."""
    med = {m: (statistics.median(w for w, _c in v), statistics.median(c for _w, c in v)) for m, v in samples.items()}
    bw, bc = med["baseline"]
    print(f"\nmedians ({unit}):")
    for m, (w, c) in med.items():
        print(f"  {m:<10} cpu {c:8.3f} s ({(c / bc - 1) * 100:+6.1f}%)   wall {w:8.3f} s ({(w / bw - 1) * 100:+6.1f}%)")
    sp, au = med["secpolicy"][1] / bc - 1, med["auditd"][1] / bc - 1
    ratio = sp / au if au > 0 else float("inf")
    wratio = (med["secpolicy"][0] / bw - 1) / (med["auditd"][0] / bw - 1) if med["auditd"][0] > bw else float("inf")
    print(f"secpolicy CPU overhead / auditd CPU overhead = {ratio:.2f} (goal <= {goal_ratio:.2f}: "
          f"{'met' if ratio <= goal_ratio else 'NOT met'}); on wall time {wratio:.2f}")
    return ratio


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

    def with_monitor() -> tuple[float, float]:
        with secpolicy_monitor() as s:
            t = exec_storm_cpu(n)
        summaries.append(s)
        return t

    def with_auditd() -> tuple[float, float]:
        with auditd_rules([["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat"]]):
            return exec_storm_cpu(n)

    print(f"exec storm: {n} fork+exec of /bin/true, {opts.rounds} rounds; "
          f"secpolicy rules: {', '.join(BUNDLED_EVENT_RULES)}; auditd: one execve rule")
    samples = run_modes_cpu({"baseline": lambda: exec_storm_cpu(n), "secpolicy": with_monitor,
                             "auditd": with_auditd}, opts.rounds)
    report_cpu(samples, f"{n} execs", goal_ratio=1 / 3)
    for s in summaries:
        ex = s.get("events_by_type", {}).get("exec", 0)
        print(f"monitor run: exec events {ex} (storm {n} + the shell), lost {s.get('lost')}, "
              f"the monitor's own CPU {s.get('_monitor_cpu_s', 0):.2f} s (start-up included)")


if __name__ == "__main__":
    main()
