"""The engine end to end on real compiled rules: all matches fire, alerts follow the contract,
errors are counted; rule tests run through `run_rule_tests`; JSONL sources and ordering."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from events_helpers import ev, load_rules, ts

from secpolicy.errors import InputError
from secpolicy.events.engine import EventEngine
from secpolicy.events.replay import write_jsonl_event
from secpolicy.events.sources import (
    JsonlSource,
    MemorySource,
    OrderStats,
    detect_format,
    merge_sources,
    ordered,
)
from secpolicy.events.testing import run_rule_tests
from secpolicy.resources import load_schema

RULES = """
- id: a-write-etc
  title: Write under /etc
  severity: medium
  references: {pci-dss: ["10.2.1.7"]}
  tags: [fs]
  when: type == "write" and file.path startswith "/etc/"
  message: "{proc.exe} wrote {file.path} for {user.name}"
- id: b-any-write
  title: Any write
  severity: info
  when: type == "write"
- id: c-brute
  title: Brute force
  severity: high
  when: type == "auth" and auth.result == "failure"
  threshold: {count: 3, within: 10s, by: [auth.user]}
- id: d-chain
  title: Chain
  severity: critical
  sequence:
    by: proc.session
    within: 1m
    steps:
      - type == "exec" and proc.exe == "/usr/bin/sudo"
      - type == "write" and file.path startswith "/etc/"
"""


def test_all_matching_rules_fire_in_rule_order(tmp_path: Path) -> None:
    engine = EventEngine(load_rules(tmp_path, RULES).event_rules)
    alerts = engine.process(ev("write", ts(0), proc={"exe": "/usr/bin/tee"}, file={"path": "/etc/hosts"}))
    assert [a["rule_id"] for a in alerts] == ["a-write-etc", "b-any-write"]
    a = alerts[0]
    assert a["message"] == "/usr/bin/tee wrote /etc/hosts for ?"
    assert a["severity"] == "medium" and a["title"] == "Write under /etc"
    assert a["references"] == {"pci-dss": ["10.2.1.7"]} and a["tags"] == ["fs"]
    assert a["context"] == {"kind": "match", "key": {}, "count": 1, "window": [ts(0), ts(0)]}
    assert alerts[1]["message"] == "Any write"  # no message: the title
    validator = jsonschema.Draft202012Validator(load_schema("alert"))
    for alert in alerts:
        validator.validate(json.loads(json.dumps(alert)))


def test_threshold_and_sequence_alerts_carry_their_events(tmp_path: Path) -> None:
    engine = EventEngine(load_rules(tmp_path, RULES).event_rules)
    out = []
    for i in range(4):
        out += engine.process(ev("auth", ts(i), auth={"user": "root", "result": "failure"}))
    out += engine.process(ev("exec", ts(10), proc={"exe": "/usr/bin/sudo", "session": 3}))
    out += engine.process(ev("write", ts(20), proc={"exe": "/usr/bin/tee", "session": 3}, file={"path": "/etc/x"}))
    brute = [a for a in out if a["rule_id"] == "c-brute"]
    assert len(brute) == 1
    assert brute[0]["context"] == {"kind": "threshold", "key": {"auth.user": "root"}, "count": 3, "window": [ts(0), ts(2)]}
    assert len(brute[0]["events"]) == 3 and brute[0]["event"]["ts"] == ts(2)
    (chain,) = [a for a in out if a["rule_id"] == "d-chain"]
    assert [e["type"] for e in chain["events"]] == ["exec", "write"]
    assert chain["context"]["key"] == {"proc.session": 3}
    stats = engine.stats()
    assert stats["events"] == 6 and stats["alerts"] == len(out)
    assert stats["rules"]["c-brute"]["correlation"]["suppressed_in_burst"] == 1


def test_a_condition_that_raises_is_counted_not_fatal(tmp_path: Path) -> None:
    from dataclasses import replace

    rules = load_rules(tmp_path, RULES).event_rules
    broken_when = replace(rules[1].when, fn=lambda e: 1 / 0)
    rules = (replace(rules[1], id="broken", when=broken_when),) + tuple(rules)
    engine = EventEngine(rules)
    alerts = engine.process(ev("write", ts(0), file={"path": "/etc/x"}))
    assert [a["rule_id"] for a in alerts] == ["a-write-etc", "b-any-write"]
    assert engine.stats()["rules"]["broken"]["errors"] == 1


def test_rule_tests_report_pass_and_fail_with_detail(tmp_path: Path) -> None:
    ps = load_rules(
        tmp_path,
        """
- id: r
  title: R
  severity: low
  when: type == "write" and file.path startswith "/etc/"
  tests:
    - {name: fires, expect: fire, events: [{type: write, file: {path: /etc/x}}]}
    - {name: wrongly expected, expect: no_fire, events: [{type: write, file: {path: /etc/x}}]}
    - {name: count, expect: fire, alerts: 2, events: [{type: write, file: {path: /etc/x}}]}
    - {name: typo, expect: fire, events: [{type: write, file: {pth: /etc/x}}]}
""",
    )
    outcomes = run_rule_tests(ps.rule("r"))
    assert [(o.name, o.passed) for o in outcomes] == [
        ("fires", True), ("wrongly expected", False), ("count", False), ("typo", False)
    ]
    assert outcomes[1].detail.startswith("expected no alert, got 1")
    assert outcomes[2].detail.startswith("expected 2 alert(s), got 1")
    assert "pth" in outcomes[3].detail
    assert outcomes[0].rule_id == "r" and outcomes[0].source.endswith("p.yaml:9")


def test_bundled_event_rules_pass_their_tests() -> None:
    from secpolicy.resources import policies_dir
    from secpolicy.vocabulary import builtin_registry, load_policies

    ps = load_policies([policies_dir() / "pci-dss" / "events.yaml"], builtin_registry())
    assert len(ps.event_rules) >= 10
    for rule in ps.event_rules:
        outcomes = run_rule_tests(rule)
        expects = {t.expect for t in rule.tests}
        assert {"fire", "no_fire"} <= expects, rule.id
        assert all(o.passed for o in outcomes), [(o.name, o.detail) for o in outcomes if not o.passed]


def test_jsonl_source_counts_garbled_lines_and_keeps_going(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    with p.open("w") as f:
        write_jsonl_event(f, ev("exec", ts(0)))
        f.write("{not json\n\n[1, 2]\n")
        f.write(json.dumps({"type": "nope", "ts": ts(1)}) + "\n")
        f.write(json.dumps({"type": "exec", "ts": "yesterday"}) + "\n")
        write_jsonl_event(f, ev("open", ts(2)))
    src = JsonlSource(p)
    assert [e["type"] for e in src.events()] == ["exec", "open"]
    assert src.garbled.count == 4
    assert [w.split(": ")[0] for w in src.garbled.where] == [f"{p}:{n}" for n in (2, 4, 5, 6)]
    assert detect_format(p) == "jsonl"
    with pytest.raises(InputError):
        list(JsonlSource(tmp_path / "missing").events())


def test_ordering_within_the_window_and_late_events_counted() -> None:
    evs = [ev("exec", ts(t), n=i) for i, t in enumerate([10, 9, 12, 11, 30, 20, 31, 40, 25])]
    stats = OrderStats()
    out = list(ordered(evs, window=5, stats=stats))
    # 20 is still sorted in (nothing later was released yet); 25 comes after 31 was released.
    assert [e["n"] for e in out] == [1, 0, 3, 2, 5, 4, 6, 8, 7]
    assert stats.late == 1
    merged = list(merge_sources([MemorySource([ev("a", ts(1)), ev("a", ts(5))]), MemorySource([ev("b", ts(3))])]))
    assert [e["ts"] for e in merged] == [ts(1), ts(3), ts(5)]
