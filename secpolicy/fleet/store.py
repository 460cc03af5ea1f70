"""The fleet store: scan results of many hosts in SQLite (embedded default) or PostgreSQL
(`postgresql://...`), one row per host, scan, finding and rule reference, queried by the roll-up."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import orjson

from secpolicy.errors import InputError, RuntimeFailure
from secpolicy.outfile import check_sqlite_companions

__all__ = ["FleetStore", "IngestResult", "ScanRow", "host_key", "open_store"]

# One schema for both engines: only types and SQL both understand.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hosts (
        host_id TEXT PRIMARY KEY, hostname TEXT NOT NULL, os TEXT, kernel TEXT,
        first_scan TEXT NOT NULL, last_scan TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS scans (
        scan_id TEXT PRIMARY KEY, host_id TEXT NOT NULL REFERENCES hosts(host_id),
        started_at TEXT NOT NULL, finished_at TEXT, version TEXT, root TEXT,
        results_sha256 TEXT NOT NULL, total INTEGER NOT NULL, passed INTEGER NOT NULL,
        failed INTEGER NOT NULL, errors INTEGER NOT NULL, not_applicable INTEGER NOT NULL,
        waived INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS scans_host_time ON scans (host_id, started_at)",
    """CREATE TABLE IF NOT EXISTS findings (
        scan_id TEXT NOT NULL REFERENCES scans(scan_id), rule_id TEXT NOT NULL,
        status TEXT NOT NULL, severity TEXT NOT NULL, PRIMARY KEY (scan_id, rule_id))""",
    "CREATE INDEX IF NOT EXISTS findings_rule_status ON findings (rule_id, status)",
    """CREATE TABLE IF NOT EXISTS rules (
        rule_id TEXT PRIMARY KEY, title TEXT NOT NULL, severity TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rule_refs (
        rule_id TEXT NOT NULL, framework TEXT NOT NULL, requirement TEXT NOT NULL,
        PRIMARY KEY (rule_id, framework, requirement))""",
)

_STATUSES = ("pass", "fail", "error", "not_applicable", "waived", "skipped")
_SEVERITIES = frozenset({"info", "low", "medium", "high", "critical"})


def host_key(results: Mapping[str, Any]) -> tuple[str, str, str | None, str | None]:
    """(host id, hostname, OS, kernel) of a results file. The machine-id identifies a host
    across renames where the results carry it; otherwise the hostname does."""
    scan = results.get("scan") or {}
    raw = results.get("host")
    host: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    hostname = str(host.get("hostname") or scan.get("host") or "unknown")
    machine_id = host.get("machine_id")
    os_name = host.get("os", {}).get("pretty_name") if isinstance(host.get("os"), Mapping) else host.get("os")
    kernel = host.get("kernel") if isinstance(host.get("kernel"), str) else None
    return (f"machine-id:{machine_id}" if machine_id else f"hostname:{hostname}"), hostname, os_name, kernel


@dataclass(frozen=True)
class ScanRow:
    scan_id: str
    host_id: str
    hostname: str
    started_at: str
    total: int
    passed: int
    failed: int
    errors: int
    not_applicable: int
    waived: int

    @property
    def score(self) -> float | None:
        """Share of applicable, decided controls that hold (waived ones count as holding)."""
        decided = self.passed + self.failed + self.errors + self.waived
        return None if decided == 0 else 100.0 * (self.passed + self.waived) / decided


@dataclass
class IngestResult:
    scans: int = 0
    findings: int = 0
    duplicates: int = 0  # scans already in the store (same scan id and content)


class FleetStore:
    """A DB-API connection with the fleet schema. `paramstyle` hides the engines' one
    difference that matters here (`?` against `%s`)."""

    def __init__(self, conn: Any, *, engine: str) -> None:
        self.conn = conn
        self.engine = engine
        self._p = "?" if engine == "sqlite" else "%s"
        cur = conn.cursor()
        for stmt in _SCHEMA:
            cur.execute(stmt)
        conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._p)

    # -- ingest --------------------------------------------------------------------------------

    def ingest(self, documents: Iterable[tuple[str, bytes, Mapping[str, Any]]]) -> IngestResult:
        """Store (name, raw bytes, parsed results) documents, each scan once: a scan id seen
        before with the same content is counted as a duplicate; with other content it is an
        error (two different results cannot share one scan id)."""
        out = IngestResult()
        cur = self.conn.cursor()
        findings: list[tuple[str, str, str, str]] = []
        rules: dict[str, tuple[str, str]] = {}
        refs: set[tuple[str, str, str]] = set()
        try:
            for name, raw, results in documents:
                digest = hashlib.sha256(raw).hexdigest()
                scan = results["scan"]
                scan_id = str(scan["id"])
                cur.execute(self._sql("SELECT results_sha256 FROM scans WHERE scan_id = ?"), (scan_id,))
                row = cur.fetchone()
                if row is not None:
                    if row[0] != digest:
                        raise InputError(f"scan {scan_id} is already in the fleet store with other content", name)
                    out.duplicates += 1
                    continue
                host_id, hostname, os_name, kernel = host_key(results)
                started = str(scan["started_at"])
                cur.execute(self._sql(
                    "INSERT INTO hosts (host_id, hostname, os, kernel, first_scan, last_scan) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (host_id) DO UPDATE SET "
                    "hostname = CASE WHEN excluded.last_scan >= hosts.last_scan THEN excluded.hostname ELSE hosts.hostname END, "
                    "os = CASE WHEN excluded.last_scan >= hosts.last_scan THEN excluded.os ELSE hosts.os END, "
                    "kernel = CASE WHEN excluded.last_scan >= hosts.last_scan THEN excluded.kernel ELSE hosts.kernel END, "
                    "first_scan = CASE WHEN excluded.first_scan < hosts.first_scan THEN excluded.first_scan ELSE hosts.first_scan END, "
                    "last_scan = CASE WHEN excluded.last_scan > hosts.last_scan THEN excluded.last_scan ELSE hosts.last_scan END"),
                    (host_id, hostname, os_name, kernel, started, started))
                counts = dict.fromkeys(_STATUSES, 0)
                for f in results["results"]:
                    status = str(f["status"])
                    counts[status] = counts.get(status, 0) + 1
                    rid = str(f["rule_id"])
                    findings.append((scan_id, rid, status, str(f["severity"])))
                    rules[rid] = (str(f.get("title") or rid), str(f["severity"]))
                    for fw, ids in (f.get("references") or {}).items():
                        for req in ids:
                            refs.add((rid, str(fw), str(req)))
                cur.execute(self._sql(
                    "INSERT INTO scans (scan_id, host_id, started_at, finished_at, version, root, results_sha256, total, "
                    "passed, failed, errors, not_applicable, waived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (scan_id, host_id, started, scan.get("finished_at"), scan.get("secpolicy_version"), scan.get("root"),
                     digest, len(results["results"]), counts["pass"], counts["fail"], counts["error"],
                     counts["not_applicable"], counts["waived"]))
                out.scans += 1
            out.findings = len(findings)
            self._bulk_findings(cur, findings)
            self._upsert_rules(cur, rules, refs)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return out

    def _bulk_findings(self, cur: Any, rows: Sequence[tuple[str, str, str, str]]) -> None:
        if not rows:
            return
        if self.engine == "postgresql":
            # COPY is PostgreSQL's bulk path (what `psql \copy` uses).
            with cur.copy("COPY findings (scan_id, rule_id, status, severity) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            return
        cur.executemany("INSERT INTO findings (scan_id, rule_id, status, severity) VALUES (?, ?, ?, ?)", rows)

    def _upsert_rules(self, cur: Any, rules: Mapping[str, tuple[str, str]], refs: set[tuple[str, str, str]]) -> None:
        cur.executemany(self._sql(
            "INSERT INTO rules (rule_id, title, severity) VALUES (?, ?, ?) ON CONFLICT (rule_id) DO UPDATE "
            "SET title = excluded.title, severity = excluded.severity"),
            [(rid, t, s) for rid, (t, s) in rules.items()])
        cur.executemany(self._sql(
            "INSERT INTO rule_refs (rule_id, framework, requirement) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"),
            sorted(refs))

    # -- queries -------------------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in cur.fetchall()]

    def latest_scans(self) -> list[ScanRow]:
        """Each host's newest scan, hosts by name."""
        rows = self._rows(
            "SELECT s.scan_id, s.host_id, h.hostname, s.started_at, s.total, s.passed, s.failed, s.errors, "
            "s.not_applicable, s.waived FROM scans s JOIN hosts h ON h.host_id = s.host_id "
            "WHERE s.started_at = (SELECT MAX(started_at) FROM scans t WHERE t.host_id = s.host_id) "
            "ORDER BY h.hostname, s.host_id")
        return [ScanRow(*r) for r in rows]

    def history(self, host_id: str, limit: int = 30) -> list[ScanRow]:
        rows = self._rows(
            "SELECT s.scan_id, s.host_id, h.hostname, s.started_at, s.total, s.passed, s.failed, s.errors, "
            "s.not_applicable, s.waived FROM scans s JOIN hosts h ON h.host_id = s.host_id WHERE s.host_id = ? "
            "ORDER BY s.started_at DESC LIMIT ?", (host_id, limit))
        return [ScanRow(*r) for r in reversed(rows)]

    def worst_rules(self, limit: int = 25) -> list[tuple[str, str, str, int, int]]:
        """(rule id, title, severity, hosts failing, hosts evaluated) over each host's newest
        scan, most failing first; errors count as failing (they are not passes)."""
        return self._rows(
            "WITH latest AS (SELECT s.scan_id FROM scans s WHERE s.started_at = "
            "(SELECT MAX(started_at) FROM scans t WHERE t.host_id = s.host_id)) "
            "SELECT f.rule_id, r.title, r.severity, "
            "SUM(CASE WHEN f.status IN ('fail', 'error') THEN 1 ELSE 0 END) AS failing, "
            "SUM(CASE WHEN f.status IN ('pass', 'fail', 'error', 'waived') THEN 1 ELSE 0 END) AS evaluated "
            "FROM findings f JOIN latest l ON l.scan_id = f.scan_id JOIN rules r ON r.rule_id = f.rule_id "
            "GROUP BY f.rule_id, r.title, r.severity "
            "HAVING SUM(CASE WHEN f.status IN ('fail', 'error') THEN 1 ELSE 0 END) > 0 "
            "ORDER BY failing DESC, CASE r.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 "
            "WHEN 'low' THEN 3 ELSE 4 END, f.rule_id LIMIT ?", (limit,))  # type: ignore[return-value]

    def requirement_matrix(self, framework: str) -> dict[str, dict[str, str]]:
        """host id -> requirement -> worst status of the rules mapped to it in the host's
        newest scan (fail > error > pass; a requirement with only N/A or skipped rules is n/a)."""
        rows = self._rows(
            "WITH latest AS (SELECT s.scan_id, s.host_id FROM scans s WHERE s.started_at = "
            "(SELECT MAX(started_at) FROM scans t WHERE t.host_id = s.host_id)) "
            "SELECT l.host_id, rr.requirement, "
            "SUM(CASE WHEN f.status = 'fail' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN f.status = 'error' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN f.status IN ('pass', 'waived') THEN 1 ELSE 0 END) "
            "FROM findings f JOIN latest l ON l.scan_id = f.scan_id "
            "JOIN rule_refs rr ON rr.rule_id = f.rule_id AND rr.framework = ? "
            "GROUP BY l.host_id, rr.requirement", (framework,))
        out: dict[str, dict[str, str]] = {}
        for host_id, req, failed, errored, held in rows:
            status = "fail" if failed else "error" if errored else "pass" if held else "not_applicable"
            out.setdefault(host_id, {})[req] = status
        return out

    def frameworks(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT framework FROM rule_refs ORDER BY framework")]

    def counts(self) -> tuple[int, int, int]:
        (hosts,), = self._rows("SELECT COUNT(*) FROM hosts")
        (scans,), = self._rows("SELECT COUNT(*) FROM scans")
        (findings,), = self._rows("SELECT COUNT(*) FROM findings")
        return int(hosts), int(scans), int(findings)


def open_store(target: str) -> FleetStore:
    """A SQLite file path (created 0600 if absent) or a `postgresql://` URL."""
    if target.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise InputError("a PostgreSQL fleet store needs psycopg: pip install 'secpolicy[postgres]'") from None
        try:
            pg = psycopg.connect(target)
        except psycopg.Error as exc:
            raise RuntimeFailure(f"cannot connect to the fleet store: {str(exc).strip()}") from None
        return FleetStore(pg, engine="postgresql")
    check_sqlite_companions(target)
    try:
        if not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(target)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return FleetStore(conn, engine="sqlite")
    except (OSError, sqlite3.Error) as exc:
        raise InputError(f"cannot open the fleet store: {exc}", target) from None


def read_results(paths: Iterable[str]) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """(path, bytes, parsed) of each results file, checked against the results schema."""
    from secpolicy.reports.model import validate_results

    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"not a results file (invalid JSON: {exc})", path) from None
        # The whole results schema costs a quarter second a file; the roll-up reads only the
        # scan block, the summary and four fields of each finding, checked here.
        validate_results(data, path=path, summary_only=True)
        for i, f in enumerate(data["results"]):
            refs = f.get("references", {})
            if (f.get("severity") not in _SEVERITIES or not isinstance(f.get("title", ""), str)
                    or not isinstance(refs, dict)
                    or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in refs.values())):
                raise InputError(f"not a secpolicy results file: at results/{i}: severity, title or references "
                                 "malformed", path)
        yield path, raw, data


