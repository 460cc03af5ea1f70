"""Remote scans: `secpolicy scan --target` of this machine through a private sshd on loopback,
beside a local `secpolicy scan` of / and the raw cost of the connection (`ssh HOST true`) and
of copying /etc over it (`ssh HOST tar -c /etc`), all through the CLI in the same run."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))


def _secpolicy() -> list[str]:
    exe = REPO / ".venv" / "bin" / "secpolicy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "secpolicy"]


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({r.returncode}): {r.stderr[-2000:]!r}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from sshd_server import start_sshd, stop_sshd

    with tempfile.TemporaryDirectory(prefix="remote-bench-") as tmp:
        server = start_sshd(Path(tmp) / "sshd")
        try:
            opts = ["-o", f"UserKnownHostsFile={server.known_hosts}", "-o", f"IdentityFile={server.client_key}",
                    "-o", "BatchMode=yes", "-p", str(server.port), f"root@{server.host}"]
            sopts = [a for o in (f"UserKnownHostsFile={server.known_hosts}", f"IdentityFile={server.client_key}")
                     for a in ("--ssh-option", o)]
            target = ["--target", f"ssh://root@{server.host}:{server.port}", *sopts]
            cases: dict[str, list[str]] = {
                "anchor: ssh HOST true": ["ssh", *opts, "true"],
                "anchor: ssh HOST tar -c /etc": ["sh", "-c", " ".join(["ssh", *opts, "tar -c -f - /etc 2>/dev/null",
                                                                         ">/dev/null"])],
            }
            for label, extra in (("all packs", []), ("cis only", ["--standard", "cis"])):
                out = str(Path(tmp) / f"{label.split()[0]}.json")
                cases[f"local scan, {label}"] = [*_secpolicy(), "scan", *extra, "--format", "json", "-o", out + ".l"]
                cases[f"remote scan, {label}"] = [*_secpolicy(), "scan", *target, *extra, "--format", "json", "-o", out]
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
            for _ in range(args.repeat):
                for name, cmd in cases.items():
                    times[name].append(_timed(cmd))
            remote: dict[str, Any] = {}
            for label in ("all", "cis"):
                remote[label] = json.loads((Path(tmp) / f"{label}.json").read_text())["scan"]["remote"]
        finally:
            stop_sshd(server)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    print(f"median of {args.repeat} runs (wall s / CPU s of the command and its children, sshd excluded)")
    for name, (w, c) in med.items():
        print(f"  {name:<32} {w:7.2f} s  {c:7.2f} CPU s")
    for label, key in (("all packs", "all"), ("cis only", "cis")):
        r = remote[key]
        lw, rw = med[f"local scan, {label}"][0], med[f"remote scan, {label}"][0]
        print(f"{label}: remote/local wall {rw / lw:.1f}x; {r['rounds']} rounds over 1 connection, "
              f"{r['bytes'] / 1e6:.1f} MB received, {r['entries']} entries, {r['files']} files copied "
              f"(collection {r['collect_seconds']:.2f} s, connection {r['connect_seconds']:.2f} s)")


if __name__ == "__main__":
    main()
