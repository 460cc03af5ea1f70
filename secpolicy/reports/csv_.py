"""CSV report: one row per control, RFC 4180 quoting (CRLF line ends, fields with commas,
quotes or line breaks quoted, quotes doubled), so spreadsheets and `csv` read it back exactly."""

from __future__ import annotations

import csv
from typing import IO

from secpolicy.reports._text import evidence_text, references_text, requirement_line
from secpolicy.reports.model import Report

__all__ = ["COLUMNS", "render"]

COLUMNS = (
    "rule_id",
    "title",
    "policy_id",
    "severity",
    "status",
    "references",
    "evidence",
    "reason",
    "rationale",
    "remediation",
    "waiver_justification",
    "waiver_approver",
    "waiver_expires",
    "source",
    "host",
    "scan_id",
    "scanned_at",
    "requirements",
    "tailoring",
)


def render(report: Report, out: IO[str]) -> None:
    """Values are written as they are: no formula-escaping prefix, because a leading `'`
    would change evidence such as `-rw-r--r--` and break the exact round trip."""
    w = csv.writer(out, dialect="excel", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(COLUMNS)
    scan = report.scan
    t = report.tailoring
    tailoring = f"{t['id']} ({t['path']}, sha256 {t['sha256']})" if t else ""
    for f in report.findings:
        w.writerow(
            (
                f.rule_id,
                f.title,
                f.policy_id,
                f.severity.value,
                f.status.value,
                references_text(f.references),
                evidence_text(f.evidence),
                f.reason or "",
                f.rationale,
                f.remediation,
                f.waiver.justification if f.waiver else "",
                (f.waiver.approver or "") if f.waiver else "",
                (f.waiver.expires or "") if f.waiver else "",
                f.source or "",
                scan.host,
                scan.id,
                scan.started_at,
                "; ".join(requirement_line(r) for r in report.requirements_for(f)),
                tailoring,
            )
        )
