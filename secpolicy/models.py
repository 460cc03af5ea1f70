"""The data every part of secpolicy shares: statuses, severities, evidence and findings.
Plain frozen dataclasses with `to_dict()` so reports and the results JSON agree."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAILING_STATUSES", "Evidence", "Finding", "Severity", "Status", "Waiver", "deciding_evidence"]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "expected": self.expected,
            "observed": self.observed,
            "source": self.source,
            "message": self.message,
            "decisive": self.decisive,
        }

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


def deciding_evidence(evidence: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
    """The evidence items a verdict turned on (all of them when none is marked)."""
    return tuple(e for e in evidence if e.decisive) or evidence


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
