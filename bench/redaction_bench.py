"""Replay throughput with redaction on (the built-in policy, the default) and off, through the
CLI end to end (start-up included), measured in the same run: the cost of masking what leaves.

The input is replay_bench.py's realistic audit log (the real logs in ../shared/data/auditd/ and
tests/fixtures/events/, repeated with fresh timestamps and ids) and the same events as JSON
lines. Figures are CPU seconds of the child process (the least of --runs), so a shared machine
skews them less; the ratio on/off is the figure to read (goal: at most 1.10).

    .venv/bin/python bench/redaction_bench.py [--records 320000] [--seed 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_bench import _best, _cpu, _secpolicy, _write_jsonl, build_log, installed_env

GOAL = 1.10  # CPU with redaction on / off


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=320_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="runs of each command (the least CPU is kept)")
    args = ap.parse_args()
    sp = _secpolicy()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        env = installed_env(t)
        log = t / "audit.log"
        nrec = build_log(log, args.records, args.seed)
        jsonl = t / "events.jsonl"
        _write_jsonl(log, jsonl)
        n_events = sum(1 for _ in jsonl.open(encoding="utf-8"))
        off = t / "off.yaml"
        off.write_text("enabled: false\n", encoding="utf-8")
        _cpu([*sp, "lint"], env)  # byte-compiled modules and a warm compile cache for every run
        rows = []
        for label, inputs, extra in (
            ("auditd log, alerts written", ["--input-format", "auditd", str(log)], []),
            ("JSONL events, alerts written", [str(jsonl)], []),
            ("JSONL events, alerts and every event stored", [str(jsonl)], ["--store", str(t / "store.db")]),
        ):
            cpu = {}
            for mode, red in (("off", ["--redaction", str(off)]), ("on", [])):
                alerts = t / f"alerts-{mode}.jsonl"
                cmd = [*sp, "replay", "-o", str(alerts), *red, *extra, *inputs]
                best = 1e9
                for _ in range(args.runs):
                    (t / "store.db").unlink(missing_ok=True)
                    best = min(best, _best(1, cmd, env)[0])
                cpu[mode] = best
            n_alerts = sum(1 for _ in (t / "alerts-on.jsonl").open(encoding="utf-8"))
            masked = sum(1 for line in (t / "alerts-on.jsonl").open(encoding="utf-8") if '"redacted"' in line)
            rows.append((label, cpu["off"], cpu["on"], n_alerts, masked))

    print(f"realistic audit log: {nrec} records, {n_events} events")
    print(f"{'replay':<46} {'off CPU s':>9} {'on CPU s':>9} {'on/off':>7}  events/CPU s on")
    worst = 0.0
    for label, c_off, c_on, n_alerts, masked in rows:
        ratio = c_on / c_off
        worst = max(worst, ratio)
        print(f"{label:<46} {c_off:9.2f} {c_on:9.2f} {ratio:7.3f}  {n_events / c_on:>9,.0f}"
              f"   ({n_alerts} alerts, {masked} with redacted fields)")
    print(f"worst on/off: {worst:.3f} (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
