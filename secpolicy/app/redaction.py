"""The redactor of a run: its policy (the built-in one by default) and its pseudonym key, which
lives with the audit log's keys when the run writes one."""

from __future__ import annotations

from pathlib import Path

from secpolicy.redaction import RedactionSettings, Redactor

__all__ = ["open_redactor"]


def open_redactor(policy: str | None, audit_log: str | None = None) -> Redactor:
    """The run's redactor: the policy file (the built-in policy when None); pseudonyms keyed
    by the policy's own key file, else the key kept with the audit log, else a key per run."""
    default = None
    if audit_log is not None:
        from secpolicy.auditlog.log import read_pseudonym_key

        key = read_pseudonym_key(audit_log)
        if key is not None:
            default = (key, "audit log")
    if policy is None:
        return Redactor(RedactionSettings(key=default[0], key_source=default[1]) if default else None)
    from secpolicy.policy.redaction import load_redaction

    return Redactor(load_redaction(Path(policy), default))
