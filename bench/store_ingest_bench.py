"""Event store ingest rate against the monitor's 20,000 events/s target, with a raw SQLite
insert of the same rows as the anchor measured in the same run."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from secpolicy.auditlog.store import EventStore, event_row

TARGET = 20_000.0
USERS = ["alice", "bob", "carol", "admin", "root", "www-data", "postgres", "deploy"]
TYPES = ["exec", "open", "connect", "auth", "write", "setuid"]


def make_event(i: int) -> dict[str, Any]:
    kind = TYPES[i % len(TYPES)]
    user = USERS[i % len(USERS)]
    s, ns = divmod(i, 20_000)
    event: dict[str, Any] = {
        "type": kind,
        "ts": f"2026-11-21T{(s // 3600) % 24:02d}:{(s // 60) % 60:02d}:{s % 60:02d}.{ns * 50_000:09d}Z",
        "host": "web1",
        "proc": {"pid": 1000 + i % 30000, "ppid": 1, "comm": "bash", "exe": "/usr/bin/bash",
                 "uid": 1000 + i % 8, "euid": 1000 + i % 8, "session": i % 50,
                 "cmdline": "bash -c true", "ancestors": ["/usr/sbin/sshd", "/usr/bin/bash"]},
        "user": {"uid": 1000 + i % 8, "name": user},
        "source": {"name": "ebpf", "probe": "sys_enter_execve"},
    }
    if kind in ("open", "write"):
        event["file"] = {"path": f"/home/{user}/file{i % 100}", "flags": ["O_RDONLY"]}
    elif kind == "connect":
        event["net"] = {"family": "inet", "protocol": "tcp", "dst_ip": "198.51.100.7", "dst_port": 443}
    elif kind == "auth":
        event["auth"] = {"service": "sshd", "user": user, "result": "failure", "rhost": "203.0.113.9"}
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    events = [make_event(i) for i in range(args.events)]
    with tempfile.TemporaryDirectory(prefix="secpolicy-ingest-") as tmp:
        # Anchor: pre-built rows straight into SQLite, no field extraction, no JSON encoding.
        rows = [event_row(e) for e in events]
        anchor = EventStore(Path(tmp) / "anchor.db")
        start = time.perf_counter()
        anchor.add_event_rows(rows, batch=5000)
        raw_s = time.perf_counter() - start
        anchor.close()
        del rows

        store = EventStore(Path(tmp) / "events.db")
        start = time.perf_counter()
        stored = store.add_events(events, batch=5000)
        full_s = time.perf_counter() - start
        store.close()
    rate = stored / full_s
    print(f"events:              {stored:,}")
    print(f"raw insert anchor:   {args.events / raw_s:,.0f} events/s")
    print(f"EventStore ingest:   {rate:,.0f} events/s (extract + JSON + indexed insert)")
    print(f"ratio to target:     {rate / TARGET:.2f}x of {TARGET:,.0f} events/s "
          f"({'meets' if rate >= TARGET else 'MISSES'} the target)")
    print(f"overhead vs anchor:  {(args.events / raw_s) / rate:.2f}x")


if __name__ == "__main__":
    main()
