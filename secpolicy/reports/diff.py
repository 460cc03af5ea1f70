"""Scan-to-scan comparison for CI gating and pull-request comments: which rules newly fail,
which were fixed, which changed status otherwise, and which rules appeared or disappeared."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from secpolicy.errors import InputError
from secpolicy.models import Severity, deciding_lines, requirement_key
from secpolicy.reports.model import decided_pct, host_label, validate_results
from secpolicy.resultsfile import read_json_file
from secpolicy.terminal import inert, inert_line

__all__ = ["DIFF_FORMATS", "Change", "Diff", "RequirementChange", "diff_results", "load_results", "read_results", "render_diff"]

_FAILING = frozenset({"fail", "error"})
DIFF_FORMATS = ("table", "json", "markdown")


@dataclass(frozen=True)
class Change:
    """One rule between two scans; `old_status` is None for a rule new in the later scan,
    `new_status` None for one that disappeared."""

    rule_id: str
    title: str
    severity: str
    old_status: str | None
    new_status: str | None
    evidence: str = ""  # the later scan's first evidence line, when failing

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "old_status": self.old_status,
            "new_status": self.new_status,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RequirementChange:
    """A framework requirement whose rolled-up status changed between the scans."""

    framework: str
    id: str
    coverage: str
    old_status: str | None
    new_status: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "id": self.id,
            "coverage": self.coverage,
            "old_status": self.old_status,
            "new_status": self.new_status,
        }


@dataclass(frozen=True)
class Diff:
    old_scan: Mapping[str, Any]
    new_scan: Mapping[str, Any]
    new_failures: tuple[Change, ...]  # not failing before (or absent), failing now
    fixed: tuple[Change, ...]  # seen failing before, passing now (error -> pass is in `changed`)
    changed: tuple[Change, ...]  # every other status change of a rule in both scans
    added_rules: tuple[Change, ...]
    removed_rules: tuple[Change, ...]
    old_pct: float | None = None
    new_pct: float | None = None
    requirement_changes: tuple[RequirementChange, ...] = ()
    tailoring_changes: tuple[str, ...] = ()  # what the scans were told differently

    @property
    def regressed(self) -> bool:
        return bool(self.new_failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_scan": {k: self.old_scan.get(k) for k in ("id", "host", "started_at")},
            "new_scan": {k: self.new_scan.get(k) for k in ("id", "host", "started_at")},
            "compliance_pct": {"old": self.old_pct, "new": self.new_pct},
            "new_failures": [c.to_dict() for c in self.new_failures],
            "fixed": [c.to_dict() for c in self.fixed],
            "changed": [c.to_dict() for c in self.changed],
            "added_rules": [c.to_dict() for c in self.added_rules],
            "removed_rules": [c.to_dict() for c in self.removed_rules],
            "requirement_changes": [c.to_dict() for c in self.requirement_changes],
            "tailoring_changes": list(self.tailoring_changes),
        }


def read_results(path: str, *, summary_only: bool = False) -> tuple[dict[str, Any], bytes]:
    """Read and validate a results file: the document and the exact bytes read (what a
    report's SHA-256 covers). InputError names the file and what is wrong, with a line and
    column for malformed JSON and hostile values (huge integers, NaN, deep nesting).
    `summary_only` (earlier scans for a trend) checks findings only for id and status."""
    doc, raw = read_json_file(path, "results file")
    try:
        validate_results(doc, path=path, summary_only=summary_only)
    except InputError as e:
        raise InputError(e.message, path) from None
    return doc, raw


def load_results(path: str, *, summary_only: bool = False) -> dict[str, Any]:
    return read_results(path, summary_only=summary_only)[0]


def _severity_rank(sev: str) -> int:
    try:
        return Severity(sev).rank
    except ValueError:
        return -1


def _first_evidence(r: Mapping[str, Any]) -> str:
    if r.get("status") == "error" and r.get("reason"):
        return str(r["reason"])
    # The comparisons the verdict turned on, not a guard it got past (`decisive: false`).
    return "; ".join(deciding_lines(r.get("evidence") or ())) or str(r.get("reason") or "")


def _not_selected(doc: Mapping[str, Any]) -> dict[str, str]:
    """rule id -> "notselected" for each check rule the scan's tailoring deselected."""
    rows = doc.get("not_selected")
    if not isinstance(rows, list):
        return {}
    return {r["rule_id"]: "notselected" for r in rows if isinstance(r, Mapping) and isinstance(r.get("rule_id"), str)}


def _change(rid: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
            old_status: str | None = None, new_status: str | None = None) -> Change:
    base = new or old
    assert base is not None
    return Change(
        rule_id=rid,
        title=base["title"],
        severity=base["severity"],
        old_status=old["status"] if old else old_status,
        new_status=new["status"] if new else new_status,
        evidence=_first_evidence(new) if new and new["status"] in _FAILING else "",
    )


def _order(c: Change) -> tuple[int, str]:
    return (-_severity_rank(c.severity), c.rule_id)


def diff_results(old: dict[str, Any], new: dict[str, Any]) -> Diff:
    """Compare two validated results documents rule by rule (by rule id).

    A rule counts as a new failure when it fails or errors now and did not before, including
    a rule that did not exist before (the baseline never accepted it) and a waived failure
    whose waiver lapsed. Fail -> pass is fixed; any other status change is `changed`,
    error -> pass among them: the control was never seen failing, so nothing is known to have
    been fixed (only that it could now be checked). The compliance percentages are computed
    from the results themselves, as the scan computes them, not taken from the summary."""
    validate_results(old)
    validate_results(new)
    before = {r["rule_id"]: r for r in old["results"]}
    after = {r["rule_id"]: r for r in new["results"]}
    # A rule absent from one scan's results because its tailoring deselected it says so
    # (XCCDF `notselected`) rather than "(absent)": deselected is not gone, nor fixed.
    deselected_before, deselected_after = _not_selected(old), _not_selected(new)
    new_failures, fixed, changed, added, removed = [], [], [], [], []
    for rid, n in after.items():
        o = before.get(rid)
        if o is None:
            c = _change(rid, None, n, old_status=deselected_before.get(rid))
            added.append(c)
            if n["status"] in _FAILING:
                new_failures.append(c)
            continue
        if o["status"] == n["status"]:
            continue
        c = _change(rid, o, n)
        if n["status"] in _FAILING and o["status"] not in _FAILING:
            new_failures.append(c)
        elif o["status"] == "fail" and n["status"] == "pass":
            fixed.append(c)
        else:
            changed.append(c)
    for rid, o in before.items():
        if rid not in after:
            removed.append(_change(rid, o, None, new_status=deselected_after.get(rid)))
    return Diff(
        old_scan=old["scan"],
        new_scan=new["scan"],
        new_failures=tuple(sorted(new_failures, key=_order)),
        fixed=tuple(sorted(fixed, key=_order)),
        changed=tuple(sorted(changed, key=_order)),
        added_rules=tuple(sorted(added, key=_order)),
        removed_rules=tuple(sorted(removed, key=_order)),
        old_pct=_compliance_pct(old),
        new_pct=_compliance_pct(new),
        requirement_changes=_requirement_changes(old, new),
        tailoring_changes=_tailoring_changes(old, new),
    )


def _compliance_pct(doc: Mapping[str, Any]) -> float | None:
    # From the results themselves: a summary edited to read 100% cannot make the diff say so
    # while the results list failures.
    return decided_pct(Counter(r["status"] for r in doc["results"]))


def _requirement_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[RequirementChange, ...]:
    def index(doc: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
        return {(fw, r["id"]): r for fw, rows in (doc.get("requirements") or {}).items() for r in rows}

    before, after = index(old), index(new)
    out = []
    for key in sorted(set(before) | set(after), key=lambda k: (k[0], requirement_key(k[1]))):
        o, n = before.get(key), after.get(key)
        if o is not None and n is not None and o["status"] == n["status"]:
            continue
        coverage = (n or o or {}).get("coverage", "undeclared")
        out.append(RequirementChange(key[0], key[1], coverage, o["status"] if o else None, n["status"] if n else None))
    return tuple(out)


def _tailoring_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """Differences in what the scans were told: the tailoring file and every var's value."""
    out = []
    to, tn = old.get("tailoring"), new.get("tailoring")
    if (to or {}).get("sha256") != (tn or {}).get("sha256"):
        def name(t: Mapping[str, Any] | None) -> str:
            return f"{t['id']} (sha256 {t['sha256'][:12]}...)" if t else "none"

        out.append(f"tailoring {name(to)} -> {name(tn)}")
    vo = {v["name"]: v["value"] for v in old.get("vars") or ()}
    vn = {v["name"]: v["value"] for v in new.get("vars") or ()}
    for var in sorted(set(vo) | set(vn)):
        if vo.get(var) != vn.get(var):
            out.append(f"var {var}: {vo.get(var, '(not read)')} -> {vn.get(var, '(not read)')}")
    ro = {r["rule_id"]: r for r in (to or {}).get("rules") or ()}
    rn = {r["rule_id"]: r for r in (tn or {}).get("rules") or ()}
    for rid in sorted(set(ro) | set(rn)):
        o, r = ro.get(rid), rn.get(rid)
        if r is None:
            # No longer tailored: back to its default, which undoes what OLD's tailoring did.
            assert o is not None
            if o["enabled"] != o["default_enabled"]:
                was, now = ("disabled", "enabled") if o["default_enabled"] else ("enabled", "disabled")
                out.append(f"rule {rid} {now} again, no longer tailored (the earlier tailoring {was} it: {o['reason']})")
        elif (o["enabled"] if o else None) != r["enabled"]:
            out.append(f"rule {rid} {'enabled' if r['enabled'] else 'disabled'} by tailoring: {r['reason']}")
    return tuple(out)


# rendering ---------------------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}%"


def _status_pair(c: Change, arrow: str = "->") -> str:
    return f"{c.old_status or '(absent)'} {arrow} {c.new_status or '(absent)'}"


_SECTIONS = (
    ("new_failures", "New failures"),
    ("fixed", "Fixed"),
    ("changed", "Other status changes"),
    ("added_rules", "Rules added"),
    ("removed_rules", "Rules removed"),
)


def _headline(d: Diff) -> str:
    return (
        f"{len(d.new_failures)} new failure(s), {len(d.fixed)} fixed, {len(d.changed)} other change(s), "
        f"{len(d.added_rules)} rule(s) added, {len(d.removed_rules)} removed; "
        f"compliance {_pct(d.old_pct)} -> {_pct(d.new_pct)}"
    )


class _Inert:
    """A text stream that makes what is written inert for a terminal (newlines kept)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(inert(text))

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


def _render_table(d: Diff, sink: IO[str]) -> None:
    out = _Inert(sink)  # titles, evidence and hosts come from scanned hosts and policies
    for label, scan in (("old", d.old_scan), ("new", d.new_scan)):
        # one line each: a newline in a host name or a title must not start a line of its own
        out.write(inert_line(f"{label}: {scan.get('host')} {scan.get('started_at')} ({scan.get('id')})") + "\n")
    out.write(_headline(d) + "\n")
    for attr, title in _SECTIONS:
        items: tuple[Change, ...] = getattr(d, attr)
        if not items:
            continue
        out.write(f"\n{title} ({len(items)}):\n")
        w_id = max(len(c.rule_id) for c in items)
        for c in items:
            out.write(inert_line(f"  {c.rule_id:<{w_id}}  {c.severity:<8}  {_status_pair(c):<26}  {c.title}") + "\n")
            if c.evidence:
                out.write(f"  {'':<{w_id}}  {'':<8}  {inert_line(c.evidence)}\n")
    if d.requirement_changes:
        out.write(f"\nRequirement status changes ({len(d.requirement_changes)}):\n")
        for r in d.requirement_changes:
            pair = f"{r.old_status or '(absent)'} -> {r.new_status or '(absent)'}"
            out.write(inert_line(f"  {r.framework} {r.id:<12}  {pair:<30}  ({r.coverage})") + "\n")
    if d.tailoring_changes:
        out.write(f"\nTailoring and values ({len(d.tailoring_changes)}):\n")
        out.writelines(f"  {inert_line(line)}\n" for line in d.tailoring_changes)


def _md_cell(text: str) -> str:
    # Pipes end a table cell and newlines end the row; backticks and angle brackets would
    # let a rule title inject markup into the comment. Control characters (escape sequences
    # a terminal would act on) and bidi overrides are shown as their `\xNN` escapes.
    text = inert(text.replace("\r", " ").replace("\n", " "))
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("`", "\\`")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


# GitHub refuses comments over 65,536 characters; rows past this many per section are counted,
# not listed, and the JSON form keeps them all.
MARKDOWN_ROWS = 100


def _render_markdown(d: Diff, out: IO[str], limit: int = MARKDOWN_ROWS) -> None:
    mark = ":x:" if d.new_failures else ":white_check_mark:"
    out.write(f"### {mark} secpolicy: {len(d.new_failures)} new failure(s), {len(d.fixed)} fixed\n\n")
    hosts = _md_cell(host_label(d.new_scan))
    if host_label(d.old_scan) != host_label(d.new_scan):  # --allow-mixed-hosts: name both, in order
        hosts = f"{_md_cell(host_label(d.old_scan))} → {hosts}"
    out.write(
        f"Compliance **{_pct(d.old_pct)} → {_pct(d.new_pct)}** on {hosts} "
        f"(baseline scan {_md_cell(str(d.old_scan.get('started_at')))}, this scan {_md_cell(str(d.new_scan.get('started_at')))}).\n"
    )
    for attr, title in _SECTIONS:
        items: tuple[Change, ...] = getattr(d, attr)
        if not items:
            continue
        out.write(f"\n#### {title} ({len(items)})\n\n| Rule | Severity | Status | Title | Evidence |\n|---|---|---|---|---|\n")
        for c in items[:limit]:
            evidence = c.evidence if len(c.evidence) <= 300 else c.evidence[:299] + "…"
            out.write(
                f"| {_md_cell(c.rule_id)} | {c.severity} | {_md_cell(_status_pair(c, '→'))} | "
                f"{_md_cell(c.title)} | {_md_cell(evidence)} |\n"
            )
        if len(items) > limit:
            out.write(f"\n…and {len(items) - limit} more ({title.lower()}); `secpolicy diff --format json` lists them all.\n")
    if d.requirement_changes:
        rows = d.requirement_changes
        out.write(f"\n#### Requirement status changes ({len(rows)})\n\n| Framework | Requirement | Status | Coverage |\n|---|---|---|---|\n")
        for r in rows[:limit]:
            pair = f"{r.old_status or '(absent)'} → {r.new_status or '(absent)'}"
            out.write(f"| {_md_cell(r.framework)} | {_md_cell(r.id)} | {_md_cell(pair)} | {r.coverage} |\n")
        if len(rows) > limit:
            out.write(f"\n…and {len(rows) - limit} more; `secpolicy diff --format json` lists them all.\n")
    if d.tailoring_changes:
        out.write("\n#### Tailoring and values\n\n")
        out.writelines(f"- {_md_cell(line)}\n" for line in d.tailoring_changes)
    if not any(getattr(d, a) for a, _ in _SECTIONS):
        out.write("\nNo rule changed status.\n")


def render_diff(d: Diff, fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        json.dump(d.to_dict(), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "markdown":
        _render_markdown(d, out)
    elif fmt == "table":
        _render_table(d, out)
    else:
        raise InputError(f"unknown diff format {fmt!r}; choose one of {', '.join(DIFF_FORMATS)}")
