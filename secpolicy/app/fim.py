"""A `fim init|check|update` run and its audit log: the run's start, the configuration, every
change with old and new values, each baseline generation, the summary and failures, redacted."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from typing import TYPE_CHECKING, Any, Self

from secpolicy.errors import IntegrityError, RuntimeFailure, SecpolicyError
from secpolicy.fim.config import FimConfig
from secpolicy.fim.record import display_path
from secpolicy.fim.scan import BaselineInfo, CheckResult, Generations, Recorded

if TYPE_CHECKING:
    from secpolicy.auditlog.trail import AuditTrail
    from secpolicy.redaction import Redactor

__all__ = ["AUDIT_LOG_WAIT_S", "GENERATION_RECORD", "FimRun", "recorded_generations"]

# The event type of the audit record each baseline generation leaves (`init`, `update`).
GENERATION_RECORD = "fim_baseline"
# How long a fim command waits for another writer of the same audit log to finish.
AUDIT_LOG_WAIT_S = 60.0


def _log_busy(directory: str) -> bool:
    """Does another writer hold the audit log's lock right now?"""
    from secpolicy.auditlog.log import LOCK_FILE

    try:
        fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the probe's lock
    return False


def _open_trail(directory: str, redactor: Redactor) -> AuditTrail:
    """Open the audit log, waiting while another fim (or other) writer holds it: a check and an
    update run side by side take turns instead of failing."""
    from secpolicy.auditlog.trail import AuditTrail

    deadline = time.monotonic() + AUDIT_LOG_WAIT_S
    while True:
        try:
            return AuditTrail.open(directory, "fim", redactor=redactor)
        except RuntimeFailure:
            if time.monotonic() > deadline or not (_log_busy(directory) or _log_busy(directory)):
                raise
        time.sleep(0.05)


class FimRun:
    """One fim command as a run; with `--audit-log`: the run's start, the configuration (file sha256 and the
    digest baselines are bound to), each change with old and new attribute values, each new
    baseline generation, the summary with the baseline's id and generation, and failures;
    integrity failures are critical. Without --audit-log every method does nothing."""

    def __init__(self, directory: str | None, command: str, config_path: str, db: str | None,
                 root: str | None, redaction: str | None) -> None:
        from secpolicy.app.redaction import open_redactor

        self.trail: AuditTrail | None = None
        self.directory = directory
        # Checkpoint copies that failed: the log itself is sealed, so the run's result stands
        # and the command reports this after it (set when the `with` block ends).
        self.copy_failure: RuntimeFailure | None = None
        # What the audit log records and what is printed pass the redaction policy; the
        # baseline's content copies are masked with the built-in detectors when stored.
        self.redactor = open_redactor(redaction, directory)
        if directory:
            self.trail = _open_trail(directory, self.redactor)
            try:
                self.trail.started(command=f"fim {command}", config=config_path, db=db, root=root or "/")
            except BaseException:
                self.trail.close()
                raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.trail is None:
            return
        from secpolicy.auditlog.log import CheckpointCopyError

        trail, self.trail = self.trail, None
        try:
            if exc is not None:
                text = exc.render() if isinstance(exc, SecpolicyError) else f"{type(exc).__name__}: {exc}"
                integrity = isinstance(exc, IntegrityError)
                trail.failure(text, severity="critical" if integrity else "high",
                              kind="integrity" if integrity else type(exc).__name__,
                              exit_code=getattr(exc, "exit_code", None))
                trail.finished(None, text)
        finally:
            try:
                trail.close()
            except CheckpointCopyError as err:
                self.copy_failure = err

    def config(self, path: str, config: FimConfig) -> None:
        if self.trail is not None:
            from secpolicy.auditlog import records
            from secpolicy.auditlog.trail import file_sha256

            rec = records.config_loaded(path, file_sha256(path), component="fim")
            # The digest is what baselines are bound to: cosmetic edits change the file's
            # sha256, not the digest.
            self.trail.record(dataclasses.replace(
                rec, details={**rec.details, "config_digest": config.digest, "name": config.name}))

    def recorded(self) -> Generations | None:
        """The baseline generations this audit log holds (None without one). Read before the
        baseline is opened: an `update` promotes a generation before it records it, so what
        is read here is never newer than what is opened next."""
        if self.directory is None:
            return None
        return recorded_generations(self.directory)

    def generation(self, db: str, info: BaselineInfo, command: str) -> None:
        """Record a new baseline generation: what later checks compare the baseline with."""
        if self.trail is None:
            return
        from secpolicy.auditlog.records import AuditRecord, Outcome

        self.trail.record(AuditRecord(
            event_type=GENERATION_RECORD, component="fim", outcome=Outcome.SUCCESS, severity="info",
            details={"db": _db_identity(db), "command": f"fim {command}", "baseline_id": info.baseline_id,
                     "lineage_id": info.lineage_id, "generation": info.generation,
                     "previous_baseline_id": info.previous_baseline_id, "root_hash": info.root_hash,
                     "created_at": info.created_at, "entries": info.entry_count, "root": info.root,
                     "config_name": info.config_name, "config_digest": info.config_digest},
        ))
        self.trail.sync()  # durable before the command reports success

    def changes(self, result: CheckResult, accepted: bool = False) -> None:
        if self.trail is None:
            return
        from secpolicy.auditlog.trail import fim_change_record

        for e in result.added + result.removed + result.changed:
            rec = fim_change_record(display_path(e.path), e.kind, e.ftype,
                                    (c.to_dict() for c in e.changes), accepted=accepted)
            if e.diff_note is not None:
                rec = dataclasses.replace(rec, details={**rec.details, "diff_note": e.diff_note})
            own = None
            if e.diff is not None:
                from secpolicy.fim.diff import redact_diff

                own = {"diff": (e.diff, redact_diff(e.diff, self.redactor.text))}
            self.trail.record(rec, own)
        self.errors(result.errors)

    def errors(self, errors: Any) -> None:
        if self.trail is not None:
            for err in errors:
                self.trail.failure(f"{display_path(err.path)}: {err.message}", severity="medium",
                                   kind="unreadable entry", path=display_path(err.path))

    def config_changed(self, path: str, old_digest: str, new_digest: str) -> None:
        """`update` accepted a baseline made for another configuration."""
        if self.trail is not None:
            from secpolicy.auditlog import records

            self.trail.record(records.config_changed(path, old_digest, new_digest, component="fim"))

    def finished(self, **details: Any) -> None:
        if self.trail is not None:
            self.trail.finished(None, None, **details)


def _db_identity(db: str) -> str:
    """How the audit log names a baseline database: its absolute path, symlinks resolved."""
    return os.path.realpath(db)


def recorded_generations(directory: str) -> Generations | None:
    """Every `fim_baseline` record in the audit log at `directory`, in log order, each with
    the database it names; None when there is none."""
    from secpolicy.auditlog.verify import log_files, read_lines

    found: list[tuple[int, str, dict[str, Any]]] = []
    needle = json.dumps(GENERATION_RECORD).encode()
    for path, n, line, complete, _ in read_lines(log_files([directory])):
        if needle not in line or not complete:
            continue
        try:
            entry = json.loads(line)
            body = entry["body"]
            if entry.get("kind") != "record" or body.get("event_type") != GENERATION_RECORD:
                continue
            found.append((int(entry["seq"]), str(entry.get("ts", "")), body["details"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IntegrityError(f"{path}:{n}: unreadable audit log entry (run `secpolicy log verify`)") from None
    if not found:
        return None
    records = []
    for seq, ts, d in sorted(found, key=lambda f: f[0]):
        try:
            records.append((str(d["db"]), Recorded(
                baseline_id=str(d["baseline_id"]), lineage_id=str(d["lineage_id"]),
                generation=int(d["generation"]), created_at=float(d["created_at"]),
                root_hash=str(d["root_hash"]), where=f"audit log seq {seq}, {ts}",
            )))
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"{directory}: audit log seq {seq}: malformed {GENERATION_RECORD} record") from None
    return Generations(tuple(records))
