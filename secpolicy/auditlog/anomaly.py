"""Anomaly detection over event streams: a learned baseline of event rates per type and fixed
interval, and alerts on rates above k times baseline, unseen types, severity bursts, config churn."""

from __future__ import annotations

import json
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from secpolicy.auditlog.store import iso_utc, normalize_ts
from secpolicy.errors import InputError
from secpolicy.outfile import write_text

__all__ = ["Baseline", "Detector", "DetectorSettings", "TypeStats", "epoch_seconds", "learn_baseline"]

_VERSION = 1
_HIGH = ("high", "critical")
_CONFIG_TYPES = ("config_change", "account_change")


def epoch_seconds(ts: Any) -> float:
    """Seconds since the epoch of an ISO 8601 time (nanosecond digits are cut to micro)."""
    if not isinstance(ts, str) or len(ts) < 19:
        raise InputError(f"event time {ts!r} is not ISO 8601")
    text = ts.replace("Z", "+00:00")
    if len(text) > 19 and text[19] == ".":
        rest = text[20:]
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = text[:20] + digits[:6] + rest[len(digits):]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"event time {ts!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        raise InputError(f"event time {ts!r} has no time zone")
    return moment.timestamp()


_FIRST, _END = -62_135_596_800, 253_402_300_800  # 0001-01-01 and 10000-01-01, in Unix time


def _iso(seconds: float) -> str:
    # An interval around events of the first or last day a timestamp can name may begin
    # before the year 1 or end after 9999; its bound is then the first or last time there is.
    if seconds < _FIRST:
        return "0001-01-01T00:00:00.000000000Z"
    if seconds >= _END:
        return "9999-12-31T23:59:59.999999999Z"
    return iso_utc(datetime.fromtimestamp(seconds, UTC))  # not strftime: it writes the year 999 as "999"


@dataclass(frozen=True)
class TypeStats:
    """Counts per interval of one event type over the learning period (zeros included)."""

    mean: float
    std: float
    max: int
    total: int
    by_hour: dict[int, float] = field(default_factory=dict)  # hour of day (UTC) -> mean

    def expected(self, hour: int | None = None) -> float:
        if hour is not None and hour in self.by_hour:
            return self.by_hour[hour]
        return self.mean


@dataclass(frozen=True)
class Baseline:
    interval: int
    buckets: int
    start: str
    end: str
    types: dict[str, TypeStats]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _VERSION, "interval": self.interval, "buckets": self.buckets,
            "start": self.start, "end": self.end,
            "types": {t: {"mean": s.mean, "std": s.std, "max": s.max, "total": s.total,
                          "by_hour": {str(h): m for h, m in sorted(s.by_hour.items())}}
                      for t, s in sorted(self.types.items())},
        }

    def save(self, path: str | Path) -> None:
        write_text(str(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read baseline: {exc.strerror}", str(path)) from exc
        except json.JSONDecodeError as exc:
            raise InputError(f"baseline is not JSON: {exc.msg} at line {exc.lineno}", str(path)) from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"baseline is not UTF-8 (byte {exc.start + 1})", str(path)) from exc
        except RecursionError:
            raise InputError("baseline is JSON nested too deeply", str(path)) from None
        try:
            return cls._from_dict(data)
        except InputError as exc:
            raise InputError(f"baseline is malformed: {exc.message}", str(path)) from exc

    @classmethod
    def _from_dict(cls, data: Any) -> Baseline:
        """Every figure checked: a baseline edited to NaN, infinity or a negative rate would
        otherwise make every comparison false and detect nothing, silently."""
        if not isinstance(data, dict):
            raise InputError("not a JSON object")
        version = data.get("version")
        if type(version) is not int or version != _VERSION:  # true == 1 in Python, not here
            raise InputError(f"version {version!r} is not {_VERSION}")
        interval = _whole(data.get("interval"), "interval", 1)
        buckets = _whole(data.get("buckets"), "buckets", 1)
        start, end = data.get("start"), data.get("end")
        if not isinstance(start, str) or not isinstance(end, str):  # only named in messages
            raise InputError("start and end are not text")
        raw = data.get("types")
        if not isinstance(raw, dict):
            raise InputError("types is not an object")
        types = {}
        for kind, stats in raw.items():
            if not isinstance(stats, dict):
                raise InputError(f"types.{kind} is not an object")
            by_hour = stats.get("by_hour") or {}
            if not isinstance(by_hour, dict):
                raise InputError(f"types.{kind}.by_hour is not an object")
            hours = {}
            for hour, rate in by_hour.items():
                if not (isinstance(hour, str) and hour.isascii() and hour.isdigit() and 0 <= int(hour) <= 23):
                    raise InputError(f"types.{kind}.by_hour: {hour!r} is not an hour 0 to 23")
                hours[int(hour)] = _rate(rate, f"types.{kind}.by_hour.{hour}")
            types[kind] = TypeStats(_rate(stats.get("mean"), f"types.{kind}.mean"),
                                    _rate(stats.get("std"), f"types.{kind}.std"),
                                    _whole(stats.get("max"), f"types.{kind}.max", 0),
                                    _whole(stats.get("total"), f"types.{kind}.total", 0), hours)
        return cls(interval, buckets, start, end, types)


def _whole(value: Any, what: str, least: int) -> int:
    if type(value) is not int or value < least:
        raise InputError(f"{what} {value!r} is not a whole number of at least {least}")
    return value


def _rate(value: Any, what: str) -> float:
    if type(value) not in (int, float) or not 0 <= value < math.inf:  # False for NaN too
        raise InputError(f"{what} {value!r} is not a finite number of at least 0")
    return float(value)


def learn_baseline(events: Iterable[Mapping[str, Any]], interval: int = 60, since: str | None = None,
                   until: str | None = None) -> Baseline:
    """Rates per type per `interval` seconds over the span of `events`, zeros counted; with
    `since` and/or `until` (the period learned from), over the intervals of that period: a
    quiet hour with one event in its first minute is a rate of 1/60 a minute, not of 1."""
    if interval < 1:
        raise InputError("interval must be at least 1 second")
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    first = last = None
    for e in events:
        b = int(epoch_seconds(e.get("ts")) // interval)
        counts[str(e.get("type"))][b] += 1
        first = b if first is None or b < first else first
        last = b if last is None or b > last else last
    if first is None or last is None:
        raise InputError("no events to learn a baseline from")
    if since is not None:
        first = min(first, int(epoch_seconds(normalize_ts(since)) // interval))
    if until is not None:  # exclusive: the interval holding it counts only when it starts before it
        last = max(last, math.ceil(epoch_seconds(normalize_ts(until)) / interval) - 1)
    n = last - first + 1
    hour_buckets = _intervals_per_hour(first, last, interval)
    types: dict[str, TypeStats] = {}
    for kind, per in counts.items():
        total = sum(per.values())
        mean = total / n
        var = (sum((c - mean) ** 2 for c in per.values()) + (n - len(per)) * mean ** 2) / n
        per_hour: dict[int, int] = defaultdict(int)
        for b, c in per.items():
            per_hour[(b * interval // 3600) % 24] += c
        by_hour = {h: per_hour.get(h, 0) / nb for h, nb in hour_buckets.items()}
        types[kind] = TypeStats(mean=mean, std=math.sqrt(var), max=max(per.values()), total=total,
                                by_hour=by_hour if len(hour_buckets) > 1 else {})
    return Baseline(interval, n, _iso(first * interval), _iso((last + 1) * interval), types)


def _intervals_per_hour(first: int, last: int, interval: int) -> dict[int, int]:
    """How many of the intervals first..last start in each hour of day (UTC), in the order the
    hours first occur. The hour of interval b repeats every 86400 / gcd(interval, 86400)
    intervals, so at most one such period and one remainder are walked, not the whole span
    (events years apart would otherwise walk billions of empty intervals)."""
    period = 86400 // math.gcd(interval, 86400)
    cycles, rest = divmod(last - first + 1, period)
    per_hour: dict[int, int] = defaultdict(int)
    if cycles:
        for b in range(first, first + period):
            per_hour[(b * interval // 3600) % 24] += cycles
    for b in range(first, first + rest):
        per_hour[(b * interval // 3600) % 24] += 1
    return per_hour


@dataclass(frozen=True)
class DetectorSettings:
    k: float = 3.0  # a bucket above k times the expected rate is anomalous
    min_count: int = 10  # ... and must hold at least this many events, so 0 -> 2 is not alarming
    burst_count: int = 5  # high/critical alerts within burst_window
    burst_window: float = 60.0
    config_count: int = 5  # configuration or account changes within config_window
    config_window: float = 300.0

    def __post_init__(self) -> None:
        if not 1 < self.k < math.inf:  # False for NaN too
            raise InputError(f"k {self.k} is not a finite number greater than 1")
        if self.min_count < 1 or self.burst_count < 2 or self.config_count < 2:
            raise InputError("min_count must be >= 1, burst and config counts >= 2")


class Detector:
    """Streaming: feed events (and alerts) in time order, collect anomaly alerts."""

    def __init__(self, baseline: Baseline, settings: DetectorSettings | None = None) -> None:
        self.baseline = baseline
        self.settings = settings or DetectorSettings()
        self._bucket: int | None = None
        self._counts: dict[str, int] = defaultdict(int)
        self._last: dict[str, Mapping[str, Any]] = {}
        self._new_seen: set[str] = set()
        self._burst: deque[tuple[float, Mapping[str, Any]]] = deque()
        self._config: deque[tuple[float, Mapping[str, Any]]] = deque()
        self._burst_quiet_until = 0.0
        self._config_quiet_until = 0.0

    def observe(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        t = epoch_seconds(event.get("ts"))
        kind = str(event.get("type"))
        b = int(t // self.baseline.interval)
        if self._bucket is not None and b > self._bucket:
            out += self._close_bucket()
        if self._bucket is None or b > self._bucket:
            self._bucket = b
        self._counts[kind] += 1
        self._last[kind] = event
        if kind not in self.baseline.types and kind not in self._new_seen:
            self._new_seen.add(kind)
            out.append(_alert("anomaly.new_type", "medium", f"event type {kind!r} never seen in the baseline",
                              f"first {kind} event; the baseline ({self.baseline.start} to "
                              f"{self.baseline.end}) has none", event, [event], "match", kind, 1))
        if kind in _CONFIG_TYPES:
            out += self._window(self._config, t, event, self.settings.config_window, self.settings.config_count,
                                "config")
        return out

    def observe_alert(self, alert: Mapping[str, Any]) -> list[dict[str, Any]]:
        if alert.get("severity") not in _HIGH:
            return []
        t = epoch_seconds(alert.get("ts") or (alert.get("event") or {}).get("ts"))
        return self._window(self._burst, t, alert, self.settings.burst_window, self.settings.burst_count, "burst")

    def _window(self, window: deque[tuple[float, Mapping[str, Any]]], t: float, item: Mapping[str, Any],
                span: float, count: int, what: str) -> list[dict[str, Any]]:
        window.append((t, item))
        while window and window[0][0] <= t - span:
            window.popleft()
        quiet = self._burst_quiet_until if what == "burst" else self._config_quiet_until
        if len(window) < count or t < quiet:
            return []
        # One alert per full window: the next may fire only once this window has passed.
        if what == "burst":
            self._burst_quiet_until = t + span
            items = [a for _, a in window]
            alert_events: list[Mapping[str, Any]] = [a["event"] for a in items if a.get("event")]
            return [_alert("anomaly.severity_burst", "high",
                           f"{len(items)} high or critical alerts within {span:g} s",
                           "rules: " + ", ".join(sorted({str(a.get('rule_id')) for a in items})),
                           alert_events[-1] if alert_events else {}, alert_events, "threshold",
                           "high-severity", len(items),
                           ts=item.get("ts"))]
        self._config_quiet_until = t + span
        changes = [e for _, e in window]
        keys = sorted({str((e.get("config") or e.get("account") or {}).get("key")
                           or (e.get("account") or {}).get("name")) for e in changes})
        return [_alert("anomaly.config_churn", "high", f"{len(changes)} configuration changes within {span:g} s",
                       "changed: " + ", ".join(keys), item, changes, "threshold", "config", len(changes))]

    def _close_bucket(self) -> list[dict[str, Any]]:
        out = []
        assert self._bucket is not None
        start = self._bucket * self.baseline.interval
        hour = (start // 3600) % 24
        for kind, n in sorted(self._counts.items()):
            stats = self.baseline.types.get(kind)
            if stats is None or n < self.settings.min_count:
                continue
            expected = stats.expected(hour)
            if n > self.settings.k * expected:
                ratio = n / expected if expected else math.inf
                sev = "high" if ratio >= 3 * self.settings.k else "medium"
                event = self._last[kind]
                out.append(_alert(
                    "anomaly.rate", sev, f"{kind} rate {n} per {self.baseline.interval} s is "
                    f"{ratio:.1f}x the baseline",
                    f"{n} {kind} events in {_iso(start)} +{self.baseline.interval}s; baseline "
                    f"{expected:.2f} per interval, threshold {self.settings.k:g}x",
                    event, [event], "threshold", kind, n, ts=_iso(start + self.baseline.interval),
                ))
        self._counts.clear()
        self._last.clear()
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Close the last interval (end of a replay)."""
        if self._bucket is None:
            return []
        out = self._close_bucket()
        self._bucket = None
        return out

    def run(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[dict[str, Any]]:
        """("event" | "alert", dict) pairs in time order -> anomaly alerts."""
        for kind, obj in items:
            yield from (self.observe(obj) if kind == "event" else self.observe_alert(obj))
        yield from self.finish()


def _alert(rule_id: str, severity: str, title: str, message: str, event: Mapping[str, Any],
           events: list[Any], kind: str, key: str, count: int, ts: Any = None) -> dict[str, Any]:
    return {
        "rule_id": rule_id, "severity": severity, "title": title, "message": message,
        "ts": ts or event.get("ts"), "event": dict(event), "events": [dict(e) for e in events],
        "context": {"kind": kind, "key": key, "count": count}, "tags": ["anomaly"],
        "references": {"nist-800-53": ["SI-4", "AU-6"]},
    }
