"""The summary of a results document: counts by status, severity and framework, and each
framework's requirements rolled up from their rules. The scan writes it; reports recompute it
from the findings a results file holds and refuse a file whose summary says otherwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from secpolicy.models import Severity, Status, requirement_key

__all__ = ["COMPLIANCE_NOTE", "REQUIREMENT_STATUSES", "Counted", "requirement_results", "summarize"]


class Counted(Protocol):
    """What the summary reads of a finding (a `Finding`, or a lighter record of a results
    file's finding)."""

    @property
    def rule_id(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def status(self) -> Status: ...
    @property
    def references(self) -> Mapping[str, Sequence[str]]: ...


COMPLIANCE_NOTE = (
    "compliance = passing among pass, fail and error; not_applicable, waived and skipped are excluded "
    "(for requirements also not_assessed)"
)
REQUIREMENT_STATUSES = ("pass", "fail", "error", "waived", "not_applicable", "not_assessed")


def _pct(passed: int, decided: int) -> float | None:
    return round(100.0 * passed / decided, 1) if decided else None


def summarize(findings: Sequence[Counted], requirements: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
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
        entry["compliance_pct"] = _pct(entry["pass"], entry["pass"] + entry["fail"] + entry["error"])
        entry["requirements"] = len(entry["requirements"])
    for fw, reqs in (requirements or {}).items():
        entry = frameworks.setdefault(fw, {st.value: 0 for st in Status} | {"rules": 0, "requirements": 0, "compliance_pct": None})
        counts = dict.fromkeys(REQUIREMENT_STATUSES, 0)
        for r in reqs:
            counts[r["status"]] += 1
        entry["requirements"] = len(reqs)
        entry["requirements_by_status"] = counts
        entry["requirements_compliance_pct"] = _pct(counts["pass"], counts["pass"] + counts["fail"] + counts["error"])
    return {
        "total": len(findings),
        "by_status": by_status,
        "by_severity": by_severity,
        "frameworks": dict(sorted(frameworks.items())),
        "compliance_pct": _pct(by_status["pass"], by_status["pass"] + by_status["fail"] + by_status["error"]),
        "compliance_note": COMPLIANCE_NOTE,
    }


def _rolled_up(counts: Mapping[str, int]) -> str:
    """A requirement fails if any of its rules fails; an error means it could not be told."""
    for status in ("fail", "error", "waived", "pass", "not_applicable"):
        if counts[status]:
            return status
    return "not_assessed"


def requirement_results(
    findings: Sequence[Counted],
    classes: Mapping[str, Mapping[str, str]],
    notes: Mapping[str, Mapping[str, str]],
    standard: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per framework (only `standard` when given), every requirement the packs declare
    (`classes`) or a finding references, with its status rolled up from its rules and its
    coverage class beside it."""
    linked: dict[str, dict[str, list[Counted]]] = {}
    for f in findings:
        for fw, ids in f.references.items():
            for req in ids:
                linked.setdefault(fw, {}).setdefault(req, []).append(f)
    out: dict[str, list[dict[str, Any]]] = {}
    for fw in sorted(set(classes) | set(linked)):
        if standard and fw != standard:
            continue
        reqs = set(classes.get(fw, {})) | set(linked.get(fw, {}))
        rows = []
        for req in sorted(reqs, key=requirement_key):
            fs = linked.get(fw, {}).get(req, [])
            counts = {s.value: 0 for s in Status}
            for f in fs:
                counts[f.status.value] += 1
            rows.append({
                "id": req,
                "status": _rolled_up(counts),
                "coverage": classes.get(fw, {}).get(req, "undeclared"),
                "rules": counts,
                "rule_ids": sorted({f.rule_id for f in fs}),
                "note": notes.get(fw, {}).get(req),
            })
        out[fw] = rows
    return out
