"""CPU time of `secpolicy scan` of the whole bundled policy set on this host, end to end
(the CLI, start-up included), next to Lynis and OpenSCAP measured in the same run.

CPU seconds (user + system of the command and every process it waited for) are what this
machine spends; wall times are printed beside them. secpolicy runs with a private compile
cache: one cold run fills it (timed and shown), the timed runs then find it warm, as every
scan after the first does.

    .venv/bin/python bench/scan_bench.py [--runs 5] [--skip-lynis]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SSG = "/usr/share/xml/scap/ssg/content"
# The ssg-debian package ships no Debian 12 content; this profile is the one used for the
# anchor figure in ../shared/ENVIRONMENT.md. On a Debian 12 host its rules evaluate as
# notapplicable after the platform check, so OpenSCAP's time is a lower bound.
OSCAP_PROFILE = "xccdf_org.ssgproject.content_profile_anssi_np_nt28_high"
GOAL_CPU_SECONDS = 1.0


def _secpolicy() -> list[str]:
    exe = REPO / ".venv" / "bin" / "secpolicy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "secpolicy"]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _timed(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, exit code) of one command and all it waited for."""
    cpu0, start = _cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return _cpu() - cpu0, time.perf_counter() - start, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5, help="scans of the bundle (median reported)")
    ap.add_argument("--skip-lynis", action="store_true", help="Lynis takes about a minute")
    ap.add_argument(
        "--oval", action="store_true",
        help="also time `oscap oval eval` of the OVAL definitions without the platform check (minutes)",
    )
    args = ap.parse_args()

    bundle = [*_secpolicy(), "scan", "--policy", str(REPO / "policies"), "--format", "json", "--fail-on", "critical"]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        env.pop("SECPOLICY_NO_CACHE", None)
        cold_cpu, cold_wall, rc = _timed(bundle, env=env)  # fills the compile cache
        if rc not in (0, 1, 4):
            print(f"secpolicy scan failed with exit code {rc}", file=sys.stderr)
            return 3
        runs = []
        for _ in range(args.runs):
            cpu, wall, rc = _timed(bundle, env=env)
            if rc not in (0, 1, 4):
                print(f"secpolicy scan failed with exit code {rc}", file=sys.stderr)
                return 3
            runs.append((cpu, wall))
    ours = statistics.median(c for c, _ in runs)
    rows = [
        ("secpolicy scan, whole bundle (median)", ours, statistics.median(w for _, w in runs)),
        ("secpolicy scan, whole bundle, cold cache", cold_cpu, cold_wall),
    ]

    oscap = shutil.which("oscap")
    ds = next((f"{SSG}/ssg-debian{v}-ds.xml" for v in ("12", "11") if os.path.exists(f"{SSG}/ssg-debian{v}-ds.xml")), None)
    if oscap and ds:
        with tempfile.TemporaryDirectory() as tmp:
            cpu, wall, _ = _timed([oscap, "xccdf", "eval", "--profile", OSCAP_PROFILE, "--results", f"{tmp}/r.xml", ds], cwd=Path(tmp))
        rows.append((f"oscap xccdf eval {os.path.basename(ds)} {OSCAP_PROFILE.rsplit('_profile_', 1)[-1]}", cpu, wall))
        oval = ds.replace("-ds.xml", "-oval.xml")
        if args.oval and os.path.exists(oval):
            with tempfile.TemporaryDirectory() as tmp:
                cpu, wall, _ = _timed([oscap, "oval", "eval", "--results", f"{tmp}/o.xml", oval], cwd=Path(tmp))
            rows.append((f"oscap oval eval {os.path.basename(oval)}", cpu, wall))
    else:
        print("OpenSCAP or ssg-debian content not installed: skipped", file=sys.stderr)

    lynis = shutil.which("lynis")
    if lynis and not args.skip_lynis:
        with tempfile.TemporaryDirectory() as tmp:
            cpu, wall, _ = _timed([lynis, "audit", "system", "--quick", "--no-colors", "--logfile", f"{tmp}/l.log", "--report-file", f"{tmp}/l.dat"], cwd=Path(tmp))
        rows.append(("lynis audit system --quick", cpu, wall))
    elif not lynis:
        print("Lynis not installed: skipped", file=sys.stderr)

    width = max(len(n) for n, _, _ in rows)
    print(f"{'':<{width}}  {'CPU s':>7}  {'wall s':>7}")
    for name, cpu, wall in rows:
        ratio = "" if name.startswith("secpolicy") else f"   {cpu / ours:6.1f}x secpolicy's CPU time"
        print(f"{name:<{width}}  {cpu:7.2f}  {wall:7.2f}{ratio}")
    print(
        f"secpolicy CPU per run: {', '.join(f'{c:.2f}' for c, _ in runs)} s; "
        f"goal <= {GOAL_CPU_SECONDS:.1f} CPU s: {'met' if ours <= GOAL_CPU_SECONDS else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
