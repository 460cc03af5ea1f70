"""The event rule engine: every event goes through the matcher index to the few rules that
could match it, their compiled conditions, the correlators, and out as alerts (plain dicts).

All matching rules fire, in rule load order. Shared by replay, `secpolicy test` and the live
eBPF monitor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import orjson

from secpolicy.dsl import ALWAYS, NEVER, event_predicate
from secpolicy.events.correlation import (
    Correlation,
    CorrelationLimits,
    MemoryBudget,
    SequenceCorrelator,
    ThresholdCorrelator,
)
from secpolicy.events.matcher import Matcher, step_keys
from secpolicy.events.model import ts_nanos
from secpolicy.models import Alert, AlertContext, Event, SeverityName
from secpolicy.rules import Rule

__all__ = ["CorrelationLimits", "EventEngine", "render_message"]

_dumps = orjson.dumps
_SORT = orjson.OPT_SORT_KEYS
_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def _format(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _compile_message(template: str | None, fallback: str, short: bool = True) -> Callable[[Event], str]:
    """A renderer of `{proc.exe}`-style templates; missing fields render as `?`. `short=False`:
    the generic renderer only (the reference the inline one is tested against)."""
    if not template:
        return lambda ev: fallback
    literals: list[str] = []
    paths: list[tuple[str, ...]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        literals.append(template[pos : m.start()])
        paths.append(tuple(m.group(1).split(".")))
        pos = m.end()
    literals.append(template[pos:])
    pairs = list(zip(paths, literals[1:]))
    head = literals[0]

    def render(ev: Event) -> str:
        out = [head]
        for path, text in pairs:
            cur: Any = ev
            for k in path:
                cur = cur.get(k) if type(cur) is dict else None
                if cur is None:
                    break
            out.append("?" if cur is None else cur if type(cur) is str else _format(cur))
            out.append(text)
        return "".join(out)

    if not short or any(len(p) > 2 for p in paths):
        return render
    # Every placeholder one or two names deep (all the event fields are): read inline.
    inline = [(p[0], p[1] if len(p) == 2 else None, text) for p, text in pairs]

    def render_short(ev: Event) -> str:
        if type(ev) is not dict:
            return render(ev)
        out = [head]
        for a, b, text in inline:
            cur = ev.get(a)
            if b is not None and cur is not None:
                cur = cur.get(b) if type(cur) is dict else None
            out.append("?" if cur is None else cur if type(cur) is str else _format(cur))
            out.append(text)
        return "".join(out)

    return render_short


def render_message(template: str | None, event: Event, fallback: str = "") -> str:
    return _compile_message(template, fallback)(event)


Predicate = Callable[[Event], bool]


def _and(a: Predicate, b: Predicate) -> Predicate:
    if a is NEVER or a is ALWAYS and b is NEVER:
        return NEVER
    if a is ALWAYS:
        return b
    if b is ALWAYS:
        return a
    return lambda ev: a(ev) and b(ev)  # `a` first: it may raise on a malformed event, and is counted


def _condition(rule: Rule, step: int, event_type: str | None) -> Predicate:
    """What an event must satisfy for a rule (`step` -1) or one step of its sequence, under
    the rule's `when` if it has one."""
    when = rule.when
    if step < 0:
        assert when is not None  # a rule without a sequence has a `when`
        return event_predicate(when, event_type)
    assert rule.sequence is not None
    fn = event_predicate(rule.sequence.steps[step], event_type)
    return fn if when is None else _and(event_predicate(when, event_type), fn)


def _for_type(item: _Candidate, event_type: str) -> _Candidate | None:
    rt, step, _ = item
    fn = _condition(rt.rule, step, event_type)
    if fn is NEVER:
        return None
    return (rt, step, None if fn is ALWAYS else fn)


class _RuleRuntime:
    """One rule's compiled pieces and counters."""

    __slots__ = (
        "_tail",
        "alerts",
        "errors",
        "id",
        "kind",
        "references",
        "render",
        "rule",
        "sequence",
        "severity",
        "tags",
        "threshold",
        "title",
    )

    def __init__(self, rule: Rule, limits: CorrelationLimits, budget: MemoryBudget) -> None:
        self.rule = rule
        self.id = rule.id
        self.severity = cast(SeverityName, rule.severity.value)  # the enum's values are these names
        self.title = rule.title
        self.tags = list(rule.tags)
        self.references = {k: list(v) for k, v in rule.references.items()}
        self.render = _compile_message(rule.message, rule.title)
        self.threshold: ThresholdCorrelator | None = None
        self.sequence: SequenceCorrelator | None = None
        seq = rule.sequence
        thr = rule.threshold
        # Times in integer nanoseconds (`ts_nanos`): windows exact to what timestamps carry.
        if seq is not None:
            self.kind = "sequence"
            self.sequence = SequenceCorrelator(len(seq.steps), round(seq.within * 1e9), seq.by, limits, budget)
        elif thr is not None:
            self.kind = "threshold"
            self.threshold = ThresholdCorrelator(thr.count, round(thr.within * 1e9), thr.by, limits, budget)
        else:
            self.kind = "match"
        self.alerts = 0
        self.errors = 0
        self._tail: bytes | None = None  # alert_line's serialized rule parts

    def alert(self, event: Event, corr: Correlation | None) -> Alert:
        self.alerts += 1
        if corr is None:
            ts = event["ts"]
            context: AlertContext = {"kind": "match", "key": {}, "count": 1, "window": [ts, ts]}
            events = [event]
        else:
            context = {"kind": corr.kind, "key": corr.key, "count": corr.count, "window": list(corr.window)}
            if corr.dropped:
                context["events_dropped"] = corr.dropped
            events = corr.events
        return {
            "rule_id": self.id,
            "severity": self.severity,
            "title": self.title,
            "message": self.render(event),
            "ts": event["ts"],
            "event": event,
            "events": events,
            "context": context,
            "tags": self.tags,
            "references": self.references,
        }


    def alert_line(self, event: Event) -> bytes:
        """The JSON line (sorted keys, newline) of the alert `alert(event, None)` would give,
        byte for byte, made from the rule's parts serialized once and the event serialized
        once (the alert holds it twice)."""
        self.alerts += 1
        tail = self._tail
        if tail is None:
            tail = self._tail = b"".join((
                b',"references":', _dumps(self.references, option=_SORT), b',"rule_id":', _dumps(self.id),
                b',"severity":', _dumps(self.severity), b',"tags":', _dumps(self.tags),
                b',"title":', _dumps(self.title), b',"ts":',
            ))
        e = _dumps(event, option=_SORT)
        t = _dumps(event["ts"])
        return b"".join((
            b'{"context":{"count":1,"key":{},"kind":"match","window":[', t, b",", t, b']},"event":', e,
            b',"events":[', e, b'],"message":', _dumps(self.render(event)), tail, t, b"}\n",
        ))


# A rule (or step) filed in the index: its runtime, its step (-1: not a sequence) and its
# condition (None: holds for every event filed with it).
_Candidate = tuple[_RuleRuntime, int, "Predicate | None"]


class EventEngine:
    """`EventEngine(rules).process(event) -> [alert, ...]`; `.stats()` says how much work
    was done and what correlation state was dropped. Rules without `when:`/`sequence:` are
    ignored (check rules)."""

    def __init__(self, rules: Iterable[Rule], *, limits: CorrelationLimits | None = None) -> None:
        self.limits = limits or CorrelationLimits()
        self.budget = MemoryBudget(self.limits.memory_bytes)
        self.runtimes: list[_RuleRuntime] = []
        entries = []
        for rule in rules:
            if not rule.is_event_rule or not rule.enabled:
                continue
            rt = _RuleRuntime(rule, self.limits, self.budget)
            self.runtimes.append(rt)
            keys = step_keys(rule)
            if rule.sequence is not None:
                for i in range(len(rule.sequence.steps)):
                    entries.append((keys[i], (rt, i, _condition(rule, i, None))))
            else:
                entries.append((keys[0], (rt, -1, _condition(rule, -1, None))))
        # The bucket of each event type holds the conditions compiled for that type
        # (comparisons of `type` folded away); one that always holds there is None, not called.
        self.matcher: Matcher[_Candidate] = Matcher(entries, _for_type)
        self._plain = self.matcher.plain_candidates()
        self.events = 0
        self.evaluations = 0

    def process(self, event: Event) -> list[Alert]:
        """Evaluate one event; returns the alerts it raised (often none)."""
        hits = self.evaluate(event)
        return self.apply(event, hits) if hits else []

    def evaluate(self, event: Event) -> list[_Candidate] | None:
        """The rules (and sequence steps) whose condition the event satisfies, in rule order
        (None: none). Conditions read the event alone, so this may run before the events are
        put in time order; `apply` must then see the events in time order."""
        self.events += 1
        cands = self._plain.get(event.get("type"))  # type: ignore[arg-type]
        if cands is None:
            cands = self.matcher.candidates(event)
        if not cands:
            return None
        self.evaluations += len(cands)
        hits: list[_Candidate] | None = None
        for cand in cands:
            fn = cand[2]
            if fn is not None:
                try:
                    if not fn(event):
                        continue
                except Exception:  # noqa: BLE001 - a condition must never take the engine down; count it
                    cand[0].errors += 1
                    continue
            if hits is None:
                hits = [cand]
            else:
                hits.append(cand)
        return hits

    def apply(self, event: Event, hits: Sequence[_Candidate]) -> list[Alert]:
        """The alerts of an event given what `evaluate` found: correlation state moves on."""
        alerts: list[Alert] = []
        now: int | None = None
        pending_rt: _RuleRuntime | None = None
        pending_steps: list[int] = []
        for rt, step, _ in hits:
            if pending_rt is not None and rt is not pending_rt:
                now = self._feed_sequence(pending_rt, pending_steps, event, now, alerts)
                pending_rt = None
                pending_steps = []
            if step >= 0:
                pending_rt = rt
                pending_steps.append(step)
                continue
            if rt.threshold is not None:
                if now is None:
                    now = ts_nanos(event["ts"])
                corr = rt.threshold.feed(event, now)
                if corr is not None:
                    alerts.append(rt.alert(event, corr))
            else:
                alerts.append(rt.alert(event, None))
        if pending_rt is not None:
            self._feed_sequence(pending_rt, pending_steps, event, now, alerts)
        return alerts

    def apply_lines(self, event: Event, hits: Sequence[_Candidate]) -> list[tuple[str, bytes]]:
        """`apply`, each alert as (rule id, its canonical JSON line): what replay writes when
        nothing else takes the alerts. Alerts of plain match rules are never built as dicts."""
        for rt, _, _ in hits:
            if rt.kind != "match":
                return [(a["rule_id"], _dumps(a, option=_LINE)) for a in self.apply(event, hits)]
        return [(rt.id, rt.alert_line(event)) for rt, _, _ in hits]

    def _feed_sequence(
        self,
        rt: _RuleRuntime,
        steps: Sequence[int],
        event: Event,
        now: int | None,
        alerts: list[Alert],
    ) -> int | None:
        if not steps or rt.sequence is None:
            return now
        if now is None:
            now = ts_nanos(event["ts"])
        corr = rt.sequence.feed(event, now, steps)
        if corr is not None:
            alerts.append(rt.alert(event, corr))
        return now

    def stats(self) -> dict[str, Any]:
        """Events seen, condition evaluations, alerts and errors per rule, correlation state."""
        rules: dict[str, Any] = {}
        for rt in self.runtimes:
            entry: dict[str, Any] = {"kind": rt.kind, "alerts": rt.alerts, "errors": rt.errors}
            corr = rt.threshold or rt.sequence
            if corr is not None:
                corr.stats.keys = len(corr.state)  # as of now, swept or not since the last feed
                entry["correlation"] = corr.stats.to_dict()
            rules[rt.id] = entry
        evictions = sum(
            (c.stats.evicted_max_keys + c.stats.evicted_memory)
            for c in (rt.threshold or rt.sequence for rt in self.runtimes)
            if c is not None
        )
        expired = sum(
            c.stats.expired for c in (rt.threshold or rt.sequence for rt in self.runtimes) if c is not None
        )
        return {
            "events": self.events,
            "evaluations": self.evaluations,
            "alerts": sum(rt.alerts for rt in self.runtimes),
            "rules": rules,
            "correlation": {
                "evictions": evictions,
                "expired": expired,
                "memory_estimate_bytes": self.budget.used,
                "memory_limit_bytes": self.budget.limit,
            },
        }
