"""Alert storm control for the live monitor: per rule and key (the program and user that caused
the alert), the first `burst` alerts of a window are written as they come; the rest of the
window is folded into one aggregate alert carrying their count, first and last events and the
distinct files named, written when the window ends (as Falco's output rate limiting and
auditd's aggregation do, without dropping anything silently)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from secpolicy.models import Alert, AlertAggregate

__all__ = ["AlertStorm", "StormControl"]

_PATHS_SHOWN = 16  # the most frequent files named in an aggregate alert
_PATHS_KEPT = 1024  # distinct files counted per window (beyond, only the total)


@dataclass(frozen=True)
class StormControl:
    """`window` seconds (0 = off), `burst` alerts per rule and key written one by one in a
    window, at most `max_keys` keys tracked per rule (beyond, the keys share one)."""

    window: float = 5.0
    burst: int = 3
    max_keys: int = 10_000

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def describe(self) -> str:
        if not self.enabled:
            return "off: every alert is written"
        return (f"per rule, program and user: {self.burst} alerts written per {self.window:g} s window, "
                "the rest folded into one aggregate alert at the window's end")


@dataclass
class _Window:
    opened: float
    written: int = 0
    held: int = 0
    first: Alert | None = None
    last: Alert | None = None
    paths: dict[str, int] = field(default_factory=dict)


def _key(alert: Alert) -> tuple[str | None, int | None]:
    ev = alert.get("event") or {}
    return (ev.get("proc") or {}).get("exe"), (ev.get("user") or {}).get("uid")


class AlertStorm:
    """`offer(alert)` says whether to write it now; `due()` returns the alerts of windows that
    have ended (an aggregate, or the one alert held unchanged); `drain()` those of every window.
    Not thread-safe: the monitor calls it under its output lock."""

    def __init__(self, control: StormControl, clock: Callable[[], float] = time.monotonic) -> None:
        self.control = control
        self.clock = clock
        self._windows: dict[str, dict[tuple[str | None, int | None], _Window]] = {}
        self.written: dict[str, int] = {}
        self.folded: dict[str, int] = {}
        self.aggregates: dict[str, int] = {}

    def offer(self, alert: Alert) -> bool:
        rule = alert["rule_id"]
        if not self.control.enabled:
            self.written[rule] = self.written.get(rule, 0) + 1
            return True
        now = self.clock()
        per_rule = self._windows.setdefault(rule, {})
        key = _key(alert)
        w = per_rule.get(key)
        if w is None:
            if len(per_rule) >= self.control.max_keys:
                key = (None, None)  # too many keys: the rest share one window
                w = per_rule.get(key)
            if w is None:
                w = per_rule[key] = _Window(now)
        if w.written < self.control.burst:
            w.written += 1
            self.written[rule] = self.written.get(rule, 0) + 1
            return True
        w.held += 1
        if w.first is None:
            w.first = alert
        w.last = alert
        path = ((alert.get("event") or {}).get("file") or {}).get("path")
        if path is not None and (path in w.paths or len(w.paths) < _PATHS_KEPT):
            w.paths[path] = w.paths.get(path, 0) + 1
        return False

    def due(self) -> list[Alert]:
        """Alerts of the windows that have ended by now."""
        if not self._windows:
            return []
        limit = self.clock() - self.control.window
        return self._close(lambda w: w.opened <= limit)

    def drain(self) -> list[Alert]:
        """Alerts of every open window (at the end of a run)."""
        return self._close(lambda w: True)

    def _close(self, ended: Callable[[_Window], bool]) -> list[Alert]:
        out: list[Alert] = []
        for rule, per_rule in list(self._windows.items()):
            for key, w in list(per_rule.items()):
                if not ended(w):
                    continue
                del per_rule[key]
                if w.held:
                    out.append(self._aggregate(rule, key, w))
            if not per_rule:
                del self._windows[rule]
        return out

    def _aggregate(self, rule: str, key: tuple[str | None, int | None], w: _Window) -> Alert:
        assert w.first is not None and w.last is not None
        if w.held == 1:
            self.written[rule] = self.written.get(rule, 0) + 1
            return w.first  # one alert held: written as it was, late by at most a window
        self.folded[rule] = self.folded.get(rule, 0) + w.held
        self.aggregates[rule] = self.aggregates.get(rule, 0) + 1
        out = w.first.copy()
        out["events"] = [w.first["event"], w.last["event"]]
        out["message"] = f"{w.first['message']} (and {w.held - 1} more like it)"
        agg: AlertAggregate = {"count": w.held, "window": [w.first["ts"], w.last["ts"]],
                               "key": {"proc.exe": key[0], "user.uid": key[1]},
                               "written_before": w.written}
        if w.paths:
            top = sorted(w.paths.items(), key=lambda kv: (-kv[1], kv[0]))
            agg["paths"] = dict(top[:_PATHS_SHOWN])
            if len(top) > _PATHS_SHOWN:
                # other distinct files (counted up to _PATHS_KEPT; `at_least` when there were more)
                agg["paths_more"] = {"count": len(top) - _PATHS_SHOWN, "at_least": len(w.paths) >= _PATHS_KEPT}
        out["aggregate"] = agg
        return out

    def stats(self) -> dict[str, Any]:
        rules = sorted(set(self.written) | set(self.folded))
        return {
            "control": {"window_s": self.control.window, "burst": self.control.burst,
                        "max_keys": self.control.max_keys, "description": self.control.describe()},
            "alerts_written": sum(self.written.values()),
            "alerts_folded": sum(self.folded.values()),
            "aggregates": sum(self.aggregates.values()),
            "by_rule": {r: {"written": self.written.get(r, 0), "folded": self.folded.get(r, 0),
                            "aggregates": self.aggregates.get(r, 0)} for r in rules},
        }
