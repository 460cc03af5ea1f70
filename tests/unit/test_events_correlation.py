"""Correlation state with plain callables: bursts, sequences, TTL and bounded state."""

from __future__ import annotations

from events_helpers import ev, ts

from secpolicy.events.correlation import (
    CorrelationLimits,
    MemoryBudget,
    SequenceCorrelator,
    ThresholdCorrelator,
)


def auth(t: float, host: str | None = "203.0.113.9") -> dict:
    a = {"result": "failure"}
    if host:
        a["rhost"] = host
    return ev("auth", ts(t), auth=a)


def feed(c: ThresholdCorrelator, times: list[float], host: str | None = "203.0.113.9") -> list:
    out = []
    for t in times:
        r = c.feed(auth(t, host), t)
        if r is not None:
            out.append(r)
    return out


def test_threshold_fires_once_per_burst() -> None:
    c = ThresholdCorrelator(5, 60, ["auth.rhost"])
    # 30 failures, 2 s apart: one continuous burst -> one alert.
    fired = feed(c, [2.0 * i for i in range(30)])
    assert len(fired) == 1
    assert fired[0].count == 5 and fired[0].key == {"auth.rhost": "203.0.113.9"}
    assert fired[0].window == (ts(0), ts(8))
    assert [e["ts"] for e in fired[0].events] == [ts(t) for t in (0, 2, 4, 6, 8)]
    assert c.stats.suppressed == 25
    # After 61 s of quiet, a new burst fires again.
    assert len(feed(c, [200, 201, 202, 203, 204])) == 1


def test_threshold_window_slides() -> None:
    c = ThresholdCorrelator(3, 10, ["auth.rhost"])
    assert feed(c, [0, 8, 16, 24]) == []  # never 3 within 10 s
    assert len(feed(c, [25, 26])) == 1  # 24, 25, 26


def test_threshold_groups_missing_by_values_under_null() -> None:
    c = ThresholdCorrelator(2, 10, ["auth.rhost"])
    (r,) = feed(c, [0, 1], host=None)
    assert r.key == {"auth.rhost": None}


def test_threshold_keys_expire_and_are_evicted_and_counted() -> None:
    c = ThresholdCorrelator(5, 10, ["auth.rhost"], CorrelationLimits(max_keys=3))
    for i in range(5):
        c.feed(auth(i, f"10.0.0.{i}"), i)
    assert c.stats.evicted_max_keys == 2 and len(c.state) == 3
    c.feed(auth(100, "10.9.9.9"), 100)
    assert c.stats.expired == 3 and len(c.state) == 1


def test_memory_cap_evicts_least_recent_keys() -> None:
    limits = CorrelationLimits(memory_bytes=3 * (256 + 1024), key_cost=256, event_cost=1024)
    budget = MemoryBudget(limits.memory_bytes)
    c = ThresholdCorrelator(5, 60, ["auth.rhost"], limits, budget)
    for i in range(6):
        c.feed(auth(i, f"10.0.0.{i}"), i)
    assert c.stats.evicted_memory == 3
    assert budget.used <= budget.limit
    assert [k[0] for k in c.state] == ["10.0.0.3", "10.0.0.4", "10.0.0.5"]


def seq_event(t: float, step: str, session: int | None = 7) -> dict:
    e = ev({"a": "exec", "b": "write", "c": "connect"}[step], ts(t), step=step)
    if session is not None:
        e["proc"] = {"session": session}
    return e


def run_seq(c: SequenceCorrelator, items: list[tuple[float, str, int | None]]) -> list:
    out = []
    for t, steps, session in items:
        e = seq_event(t, steps[0], session)
        matched = [ord(s) - ord("a") for s in steps]
        r = c.feed(e, t, matched)
        if r is not None:
            out.append(r)
    return out


def test_sequence_in_order_fires_once_and_is_consumed() -> None:
    c = SequenceCorrelator(3, 300, ["proc.session"])
    fired = run_seq(c, [(0, "a", 7), (5, "b", 7), (6, "b", 7), (10, "c", 7), (11, "c", 7)])
    assert len(fired) == 1
    assert [e["step"] for e in fired[0].events] == ["a", "b", "c"]
    assert fired[0].key == {"proc.session": 7} and fired[0].count == 3


def test_sequence_needs_order_window_and_one_key() -> None:
    assert run_seq(SequenceCorrelator(3, 300, ["proc.session"]), [(0, "b", 7), (1, "a", 7), (2, "c", 7)]) == []
    assert run_seq(SequenceCorrelator(3, 300, ["proc.session"]), [(0, "a", 7), (1, "b", 8), (2, "c", 7)]) == []
    c = SequenceCorrelator(3, 300, ["proc.session"])
    assert run_seq(c, [(0, "a", 7), (200, "b", 7), (301, "c", 7)]) == []
    assert run_seq(SequenceCorrelator(3, 300, ["proc.session"]), [(0, "a", None), (1, "b", None), (2, "c", None)]) == []


def test_sequence_restarts_from_a_later_first_step() -> None:
    c = SequenceCorrelator(2, 10, ["proc.session"])
    fired = run_seq(c, [(0, "a", 7), (20, "a", 7), (25, "b", 7)])
    assert len(fired) == 1 and fired[0].window == (ts(20), ts(25))


def test_one_event_advances_a_run_at_most_one_step() -> None:
    c = SequenceCorrelator(3, 300, ["proc.session"])
    # An event matching steps a, b and c at once starts a run but cannot complete it alone.
    e = seq_event(0, "a")
    assert c.feed(e, 0, [0, 1, 2]) is None
    assert c.feed(seq_event(1, "b"), 1, [0, 1, 2]) is None
    assert c.feed(seq_event(2, "c"), 2, [2]) is not None
