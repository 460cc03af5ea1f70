"""CSV report: one row per control (those the tailoring deselected too), RFC 4180 quoting (CRLF line ends, fields with commas,
quotes or line breaks quoted, quotes doubled); cells a spreadsheet would run as a formula are
neutralised with a leading `'` (OWASP CSV injection), and text from the host is inert (escape
sequences, bidi controls and undecodable bytes as `\\xNN`: a CSV is often `cat` or `less`)."""

from __future__ import annotations

import csv
from typing import IO

from secpolicy.reports._text import evidence_text, references_text, requirement_line
from secpolicy.reports.model import Report
from secpolicy.terminal import inert

__all__ = ["COLUMNS", "FORMULA_START", "neutralise", "render"]

# What spreadsheets (Excel, LibreOffice, Google Sheets) start a formula or DDE call with.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """OWASP's defence: a cell starting a formula gets a leading `'`, so `=HYPERLINK(...)`
    planted in a file the scan read shows as text instead of running. Spaces and line breaks
    before it count for nothing: an import that trims them (LibreOffice's "Trim spaces")
    would start the cell with the formula. A cell that already starts with `'` gets one too,
    so dropping one leading `'` always restores the value."""
    return "'" + cell if cell.lstrip(" \n").startswith(FORMULA_START) or cell.startswith("'") else cell

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
    """Every cell is made inert (line breaks and tabs kept) and passes through `neutralise`;
    a reader restores the value by dropping one leading `'` where there is one (the exact
    bytes of what the host held are in the results JSON)."""
    w = csv.writer(out, dialect="excel", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(COLUMNS)
    scan = report.scan
    t = report.tailoring
    tailoring = f"{t['id']} ({t['path']}, sha256 {t['sha256']})" if t else ""
    for f in report.findings:
        cells = (
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
        w.writerow([neutralise(inert(c)) for c in cells])
    # The rules the tailoring deselected: a row each, never silently absent (XCCDF notselected).
    for r in report.not_selected:
        cells = (
            str(r.get("rule_id") or ""),
            str(r.get("title") or ""),
            str(r.get("policy_id") or ""),
            str(r.get("severity") or ""),
            "notselected",
            references_text(r.get("references") or {}),
            "",
            str(r.get("reason") or ""),
            "", "", "", "", "",
            str(r.get("source") or ""),
            scan.host,
            scan.id,
            scan.started_at,
            "",
            tailoring,
        )
        w.writerow([neutralise(inert(c)) for c in cells])
