"""Loaded policies: frozen Policy, Rule and the parts of event rules (threshold, sequence)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from secpolicy.dsl import CompiledExpr
from secpolicy.models import Severity
from secpolicy.policy.vars import VarDecl

__all__ = ["Condition", "Policy", "PolicySet", "Rule", "RuleTest", "SequenceSpec", "Threshold"]


@dataclass(frozen=True)
class Condition:
    """One applicability condition: when `expr` is false the rule is NOT_APPLICABLE with
    `reason`. `scope` says whether the policy file or the rule itself states it."""

    expr: CompiledExpr
    reason: str
    source: str  # file:line of the condition
    scope: str = "rule"  # "policy" | "rule"

    def to_dict(self) -> dict[str, Any]:
        return {"if": self.expr.text.strip(), "reason": self.reason, "source": self.source, "scope": self.scope}


@dataclass(frozen=True)
class Threshold:
    count: int
    within: float  # seconds
    by: tuple[str, ...] = ()


@dataclass(frozen=True)
class SequenceSpec:
    by: tuple[str, ...]
    within: float
    steps: tuple[CompiledExpr, ...]


@dataclass(frozen=True)
class RuleTest:
    name: str
    expect: str  # pass | fail | error | not_applicable | fire | no_fire
    root: str | None = None  # absolute path of a fixture root
    files: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    facts: dict[str, Any] | None = None  # argument-less fact -> value, replacing collection
    events: tuple[dict, ...] | None = None
    alerts: int | None = None
    source: str = ""  # file:line
    vars: dict[str, Any] | None = None  # var name -> value (converted), replacing the default


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    policy_id: str
    source: str  # file:line of the rule
    description: str = ""
    rationale: str = ""
    remediation: str = ""
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    enabled: bool = True
    check: CompiledExpr | None = None
    when: CompiledExpr | None = None
    message: str | None = None
    threshold: Threshold | None = None
    sequence: SequenceSpec | None = None
    tests: tuple[RuleTest, ...] = ()
    # Checked in order before the check: the policy file's conditions, then the rule's.
    applicable: tuple[Condition, ...] = ()
    # The vars the check and the applicability conditions read (the scan context aside).
    params: dict[str, VarDecl] = field(default_factory=dict)

    @property
    def is_event_rule(self) -> bool:
        return self.when is not None or self.sequence is not None


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    version: str
    path: str
    sha256: str
    standard: str | None = None
    benchmark: str | None = None
    rules: tuple[Rule, ...] = ()
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    applicable: tuple[Condition, ...] = ()  # conditions stated for every rule of the file
    vars: tuple[VarDecl, ...] = ()  # vars declared in this file

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "version": self.version,
            "standard": self.standard,
            "path": self.path,
            "sha256": self.sha256,
            "rules": len(self.rules),
        }


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]

    @property
    def vars(self) -> dict[str, VarDecl]:
        """Every declared var by name (names are global across the loaded files)."""
        return {v.name: v for p in self.policies for v in p.vars}

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for p in self.policies for r in p.rules)

    @property
    def check_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.check is not None)

    @property
    def event_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.is_event_rule)

    def rule(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None
