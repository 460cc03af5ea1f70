"""JUnit XML report for CI test tabs: one test suite per policy, one test case per rule;
failures (`fail`) and errors (`error`: the check could not run) are distinct elements."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Mapping
from typing import IO, Any

from secpolicy.models import Finding, Status
from secpolicy.reports._text import (
    evidence_text,
    finding_message,
    references_text,
    requirement_line,
    shown_bytes,
    tailoring_lines,
    waiver_note,
)
from secpolicy.reports.model import Report

__all__ = ["render", "xml_safe"]

# Characters XML 1.0 cannot carry at all, even escaped; evidence read from files may hold them.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Characters XML cannot hold as `\\xNN`, and undecodable bytes as theirs (`shown_bytes`)."""
    return shown_bytes(_INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def _details(f: Finding) -> str:
    lines = [f"rule: {f.rule_id} ({f.severity.value})"]
    if f.references:
        lines.append(f"references: {references_text(f.references)}")
    if f.reason:
        lines.append(f"reason: {f.reason}")
    if f.evidence:
        lines.append("evidence:")
        lines.extend("  " + line for line in evidence_text(f.evidence).splitlines())
    if f.remediation:
        lines.append(f"remediation: {f.remediation}")
    if f.source:
        lines.append(f"defined at: {f.source}")
    return xml_safe("\n".join(lines))


def _testcase(parent: ET.Element, f: Finding) -> None:
    case = ET.SubElement(
        parent,
        "testcase",
        name=xml_safe(f"{f.rule_id}: {f.title}"),
        classname=xml_safe(f.policy_id or "secpolicy"),
        time=f"{f.duration_ms / 1000:.6f}",
    )
    if f.status == Status.FAIL:
        el = ET.SubElement(case, "failure", message=xml_safe(finding_message(f)), type=f"{f.severity.value}")
        el.text = _details(f)
    elif f.status == Status.ERROR:
        el = ET.SubElement(case, "error", message=xml_safe(f.reason or "could not be evaluated"), type="EvaluationError")
        el.text = _details(f)
    elif f.status == Status.WAIVED:
        ET.SubElement(case, "skipped", message=xml_safe(waiver_note(f.waiver)))
    elif f.status in (Status.NOT_APPLICABLE, Status.SKIPPED):
        ET.SubElement(case, "skipped", message=xml_safe(f"{f.status.value}: {f.reason or ''}".rstrip(": ")))


def _not_selected_case(parent: ET.Element, x: Mapping[str, Any]) -> None:
    """A rule the tailoring deselected: a skipped case saying so (XCCDF notselected), so the
    CI test tab lists it as deliberately not run rather than leaving it out."""
    case = ET.SubElement(
        parent,
        "testcase",
        name=xml_safe(f"{x.get('rule_id')}: {x.get('title') or ''}".rstrip(": ")),
        classname=xml_safe(str(x.get("policy_id") or "secpolicy")),
        time="0.000000",
    )
    where = f" ({x['source']})" if x.get("source") else ""
    ET.SubElement(case, "skipped", message=xml_safe(f"notselected: {x.get('reason') or ''}{where}"))


def render(report: Report, out: IO[str]) -> None:
    by_policy: dict[str, list[Finding]] = defaultdict(list)
    for f in report.findings:
        by_policy[f.policy_id or "secpolicy"].append(f)
    deselected: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for x in report.not_selected:
        deselected[str(x.get("policy_id") or "secpolicy")].append(x)
        by_policy.setdefault(str(x.get("policy_id") or "secpolicy"), [])
    # JUnit timestamps carry no zone: the scan time in UTC.
    timestamp = report.scan.started.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    root = ET.Element("testsuites")
    for i, (policy, findings) in enumerate(sorted(by_policy.items())):
        findings.sort(key=lambda f: f.rule_id)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=xml_safe(policy),
            package=xml_safe(policy),
            id=str(i),
            timestamp=timestamp,
            hostname=xml_safe(report.scan.host or "localhost"),
            tests=str(len(findings) + len(deselected[policy])),
            failures=str(sum(f.status == Status.FAIL for f in findings)),
            errors=str(sum(f.status == Status.ERROR for f in findings)),
            skipped=str(
                sum(f.status in (Status.WAIVED, Status.NOT_APPLICABLE, Status.SKIPPED) for f in findings) + len(deselected[policy])
            ),
            time=f"{sum(f.duration_ms for f in findings) / 1000:.6f}",
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("scan_id", report.scan.id),
            ("host", report.scan.host),
            ("root", report.scan.root),
            ("secpolicy_version", report.scan.secpolicy_version),
            ("profile", report.scan.profile or ""),
        ):
            ET.SubElement(props, "property", name=name, value=xml_safe(value))
        for p in report.scan.policies:
            if p.id == policy:
                ET.SubElement(props, "property", name="policy_version", value=xml_safe(p.version))
                ET.SubElement(props, "property", name="policy_sha256", value=p.sha256)
        for k, line in enumerate(tailoring_lines(report.tailoring)):
            ET.SubElement(props, "property", name=f"tailoring.{k}", value=xml_safe(line))
        # The requirements this suite's rules serve, with their status over all rules.
        served = {(r.framework, r.id): r for f in findings for r in report.requirements_for(f)}
        for (fw, req), r in sorted(served.items()):
            ET.SubElement(props, "property", name=xml_safe(f"requirement.{fw}.{req}"), value=xml_safe(requirement_line(r)))
        for f in findings:
            _testcase(suite, f)
        for x in sorted(deselected[policy], key=lambda x: str(x.get("rule_id"))):
            _not_selected_case(suite, x)
        ET.SubElement(suite, "system-out").text = ""
        ET.SubElement(suite, "system-err").text = ""
    ET.indent(root)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(root, encoding="unicode"))
    out.write("\n")
