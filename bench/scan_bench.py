"""Time a scan of the whole bundled policy set on this host next to Lynis and OpenSCAP,
all measured in the same run, and print the times and the ratios between them."""

from __future__ import annotations

import argparse
import os
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
GOAL_SECONDS = 2.0


def _secpolicy() -> list[str]:
    exe = REPO / ".venv" / "bin" / "secpolicy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "secpolicy"]


def _timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="scans of the bundle (median reported)")
    ap.add_argument("--skip-lynis", action="store_true", help="Lynis takes about a minute")
    ap.add_argument(
        "--oval", action="store_true",
        help="also time `oscap oval eval` of the OVAL definitions without the platform check (minutes)",
    )
    args = ap.parse_args()

    bundle = [*_secpolicy(), "scan", "--policy", str(REPO / "policies"), "--format", "json", "--fail-on", "critical"]
    _timed(bundle)  # warm the page cache and Python's bytecode cache; not counted
    times = []
    for _ in range(args.runs):
        t, rc = _timed(bundle)
        if rc not in (0, 1, 4):
            print(f"secpolicy scan failed with exit code {rc}", file=sys.stderr)
            return 3
        times.append(t)
    ours = statistics.median(times)
    rows = [("secpolicy scan, whole bundle", ours)]

    oscap = shutil.which("oscap")
    ds = next((f"{SSG}/ssg-debian{v}-ds.xml" for v in ("12", "11") if os.path.exists(f"{SSG}/ssg-debian{v}-ds.xml")), None)
    if oscap and ds:
        with tempfile.TemporaryDirectory() as tmp:
            t, _ = _timed([oscap, "xccdf", "eval", "--profile", OSCAP_PROFILE, "--results", f"{tmp}/r.xml", ds], cwd=Path(tmp))
        rows.append((f"oscap xccdf eval {os.path.basename(ds)} {OSCAP_PROFILE.rsplit('_profile_', 1)[-1]}", t))
        oval = ds.replace("-ds.xml", "-oval.xml")
        if args.oval and os.path.exists(oval):
            with tempfile.TemporaryDirectory() as tmp:
                t, _ = _timed([oscap, "oval", "eval", "--results", f"{tmp}/o.xml", oval], cwd=Path(tmp))
            rows.append((f"oscap oval eval {os.path.basename(oval)}", t))
    else:
        print("OpenSCAP or ssg-debian content not installed: skipped", file=sys.stderr)

    lynis = shutil.which("lynis")
    if lynis and not args.skip_lynis:
        with tempfile.TemporaryDirectory() as tmp:
            t, _ = _timed([lynis, "audit", "system", "--quick", "--no-colors", "--logfile", f"{tmp}/l.log", "--report-file", f"{tmp}/l.dat"], cwd=Path(tmp))
        rows.append(("lynis audit system --quick", t))
    elif not lynis:
        print("Lynis not installed: skipped", file=sys.stderr)

    width = max(len(n) for n, _ in rows)
    for name, t in rows:
        ratio = "" if name.startswith("secpolicy") else f"   {t / ours:6.1f}x secpolicy's time"
        print(f"{name:<{width}}  {t:7.2f} s{ratio}")
    print(f"secpolicy runs: {', '.join(f'{t:.2f}' for t in times)} s; goal < {GOAL_SECONDS:.0f} s: {'met' if ours < GOAL_SECONDS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
