"""The one report model every renderer reads: a validated results file (the JSON a scan
writes) turned into findings, framework summaries, waivers, errors and trends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import jsonschema_rs

from secpolicy.errors import InputError
from secpolicy.models import Evidence, Finding, Severity, Status, Waiver, waiver_host_matches
from secpolicy.resources import load_schema
from secpolicy.resultsfile import results_bytes, sha256_hex
from secpolicy.summary import requirement_results, summarize

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "STATUS_LABEL",
    "STATUS_ORDER",
    "AuditRef",
    "ErrorEntry",
    "FrameworkSummary",
    "HostInfo",
    "Integrity",
    "MixedHostsError",
    "PolicyInfo",
    "Report",
    "RequirementEntry",
    "ScanInfo",
    "TrendPoint",
    "WaiverEntry",
    "build_report",
    "check_same_host",
    "decided_pct",
    "finding_from_dict",
    "host_label",
    "parse_time",
    "validate_results",
]

# Order in which an auditor reads controls: what needs action first.
STATUS_ORDER = {
    Status.ERROR: 0,
    Status.FAIL: 1,
    Status.WAIVED: 2,
    Status.PASS: 3,
    Status.NOT_APPLICABLE: 4,
    Status.SKIPPED: 5,
}
STATUS_LABEL = {
    Status.PASS: "Pass",
    Status.FAIL: "Fail",
    Status.ERROR: "Error",
    Status.NOT_APPLICABLE: "Not applicable",
    Status.WAIVED: "Waived",
    Status.SKIPPED: "Skipped",
}


@dataclass(frozen=True)
class PolicyInfo:
    id: str
    title: str
    version: str
    sha256: str
    standard: str | None = None
    path: str | None = None
    rules: int | None = None


@dataclass(frozen=True)
class ScanInfo:
    id: str
    host: str
    root: str
    started_at: str
    finished_at: str
    secpolicy_version: str
    policies: tuple[PolicyInfo, ...]
    profile: str | None = None
    standard: str | None = None
    fail_on: str | None = None
    waivers_file: str | None = None

    @property
    def started(self) -> dt.datetime:
        return parse_time(self.started_at)

    @property
    def duration_s(self) -> float:
        return max(0.0, (parse_time(self.finished_at) - self.started).total_seconds())


@dataclass(frozen=True)
class FrameworkSummary:
    """Per-framework outcome (counts and compliance percentage as the scan computed them)
    and the coverage statement: which requirements the packs automate, partly or not at all."""

    name: str
    compliance_pct: float | None
    counts: Mapping[str, int]
    rules: int
    requirements: int | None
    automated: tuple[str, ...] = ()
    partial: tuple[str, ...] = ()
    manual: tuple[str, ...] = ()
    # Per requirement (when the results carry them): counts by rolled-up status, and the
    # share of passing requirements among pass, fail and error.
    requirement_counts: Mapping[str, int] | None = None
    requirements_pct: float | None = None

    @property
    def declared(self) -> int:
        return len(self.automated) + len(self.partial) + len(self.manual)


@dataclass(frozen=True)
class RequirementEntry:
    """One framework requirement: its status rolled up from its rules and its coverage class."""

    framework: str
    id: str
    status: str  # pass | fail | error | waived | not_applicable | not_assessed
    coverage: str  # automated | partial | manual | undeclared
    counts: Mapping[str, int]
    rule_ids: tuple[str, ...] = ()
    note: str | None = None

    @property
    def decided_rules(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("pass", "fail", "error", "waived", "not_applicable"))


@dataclass(frozen=True)
class WaiverEntry:
    rule_id: str
    justification: str
    status: str  # applied | active | expired | unused
    approver: str | None = None
    expires: str | None = None
    hosts: tuple[str, ...] = ()
    source: str | None = None
    # The status of the waived rule's finding in this scan (None: the rule was not evaluated),
    # so the register never lets "active" read as "the rule passed" when it errored.
    rule_status: str | None = None
    host_matched: bool | None = None  # whether `hosts` match the scanned host (None: not known)

    @property
    def effect(self) -> str:
        """What the waiver did in this scan, in words an auditor reads beside its status."""
        st = self.rule_status
        if st is None:
            return "the rule was not evaluated in this scan"
        shown = STATUS_LABEL[Status(st)].lower()
        if self.status == "applied":
            if st == Status.WAIVED.value:
                return "the rule failed; the failure is waived"
            return f"listed as applied, but the rule's result is {shown}"
        if st == Status.ERROR.value:
            return "the rule could not be evaluated (error): a waiver never covers an error"
        if self.status == "active":
            return f"nothing waived: the rule's result is {shown}"
        if self.status == "expired":
            return "past its date: the failure stands" if st == Status.FAIL.value else f"past its date; the rule's result is {shown}"
        if self.host_matched is False:
            return f"not applied: its hosts do not match this host; the rule's result is {shown}"
        return f"not applied: another waiver for the rule came first; the rule's result is {shown}"


@dataclass(frozen=True)
class ErrorEntry:
    message: str
    rule_id: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class TrendPoint:
    """One scan on the compliance-over-time chart."""

    at: str
    scan_id: str
    host: str
    overall_pct: float | None
    frameworks: Mapping[str, float | None]


@dataclass(frozen=True)
class HostInfo:
    """The scanned system and the scanner, from the results' `scan.host_identity`."""

    hostname: str
    machine_id: str | None
    os_name: str | None  # PRETTY_NAME, else ID VERSION_ID, of the scanned root
    os_source: str | None
    live: bool
    kernel: str | None
    addresses: tuple[str, ...]
    virtualization: str | None
    container: str | None
    scanner_host: str
    scanner_uid: int
    scanner_user: str | None
    scanner_kernel: str


@dataclass(frozen=True)
class AuditRef:
    """The audit-log record that holds the SHA-256 of the results (the scan's end)."""

    scan_id: str
    seq: int
    log: str | None = None  # the log directory, when the report was made with it at hand
    # Found by `report --audit-log` in a log it did not verify (the scan itself wrote the record
    # otherwise): the report says so.
    looked_up: bool = False


@dataclass(frozen=True)
class Integrity:
    """What a report renders, pinned: the SHA-256 of the exact results bytes (embedded in the
    PDF as results.json) and, when the scan was recorded, the audit-log record holding it."""

    results_sha256: str
    results_json: bytes
    audit: AuditRef | None = None


@dataclass(frozen=True)
class Report:
    results: Mapping[str, Any]  # the validated results file, for the JSON renderer
    scan: ScanInfo
    findings: tuple[Finding, ...]  # in reading order: errors, failures, waived, pass, ...
    by_status: Mapping[str, int]
    by_severity: Mapping[str, Mapping[str, int]]
    compliance_pct: float | None
    frameworks: tuple[FrameworkSummary, ...]
    waivers: tuple[WaiverEntry, ...] = ()
    errors: tuple[ErrorEntry, ...] = ()
    fim: Mapping[str, Any] | None = None
    events: Mapping[str, Any] | None = None
    lost_events: tuple[Mapping[str, Any], ...] = ()
    trend: tuple[TrendPoint, ...] = ()
    policy_paths: Mapping[str, str] = field(default_factory=dict)
    host: HostInfo | None = None
    integrity: Integrity | None = None
    regressions: Mapping[str, Any] | None = None
    requirements: tuple[RequirementEntry, ...] = ()
    tailoring: Mapping[str, Any] | None = None  # as in the results: sha256, vars, rules
    vars: tuple[Mapping[str, Any], ...] = ()  # every var the scanned rules read, value used
    # Check rules the tailoring deselected (XCCDF `notselected`), with why and where.
    not_selected: tuple[Mapping[str, Any], ...] = ()
    compliance_note: str | None = None

    def requirements_of(self, framework: str) -> tuple[RequirementEntry, ...]:
        return tuple(r for r in self.requirements if r.framework == framework)

    @cached_property
    def _requirement_index(self) -> dict[tuple[str, str], RequirementEntry]:
        return {(r.framework, r.id): r for r in self.requirements}

    def requirements_for(self, f: Finding) -> tuple[RequirementEntry, ...]:
        """The requirements a finding's rule serves, with their rolled-up status."""
        index = self._requirement_index
        return tuple(index[(fw, req)] for fw, ids in sorted(f.references.items()) for req in ids if (fw, req) in index)

    @property
    def total(self) -> int:
        return len(self.findings)

    @property
    def failing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status in (Status.FAIL, Status.ERROR))

    def with_status(self, *statuses: Status) -> tuple[Finding, ...]:
        wanted = set(statuses)
        return tuple(f for f in self.findings if f.status in wanted)

    @property
    def lost_total(self) -> int:
        return sum(_lost_count(e) for e in self.lost_events)


def _lost_count(entry: Mapping[str, Any]) -> int:
    for key in ("count", "lost", "lost_total"):
        v = entry.get(key)
        if isinstance(v, int):
            return v
        if isinstance(v, Mapping):
            return sum(x for x in v.values() if isinstance(x, int))
    return 0


def parse_time(text: str) -> dt.datetime:
    try:
        # Python 3.11 reads a trailing Z itself; a naive time is taken as UTC.
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"results file: not an ISO 8601 date-time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    # Local `$ref`s resolved once up front: validating 5,000 results is a third faster
    # when the validator does not look each reference up again for every item.
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(x, defs) for x in node]
    return node


@lru_cache(maxsize=2)
def _schema(summary_only: bool = False) -> dict[str, Any]:
    schema = load_schema("results")
    schema = _inline_refs(schema, schema.get("$defs", {}))
    if summary_only:
        # Earlier scans feed only the trend (scan and summary) and the fleet roll-up (also the
        # findings' id, status, severity, title and references, which it checks itself); their
        # per-requirement results, four fifths of the validation time, are not read.
        schema["properties"] = dict(schema["properties"])
        schema["properties"]["requirements"] = {"type": "object"}
        # Each finding's id and status are checked by hand in validate_results: a schema walk
        # of every item costs more than all the rest at fleet scale.
        schema["properties"]["results"] = {"type": "array"}
    return schema


@lru_cache(maxsize=2)
def _fast_validator(summary_only: bool) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(_schema(summary_only), validate_formats=True)


def _schema_error(results: dict[str, Any], summary_only: bool) -> jsonschema.ValidationError | None:
    """What the schema refuses in `results`, if anything. A document the compiled validator
    accepts (a few milliseconds for 5,000 findings) is valid; any other is judged, and its
    error chosen, by the reference implementation (a second for 5,000 findings), which has
    the last word: where the two differ the fast one is the stricter (it asserts `date-time`
    formats; tests/fuzz hold it to that)."""
    try:
        accepted = _fast_validator(summary_only).is_valid(results)
    except Exception:  # noqa: BLE001 - a value it cannot take (a lone surrogate in a key): the reference decides
        accepted = False
    if accepted:
        return None
    from jsonschema.exceptions import best_match

    return best_match(_validator(summary_only).iter_errors(results))


@lru_cache(maxsize=2)
def _validator(summary_only: bool) -> jsonschema.protocols.Validator:
    import jsonschema  # only for a document the fast validator refused

    cls = jsonschema.validators.validator_for(_schema(summary_only))
    return cls(_schema(summary_only), format_checker=cls.FORMAT_CHECKER)


def validate_results(results: Any, *, path: str | None = None, summary_only: bool = False,
                     breakdown: bool = True) -> None:
    """Raise InputError naming the first offending place in a results document.
    `summary_only` checks the findings just for their id and status (enough for a trend);
    `breakdown=False` leaves the counts by severity and framework unchecked, for a reader
    that does not read them (the fleet rolls up the findings themselves)."""
    if not isinstance(results, dict):
        raise InputError(f"results file: expected a JSON object, found {type(results).__name__}", path)
    error = _schema_error(results, summary_only)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InputError(f"not a secpolicy results file: at {where}: {error.message}", path)
    seen: set[str] = set()
    for i, r in enumerate(results["results"]):
        if not isinstance(r, dict):
            raise InputError(f"not a secpolicy results file: at results/{i}: {r!r} is not of type 'object'", path)
        if not isinstance(r.get("rule_id"), str) or r.get("status") not in _STATUS:
            what = "rule_id" if not isinstance(r.get("rule_id"), str) else "status"
            raise InputError(f"not a secpolicy results file: at results/{i}: {what} {r.get(what)!r} is not valid", path)
        if r["rule_id"] in seen:
            raise InputError(f"not a secpolicy results file: rule id {r['rule_id']!r} appears twice", path)
        seen.add(r["rule_id"])
    counted = {s.value: 0 for s in Status}
    for r in results["results"]:
        counted[r["status"]] += 1
    declared = results["summary"]["by_status"]
    if results["summary"]["total"] != len(results["results"]) or any(
        declared.get(k) != v for k, v in counted.items()
    ):
        # A summary that disagrees with its own results was edited or truncated.
        raise InputError(
            "results file: summary counts disagree with the results list "
            f"({len(results['results'])} results, summary says {results['summary']['total']})",
            path,
        )
    for key in ("started_at", "finished_at"):
        parse_time(results["scan"][key])
    if breakdown:
        _check_breakdown(results, path, summary_only=summary_only)


def _check_breakdown(results: Mapping[str, Any], path: str | None, *, summary_only: bool) -> None:
    """Refuse a document whose counts by severity and framework, or (unless `summary_only`)
    whose requirement rows, are not what its findings give (the scan's own arithmetic, done
    again): a report states them beside the findings, and an earlier scan's in its trend, and
    must never contradict them. With `summary_only` (earlier scans, whose rows are neither
    validated nor read), each framework's rule counts are checked, not its requirement counts."""
    if summary_only:  # the schema did not check the findings' severity and references: check them here
        for i, r in enumerate(results["results"]):
            refs = r.get("references")
            if r.get("severity") not in _SEVERITY or type(refs) is not dict or not all(
                type(ids) is list and all(type(x) is str for x in ids) for ids in refs.values()
            ):
                raise InputError(f"not a secpolicy results file: at results/{i}: severity or references not valid",
                                 path)
    # What the arithmetic reads of each finding (evidence and texts are not read).
    findings = [_Counted(r["rule_id"], _SEVERITY[r["severity"]], _STATUS[r["status"]], r["references"])
                for r in results["results"]]
    stated_rows = None if summary_only else results.get("requirements")
    if stated_rows is not None:
        declared = {fw: {r["id"]: r["coverage"] for r in reqs} for fw, reqs in stated_rows.items()}
        notes = {fw: {r["id"]: r["note"] for r in reqs if r.get("note") is not None} for fw, reqs in stated_rows.items()}
        want = requirement_results(findings, declared, notes, results["scan"].get("standard"))
        for fw in sorted(set(want) | set(stated_rows)):
            stated = {r["id"]: {**r, "note": r.get("note")} for r in stated_rows.get(fw, ())}
            for row in want.get(fw, ()):
                if stated.pop(row["id"], None) != row:
                    _disagree(f"{fw} requirement {row['id']} (its rules: {_rule_counts(row['rules'])})", path)
            if stated:
                _disagree(f"{fw} requirement {next(iter(stated))} (no result of this file serves it)", path)
    summary = results["summary"]
    got = summarize(findings, stated_rows)
    for sev, counts in got["by_severity"].items():
        if summary["by_severity"].get(sev, counts if not any(counts.values()) else None) != counts:
            _disagree(f"severity {sev} ({_rule_counts(counts)})", path)
    # Percentages are not compared: a report computes them from the counts checked here.
    rows_unread = summary_only and results.get("requirements") is not None
    compared = _RULE_COUNT_KEYS if rows_unread else None
    for fw in sorted(set(got["frameworks"]) | set(summary["frameworks"])):
        want_fw, stated_fw = got["frameworks"].get(fw), summary["frameworks"].get(fw)
        if want_fw is None and rows_unread:
            want_fw = dict.fromkeys(_RULE_COUNT_KEYS, 0)  # a framework of requirement rows alone
        if want_fw is None or stated_fw is None or any(
            stated_fw[k] != want_fw.get(k)
            for k in stated_fw if not k.endswith("compliance_pct") and (compared is None or k in compared)
        ):
            _disagree(f"framework {fw} ({_rule_counts(want_fw) if want_fw else 'no result of this file serves it'})",
                      path)


class _Counted(NamedTuple):
    rule_id: str
    severity: Severity
    status: Status
    references: Mapping[str, Sequence[str]]


_SEVERITY = {s.value: s for s in Severity}
_STATUS = {s.value: s for s in Status}
_RULE_COUNT_KEYS = frozenset({*(s.value for s in Status), "rules"})


def _rule_counts(counts: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts.get(s.value))
    return f"the results give {shown or 'none'}"


def _disagree(what: str, path: str | None) -> NoReturn:
    # Counts that disagree with their own findings were edited or truncated.
    raise InputError(f"results file: the summary or requirement rows disagree with the results list at {what}", path)


def finding_from_dict(d: Mapping[str, Any]) -> Finding:
    w = d.get("waiver")
    waiver = (
        Waiver(
            rule_id=w.get("rule_id", d["rule_id"]),
            justification=w.get("justification", ""),
            approver=w.get("approver"),
            expires=w.get("expires"),
            hosts=tuple(w.get("hosts") or ()),
        )
        if w
        else None
    )
    return Finding(
        rule_id=d["rule_id"],
        title=d["title"],
        severity=Severity(d["severity"]),
        status=Status(d["status"]),
        policy_id=d.get("policy_id") or "",
        description=d.get("description") or "",
        rationale=d.get("rationale") or "",
        remediation=d.get("remediation") or "",
        references={k: tuple(v) for k, v in (d.get("references") or {}).items()},
        tags=tuple(d.get("tags") or ()),
        profiles=tuple(d.get("profiles") or ()),
        evidence=tuple(Evidence.from_dict(e) for e in d.get("evidence") or ()),
        reason=d.get("reason"),
        duration_ms=float(d.get("duration_ms") or 0.0),
        waiver=waiver,
        source=d.get("source"),
    )


def _reading_key(f: Finding) -> tuple[int, int, str]:
    return (STATUS_ORDER[f.status], -f.severity.rank, f.rule_id)


def decided_pct(counts: Mapping[str, Any]) -> float | None:
    """Compliance as the scan computes it, pass / (pass + fail + error), from the counts
    themselves: a report never repeats a stated percentage (an edited summary saying 100%
    while its counts, checked against the results, hold failures)."""
    try:
        passed = int(counts.get("pass", 0))
        decided = passed + int(counts.get("fail", 0)) + int(counts.get("error", 0))
    except (TypeError, ValueError):
        return None
    return round(100.0 * passed / decided, 1) if decided > 0 else None


def _trend_point(results: Mapping[str, Any]) -> TrendPoint:
    s = results["summary"]
    return TrendPoint(
        at=results["scan"]["started_at"],
        scan_id=results["scan"]["id"],
        host=host_label(results["scan"]),
        overall_pct=decided_pct(s["by_status"]),
        frameworks={fw: decided_pct(e) for fw, e in s["frameworks"].items()},
    )


class MixedHostsError(InputError):
    """Results of different hosts where one host is expected (exit 2)."""


def _same_host(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    # The machine-id identifies a system across renames; a hostname is all older results have.
    ia, ib = a.get("host_identity") or {}, b.get("host_identity") or {}
    ma, mb = ia.get("machine_id"), ib.get("machine_id")
    if ma and mb:
        return bool(ma == mb)
    return bool(a.get("host") == b.get("host"))


def host_label(scan: Mapping[str, Any]) -> str:
    ident = scan.get("host_identity") or {}
    mid = ident.get("machine_id")
    return f"{scan.get('host')} (machine-id {mid[:12]})" if mid else str(scan.get("host"))


def check_same_host(docs: Sequence[tuple[str, Mapping[str, Any]]], allow_mixed: bool = False) -> None:
    """Refuse results of more than one host (by machine-id, else hostname), naming them,
    unless `allow_mixed` (then trends and diffs label each scan with its host)."""
    if allow_mixed or len(docs) < 2:
        return
    first_name, first = docs[0]
    for name, doc in docs[1:]:
        if not _same_host(first["scan"], doc["scan"]):
            raise MixedHostsError(
                f"{name} is a scan of {host_label(doc['scan'])}, {first_name} of {host_label(first['scan'])}: "
                "refusing to mix hosts (give --allow-mixed-hosts to compare them anyway)"
            )


def _host_info(scan: Mapping[str, Any]) -> HostInfo | None:
    ident = scan.get("host_identity")
    if not ident:
        return None
    osr = ident.get("os_release") or {}
    os_name = osr.get("pretty_name") or " ".join(x for x in (osr.get("id"), osr.get("version_id")) if x) or None
    kernel = ident.get("kernel")
    sc = ident["scanner"]
    return HostInfo(
        hostname=ident["hostname"],
        machine_id=ident.get("machine_id"),
        os_name=os_name,
        os_source=osr.get("source"),
        live=bool(ident.get("live")),
        kernel=f"{kernel['release']} ({kernel['machine']})" if kernel else None,
        addresses=tuple(ident.get("addresses") or ()),
        virtualization=ident.get("virtualization"),
        container=ident.get("container"),
        scanner_host=sc["hostname"],
        scanner_uid=int(sc["uid"]),
        scanner_user=sc.get("user"),
        scanner_kernel=sc["kernel"],
    )


def build_report(
    results: dict[str, Any],
    history: Sequence[dict[str, Any]] = (),
    *,
    validate: bool = True,
    raw: bytes | None = None,
    audit: AuditRef | None = None,
) -> Report:
    """Validate `results` (and each `history` entry, earlier scans for the trend) and
    build the report model. InputError (exit 2) on a malformed document. `validate=False`
    only for documents that `diff.load_results` has just validated. `raw` is the exact
    results bytes the report pins (default: the canonical serialisation of `results`)."""
    for i, h in enumerate(history if validate else ()):
        try:
            validate_results(h, summary_only=True)
        except InputError as e:
            raise InputError(f"history entry {i + 1}: {e.message}", e.path) from None
    if validate:
        validate_results(results)
    scan = results["scan"]
    policies = tuple(
        PolicyInfo(
            id=p["id"],
            title=p.get("title") or p["id"],
            version=p["version"],
            sha256=p["sha256"],
            standard=p.get("standard"),
            path=p.get("path"),
            rules=p.get("rules"),
        )
        for p in scan["policies"]
    )
    info = ScanInfo(
        id=scan["id"],
        host=scan["host"],
        root=scan["root"],
        started_at=scan["started_at"],
        finished_at=scan["finished_at"],
        secpolicy_version=scan["secpolicy_version"],
        policies=policies,
        profile=scan.get("profile"),
        standard=scan.get("standard"),
        fail_on=scan.get("fail_on"),
        waivers_file=scan.get("waivers_file"),
    )
    findings = tuple(sorted((finding_from_dict(r) for r in results["results"]), key=_reading_key))
    summary = results["summary"]
    coverage = results.get("coverage") or {}
    names = sorted(set(summary["frameworks"]) | set(coverage))
    frameworks = []
    for name in names:
        entry = summary["frameworks"].get(name, {})
        cov = coverage.get(name, {})
        frameworks.append(
            FrameworkSummary(
                name=name,
                compliance_pct=decided_pct(entry),
                counts={s.value: int(entry.get(s.value, 0)) for s in Status},
                rules=int(entry.get("rules", 0)),
                requirements=entry.get("requirements"),
                automated=tuple(cov.get("automated") or ()),
                partial=tuple(cov.get("partial") or ()),
                manual=tuple(cov.get("manual") or ()),
                requirement_counts=entry.get("requirements_by_status"),
                requirements_pct=(decided_pct(entry["requirements_by_status"])
                                  if "requirements_by_status" in entry else None),
            )
        )
    requirements = tuple(
        RequirementEntry(
            framework=fw,
            id=r["id"],
            status=r["status"],
            coverage=r["coverage"],
            counts=dict(r["rules"]),
            rule_ids=tuple(r["rule_ids"]),
            note=r.get("note"),
        )
        for fw, reqs in sorted((results.get("requirements") or {}).items())
        for r in reqs
    )
    rule_status = {f.rule_id: f.status.value for f in findings}
    waivers = tuple(
        WaiverEntry(
            rule_id=w["rule_id"],
            justification=w["justification"],
            status=w["status"],
            approver=w.get("approver"),
            expires=w.get("expires"),
            hosts=tuple(w.get("hosts") or ()),
            source=w.get("source"),
            rule_status=rule_status.get(w["rule_id"]),
            host_matched=_host_matches(scan["host"], w.get("hosts") or ()),
        )
        for w in results.get("waivers") or ()
    )
    errors = tuple(
        ErrorEntry(message=e["message"], rule_id=e.get("rule_id"), source=e.get("source"))
        for e in results.get("errors") or ()
    )
    points = sorted((_trend_point(r) for r in (*history, results)), key=lambda p: parse_time(p.at))
    return Report(
        results=results,
        scan=info,
        findings=findings,
        by_status=dict(summary["by_status"]),
        by_severity={k: dict(v) for k, v in summary["by_severity"].items()},
        compliance_pct=decided_pct(summary["by_status"]),
        frameworks=tuple(frameworks),
        waivers=waivers,
        errors=errors,
        fim=results.get("fim") or None,
        events=results.get("events") or None,
        lost_events=tuple(results.get("lost_events") or ()),
        trend=tuple(points) if history else (),
        policy_paths={p.id: p.path for p in policies if p.path},
        host=_host_info(scan),
        integrity=_integrity(results, raw, audit),
        regressions=results.get("regressions") or None,
        requirements=requirements,
        tailoring=results.get("tailoring") or None,
        vars=tuple(results.get("vars") or ()),
        not_selected=tuple(x for x in results.get("not_selected") or () if isinstance(x, Mapping)),
        compliance_note=summary.get("compliance_note"),
    )


def _host_matches(host: Any, patterns: Sequence[Any]) -> bool | None:
    """As the scan matched a waiver's `hosts` (None: the results file holds no such names)."""
    if not isinstance(host, str) or not all(isinstance(p, str) for p in patterns):
        return None
    return waiver_host_matches(host, patterns)


def _integrity(results: dict[str, Any], raw: bytes | None, audit: AuditRef | None) -> Integrity:
    data = raw if raw is not None else results_bytes(results)
    return Integrity(results_sha256=sha256_hex(data), results_json=data, audit=audit)
