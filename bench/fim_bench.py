"""FIM benchmark: in one run over one tree (default /usr), time two parallel sha256sum
processes, AIDE --init/--check (when installed) and secpolicy fim init/check/check --full,
and print each ratio against the issue's targets.

Like for like: AIDE is given exactly the attributes of secpolicy's `R` with `hash: sha256`
(AIDE's own `R` hashes with md5 and adds e2fsattrs, which secpolicy does not read) and as
many hashing workers as secpolicy (AIDE's num_workers, default 1).

Usage: python bench/fim_bench.py [PATH] [--no-aide] [--repeat N]
Exit status 1 when a target is missed (AIDE targets only when AIDE ran)."""

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

WORKERS = 2  # secpolicy's default; AIDE gets the same
# secpolicy's R = p+ftype+i+l+n+u+g+s+m+c+hash+X, X = acl+xattrs+selinux+caps; hash: sha256.
AIDE_RULE = "p+ftype+i+l+n+u+g+s+m+c+sha256+acl+selinux+xattrs+caps"


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def sha256sum_two(files0: Path, work: Path) -> float:
    """Every regular file hashed by two sha256sum processes, each given half the list."""
    names = files0.read_bytes().split(b"\0")[:-1]
    halves = [work / "half0", work / "half1"]
    for i, h in enumerate(halves):
        h.write_bytes(b"".join(n + b"\0" for n in names[i::2]))
    t = time.perf_counter()
    procs = [subprocess.Popen(["xargs", "-0", "sha256sum"], stdin=open(h, "rb"), stdout=subprocess.DEVNULL)  # noqa: SIM115 - closed by the caller
             for h in halves]
    for p in procs:
        # sha256sum exits 1 on an unreadable file; that is not a benchmark failure.
        p.wait()
    return time.perf_counter() - t


def fim_cli(*args: str) -> float:
    return timed([sys.executable, "-m", "secpolicy.cli.fim", *args, "--no-progress"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("path", nargs="?", default="/usr")
    ap.add_argument("--no-aide", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each secpolicy/sha256sum step (median)")
    opts = ap.parse_args()
    tree = os.path.abspath(opts.path)
    work = Path(tempfile.mkdtemp(prefix="fim-bench-"))
    try:
        files0 = work / "files0"
        with open(files0, "wb") as f:
            subprocess.run(["find", tree, "-xdev", "-type", "f", "-print0"], stdout=f, check=True)
        cfg = work / "fim.yaml"
        cfg.write_text(f"name: bench\nhash: sha256\nworkers: {WORKERS}\npaths:\n  - path: {tree}\n    attrs: R\n")
        key = work / "key"
        key.write_bytes(os.urandom(32))
        db = work / "fim.db"
        common = ["--config", str(cfg), "--db", str(db), "--key-file", str(key)]

        # Warm the page cache so every contender reads from memory.
        sha256sum_two(files0, work)
        results: dict[str, float] = {}
        sha, ini, chk, full = [], [], [], []
        for _ in range(opts.repeat):
            sha.append(sha256sum_two(files0, work))
            ini.append(fim_cli("init", "--force", *common))
            chk.append(fim_cli_check(common))
            full.append(fim_cli_check(common, "--full"))
        results["sha256sum x2"] = statistics.median(sha)
        results["fim init"] = statistics.median(ini)
        results["fim check"] = statistics.median(chk)
        results["fim check --full"] = statistics.median(full)

        aide = shutil.which("aide")
        if aide and not opts.no_aide:
            conf = work / "aide.conf"
            conf.write_text(
                f"database_in=file:{work}/aide.db\ndatabase_out=file:{work}/aide.db.new\n"
                f"gzip_dbout=no\nreport_url=file:{work}/aide.report\nnum_workers={WORKERS}\n"
                f"{tree} {AIDE_RULE}\n"
            )
            results["aide --init"] = timed([aide, "-c", str(conf), "--init"])
            os.replace(work / "aide.db.new", work / "aide.db")
            t = time.perf_counter()
            subprocess.run([aide, "-c", str(conf), "--check"], stdout=subprocess.DEVNULL, check=False)
            results["aide --check"] = time.perf_counter() - t

        nfiles = files0.read_bytes().count(b"\0")
        print(f"tree {tree}: {nfiles} regular files; {os.cpu_count()} cores; median of {opts.repeat}")
        if "aide --init" in results:
            print(f"  AIDE rule {AIDE_RULE}, num_workers={WORKERS}; secpolicy R, sha256, workers: {WORKERS}")
        for name, secs in results.items():
            print(f"  {name:<18} {secs:8.2f} s")
        ok = True

        def target(label: str, ratio: float, limit: float, at_most: bool) -> None:
            nonlocal ok
            good = ratio <= limit if at_most else ratio >= limit
            ok &= good
            rel = "<=" if at_most else ">="
            print(f"  {label:<44} {ratio:6.2f}x  (target {rel} {limit}x)  {'ok' if good else 'MISSED'}")

        s = results["sha256sum x2"]
        target("fim init / sha256sum x2", results["fim init"] / s, 1.3, True)
        target("fim check --full / sha256sum x2", results["fim check --full"] / s, 1.3, True)
        if "aide --init" in results:
            target("aide --init / fim init", results["aide --init"] / results["fim init"], 4.0, False)
            target("aide --check / fim check (no changes)", results["aide --check"] / results["fim check"], 20.0, False)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fim_cli_check(common: list[str], *extra: str) -> float:
    t = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "secpolicy.cli.fim", "check", *common, *extra,
                         "--no-progress", "--format", "json"], stdout=subprocess.DEVNULL, check=False).returncode
    secs = time.perf_counter() - t
    if rc not in (0, 1):
        raise SystemExit(f"fim check failed with exit status {rc}")
    return secs


if __name__ == "__main__":
    sys.exit(main())
