"""FIM benchmark: in one run, on /usr (or PATH) and on a tree of ~20,000 files sampled from it,
time two parallel sha256sum processes, two parallel `openssl dgst -sha256` processes, AIDE
--init/--check (when installed) and secpolicy fim init/check/check --full (the CLI end to
end, start-up included), plus a check of a one-file tree; print each ratio against its target.

Like for like: AIDE is given exactly the attributes of secpolicy's `R` with `hash: sha256`
(p+ftype+i+l+n+u+g+s+m+c+sha256+acl+selinux+xattrs+e2fsattrs+caps, as AIDE's own R but with
sha256 instead of md5) and as many hashing workers as secpolicy (AIDE's num_workers).
Python runs with its bytecode cache, as an installed secpolicy does.

Usage: python bench/fim_bench.py [PATH] [--no-aide] [--repeat N] [--small-files N]
Exit status 1 when a target is missed (AIDE targets only when AIDE ran)."""

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

WORKERS = 2  # secpolicy's default; AIDE gets the same
AIDE_RULE = "p+ftype+i+l+n+u+g+s+m+c+sha256+acl+selinux+xattrs+e2fsattrs+caps"
# Bytecode caches on (an installed secpolicy has them): start-up is part of what is measured.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
FIM = [sys.executable, "-m", "secpolicy", "fim"]


CPU: dict[str, float] = {}  # CPU seconds (user + system, all processes) of the last run of each step


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], ok: tuple[int, ...] = (0,), label: str = "") -> float:
    c0 = _children_cpu()
    t = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, env=ENV, check=False).returncode
    secs = time.perf_counter() - t
    CPU[label] = _children_cpu() - c0
    if rc not in ok:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed with exit status {rc}")
    return secs


def two_processes(tool: list[str], files0: Path, work: Path, label: str = "") -> float:
    """Every regular file hashed by two processes of `tool`, each given half the list."""
    names = files0.read_bytes().split(b"\0")[:-1]
    halves = [work / "half0", work / "half1"]
    for i, h in enumerate(halves):
        h.write_bytes(b"".join(n + b"\0" for n in names[i::2]))
    c0 = _children_cpu()
    t = time.perf_counter()
    procs = [subprocess.Popen(["xargs", "-0", *tool], stdin=open(h, "rb"), stdout=subprocess.DEVNULL,  # noqa: SIM115
                              stderr=subprocess.DEVNULL) for h in halves]
    for p in procs:
        p.wait()  # a tool exits non-zero on an unreadable file: not a benchmark failure
    secs = time.perf_counter() - t
    CPU[label] = _children_cpu() - c0
    return secs


def regular_files(tree: Path, out: Path) -> int:
    with open(out, "wb") as f:
        subprocess.run(["find", str(tree), "-xdev", "-type", "f", "-print0"], stdout=f, check=True)
    return out.read_bytes().count(b"\0")


def sample_tree(source_list: Path, dest: Path, count: int, source: Path) -> None:
    """Copy every k-th regular file of `source` (keeping relative paths): a tree of `count`
    files with /usr's mix of sizes and directory shapes."""
    names = source_list.read_bytes().split(b"\0")[:-1]
    step = max(1, len(names) // count)
    for raw in names[::step][:count]:
        rel = os.path.relpath(os.fsdecode(raw), source)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(os.fsdecode(raw), target)
        except OSError:
            continue


def measure(tree: Path, work: Path, opts: argparse.Namespace, aide: str | None) -> dict[str, float]:
    work.mkdir()
    files0 = work / "files0"
    nfiles = regular_files(tree, files0)
    cfg = work / "fim.yaml"
    cfg.write_text(f"name: bench\nhash: sha256\nworkers: {WORKERS}\npaths:\n  - path: {tree}\n    attrs: R\n")
    key = work / "key"
    key.write_bytes(os.urandom(32))
    common = ["--config", str(cfg), "--db", str(work / "fim.db"), "--key-file", str(key), "--no-progress"]
    two_processes(["sha256sum"], files0, work)  # warm the page cache for every contender
    runs: dict[str, list[float]] = {k: [] for k in ("sha256sum x2", "openssl x2", "fim init", "fim check",
                                                     "fim check --full")}
    for _ in range(opts.repeat):
        runs["sha256sum x2"].append(two_processes(["sha256sum"], files0, work, "sha256sum x2"))
        runs["openssl x2"].append(two_processes(["openssl", "dgst", "-sha256"], files0, work, "openssl x2"))
        runs["fim init"].append(timed([*FIM, "init", "--force", *common], label="fim init"))
        runs["fim check"].append(timed([*FIM, "check", *common, "--format", "json"], ok=(0, 1), label="fim check"))
        runs["fim check --full"].append(timed([*FIM, "check", *common, "--full", "--format", "json"], ok=(0, 1),
                                              label="fim check --full"))
    results = {k: statistics.median(v) for k, v in runs.items()}
    if aide:
        conf = work / "aide.conf"
        conf.write_text(
            f"database_in=file:{work}/aide.db\ndatabase_out=file:{work}/aide.db.new\n"
            f"gzip_dbout=no\nreport_url=file:{work}/aide.report\nnum_workers={WORKERS}\n"
            f"{tree} {AIDE_RULE}\n"
        )
        results["aide --init"] = timed([aide, "-c", str(conf), "--init"], label="aide --init")
        os.replace(work / "aide.db.new", work / "aide.db")
        results["aide --check"] = timed([aide, "-c", str(conf), "--check"], ok=tuple(range(256)), label="aide --check")
    results["files"] = nfiles
    return results


def one_file_check(work: Path, repeat: int) -> tuple[float, float]:
    """(median `fim check` of a one-file tree, median bare interpreter start) in seconds."""
    tree = work / "one" / "w"
    tree.mkdir(parents=True)
    (tree / "f").write_text("x\n")
    cfg = work / "one" / "fim.yaml"
    cfg.write_text(f"paths:\n  - path: {tree}\n")
    common = ["--config", str(cfg), "--db", str(work / "one" / "db"), "--no-key", "--no-progress"]
    timed([*FIM, "init", *common])
    timed([*FIM, "check", *common])  # writes the bytecode caches
    checks = [timed([*FIM, "check", *common]) for _ in range(max(5, repeat))]
    bare = [timed([sys.executable, "-c", "pass"]) for _ in range(max(5, repeat))]
    return statistics.median(checks), statistics.median(bare)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("path", nargs="?", default="/usr")
    ap.add_argument("--no-aide", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each secpolicy/sha256sum/openssl step (median)")
    ap.add_argument("--small-files", type=int, default=20000, help="files in the sampled tree")
    opts = ap.parse_args()
    tree = Path(os.path.abspath(opts.path))
    aide = None if opts.no_aide else shutil.which("aide")
    work = Path(tempfile.mkdtemp(prefix="fim-bench-"))
    ok = True

    def target(label: str, ratio: float, limit: float, at_most: bool, soft: bool = False) -> None:
        nonlocal ok
        good = ratio <= limit if at_most else ratio >= limit
        if not soft:
            ok &= good
        rel = "<=" if at_most else ">="
        verdict = "ok" if good else ("over (where possible)" if soft else "MISSED")
        print(f"  {label:<44} {ratio:6.2f}x  (target {rel} {limit}x)  {verdict}")

    try:
        one, bare = one_file_check(work, opts.repeat)
        small_src = work / "small-src"
        regular_files(tree, work / "all0")
        sample_tree(work / "all0", small_src, opts.small_files, tree)
        trees = [(str(tree), tree), (f"{opts.small_files}-file sample of {tree}", small_src)]
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; median of {opts.repeat}; "
              f"AIDE rule {AIDE_RULE}, num_workers={WORKERS}; "
              f"secpolicy R, sha256, workers: {WORKERS}")
        print(f"one-file tree: fim check {one:.3f} s (target <= 0.2 s: {'ok' if one <= 0.2 else 'MISSED'}); "
              f"bare `python -c pass` {bare:.3f} s")
        ok &= one <= 0.2
        for i, (label, path) in enumerate(trees):
            r = measure(path, work / f"t{i}", opts, aide)
            print(f"tree {label}: {int(r.pop('files'))} regular files")
            for name, secs in r.items():
                print(f"  {name:<18} {secs:8.2f} s   (CPU {CPU.get(name, 0.0):6.2f} s, last run)")
            target("fim init / sha256sum x2", r["fim init"] / r["sha256sum x2"], 1.3, True)
            target("fim init / openssl x2", r["fim init"] / r["openssl x2"], 1.3, True, soft=True)
            target("fim check --full / sha256sum x2", r["fim check --full"] / r["sha256sum x2"], 1.3, True)
            target("fim check --full / openssl x2", r["fim check --full"] / r["openssl x2"], 1.3, True, soft=True)
            if "aide --init" in r:
                target("aide --init / fim init", r["aide --init"] / r["fim init"], 4.0, False)
                target("aide --check / fim check (no changes)", r["aide --check"] / r["fim check"], 20.0, False)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
