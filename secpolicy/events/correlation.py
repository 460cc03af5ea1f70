"""Correlation state for event rules: `threshold` (N matching events within a window, per key)
and `sequence` (ordered steps within a window, per key), bounded by TTL, key and memory limits.

Semantics (docs/events.md):
- threshold fires when the count-th matching event for a key arrives within `within` seconds of
  the oldest one kept; it then stays quiet for that key until `within` seconds pass without a
  matching event, so one burst gives exactly one alert. Events lacking a `by` field are counted
  together under the key value null.
- sequence fires when events matching step 1, 2, ... n arrive in that order for one key within
  `within` seconds of the step-1 event; each event advances a partial match at most one step,
  and a completed match is consumed. Events lacking a `by` field are ignored: without the
  actor's identity unrelated events would be chained.
- Event time decides, not arrival order: an event later than the reorder window is fed with
  its own (older) time, so a threshold window holds its events in time order and a late event
  never shortens a quiet period; a sequence step never precedes the step before it, and a late
  first step never replaces a newer one.
- State is bounded: keys idle longer than `within` expire; beyond `max_keys` per rule or the
  memory estimate the least recently updated key is evicted (memory: the rule's other keys
  first, then the oldest events of the key itself). Every expiry and eviction is counted in
  `CorrelationStats`.

`now` and `within` are in one unit: seconds in the tests, integer nanoseconds in the engine
(`ts_nanos`), so a window is exact to the nanosecond the timestamps carry.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

import orjson

from secpolicy.models import Event

__all__ = [
    "Correlation",
    "CorrelationLimits",
    "CorrelationStats",
    "MemoryBudget",
    "SequenceCorrelator",
    "ThresholdCorrelator",
    "key_getter",
]

@dataclass(frozen=True)
class CorrelationLimits:
    """Bounds on correlation state. Memory is an estimate: `key_cost` bytes per key plus
    `event_cost` bytes per retained event reference (events themselves are shared)."""

    max_keys: int = 100_000
    memory_bytes: int = 256 * 1024 * 1024
    max_alert_events: int = 100
    key_cost: int = 256
    event_cost: int = 1024


@dataclass
class CorrelationStats:
    """Per-rule counters of state that was dropped, reported by `EventEngine.stats()`."""

    expired: int = 0
    evicted_max_keys: int = 0
    evicted_memory: int = 0
    suppressed: int = 0
    keys: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "keys": self.keys,
            "expired": self.expired,
            "evicted_max_keys": self.evicted_max_keys,
            "evicted_memory": self.evicted_memory,
            "suppressed_in_burst": self.suppressed,
        }


@dataclass
class MemoryBudget:
    """The shared memory estimate of all correlators of one engine."""

    limit: int
    used: int = 0


@dataclass(frozen=True)
class Correlation:
    """A correlation that completed: what the alert carries."""

    kind: Literal["threshold", "sequence"]
    key: dict[str, Any]
    events: list[Event]
    count: int
    window: tuple[str, str]
    dropped: int = 0


def key_getter(paths: Sequence[str]) -> Callable[[Event], tuple[Any, ...]]:
    """A fast getter of the values at dotted `paths` (lists become tuples so keys hash)."""
    split = [tuple(p.split(".")) for p in paths]

    def get(ev: Event) -> tuple[Any, ...]:
        out = []
        for parts in split:
            cur: Any = ev
            for part in parts:
                if type(cur) is not dict:
                    cur = None
                    break
                cur = cur.get(part)
                if cur is None:
                    break
            if type(cur) is list:
                cur = tuple(cur)
            out.append(cur)
        return tuple(out)

    return get


class _Opaque:
    """A `by` value that does not hash (an object, a list holding one: JSON input may carry any
    value in any field), keyed by its canonical JSON."""

    __slots__ = ("_json", "value")

    def __init__(self, value: Any) -> None:
        self.value = list(value) if type(value) is tuple else value
        self._json = orjson.dumps(self.value, option=orjson.OPT_SORT_KEYS)

    def __eq__(self, other: object) -> bool:
        return type(other) is _Opaque and other._json == self._json

    def __hash__(self) -> int:
        return hash(self._json)


def _hashable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """`key` with every value that does not hash made an `_Opaque`."""
    out = []
    for v in key:
        try:
            hash(v)
        except TypeError:
            v = _Opaque(v)
        out.append(v)
    return tuple(out)


def _key_dict(paths: Sequence[str], key: tuple[Any, ...]) -> dict[str, Any]:
    return {
        p: (list(v) if isinstance(v, tuple) else v.value if type(v) is _Opaque else v) for p, v in zip(paths, key)
    }


_first = itemgetter(0)


class _Keyed:
    """LRU-ordered per-key state with TTL expiry and key/memory eviction."""

    def __init__(self, within: float, limits: CorrelationLimits, budget: MemoryBudget) -> None:
        self.within = within
        self.limits = limits
        self.budget = budget
        self.stats = CorrelationStats()
        self.state: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def _cost(self, st: Any) -> int:
        return self.limits.key_cost + self.limits.event_cost * self._retained(st)

    def _retained(self, st: Any) -> int:  # overridden
        return 0

    def _last(self, st: Any) -> float:  # overridden
        return 0.0

    def sweep(self, now: float) -> None:
        state = self.state
        while state:
            key, st = next(iter(state.items()))
            if now - self._last(st) <= self.within:
                break
            del state[key]
            self.budget.used -= self._cost(st)
            self.stats.expired += 1

    def _evict_for_new_key(self) -> None:
        state = self.state
        while state and len(state) >= self.limits.max_keys:
            _, st = state.popitem(last=False)
            self.budget.used -= self._cost(st)
            self.stats.evicted_max_keys += 1
        while state and self.budget.used + self.limits.key_cost > self.budget.limit:
            _, st = state.popitem(last=False)
            self.budget.used -= self._cost(st)
            self.stats.evicted_memory += 1

    def _fit(self) -> None:
        """Over the memory estimate after the key last updated grew: evict the least recently
        updated other keys (the one updated is last in `state`)."""
        state = self.state
        while len(state) > 1 and self.budget.used > self.budget.limit:
            _, st = state.popitem(last=False)
            self.budget.used -= self._cost(st)
            self.stats.evicted_memory += 1

    def _lookup(self, key: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
        """The key as state holds it and its state (None: new)."""
        try:
            return key, self.state.get(key)
        except TypeError:  # a value that does not hash
            key = _hashable(key)
            return key, self.state.get(key)


class _ThresholdKey:
    __slots__ = ("last", "quiet", "window")

    def __init__(self) -> None:
        self.window: deque[tuple[float, Event]] = deque()
        self.quiet = False
        self.last = 0.0


class ThresholdCorrelator(_Keyed):
    """`threshold: {count, within, by}` for one rule."""

    def __init__(
        self,
        count: int,
        within: float,
        by: Sequence[str],
        limits: CorrelationLimits | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        limits = limits or CorrelationLimits()
        super().__init__(within, limits, budget or MemoryBudget(limits.memory_bytes))
        self.count = max(1, int(count))
        self.by = tuple(by)
        self._get = key_getter(self.by)

    def _retained(self, st: _ThresholdKey) -> int:
        return len(st.window)

    def _last(self, st: _ThresholdKey) -> float:
        return st.last

    def feed(self, event: Event, now: float) -> Correlation | None:
        self.sweep(now)
        key, st = self._lookup(self._get(event))
        state = self.state
        cost = self.limits.event_cost
        if st is None:
            self._evict_for_new_key()
            st = _ThresholdKey()
            state[key] = st
            self.budget.used += self.limits.key_cost
        else:
            state.move_to_end(key)
        if st.quiet:
            if now - st.last > self.within:
                st.quiet = False
            else:
                st.last = max(st.last, now)  # a late event does not shorten the quiet period
                self.stats.suppressed += 1
                self.stats.keys = len(state)
                return None
        win = st.window
        if now >= st.last:
            st.last = now
            win.append((now, event))
        else:  # a late event: in time order (after those of the same time)
            win.insert(bisect_right(win, now, key=_first), (now, event))
        self.budget.used += cost
        newest = st.last
        while win and newest - win[0][0] > self.within:
            win.popleft()
            self.budget.used -= cost
        if self.budget.used > self.budget.limit:
            self._fit()
        while self.budget.used > self.budget.limit and len(win) > 1:
            win.popleft()
            self.budget.used -= cost
            self.stats.evicted_memory += 1
        self.stats.keys = len(state)
        if len(win) < self.count:
            return None
        events = [e for _, e in win]
        self.budget.used -= cost * len(win)
        win.clear()
        st.quiet = True
        limit = self.limits.max_alert_events
        return Correlation(
            kind="threshold",
            key=_key_dict(self.by, key),
            events=events[-limit:],
            count=len(events),
            window=(events[0]["ts"], events[-1]["ts"]),
            dropped=max(0, len(events) - limit),
        )


class _SequenceKey:
    __slots__ = ("last", "runs")

    def __init__(self, n: int) -> None:
        # runs[i]: the partial match that completed steps 0..i, as (start, time of step i,
        # events).
        self.runs: list[tuple[float, float, list[Event]] | None] = [None] * n
        self.last = 0.0


class SequenceCorrelator(_Keyed):
    """`sequence: {by, within, steps}` for one rule."""

    def __init__(
        self,
        steps: int,
        within: float,
        by: Sequence[str],
        limits: CorrelationLimits | None = None,
        budget: MemoryBudget | None = None,
    ) -> None:
        limits = limits or CorrelationLimits()
        super().__init__(within, limits, budget or MemoryBudget(limits.memory_bytes))
        self.steps = int(steps)
        self.by = tuple(by)
        self._get = key_getter(self.by)

    def _retained(self, st: _SequenceKey) -> int:
        return sum(len(r[2]) for r in st.runs if r is not None)

    def _last(self, st: _SequenceKey) -> float:
        return st.last

    def feed(self, event: Event, now: float, matched: Sequence[int]) -> Correlation | None:
        """`matched`: the step indexes (0-based) whose condition this event satisfies."""
        self.sweep(now)
        key = self._get(event)
        if None in key:
            return None
        key, st = self._lookup(key)
        n = self.steps
        state = self.state
        if st is None:
            if 0 not in matched:
                return None
            self._evict_for_new_key()
            st = _SequenceKey(n)
            state[key] = st
            self.budget.used += self.limits.key_cost
        else:
            state.move_to_end(key)
        st.last = max(st.last, now)  # a late event does not move it back
        cost = self.limits.event_cost
        within = self.within
        runs = st.runs
        done: Correlation | None = None
        # Highest step first, so an event never advances a run it has just advanced.
        for j in sorted(set(matched), reverse=True):
            if j == 0:
                if n == 1:
                    done = self._complete(key, [event])
                    continue
                old = runs[0]
                if old is not None:
                    if old[0] > now:
                        continue  # a late first step: the newer one has more time left
                    self.budget.used -= cost * len(old[2])
                runs[0] = (now, now, [event])
                self.budget.used += cost
                continue
            prev = runs[j - 1]
            if prev is None:
                continue
            start, last, evs = prev
            if now < last:
                continue  # a late event: a step never precedes the step before it
            runs[j - 1] = None
            if now - start > within:
                self.budget.used -= cost * len(evs)
                self.stats.expired += 1
                continue
            advanced = (start, now, evs + [event])
            self.budget.used += cost
            if j == n - 1:
                self.budget.used -= cost * len(advanced[2])
                if done is None:
                    done = self._complete(key, advanced[2])
                continue
            cur = runs[j]
            if cur is not None:
                # Keep the run that started later: it has more time left to complete.
                if cur[0] > start:
                    self.budget.used -= cost * len(advanced[2])
                    continue
                self.budget.used -= cost * len(cur[2])
            runs[j] = advanced
        if self.budget.used > self.budget.limit:
            self._fit()
        self.stats.keys = len(state)
        return done

    def _complete(self, key: tuple[Any, ...], events: list[Event]) -> Correlation:
        return Correlation(
            kind="sequence",
            key=_key_dict(self.by, key),
            events=list(events),
            count=len(events),
            window=(events[0]["ts"], events[-1]["ts"]),
        )
