"""Deduplication and rate limiting in front of a sink: a flood of the same alert becomes one
alert carrying a count, and a noisy rule is capped per period with a count of what was held."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from secpolicy.auditlog.sinks.base import Sink
from secpolicy.errors import InputError

__all__ = ["Deduplicator", "RateLimiter", "dedup_key"]


def dedup_key(alert: Mapping[str, Any]) -> tuple[str, str]:
    """Alerts are the same when rule and correlation key (or title) agree."""
    context = alert.get("context") or {}
    key = context.get("key")
    if key is None:
        event = alert.get("event") or {}
        key = f"{alert.get('title', '')}|{event.get('host', '')}"
    return str(alert.get("rule_id")), str(key)


@dataclass
class _Group:
    first: dict[str, Any]
    started: float
    count: int
    first_ts: str | None
    last_ts: str | None


def _with_count(alert: dict[str, Any], count: int, first_ts: str | None, last_ts: str | None,
                why: str) -> dict[str, Any]:
    out = dict(alert)
    context = dict(out.get("context") or {})
    context["count"] = count
    out["context"] = context
    out["aggregation"] = {"count": count, "first_ts": first_ts, "last_ts": last_ts, "reason": why}
    return out


class Deduplicator:
    """Holds identical alerts for `window` seconds from the first one, then emits one alert
    with `context.count` and `aggregation` = {count, first_ts, last_ts}. A lone alert passes
    after the window with count 1; `flush()` (or `close()`) emits whatever is held."""

    def __init__(self, inner: Sink, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window <= 0:
            raise InputError("deduplication window must be positive")
        self.inner = inner
        self.window = window
        self.clock = clock
        self._groups: dict[tuple[str, str], _Group] = {}

    def emit(self, alert: Mapping[str, Any]) -> None:
        now = self.clock()
        self._expire(now)
        key = dedup_key(alert)
        group = self._groups.get(key)
        ts = alert.get("ts")
        if group is None:
            self._groups[key] = _Group(dict(alert), now, 1, ts, ts)
        else:
            group.count += 1
            group.last_ts = ts

    def tick(self) -> None:
        self._expire(self.clock())

    def _expire(self, now: float) -> None:
        done = [k for k, g in self._groups.items() if now - g.started >= self.window]
        for k in done:
            self._release(self._groups.pop(k))

    def _release(self, g: _Group) -> None:
        self.inner.emit(_with_count(g.first, g.count, g.first_ts, g.last_ts, "deduplicated"))

    def flush(self) -> None:
        groups, self._groups = self._groups, {}
        for g in sorted(groups.values(), key=lambda g: g.started):
            self._release(g)

    def close(self) -> None:
        self.flush()
        self.inner.close()


class RateLimiter:
    """At most `limit` alerts per rule per `period` seconds pass through; the rest are counted
    and reported at the end of the period as one summary alert of that rule."""

    def __init__(self, inner: Sink, limit: int = 100, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or period <= 0:
            raise InputError("rate limit needs limit >= 1 and a positive period")
        self.inner = inner
        self.limit = limit
        self.period = period
        self.clock = clock
        self._windows: dict[str, list[Any]] = {}  # rule -> [start, passed, held, last alert, first ts]

    def emit(self, alert: Mapping[str, Any]) -> None:
        now = self.clock()
        self._expire(now)
        rule = str(alert.get("rule_id"))
        w = self._windows.setdefault(rule, [now, 0, 0, None, None])
        if w[1] < self.limit:
            w[1] += 1
            self.inner.emit(alert)
        else:
            w[2] += 1
            w[3] = dict(alert)
            w[4] = w[4] or alert.get("ts")

    def tick(self) -> None:
        self._expire(self.clock())

    def _expire(self, now: float) -> None:
        for rule in [r for r, w in self._windows.items() if now - w[0] >= self.period]:
            self._summarize(self._windows.pop(rule))

    def _summarize(self, w: list[Any]) -> None:
        if w[2]:
            last = w[3]
            summary = _with_count(last, w[2], w[4], last.get("ts"), "rate limited")
            summary["title"] = f"{last.get('title') or last.get('rule_id')} ({w[2]} more suppressed)"
            self.inner.emit(summary)

    def flush(self) -> None:
        windows, self._windows = self._windows, {}
        for w in windows.values():
            self._summarize(w)

    def close(self) -> None:
        self.flush()
        self.inner.close()
