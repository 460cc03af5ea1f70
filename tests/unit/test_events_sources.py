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

    from secpolicy.events.model import format_ts, ts_nanos

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
            cut = ts_nanos(t) - round(window * 1e9)
            limit = format_ts(cut // 1_000_000_000, cut % 1_000_000_000)
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


def _reference_jsonl(path):
    """Events and bad lines as JsonlSource read them before its lines of the usual shape took
    a shortcut: every check on every line, in order (the reference the reader must equal)."""
    import json as json_mod

    import orjson

    from secpolicy.events.model import EVENT_TYPES, TS_RE, ts_exists
    from secpolicy.events.sources import _out_of_range

    events, bad = [], []
    for lineno, line in enumerate(path.read_bytes().splitlines(keepends=True), 1):
        try:
            ev = orjson.loads(line)
        except ValueError as exc:
            if line.strip():
                bad.append(f"{path}:{lineno}: " + (f"not JSON ({exc.msg})" if isinstance(exc, json_mod.JSONDecodeError) else "not UTF-8 JSON"))
            continue
        if type(ev) is not dict:
            why = "not a JSON object"
        elif type(ev.get("type")) is not str or ev["type"] not in EVENT_TYPES:
            why = f"unknown event type {str(ev.get('type'))[:40]!r}"
        elif type(ev.get("ts")) is not str or not TS_RE.match(ev["ts"]):
            why = f"ts {str(ev.get('ts'))[:40]!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"
        elif not ts_exists(ev["ts"]):
            why = f"ts {ev['ts']!r} names no such date and time"
        else:
            why = _out_of_range(ev)
        if why is None:
            events.append(ev)
        else:
            bad.append(f"{path}:{lineno}: {why}")
    return events, bad


def test_the_jsonl_reader_takes_and_refuses_exactly_what_every_check_on_every_line_does(tmp_path) -> None:
    import json as json_mod

    from secpolicy.events.sources import JsonlSource

    big = 2**63
    good_ids = [0, 1, -1, 1000, big - 1, -(big - 1), None]
    bad_ids = [big, -big, 2**64 - 1, True, 1.5, "7", [1]]
    good_stamps = ["2024-01-01T00:00:0{}.000000000Z", "2024-01-01T00:00:0{}.000000001Z",
                   "2024-01-01T00:00:60.00000000{}Z"]
    bad_stamps = ["2024-01-01T00:00:0{}.5Z", "2024-02-30T00:00:0{}.000000000Z", "2024-01-01T00:00:6{}.000000000Z",
                  "2024-01-01T00:00:0{}.000000000z", "2024-01-01T00:00:0{}.000000000Z ", "2024-01-01T00:00:0{}.00000000xZ",
                  "2024-01-01T00:00:0{}.000000000Z\n", "2024-01-01T00:00:0{}.00000000٣Z", "2024-01-01T00:00:0{}.١٠٠٠٠٠٠٠٠Z",
                  "٢٠٢٤-01-01T00:00:0{}.000000000Z"]

    def pick(good: list, bad: list) -> object:
        return rng.choice(bad) if rng.random() < 0.08 else rng.choice(good)

    rng = random.Random(7)
    fast = 0
    for trial in range(40):
        lines = []
        for _ in range(rng.choice([1, 20, 200])):
            ev: dict = {"type": pick(["exec", "open"], ["nosuch", 5]), "ts": pick(good_stamps, bad_stamps).format(rng.choice([0, 0, 1, 9]))}
            if rng.random() < 0.8:
                proc = {k: pick(good_ids, bad_ids) for k in rng.sample(["pid", "uid", "euid", "ppid"], rng.randint(0, 4))}
                ev["proc"] = proc if rng.random() < 0.95 else rng.choice([5, "x", [proc]])
            if rng.random() < 0.7:
                ev["user"] = {"uid": pick(good_ids, bad_ids)} if rng.random() < 0.95 else "root"
            if rng.random() < 0.03:
                del ev[rng.choice(["type", "ts"])]
            elif rng.random() < 0.03:
                ev[rng.choice(["type", "ts"])] = rng.choice([None, ["exec"], {"a": 1}, 5, list("2024-01-01T00:00:00")])
            line = json_mod.dumps(ev)
            lines.append(line if rng.random() < 0.9 else rng.choice([line[:-3], "[1]", "", "  ", "\xff", '"x"', "5"]))
        path = tmp_path / f"t{trial}.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + rng.choice([b"\n", b""]))
        src = JsonlSource(path)
        got = list(src.events())
        want, bad = _reference_jsonl(path)
        assert got == want, trial
        assert src.garbled.count == len(bad), trial
        assert src.garbled.where == bad[: src.garbled.limit], trial
        fast += len(want)
    assert fast > 1200  # mostly lines of the usual shape, with every kind of bad one among them


def test_the_reorder_window_is_exact_to_the_nanosecond():
    # Computed in float seconds, the limit 5 s before 14:26:30.873013139 came out 119 ns late
    # (14:26:25.873013258), so an event inside the window was let out early and one just
    # before it, arriving after, was counted late.
    newest = {"type": "exec", "ts": "2026-09-21T14:26:30.873013139Z", "n": "newest"}
    inside = {"type": "exec", "ts": "2026-09-21T14:26:25.873013200Z", "n": "inside"}
    first_in_window = {"type": "exec", "ts": "2026-09-21T14:26:25.873013139Z", "n": "first"}
    stats = OrderStats()
    out = [e["n"] for e in ordered(iter([inside, newest, first_in_window]), 5.0, stats)]
    assert (out, stats.late) == (["first", "inside", "newest"], 0)
