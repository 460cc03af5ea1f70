"""Differential test of event correlation: the alerts of `threshold` and `sequence` rules, as
the engine, in-process replay, `secpolicy replay` and replay of split files and audit logs
raise them, must equal those of a small reference written from docs/events.md.

The reference (`Ref*` below) is deliberately naive: integer nanoseconds, lists scanned in
full, nothing cached. What it implements, from the documentation:
- order: events are merged in timestamp order through the reorder window (ties keep arrival
  order); an event stamped before one already let out is late: processed at once, counted.
- threshold: per `by` key (a missing field is null), the matching events kept are those within
  `within` of the newest one of the key; the count-th kept one fires with them (oldest first);
  the key then stays quiet (every event suppressed and counted) until `within` passes without
  a matching event. Event time, not arrival order, decides what is within the window: a late
  event never drags the window back nor shortens the quiet period.
- sequence: per key (an event lacking a `by` field is ignored), a partial match may advance
  by one step per event, only with an event stamped no earlier than its last step and within
  `within` of its first; a completed match is consumed; of the partial matches at the same
  step the one that started last is kept (it has more time left: a newer first step replaces
  an older first step, never a match that got further).
- state: a key idle (in event time) longer than `within` expires; a new key beyond `max_keys`
  evicts the least recently updated key; beyond the memory estimate (key_cost per key,
  event_cost per retained event, shared by the engine's rules) the rule's least recently
  updated other keys are evicted, then the oldest events of the key itself; all counted.
"""

from __future__ import annotations

import bisect
import calendar
import io
import json
import random
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from events_helpers import ev, load_rules, ts

from secpolicy.events.auditd import AuditdSource
from secpolicy.events.correlation import CorrelationLimits, SequenceCorrelator, ThresholdCorrelator
from secpolicy.events.engine import EventEngine
from secpolicy.events.model import format_ts
from secpolicy.events.replay import replay, write_jsonl_event
from secpolicy.events.sources import JsonlSource, OrderStats, ordered

NS = 1_000_000_000
BASE = 1_704_067_200  # 2024-01-01T00:00:00Z

RULES_YAML = """
- id: brute
  title: Brute force
  severity: high
  when: type == "auth" and auth.result == "failure"
  threshold: {count: 3, within: 10s, by: [auth.rhost]}
- id: pair
  title: Two attempts by one user from one host
  severity: low
  when: type == "auth"
  threshold: {count: 2, within: 3s, by: [auth.rhost, auth.user]}
- id: chain
  title: Chain
  severity: critical
  sequence:
    by: proc.session
    within: 20s
    steps:
      - type == "exec" and proc.exe == "/usr/bin/sudo"
      - type == "write" and file.path startswith "/etc/"
      - type == "connect"
- id: overlap
  title: Steps that one event can match several of
  severity: medium
  sequence:
    by: [proc.session]
    within: 30s
    steps:
      - user.uid == 0 and type == "exec"
      - user.uid == 0 and type in ["exec", "write"]
      - user.uid == 0 and type == "write"
- id: twice
  title: Two connects in a session
  severity: low
  sequence:
    by: proc.session
    within: 5s
    steps:
      - type == "connect"
      - type == "connect"
- id: opens
  title: Plain match
  severity: info
  when: type == "open"
"""


def _get(ev: dict[str, Any], path: str) -> Any:
    cur: Any = ev
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _is(t: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == t


# The same rules, as plain Python: (id, kind, conditions (the `when`, or one per step with
# the `when` folded in), by, count, within in ns).
REF_RULES: list[tuple[str, str, list[Callable[[dict[str, Any]], bool]], list[str], int, int]] = [
    ("brute", "threshold", [lambda e: e["type"] == "auth" and _get(e, "auth.result") == "failure"],
     ["auth.rhost"], 3, 10 * NS),
    ("pair", "threshold", [_is("auth")], ["auth.rhost", "auth.user"], 2, 3 * NS),
    ("chain", "sequence", [
        lambda e: e["type"] == "exec" and _get(e, "proc.exe") == "/usr/bin/sudo",
        lambda e: e["type"] == "write" and isinstance(_get(e, "file.path"), str) and e["file"]["path"].startswith("/etc/"),
        _is("connect"),
    ], ["proc.session"], 0, 20 * NS),
    ("overlap", "sequence", [
        lambda e: _get(e, "user.uid") == 0 and e["type"] == "exec",
        lambda e: _get(e, "user.uid") == 0 and e["type"] in ("exec", "write"),
        lambda e: _get(e, "user.uid") == 0 and e["type"] == "write",
    ], ["proc.session"], 0, 30 * NS),
    ("twice", "sequence", [_is("connect"), _is("connect")], ["proc.session"], 0, 5 * NS),
    ("opens", "match", [_is("open")], [], 0, 0),
]


def ns_of(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) * NS + int(stamp[20:29])


def stamp_of(ns: int) -> str:
    return format_ts(ns // NS, ns % NS)


# --- the reference ---------------------------------------------------------------------------


def ref_order(events: Iterable[dict[str, Any]], window: float) -> tuple[list[dict[str, Any]], int]:
    """The events in processing order and how many were late. Every event of the window is
    held; the release limit is the window before the first event of the newest second (so an
    event is held up to a second longer than the window: `ordered` moves its limit once per
    second of event time)."""
    held: list[tuple[int, int, dict[str, Any]]] = []
    out: list[dict[str, Any]] = []
    late = 0
    released: int | None = None
    newest = -1
    second = -1
    limit = -1
    for i, e in enumerate(events):
        t = ns_of(e["ts"])
        if released is not None and t < released:
            late += 1
            out.append(e)
            continue
        held.append((t, i, e))
        if t >= newest:
            newest = t
            if t // NS > second:
                second = t // NS
                limit = _limit(e["ts"], window)
        held.sort(key=lambda x: x[:2])
        while held and held[0][0] < limit:
            released = held[0][0] if released is None else max(released, held[0][0])
            out.append(held.pop(0)[2])
    out.extend(e for _, _, e in sorted(held, key=lambda x: x[:2]))
    return out, late


def _limit(stamp: str, window: float) -> int:
    """The release limit `ordered` lets events out below: exactly `window` before `stamp`."""
    return ns_of(stamp) - round(window * NS)


def _key(e: dict[str, Any], by: list[str]) -> tuple[Any, ...]:
    return tuple(json.dumps(_get(e, p), sort_keys=True) for p in by)  # hashable whatever the value


class RefRule:
    def __init__(self, spec: tuple[Any, ...]) -> None:
        self.id, self.kind, self.conds, self.by, self.count, self.within = spec
        self.keys: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()  # LRU first
        self.stats = {"expired": 0, "evicted_max_keys": 0, "evicted_memory": 0, "suppressed_in_burst": 0, "keys": 0}


class RefEngine:
    def __init__(self, limits: CorrelationLimits | None = None, specs: list[tuple[Any, ...]] | None = None) -> None:
        self.limits = limits or CorrelationLimits()
        self.rules = [RefRule(s) for s in (REF_RULES if specs is None else specs)]
        self.used = 0

    # memory: key_cost per key, event_cost per event retained
    def _retained(self, rule: RefRule, st: dict[str, Any]) -> int:
        if rule.kind == "threshold":
            return len(st["events"])
        return sum(len(p[1]) for p in st["partials"].values())

    def _drop(self, rule: RefRule, key: tuple[Any, ...], counter: str) -> None:
        st = rule.keys.pop(key)
        self.used -= self.limits.key_cost + self.limits.event_cost * self._retained(rule, st)
        rule.stats[counter] += 1

    def _expire(self, rule: RefRule, t: int) -> None:
        for key in [k for k, st in rule.keys.items() if t - st["last"] > rule.within]:
            self._drop(rule, key, "expired")

    def _new_key(self, rule: RefRule, key: tuple[Any, ...], st: dict[str, Any]) -> None:
        while rule.keys and len(rule.keys) >= self.limits.max_keys:
            self._drop(rule, next(iter(rule.keys)), "evicted_max_keys")
        while rule.keys and self.used + self.limits.key_cost > self.limits.memory_bytes:
            self._drop(rule, next(iter(rule.keys)), "evicted_memory")
        rule.keys[key] = st
        self.used += self.limits.key_cost

    def _fit(self, rule: RefRule, key: tuple[Any, ...]) -> None:
        while self.used > self.limits.memory_bytes and len(rule.keys) > 1:
            self._drop(rule, next(k for k in rule.keys if k != key), "evicted_memory")

    def process(self, e: dict[str, Any]) -> list[tuple[Any, ...]]:
        t = ns_of(e["ts"])
        alerts = []
        for rule in self.rules:
            hits = [i for i, c in enumerate(rule.conds) if c(e)]
            if not hits:
                continue
            if rule.kind == "match":
                alerts.append((rule.id, e["n"], "match", "{}", 1, (e["ts"], e["ts"]), (e["n"],)))
                continue
            fired = (self._threshold if rule.kind == "threshold" else self._sequence)(rule, e, t, hits)
            if fired is not None:
                key = json.dumps({p: _get(e, p) for p in rule.by}, sort_keys=True)
                alerts.append((rule.id, e["n"], rule.kind, key, len(fired), (fired[0]["ts"], fired[-1]["ts"]),
                               tuple(x["n"] for x in fired)))
        return alerts

    def _threshold(self, rule: RefRule, e: dict[str, Any], t: int, hits: list[int]) -> list[dict[str, Any]] | None:
        self._expire(rule, t)
        key = _key(e, rule.by)
        st = rule.keys.get(key)
        if st is None:
            st = {"events": [], "quiet": False, "last": t}
            self._new_key(rule, key, st)
        else:
            rule.keys.move_to_end(key)
        if st["quiet"]:
            if t - st["last"] > rule.within:
                st["quiet"] = False
            else:
                st["last"] = max(st["last"], t)
                rule.stats["suppressed_in_burst"] += 1
                return None
        st["last"] = max(st["last"], t)
        evs = st["events"]
        times = [ns_of(x["ts"]) for x in evs]
        evs.insert(bisect.bisect_right(times, t), e)  # time order; equal times keep arrival order
        self.used += self.limits.event_cost
        while evs and ns_of(evs[0]["ts"]) < st["last"] - rule.within:
            evs.pop(0)
            self.used -= self.limits.event_cost
        self._fit(rule, key)
        while self.used > self.limits.memory_bytes and len(evs) > 1:
            evs.pop(0)
            self.used -= self.limits.event_cost
            rule.stats["evicted_memory"] += 1
        if len(evs) < rule.count:
            return None
        fired = list(evs)
        self.used -= self.limits.event_cost * len(evs)
        evs.clear()
        st["quiet"] = True
        return fired

    def _sequence(self, rule: RefRule, e: dict[str, Any], t: int, hits: list[int]) -> list[dict[str, Any]] | None:
        self._expire(rule, t)
        if any(_get(e, p) is None for p in rule.by):
            return None
        key = _key(e, rule.by)
        n = len(rule.conds)
        st = rule.keys.get(key)
        if st is None:
            if 0 not in hits:
                return None
            st = {"partials": {}, "last": t}  # steps done -> (start, events, time of the last)
            self._new_key(rule, key, st)
        else:
            rule.keys.move_to_end(key)
        st["last"] = max(st["last"], t)
        partials = st["partials"]
        # Every partial match the event can take one step further (judged before the event).
        moved = []
        for done, (start, evs, last) in list(partials.items()):
            if done not in hits or t < last:
                continue
            del partials[done]
            self.used -= self.limits.event_cost * len(evs)
            if t - start > rule.within:
                rule.stats["expired"] += 1  # too old to go on: dropped, counted
            else:
                moved.append((done + 1, (start, evs + [e], t)))
        if 0 in hits:
            moved.append((1, (t, [e], t)))
        fired = None
        for done, p in moved:
            if done == n:
                if fired is None or p[0] >= ns_of(fired[0]["ts"]):
                    fired = p[1]
                continue
            old = partials.get(done)
            if old is not None:
                if old[0] > p[0]:
                    continue  # the one that started later stays
                self.used -= self.limits.event_cost * len(old[1])
            partials[done] = p
            self.used += self.limits.event_cost * len(p[1])
        self._fit(rule, key)
        return fired


def ref_run(events: list[dict[str, Any]], window: float, limits: CorrelationLimits | None = None,
            specs: list[tuple[Any, ...]] | None = None) -> tuple[list[tuple[Any, ...]], dict[str, Any], int]:
    order, late = ref_order(events, window)
    ref = RefEngine(limits, specs)
    alerts = [a for e in order for a in ref.process(e)]
    for r in ref.rules:
        r.stats["keys"] = len(r.keys)
    return alerts, {r.id: r.stats for r in ref.rules if r.kind != "match"}, late


# --- what secpolicy raises --------------------------------------------------------------------


def _norm(a: dict[str, Any]) -> tuple[Any, ...]:
    c = a["context"]
    return (a["rule_id"], a["event"]["n"], c["kind"], json.dumps(c["key"], sort_keys=True), c["count"],
            tuple(c["window"]), tuple(x["n"] for x in a["events"]))


def _lines(data: bytes | str) -> list[tuple[Any, ...]]:
    return [_norm(json.loads(line)) for line in (data.splitlines() if data else [])]


def _corr_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v["correlation"] for k, v in stats["rules"].items() if "correlation" in v}


def engine_run(rules: Any, events: list[dict[str, Any]], window: float, limits: CorrelationLimits | None = None
               ) -> tuple[list[tuple[Any, ...]], dict[str, Any], int]:
    engine = EventEngine(rules, limits=limits)
    stats = OrderStats()
    alerts = [_norm(a) for e in ordered(iter(events), window, stats) for a in engine.process(e)]
    return alerts, _corr_stats(engine.stats()), stats.late


def replay_run(rules: Any, paths: list[Path], window: float, limits: CorrelationLimits | None = None
               ) -> tuple[list[tuple[Any, ...]], dict[str, Any], int]:
    out = io.BytesIO()
    result = replay([JsonlSource(p) for p in paths], EventEngine(rules, limits=limits), out, window=window)
    return _lines(out.getvalue()), _corr_stats(result.engine), result.late_events


def write_jsonl(path: Path, events: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for e in events:
            write_jsonl_event(fh, e)
    return path


# --- random streams ---------------------------------------------------------------------------


def gen_events(rng: random.Random, n: int, late: bool = True) -> list[dict[str, Any]]:
    """Events in arrival order: small key spaces, equal timestamps, steps of exactly a window,
    nanosecond jitter, stragglers within the reorder window and (with `late`) beyond it."""
    out = []
    t = 5 * NS
    for i in range(n):
        t += rng.choice([0, 0, 0, NS // 1000, NS // 4, NS, 5 * NS // 2, 3 * NS, 8 * NS])
        at = t
        r = rng.random()
        if r < 0.15:
            at -= rng.randrange(0, 4 * NS)  # a straggler the window sorts in
        elif late and r < 0.19:
            at -= rng.randrange(6 * NS, 25 * NS)  # later than the window
        if rng.random() < 0.2:
            at += rng.randrange(-999, 1000)  # nanoseconds
        else:
            at -= at % (NS // 1000)  # milliseconds, as audit logs stamp them
        at = max(at, 0)
        kind = rng.choice(["auth", "auth", "auth", "exec", "write", "connect", "open"])
        e: dict[str, Any] = {"type": kind, "ts": stamp_of(BASE * NS + at), "n": i}
        session = rng.choice([1, 2, 3, None])
        e["proc"] = {"exe": rng.choice(["/usr/bin/sudo", "/usr/bin/sudo", "/bin/cat"])}
        if session is not None:
            e["proc"]["session"] = session
        uid = rng.choice([0, 0, 1000, None])
        if uid is not None:
            e["user"] = {"uid": uid}
        if kind == "auth":
            e["auth"] = {"result": rng.choice(["failure", "failure", "success"]),
                         "user": rng.choice(["root", "bob"])}
            host = rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3", None])
            if host is not None:
                e["auth"]["rhost"] = host
        if kind == "write":
            e["file"] = {"path": rng.choice(["/etc/hosts", "/etc/shadow", "/tmp/x"])}
        out.append(e)
    return out


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_rules(tmp_path_factory.mktemp("rules"), RULES_YAML).event_rules


def _check_coverage(seen: dict[str, int]) -> None:
    for rule_id in ("brute", "pair", "chain", "overlap", "twice"):
        assert seen.get(rule_id, 0) > 0, seen


def test_differential_engine_and_replay_equal_the_reference(rules: Any, tmp_path: Path) -> None:
    rng = random.Random(20240501)
    seen: dict[str, int] = {}
    for trial in range(6):
        late = trial % 2 == 1
        events = gen_events(rng, 700, late=late)
        window = rng.choice([2.0, 5.0])
        want, want_stats, want_late = ref_run(events, window)
        for rid, *_ in want:
            seen[rid] = seen.get(rid, 0) + 1
        seen["late"] = seen.get("late", 0) + want_late
        got, got_stats, got_late = engine_run(rules, events, window)
        assert got_late == want_late, trial
        assert got == want, trial
        got_r, got_r_stats, got_r_late = replay_run(rules, [write_jsonl(tmp_path / f"{trial}.jsonl", events)], window)
        assert got_r == want, trial
        assert got_r_late == want_late, trial
        if not want_late:  # when state is swept depends on arrival order once events arrive late
            assert got_stats == want_stats, trial
            assert got_r_stats == want_stats, trial
    _check_coverage(seen)
    assert seen["brute"] > 20 and seen["chain"] > 5 and seen["late"] > 20, seen


def test_differential_under_memory_and_key_limits(rules: Any, tmp_path: Path) -> None:
    rng = random.Random(77)
    for trial, limits in enumerate([
        CorrelationLimits(max_keys=2),
        CorrelationLimits(memory_bytes=6 * 1024 + 8 * 256, key_cost=256, event_cost=1024),
        CorrelationLimits(max_keys=3, memory_bytes=3 * 1024 + 3 * 256, key_cost=256, event_cost=1024),
        CorrelationLimits(memory_bytes=2 * 1024 + 2 * 256, key_cost=256, event_cost=1024),
    ]):
        events = gen_events(rng, 600, late=False)
        want, want_stats, _ = ref_run(events, 5.0, limits)
        got, got_stats, _ = engine_run(rules, events, 5.0, limits)
        assert got == want, trial
        assert got_stats == want_stats, trial
        assert sum(s["evicted_max_keys"] + s["evicted_memory"] for s in want_stats.values()) > 0, trial


def test_split_over_two_files_equals_the_reference_of_their_merge(rules: Any, tmp_path: Path) -> None:
    rng = random.Random(4242)
    for trial in range(3):
        events = gen_events(rng, 600, late=False)
        a, b = [], []
        for e in events:
            (a if rng.random() < 0.5 else b).append(e)
        # Two files merge in timestamp order, ties in the order the files are given.
        merged = sorted(a, key=lambda e: e["ts"]) + sorted(b, key=lambda e: e["ts"])
        merged.sort(key=lambda e: e["ts"])
        want, want_stats, _ = ref_run(merged, 86400.0)
        paths = [write_jsonl(tmp_path / f"a{trial}.jsonl", a), write_jsonl(tmp_path / f"b{trial}.jsonl", b)]
        got, got_stats, late = replay_run(rules, paths, 5.0)
        assert late == 0
        assert got == want, trial
        assert got_stats == want_stats, trial
        # One file of the events as they arrived: the same alerts unless the order of equal
        # timestamps (kept per file, file by file across files) decides, as the reference says.
        one, _, _ = replay_run(rules, [write_jsonl(tmp_path / f"one{trial}.jsonl", events)], 86400.0)
        assert (one == got) == (ref_run(events, 86400.0)[0] == want), trial


# --- audit logs -----------------------------------------------------------------------------

_AUTH = ("type=USER_AUTH msg=audit({sec}.{ms:03d}:{serial}): pid=100 uid=0 auid={auid} ses={ses} "
         "msg='op=PAM:authentication grantors=? acct=\"{user}\" exe=\"/usr/sbin/sshd\" hostname={host} "
         "addr={host} terminal=ssh res={res}'")
_CMD = ("type=USER_CMD msg=audit({sec}.{ms:03d}:{serial}): pid=200 uid=1000 auid=1000 ses={ses} "
        "msg='cwd=\"/home/a\" cmd=6964 exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'")

AUDIT_RULES_YAML = """
- id: brute
  title: Brute force
  severity: high
  when: type == "auth" and auth.result == "failure"
  threshold: {count: 3, within: 10s, by: [auth.rhost]}
- id: sudo-then-fail
  title: sudo, then a failed authentication in the session
  severity: medium
  sequence:
    by: proc.session
    within: 6s
    steps:
      - type == "exec" and proc.exe == "/usr/bin/sudo"
      - type == "auth" and auth.result == "failure"
"""


def test_audit_log_and_its_jsonl_raise_the_same_alerts(tmp_path: Path) -> None:
    rng = random.Random(9)
    lines = []
    t = 0
    for serial in range(1, 1500):
        t += rng.choice([0, 0, 1_000_000, 250_000_000, NS, 3 * NS])
        at = max(0, t - (rng.randrange(0, 3 * NS) if rng.random() < 0.1 else 0))
        at -= at % 1_000_000
        sec, ms = BASE + at // NS, (at % NS) // 1_000_000
        ses = rng.choice([1, 2, 3])
        if rng.random() < 0.2:
            lines.append(_CMD.format(sec=sec, ms=ms, serial=serial, ses=ses))
        else:
            lines.append(_AUTH.format(sec=sec, ms=ms, serial=serial, ses=ses, auid=1000,
                                      user=rng.choice(["root", "bob"]), host=rng.choice(["10.0.0.1", "10.0.0.2", "?"]),
                                      res=rng.choice(["failed", "failed", "success"])))
    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    audit_rules = load_rules(tmp_path, AUDIT_RULES_YAML).event_rules
    events = list(AuditdSource([log]).events())
    assert len(events) == len(lines)
    numbered = []
    for i, e in enumerate(events):
        e = dict(e)
        e["n"] = i
        numbered.append(e)
    jsonl = write_jsonl(tmp_path / "audit.jsonl", numbered)
    by_record = {e["source"]["records"][0]: e["n"] for e in numbered}

    out = io.BytesIO()
    replay([AuditdSource([log])], EventEngine(audit_rules), out, window=5.0)
    from_audit = [json.loads(x) for x in out.getvalue().splitlines()]
    for a in from_audit:
        a["event"]["n"] = by_record[a["event"]["source"]["records"][0]]
        for x in a["events"]:
            x["n"] = by_record[x["source"]["records"][0]]
    got_audit = [_norm(a) for a in from_audit]
    got_jsonl, _, _ = replay_run(audit_rules, [jsonl], 5.0)
    assert got_audit == got_jsonl
    specs = [
        ("brute", "threshold", [lambda e: e["type"] == "auth" and e["auth"]["result"] == "failure"],
         ["auth.rhost"], 3, 10 * NS),
        ("sudo-then-fail", "sequence", [
            lambda e: e["type"] == "exec" and _get(e, "proc.exe") == "/usr/bin/sudo",
            lambda e: e["type"] == "auth" and e["auth"]["result"] == "failure",
        ], ["proc.session"], 0, 6 * NS),
    ]
    want, _, _ = ref_run(numbered, 5.0, specs=specs)
    assert got_audit == want
    assert {a[0] for a in got_audit} == {"brute", "sudo-then-fail"}


# --- the CLI ----------------------------------------------------------------------------------


def test_secpolicy_replay_cli_equals_the_reference(rules: Any, tmp_path: Path) -> None:
    rng = random.Random(5)
    events = gen_events(rng, 1500, late=True)
    want, _, want_late = ref_run(events, 5.0)
    policy = tmp_path / "p.yaml"  # load_rules wrote it
    load_rules(tmp_path, RULES_YAML)
    src = write_jsonl(tmp_path / "e.jsonl", events)
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "secpolicy", "replay", str(src), "--policy", str(policy), "--window", "5",
         "--output", str(out), "--summary"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _lines(out.read_text(encoding="utf-8")) == want
    assert want_late > 0


def test_reference_helpers_agree_with_the_format() -> None:
    assert ns_of(ts(1.5)) == (BASE + 1) * NS + NS // 2
    assert stamp_of(ns_of(ts(3.25))) == ts(3.25)
    order, late = ref_order([ev("open", ts(s), n=i) for i, s in enumerate([0, 10, 20, 1, 21, 4, 30])], 5.0)
    assert [e["n"] for e in order] == [0, 1, 3, 5, 2, 4, 6] and late == 2


# --- the defects the differential test found, one test each -----------------------------------


FOCUS_YAML = """
- id: brute
  title: Brute force
  severity: high
  when: type == "auth" and auth.result == "failure"
  threshold: {count: 2, within: 3s, by: [auth.rhost]}
- id: chain
  title: Chain
  severity: critical
  sequence:
    by: proc.session
    within: 1m
    steps:
      - type == "exec"
      - type == "write"
"""


def _auth(t: str, host: Any = "10.0.0.1") -> dict[str, Any]:
    return {"type": "auth", "ts": t, "auth": {"result": "failure", "rhost": host}}


def test_a_by_value_that_does_not_hash_is_a_key_not_a_crash(tmp_path: Path) -> None:
    engine = EventEngine(load_rules(tmp_path, FOCUS_YAML).event_rules)
    odd = {"a": [1, {"b": 2}]}
    assert engine.process(_auth(ts(0), odd)) == []
    assert engine.process(_auth(ts(1), [[1], {"x": 1}])) == []
    (alert,) = engine.process(_auth(ts(2), {"a": [1, {"b": 2}]}))
    assert alert["context"]["key"] == {"auth.rhost": odd}
    assert [e["ts"] for e in alert["events"]] == [ts(0), ts(2)]
    session = [{"id": 1}]
    assert engine.process(ev("exec", ts(3), proc={"session": session})) == []
    (chain,) = engine.process(ev("write", ts(4), proc={"session": [{"id": 1}]}))
    assert chain["context"]["key"] == {"proc.session": session}


def test_a_late_event_does_not_join_a_threshold_window_it_is_outside_of() -> None:
    c = ThresholdCorrelator(2, 10, ["auth.rhost"])
    assert c.feed(_auth(ts(100)), 100) is None
    assert c.feed(_auth(ts(50)), 50) is None  # late, 50 s before: not within 10 s
    # A late event within the window counts, and the alert lists the events in time order.
    r = c.feed(_auth(ts(95)), 95)
    assert r is not None and [e["ts"] for e in r.events] == [ts(95), ts(100)]
    assert r.window == (ts(95), ts(100))


def test_a_late_event_does_not_shorten_the_quiet_period() -> None:
    c = ThresholdCorrelator(2, 10, ["auth.rhost"])
    assert c.feed(_auth(ts(100)), 100) is None
    assert c.feed(_auth(ts(101)), 101) is not None
    assert c.feed(_auth(ts(105)), 105) is None  # the same burst: quiet
    assert c.feed(_auth(ts(20)), 20) is None  # late
    assert c.feed(_auth(ts(112)), 112) is None  # 7 s after 105: still the same burst
    assert c.feed(_auth(ts(113)), 113) is None
    assert c.stats.suppressed == 4


def test_a_late_sequence_step_never_precedes_the_step_before_it() -> None:
    c = SequenceCorrelator(2, 60, ["proc.session"])
    e = {"type": "exec", "ts": ts(100), "proc": {"session": 1}}
    w = {"type": "write", "ts": ts(90), "proc": {"session": 1}}
    assert c.feed(e, 100, [0]) is None
    assert c.feed(w, 90, [1]) is None  # the write came 10 s before the exec
    r = c.feed({"type": "write", "ts": ts(101), "proc": {"session": 1}}, 101, [1])
    assert r is not None and r.window == (ts(100), ts(101))


def test_a_late_first_step_does_not_replace_a_newer_one() -> None:
    c = SequenceCorrelator(2, 10, ["proc.session"])
    assert c.feed({"type": "exec", "ts": ts(100), "proc": {"session": 1}}, 100, [0]) is None
    assert c.feed({"type": "exec", "ts": ts(85), "proc": {"session": 1}}, 85, [0]) is None  # late
    r = c.feed({"type": "write", "ts": ts(105), "proc": {"session": 1}}, 105, [1])
    assert r is not None and r.window == (ts(100), ts(105))


def test_windows_are_exact_to_the_nanosecond(tmp_path: Path) -> None:
    # 3 s and 142 ns apart: outside a 3 s window (in float seconds the difference is 3.0).
    engine = EventEngine(load_rules(tmp_path, FOCUS_YAML).event_rules)
    assert engine.process(_auth("2024-01-01T00:10:48.045000000Z")) == []
    assert engine.process(_auth("2024-01-01T00:10:51.045000142Z")) == []
    # Exactly 3 s apart: within.
    engine = EventEngine(load_rules(tmp_path, FOCUS_YAML).event_rules)
    assert engine.process(_auth("2024-01-01T00:10:48.045000142Z")) == []
    assert len(engine.process(_auth("2024-01-01T00:10:51.045000142Z"))) == 1


def test_memory_pressure_evicts_idle_keys_before_trimming_a_burst() -> None:
    limits = CorrelationLimits(memory_bytes=4 * 256 + 4 * 1024, key_cost=256, event_cost=1024)
    c = ThresholdCorrelator(3, 60, ["auth.rhost"], limits)
    for i in range(3):  # three idle keys of one event each
        c.feed(_auth(ts(i), f"10.0.1.{i}"), i)
    assert c.feed(_auth(ts(10)), 10) is None
    assert c.feed(_auth(ts(11)), 11) is None
    r = c.feed(_auth(ts(12)), 12)  # the burst of 3 from 10.0.0.1 is not cut short
    assert r is not None and r.count == 3
    assert c.stats.evicted_memory == 2 and [k[0] for k in c.state] == ["10.0.1.2", "10.0.0.1"]


def test_engine_stats_count_the_keys_held_now(tmp_path: Path) -> None:
    engine = EventEngine(load_rules(tmp_path, FOCUS_YAML).event_rules)
    engine.process(ev("exec", ts(0), proc={"session": 1}))
    assert engine.stats()["rules"]["chain"]["correlation"]["keys"] == 1
    engine.process(ev("write", ts(500), proc={"session": 2}))  # sweeps session 1, starts nothing
    assert engine.stats()["rules"]["chain"]["correlation"]["keys"] == 0
