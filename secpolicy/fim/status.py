"""What policies ask of FIM: the verified state of a baseline (age, last check, its counts)
and check results turned into findings with per-attribute evidence."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.errors import InputError, IntegrityError
from secpolicy.fim.record import display_path
from secpolicy.fim.store import Baseline, Key
from secpolicy.models import Evidence, Finding, Severity, Status

if TYPE_CHECKING:  # a scan reading fim(name) needs neither the configuration reader nor the walker
    from secpolicy.fim.config import FimConfig
    from secpolicy.fim.scan import CheckResult

__all__ = ["FimStatus", "fim_status", "findings_from_check", "policy_status"]


@dataclass(frozen=True)
class FimStatus:
    """A baseline's state. Every number is None unless `verified`: nothing read from an
    unverified baseline is reported."""

    db: str
    exists: bool
    verified: bool
    reason: str | None = None
    name: str | None = None
    keyed: bool | None = None
    baseline_id: str | None = None
    generation: int | None = None
    entries: int | None = None
    baseline_created_at: float | None = None
    baseline_age: float | None = None
    checks: int | None = None
    last_check_at: float | None = None
    last_check_age: float | None = None
    last_result: str | None = None
    changed: int | None = None
    added: int | None = None
    removed: int | None = None
    errors: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def policy_status(db: str, *, key: Key | None = None, key_file: str | None = None,
                  key_env: str | None = None) -> FimStatus:
    """What a policy's `fim(name)` fact reports: the baseline verified entry by entry (one
    edited anywhere is never healthy), with `key`, or the key read from `key_file` or the
    environment variable `key_env` (InputError when it cannot be read)."""
    if key is None:
        key = Key.from_file(key_file) if key_file else Key.from_env(key_env) if key_env else None
    return fim_status(db, key, deep=True)


def fim_status(
    db: str | os.PathLike[str],
    key: Key | None = None,
    *,
    deep: bool = False,
    config: FimConfig | None = None,
    root: str | os.PathLike[str] | None = None,
    now: float | None = None,
) -> FimStatus:
    """State of the baseline at `db`. Verifies the header and check history with `key`
    (and every entry too when `deep`); with `config` and/or `root`, also that the baseline
    was made for them. A baseline that does not verify is reported as `verified=False`
    with the reason, never as a healthy one."""
    path = os.fspath(db)
    now = time.time() if now is None else now
    if not os.path.exists(path):
        return FimStatus(path, exists=False, verified=False, reason="no baseline database")
    try:
        with Baseline(path, key or Key.none()) as b:
            h = b.header
            if h.get("superseded_by"):
                raise IntegrityError(f"{path}: baseline refused: it was superseded by a newer generation")
            if config is not None and h["config_digest"] != config.digest:
                raise IntegrityError(f"{path}: baseline refused: it was made for a different configuration")
            if root is not None and h["root"] != _normalized(root):
                raise IntegrityError(f"{path}: baseline refused: it was made for root {h['root']}")
            history = b.checks()
            if deep:
                b.verify_entries()
    except (IntegrityError, InputError) as e:
        return FimStatus(path, exists=True, verified=False, reason=e.render())
    last = next((c for c in reversed(history) if c.get("kind") in ("check", "full-check", "update")), None)
    created = float(h["created_at"])
    return FimStatus(
        db=path,
        exists=True,
        verified=True,
        name=h["config_name"],
        keyed=bool(h["keyed"]),
        baseline_id=h["baseline_id"],
        generation=int(h["generation"]),
        entries=int(h["entry_count"]),
        baseline_created_at=created,
        baseline_age=max(0.0, now - created),
        checks=len(history),
        last_check_at=float(last["at"]) if last else None,
        last_check_age=max(0.0, now - float(last["at"])) if last else None,
        last_result=last["result"] if last else None,
        changed=int(last["changed"]) if last else None,
        added=int(last["added"]) if last else None,
        removed=int(last["removed"]) if last else None,
        errors=int(last["errors"]) if last else None,
    )


def findings_from_check(
    result: CheckResult, *, severity: Severity = Severity.HIGH, policy_id: str = "fim"
) -> tuple[Finding, ...]:
    """One FAIL finding per added, removed or changed entry (evidence: each attribute's
    baseline and observed value), one ERROR per entry that could not be checked, and a
    single PASS when nothing changed and nothing failed."""
    name = result.baseline.config_name
    out: list[Finding] = []
    source = f"{result.baseline.path} (baseline {result.baseline.baseline_id[:12]}, generation {result.baseline.generation})"
    for entry in result.added + result.removed + result.changed:
        shown = display_path(entry.path)
        if entry.kind == "changed":
            evidence = tuple(
                Evidence(
                    expression=f'fim("{name}") {c.name}',
                    expected=None if c.old is None else str(c.old),
                    observed=None if c.new is None else str(c.new),
                    source=shown,
                )
                for c in entry.changes
            )
            if entry.diff is not None or entry.diff_note is not None:
                # report_changes: the redacted unified diff (or why there is none) as evidence.
                text = "\n".join(t for t in (entry.diff, entry.diff_note) if t)
                evidence += (Evidence(expression=f'fim("{name}") content', source=shown, message=text),)
        else:
            evidence = (Evidence(expression=f'fim("{name}") entry', expected="absent" if entry.kind == "added" else "present",
                                 observed="present" if entry.kind == "added" else "absent", source=shown),)
        out.append(
            Finding(
                rule_id=f"fim.{name}.{entry.kind}",
                title=f"{entry.ftype} {entry.kind}: {shown}",
                severity=severity,
                status=Status.FAIL,
                policy_id=policy_id,
                description=f"File integrity monitoring found {shown} {entry.kind} since the baseline.",
                evidence=evidence,
                source=source,
            )
        )
    for err in result.errors:
        shown = display_path(err.path)
        out.append(
            Finding(
                rule_id=f"fim.{name}.error",
                title=f"cannot check {shown}",
                severity=severity,
                status=Status.ERROR,
                policy_id=policy_id,
                evidence=(Evidence(expression=f'fim("{name}") check', source=shown, message=err.message),),
                reason=err.message,
                source=source,
            )
        )
    if not out:
        out.append(
            Finding(
                rule_id=f"fim.{name}.check",
                title=f"no changes in {result.entries} watched entries",
                severity=Severity.INFO,
                status=Status.PASS,
                policy_id=policy_id,
                evidence=(Evidence(expression=f'fim("{name}") changes', expected="0", observed="0", source=source),),
                source=source,
            )
        )
    return tuple(out)


def _normalized(root: str | os.PathLike[str]) -> str:
    from secpolicy.fim.scan import normalize_root

    return normalize_root(root)[0]
