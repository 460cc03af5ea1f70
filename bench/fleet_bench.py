"""Fleet roll-up at 1,000 hosts: `secpolicy fleet ingest` of 1,000 results files (a real scan
of this host, varied per host) and `fleet report` to HTML, through the CLI end to end, beside
the same findings rows bulk-loaded by the sqlite3 CLI's `.import` (and by psql COPY into a
private PostgreSQL server when one can be started), all in the same run."""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 30.0
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "reports"))
from gen_results import agree


def _secpolicy() -> list[str]:
    exe = REPO / ".venv" / "bin" / "secpolicy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "secpolicy"]


def _timed(cmd: list[str], **kw: Any) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({r.returncode}): {r.stderr[-2000:]}")
    return time.perf_counter() - start


def _hosts(base: dict[str, Any], n: int, out: Path) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """n results files, each host failing its own random tenth of the checked rules."""
    rng = random.Random(1)
    when = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    checked = [f["rule_id"] for f in base["results"] if f["status"] in ("pass", "fail", "error")]
    files, rows = [], []
    for i in range(n):
        d = copy.deepcopy(base)
        sid = f"bench-{i:05d}"
        d["scan"].update(id=sid, host=f"host{i:04d}", started_at=(when + dt.timedelta(minutes=i)).isoformat())
        if isinstance(d["scan"].get("host_identity"), dict):  # each host its own machine-id
            d["scan"]["host_identity"].update(machine_id=f"{i:032x}", hostname=f"host{i:04d}")
        failing = set(rng.sample(checked, len(checked) // 10))
        for f in d["results"]:
            if f["status"] in ("pass", "fail", "error"):
                f["status"] = "fail" if f["rule_id"] in failing else "pass"
            rows.append((sid, f["rule_id"], f["status"], f["severity"]))
        p = out / f"host{i:04d}.json"
        p.write_text(json.dumps(agree(d)))  # its counts and requirement rows as a scan writes them
        files.append(str(p))
    return files, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="secpolicy-fleet-bench-"))
    try:
        base_file = work / "base.json"
        r = subprocess.run([*_secpolicy(), "scan", "--format", "json", "-o", str(base_file)],
                           capture_output=True, text=True, check=False)
        if r.returncode not in (0, 1, 4):
            raise SystemExit(f"the base scan failed: {r.stderr}")
        base = json.loads(base_file.read_text())
        files, rows = _hosts(base, args.hosts, work)
        size = sum(Path(f).stat().st_size for f in files)
        print(f"{args.hosts} results files of {len(base['results'])} rules each "
              f"({len(rows)} findings, {size / 1e6:.0f} MB of JSON)")

        db = work / "fleet.db"
        t_ingest = _timed([*_secpolicy(), "fleet", "ingest", "--store", str(db), *files])
        t_report = _timed([*_secpolicy(), "fleet", "report", "--store", str(db), "-o", str(work / "fleet.html")])
        print(f"secpolicy fleet ingest (SQLite)   {t_ingest:7.2f} s")
        print(f"secpolicy fleet report --format html {t_report:5.2f} s")
        total = t_ingest + t_report
        print(f"ingest + HTML roll-up             {total:7.2f} s   (goal < {GOAL_SECONDS:.0f} s: "
              f"{'met' if total < GOAL_SECONDS else 'NOT met'})")

        csv_path = work / "findings.csv"
        with csv_path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
        sqlite3 = shutil.which("sqlite3")
        if sqlite3:
            script = ("CREATE TABLE findings (scan_id TEXT NOT NULL, rule_id TEXT NOT NULL, status TEXT NOT NULL, "
                      "severity TEXT NOT NULL, PRIMARY KEY (scan_id, rule_id));\n"
                      "CREATE INDEX findings_rule_status ON findings (rule_id, status);\n"
                      f".import --csv {csv_path} findings\n")
            t_sqlite = _timed([sqlite3, str(work / "anchor.db")], input=script)
            print(f"sqlite3 .import of the same findings rows {t_sqlite:6.2f} s   "
                  f"ratio ingest / sqlite3 = {t_ingest / t_sqlite:.2f}x (JSON parsing and validation of "
                  f"{size / 1e6:.0f} MB included on our side)")
        else:
            print("sqlite3 CLI not installed: no SQLite anchor (apt-get install sqlite3)")

        from pg_server import start_postgres, stop_postgres, unavailable

        if unavailable() is None:
            server = start_postgres(port=54330)
            try:
                t_pg = _timed([*_secpolicy(), "fleet", "ingest", "--store", server.url, *files])
                psql = shutil.which("psql") or "psql"
                create = ("CREATE TABLE anchor (scan_id TEXT NOT NULL, rule_id TEXT NOT NULL, status TEXT NOT NULL, "
                          "severity TEXT NOT NULL, PRIMARY KEY (scan_id, rule_id)); "
                          "CREATE INDEX anchor_rs ON anchor (rule_id, status)")
                t_copy = _timed([psql, "-q", server.url, "-c", create,
                                 "-c", f"\\copy anchor FROM '{csv_path}' WITH (FORMAT csv)"])
                print(f"secpolicy fleet ingest (PostgreSQL) {t_pg:6.2f} s; psql COPY of the same rows {t_copy:.2f} s; "
                      f"ratio {t_pg / t_copy:.2f}x")
            finally:
                stop_postgres(server)
        else:
            print(f"no PostgreSQL anchor: {unavailable()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
