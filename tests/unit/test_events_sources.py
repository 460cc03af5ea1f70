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


def _reference_ordered(events, window, stats):
    """The one-event-at-a-time implementation `ordered` had before it let events out in
    batches: the reference its output must equal exactly."""
    import heapq
    from collections import deque

    from secpolicy.events.model import format_ts, ts_seconds

    run: deque = deque()
    heap: list = []
    seq = 0
    newest = second_end = limit = released = ""
    for ev in events:
        t = ev["ts"]
        if t < released:
            stats.late += 1
            yield ev
            continue
        seq += 1
        if t >= newest:
            run.append((t, seq, ev))
            newest = t
            if t <= second_end:
                continue
            second_end = t[:19] + ".999999999Z"
            cut = ts_seconds(t) - window
            whole = int(cut)
            limit = format_ts(whole, round((cut - whole) * 1e9) % 1_000_000_000)
        else:
            heapq.heappush(heap, (t, seq, ev))
            if t >= limit:
                continue
        while heap or run:
            from_heap = bool(heap) and (not run or heap[0][:2] < run[0][:2])
            head = heap[0] if from_heap else run[0]
            if head[0] >= limit:
                break
            released, _, out = heapq.heappop(heap) if from_heap else run.popleft()
            yield out
    for released, _, out in sorted(list(run) + heap, key=lambda x: x[:2]):
        yield out


def test_batched_ordering_is_exactly_the_one_at_a_time_ordering() -> None:
    from secpolicy.events.sources import ordered_batches

    rng = random.Random(11)
    for trial in range(300):
        n = rng.choice([0, 1, 5, 50, 400])
        window = rng.choice([0.0, 0.5, 2.0, 5.0, -1.0])
        events, t = [], 0.0
        for i in range(n):
            t += rng.choice([0.0, 0.0, 0.0, 0.001, 0.3, 1.0, 2.5])
            late = rng.random() < 0.2
            at = max(0.0, t - (rng.random() * rng.choice([1.0, 3.0, 12.0]) if late else 0.0))
            events.append({"type": "open", "ts": ts(round(at, rng.choice([0, 1, 3]))), "n": i})
        want_stats, got_stats = OrderStats(), OrderStats()
        want = [e["n"] for e in _reference_ordered(iter(events), window, want_stats)]
        batches = list(ordered_batches(iter(events), window, got_stats))
        assert all(batches), trial  # no empty batch is handed out
        assert [e["n"] for b in batches for e in b] == want, trial
        assert got_stats.late == want_stats.late, trial
        assert [e["n"] for e in ordered(iter(events), window, OrderStats())] == want, trial
        # Events `prepare` hands nothing out for are not kept, yet move the window as before.
        keep = rng.choice([2, 3, 10])
        blank_stats = OrderStats()
        kept = ordered_batches(iter(events), window, blank_stats, lambda e, keep=keep: e if e["n"] % keep == 0 else None)
        assert [e["n"] for b in kept for e in b] == [n for n in want if n % keep == 0], trial
        assert blank_stats.late == want_stats.late, trial
