"""`replay` evaluates conditions as events are read and keeps in the reorder window only the
events that raise or correlate: what it writes and counts must be exactly what evaluating
every event, in time order, one at a time gives."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from events_helpers import load_rules, ts

from secpolicy.events.engine import EventEngine
from secpolicy.events.replay import replay, write_alert
from secpolicy.events.sources import MemorySource, OrderStats, ordered
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
RULES = """
- id: write-etc
  title: Write under /etc
  severity: medium
  when: type == "write" and file.path startswith "/etc/"
  message: "{proc.exe} wrote {file.path}"
- id: brute
  title: Brute force
  severity: high
  when: type == "auth" and auth.result == "failure"
  threshold: {count: 3, within: 4s, by: [auth.user]}
- id: chain
  title: Chain
  severity: critical
  sequence:
    by: proc.session
    within: 6s
    steps:
      - type == "exec" and proc.exe == "/usr/bin/sudo"
      - type == "write" and file.path startswith "/etc/"
- id: raises
  title: A condition that raises on some events
  severity: low
  when: type == "open" and proc.session == 1
"""


def _events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = []
    t = 0.0
    for i in range(n):
        t += rng.choice([0.0, 0.0, 0.01, 0.3, 0.9])
        at = max(0.0, t - rng.random() * rng.choice([0.0, 0.0, 1.5, 4.0, 9.0]))  # stragglers, some late
        kind = rng.choice(["write", "auth", "exec", "open", "connect"])
        ev: dict[str, Any] = {"type": kind, "ts": ts(round(at, rng.choice([0, 2, 3]))), "n": i,
                              "proc": {"exe": rng.choice(["/usr/bin/sudo", "/bin/cat", "/usr/bin/tee"]),
                                       "session": rng.choice([1, 2]),
                                       "cmdline": rng.choice(["sudo id", "é ☃ \u2028 \"q\" \\", "", None]),
                                       "args": rng.choice([["a", "b"], [], [1, 2.5, None]])},
                              "user": rng.choice([{"uid": 0, "name": "root"}, {"uid": 2**40}, {"name": ["x"]}, 1.5])}
        if kind == "write":
            ev["file"] = {"path": rng.choice(["/etc/hosts", "/tmp/x", "/etc/cron.d/a"])}
        if kind == "auth":
            ev["auth"] = {"user": rng.choice(["root", "bob"]), "result": rng.choice(["failure", "failure", "success"])}
        if kind == "open" and rng.random() < 0.3:
            ev["proc"] = "not an object"  # the condition raises: counted as an error of the rule
        out.append(ev)
    return out


def _one_at_a_time(rules: Any, events: list[dict[str, Any]], window: float) -> tuple[bytes, dict, int]:
    engine = EventEngine(rules)
    out = io.StringIO()
    stats = OrderStats()
    for ev in ordered(iter(events), window, stats):
        for a in engine.process(ev):
            write_alert(out, a)
    return out.getvalue().encode(), engine.stats(), stats.late


def test_replay_gives_what_evaluating_every_event_in_order_gives(tmp_path: Path) -> None:
    rules = list(load_rules(tmp_path, RULES).event_rules)
    rules += load_policies([REPO / "policies" / "pci-dss" / "events.yaml"], builtin_registry()).event_rules
    rng = random.Random(3)
    seen: Counter[str] = Counter()
    for trial in range(60):
        events = _events(rng, rng.choice([1, 30, 300]))
        window = rng.choice([0.0, 2.0, 5.0])
        want, want_stats, want_late = _one_at_a_time(rules, events, window)
        # Events not kept in the window, or all kept; alerts written as lines (never dicts), or
        # handed out as dicts too.
        for on_event, on_alert in ((None, None), (lambda ev: None, None), (None, [].append)):
            out = io.BytesIO()
            result = replay([MemorySource(events)], EventEngine(rules), out, window=window, on_event=on_event,
                            on_alert=on_alert)
            assert out.getvalue() == want, trial
            if on_alert is not None:
                handed = on_alert.__self__  # type: ignore[attr-defined]
                assert b"".join(orjson.dumps(a, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
                                for a in handed) == want
            assert result.engine == want_stats, trial
            assert result.late_events == want_late, trial
            assert result.events == len(events)
            assert result.alerts_by_rule == Counter(json.loads(line)["rule_id"] for line in want.splitlines())
        seen.update(json.loads(line)["rule_id"] for line in want.splitlines())
        seen["late"] += want_late
        seen["errors"] += want_stats["rules"]["raises"]["errors"]
    # The streams exercised what could differ: correlation, late events, conditions that raise.
    assert min(seen[k] for k in ("write-etc", "brute", "chain", "late", "errors")) > 0, seen
