"""Compile and evaluation speed of the policy language.

Loads a generated policy of 1,000 rules (check and event rules of realistic shapes) and
times load + compile; then times one evaluation of compiled checks and event predicates.
Anchor, measured in the same run: `yaml.safe_load` of the same file (the floor any YAML policy
loader pays) and a hand-written Python function doing what one check does.

    .venv/bin/python bench/compile_bench.py [--rules 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry, load_policies

CHECKS = [
    'file("/etc/shadow").mode & 0o137 == 0 and file("/etc/shadow").owner == "root"',
    'file("/etc/passwd").exists and file("/etc/passwd").mode <= 0o644',
    'not file("/etc/hosts.equiv").exists',
    'all(f in files("/etc/*.conf"): f.mode & 0o022 == 0)',
    'file("/etc/os-release").first("^ID=") in ["ID=debian", "ID=ubuntu"]',
]
EVENTS = [
    'type == "exec" and proc.exe in ["/usr/bin/sudo", "/bin/su"] and not proc.cmdline contains "-l"',
    'type == "open" and file.path startswith "/etc/" and "O_WRONLY" in file.flags',
    'type == "connect" and net.dst_ip in 10.0.0.0/8 and net.dst_port != 443',
    'type == "auth" and auth.result == "failure" and auth.service matches "^(sshd|login)$"',
]


def generate(n: int) -> str:
    lines = ["metadata: {id: bench, title: Bench, version: '1'}", "rules:"]
    for i in range(n):
        if i % 3 == 2:
            expr, key = EVENTS[i % len(EVENTS)], "when"
        else:
            expr, key = CHECKS[i % len(CHECKS)], "check"
        lines += [
            f"  - id: bench-{i}",
            f"    title: Bench rule {i}",
            "    severity: medium",
            f"    references: {{cis: ['{i % 7}.{i % 5}.{i % 11}']}}",
            f"    {key}: >-",
            f"      {expr}",
        ]
    return "\n".join(lines) + "\n"


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=1000)
    args = ap.parse_args()
    reg = builtin_registry()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.yaml"
        path.write_text(generate(args.rules))
        yaml_t = best_of(lambda: yaml.load(path.read_text(), Loader=yaml.CSafeLoader))
        load_t = best_of(lambda: load_policies([path], reg))
        ps = load_policies([path], reg)
    print(f"load+validate+compile {args.rules} rules: {load_t * 1000:.0f} ms "
          f"(anchor yaml.load alone: {yaml_t * 1000:.0f} ms, ratio {load_t / yaml_t:.1f}x); goal < 1000 ms: "
          f"{'OK' if load_t < 1 else 'MISSED'}")

    ctx = FactContext(reg, "/")
    checks = [r for r in ps.check_rules][: len(CHECKS)]
    for r in checks:
        r.check.fn(ctx)  # warm the fact cache: we time evaluation, not I/O
    n = 20000
    for r in checks:
        fn = r.check.fn
        t = best_of(lambda fn=fn: [fn(ctx) for _ in range(n)], 3) / n
        print(f"check  {t * 1e6:7.2f} us  {r.check.text[:70]}")

    st = os.stat("/etc/shadow")

    def handwritten() -> bool:
        return (st.st_mode & 0o137) == 0 and st.st_uid == 0

    hw = best_of(lambda: [handwritten() for _ in range(n)], 3) / n
    print(f"anchor {hw * 1e6:7.2f} us  hand-written Python for the first check (stat cached)")
    ev = {"type": "exec", "proc": {"exe": "/usr/bin/sudo", "cmdline": "sudo id"}, "file": {"path": "/etc/x", "flags": ["O_WRONLY"]},
          "net": {"dst_ip": "10.1.1.1", "dst_port": 22}, "auth": {"result": "failure", "service": "sshd"}}
    for r in [r for r in ps.event_rules][: len(EVENTS)]:
        fn = r.when.fn
        t = best_of(lambda fn=fn: [fn(ev) for _ in range(n)], 3) / n
        print(f"event  {t * 1e6:7.2f} us  {r.when.text[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
