"""Time ordering of event streams: within the reorder window the output is exactly the stable
sort of the input; beyond it an event is passed on at once and counted as late."""

from __future__ import annotations

import random

from events_helpers import ts

from secpolicy.events.sources import MemorySource, OrderStats, merge_sources, ordered


def _stream(rng: random.Random, n: int, jitter: float) -> list[dict]:
    """Events whose timestamps advance but arrive up to `jitter` seconds out of order."""
    out = []
    t = 0.0
    for i in range(n):
        t += rng.choice([0.0, 0.0, 0.001, 0.2, 0.7, 1.3])
        out.append({"type": "open", "ts": ts(max(0.0, t - rng.random() * jitter)), "n": i})
    return out


def test_within_the_window_the_output_is_the_stable_sort_of_the_input() -> None:
    rng = random.Random(5)
    for trial in range(40):
        events = _stream(rng, 300, jitter=rng.choice([0.0, 1.0, 4.9]))
        stats = OrderStats()
        got = [e["n"] for e in ordered(iter(events), 5.0, stats)]
        want = [e["n"] for e in sorted(events, key=lambda e: e["ts"])]  # sorted() is stable
        assert got == want, trial
        assert stats.late == 0


def test_an_event_later_than_the_window_goes_out_at_once_and_is_counted() -> None:
    events = [{"type": "open", "ts": ts(s), "n": i} for i, s in enumerate([0, 10, 20, 1, 21, 4, 30])]
    stats = OrderStats()
    got = [e["n"] for e in ordered(iter(events), 5.0, stats)]
    # 10 s went out when 20 s arrived; 1 s and 4 s come after it: later than the window.
    assert stats.late == 2
    assert got == [0, 1, 3, 5, 2, 4, 6]


def test_sources_merge_into_one_time_order() -> None:
    a = MemorySource([{"type": "open", "ts": ts(s), "src": "a"} for s in (0, 2, 4)])
    b = MemorySource([{"type": "open", "ts": ts(s), "src": "b"} for s in (1, 3, 5)])
    assert [e["src"] for e in merge_sources([a, b])] == ["a", "b", "a", "b", "a", "b"]
