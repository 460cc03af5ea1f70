"""Runs the inline `tests:` of event rules with no kernel: each test's events go through a
fresh EventEngine holding only that rule; the outcome says whether it fired as expected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from secpolicy.errors import InputError
from secpolicy.events.engine import EventEngine
from secpolicy.events.model import event_errors, format_ts, parse_ts
from secpolicy.models import Alert, Event
from secpolicy.rules import Rule, RuleTest

__all__ = ["TestOutcome", "prepare_test_events", "run_rule_tests"]

# Events of a test that give no `ts` are one second apart from this instant, in order.
_BASE_SECONDS = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class TestOutcome:
    name: str
    passed: bool
    detail: str
    rule_id: str = ""
    source: str = ""


def prepare_test_events(events: Any) -> list[Event]:
    """The test's events as engine input: `ts` filled in (1 s apart) or normalised, then
    validated against the Event schema. Raises InputError naming the first bad event."""
    if not isinstance(events, (list, tuple)):
        raise InputError("events: must be a list of events")
    out: list[Event] = []
    for k, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise InputError(f"event {k + 1} is not a mapping")
        ev = dict(ev)
        if "ts" not in ev:
            ev["ts"] = format_ts(_BASE_SECONDS + k)
        elif isinstance(ev["ts"], str):
            ev["ts"] = parse_ts(ev["ts"])
        errors = event_errors(ev)
        if errors:
            raise InputError(f"event {k + 1} is not a valid event: {'; '.join(errors[:3])}")
        out.append(cast(Event, ev))  # it validated against the Event schema
    return out


def _run_one(rule: Rule, test: RuleTest) -> TestOutcome:
    name = test.name
    where = test.source
    rid = rule.id
    try:
        events = prepare_test_events(test.events or ())
    except InputError as exc:
        return TestOutcome(name, False, exc.render(), rid, where)
    engine = EventEngine([rule])
    alerts: list[Alert] = []
    for ev in sorted(events, key=lambda e: e["ts"]):
        alerts.extend(engine.process(ev))
    stats = engine.stats()["rules"].get(rid, {})
    if stats.get("errors"):
        return TestOutcome(name, False, f"the condition raised an error on {stats['errors']} event(s)", rid, where)
    fired = len(alerts)
    expect = test.expect
    want = test.alerts
    if expect == "fire":
        ok = fired > 0 if want is None else fired == want
        wanted = "at least 1 alert" if want is None else f"{want} alert(s)"
    elif expect == "no_fire":
        ok = fired == 0
        wanted = "no alert"
    else:
        return TestOutcome(name, False, f"an event rule's test expects fire or no_fire, not {expect!r}", rid, where)
    detail = f"expected {wanted}, got {fired}"
    if not ok and alerts:
        detail += f" (first: {alerts[0]['message']!r} at {alerts[0]['ts']})"
    return TestOutcome(name, ok, detail, rid, where)


def run_rule_tests(rule: Rule) -> list[TestOutcome]:
    """One outcome per inline test of an event rule."""
    return [_run_one(rule, t) for t in rule.tests]
