"""Tailoring: a site's choices applied to the loaded policies at scan time, like an XCCDF
tailoring file or ComplianceAsCode's var_* values: var values, a profile, rules enabled or
disabled with a reason. Every value is checked against the policies; reports list them all."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.errors import LocatedError
from secpolicy.policy.loader import read_text_file, schema_violation
from secpolicy.policy.vars import checked_value, did_you_mean
from secpolicy.rules import PolicySet

if TYPE_CHECKING:
    from secpolicy.policy.yamlpos import Positioned

__all__ = ["TailoredRule", "TailoredVar", "Tailoring", "load_tailoring"]


@dataclass(frozen=True)
class TailoredVar:
    name: str
    type_name: str
    default: str  # as written in policies (0o640, 15m, "text")
    value: str
    raw: Any  # the run-time value
    source: str  # tailoring file:line
    declared_at: str  # policy file:line

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name,
            "default": self.default,
            "value": self.value,
            "source": self.source,
            "declared_at": self.declared_at,
        }


@dataclass(frozen=True)
class TailoredRule:
    rule_id: str
    default_enabled: bool
    enabled: bool
    reason: str
    source: str  # tailoring file:line

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "default_enabled": self.default_enabled,
            "enabled": self.enabled,
            "reason": self.reason,
            "source": self.source,
        }


@dataclass(frozen=True)
class Tailoring:
    path: str
    sha256: str
    id: str
    title: str
    description: str = ""
    version: str | None = None
    profile: str | None = None
    vars: tuple[TailoredVar, ...] = ()
    rules: tuple[TailoredRule, ...] = ()

    def values(self) -> dict[str, Any]:
        """Var name -> run-time value, for evaluation."""
        return {v.name: v.raw for v in self.vars}

    def enabled(self) -> dict[str, bool]:
        """Rule id -> enabled, for the rules the file names."""
        return {r.rule_id: r.enabled for r in self.rules}

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "version": self.version,
            "profile": self.profile,
            "vars": [v.to_dict() for v in self.vars],
            "rules": [r.to_dict() for r in self.rules],
        }


def _line(doc: Positioned, at: tuple) -> int:
    sp = doc.key_spans.get(at) or doc.spans.get(at)
    return sp.line if sp else 1


def load_tailoring(path: Path, ps: PolicySet) -> Tailoring:
    """Read and check a tailoring file against the loaded policies. Raises LocatedError
    (exit 2): schema errors, unknown vars or rule ids (with the closest name), values of the
    wrong type or out of bounds, a profile no rule lists."""
    shown = str(path)
    text, raw = read_text_file(path)
    from secpolicy.policy.yamlpos import load_yaml  # PyYAML, only where a file is read

    doc = load_yaml(text, shown)
    if not isinstance(doc.data, dict):
        raise LocatedError("a tailoring file is a mapping with metadata: (and profile:, vars:, rules:)", shown, 1, 1)
    violation = schema_violation(doc, "tailoring")
    if violation is not None:
        raise violation
    data = doc.data
    meta = data["metadata"]
    profile = data.get("profile")
    if profile is not None:
        known = sorted({p for r in ps.rules for p in r.profiles})
        if profile not in known:
            hint = did_you_mean(profile, known) or (f" (profiles: {', '.join(known)})" if known else " (no rule lists a profile)")
            raise doc.error(("profile",), f"no loaded rule is in profile {profile!r}{hint}")
    return Tailoring(
        path=shown,
        sha256=hashlib.sha256(raw).hexdigest(),
        id=meta["id"],
        title=meta["title"],
        description=str(meta.get("description", "")).strip(),
        version=None if meta.get("version") is None else str(meta["version"]),
        profile=profile,
        vars=_vars(doc, data.get("vars") or {}, ps),
        rules=_rules(doc, data.get("rules") or {}, ps),
    )


def _vars(doc: Positioned, given: Mapping[str, Any], ps: PolicySet) -> tuple[TailoredVar, ...]:
    decls = ps.vars
    out = []
    for name, raw in given.items():
        at = ("vars", name)
        decl = decls.get(name)
        if decl is None:
            hint = did_you_mean(name, decls) or (
                f" (declared vars: {', '.join(sorted(decls))})" if decls else " (the loaded policies declare no vars)"
            )
            raise doc.error(at, f"unknown var {name!r}{hint}", key=True)
        try:
            value = checked_value(decl, raw)
        except ValueError as e:
            raise doc.error(at, f"{name}: {e}") from None
        out.append(TailoredVar(
            name, decl.type_name, decl.show(decl.default), decl.show(value), value,
            f"{doc.path}:{_line(doc, at)}", decl.source,
        ))
    return tuple(out)


def _rules(doc: Positioned, given: Mapping[str, Any], ps: PolicySet) -> tuple[TailoredRule, ...]:
    rules = {r.id: r for r in ps.rules}
    out = []
    for rid, spec in given.items():
        at = ("rules", rid)
        rule = rules.get(rid)
        if rule is None:
            raise doc.error(at, f"unknown rule id {rid!r}{did_you_mean(rid, rules)}", key=True)
        if rule.is_event_rule:
            raise doc.error(at, f"{rid!r} is an event rule: tailoring enables or disables check rules", key=True)
        out.append(TailoredRule(rid, rule.enabled, bool(spec["enabled"]), spec["reason"].strip(), f"{doc.path}:{_line(doc, at)}"))
    return tuple(out)
