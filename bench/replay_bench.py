"""Replay speed through the CLI, end to end (start-up included), next to aureport measured in
the same run: auditd replay vs `aureport --summary`, JSONL replay, and replay start-up.

The input is a realistic audit log built from the real logs in ../shared/data/auditd/ and the
recorded fixtures in tests/fixtures/events/: their audit events (every record shape they hold),
repeated with fresh timestamps, serials, pids, sessions and inodes until it has --records
records. Every figure is CPU seconds of the child process (the machine may be shared).

    .venv/bin/python bench/replay_bench.py [--records 320000] [--seed 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ../shared/data/auditd beside the checkout (or beside a directory holding several checkouts).
SHARED = next((p / "shared" / "data" / "auditd" for p in REPO.parents if (p / "shared" / "data" / "auditd").is_dir()),
              REPO.parent / "shared" / "data" / "auditd")
FIXTURES = REPO / "tests" / "fixtures" / "events"
GOAL_AUDITD = 0.5  # x aureport --summary's audit events per CPU second
GOAL_JSONL = 100_000  # events per CPU second
GOAL_STARTUP = 0.5  # CPU seconds

_HEADER = re.compile(r"^((?:node=\S+ )?type=\S+ msg=audit\()(\d+)\.(\d+):(\d+)(\).*)$", re.DOTALL)
_VARY = re.compile(r"(?<=[ '])(pid|ppid|ses|inode)=(\d+)")


def source_logs() -> list[Path]:
    """The real audit logs the realistic log is built from."""
    logs = sorted(SHARED.glob("*/*.log")) if SHARED.is_dir() else []
    logs += sorted(FIXTURES.glob("*.log"))
    return logs


def _events_of(path: Path) -> list[list[str]]:
    """The audit events of one log as lists of raw lines (records with the same node and id,
    in file order); lines without a header are left out."""
    groups: dict[tuple[str, str], list[str]] = {}
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        m = _HEADER.match(line)
        if m is None:
            continue
        node = line.split(" ", 1)[0] if line.startswith("node=") else ""
        groups.setdefault((node, f"{m.group(2)}.{m.group(3)}:{m.group(4)}"), []).append(line)
    return list(groups.values())


def build_log(dest: Path, records: int = 320_000, seed: int = 1, rate: int = 400) -> int:
    """Write a realistic audit log of about `records` records to `dest`: the audit events of
    the real logs, drawn at random, renumbered (`rate` events per second, serials in order),
    with varied pids, parent pids, sessions and inodes; one event in ten has its records
    interleaved with the next one's, as on a busy multi-CPU host. Returns the records written."""
    rng = random.Random(seed)
    pool = [ev for log in source_logs() for ev in _events_of(log)]
    if not pool:
        raise SystemExit("no source audit logs found")
    pids = [rng.randint(300, 4_000_000) for _ in range(400)]
    sessions = [rng.randint(1, 3000) for _ in range(40)]

    def vary(m: re.Match[str]) -> str:
        k = m.group(1)
        if k in ("pid", "ppid"):
            return f"{k}={rng.choice(pids)}"
        if k == "ses":
            return m.group(0) if m.group(2) == "4294967295" else f"ses={rng.choice(sessions)}"
        return f"inode={rng.randint(2, 9_000_000)}"

    def renumber(ev: list[str], n: int) -> list[str]:
        sec, ms = 1_790_000_000 + n // rate, (n % rate) * (1000 // rate)
        out = []
        for line in ev:
            m = _HEADER.match(line)
            assert m is not None
            out.append(_VARY.sub(vary, f"{m.group(1)}{sec}.{ms:03d}:{n + 1000}{m.group(5)}"))
        return out

    written = 0
    n = 0
    with dest.open("w", encoding="utf-8", errors="surrogateescape") as out:
        while written < records:
            ev = renumber(rng.choice(pool), n)
            n += 1
            if rng.random() < 0.1:
                other = renumber(rng.choice(pool), n)
                n += 1
                merged = [x for pair in zip(ev, other) for x in pair]
                merged += ev[len(other):] + other[len(ev):]
                ev = merged
            out.write("\n".join(ev) + "\n")
            written += len(ev)
    return written


def _cpu(cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    """CPU seconds (user + system) of one child process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout


def _best(runs: int, cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    results = [_cpu(cmd, env) for _ in range(runs)]
    return min(r[0] for r in results), results[0][1]


def installed_env(tmp: Path) -> dict[str, str]:
    """The environment of a run as installed: byte-compiled modules (not disabled) and a
    private compile cache under `tmp`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    return env


def _secpolicy() -> list[str]:
    exe = REPO / ".venv" / "bin" / "secpolicy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "secpolicy"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=320_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="runs of each command (the least CPU is kept)")
    args = ap.parse_args()
    if shutil.which("aureport") is None:
        print("aureport (Debian package auditd) is needed for the anchor", file=sys.stderr)
        return 3
    sp = _secpolicy()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        env = installed_env(t)
        log = t / "audit.log"
        nrec = build_log(log, args.records, args.seed)
        print(f"realistic audit log: {nrec} records, {log.stat().st_size / 1e6:.0f} MB, "
              f"from {len(source_logs())} real logs")

        # Anchor: aureport --summary (its count of audit events is what both figures divide).
        au_cpu, au_out = _best(args.runs, ["aureport", "-if", str(log), "--summary"])
        m = re.search(r"Number of events: (\d+)", au_out)
        assert m is not None, au_out
        au_events = int(m.group(1))
        au_rate = au_events / au_cpu

        # Start-up: a replay of one event with an empty compile cache (a fresh one each run);
        # the replay after that (the cache filled by the first replay alone); and with the
        # cache a full load filled (as `scan` or `lint` leave it).
        one = t / "one.jsonl"
        one.write_text('{"type":"open","ts":"2024-01-01T00:00:00.000000000Z"}\n', encoding="utf-8")
        _cpu([*sp, "replay", str(one)], env)  # byte-compiles the modules
        cold = [_cpu([*sp, "replay", str(one)], env | {"XDG_CACHE_HOME": str(t / f"cold{i}")})
                for i in range(args.runs)]
        cold_cpu = min(c for c, _ in cold)
        second_cpu, _ = _best(args.runs, [*sp, "replay", str(one)], env | {"XDG_CACHE_HOME": str(t / "cold0")})
        _cpu([*sp, "lint"], env)
        start_cpu, _ = _best(max(args.runs, 5), [*sp, "replay", str(one)], env)

        alerts = t / "alerts.jsonl"
        sp_cpu, _ = _best(args.runs, [*sp, "replay", "--input-format", "auditd", "-o", str(alerts), str(log)], env)
        n_alerts = sum(1 for _ in alerts.open(encoding="utf-8"))
        sp_rate = au_events / sp_cpu

        # The same events as JSON lines, replayed through the CLI with their alerts written.
        jsonl = t / "events.jsonl"
        _write_jsonl(log, jsonl)
        n_events = sum(1 for _ in jsonl.open(encoding="utf-8"))
        js_cpu, _ = _best(args.runs, [*sp, "replay", "-o", str(alerts), str(jsonl)], env)
        js_alerts = sum(1 for _ in alerts.open(encoding="utf-8"))
        js_rate = n_events / js_cpu
        # Anchors: a Python process that only decodes every line (orjson, which replay uses;
        # the standard library's json), start-up included.
        decode = "import {0}, sys\nfor line in open(sys.argv[1], 'rb'): {0}.loads(line)"
        or_cpu, _ = _best(args.runs, [sys.executable, "-c", decode.format("orjson"), str(jsonl)], env)
        std_cpu, _ = _best(args.runs, [sys.executable, "-c", decode.format("json"), str(jsonl)], env)

    print(f"aureport --summary (anchor):   {au_cpu:6.2f} CPU s  {au_rate:>9,.0f} audit events/CPU s ({au_events} events)")
    print(f"secpolicy replay, auditd:      {sp_cpu:6.2f} CPU s  {sp_rate:>9,.0f} audit events/CPU s "
          f"({n_alerts} alerts written)")
    print(f"  ratio to aureport: {sp_rate / au_rate:.2f}x (goal >= {GOAL_AUDITD}x)")
    print(f"secpolicy replay, JSONL:       {js_cpu:6.2f} CPU s  {js_rate:>9,.0f} events/CPU s "
          f"({n_events} events, {js_alerts} alerts written; goal >= {GOAL_JSONL:,})")
    print(f"  ratio to aureport's audit events/CPU s: {js_rate / au_rate:.2f}x")
    print(f"  anchors, decoding the lines only: orjson.loads {or_cpu:.2f} CPU s ({n_events / or_cpu:,.0f} lines/CPU s; "
          f"replay {js_rate * or_cpu / n_events:.2f}x of it), json.loads {std_cpu:.2f} CPU s "
          f"({n_events / std_cpu:,.0f} lines/CPU s; replay {js_rate * std_cpu / n_events:.2f}x)")
    print(f"replay start-up (1 event):     {start_cpu:6.2f} CPU s with the compile cache warm (goal <= {GOAL_STARTUP}); "
          f"{cold_cpu:.2f} CPU s with it empty, {second_cpu:.2f} CPU s for the next replay (filled by the first)")
    return 0


def _write_jsonl(log: Path, dest: Path) -> None:
    """The Events of an audit log as JSON lines (what `replay` reads back)."""
    sys.path.insert(0, str(REPO))
    from secpolicy.events.auditd import AuditdReader
    from secpolicy.events.replay import write_jsonl_event

    with dest.open("w", encoding="utf-8") as out:
        for ev in AuditdReader([log]).events():
            write_jsonl_event(out, ev)


if __name__ == "__main__":
    sys.exit(main())
