"""Plain-text helpers every renderer shares, so one finding reads the same in CSV, JUnit,
SARIF, OCSF, HTML and PDF: evidence lines, reference lists, severity ranks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from secpolicy.models import Evidence, Finding, Severity, Status, deciding_evidence

__all__ = ["SEVERITY_TITLE", "evidence_line", "evidence_text", "finding_message", "references_text"]

SEVERITY_TITLE = {s: s.value.capitalize() for s in Severity}


def evidence_line(e: Evidence) -> str:
    """`expression: expected X, observed Y (at source) — message` on one line."""
    parts = []
    if e.expected is not None:
        parts.append(f"expected {e.expected}")
    if e.observed is not None:
        parts.append(f"observed {e.observed}")
    text = e.expression
    if parts:
        text += ": " + ", ".join(parts)
    if e.source:
        text += f" (at {e.source})"
    if e.message:
        text += f" — {e.message}"
    return text


def evidence_text(evidence: Iterable[Evidence]) -> str:
    return "\n".join(evidence_line(e) for e in evidence)


def references_text(refs: Mapping[str, Iterable[str]]) -> str:
    return "; ".join(f"{fw} {', '.join(ids)}" for fw, ids in sorted(refs.items()))


def finding_message(f: Finding) -> str:
    """One sentence saying what happened, for formats with a single message field."""
    if f.status == Status.ERROR:
        return f"{f.title}: could not be evaluated: {f.reason or 'unknown error'}"
    if f.status in (Status.NOT_APPLICABLE, Status.SKIPPED):
        return f"{f.title}: {f.status.value.replace('_', ' ')}" + (f" ({f.reason})" if f.reason else "")
    head = {Status.FAIL: "failed", Status.PASS: "passed", Status.WAIVED: "failed, waived"}[f.status]
    text = f"{f.title}: {head}"
    if f.evidence and f.status != Status.PASS:
        # The comparisons the verdict turned on, not a guard it got past.
        deciding = deciding_evidence(f.evidence)
        text += ": " + "; ".join(evidence_line(e) for e in deciding[:3])
        if len(deciding) > 3:
            text += f" (and {len(deciding) - 3} more)"
    return text
