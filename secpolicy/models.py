"""The data every part of secpolicy shares: statuses, severities, evidence and findings (frozen
dataclasses with `to_dict()`), and the Event and Alert dicts events and alerts travel as."""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Required, TypedDict

__all__ = [
    "FAILING_STATUSES",
    "Alert",
    "AlertAggregate",
    "AlertContext",
    "AlertCoverage",
    "AlertFim",
    "Event",
    "EventType",
    "Evidence",
    "Finding",
    "OutcomeResult",
    "Severity",
    "SeverityName",
    "Status",
    "Waiver",
    "deciding_evidence",
    "deciding_lines",
    "requirement_key",
    "valid_host_name",
    "waiver_host_matches",
]


class Status(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"
    WAIVED = "waived"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


# Statuses that stand in the way of compliance: an error is never a pass.
FAILING_STATUSES = frozenset({Status.FAIL, Status.ERROR})


class Severity(str, enum.Enum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


@dataclass(frozen=True)
class Evidence:
    """One compared sub-expression: what the rule expected, what was observed, and where
    the observed value was read (`path:line`, a /proc file, `default`, ...). `decisive` is
    false for context the verdict did not turn on (a guard such as `sshd.exists` that held
    before the deciding comparison failed)."""

    expression: str
    expected: str | None = None
    observed: str | None = None
    source: str | None = None
    message: str | None = None
    decisive: bool = True
    redacted: tuple[str, ...] = ()  # the fields masked before the evidence left the scan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "expression": self.expression,
            "expected": self.expected,
            "observed": self.observed,
            "source": self.source,
            "message": self.message,
            "decisive": self.decisive,
        }
        if self.redacted:
            out["redacted"] = list(self.redacted)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        return cls(
            expression=d["expression"],
            expected=d.get("expected"),
            observed=d.get("observed"),
            source=d.get("source"),
            message=d.get("message"),
            decisive=d.get("decisive", True),
            redacted=tuple(d.get("redacted") or ()),
        )

    def line(self) -> str:
        """`expression: expected X, observed Y (at source) — message` on one line."""
        parts = []
        if self.expected is not None:
            parts.append(f"expected {self.expected}")
        if self.observed is not None:
            parts.append(f"observed {self.observed}")
        text = self.expression
        if parts:
            text += ": " + ", ".join(parts)
        if self.source:
            text += f" (at {self.source})"
        if self.message:
            text += f" — {self.message}"
        return text

    def describe(self) -> str:
        parts = [self.expression]
        if self.expected is not None:
            parts.append(f"expected {self.expected}")
        if self.observed is not None:
            parts.append(f"observed {self.observed}")
        if self.source:
            parts.append(f"at {self.source}")
        if self.message:
            parts.append(self.message)
        return ": ".join(parts[:1]) + (" — " + "; ".join(parts[1:]) if len(parts) > 1 else "")


def requirement_key(req: str) -> tuple:
    """Sort key reading requirement ids as numbers where they are: 8.3.4 < 8.3.10 < 10.1,
    164.312(b) after 164.312(a)."""
    parts = []
    for p in req.replace("(", ".").replace(")", "").split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return tuple(parts)


def deciding_evidence(evidence: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    """The evidence items a verdict turned on (all of them when none is marked)."""
    return tuple(e for e in evidence if e.decisive) or evidence


def deciding_lines(evidence: Sequence[dict[str, Any]], limit: int = 3) -> list[str]:
    """The deciding evidence of a result dict, one line each, at most `limit` and a count."""
    deciding = deciding_evidence(tuple(Evidence.from_dict(e) for e in evidence))
    lines = [e.line() for e in deciding[:limit]]
    if len(deciding) > limit:
        lines.append(f"and {len(deciding) - limit} more")
    return lines


@dataclass(frozen=True)
class Waiver:
    rule_id: str
    justification: str
    approver: str | None = None
    expires: str | None = None  # ISO date
    hosts: tuple[str, ...] = ()
    source: str | None = None  # file:line of the waiver entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "justification": self.justification,
            "approver": self.approver,
            "expires": self.expires,
            "hosts": list(self.hosts),
        }


_HOST_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def valid_host_name(name: str) -> bool:
    """Whether the kernel would take `name` as a host name as systemd writes one: at most 64
    bytes (HOST_NAME_MAX) of letters, digits, `-` and `_` in dot-separated labels, none
    starting or ending with `-` (one trailing dot allowed)."""
    raw = name.encode("utf-8", "surrogateescape")
    labels = (name[:-1] if name.endswith(".") and "." in name[:-1] else name).split(".")
    return len(raw) <= 64 and all(x and set(x) <= _HOST_LABEL_CHARS and x[0] != "-" and x[-1] != "-" for x in labels)


def waiver_host_matches(host: str, patterns: Sequence[str]) -> bool:
    """Whether a waiver's `hosts` patterns take in `host` (fnmatch, case-sensitive; none: every
    host): what a scan applies and what its reports say it applied. The host name is data read
    from the scanned system: only a valid host name is matched against a pattern, so a name an
    image or a host chose (`web-*`, `web-[x]`, 70 bytes cut and marked) never widens a waiver
    scoped to some hosts into covering it."""
    if not patterns:
        return True
    return valid_host_name(host) and any(fnmatch.fnmatchcase(host, p) for p in patterns)


@dataclass(frozen=True)
class Finding:
    rule_id: str
    title: str
    severity: Severity
    status: Status
    policy_id: str = ""
    description: str = ""
    rationale: str = ""
    remediation: str = ""
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    reason: str | None = None  # why error / not_applicable / skipped
    duration_ms: float = 0.0
    waiver: Waiver | None = None
    source: str | None = None  # policy file:line of the rule

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity.value,
            "status": self.status.value,
            "policy_id": self.policy_id,
            "description": self.description,
            "rationale": self.rationale,
            "remediation": self.remediation,
            "references": {k: list(v) for k, v in self.references.items()},
            "tags": list(self.tags),
            "profiles": list(self.profiles),
            "evidence": [e.to_dict() for e in self.evidence],
            "reason": self.reason,
            "duration_ms": round(self.duration_ms, 3),
            "waiver": self.waiver.to_dict() if self.waiver else None,
            "source": self.source,
        }


# ---- Events and alerts ------------------------------------------------------------------------
# Plain dicts at run time (no conversion, nothing to pay on the hot paths); these TypedDicts say
# their shape to the type checker. secpolicy/schemas/event.schema.json and alert.schema.json are
# the published contract (docs/contracts.md says what each field means); a unit test keeps
# every property and its type here in agreement with them, both ways. A field a source does not
# know is left out, never null: every field is optional but an Event's `type` and `ts`.

EventType = Literal[
    "exec", "open", "write", "unlink", "rename", "chmod", "chown", "connect", "accept", "auth", "setuid",
    "capset", "bpf", "module_load", "ptrace", "mount", "setxattr", "config_change", "account_change",
]
OutcomeResult = Literal["success", "failure"]
SeverityName = Literal["info", "low", "medium", "high", "critical"]  # Severity's values


class EventProc(TypedDict, total=False):
    pid: int
    ppid: int
    tid: int
    comm: str
    exe: str
    cmdline: str  # args joined by single spaces
    args: list[str]
    cwd: str
    uid: int
    euid: int
    gid: int
    egid: int
    auid: int  # left out when unset (4294967295)
    session: int
    tty: str
    ancestors: list[str]  # exe of the parent, grandparent, ...
    pexe: str
    container_id: str
    cgroup: str


class EventUser(TypedDict, total=False):
    """The acting user: the effective uid."""

    uid: int
    name: str


class EventLogin(TypedDict, total=False):
    """The login user: audit login uid and session (left out when the login uid is unset)."""

    uid: int
    name: str
    session: int


class EventFile(TypedDict, total=False):
    path: str
    flags: list[str]  # O_WRONLY, O_CREAT, ...
    mode: int
    target: str  # rename: the new path
    uid: int  # chown: the new owner
    gid: int
    xattr: str  # setxattr: the attribute name


class EventNet(TypedDict, total=False):
    family: Literal["inet", "inet6", "unix"]
    protocol: Literal["tcp", "udp"]
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int


class EventAuth(TypedDict, total=False):
    service: str
    user: str  # the account the attempt was for
    result: OutcomeResult
    rhost: str
    method: str


class EventCred(TypedDict, total=False):
    """The new credentials of setuid and capset."""

    uid: int
    euid: int
    gid: int
    egid: int
    caps: list[str]


class EventBpf(TypedDict, total=False):
    cmd: str
    prog_id: int
    prog_type: str
    name: str
    map_type: str


class EventModule(TypedDict, total=False):
    name: str


class EventPtrace(TypedDict, total=False):
    request: int
    target_pid: int


class EventMount(TypedDict, total=False):
    source: str
    fstype: str
    flags: int


class EventAccount(TypedDict, total=False):
    name: str
    op: str
    group: str


class EventConfig(TypedDict, total=False):
    key: str
    op: str
    old: str
    new: str


class EventOutcome(TypedDict, total=False):
    result: OutcomeResult
    errno: int


class EventAudit(TypedDict, total=False):
    """auditd only: the key (`-k`) of the audit rule that recorded the event."""

    key: str
    keys: list[str]


class EventOrigin(TypedDict, total=False):
    """The `source` object: which reader made the event, from what."""

    name: Literal["ebpf", "auditd", "jsonl"]
    probe: str
    records: list[str]


class Event(TypedDict, total=False):
    type: Required[EventType]
    ts: Required[str]  # YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ, UTC: string order is time order
    host: str
    proc: EventProc
    user: EventUser
    login: EventLogin
    file: EventFile
    net: EventNet
    auth: EventAuth
    cred: EventCred
    bpf: EventBpf
    module: EventModule
    ptrace: EventPtrace
    mount: EventMount
    account: EventAccount
    config: EventConfig
    outcome: EventOutcome
    audit: EventAudit
    source: EventOrigin
    redacted: list[str]  # in events secpolicy wrote: the dotted paths redaction changed


class AlertContext(TypedDict, total=False):
    kind: Required[Literal["match", "threshold", "sequence"]]
    key: Required[dict[str, Any]]  # the values of the rule's `by:` fields by dotted name
    count: Required[int]
    window: Required[list[str]]  # [first ts, last ts]
    events_dropped: int  # correlated events beyond the per-alert cap


class AlertCoverage(TypedDict, total=False):
    """Added by the live monitor when events were lost in the alert's window."""

    lost: int
    lost_by_type: dict[str, int]
    window: list[str]


class AlertPathsMore(TypedDict, total=False):
    count: int
    at_least: bool


class AlertAggregate(TypedDict, total=False):
    """Added by the live monitor's storm control to the alert standing for many."""

    count: Required[int]
    window: Required[list[str]]
    key: Required[dict[str, Any]]
    written_before: int
    paths: dict[str, int]
    paths_more: AlertPathsMore


class AlertFimAttribute(TypedDict, total=False):
    attribute: Required[str]
    old: Any
    new: Any


class AlertFim(TypedDict):
    """Live file integrity alerts: the entry and what changed."""

    path: str
    change: Literal["added", "removed", "changed"]
    type: str
    attributes: list[AlertFimAttribute]
    config: str
    baseline: str


class Alert(TypedDict, total=False):
    rule_id: Required[str]
    severity: Required[SeverityName]
    title: Required[str]
    message: Required[str]
    ts: Required[str]  # of the triggering (for correlations: the last) event
    event: Required[Event]
    events: Required[list[Event]]
    context: Required[AlertContext]
    tags: Required[list[str]]
    references: Required[dict[str, list[str]]]
    coverage: AlertCoverage
    aggregate: AlertAggregate
    fim: AlertFim
    redacted: list[str]  # the dotted paths redaction changed, never their values
