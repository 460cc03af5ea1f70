"""Framework coverage: which requirements each pack automates, covers partially, or leaves
manual, as declared in the packs' `coverage:` data and checked against the rules' references."""

from __future__ import annotations

from dataclasses import dataclass, field

from secpolicy.models import requirement_key
from secpolicy.rules import PolicySet

__all__ = ["FrameworkCoverage", "compute_coverage"]


@dataclass
class FrameworkCoverage:
    framework: str
    automated: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    # Declared automated or partial, but no enabled rule references it: counted as manual.
    unbacked: list[str] = field(default_factory=list)
    # Referenced by rules but absent from the declared lists.
    undeclared: list[str] = field(default_factory=list)
    # Declared in more than one of automated, partial and manual (counted in the strongest).
    conflicting: list[str] = field(default_factory=list)
    rules_by_requirement: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.automated) + len(self.partial) + len(self.manual)

    def line(self) -> str:
        return (
            f"{self.framework}: {len(self.automated)} of {self.total} requirements automated, "
            f"{len(self.partial)} partial, {len(self.manual)} manual"
        )


def compute_coverage(ps: PolicySet, standard: str | None = None) -> dict[str, FrameworkCoverage]:
    declared: dict[str, dict[str, set[str]]] = {}
    notes: dict[str, dict[str, str]] = {}
    for p in ps.policies:
        for fw, data in p.coverage.items():
            d = declared.setdefault(fw, {"automated": set(), "partial": set(), "manual": set()})
            for k in d:
                d[k].update(str(x) for x in data.get(k, []))
            notes.setdefault(fw, {}).update({str(k): str(v) for k, v in (data.get("notes") or {}).items()})
    referenced: dict[str, dict[str, list[str]]] = {}
    for r in ps.rules:
        if not r.enabled:
            continue
        for fw, ids in r.references.items():
            for req in ids:
                referenced.setdefault(fw, {}).setdefault(req, []).append(r.id)
    out: dict[str, FrameworkCoverage] = {}
    for fw in sorted(set(declared)):
        if standard and fw != standard:
            continue
        d = declared[fw]
        refs = referenced.get(fw, {})
        cov = FrameworkCoverage(fw, rules_by_requirement=refs, notes=notes.get(fw, {}))
        # A requirement stands in one list only: the strongest claim the data supports.
        for req in d["automated"]:
            (cov.automated if req in refs else cov.unbacked).append(req)
        for req in d["partial"] - d["automated"]:
            (cov.partial if req in refs else cov.unbacked).append(req)
        cov.manual.extend(d["manual"] - d["automated"] - d["partial"])
        cov.manual.extend(cov.unbacked)
        listed = d["automated"] | d["partial"] | d["manual"]
        cov.undeclared = [req for req in refs if req not in listed]
        cov.conflicting = [req for req in listed
                           if (req in d["automated"]) + (req in d["partial"]) + (req in d["manual"]) > 1]
        for lst in (cov.automated, cov.partial, cov.manual, cov.unbacked, cov.undeclared, cov.conflicting):
            lst.sort(key=requirement_key)
        out[fw] = cov
    return out
