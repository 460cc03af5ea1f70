"""Scan orchestration: select rules, evaluate each compiled check against lazily gathered facts,
turn outcomes (including errors) into findings with evidence, apply waivers, build results."""

from __future__ import annotations

import datetime as dt
import functools
import gc
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

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
from secpolicy.hostid import host_identity
from secpolicy.models import (
    FAILING_STATUSES,
    Evidence,
    Finding,
    Severity,
    Status,
    Waiver,
    valid_host_name,
)
from secpolicy.policy.coverage import compute_coverage
from secpolicy.policy.tailoring import Tailoring
from secpolicy.policy.vars import SCAN_VAR, merged_values, scan_context
from secpolicy.policy.waivers import WaiverSet
from secpolicy.redaction import Redactor
from secpolicy.rules import PolicySet, Rule
from secpolicy.summary import requirement_results, summarize

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
    enabled: Mapping[str, bool] | None = None,
) -> list[Rule]:
    """Enabled rules of the requested profile and framework (a rule serves a framework when
    its `references` name it or its policy declares it as its standard). `enabled` (from a
    tailoring file) overrides a rule's `enabled:`; a rule it enables is scanned whatever the
    profile, as XCCDF tailoring selects it."""
    wanted = set(rule_ids) if rule_ids else None
    std_of = {p.id: p.standard for p in ps.policies}
    enabled = enabled or {}
    out = []
    for r in ps.rules:
        if not enabled.get(r.id, r.enabled):
            continue
        if wanted is not None and r.id not in wanted:
            continue
        if profile and profile not in r.profiles and not enabled.get(r.id):
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
        context = [r for r in against if r.context] if len(deciding) < len(against) else []
    seen: set[tuple] = set()
    picked: list[tuple[TraceRecord, bool]] = []
    for decisive, group in ((True, deciding), (False, context)):
        for r in group:
            key = (r.text, r.observed, r.source)
            if key not in seen:
                seen.add(key)
                picked.append((r, decisive))
    out = [
        Evidence(
            expression=r.text,
            expected=expectation(r.op, r.expected, bool(r.want)),
            observed=r.observed,
            source=r.source,
            decisive=decisive,
        )
        for r, decisive in picked[:_MAX_EVIDENCE]
    ]
    if len(picked) > _MAX_EVIDENCE:
        out.append(Evidence(expression="...", message=f"{len(picked) - _MAX_EVIDENCE} more comparison(s) not shown"))
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
    """The running kernel's name; under --root, the image's /etc/hostname as systemd reads it
    at boot: the first line that is neither empty nor a `#` comment, stripped of blanks. A name the
    kernel would not take (over 64 bytes, HOST_NAME_MAX, or not letters, digits, `-` and `_`
    in dot-separated labels) is shown cut to 64 bytes and marked, never whole: it is on the
    cover and every page header of a report, and an image controls it."""
    if ctx.live:
        return socket.gethostname()
    try:
        text = ctx.read_text("/etc/hostname") or ""
    except EvaluationError:
        text = ""
    # systemd's lines end at \n, \r\n, \r or NUL, and it strips blanks (not VT or other controls).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\n").split("\n")
    name = next((s for s in (line.strip(" \t") for line in lines) if s and not s.startswith("#")), "")
    if not name:
        return f"image:{os.path.basename(ctx.root.rstrip('/')) or ctx.root}"
    if valid_host_name(name):
        return name
    raw = name.encode("utf-8", "surrogateescape")
    return raw[:64].decode("utf-8", "surrogateescape") + "... (not a valid host name: /etc/hostname)"


@dataclass
class ScanResult:
    findings: list[Finding]
    scan: dict[str, Any]
    waiver_report: list[dict[str, Any]] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    lost_events: list[dict[str, Any]] = field(default_factory=list)
    tailoring: dict[str, Any] | None = None
    vars: list[dict[str, Any]] = field(default_factory=list)
    # Check rules the tailoring deselected (XCCDF `notselected`): deliberately not evaluated.
    not_selected: list[dict[str, Any]] = field(default_factory=list)
    # framework -> requirement -> coverage class (automated | partial | manual), and notes
    classes: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)

    def requirements(self) -> dict[str, list[dict[str, Any]]]:
        return requirement_results(self.findings, self.classes, self.notes, self.scan.get("standard"))

    def summary(self) -> dict[str, Any]:
        return summarize(self.findings, self.requirements())

    def to_results(self) -> dict[str, Any]:
        errors = [
            {"rule_id": f.rule_id, "message": f.reason or "", "source": f.source}
            for f in self.findings
            if f.status == Status.ERROR
        ]
        requirements = self.requirements()
        return {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "scan": self.scan,
            "summary": summarize(self.findings, requirements),
            "results": [f.to_dict() for f in self.findings],
            "requirements": requirements,
            "waivers": self.waiver_report,
            "errors": errors,
            "coverage": self.coverage,
            "lost_events": self.lost_events,
            "tailoring": self.tailoring,
            "vars": self.vars,
            "not_selected": self.not_selected,
        }


def _redacted(f: Finding, redactor: Redactor) -> Finding:
    """A finding whose evidence and reason hold no secret the host's files held."""
    evidence = tuple(redactor.evidence(e) for e in f.evidence)
    reason = redactor.text(f.reason) if f.reason else f.reason
    if reason == f.reason and all(a is b for a, b in zip(evidence, f.evidence, strict=True)):
        return f
    return replace(f, evidence=evidence, reason=reason)


P = ParamSpec("P")
R = TypeVar("R")


def _cyclic_gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` with the cyclic collector paused while it runs. A scan allocates many short-lived
    objects (values, trace records, evidence) while the policies and fact caches stay alive:
    the collector would rescan those again and again (about a sixth of a scan's time). What a
    scan leaves in cycles is collected after it."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        collecting = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()

    return run


@_cyclic_gc_paused
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
    context: FactContext | None = None,  # the facts' view of `root` (a remote scan's snapshot)
    today: dt.date | None = None,
    scan_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    tailoring: Tailoring | None = None,
    scan_kind: str | None = None,
    redactor: Redactor | None = None,
) -> ScanResult:
    """Evaluate the selected check rules. A `tailoring` sets var values, may pick the
    profile (when `profile` is not given) and enables or disables rules. Evidence passes
    through `redactor` (the built-in redaction policy when none is given) before it is kept."""
    redactor = redactor or Redactor()
    started = _now()
    ctx = context or FactContext(registry, root, options=options)
    host = _host_name(ctx)
    # Waivers expire by the scan's UTC date, as every report shows its time: the same scan
    # judges a waiver the same way on a host in any time zone.
    today = today or dt.date.fromisoformat(started[:10])
    waivers = waivers or WaiverSet()
    findings: list[Finding] = []
    used: dict[Waiver, str] = {}
    cli_profile = profile
    if tailoring is not None and profile is None:
        profile = tailoring.profile
    values = tailoring.values() if tailoring is not None else {}
    selected = select_rules(
        ps, profile=profile, standard=standard, rule_ids=rule_ids, enabled=tailoring.enabled() if tailoring else None
    )
    for done, rule in enumerate(selected):
        if progress is not None:
            progress(done, len(selected))
        f = evaluate_rule(rule, ctx, values=values, scan_kind=scan_kind)
        active, expired = waivers.for_rule(rule.id, host, today)
        if f.status == Status.FAIL and active is not None:
            f = replace(f, status=Status.WAIVED, waiver=active)
            used[active] = "applied"
        if active is not None:
            used.setdefault(active, "active")
        for w in expired:
            used[w] = "expired"
        if expired and f.status == Status.FAIL and active is None:
            lapsed = tuple(
                Evidence(expression="waiver", message=f"a waiver for this rule expired on {w.expires} ({w.source}): not applied")
                for w in expired
            )
            f = replace(f, evidence=f.evidence + lapsed)
        findings.append(_redacted(f, redactor))
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
        "host_identity": host_identity(ctx, host),
        "root": ctx.root,
        "kind": scan_kind or ("host" if ctx.live else "root"),
        "secpolicy_version": __version__,
        "policies": [p.to_dict() for p in ps.policies],
        "profile": profile,
        "standard": standard,
        "fail_on": fail_on.value,
        "waivers_file": waivers.path,
        "tailoring_file": tailoring.path if tailoring is not None else None,
        "redaction": redactor.summary(),
    }
    classes: dict[str, dict[str, str]] = {}
    notes: dict[str, dict[str, str]] = {}
    for fw, cov in compute_coverage(ps, standard).items():
        classes[fw] = {r: k for k, reqs in (("manual", cov.manual), ("partial", cov.partial), ("automated", cov.automated)) for r in reqs}
        notes[fw] = dict(cov.notes)
    coverage: dict[str, dict[str, list[str]]] = {}
    for p in ps.policies:
        for fw, data in p.coverage.items():
            entry = coverage.setdefault(fw, {"automated": [], "partial": [], "manual": []})
            for k in ("automated", "partial", "manual"):
                entry[k].extend(str(x) for x in data.get(k, []))
    return ScanResult(
        findings, scan_meta, report, coverage,
        tailoring=tailoring.to_dict() if tailoring is not None else None,
        vars=_vars_in_force(selected, values),
        not_selected=_not_selected(ps, tailoring, selected, cli_profile=cli_profile, standard=standard, rule_ids=rule_ids),
        classes=classes,
        notes=notes,
    )


def _not_selected(
    ps: PolicySet,
    tailoring: Tailoring | None,
    selected: Sequence[Rule],
    *,
    cli_profile: str | None,
    standard: str | None,
    rule_ids: Iterable[str] | None,
) -> list[dict[str, Any]]:
    """The check rules the tailoring deselected, as XCCDF reports `notselected`: each rule it
    disables and each rule its profile leaves out, with why and where, so a rule deliberately
    not evaluated is told apart from one nobody thought of. Rules the command line's own
    --profile, --standard or --rule leave out are the operator's choice, not listed."""
    if tailoring is None:
        return []
    changed = {t.rule_id: t for t in tailoring.rules}
    # What would have been scanned without the tailoring's deselections.
    undone = {rid: True for rid, t in changed.items() if not t.enabled}
    # The command line's --profile wins over the tailoring's (as in scan); without one, the
    # rules the tailoring's profile leaves out are its deselections too.
    wanted = select_rules(ps, profile=cli_profile, standard=standard, rule_ids=rule_ids,
                          enabled=tailoring.enabled() | undone)
    scanned = {r.id for r in selected}
    out = []
    for r in wanted:
        if r.id in scanned or r.is_event_rule:
            continue
        t = changed.get(r.id)
        if t is not None and not t.enabled:
            reason, source = f"disabled by tailoring {tailoring.id}: {t.reason}", t.source
        else:
            reason, source = f"not in profile {tailoring.profile} of tailoring {tailoring.id}", tailoring.path
        out.append({
            "rule_id": r.id,
            "title": r.title,
            "severity": r.severity.value,
            "policy_id": r.policy_id,
            "references": {k: list(v) for k, v in r.references.items()},
            "result": "notselected",
            "reason": reason,
            "source": source,
        })
    return out


def _vars_in_force(rules: Sequence[Rule], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every var the scanned rules read, with the value used and whether it was tailored."""
    decls = {n: d for r in rules for n, d in r.params.items()}
    out = []
    for name in sorted(decls):
        d = decls[name]
        tailored = name in values
        out.append(d.to_dict() | {"value": d.show(values[name] if tailored else d.default), "tailored": tailored})
    return out


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
