"""SARIF 2.1.0 report for GitHub code scanning and other SARIF viewers: one rule descriptor
per policy rule, one result per failing or erroring rule, located at the rule's policy file."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import IO, Any
from urllib.parse import quote

from secpolicy.models import Finding, Severity, Status
from secpolicy.reports._text import (
    evidence_line,
    finding_message,
    references_text,
    requirement_line,
    shown_bytes,
)
from secpolicy.reports.model import Report

__all__ = ["render", "to_sarif"]

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub ranks alerts by `security-severity` (CVSS-like 0-10 as a string).
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
# Only problems become results: GitHub code scanning turns every result into an alert,
# whatever its `kind`, and ignores `suppressions`, so passes and waived failures would be
# reported as open alerts. Their counts stay in the run's properties.
_REPORTED = (Status.FAIL, Status.ERROR)

# An evidence source is free text written by a fact (`path:line`, a /proc file, a command, a
# list of paths `a, b and 3 more`, a glob): a file name may itself hold `:12`, `, ` or `*`, so
# it is never parsed into a path and a line. It becomes a physical location only when the
# whole text can only be one absolute path; the text itself stays in the evidence message.
_NOT_ONE_PATH = re.compile(r":\d+$|, | \(|[*?\[]")


def _uri(path: str) -> str:
    """`path` as a URI reference: the file's own bytes percent-encoded (an undecodable byte
    kept by surrogateescape is the byte it stands for, `%FF`), absolute paths as file URIs.
    Policy paths are relative to the repository that holds them, which is where code scanning
    shows them."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a surrogate that no file name can hold
        raw = path.encode("utf-8", "surrogatepass")
    uri = quote(raw, safe="/@-._~")  # a colon in a relative path would read as a scheme
    return "file://" + uri if path.startswith("/") else uri


def _physical(path: str, line: int | None = None) -> dict[str, Any]:
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(path)}}}
    if line is not None and line >= 1:
        loc["physicalLocation"]["region"] = {"startLine": line}
    return loc


def _rule_location(source: str) -> dict[str, Any]:
    """The rule's definition: the policy loader writes it as `PATH:LINE`, always with the
    line, so only the last `:N` is the line (a policy path may hold a colon)."""
    path, sep, line = source.rpartition(":")
    if sep and path and line.isascii() and line.isdigit():
        return _physical(path, int(line))
    return _physical(source)


def _evidence_path(source: str | None) -> str | None:
    """The host file an evidence item was read from, when its source can only be one
    absolute path; else None (the location is then left out, never guessed)."""
    if not source or not source.startswith("/") or _NOT_ONE_PATH.search(source):
        return None
    return source


def _markdown_help(f: Finding) -> str:
    parts = []
    if f.description:
        parts.append(f.description)
    if f.rationale:
        parts.append(f"**Rationale.** {f.rationale}")
    if f.remediation:
        parts.append(f"**Remediation.** {f.remediation}")
    if f.references:
        parts.append(f"**References.** {references_text(f.references)}")
    return "\n\n".join(parts) or f.title


def _rule(f: Finding) -> dict[str, Any]:
    tags = ["security", "compliance", *f.tags, *(f"{fw}:{req}" for fw, ids in sorted(f.references.items()) for req in ids)]
    rule: dict[str, Any] = {
        "id": f.rule_id,
        "name": re.sub(r"[^A-Za-z0-9]+", " ", f.title).title().replace(" ", "") or f.rule_id,
        "shortDescription": {"text": f.title},
        "fullDescription": {"text": f.description or f.title},
        "help": {"text": "\n\n".join(x for x in (f.rationale, f.remediation) if x) or f.title, "markdown": _markdown_help(f)},
        "defaultConfiguration": {"level": _LEVEL[f.severity]},
        "properties": {
            "tags": list(dict.fromkeys(tags)),
            "precision": "very-high",
            "problem.severity": "error" if f.severity.rank >= Severity.HIGH.rank else "warning",
            "security-severity": _SECURITY_SEVERITY[f.severity],
            "severity": f.severity.value,
            "policy_id": f.policy_id,
        },
    }
    return rule


def _level(f: Finding) -> str:
    """The severity's level; a check that could not be evaluated is at least a `warning`:
    an unknown state of a control is never shown as a minor `note`."""
    level = _LEVEL[f.severity]
    return "warning" if f.status == Status.ERROR and level == "note" else level


def _result(f: Finding, index: int, report: Report) -> dict[str, Any]:
    res: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "kind": "fail",  # an error is never a pass; its notification says why it ran not
        "level": _level(f),
        "message": {"text": shown_bytes(finding_message(f))},  # undecodable bytes as \\xNN
        "partialFingerprints": {
            "secpolicyRule/v1": hashlib.sha256(f"{report.scan.host}\0{f.rule_id}".encode()).hexdigest()
        },
        "properties": {
            "status": f.status.value,
            "severity": f.severity.value,
            "evidence": [e.to_dict() for e in f.evidence],
            "references": {k: list(v) for k, v in f.references.items()},
            "requirements": [requirement_line(r) for r in report.requirements_for(f)],
        },
    }
    if f.reason:
        res["properties"]["reason"] = f.reason
    # Code scanning refuses a result without a location: the rule's definition, else its
    # policy file, else the one file the evidence was read from, else the policy by name.
    policy_path = report.policy_paths.get(f.policy_id)
    evidence_path = next((p for p in (_evidence_path(e.source) for e in f.evidence) if p), None)
    if f.source:
        loc = _rule_location(f.source)
    else:
        loc = _physical(policy_path or evidence_path or f.policy_id or "secpolicy")
    res["locations"] = [loc]
    related = []
    for i, e in enumerate(f.evidence):
        path = _evidence_path(e.source)
        if path is not None:
            rel = _physical(path)
            rel["id"] = i
            rel["message"] = {"text": shown_bytes(evidence_line(e))}
            related.append(rel)
    if related:
        res["relatedLocations"] = related
    return res


def to_sarif(report: Report) -> dict[str, Any]:
    findings = sorted(report.findings, key=lambda f: f.rule_id)
    index = {f.rule_id: i for i, f in enumerate(findings)}
    notifications = [
        {
            "level": "error",
            "message": {"text": e.message},
            **({"associatedRule": {"id": e.rule_id, "index": index[e.rule_id]}} if e.rule_id in index else {}),
        }
        for e in report.errors
    ]
    invocation: dict[str, Any] = {
        "executionSuccessful": not report.errors,
        "startTimeUtc": report.scan.started_at,
        "endTimeUtc": report.scan.finished_at,
        "machine": report.scan.host,
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    if report.not_selected:
        # SARIF's own word for a rule the run was configured not to evaluate (XCCDF notselected).
        invocation["ruleConfigurationOverrides"] = [
            {
                "descriptor": {"id": str(x.get("rule_id"))},
                "configuration": {"enabled": False},
                "properties": {"result": "notselected", "reason": x.get("reason"), "source": x.get("source")},
            }
            for x in report.not_selected
        ]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "secpolicy",
                "version": report.scan.secpolicy_version,
                "semanticVersion": report.scan.secpolicy_version,
                "rules": [_rule(f) for f in findings],
            }
        },
        "automationDetails": {"id": f"secpolicy/{report.scan.host}/{report.scan.id}"},
        "invocations": [invocation],
        "results": [_result(f, index[f.rule_id], report) for f in findings if f.status in _REPORTED],
        "properties": {
            "host": report.scan.host,
            "root": report.scan.root,
            "compliance_pct": report.compliance_pct,
            "by_status": dict(report.by_status),
            "waived": [
                {"rule_id": f.rule_id, "justification": f.waiver.justification if f.waiver else None,
                 "approver": f.waiver.approver if f.waiver else None, "expires": f.waiver.expires if f.waiver else None,
                 "hosts": list(f.waiver.hosts) if f.waiver else []}
                for f in findings
                if f.status == Status.WAIVED
            ],
            "frameworks": {fw.name: fw.compliance_pct for fw in report.frameworks},
            "policies": [{"id": p.id, "version": p.version, "sha256": p.sha256} for p in report.scan.policies],
            # Per framework requirement: status rolled up from its rules, coverage class beside it.
            "requirements": {
                fw.name: [
                    {"id": r.id, "status": r.status, "coverage": r.coverage, "rules": list(r.rule_ids)}
                    for r in report.requirements_of(fw.name)
                ]
                for fw in report.frameworks
                if report.requirements_of(fw.name)
            },
            "compliance_note": report.compliance_note,
            "tailoring": report.tailoring,
            "not_selected": [dict(x) for x in report.not_selected],
        },
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: Report, out: IO[str]) -> None:
    json.dump(to_sarif(report), out, indent=2, ensure_ascii=False)
    out.write("\n")
