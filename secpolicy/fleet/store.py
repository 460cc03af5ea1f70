"""The fleet store: scan results of many hosts in SQLite (embedded default) or PostgreSQL
(`postgresql://...`), one row per host, scan, finding and rule reference, queried by the roll-up."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import orjson

from secpolicy.errors import InputError, RuntimeFailure
from secpolicy.outfile import check_sqlite_companions
from secpolicy.resultsfile import read_input

__all__ = ["FleetStore", "IngestResult", "ScanRow", "host_key", "open_store"]

MAX_RESULTS_BYTES = 1 << 30  # a results file larger than this is refused (a stream without end, a hostile file)
FUTURE_SKEW = dt.timedelta(hours=1)  # clock skew tolerated before a scan counts as starting in the future

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
        status TEXT NOT NULL, severity TEXT NOT NULL, def_id TEXT, PRIMARY KEY (scan_id, rule_id))""",
    "CREATE INDEX IF NOT EXISTS findings_rule_status ON findings (rule_id, status)",
    # A rule as one scan states it (title, severity, references), keyed by a digest of that
    # statement: each host's findings keep their own, so no host's results can retitle,
    # re-rate or re-map a rule for the others. A fleet running one pack version has one each.
    """CREATE TABLE IF NOT EXISTS rule_defs (
        def_id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, title TEXT NOT NULL, severity TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS def_refs (
        def_id TEXT NOT NULL, framework TEXT NOT NULL, requirement TEXT NOT NULL,
        PRIMARY KEY (def_id, framework, requirement))""",
    # Stores written before rule_defs kept one statement per rule id, the last one ingested.
    """CREATE TABLE IF NOT EXISTS rules (
        rule_id TEXT PRIMARY KEY, title TEXT NOT NULL, severity TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rule_refs (
        rule_id TEXT NOT NULL, framework TEXT NOT NULL, requirement TEXT NOT NULL,
        PRIMARY KEY (rule_id, framework, requirement))""",
)
_SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}

_STATUSES = ("pass", "fail", "error", "not_applicable", "waived", "skipped")
_SEVERITIES = frozenset({"info", "low", "medium", "high", "critical"})


def host_key(results: Mapping[str, Any]) -> tuple[str, str, str | None, str | None]:
    """(host id, hostname, OS, kernel) of a results file, from `scan.host` and
    `scan.host_identity`. The machine-id identifies a host across renames where the results
    carry it (as `diff` and `report --history` tell hosts apart); otherwise the hostname does."""
    scan = results.get("scan") or {}
    raw = scan.get("host_identity")
    ident: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    hostname = _text(scan.get("host") or ident.get("hostname") or "unknown")
    machine_id = ident.get("machine_id")
    osr = ident.get("os_release")
    os_name = None
    if isinstance(osr, Mapping):
        os_name = osr.get("pretty_name") or " ".join(str(x) for x in (osr.get("id"), osr.get("version_id")) if x)
    kernel = ident.get("kernel")
    kernel_name = None
    if isinstance(kernel, Mapping) and kernel.get("release"):
        kernel_name = f"{kernel.get('release')} ({kernel.get('machine')})" if kernel.get("machine") else str(
            kernel.get("release"))
    host_id = f"machine-id:{_text(machine_id)}" if isinstance(machine_id, str) and machine_id else f"hostname:{hostname}"
    return host_id, hostname, _text(os_name) if os_name else None, _text(kernel_name) if kernel_name else None


def _text(value: Any) -> str:
    """A string both engines store as it is: bytes the host could not decode (lone surrogates
    `\\udcXX`) become their `\\xNN` escapes, as in every report, and NUL, which PostgreSQL
    refuses in text, becomes `\\x00`."""
    s = str(value)
    if s.isascii() and "\x00" not in s:
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        try:
            b = s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            b = s.encode("utf-8", "backslashreplace")
        s = b.decode("utf-8", "backslashreplace")
    return s.replace("\x00", "\\x00")


def utc_time(text: str) -> dt.datetime:
    """A results time as an aware UTC instant (a time without offset is UTC, as in reports)."""
    from secpolicy.reports.model import parse_time

    return parse_time(text).astimezone(dt.UTC)


def _stored_time(t: dt.datetime) -> str:
    # One fixed-width UTC form, so that the engines' text order is the order in time.
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds")


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
        self._upgrade(cur)
        conn.commit()

    def _upgrade(self, cur: Any) -> None:
        """Bring a store written by an earlier version to this schema: each finding names the
        rule statement it was scanned with (there, the one statement kept per rule id), and
        every time is stored as one UTC form."""
        if self.engine == "sqlite":
            cur.execute("PRAGMA table_info(findings)")
            columns = {r[1] for r in cur.fetchall()}
        else:
            cur.execute("SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'findings' AND table_schema = current_schema()")
            columns = {r[0] for r in cur.fetchall()}
        if "def_id" not in columns:
            cur.execute("ALTER TABLE findings ADD COLUMN def_id TEXT")
        cur.execute("SELECT COUNT(*) FROM findings WHERE def_id IS NULL")
        if cur.fetchone()[0]:
            cur.execute("INSERT INTO rule_defs (def_id, rule_id, title, severity) "
                        "SELECT 'legacy:' || rule_id, rule_id, title, severity FROM rules WHERE 'legacy:' || rule_id "
                        "NOT IN (SELECT def_id FROM rule_defs)")
            cur.execute("INSERT INTO def_refs (def_id, framework, requirement) "
                        "SELECT 'legacy:' || rule_id, framework, requirement FROM rule_refs WHERE 'legacy:' || rule_id "
                        "NOT IN (SELECT def_id FROM def_refs)")
            cur.execute("UPDATE findings SET def_id = 'legacy:' || rule_id WHERE def_id IS NULL")
        cur.execute("SELECT scan_id, started_at FROM scans WHERE started_at NOT LIKE '____-__-__T__:__:__.______+00:00'")
        old = cur.fetchall()
        if old:
            for scan_id, started in old:
                try:
                    fixed = _stored_time(utc_time(started))
                except InputError:
                    continue
                cur.execute(self._sql("UPDATE scans SET started_at = ? WHERE scan_id = ?"), (fixed, scan_id))
            cur.execute("UPDATE hosts SET first_scan = (SELECT MIN(started_at) FROM scans s WHERE s.host_id = hosts.host_id), "
                        "last_scan = (SELECT MAX(started_at) FROM scans s WHERE s.host_id = hosts.host_id) "
                        "WHERE host_id IN (SELECT host_id FROM scans)")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._p)

    # -- ingest --------------------------------------------------------------------------------

    def ingest(self, documents: Iterable[tuple[str, bytes, Mapping[str, Any]]], *,
               now: dt.datetime | None = None) -> IngestResult:
        """Store (name, raw bytes, parsed results) documents, each scan once, all or none: a
        scan id seen before with the same content is counted as a duplicate; with other content
        it is an error (two different results cannot share one scan id), and so is a scan that
        starts in the future or at the very instant another scan of its host started (which of
        the two is the host's newest could not be told)."""
        now = now or dt.datetime.now(dt.UTC)
        out = IngestResult()
        cur = self.conn.cursor()
        findings: list[tuple[str, str, str, str, str]] = []
        defs: dict[tuple[str, str, str, tuple[tuple[str, tuple[str, ...]], ...]], str] = {}
        try:
            for name, raw, results in documents:
                digest = hashlib.sha256(raw).hexdigest()
                scan = results["scan"]
                scan_id = _text(scan["id"])
                cur.execute(self._sql("SELECT results_sha256 FROM scans WHERE scan_id = ?"), (scan_id,))
                row = cur.fetchone()
                if row is not None:
                    if row[0] != digest:
                        raise InputError(f"scan {scan_id} is already in the fleet store with other content", name)
                    out.duplicates += 1
                    continue
                host_id, hostname, os_name, kernel = host_key(results)
                try:
                    start = utc_time(str(scan["started_at"]))
                    finish = utc_time(str(scan["finished_at"])) if scan.get("finished_at") else None
                except InputError as exc:
                    raise InputError(exc.message, name) from None
                if start > now + FUTURE_SKEW:
                    raise InputError(f"scan {scan_id} of {hostname} starts at {scan['started_at']}, in the future "
                                     f"(it is now {now:%Y-%m-%d %H:%M} UTC): the host's clock or the file is wrong", name)
                started = _stored_time(start)
                cur.execute(self._sql("SELECT scan_id FROM scans WHERE host_id = ? AND started_at = ?"),
                            (host_id, started))
                row = cur.fetchone()
                if row is not None:
                    raise InputError(f"scan {scan_id} of {hostname} starts at the same instant ({started}) as scan "
                                     f"{row[0]} of the same host (in the fleet store, or an earlier file of this ingest): "
                                     "which one is the host's newest cannot be told", name)
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
                    status = _text(f["status"])
                    counts[status] = counts.get(status, 0) + 1
                    rid = _text(f["rule_id"])
                    severity = _text(f["severity"])
                    refs = tuple(sorted((_text(fw), tuple(sorted({_text(r) for r in ids})))
                                        for fw, ids in (f.get("references") or {}).items()))
                    key = (rid, _text(f.get("title") or rid), severity, refs)
                    def_id = defs.get(key)
                    if def_id is None:
                        def_id = defs[key] = hashlib.sha256(orjson.dumps(key)).hexdigest()[:32]
                    findings.append((scan_id, rid, status, severity, def_id))
                cur.execute(self._sql(
                    "INSERT INTO scans (scan_id, host_id, started_at, finished_at, version, root, results_sha256, total, "
                    "passed, failed, errors, not_applicable, waived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (scan_id, host_id, started, _stored_time(finish) if finish else None,
                     _text(scan["secpolicy_version"]) if scan.get("secpolicy_version") else None,
                     _text(scan["root"]) if scan.get("root") else None,
                     digest, len(results["results"]), counts["pass"], counts["fail"], counts["error"],
                     counts["not_applicable"], counts["waived"]))
                out.scans += 1
            out.findings = len(findings)
            self._bulk_findings(cur, findings)
            self._insert_defs(cur, defs)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return out

    def _bulk_findings(self, cur: Any, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        if not rows:
            return
        if self.engine == "postgresql":
            # COPY is PostgreSQL's bulk path (what `psql \copy` uses).
            with cur.copy("COPY findings (scan_id, rule_id, status, severity, def_id) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            return
        cur.executemany("INSERT INTO findings (scan_id, rule_id, status, severity, def_id) VALUES (?, ?, ?, ?, ?)",
                        rows)

    def _insert_defs(self, cur: Any,
                     defs: Mapping[tuple[str, str, str, tuple[tuple[str, tuple[str, ...]], ...]], str]) -> None:
        cur.executemany(self._sql(
            "INSERT INTO rule_defs (def_id, rule_id, title, severity) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (def_id) DO NOTHING"),
            [(def_id, rid, title, sev) for (rid, title, sev, _), def_id in defs.items()])
        cur.executemany(self._sql(
            "INSERT INTO def_refs (def_id, framework, requirement) VALUES (?, ?, ?) "
            "ON CONFLICT (def_id, framework, requirement) DO NOTHING"),
            [(def_id, fw, req) for (_, _, _, refs), def_id in defs.items() for fw, ids in refs for req in ids])

    # -- queries -------------------------------------------------------------------------------

    # Each host's newest scan: latest start; should two share it (a store filled otherwise
    # than by ingest), the greatest scan id, so a host is counted once.
    _LATEST = ("latest AS (SELECT scan_id, host_id FROM (SELECT s.scan_id, s.host_id, ROW_NUMBER() OVER "
               "(PARTITION BY s.host_id ORDER BY s.started_at DESC, s.scan_id DESC) AS n FROM scans s) ranked "
               "WHERE n = 1)")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in cur.fetchall()]

    def latest_scans(self) -> list[ScanRow]:
        """Each host's newest scan, hosts by name."""
        rows = self._rows(
            f"WITH {self._LATEST} "
            "SELECT s.scan_id, s.host_id, h.hostname, s.started_at, s.total, s.passed, s.failed, s.errors, "
            "s.not_applicable, s.waived FROM scans s JOIN latest l ON l.scan_id = s.scan_id "
            "JOIN hosts h ON h.host_id = s.host_id ORDER BY h.hostname, s.host_id")
        return [ScanRow(*r) for r in rows]

    def history(self, host_id: str, limit: int = 30) -> list[ScanRow]:
        rows = self._rows(
            "SELECT s.scan_id, s.host_id, h.hostname, s.started_at, s.total, s.passed, s.failed, s.errors, "
            "s.not_applicable, s.waived FROM scans s JOIN hosts h ON h.host_id = s.host_id WHERE s.host_id = ? "
            "ORDER BY s.started_at DESC, s.scan_id DESC LIMIT ?", (host_id, limit))
        return [ScanRow(*r) for r in reversed(rows)]

    def worst_rules(self, limit: int = 25) -> list[tuple[str, str, str, int, int]]:
        """(rule id, title, severity, hosts failing, hosts evaluated) over each host's newest
        scan, most failing first; errors count as failing (they are not passes). The title and
        severity are those most of these scans state for the rule (the more severe on a tie):
        one host cannot retitle or re-rate a rule for the fleet."""
        rows = self._rows(
            f"WITH {self._LATEST} "
            "SELECT f.rule_id, d.title, d.severity, "
            "SUM(CASE WHEN f.status IN ('fail', 'error') THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN f.status IN ('pass', 'fail', 'error', 'waived') THEN 1 ELSE 0 END), COUNT(*) "
            "FROM findings f JOIN latest l ON l.scan_id = f.scan_id JOIN rule_defs d ON d.def_id = f.def_id "
            "GROUP BY f.rule_id, d.title, d.severity")
        failing: Counter[str] = Counter()
        evaluated: Counter[str] = Counter()
        stated: dict[str, tuple[int, int, str, str]] = {}
        for rid, title, severity, fails, evals, n in rows:
            failing[rid] += int(fails)
            evaluated[rid] += int(evals)
            cand = (int(n), _SEVERITY_RANK.get(severity, -1), title, severity)
            if rid not in stated or cand[:3] > stated[rid][:3]:
                stated[rid] = cand
        ranked = sorted((rid for rid in failing if failing[rid] > 0),
                        key=lambda r: (-failing[r], -_SEVERITY_RANK.get(stated[r][3], -1), r))
        return [(rid, stated[rid][2], stated[rid][3], failing[rid], evaluated[rid]) for rid in ranked[:limit]]

    def requirement_matrix(self, framework: str) -> dict[str, dict[str, str]]:
        """host id -> requirement -> worst status of the rules mapped to it, as the host's newest
        scan maps them, in that scan (fail > error > pass; a requirement with only N/A or
        skipped rules is n/a)."""
        rows = self._rows(
            f"WITH {self._LATEST} "
            "SELECT l.host_id, rr.requirement, "
            "SUM(CASE WHEN f.status = 'fail' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN f.status = 'error' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN f.status IN ('pass', 'waived') THEN 1 ELSE 0 END) "
            "FROM findings f JOIN latest l ON l.scan_id = f.scan_id "
            "JOIN def_refs rr ON rr.def_id = f.def_id AND rr.framework = ? "
            "GROUP BY l.host_id, rr.requirement", (framework,))
        out: dict[str, dict[str, str]] = {}
        for host_id, req, failed, errored, held in rows:
            status = "fail" if failed else "error" if errored else "pass" if held else "not_applicable"
            out.setdefault(host_id, {})[req] = status
        return out

    def frameworks(self) -> list[str]:
        """The frameworks the hosts' newest scans map their rules to."""
        return [r[0] for r in self._rows(
            f"WITH {self._LATEST}, used AS (SELECT DISTINCT f.def_id FROM findings f JOIN latest l "
            "ON l.scan_id = f.scan_id) "
            "SELECT DISTINCT rr.framework FROM def_refs rr JOIN used u ON u.def_id = rr.def_id ORDER BY rr.framework")]

    def counts(self) -> tuple[int, int, int]:
        (hosts,), = self._rows("SELECT COUNT(*) FROM hosts")
        (scans,), = self._rows("SELECT COUNT(*) FROM scans")
        (findings,), = self._rows("SELECT COUNT(*) FROM findings")
        return int(hosts), int(scans), int(findings)


def open_store(target: str, *, create: bool = True) -> FleetStore:
    """A SQLite file path (created 0600 if absent and `create`) or a `postgresql://` URL."""
    if not target:
        raise InputError("--store is empty: give a SQLite file or a postgresql:// URL")
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
    if not create and not os.path.exists(target):
        raise InputError("no fleet store there (`secpolicy fleet ingest --store` creates one)", target)
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


def _read(path: str) -> bytes:
    """The bytes of a results file (`resultsfile.read_input`: a regular file or a pipe, not a
    device; a FIFO nobody writes to reads as empty), at most MAX_RESULTS_BYTES, not empty."""
    raw = read_input(path, "results file", MAX_RESULTS_BYTES)
    if not raw:
        raise InputError("empty: not a results file", path)
    return raw


def read_results(paths: Iterable[str]) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """(path, bytes, parsed) of each results file, checked against the results schema."""
    from secpolicy.reports.model import validate_results
    from secpolicy.resultsfile import parse_json

    for path in paths:
        raw = _read(path)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            # orjson refuses what results files legitimately hold (`\udcXX`, the escape of a
            # byte the host could not decode); the strict reader takes it, or says where it fails.
            data = parse_json(raw, path)
        # The whole results schema costs a quarter second a file; the roll-up reads only the
        # scan block and four fields of each finding, checked here (the summary's overall
        # counts too; its breakdown by severity and framework, which nothing here reads, not).
        try:
            validate_results(data, path=path, summary_only=True, breakdown=False)
        except InputError as exc:
            if exc.path is None:
                raise InputError(exc.message, path) from None
            raise
        for i, f in enumerate(data["results"]):
            refs = f.get("references", {})
            if (f.get("severity") not in _SEVERITIES or not isinstance(f.get("title", ""), str)
                    or not isinstance(refs, dict)
                    or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in refs.values())):
                raise InputError(f"not a secpolicy results file: at results/{i}: severity, title or references "
                                 "malformed", path)
        yield path, raw, data
