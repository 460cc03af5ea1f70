"""The rule model every layer shares: Policy, Rule, the parts of event rules (threshold,
sequence), inline tests and declared vars. policy/ builds them from YAML; the rest reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from secpolicy.dsl import CompiledExpr, parse_duration, parse_size
from secpolicy.dsl.lint import LintWarning
from secpolicy.dsl.types import (
    BOOL,
    DURATION,
    FLOAT,
    INT,
    MODE,
    SIZE,
    STR,
    ListType,
    Type,
    format_value,
)
from secpolicy.models import Severity

__all__ = [
    "VAR_TYPES",
    "Condition",
    "Policy",
    "PolicySet",
    "Rule",
    "RuleTest",
    "SequenceSpec",
    "Threshold",
    "VarDecl",
    "convert_value",
]

# The types a var may have, as written in `type:`.
VAR_TYPES: dict[str, Type] = {
    "string": STR,
    "int": INT,
    "float": FLOAT,
    "bool": BOOL,
    "mode": MODE,
    "duration": DURATION,
    "size": SIZE,
    "list[string]": ListType(STR),
    "list[int]": ListType(INT),
}

_MODE = re.compile(r"^0o[0-7]+$")


def _scalar(type_name: str, raw: Any) -> Any:
    if type_name == "string":
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {_kind(raw)}")
        return raw
    if type_name == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"expected an integer, got {_kind(raw)}")
        return raw
    if type_name == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(f"expected a number, got {_kind(raw)}")
        return float(raw)
    if type_name == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {_kind(raw)}")
        return raw
    if type_name == "mode":
        if not isinstance(raw, str) or not _MODE.match(raw):
            raise ValueError(f"expected a mode written in octal like 0o640, got {_kind(raw)}")
        return int(raw, 0)
    if type_name == "duration":
        if not isinstance(raw, str):
            raise ValueError(f"expected a duration with its unit like 15m or 90d, got {_kind(raw)}")
        return parse_duration(raw)
    if type_name == "size":
        if not isinstance(raw, str):
            raise ValueError(f"expected a size with its unit like 10MB or 4KiB, got {_kind(raw)}")
        return parse_size(raw)
    raise ValueError(f"unknown type {type_name!r}")  # pragma: no cover - the schema lists them


def _kind(raw: Any) -> str:
    if raw is None:
        return "nothing (null)"
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    if isinstance(raw, (int, float)):
        return f"the number {raw}"
    if isinstance(raw, str):
        return f"the string {raw!r}"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "a mapping"
    return type(raw).__name__


def convert_value(type_name: str, raw: Any) -> Any:
    """The run-time value of `raw` (as read from YAML) for a var of `type_name`.
    Raises ValueError saying what was expected; lists become tuples."""
    if type_name.startswith("list["):
        if not isinstance(raw, list):
            raise ValueError(f"expected a list, got {_kind(raw)}")
        elem = type_name[5:-1]
        out = []
        for i, item in enumerate(raw):
            try:
                out.append(_scalar(elem, item))
            except ValueError as e:
                raise ValueError(f"item {i + 1}: {e}") from None
        return tuple(out)
    return _scalar(type_name, raw)


@dataclass(frozen=True)
class VarDecl:
    """A declared var: its type, default and documentation, and the bounds a tailoring
    file must respect (`min`/`max` for numbers, modes, durations, sizes; `choices`)."""

    name: str
    type_name: str
    default: Any
    description: str
    source: str  # file:line of the declaration
    minimum: Any = None
    maximum: Any = None
    choices: tuple[Any, ...] | None = None

    @property
    def type(self) -> Type:
        return VAR_TYPES[self.type_name]

    @property
    def elem_type(self) -> str:
        return self.type_name[5:-1] if self.type_name.startswith("list[") else self.type_name

    def show(self, value: Any) -> str:
        """A value in the notation a policy author writes (0o640, 15m, 10MB, "text")."""
        return format_value(value, self.type)

    def check(self, raw: Any) -> Any:
        """Convert and check a value (from a tailoring file or a test). Raises ValueError."""
        value = convert_value(self.type_name, raw)
        self.check_bounds(value)
        return value

    def check_bounds(self, value: Any) -> None:
        items = value if isinstance(value, tuple) else (value,)
        elem = VAR_TYPES[self.elem_type]
        for v in items:
            if self.minimum is not None and v < self.minimum:
                raise ValueError(f"{format_value(v, elem)} is below the minimum {format_value(self.minimum, elem)} of {self.name}")
            if self.maximum is not None and v > self.maximum:
                raise ValueError(f"{format_value(v, elem)} is above the maximum {format_value(self.maximum, elem)} of {self.name}")
            if self.choices is not None and v not in self.choices:
                allowed = ", ".join(format_value(c, elem) for c in self.choices)
                raise ValueError(f"{format_value(v, elem)} is not one of the choices of {self.name}: {allowed}")

    def to_dict(self) -> dict[str, Any]:
        elem = VAR_TYPES[self.elem_type]
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type_name,
            "default": self.show(self.default),
            "description": self.description,
            "source": self.source,
        }
        if self.minimum is not None:
            out["min"] = format_value(self.minimum, elem)
        if self.maximum is not None:
            out["max"] = format_value(self.maximum, elem)
        if self.choices is not None:
            out["choices"] = [format_value(c, elem) for c in self.choices]
        return out


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
    warnings: tuple[LintWarning, ...] = ()  # valid but easy to misread (`lint` shows them)

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
