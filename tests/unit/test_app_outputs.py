"""Sink URIs and the outputs of monitor and replay: what is written, stored, recorded, sent,
dropped and failed, each counted and redacted once, with a real SQLite store and a real audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from secpolicy.app.delivery import Delivery, merge_windows
from secpolicy.app.outputs import OutputOptions, OutputSettings, RunOutputs
from secpolicy.auditlog.log import AuditLog
from secpolicy.auditlog.sinks.base import MemorySink
from secpolicy.auditlog.sinks.uri import build_chain, parse_rate_limit, parse_sink_uri
from secpolicy.auditlog.store import EventStore
from secpolicy.auditlog.trail import AuditTrail
from secpolicy.errors import InputError, RuntimeFailure


def event(i: int, type_: str = "exec") -> dict[str, Any]:
    return {"type": type_, "ts": f"2026-11-21T05:00:{i // 1000:02d}.{i % 1000:03d}000000Z",
            "host": "h", "proc": {"pid": 100 + i, "exe": "/bin/true"}, "user": {"uid": 0, "name": "root"}}


def alert(i: int, rule: str = "r1") -> dict[str, Any]:
    return {"rule_id": rule, "severity": "high", "title": "t", "message": f"m{i}", "ts": event(i)["ts"],
            "event": event(i), "events": [], "context": {"kind": "match", "key": str(i), "count": 1},
            "tags": [], "references": {}}


def records(logdir: Path) -> list[dict[str, Any]]:
    return [json.loads(x)["body"] for f in sorted(logdir.glob("segment-*.jsonl"))
            for x in f.read_text().splitlines() if json.loads(x)["kind"] == "record"]


@pytest.fixture()
def trail(tmp_path: Path) -> AuditTrail:
    log, _key = AuditLog.create(tmp_path / "log")
    log.close()
    return AuditTrail.open(tmp_path / "log", "monitor")


# -- URIs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "want"), [
    ("-", {"kind": "stdout", "fmt": "json"}),
    ("file:///var/log/a.jsonl", {"kind": "file", "path": "/var/log/a.jsonl"}),
    ("file:alerts%20today.cef?format=cef", {"kind": "file", "path": "alerts today.cef", "fmt": "cef"}),
    ("syslog+udp://127.0.0.1", {"kind": "syslog", "transport": "udp", "host": "127.0.0.1", "port": 514}),
    ("syslog+tcp://siem.example:1514?facility=local3&app=sp",
     {"transport": "tcp", "host": "siem.example", "port": 1514, "params": {"facility": "local3", "app": "sp"}}),
    ("syslog+tls://[::1]", {"transport": "tls", "host": "::1", "port": 6514}),
    ("webhook+https://h.example:8443/in?spool=/var/spool/sp&token=abc&format=ocsf",
     {"kind": "webhook", "url": "https://h.example:8443/in?token=abc", "fmt": "ocsf",
      "params": {"spool": "/var/spool/sp", "format": "ocsf"}}),
])
def test_sink_uris_parse(uri: str, want: dict[str, Any]) -> None:
    spec = parse_sink_uri(uri, "json")
    for k, v in want.items():
        assert getattr(spec, k) == v, k


@pytest.mark.parametrize(("uri", "message"), [
    ("", "not a sink URI"),
    ("alerts.jsonl", "not a sink URI"),
    ("file:", "no file name"),
    ("file:///tmp/", "no file name"),
    ("file:///x.jsonl#frag", "fragment"),
    ("file:///x.jsonl?format=xml", "unknown format 'xml'"),
    ("file:///x.jsonl?format=cef&format=leef", "given twice"),
    ("syslog+udp://", "no host"),
    ("syslog+udp://h:0x10", "port is not a number"),
    ("syslog+tcp://user:pw@h:514", "no user or password"),
    ("syslog+tcp://h:514/path", "no path"),
    ("syslog+udp://h?facility=kern", "unknown facility 'kern'"),
    ("syslog+udp://h?ca=/etc/hostname", "unknown parameter 'ca'"),
    ("syslog+tls://h?key=/etc/hostname", "key= needs cert="),
    ("syslog+tcp://h?facility=", "is empty"),
    ("webhook+http://h/p?spool=/tmp/s&ca=/etc/hostname", "ca= is for webhook+https"),
    ("webhook+http:///p?spool=/tmp/s", "no host"),
    ("syslog://h", "unknown scheme 'syslog'"),
])
def test_bad_sink_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(InputError) as e:
        parse_sink_uri(uri)
    assert message in e.value.render() and repr(uri) in e.value.render()


def test_rate_limit_text() -> None:
    assert parse_rate_limit("100/60") == (100, 60.0)
    assert parse_rate_limit("5") == (5, 60.0)
    for bad in ("0/60", "x/60", "5/0", "5/-1", "5/abc"):
        with pytest.raises(InputError, match="--rate-limit"):
            parse_rate_limit(bad)


def test_file_sinks_append_in_their_format(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.leef"
    chain = build_chain([parse_sink_uri(f"file://{a}"), parse_sink_uri(f"file:{b}?format=leef")])
    chain.emit(alert(1))
    chain.close()
    assert json.loads(a.read_text()) == alert(1)
    assert b.read_text().startswith("LEEF:2.0|secpolicy|") and b.read_text().count("\n") == 1


# -- outputs -------------------------------------------------------------------------------


def test_everything_queued_is_stored_recorded_and_sent_in_order(tmp_path: Path, trail: AuditTrail) -> None:
    mem = MemorySink()
    chain = build_chain([parse_sink_uri("-")], opener=lambda spec: mem)
    out = Delivery(store=lambda: EventStore(tmp_path / "e.db"), sinks=chain, trail=trail,
                  overflow="block", batch=7, max_pending=20)
    out.start()
    for i in range(100):
        out.on_event(event(i))
        if i % 10 == 0:
            out.alert(alert(i))
    stats = out.close()
    trail.close()
    assert (stats.events_stored, stats.alerts_stored, stats.alerts_sent, stats.alerts_recorded) == (100, 10, 10, 10)
    assert stats.store_dropped == 0 and stats.store_rejected == 0 and stats.trail_error is None
    with EventStore(tmp_path / "e.db", create=False) as store:
        assert list(store.events()) == [event(i) for i in range(100)]
        assert [a["message"] for a in store.alerts()] == [f"m{i}" for i in range(0, 100, 10)]
    assert [a["message"] for a in mem.alerts] == [f"m{i}" for i in range(0, 100, 10)]
    assert [r["details"]["message"] for r in records(tmp_path / "log") if r["event_type"] == "alert"] == \
        [f"m{i}" for i in range(0, 100, 10)]


def test_a_store_that_falls_behind_drops_the_oldest_and_says_so(tmp_path: Path, trail: AuditTrail) -> None:
    errors: list[str] = []
    out = Delivery(store=lambda: EventStore(tmp_path / "e.db"), trail=trail, overflow="drop",
                  batch=5, max_pending=10, on_error=errors.append)
    for i in range(25):  # the writer never ran: 25 pending against a limit of 10
        out.on_event(event(i, "open" if i % 2 else "exec"))
    stats = out.close()
    trail.close()
    assert stats.store_dropped == 20 and stats.events_stored == 5
    with EventStore(tmp_path / "e.db", create=False) as store:
        assert list(store.events()) == [event(i, "open" if i % 2 else "exec") for i in range(20, 25)]
    (lost,) = [r for r in records(tmp_path / "log") if r["event_type"] == "events_lost"]
    assert lost["component"] == "store" and lost["details"]["lost"] == 20
    assert lost["details"]["window"] == [event(0)["ts"], event(19)["ts"]]
    assert lost["details"]["by_type"] == {"exec": 10, "open": 10}
    assert errors and "20 events not stored" in errors[0]


def test_a_malformed_event_is_rejected_alone(tmp_path: Path, trail: AuditTrail) -> None:
    out = Delivery(store=lambda: EventStore(tmp_path / "e.db"), trail=trail, overflow="block")
    for i in range(5):
        out.on_event(event(i) if i != 2 else {"type": "exec", "ts": "yesterday"})
    stats = out.close()
    trail.close()
    assert (stats.events_stored, stats.store_rejected) == (4, 1)
    (fail,) = [r for r in records(tmp_path / "log") if r["event_type"] == "failure"]
    assert fail["component"] == "store" and "yesterday" in fail["details"]["message"]


class Broken:
    def __init__(self) -> None:
        self.closed = False

    def emit(self, alert: Any) -> None:
        raise RuntimeFailure("receiver gone")

    def close(self) -> None:
        self.closed = True


def test_a_failing_sink_is_one_failure_record_per_batch_and_the_others_still_get_alerts(
        tmp_path: Path, trail: AuditTrail) -> None:
    mem, broken = MemorySink(), Broken()
    specs = [parse_sink_uri("syslog+tcp://127.0.0.1:9"), parse_sink_uri("-")]
    chain = build_chain(specs, opener=lambda spec: broken if spec.kind == "syslog" else mem)
    out = Delivery(sinks=chain, trail=trail)
    for i in range(3):
        out.alert(alert(i))
    stats = out.close()
    trail.close()
    assert len(mem.alerts) == 3 and broken.closed
    assert stats.sink_failures == {"syslog+tcp://127.0.0.1:9": 3}
    (fail,) = [r for r in records(tmp_path / "log") if r["event_type"] == "failure"]
    assert fail["details"] | {"run_id": None} == {"message": "receiver gone", "sink": "syslog+tcp://127.0.0.1:9",
                                                  "alerts_failed": 3, "run_id": None}


def test_dedup_and_rate_limit_sit_in_front_of_the_sinks_only(tmp_path: Path, trail: AuditTrail) -> None:
    mem = MemorySink()
    chain = build_chain([parse_sink_uri("-")], dedup_window=3600, opener=lambda spec: mem)
    out = Delivery(sinks=chain, trail=trail)
    same = alert(1)
    for _ in range(4):
        out.alert(dict(same))
    out.close()
    trail.close()
    assert len(mem.alerts) == 1 and mem.alerts[0]["aggregation"]["count"] == 4
    assert sum(r["event_type"] == "alert" for r in records(tmp_path / "log")) == 4


def test_a_failing_audit_log_stops_recording_and_is_reported(tmp_path: Path, trail: AuditTrail) -> None:
    errors: list[str] = []
    out = Delivery(trail=trail, on_error=errors.append)
    trail.log.close()  # as if the log became unwritable under the run
    out.alert(alert(1))
    stats = out.close()
    assert stats.trail_error == "audit log is closed" and stats.alerts_recorded == 0
    assert any("audit log is closed" in e for e in errors)


def test_an_unusable_store_fails_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "e.db"
    bad.write_text("not sqlite at all, not even a little" * 100)
    out = Delivery(store=lambda: EventStore(bad))
    with pytest.raises(InputError, match="not a usable event store"):
        out.start()


def test_a_run_whose_store_failed_ends_as_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events the store could not take were counted ("2 store failures") and the run exited 0;
    it is now a runtime failure (exit 3), recorded in the audit log, after what was said."""
    def broken(self: EventStore, rows: Any, n: int) -> int:
        raise RuntimeFailure("event store: disk I/O error")

    monkeypatch.setattr(EventStore, "add_event_rows", broken)
    errors: list[str] = []
    AuditLog.create(tmp_path / "log")[0].close()
    settings = OutputOptions(audit_log=str(tmp_path / "log"), store=str(tmp_path / "e.db")).settings(alerts=None)
    run = RunOutputs(settings, "replay", overflow="block", on_error=errors.append)
    run.begin()
    run.open()
    assert run.on_event is not None
    run.on_event(event(1))
    with pytest.raises(RuntimeFailure, match=r"the event store failed 1 time\(s\)"):
        run.finish(events=1)
    assert errors == ["store: event store: disk I/O error"]
    (fail,) = [r for r in records(tmp_path / "log") if r["event_type"] == "failure"]
    assert fail["details"]["message"] == "event store: disk I/O error"


def test_loss_windows_of_one_cycle_merge_per_place() -> None:
    ws = [{"start": "b", "end": "c", "count": 2, "where": "kernel", "by_type": {"exec": 2}},
          {"start": "a", "end": "b", "count": 3, "where": "queue", "by_type": {"open": 3}},
          {"start": "c", "end": "d", "count": 1, "where": "kernel", "by_type": {"exec": 1}}]
    kernel, queue = merge_windows(ws, keep=1)
    assert (kernel["start"], kernel["end"], kernel["count"], kernel["by_type"]) == ("b", "d", 3, {"exec": 3})
    assert kernel["windows"] == [ws[0]] and kernel["windows_total"] == 2
    assert (queue["count"], queue["windows_total"]) == (3, 1)


def test_loss_windows_are_recorded_once_each(tmp_path: Path, trail: AuditTrail) -> None:
    seen = [{"start": "2026-11-21T05:00:00.000000000Z", "end": "2026-11-21T05:00:01.000000000Z",
             "count": 4, "where": "kernel", "by_type": {"exec": 4}}]
    out = Delivery(trail=trail, loss_windows=lambda: list(seen))
    out.start()
    final = [*seen, {"start": "2026-11-21T05:00:02.000000000Z", "end": "2026-11-21T05:00:03.000000000Z",
                     "count": 1, "where": "queue", "by_type": {"open": 1}}]
    stats = out.close(final)
    trail.close()
    lost = [r for r in records(tmp_path / "log") if r["event_type"] == "events_lost"]
    assert stats.loss_windows_recorded == 2
    assert sorted((r["details"]["reason"], r["details"]["lost"]) for r in lost) == [("kernel", 4), ("queue", 1)]


def test_secrets_are_masked_in_every_output_of_a_run(tmp_path: Path) -> None:
    """The rules saw the raw command line; nothing the run writes, keeps or sends holds it:
    the alert output, the event recording, the store, the sinks and the audit log."""
    AuditLog.create(tmp_path / "log")[0].close()
    secret_ev = {**event(1), "proc": {"pid": 7, "exe": "/usr/bin/mysql", "args": ["mysql", "-uroot", "-pS3cretPw"],
                                      "cmdline": "mysql -uroot -pS3cretPw"}}
    secret_alert = {**alert(1), "message": "mysql ran: mysql -uroot -pS3cretPw, card 4111 1111 1111 1111",
                    "event": secret_ev, "events": [secret_ev]}
    sink = tmp_path / "sink.cef"
    settings = OutputOptions(audit_log=str(tmp_path / "log"), store=str(tmp_path / "e.db"),
                             sinks=(f"file://{sink}?format=cef",)).settings(
        alerts=str(tmp_path / "alerts.jsonl"), events=str(tmp_path / "events.jsonl"))
    run = RunOutputs(settings, "replay", overflow="block", on_error=pytest.fail)
    run.begin()
    run.open()
    assert run.on_event is not None
    run.on_event(secret_ev)
    run.alert(secret_alert)
    stats = run.finish()
    assert secret_ev["proc"]["cmdline"] == "mysql -uroot -pS3cretPw"  # the caller's event is untouched
    assert (stats.outputs.events_recorded, stats.outputs.events_stored, stats.outputs.alerts_sent) == (1, 1, 1)
    written = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"alerts.jsonl", "events.jsonl", "e.db", "sink.cef", "segment-000000.jsonl"} <= set(written)
    for name, data in written.items():
        assert b"S3cretPw" not in data and b"4111 1111 1111 1111" not in data, name
    (line,) = (tmp_path / "alerts.jsonl").read_text().splitlines()
    sent = json.loads(line)
    assert sent["message"] == "mysql ran: mysql -uroot -p[REDACTED], card 411111******1111"
    assert sent["redacted"] == ["event.proc.args", "event.proc.cmdline", "events[0].proc.args",
                                "events[0].proc.cmdline", "message"]
    (recorded,) = map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
    assert recorded["proc"]["args"] == ["mysql", "-uroot", "-p[REDACTED]"]
    assert recorded["redacted"] == ["proc.args", "proc.cmdline"]
    # One alert and one event redacted, counted once each (the audit log saw them redacted).
    assert stats.redaction["records"] == 2
    assert stats.redaction["fields"] == {"event.proc.args": 1, "event.proc.cmdline": 1, "events[].proc.args": 1,
                                         "events[].proc.cmdline": 1, "message": 1, "proc.args": 1,
                                         "proc.cmdline": 1}
    (rec,) = [r for r in records(tmp_path / "log") if r["event_type"] == "alert"]
    assert "411111******1111" in rec["details"]["message"] and rec["details"]["redacted"] == sent["redacted"]
    start, end = [r["details"]["redaction"] for r in records(tmp_path / "log") if r["details"].get("redaction")]
    assert start == {"policy": "built-in default", "enabled": True, "pseudonym_key": "audit log"}
    assert end["records"] == 2 and end["pseudonym_key"] == "audit log"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alerts": "-", "sinks": ("-",)}, "would all write to standard output"),
    ({"alerts": "-", "events": "-"}, "would all write to standard output"),
    ({"alerts": "{d}/a.jsonl", "events": "{d}/a.jsonl"}, "--output and --events name the same file"),
    ({"alerts": "{d}/a.jsonl", "sinks": ("file://{d}/a.jsonl",)}, "name the same file"),
    ({"alerts": "{d}/a.jsonl", "files": ("{d}/nodir/summary.json",)}, "no such directory"),
    ({"alerts": None, "store": "{d}/nodir/e.db"}, "no such directory"),
    ({"alerts": None, "audit_log": "{d}"}, "not an audit log directory"),
    ({"alerts": None, "redaction": "{d}/none.yaml"}, "cannot read"),
    ({"alerts": None, "dedup_window": 5.0}, "apply to sinks"),
])
def test_every_output_is_checked_before_the_run(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    def fill(v: Any) -> Any:
        return v.format(d=tmp_path) if isinstance(v, str) else tuple(fill(x) for x in v) if isinstance(v, tuple) else v

    args = {k: fill(v) for k, v in kwargs.items()}
    run_args = {k: args.pop(k) for k in ("alerts", "events", "files") if k in args}
    with pytest.raises(InputError) as e:
        OutputOptions(**args).settings(**run_args)
    assert message in e.value.render()
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_devices_may_take_two_outputs(tmp_path: Path) -> None:
    s = OutputSettings.from_options(None, None, (), "json", None, None, alerts="/dev/null", events="/dev/null")
    assert (s.alerts, s.events) == ("/dev/null", "/dev/null")
