"""Storm control of the live monitor's alerts (no kernel needed): a burst per rule, program and
user written as it comes, the rest of the window folded into one aggregate alert that counts
them and names their files, other keys and rules untouched, nothing lost."""

from __future__ import annotations

from typing import Any

from secpolicy.events.live.storm import AlertStorm, StormControl


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def alert(rule: str, exe: str, uid: int, path: str, n: int) -> dict[str, Any]:
    ev = {"type": "open", "ts": f"2026-01-01T00:00:{n:02d}.000000000Z", "proc": {"exe": exe}, "user": {"uid": uid},
          "file": {"path": path}}
    return {"rule_id": rule, "message": f"{exe} denied {path}", "ts": ev["ts"], "event": ev, "events": [ev],
            "context": {"kind": "match", "key": {}, "count": 1, "window": [ev["ts"], ev["ts"]]}}


def test_a_storm_is_folded_into_one_aggregate_per_window_and_others_pass() -> None:
    clock = Clock()
    storm = AlertStorm(StormControl(window=5, burst=3), clock)
    written = [storm.offer(alert("denied", "/usr/bin/cat", 65534, f"/etc/f{n % 2}", n)) for n in range(10)]
    assert written == [True] * 3 + [False] * 7
    # another program, another user, another rule: not held back by the storm
    assert storm.offer(alert("denied", "/usr/bin/less", 65534, "/etc/x", 10))
    assert storm.offer(alert("denied", "/usr/bin/cat", 1000, "/etc/x", 11))
    assert storm.offer(alert("other", "/usr/bin/cat", 65534, "/etc/x", 12))
    clock.now += 4.9
    assert storm.due() == []
    clock.now += 0.2
    (agg,) = storm.due()
    assert agg["aggregate"] == {"count": 7, "window": ["2026-01-01T00:00:03.000000000Z", "2026-01-01T00:00:09.000000000Z"],
                                "key": {"proc.exe": "/usr/bin/cat", "user.uid": 65534}, "written_before": 3,
                                "paths": {"/etc/f0": 3, "/etc/f1": 4}}
    assert agg["event"]["file"]["path"] == "/etc/f1" and [e["ts"][-13:-11] for e in agg["events"]] == ["03", "09"]
    assert agg["message"] == "/usr/bin/cat denied /etc/f1 (and 6 more like it)"
    assert storm.stats()["by_rule"]["denied"] == {"written": 5, "folded": 7, "aggregates": 1}
    # a new window: written again at once
    assert storm.offer(alert("denied", "/usr/bin/cat", 65534, "/etc/f0", 20))


def test_one_alert_held_is_written_unchanged_and_drain_empties_every_window() -> None:
    clock = Clock()
    storm = AlertStorm(StormControl(window=5, burst=1), clock)
    first, second = alert("r", "/bin/sh", 0, "/etc/a", 1), alert("r", "/bin/sh", 0, "/etc/b", 2)
    assert storm.offer(first) and not storm.offer(second)
    assert storm.drain() == [second]
    assert storm.drain() == [] and storm.stats()["alerts_folded"] == 0 and storm.stats()["alerts_written"] == 2


def test_window_zero_writes_everything_and_too_many_keys_share_one_window() -> None:
    off = AlertStorm(StormControl(window=0))
    assert all(off.offer(alert("r", "/bin/sh", 0, "/x", n)) for n in range(50))
    storm = AlertStorm(StormControl(window=5, burst=1, max_keys=2), Clock())
    results = [storm.offer(alert("r", f"/bin/p{n}", 0, "/x", n)) for n in range(5)]
    assert results == [True, True, True, False, False]  # p2.. share the overflow window
    (agg,) = storm.drain()
    assert agg["aggregate"]["count"] == 2 and agg["aggregate"]["key"] == {"proc.exe": None, "user.uid": None}
