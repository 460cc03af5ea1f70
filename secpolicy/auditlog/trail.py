"""One command run in the tamper-evident audit log: its start and end, the configuration it
loaded (path and sha256), findings, alerts, FIM changes, lost events and its own failures."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from secpolicy.auditlog import records
from secpolicy.auditlog.log import AuditLog, LogOptions
from secpolicy.auditlog.records import AuditRecord
from secpolicy.errors import InputError
from secpolicy.models import Finding
from secpolicy.redaction import Redactor

__all__ = ["AuditTrail", "file_sha256", "fim_change_record"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a configuration file as it is on disk (what `config_loaded` records)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc
    return h.hexdigest()


def fim_change_record(path: str, kind: str, ftype: str, changes: Iterable[Mapping[str, Any]],
                      accepted: bool = False) -> AuditRecord:
    """A FIM change with every differing attribute's old and new value; an accepted change
    (`fim update`) is recorded as such, at a lower severity."""
    details: dict[str, Any] = {"type": ftype, "attributes": [dict(c) for c in changes]}
    if accepted:
        details["accepted"] = True
    return records.fim_change(path, kind, details, severity="medium" if accepted else "high")


def fim_alert_record(alert: Mapping[str, Any]) -> AuditRecord:
    """A live FIM alert as a `fim_change` record: the change (every attribute's old and new
    value) and who made it, from the triggering event (Wazuh's "whodata")."""
    fim = alert["fim"]
    event = alert.get("event") or {}
    proc = event.get("proc") or {}
    user = event.get("user") or {}
    rec = fim_change_record(fim["path"], fim["change"], fim["type"], fim.get("attributes") or [])
    actor = {k: proc[k] for k in ("pid", "exe", "comm", "cmdline", "uid", "euid", "auid", "session") if k in proc}
    if user.get("name"):
        actor["user"] = user["name"]
    session = proc.get("session")
    uid = user.get("uid")
    name = user.get("name") or (records.user_name(uid) if not event.get("host") or
                                event.get("host") == socket.gethostname() else None)
    source = records.Source(user=name, uid=uid, pid=proc.get("pid"),
                            session=None if session is None else str(session))
    details = {**rec.details, "live": True, "rule_id": alert["rule_id"], "event_ts": alert.get("ts"),
               "event_types": sorted({e.get("type") for e in alert.get("events") or [] if e.get("type")}),
               "actor": actor, "config": fim.get("config"), "baseline": fim.get("baseline")}
    if alert.get("redacted"):
        details["redacted"] = list(alert["redacted"])
    return dataclasses.replace(rec, severity=str(alert["severity"]), source=source, details=details)


# Group commit: records are forced to disk by the checkpoint that `sync()` (or `close()`)
# writes after each batch, not one fsync each (measured: 330 us against 40 us per record).
GROUP_COMMIT = LogOptions(sync="checkpoint")


class AuditTrail:
    """The records of one run of `component` (scanner, monitor, replay, fim), all carrying the
    run id. Records are durable once `sync()` or `close()` returns: both write a checkpoint
    (fsynced, and the start of a new key epoch); `close()` also seals the log."""

    def __init__(self, log: AuditLog, component: str, run_id: str | None = None,
                 redactor: Redactor | None = None) -> None:
        self.log = log
        self.redactor = redactor or Redactor()
        self.component = component
        self.run_id = run_id or str(uuid.uuid4())
        self.appended = 0
        self._unsynced = 0

    @classmethod
    def open(cls, directory: str | Path, component: str, run_id: str | None = None,
             options: LogOptions | None = GROUP_COMMIT, redactor: Redactor | None = None) -> AuditTrail:
        """Resume the log made by `secpolicy log init` in `directory` (InputError if there is none)."""
        return cls(AuditLog.open(directory, options), component, run_id, redactor)

    def record(self, record: AuditRecord, redacted: Mapping[str, tuple[str, str]] | None = None) -> int:
        """Write `record`, redacted. `redacted` holds fields the caller masked itself, as
        (before, after) pairs: added to the details as they are (a FIM diff, line by line)."""
        # Secrets in what a record quotes (a command line, a config value) are masked before
        # the record is written; the record names the fields, never their values.
        details, changed = self.redactor.details(record.details)
        for name, (before, after) in (redacted or {}).items():
            details[name] = after
            if after != before:
                changed.append(name)
        if changed:
            details["redacted"] = sorted(set(changed) | set(details.get("redacted") or ()))
        details.setdefault("run_id", self.run_id)
        seq = self.log.append(dataclasses.replace(record, details=details))
        self.appended += 1
        self._unsynced += 1
        return seq

    def sync(self) -> None:
        """Make every record appended so far durable (a checkpoint), if there is any."""
        if self._unsynced:
            self.log.checkpoint()
            self._unsynced = 0

    def _own(self, record: AuditRecord) -> AuditRecord:
        return dataclasses.replace(record, component=self.component)

    def started(self, profile: str | None = None, policies: Iterable[str] = (),
                **details: Any) -> None:
        rec = self._own(records.scan_started(self.run_id, profile, list(policies)))
        self.record(dataclasses.replace(rec, details={**self._scan_fields(rec.details), **details}))

    def _scan_fields(self, details: Mapping[str, Any]) -> dict[str, Any]:
        # A scan's profile, policies and findings per status are empty for other runs.
        if self.component == "scanner":
            return dict(details)
        return {k: v for k, v in details.items() if k not in ("profile", "policies", "by_status") or v}

    def config_loaded(self, path: str | Path, sha256: str | None = None) -> None:
        digest = sha256 if sha256 is not None else file_sha256(path)
        self.record(records.config_loaded(str(path), digest, component=self.component))

    def finding(self, finding: Finding) -> None:
        self.record(records.from_finding(finding, component=self.component))

    def alerts(self, alerts: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        for alert in alerts:
            if "fim" in alert:
                self.record(fim_alert_record(alert))
            else:
                self.record(records.from_alert(alert, component=self.component))
            n += 1
        return n

    def lost(self, windows: Iterable[Mapping[str, Any]], component: str | None = None) -> int:
        """One `events_lost` record per loss window ({start, end, count, where, by_type}; a
        merged window also lists its `windows` and `windows_total`)."""
        n = 0
        for w in windows:
            rec = records.events_lost(component or self.component, int(w.get("count", 0)),
                                      (str(w.get("start", "")), str(w.get("end", ""))),
                                      reason=str(w.get("where", "")))
            extra = {k: w[k] for k in ("by_type", "windows", "windows_total") if w.get(k)}
            self.record(dataclasses.replace(rec, details={**rec.details, **extra}))
            n += 1
        return n

    def failure(self, message: str, component: str | None = None, severity: str = "high",
                **details: Any) -> None:
        self.record(records.failure(component or self.component, message, severity, **details))

    def finished(self, by_status: Mapping[str, int] | None = None, error: str | None = None,
                 **details: Any) -> None:
        """The end of the run: a scan's findings per status, or other counts in `details`;
        `error` makes it a FAILURE record."""
        rec = self._own(records.scan_finished(self.run_id, dict(by_status or {}), error))
        self.record(dataclasses.replace(rec, details={**self._scan_fields(rec.details), **details}))

    def close(self) -> None:
        self.log.close()
        self._unsynced = 0
