"""Replay throughput with every bundled event rule loaded: events per second for the engine
alone and end to end (JSONL decode + ordering + engine), on a generated stream of mixed events
and on real audit logs. Prints ratios against `json.loads` of the same lines (the anchor).

    .venv/bin/python bench/replay_bench.py [--events 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from secpolicy.events.auditd import AuditdSource
from secpolicy.events.engine import EventEngine
from secpolicy.events.model import canonical_json, format_ts
from secpolicy.events.replay import replay
from secpolicy.events.sources import JsonlSource
from secpolicy.facts import builtin_registry
from secpolicy.policy import load_policies
from secpolicy.resources import policies_dir

EXES = ["/usr/bin/ls", "/usr/bin/cat", "/usr/bin/bash", "/usr/bin/python3.11", "/usr/sbin/sshd",
        "/usr/bin/sudo", "/usr/bin/grep", "/usr/bin/curl", "/usr/lib/systemd/systemd", "/usr/bin/tee"]
PATHS = ["/etc/passwd", "/etc/shadow", "/etc/hosts", "/etc/cron.d/job", "/usr/lib/x86_64-linux-gnu/libc.so.6",
         "/home/u/.bashrc", "/tmp/build/x.o", "/var/log/syslog", "/var/log/audit/audit.log", "/proc/self/stat"]
MIX = [("open", 30), ("exec", 25), ("connect", 10), ("write", 10), ("unlink", 5), ("auth", 5), ("rename", 3),
       ("chmod", 3), ("setuid", 3), ("accept", 3), ("config_change", 1), ("account_change", 1), ("module_load", 1)]


# Paths and programs nothing in the bundled rules cares about, for the "typical" mix: on a real
# host the overwhelming majority of events touch no sensitive file.
QUIET_PATHS = ["/home/u/.cache/pip/x", "/home/u/.bashrc", "/tmp/build/x.o", "/proc/self/stat",
               "/var/cache/apt/pkgcache.bin", "/home/u/src/main.c", "/run/user/1000/bus"]
QUIET_EXES = ["/usr/bin/ls", "/usr/bin/cat", "/usr/bin/bash", "/usr/bin/python3.11", "/usr/bin/grep", "/usr/bin/make"]


def make_event(rng: random.Random, i: int, base: int, typical: bool = False) -> dict:
    e = _make_event(rng, i, base)
    if typical and rng.random() < 0.995:
        if "file" in e:
            e["file"]["path"] = rng.choice(QUIET_PATHS)
        e["proc"]["exe"] = rng.choice(QUIET_EXES)
        e["proc"]["uid"] = e["proc"]["euid"] = e["user"]["uid"] = 1000
        e.pop("outcome", None)
        if e["type"] in ("account_change", "config_change", "module_load", "auth", "connect"):
            e["type"] = "open"
            e["file"] = {"path": rng.choice(QUIET_PATHS), "flags": ["O_RDONLY"]}
            for k in ("account", "config", "module", "auth", "net"):
                e.pop(k, None)
    return e


def _make_event(rng: random.Random, i: int, base: int) -> dict:
    t = rng.choices([m[0] for m in MIX], [m[1] for m in MIX])[0]
    uid = rng.choice([0, 0, 1000, 1001, 65534])
    e: dict = {
        "type": t,
        "ts": format_ts(base + i // 5000, (i % 5000) * 200_000),
        "host": "bench",
        "proc": {"pid": 1000 + i % 30000, "ppid": 1, "exe": rng.choice(EXES), "comm": "x", "uid": uid,
                 "euid": uid, "auid": rng.choice([1000, 1001]), "session": rng.randint(1, 50)},
        "user": {"uid": uid},
        "source": {"name": "jsonl"},
    }
    if t in ("open", "write", "unlink", "rename", "chmod"):
        flags = ["O_RDONLY"] if t == "open" else ["O_WRONLY", "O_CREAT"]
        e["file"] = {"path": rng.choice(PATHS), "flags": flags}
        if rng.random() < 0.02:
            e["outcome"] = {"result": "failure", "errno": 13}
    elif t in ("connect", "accept"):
        e["net"] = {"family": "inet", "protocol": "tcp", "dst_ip": rng.choice(["127.0.0.1", "192.0.2.10", "10.1.2.3"]),
                    "dst_port": rng.choice([22, 80, 443])}
    elif t == "auth":
        e["auth"] = {"service": "sshd", "user": rng.choice(["root", "admin", "u"]),
                     "result": "failure" if rng.random() < 0.3 else "success",
                     "rhost": f"203.0.113.{rng.randint(1, 40)}"}
    elif t == "account_change":
        e["account"] = {"name": "svc", "op": "adding user"}
    elif t == "config_change":
        e["config"] = {"op": "add_rule", "key": "exec"}
    elif t == "module_load":
        e["module"] = {"name": "dummy"}
    return e


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mix", choices=["adversarial", "typical"], default="adversarial",
                    help="adversarial: ~26%% of events raise an alert; typical: ~0.5%% touch anything a rule watches")
    args = ap.parse_args()

    ps = load_policies([policies_dir()], builtin_registry())
    rules = ps.event_rules
    print(f"event rules loaded: {len(rules)}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        t0 = time.perf_counter()
        with path.open("w", encoding="utf-8") as f:
            for i in range(args.events):
                f.write(canonical_json(make_event(rng, i, 1_704_067_200, args.mix == "typical")))
                f.write("\n")
        size = path.stat().st_size
        print(f"mix: {args.mix}")
        print(f"generated {args.events} events ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")

        # Anchor: decoding the lines with json.loads and nothing else.
        t0 = time.perf_counter()
        n = 0
        with path.open("rb") as f:
            for line in f:
                json.loads(line)
                n += 1
        anchor = rate(n, time.perf_counter() - t0)

        # Engine alone over decoded events (a slice kept in memory, replayed in full).
        sample = []
        with path.open("rb") as f:
            for k, line in enumerate(f):
                if k >= 200_000:
                    break
                sample.append(json.loads(line))
        engine = EventEngine(rules)
        process = engine.process
        t0 = time.perf_counter()
        alerts = 0
        reps = max(1, args.events // len(sample))
        for _ in range(reps):
            for e in sample:
                if process(e):
                    alerts += 1
        engine_rate = rate(reps * len(sample), time.perf_counter() - t0)
        st = engine.stats()

        # End to end: what `secpolicy replay` does (JSONL source, reorder window, engine).
        engine2 = EventEngine(rules)
        t0 = time.perf_counter()
        res = replay([JsonlSource(path)], engine2, None)
        e2e = rate(res.events, time.perf_counter() - t0)

    print(f"json.loads only (anchor):        {anchor:>10,.0f} events/s")
    print(f"engine only (decoded events):    {engine_rate:>10,.0f} events/s  ratio to anchor {engine_rate / anchor:.2f}")
    print(f"end to end (JSONL replay):       {e2e:>10,.0f} events/s  ratio to anchor {e2e / anchor:.2f}")
    print(f"  evaluations per event: {st['evaluations'] / max(1, st['events']):.2f}; alerts: {engine2.stats()['alerts']}")

    logs = sorted((REPO.parent / "shared" / "data" / "auditd").glob("*/*.log"))
    logs.append(REPO / "tests" / "fixtures" / "events" / "workload-debian12.log")
    records = sum(p.read_bytes().count(b"\n") for p in logs)
    reps = 200
    t0 = time.perf_counter()
    nev = 0
    for _ in range(reps):
        engine3 = EventEngine(rules)
        for log in logs:
            nev += replay([AuditdSource([log])], engine3, None).events
    secs = time.perf_counter() - t0
    print(
        f"real audit logs ({len(logs)} files, {records} records) x{reps}: "
        f"{rate(reps * records, secs):,.0f} records/s, {rate(nev, secs):,.0f} events/s end to end"
    )


if __name__ == "__main__":
    main()
