"""OCSF 1.3.0 Compliance Finding events (class 2003), one per evaluated rule, as a JSON array
for security data lakes and SIEMs that ingest OCSF."""

from __future__ import annotations

import json
from typing import IO, Any

from secpolicy.models import Finding, Severity, Status
from secpolicy.reports._text import evidence_text, finding_message, waiver_note
from secpolicy.reports.model import Report, parse_time

__all__ = ["OCSF_VERSION", "render", "to_ocsf"]

OCSF_VERSION = "1.3.0"
_CLASS_UID = 2003
_CATEGORY_UID = 2
_ACTIVITY_CREATE = 1

_SEVERITY_ID = {Severity.INFO: 1, Severity.LOW: 2, Severity.MEDIUM: 3, Severity.HIGH: 4, Severity.CRITICAL: 5}
_SEVERITY_CAPTION = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
# compliance.status_id: 1 Pass, 2 Warning ("did not yield a result due to missing
# information": our `error`), 3 Fail, 99 Other (status names it).
_COMPLIANCE_STATUS = {
    Status.PASS: (1, "Pass"),
    Status.FAIL: (3, "Fail"),
    Status.WAIVED: (3, "Fail"),
    Status.ERROR: (2, "Warning"),
    Status.NOT_APPLICABLE: (99, "Not Applicable"),
    Status.SKIPPED: (99, "Skipped"),
}


def _ms(iso: str) -> int:
    return int(parse_time(iso).timestamp() * 1000)


def _tailoring(report: Report) -> dict[str, Any] | None:
    t = report.tailoring
    if not t:
        return None
    return {"id": t["id"], "sha256": t["sha256"], "vars": t.get("vars") or [], "rules": t.get("rules") or []}


def _event(f: Finding, report: Report, time_ms: int) -> dict[str, Any]:
    scan = report.scan
    sev = _SEVERITY_ID[f.severity]
    status_id, status = _COMPLIANCE_STATUS[f.status]
    detail = evidence_text(f.evidence) or f.reason or ""
    if f.status == Status.WAIVED and f.waiver:
        detail = f"waived: {f.waiver.justification}" + (f"\n{detail}" if detail else "")
    compliance: dict[str, Any] = {
        "standards": sorted(f.references) or [f.policy_id or "secpolicy"],
        "requirements": [f"{fw} {req}" for fw, ids in sorted(f.references.items()) for req in ids],
        "control": f.rule_id,
        "status_id": status_id,
        "status": status,
    }
    if detail:
        compliance["status_detail"] = detail
    event: dict[str, Any] = {
        "activity_id": _ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": _CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": _CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": _CLASS_UID * 100 + _ACTIVITY_CREATE,
        "type_name": "Compliance Finding: Create",
        "severity_id": sev,
        "severity": _SEVERITY_CAPTION[sev],
        "time": time_ms,
        "message": finding_message(f),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "secpolicy", "vendor_name": "secpolicy", "version": scan.secpolicy_version},
            "log_name": "secpolicy scan",
            "uid": f"{scan.id}/{f.rule_id}",
            "original_time": scan.started_at,
        },
        "finding_info": {
            "uid": f"{scan.host}/{f.rule_id}",
            "title": f.title,
            "created_time": time_ms,
            "types": ["Compliance"],
            "product_uid": f.policy_id or "secpolicy",
        },
        "compliance": compliance,
        # Finding lifecycle: a waived failure is a reviewed, accepted one.
        "status_id": 3 if f.status == Status.WAIVED else 1,
        "status": "Suppressed" if f.status == Status.WAIVED else "New",
        "resources": [{"name": scan.host, "uid": scan.host, "type": "host", "data": {"root": scan.root}}],
        "unmapped": {
            "secpolicy": {
                "status": f.status.value,
                "severity": f.severity.value,
                "policy_id": f.policy_id,
                "evidence": [e.to_dict() for e in f.evidence],
                "reason": f.reason,
                "rationale": f.rationale,
                "rule_source": f.source,
                "waiver": f.waiver.to_dict() if f.waiver else None,
                "scan_id": scan.id,
                "requirements": [
                    {"framework": r.framework, "id": r.id, "status": r.status, "coverage": r.coverage}
                    for r in report.requirements_for(f)
                ],
                "tailoring": _tailoring(report),
            }
        },
    }
    if f.description:
        event["finding_info"]["desc"] = f.description
    if f.remediation:
        event["remediation"] = {"desc": f.remediation}
    if f.status == Status.WAIVED and f.waiver:
        note = waiver_note(f.waiver)  # "waived: ..." with approver, expiry and hosts
        event["comment"] = note[:1].upper() + note[1:]
    return event


def to_ocsf(report: Report) -> list[dict[str, Any]]:
    time_ms = _ms(report.scan.finished_at)
    return [_event(f, report, time_ms) for f in sorted(report.findings, key=lambda f: f.rule_id)]


def render(report: Report, out: IO[str]) -> None:
    json.dump(to_ocsf(report), out, indent=2, ensure_ascii=False)
    out.write("\n")
