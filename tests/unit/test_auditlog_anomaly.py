"""Anomaly detection on synthetic, deterministic event streams."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from secpolicy.auditlog.anomaly import Baseline, Detector, DetectorSettings, learn_baseline
from secpolicy.errors import InputError

BASE = 1_795_219_200  # 2026-11-21T00:00:00Z


def ts(seconds: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(BASE + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def ev(kind: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "ts": ts(seconds), "host": "web1", **extra}


def steady(minutes: int, per_minute: dict[str, int], offset: int = 0) -> list[dict[str, Any]]:
    out = []
    for m in range(minutes):
        for kind, n in per_minute.items():
            for i in range(n):
                out.append(ev(kind, offset + m * 60 + i * (60 / n)))
    return sorted(out, key=lambda e: e["ts"])


def test_baseline_counts_zero_intervals_and_round_trips(tmp_path: Path) -> None:
    events = steady(10, {"exec": 6}) + [ev("auth", 30), ev("auth", 31)]
    b = learn_baseline(sorted(events, key=lambda e: e["ts"]), interval=60)
    assert b.buckets == 10 and b.start == ts(0) and b.end == ts(600)
    assert (b.types["exec"].mean, b.types["exec"].std, b.types["exec"].max) == (6.0, 0.0, 6)
    assert (b.types["auth"].mean, b.types["auth"].max, b.types["auth"].total) == (0.2, 2, 2)
    assert b.types["auth"].std == pytest.approx(0.6)
    b.save(tmp_path / "b.json")
    assert Baseline.load(tmp_path / "b.json") == b


def test_rate_above_k_times_baseline_alerts_once_per_interval() -> None:
    b = learn_baseline(steady(30, {"exec": 5, "open": 20}), interval=60)
    stream = steady(3, {"exec": 5, "open": 20}, offset=3600)
    stream += steady(1, {"exec": 40}, offset=3600 + 180)  # 8x the exec baseline
    stream += steady(1, {"open": 50}, offset=3600 + 240)  # 2.5x open: under k=3
    stream.sort(key=lambda e: e["ts"])
    alerts = list(Detector(b).run(("event", e) for e in stream))
    assert [(a["rule_id"], a["context"]["key"], a["context"]["count"], a["severity"]) for a in alerts] == [
        ("anomaly.rate", "exec", 40, "medium"),
    ]
    assert alerts[0]["ts"] == ts(3600 + 240)
    assert "8.0x the baseline" in alerts[0]["title"]


def test_min_count_keeps_rare_types_quiet() -> None:
    b = learn_baseline(steady(60, {"exec": 10}) + [ev("module_load", 5)], interval=60)
    stream = [ev("module_load", 7200 + i) for i in range(4)]  # 240x baseline but only 4 events
    assert list(Detector(b).run(("event", e) for e in stream)) == []
    loud = [ev("module_load", 7200 + i) for i in range(12)]
    alerts = list(Detector(b).run(("event", e) for e in loud))
    assert [(a["rule_id"], a["severity"]) for a in alerts] == [("anomaly.rate", "high")]


def test_unseen_event_type_alerts_once() -> None:
    b = learn_baseline(steady(5, {"exec": 2}), interval=60)
    stream = [ev("bpf", 1000, bpf={"cmd": "BPF_PROG_LOAD"}), ev("bpf", 1001), ev("exec", 1002)]
    alerts = list(Detector(b).run(("event", e) for e in stream))
    assert [(a["rule_id"], a["context"]["key"]) for a in alerts] == [("anomaly.new_type", "bpf")]
    assert alerts[0]["event"]["bpf"] == {"cmd": "BPF_PROG_LOAD"}


def test_burst_of_high_severity_alerts() -> None:
    b = learn_baseline(steady(5, {"exec": 2}), interval=60)
    d = Detector(b, DetectorSettings(burst_count=3, burst_window=60))
    alerts: list[dict[str, Any]] = []
    sevs = ["high", "low", "critical", "medium", "high", "high", "critical", "high"]
    for i, sev in enumerate(sevs):
        alerts += d.observe_alert({"rule_id": f"r{i}", "severity": sev, "ts": ts(100 + i * 5),
                                   "event": ev("exec", 100 + i * 5)})
    # high at 100, critical at 110, high at 120 -> burst; the rest fall in the quiet window
    assert [(a["rule_id"], a["context"]["count"], a["ts"]) for a in alerts] == [
        ("anomaly.severity_burst", 3, ts(120))]
    later = d.observe_alert({"rule_id": "x", "severity": "high", "ts": ts(181), "event": ev("exec", 181)})
    assert [a["rule_id"] for a in later] == ["anomaly.severity_burst"]


def test_rapid_configuration_changes() -> None:
    b = learn_baseline(steady(5, {"exec": 2, "config_change": 1}), interval=60)
    d = Detector(b, DetectorSettings(config_count=4, config_window=120, min_count=100))
    stream = [ev("config_change", 1000 + i * 20, config={"key": f"sshd.opt{i}", "op": "set"}) for i in range(6)]
    alerts = list(d.run(("event", e) for e in stream))
    assert [(a["rule_id"], a["context"]["count"]) for a in alerts] == [("anomaly.config_churn", 4)]
    assert alerts[0]["message"] == "changed: sshd.opt0, sshd.opt1, sshd.opt2, sshd.opt3"
    slow = Detector(b, DetectorSettings(config_count=4, config_window=120))
    spaced = [ev("config_change", 1000 + i * 50) for i in range(6)]
    assert list(slow.run(("event", e) for e in spaced)) == []


def test_hourly_profile_sets_expectations_per_hour() -> None:
    # Busy 09:00-10:00 (60/min), quiet otherwise (2/min), over a day.
    day = []
    for m in range(24 * 60):
        n = 60 if 9 * 60 <= m < 10 * 60 else 2
        day += [ev("exec", m * 60 + i * (60 / n)) for i in range(n)]
    b = learn_baseline(day, interval=60)
    assert b.types["exec"].by_hour[9] == 60 and b.types["exec"].by_hour[3] == 2
    busy_morning = [ev("exec", 86400 + 9 * 3600 + i) for i in range(60)]
    assert list(Detector(b).run(("event", e) for e in busy_morning)) == []
    same_at_night = [ev("exec", 86400 + 3 * 3600 + i) for i in range(60)]
    assert [a["rule_id"] for a in Detector(b).run(("event", e) for e in same_at_night)] == ["anomaly.rate"]


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="no events"):
        learn_baseline([])
    for k in (1, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="is not a finite number greater than 1"):
            DetectorSettings(k=k)
    with pytest.raises(InputError, match="ISO 8601"):
        learn_baseline([{"type": "exec", "ts": "noon"}])


def test_malformed_baseline_file(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text('{"version": 1, "types": {"exec": {}}}')
    with pytest.raises(InputError, match="malformed"):
        Baseline.load(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(InputError, match="not JSON"):
        Baseline.load(tmp_path / "c.json")


def test_the_intervals_per_hour_of_a_long_span_are_counted_without_walking_them() -> None:
    import random
    from collections import defaultdict

    from secpolicy.auditlog.anomaly import _intervals_per_hour

    rng = random.Random(3)
    for _ in range(300):
        interval = rng.choice([1, 7, 60, 900, 3600, 5000, 86400, 100_000, 7 * 86400 + 13])
        first = rng.randint(-10**6, 10**6)
        last = first + rng.choice([0, 1, 23, rng.randint(0, 50_000)])
        want: dict[int, int] = defaultdict(int)
        for b in range(first, last + 1):
            want[(b * interval // 3600) % 24] += 1
        got = _intervals_per_hour(first, last, interval)
        assert list(got.items()) == list(want.items()), (interval, first, last)


def test_a_baseline_over_events_thousands_of_years_apart_is_learnt_at_once() -> None:
    import time

    events = [{"type": "exec", "ts": "2024-05-01T10:00:00.000000000Z"},
              {"type": "exec", "ts": "9999-12-31T23:59:59.000000000Z"}]
    started = time.process_time()
    b = learn_baseline(events, interval=60)
    assert time.process_time() - started < 5  # walking every minute took ten minutes
    assert (b.buckets, b.start, b.end) == (4_194_795_720, "2024-05-01T10:00:00.000000000Z", "9999-12-31T23:59:59.999999999Z")
    assert b.types["exec"].total == 2 and b.types["exec"].by_hour[10] == pytest.approx(24 / b.buckets)
    b = learn_baseline(events, interval=100_000_000)  # the last interval ends beyond the year 9999
    assert (b.buckets, b.start, b.end) == (2518, "2023-11-14T22:13:20.000000000Z", "9999-12-31T23:59:59.999999999Z")
    alerts = list(Detector(b, DetectorSettings(min_count=1)).run(("event", e) for e in events * 3))
    assert alerts[-1]["ts"] == "9999-12-31T23:59:59.999999999Z"
