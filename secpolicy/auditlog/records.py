"""Audit records with the NIST SP 800-53 AU-3 content, and converters from what secpolicy
records (alerts, findings, FIM changes, scans, configuration, its own failures and losses)."""

from __future__ import annotations

import enum
import os
import pwd
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from secpolicy.auditlog.canonical import now_iso
from secpolicy.errors import InputError
from secpolicy.models import Finding, Status

__all__ = [
    "AuditRecord",
    "Outcome",
    "RecordType",
    "Source",
    "config_changed",
    "config_loaded",
    "events_lost",
    "failure",
    "fim_change",
    "from_alert",
    "from_finding",
    "now_iso",
    "scan_finished",
    "scan_started",
    "user_name",
]


class Outcome(str, enum.Enum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    BLOCKED = "BLOCKED"
    PARTIAL = "PARTIAL"
    UNKNOWN = "UNKNOWN"


class RecordType(str, enum.Enum):
    ALERT = "alert"
    FINDING = "finding"
    FIM_CHANGE = "fim_change"
    SCAN_START = "scan_start"
    SCAN_STOP = "scan_stop"
    CONFIG_LOADED = "config_loaded"
    CONFIG_CHANGED = "config_changed"
    FAILURE = "failure"
    EVENTS_LOST = "events_lost"


_SEVERITIES = ("info", "low", "medium", "high", "critical")


def _check_timestamp(ts: str) -> str:
    text = ts.replace("Z", "+00:00")
    # Python parses at most microseconds; nanosecond event stamps keep their text untouched.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = tail[: len(tail) - len(tail.lstrip("0123456789"))]
        text = head + "." + digits[:6] + tail[len(digits):]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"timestamp {ts!r} is not ISO 8601") from exc
    if parsed.tzinfo is None:
        raise InputError(f"timestamp {ts!r} has no time zone (AU-3 needs one)")
    return ts


@dataclass(frozen=True)
class Source:
    """Who or what caused the event: AU-3 'source of the event' and 'identity'."""

    user: str | None = None
    uid: int | None = None
    pid: int | None = None
    session: str | None = None
    source_ip: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        return cls(
            user=data.get("user"),
            uid=data.get("uid"),
            pid=data.get("pid"),
            session=None if data.get("session") is None else str(data["session"]),
            source_ip=data.get("source_ip"),
        )


@dataclass(frozen=True)
class AuditRecord:
    """One AU-3 audit record: what happened, when, where, by whom, with what outcome."""

    event_type: str
    component: str
    outcome: Outcome
    severity: str = "info"
    details: dict[str, Any] = field(default_factory=dict)
    source: Source = field(default_factory=Source)
    timestamp: str = field(default_factory=now_iso)
    hostname: str = field(default_factory=socket.gethostname)
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if not self.event_type:
            raise InputError("audit record needs an event type")
        if self.severity not in _SEVERITIES:
            raise InputError(f"audit record severity {self.severity!r} is not one of {_SEVERITIES}")
        if not isinstance(self.outcome, Outcome):
            raise InputError(f"audit record outcome {self.outcome!r} is not an Outcome")
        _check_timestamp(self.timestamp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "component": self.component,
            "source": self.source.to_dict(),
            "outcome": self.outcome.value,
            "hostname": self.hostname,
            "severity": self.severity,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        try:
            outcome = Outcome(data["outcome"])
            return cls(
                record_id=str(data["record_id"]),
                event_type=str(data["event_type"]),
                timestamp=str(data["timestamp"]),
                component=str(data["component"]),
                source=Source.from_dict(data.get("source") or {}),
                outcome=outcome,
                hostname=str(data["hostname"]),
                severity=str(data.get("severity", "info")),
                details=dict(data.get("details") or {}),
            )
        except KeyError as exc:
            raise InputError(f"audit record lacks field {exc.args[0]!r}") from exc
        except ValueError as exc:
            raise InputError(f"audit record is malformed: {exc}") from exc


def user_name(uid: Any) -> str | None:
    """The account name of `uid` in this host's account database (NSS: files, LDAP, sssd ...),
    not the controlling terminal's login name, which daemons and cron jobs do not have."""
    if not isinstance(uid, int) or isinstance(uid, bool) or uid < 0:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def _local(event: Mapping[str, Any]) -> bool:
    host = event.get("host")
    return not host or host == socket.gethostname()


def _text(value: Any) -> str | None:
    # Hostile events may carry objects where a name or address belongs: keep only text.
    return value if isinstance(value, str) and value else None


def _event_source(event: Mapping[str, Any]) -> Source:
    proc = _mapping(event.get("proc"))
    user = _mapping(event.get("user"))
    auth = _mapping(event.get("auth"))
    net = _mapping(event.get("net"))
    uid = user.get("uid", proc.get("uid"))
    uid = uid if isinstance(uid, int) and not isinstance(uid, bool) else None
    # An event from another host names its user itself; only this host's uids are looked up here.
    name = _text(user.get("name")) or _text(auth.get("user")) or (user_name(uid) if _local(event) else None)
    ip = _text(auth.get("rhost")) or _text(net.get("src_ip"))
    session = proc.get("session")
    pid = proc.get("pid")
    return Source(
        user=name,
        uid=uid,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        session=None if session is None else str(session),
        source_ip=ip,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _event_outcome(event: Mapping[str, Any]) -> Outcome:
    result = (event.get("outcome") or {}).get("result") or (event.get("auth") or {}).get("result")
    return {"success": Outcome.SUCCESS, "failure": Outcome.FAILURE}.get(result or "", Outcome.UNKNOWN)


def from_alert(alert: Mapping[str, Any], component: str = "monitor") -> AuditRecord:
    """An alert as an audit record: the triggering event gives source and outcome."""
    for key in ("rule_id", "severity"):
        if key not in alert:
            raise InputError(f"alert lacks field {key!r}")
    event = alert.get("event") or {}
    details: dict[str, Any] = {
        "rule_id": alert["rule_id"],
        "title": alert.get("title", ""),
        "message": alert.get("message", ""),
        "context": alert.get("context") or {},
        "tags": list(alert.get("tags") or []),
        "references": alert.get("references") or {},
        "event_ts": alert.get("ts"),
        "event_types": [e.get("type") for e in alert.get("events") or [event] if e],
    }
    if alert.get("coverage"):
        details["coverage"] = alert["coverage"]
    if alert.get("redacted"):
        details["redacted"] = list(alert["redacted"])  # what redaction changed, never the values
    kwargs: dict[str, Any] = {}
    if event.get("host"):
        kwargs["hostname"] = event["host"]
    return AuditRecord(
        event_type=RecordType.ALERT.value,
        component=component,
        outcome=_event_outcome(event),
        severity=str(alert["severity"]),
        source=_event_source(event),
        details=details,
        **kwargs,
    )


def from_finding(finding: Finding, component: str = "scanner") -> AuditRecord:
    """A scan finding; FAIL and ERROR are failures, the rest succeed or are partial."""
    outcome = {
        Status.PASS: Outcome.SUCCESS,
        Status.FAIL: Outcome.FAILURE,
        Status.ERROR: Outcome.FAILURE,
        Status.WAIVED: Outcome.PARTIAL,
        Status.NOT_APPLICABLE: Outcome.UNKNOWN,
        Status.SKIPPED: Outcome.UNKNOWN,
    }[finding.status]
    details = {
        "rule_id": finding.rule_id,
        "title": finding.title,
        "status": finding.status.value,
        "policy_id": finding.policy_id,
        "references": {k: list(v) for k, v in finding.references.items()},
        "evidence": [e.to_dict() for e in finding.evidence],
        "reason": finding.reason,
    }
    return AuditRecord(
        event_type=RecordType.FINDING.value,
        component=component,
        outcome=outcome,
        severity=finding.severity.value,
        source=_self_source(),
        details=details,
    )


def _self_source() -> Source:
    uid = os.getuid()
    return Source(user=user_name(uid), uid=uid, pid=os.getpid())


def fim_change(path: str, change: str, details: Mapping[str, Any] | None = None,
               severity: str = "high") -> AuditRecord:
    """A file integrity change (added, removed, modified, permissions ...)."""
    return AuditRecord(
        event_type=RecordType.FIM_CHANGE.value,
        component="fim",
        outcome=Outcome.SUCCESS,
        severity=severity,
        source=_self_source(),
        details={"path": path, "change": change, **dict(details or {})},
    )


def scan_started(scan_id: str, profile: str | None = None, policies: list[str] | None = None) -> AuditRecord:
    return AuditRecord(
        event_type=RecordType.SCAN_START.value,
        component="scanner",
        outcome=Outcome.SUCCESS,
        source=_self_source(),
        details={"scan_id": scan_id, "profile": profile, "policies": list(policies or [])},
    )


def scan_finished(scan_id: str, by_status: Mapping[str, int], error: str | None = None) -> AuditRecord:
    failed = error is not None
    return AuditRecord(
        event_type=RecordType.SCAN_STOP.value,
        component="scanner",
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        severity="high" if failed else "info",
        source=_self_source(),
        details={"scan_id": scan_id, "by_status": dict(by_status), "error": error},
    )


def config_loaded(path: str, sha256: str, component: str = "config") -> AuditRecord:
    """The configuration (policy, FIM configuration) a run loaded, by absolute path."""
    return AuditRecord(
        event_type=RecordType.CONFIG_LOADED.value,
        component=component,
        outcome=Outcome.SUCCESS,
        source=_self_source(),
        details={"path": os.path.abspath(path), "sha256": sha256},
    )


def config_changed(path: str, old_sha256: str | None, new_sha256: str | None,
                   component: str = "config") -> AuditRecord:
    return AuditRecord(
        event_type=RecordType.CONFIG_CHANGED.value,
        component=component,
        outcome=Outcome.SUCCESS,
        severity="medium",
        source=_self_source(),
        details={"path": os.path.abspath(path), "old_sha256": old_sha256, "new_sha256": new_sha256},
    )


def failure(component: str, message: str, severity: str = "high", **details: Any) -> AuditRecord:
    """secpolicy's own failure (AU-5: response to audit processing failures)."""
    return AuditRecord(
        event_type=RecordType.FAILURE.value,
        component=component,
        outcome=Outcome.FAILURE,
        severity=severity,
        source=_self_source(),
        details={"message": message, **details},
    )


def events_lost(component: str, lost: int, window: tuple[str, str], reason: str = "") -> AuditRecord:
    """Events dropped by a source (ring buffer full, receiver gone): losses are audit data."""
    return AuditRecord(
        event_type=RecordType.EVENTS_LOST.value,
        component=component,
        outcome=Outcome.PARTIAL,
        severity="high" if lost else "info",
        source=_self_source(),
        details={"lost": lost, "window": list(window), "reason": reason},
    )
