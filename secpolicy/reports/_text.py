"""Plain-text helpers every renderer shares, so one finding reads the same in CSV, JUnit,
SARIF, OCSF, HTML and PDF: evidence lines, reference lists, severity ranks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from secpolicy.models import Evidence, Finding, Severity, Status, Waiver, deciding_evidence

__all__ = [
    "SEVERITY_TITLE",
    "evidence_line",
    "evidence_text",
    "finding_message",
    "references_text",
    "requirement_line",
    "shown_bytes",
    "tailoring_lines",
    "waiver_note",
]

SEVERITY_TITLE = {s: s.value.capitalize() for s in Severity}

_UNDECODABLE = re.compile("[\udc80-\udcff]")


def shown_bytes(text: str) -> str:
    """Bytes that are not UTF-8, kept in the results as lone surrogates (surrogateescape),
    as the `\\xNN` escapes the terminal, the FIM and the event outputs show them."""
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def evidence_line(e: Evidence) -> str:
    """`expression: expected X, observed Y (at source) — message` on one line."""
    return e.line()


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


def waiver_note(w: Waiver | None) -> str:
    """`waived: JUSTIFICATION (approved by A, expires D; hosts H)`: every term the waiver has,
    each shown whether or not the others are (an expiry without an approver is still shown)."""
    if w is None:
        return "waived"
    terms = [f"approved by {w.approver}" if w.approver else "", f"expires {w.expires}" if w.expires else ""]
    text = f"waived: {w.justification}"
    details = ", ".join(t for t in terms if t)
    if w.hosts:
        details += ("; " if details else "") + f"hosts {', '.join(w.hosts)}"
    return text + (f" ({details})" if details else "")


def requirement_line(r: Any) -> str:
    """`pci-dss 8.3.4: fail (automated; 2 of 2 rules failing)`, from a RequirementEntry."""
    counts = r.counts
    n = r.decided_rules
    if r.status in ("fail", "error"):
        detail = f"{counts.get(r.status, 0)} of {n} rule(s) {'failing' if r.status == 'fail' else 'in error'}"
    elif n:
        detail = f"{n} rule(s)"
    else:
        detail = "no rule evaluated"
    return f"{r.framework} {r.id}: {r.status.replace('_', ' ')} ({r.coverage}; {detail})"


def tailoring_lines(t: Mapping[str, Any] | None) -> list[str]:
    """The tailoring used, one line each: the file, the profile, every var and rule changed."""
    if not t:
        return []
    lines = [f"tailoring {t['id']} ({t['title']}): {t['path']}, sha256 {t['sha256']}"]
    if t.get("profile"):
        lines.append(f"profile {t['profile']}")
    lines.extend(f"var {v['name']} = {v['value']} (default {v['default']})" for v in t.get("vars") or ())
    for r in t.get("rules") or ():
        state = "enabled" if r["enabled"] else "disabled"
        default = "enabled" if r["default_enabled"] else "disabled"
        lines.append(f"rule {r['rule_id']} {state} (default {default}): {r['reason']}")
    return lines
