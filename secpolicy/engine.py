"""Scan orchestration: select rules, evaluate each compiled check against lazily gathered facts,
turn outcomes (including errors) into findings with evidence, apply waivers, build results."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from secpolicy import __version__
from secpolicy.dsl import CompiledExpr, TraceRecord, expectation
from secpolicy.errors import (
    EXIT_NONCOMPLIANT,
    EXIT_OK,
    EXIT_WAIVED_ONLY,
    EvaluationError,
    NotApplicable,
)
from secpolicy.facts.base import FactContext, FactRegistry
from secpolicy.models import FAILING_STATUSES, Evidence, Finding, Severity, Status, Waiver
from secpolicy.policy.model import PolicySet, Rule
from secpolicy.policy.vars import SCAN_VAR, merged_values, scan_context
from secpolicy.policy.waivers import WaiverSet

__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "ScanResult",
    "evaluate_rule",
    "exit_code",
    "lost_events_finding",
    "scan",
    "select_rules",
]

RESULTS_SCHEMA_VERSION = "1.0"
_MAX_EVIDENCE = 25


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def select_rules(
    ps: PolicySet,
    *,
    profile: str | None = None,
    standard: str | None = None,
    rule_ids: Iterable[str] | None = None,
) -> list[Rule]:
    """Enabled rules of the requested profile and framework (a rule serves a framework when
    its `references` name it or its policy declares it as its standard)."""
    wanted = set(rule_ids) if rule_ids else None
    std_of = {p.id: p.standard for p in ps.policies}
    out = []
    for r in ps.rules:
        if not r.enabled:
            continue
        if wanted is not None and r.id not in wanted:
            continue
        if profile and profile not in r.profiles:
            continue
        if standard and standard not in r.references and std_of.get(r.policy_id) != standard:
            continue
        out.append(r)
    return out


def _evidence(records: Sequence[TraceRecord], passed: bool) -> tuple[Evidence, ...]:
    """The comparisons that decided the verdict, first; then, for a failure, the guards it
    got past (`sshd.exists` in `not sshd.exists or ...`), marked as not deciding."""
    relevant = [r for r in records if r.want is not None]
    if passed:
        deciding, context = [r for r in relevant if r.result == r.want], []
    else:
        against = [r for r in relevant if r.result != r.want] or relevant
        deciding = [r for r in against if not r.context] or against
        context = [r for r in against if r.context and r not in deciding]
    seen: set[tuple] = set()
    out: list[Evidence] = []
    for r in deciding + context:
        key = (r.text, r.observed, r.source)
        if key in seen:
            continue
        seen.add(key)
        out.append(Evidence(
            expression=r.text,
            expected=expectation(r.op, r.expected, bool(r.want)),
            observed=r.observed,
            source=r.source,
            decisive=r in deciding,
        ))
    if len(out) > _MAX_EVIDENCE:
        extra = len(out) - _MAX_EVIDENCE
        out = out[:_MAX_EVIDENCE] + [Evidence(expression="...", message=f"{extra} more comparison(s) not shown")]
    return tuple(out)


class _Env:
    """What a compiled check evaluates against (dsl.EvalEnv): the scan's facts and the
    values of vars."""

    __slots__ = ("fact", "values")

    def __init__(self, ctx: FactContext, values: Mapping[str, Any]) -> None:
        self.fact = ctx.fact
        self.values = values

    def var(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise EvaluationError(f"var {name!r} has no value") from None


@dataclass(frozen=True)
class _Outcome:
    """One expression evaluated: its truth, or the status (error, not applicable) and why."""

    value: bool
    trace: list[TraceRecord]
    status: Status | None = None
    reason: str | None = None


def _run(expr: CompiledExpr, env: _Env) -> _Outcome:
    assert expr.traced is not None
    trace: list[TraceRecord] = []
    try:
        return _Outcome(bool(expr.traced(env, trace)), trace)
    except NotApplicable as e:
        return _Outcome(False, trace, Status.NOT_APPLICABLE, e.message)
    except EvaluationError as e:
        return _Outcome(False, trace, Status.ERROR, e.message)
    except RecursionError:
        return _Outcome(False, trace, Status.ERROR, "expression too deeply nested to evaluate")
    except Exception as e:  # noqa: BLE001 - an error is never a pass: unexpected failures are findings too
        frame = traceback.extract_tb(e.__traceback__)[-1]
        reason = f"internal error: {type(e).__name__}: {e} ({os.path.basename(frame.filename)}:{frame.lineno})"
        return _Outcome(False, trace, Status.ERROR, reason)


def _not_applicable(rule: Rule, env: _Env) -> tuple[Status, str, tuple[Evidence, ...]] | None:
    """The verdict of the first applicability condition that does not hold, or None."""
    for cond in rule.applicable:
        text = cond.expr.text.strip()
        out = _run(cond.expr, env)
        if out.status == Status.ERROR:
            reason = f"applicability could not be evaluated: {out.reason}"
            return Status.ERROR, reason, _evidence(out.trace, False) + (Evidence(expression=text, message=reason),)
        if out.status == Status.NOT_APPLICABLE:
            return Status.NOT_APPLICABLE, out.reason or "", (Evidence(expression=text, message=out.reason),)
        if not out.value:
            found = _evidence(out.trace, False)
            if found and found[0].expression == text:  # the condition is one comparison: say why on it
                return Status.NOT_APPLICABLE, cond.reason, (replace(found[0], message=cond.reason),) + found[1:]
            head = Evidence(expression=text, expected="true", observed="false", message=cond.reason)
            return Status.NOT_APPLICABLE, cond.reason, (head,) + found
    return None


def rule_values(rule: Rule, ctx: FactContext, overrides: Mapping[str, Any] | None = None, scan_kind: str | None = None) -> dict[str, Any]:
    """The values a rule's expressions read: its vars (defaults, then `overrides`) and `scan`."""
    values = merged_values(rule.params, overrides)
    values[SCAN_VAR] = scan_context(ctx.root, ctx.live, scan_kind)
    return values


def evaluate_rule(
    rule: Rule, ctx: FactContext, *, values: Mapping[str, Any] | None = None, scan_kind: str | None = None
) -> Finding:
    """Evaluate one check rule: applicability first, then the check. Never raises: an
    exception becomes an ERROR finding. `values` overrides vars (tailoring, inline tests)."""
    base: dict[str, Any] = {
        "rule_id": rule.id,
        "title": rule.title,
        "severity": rule.severity,
        "policy_id": rule.policy_id,
        "description": rule.description,
        "rationale": rule.rationale,
        "remediation": rule.remediation,
        "references": rule.references,
        "tags": rule.tags,
        "profiles": rule.profiles,
        "source": rule.source,
    }
    if rule.check is None:
        return Finding(status=Status.SKIPPED, reason="event rule: evaluated by `secpolicy monitor` or `replay`", **base)
    env = _Env(ctx, rule_values(rule, ctx, values, scan_kind))
    t0 = time.perf_counter()
    verdict = _not_applicable(rule, env)
    if verdict is not None:
        status, why, evidence = verdict
        return Finding(status=status, evidence=evidence, reason=why, duration_ms=(time.perf_counter() - t0) * 1000, **base)
    out = _run(rule.check, env)
    text = rule.check.text
    reason: str | None
    if out.status is None:
        status, reason, evidence = (Status.PASS if out.value else Status.FAIL), None, _evidence(out.trace, out.value)
    elif out.status == Status.NOT_APPLICABLE:
        status, reason, evidence = out.status, out.reason, (Evidence(expression=text, message=out.reason),)
    else:
        status, reason = out.status, out.reason
        evidence = _evidence(out.trace, False) + (Evidence(expression=text, message=out.reason),)
    ms = (time.perf_counter() - t0) * 1000
    return Finding(status=status, evidence=evidence, reason=reason, duration_ms=ms, **base)


def _host_name(ctx: FactContext) -> str:
    if ctx.live:
        return socket.gethostname()
    try:
        name = (ctx.read_text("/etc/hostname") or "").strip()
    except EvaluationError:
        name = ""
    return name or f"image:{os.path.basename(ctx.root.rstrip('/')) or ctx.root}"


@dataclass
class ScanResult:
    findings: list[Finding]
    scan: dict[str, Any]
    waiver_report: list[dict[str, Any]] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    lost_events: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return summarize(self.findings)

    def to_results(self) -> dict[str, Any]:
        errors = [
            {"rule_id": f.rule_id, "message": f.reason or "", "source": f.source}
            for f in self.findings
            if f.status == Status.ERROR
        ]
        return {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "scan": self.scan,
            "summary": self.summary(),
            "results": [f.to_dict() for f in self.findings],
            "waivers": self.waiver_report,
            "errors": errors,
            "coverage": self.coverage,
            "lost_events": self.lost_events,
        }


def summarize(findings: Sequence[Finding]) -> dict[str, Any]:
    by_status = {s.value: 0 for s in Status}
    by_severity: dict[str, dict[str, int]] = {s.value: {st.value: 0 for st in Status} for s in Severity}
    frameworks: dict[str, dict[str, Any]] = {}
    for f in findings:
        by_status[f.status.value] += 1
        by_severity[f.severity.value][f.status.value] += 1
        for fw, ids in f.references.items():
            entry = frameworks.setdefault(fw, {st.value: 0 for st in Status} | {"rules": 0, "requirements": set()})
            entry[f.status.value] += 1
            entry["rules"] += 1
            entry["requirements"].update(ids)
    for entry in frameworks.values():
        decided = entry["pass"] + entry["fail"] + entry["error"]
        entry["compliance_pct"] = round(100.0 * entry["pass"] / decided, 1) if decided else None
        entry["requirements"] = len(entry["requirements"])
    decided = by_status["pass"] + by_status["fail"] + by_status["error"]
    return {
        "total": len(findings),
        "by_status": by_status,
        "by_severity": by_severity,
        "frameworks": dict(sorted(frameworks.items())),
        "compliance_pct": round(100.0 * by_status["pass"] / decided, 1) if decided else None,
    }


def scan(
    ps: PolicySet,
    registry: FactRegistry,
    *,
    root: str = "/",
    waivers: WaiverSet | None = None,
    profile: str | None = None,
    standard: str | None = None,
    rule_ids: Iterable[str] | None = None,
    fail_on: Severity = Severity.LOW,
    options: dict[str, Any] | None = None,
    today: dt.date | None = None,
    scan_id: str | None = None,
) -> ScanResult:
    started = _now()
    ctx = FactContext(registry, root, options=options)
    host = _host_name(ctx)
    today = today or dt.date.today()
    waivers = waivers or WaiverSet()
    findings: list[Finding] = []
    used: dict[Waiver, str] = {}
    for rule in select_rules(ps, profile=profile, standard=standard, rule_ids=rule_ids):
        f = evaluate_rule(rule, ctx)
        active, expired = waivers.for_rule(rule.id, host, today)
        if f.status == Status.FAIL and active is not None:
            f = replace(f, status=Status.WAIVED, waiver=active)
            used[active] = "applied"
        if active is not None:
            used.setdefault(active, "active")
        if expired is not None:
            used[expired] = "expired"
            if f.status == Status.FAIL and active is None:
                note = Evidence(
                    expression="waiver",
                    message=f"a waiver for this rule expired on {expired.expires} ({expired.source}): not applied",
                )
                f = replace(f, evidence=f.evidence + (note,))
        findings.append(f)
    report = []
    for w in waivers.waivers:
        state = used.get(w, "unused")
        report.append(w.to_dict() | {"status": state, "source": w.source})
    finished = _now()
    scan_meta = {
        "id": scan_id or str(uuid.uuid4()),
        "started_at": started,
        "finished_at": finished,
        "host": host,
        "root": ctx.root,
        "secpolicy_version": __version__,
        "policies": [p.to_dict() for p in ps.policies],
        "profile": profile,
        "standard": standard,
        "fail_on": fail_on.value,
        "waivers_file": waivers.path,
    }
    coverage: dict[str, dict[str, list[str]]] = {}
    for p in ps.policies:
        for fw, data in p.coverage.items():
            entry = coverage.setdefault(fw, {"automated": [], "partial": [], "manual": []})
            for k in ("automated", "partial", "manual"):
                entry[k].extend(str(x) for x in data.get(k, []))
    return ScanResult(findings, scan_meta, report, coverage)


LOST_EVENTS_RULE = "secpolicy-monitor-lost-events"


def lost_events_finding(summary: dict[str, Any], source: str) -> Finding:
    """A monitor run as a finding: events the kernel or the user-space queue dropped were never
    evaluated, so coverage for their window is incomplete. Non-zero loss fails."""
    lost = int(summary.get("lost") or 0)
    evidence = [
        Evidence(
            expression=f"lost events of type {etype}",
            expected="0",
            observed=str(n),
            source=source,
        )
        for etype, n in sorted((summary.get("lost_by_type") or {}).items())
    ]
    for w in (summary.get("loss_windows") or [])[:_MAX_EVIDENCE]:
        evidence.append(
            Evidence(
                expression="loss window",
                message=f"{w.get('count')} lost in the {w.get('where')} between {w.get('start')} and {w.get('end')}",
                source=source,
            )
        )
    window = f"{summary.get('events', 0)} events over {summary.get('duration_s', 0):.0f} s"
    return Finding(
        rule_id=LOST_EVENTS_RULE,
        title="The live monitor evaluated every event it was sent",
        severity=Severity.HIGH,
        status=Status.FAIL if lost else Status.PASS,
        policy_id="secpolicy",
        description=f"Monitor run recorded in {source}: {window}.",
        rationale="Events dropped before evaluation are blind spots: no rule could alert on them.",
        remediation="Raise --ringbuf-pages / --queue-max, narrow the loaded event rules, or add CPU.",
        references={"pci-dss": ("10.7.2",), "nist-800-53": ("AU-5",)},
        evidence=tuple(evidence) or (Evidence(expression="lost events", expected="0", observed="0", source=source),),
        reason=None,
    )


def exit_code(findings: Sequence[Finding], fail_on: Severity) -> int:
    """0 compliant; 1 a failing (or erroring) finding at or above `fail_on`; 4 compliant only
    because failures at or above `fail_on` are waived."""
    relevant = [f for f in findings if f.severity.rank >= fail_on.rank]
    if any(f.status in FAILING_STATUSES for f in relevant):
        return EXIT_NONCOMPLIANT
    if any(f.status == Status.WAIVED for f in relevant):
        return EXIT_WAIVED_ONLY
    return EXIT_OK
