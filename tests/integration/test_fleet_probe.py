"""The fleet store and its roll-up against hostile and odd results files and stores: one host's
results cannot restate rules for the others, hosts are told apart by machine-id, the newest
scan is the latest instant, inputs that are not results files are exit 2 naming the file, and
the report is written as every output is."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, private_postgres

from secpolicy.fleet import build_fleet_report, open_store, read_results
from secpolicy.resultsfile import results_bytes

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "reports"))
from gen_results import agree

SECPOLICY = [sys.executable, "-m", "secpolicy"]
NOW = dt.datetime(2025, 6, 10, 12, 0, tzinfo=dt.UTC)
RULE = "cis-1.1.1.1-cramfs-module-disabled"  # low, cis 1.1.1.1, pci-dss 2.2.4, ...


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("scan") / "results.json"
    root = REPO / "tests" / "fixtures" / "roots" / "hardened"
    r = subprocess.run([*SECPOLICY, "scan", "--root", str(root), "--format", "json", "-o", str(out)],
                       capture_output=True, text=True, check=False)
    assert r.returncode in (0, 1), r.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    assert any(f["rule_id"] == RULE and f["references"]["cis"] == ["1.1.1.1"] for f in data["results"])
    return data


def scan_of(base: dict[str, Any], host: str, when: str, scan_id: str, *, fail: set[str] | frozenset[str] = frozenset(),
            machine_id: str | None = None, edit: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`base` as scanned on `host` (with `machine_id`) at `when`, exactly the rules in `fail` failing."""
    d = copy.deepcopy(base)
    d["scan"].update(id=scan_id, host=host, started_at=when, finished_at=when)
    d["scan"]["host_identity"].update(hostname=host, machine_id=machine_id)
    for f in d["results"]:
        if f["status"] in ("pass", "fail", "error"):
            f["status"] = "fail" if f["rule_id"] in fail else "pass"
    if edit is not None:
        edit(d)
    return agree(d)


def put(tmp: Path, name: str, doc: dict[str, Any]) -> str:
    p = tmp / f"{name}.json"
    p.write_bytes(results_bytes(doc))
    return str(p)


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, check=False, timeout=300, **kw)


def ingest(db: Path | str, *files: str) -> subprocess.CompletedProcess[str]:
    return run("fleet", "ingest", "--store", str(db), *files)


def scans_in(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as c:
        return sorted(c.execute("SELECT host_id, scan_id FROM scans").fetchall())


# -- one host's results describe that host only ---------------------------------------------------


def _restating(d: dict[str, Any]) -> None:
    f = next(f for f in d["results"] if f["rule_id"] == RULE)
    f.update(title="Informational only", severity="info",
             references={"cis": ["9.9.9"], "made-up": ["1.1"]})


def _check_rule_statements(target: str, base: dict[str, Any], tmp: Path) -> None:
    good = put(tmp, "good", scan_of(base, "good", "2025-06-10T10:00:00+00:00", "g-1", fail={RULE}))
    evil = put(tmp, "evil", scan_of(base, "evil", "2025-06-10T11:00:00+00:00", "e-1", edit=_restating))
    with open_store(target) as store:
        store.ingest(read_results([good, evil]))
        cis = store.requirement_matrix("cis")
        made_up = store.requirement_matrix("made-up")
        worst = {w[0]: w for w in build_fleet_report(store, framework="cis", now=NOW).worst}
    # The good host's failure stays where its own scan maps it, with its own title and severity.
    assert cis["hostname:good"]["1.1.1.1"] == "fail" and "9.9.9" not in cis["hostname:good"]
    assert cis["hostname:evil"]["9.9.9"] == "pass" and "1.1.1.1" not in cis["hostname:evil"]
    assert set(made_up) == {"hostname:evil"}
    title = next(f["title"] for f in base["results"] if f["rule_id"] == RULE)
    assert worst[RULE] == (RULE, title, "low", 1, 2)


def test_one_hosts_results_cannot_retitle_rerate_or_remap_a_rule_for_the_fleet(base: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    _check_rule_statements(str(tmp_path / "fleet.db"), base, tmp_path)


# -- which host, which scan -----------------------------------------------------------------------


def test_machine_id_tells_hosts_of_one_name_apart_and_follows_a_rename(base: dict[str, Any], tmp_path: Path) -> None:
    files = [put(tmp_path, "web1-a", scan_of(base, "web1", "2025-06-10T10:00:00+00:00", "a-1", machine_id="a" * 32)),
             put(tmp_path, "web1-b", scan_of(base, "web1", "2025-06-10T10:30:00+00:00", "b-1", machine_id="b" * 32,
                                             fail={RULE})),
             put(tmp_path, "renamed", scan_of(base, "web1-new", "2025-06-10T11:00:00+00:00", "a-2",
                                              machine_id="a" * 32))]
    db = tmp_path / "fleet.db"
    r = ingest(db, *files)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as c:
        hosts = sorted(c.execute("SELECT host_id, hostname, os FROM hosts").fetchall())
    assert hosts == [(f"machine-id:{'a' * 32}", "web1-new", "Debian GNU/Linux 12 (bookworm)"),
                     (f"machine-id:{'b' * 32}", "web1", "Debian GNU/Linux 12 (bookworm)")]
    # A second host claiming the name is shown as what it is, not as a second "web1".
    clone = put(tmp_path, "clone", scan_of(base, "web1-new", "2025-06-10T11:30:00+00:00", "c-1", machine_id="c" * 32))
    assert ingest(db, clone).returncode == 0
    with open_store(str(db)) as store:
        names = sorted(h.scan.hostname for h in build_fleet_report(store, now=NOW).hosts)
    assert names == ["web1", f"web1-new (machine-id {'a' * 12})", f"web1-new (machine-id {'c' * 12})"]


def test_the_newest_scan_is_the_latest_instant_whatever_its_offset(base: dict[str, Any], tmp_path: Path) -> None:
    files = [
        put(tmp_path, "tz-old", scan_of(base, "tz", "2025-06-10T12:00:00+00:00", "tz-old", fail={RULE})),
        put(tmp_path, "tz-new", scan_of(base, "tz", "2025-06-10T10:00:00-05:00", "tz-new")),  # 15:00 UTC
        put(tmp_path, "z-old", scan_of(base, "z", "2025-06-10T12:00:00Z", "z-old", fail={RULE})),
        put(tmp_path, "z-new", scan_of(base, "z", "2025-06-10T12:00:00.5+00:00", "z-new")),
    ]
    db = tmp_path / "fleet.db"
    assert ingest(db, *files).returncode == 0
    with open_store(str(db)) as store:
        report = build_fleet_report(store, now=NOW)
        assert [s.scan_id for s in store.history("hostname:tz")] == ["tz-old", "tz-new"]
    assert {h.scan.hostname: (h.scan.scan_id, h.scan.failed) for h in report.hosts} == {
        "tz": ("tz-new", 0), "z": ("z-new", 0)}


def test_two_scans_of_one_host_at_one_instant_are_refused_whole(base: dict[str, Any], tmp_path: Path) -> None:
    one = put(tmp_path, "one", scan_of(base, "h", "2025-06-10T12:00:00+00:00", "eq-1", fail={RULE}))
    two = put(tmp_path, "two", scan_of(base, "h", "2025-06-10T14:00:00+02:00", "eq-2"))
    other = put(tmp_path, "other", scan_of(base, "o", "2025-06-10T12:00:00+00:00", "o-1"))
    db = tmp_path / "fleet.db"
    r = ingest(db, other, one, two)
    assert r.returncode == 2 and "two.json" in r.stderr and "eq-1" in r.stderr, r.stderr
    assert scans_in(db) == []  # nothing of that ingest is kept
    assert ingest(db, other, one).returncode == 0
    r = ingest(db, two)
    assert r.returncode == 2 and "same instant" in r.stderr
    assert scans_in(db) == [("hostname:h", "eq-1"), ("hostname:o", "o-1")]


def test_a_scan_that_starts_in_the_future_is_refused(base: dict[str, Any], tmp_path: Path) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    f = put(tmp_path, "future", scan_of(base, "h", future.isoformat(), "f-1"))
    db = tmp_path / "fleet.db"
    r = ingest(db, f)
    assert r.returncode == 2 and "future.json" in r.stderr and "in the future" in r.stderr, r.stderr
    assert scans_in(db) == []


# -- inputs that are not results files -----------------------------------------------------------


def test_inputs_that_are_not_results_files_are_exit_2_naming_them(base: dict[str, Any], tmp_path: Path) -> None:
    good = put(tmp_path, "good", scan_of(base, "h", "2025-06-10T12:00:00+00:00", "g-1"))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # nobody writes to it
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    bad_time = put(tmp_path, "badtime", scan_of(base, "h2", "yesterday", "t-1"))
    db = tmp_path / "fleet.db"
    for path in (str(fifo), "/dev/zero", str(empty), bad_time):
        r = ingest(db, good, path)
        assert r.returncode == 2, (path, r.returncode, r.stderr)
        assert path in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert scans_in(db) == []
    # A pipe that carries a results file is read (`<(ssh host cat results.json)`).
    r = subprocess.run(["bash", "-c", f'exec "$@" <(cat {good})', "-", *SECPOLICY, "fleet", "ingest", "--store",
                        str(db)], capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, r.stderr
    assert scans_in(db) == [("hostname:h", "g-1")]


def _undecodable(d: dict[str, Any]) -> None:
    d["scan"]["host"] = d["scan"]["host_identity"]["hostname"] = "caf\udce9"
    f = next(f for f in d["results"] if f["rule_id"] == RULE)
    f["title"] = "NUL \x00 and \udcff"
    f["evidence"][0]["observed"] = "/etc/\udcff"


def test_results_with_bytes_the_host_could_not_decode_are_ingested(base: dict[str, Any], tmp_path: Path) -> None:
    f = put(tmp_path, "odd", scan_of(base, "x", "2025-06-10T12:00:00+00:00", "odd-1", edit=_undecodable,
                                     fail={RULE}))
    assert b"caf\\udce9" in Path(f).read_bytes()  # as scan writes it
    db = tmp_path / "fleet.db"
    r = ingest(db, f)
    assert r.returncode == 0, r.stderr
    with open_store(str(db)) as store:
        report = build_fleet_report(store, now=NOW)
    assert [h.scan.hostname for h in report.hosts] == ["caf\\xe9"]
    assert [(w[0], w[1]) for w in report.worst] == [(RULE, "NUL \\x00 and \\xff")]


# -- the report command ----------------------------------------------------------------------------


def test_fleet_report_refuses_what_would_be_wrong_or_destroy_the_store(base: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "fleet.db"
    assert ingest(db, put(tmp_path, "h", scan_of(base, "h", "2025-06-10T12:00:00+00:00", "h-1"))).returncode == 0
    before = db.read_bytes()
    # The output is the store itself: refused, the store intact.
    r = run("fleet", "report", "--store", str(db), "-o", str(db))
    assert r.returncode == 2 and "refusing to overwrite an input" in r.stderr, r.stderr
    assert db.read_bytes() == before
    # A link as the output is refused, as for every output; the file it points to is intact.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (tmp_path / "link.html").symlink_to(victim)
    r = run("fleet", "report", "--store", str(db), "-o", str(tmp_path / "link.html"))
    assert r.returncode == 2 and victim.read_text() == "keep\n", r.stderr
    # A store that does not exist is not created and reported as an empty fleet.
    r = run("fleet", "report", "--store", str(tmp_path / "typo.db"), "-o", str(tmp_path / "x.html"))
    assert r.returncode == 2 and "typo.db" in r.stderr and not (tmp_path / "typo.db").exists(), r.stderr
    r = run("fleet", "report", "--store", str(tmp_path / "f.db"), "-o", str(tmp_path / "x.html"))
    assert r.returncode == 2
    empty = tmp_path / "empty.db"
    open_store(str(empty)).close()
    r = run("fleet", "report", "--store", str(empty), "-o", str(tmp_path / "x.html"))
    assert r.returncode == 2 and "no scan" in r.stderr, r.stderr
    # --stale-days nan would list no host as stale, ever.
    for bad in ("nan", "inf"):
        r = run("fleet", "report", "--store", str(db), "-o", str(tmp_path / "x.html"), "--stale-days", bad)
        assert r.returncode == 2 and "--stale-days" in r.stderr, r.stderr
    assert not (tmp_path / "x.html").exists()
    r = run("fleet", "report", "--store", str(db), "-o", "")
    assert r.returncode == 2 and "--output" in r.stderr, r.stderr
    # Written private (0600) whatever the umask, as every report.
    out = tmp_path / "fleet.html"
    r = run("fleet", "report", "--store", str(db), "-o", str(out), preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600" and "</html>" in out.read_text()


def test_a_store_of_the_earlier_schema_reports_what_its_scans_say(tmp_path: Path) -> None:
    """A store written before rule statements were kept per scan and times as UTC."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.executescript("""
            CREATE TABLE hosts (host_id TEXT PRIMARY KEY, hostname TEXT NOT NULL, os TEXT, kernel TEXT,
                first_scan TEXT NOT NULL, last_scan TEXT NOT NULL);
            CREATE TABLE scans (scan_id TEXT PRIMARY KEY, host_id TEXT NOT NULL REFERENCES hosts(host_id),
                started_at TEXT NOT NULL, finished_at TEXT, version TEXT, root TEXT, results_sha256 TEXT NOT NULL,
                total INTEGER NOT NULL, passed INTEGER NOT NULL, failed INTEGER NOT NULL, errors INTEGER NOT NULL,
                not_applicable INTEGER NOT NULL, waived INTEGER NOT NULL);
            CREATE TABLE findings (scan_id TEXT NOT NULL REFERENCES scans(scan_id), rule_id TEXT NOT NULL,
                status TEXT NOT NULL, severity TEXT NOT NULL, PRIMARY KEY (scan_id, rule_id));
            CREATE TABLE rules (rule_id TEXT PRIMARY KEY, title TEXT NOT NULL, severity TEXT NOT NULL);
            CREATE TABLE rule_refs (rule_id TEXT NOT NULL, framework TEXT NOT NULL, requirement TEXT NOT NULL,
                PRIMARY KEY (rule_id, framework, requirement));
            INSERT INTO hosts VALUES ('hostname:h', 'h', NULL, NULL, '2025-06-10T12:00:00+00:00',
                '2025-06-10T12:00:00+00:00');
            INSERT INTO scans VALUES ('old', 'hostname:h', '2025-06-10T12:00:00+00:00', NULL, NULL, NULL, 'x',
                1, 0, 1, 0, 0, 0);
            INSERT INTO scans VALUES ('new', 'hostname:h', '2025-06-10T10:00:00-05:00', NULL, NULL, NULL, 'y',
                1, 1, 0, 0, 0, 0);
            INSERT INTO findings VALUES ('old', 'r1', 'fail', 'high'), ('new', 'r1', 'pass', 'high');
            INSERT INTO rules VALUES ('r1', 'Rule one', 'high');
            INSERT INTO rule_refs VALUES ('r1', 'cis', '1.2.3');
        """)
    c.close()
    r = run("fleet", "report", "--store", str(db), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    with open_store(str(db)) as store:
        report = build_fleet_report(store, now=NOW)
        assert store.requirement_matrix("cis") == {"hostname:h": {"1.2.3": "pass"}}
    assert [(h.scan.scan_id, h.scan.failed) for h in report.hosts] == [("new", 0)]


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture
def postgres() -> Iterator[PgServer]:
    yield from private_postgres()


def test_postgresql_keeps_each_hosts_rules_and_odd_text(postgres: PgServer, base: dict[str, Any],
                                                        tmp_path: Path) -> None:
    _check_rule_statements(postgres.url, base, tmp_path)
    odd = put(tmp_path, "odd", scan_of(base, "x", "2025-06-10T12:30:00+00:00", "odd-1", edit=_undecodable,
                                       fail={RULE}))
    r = ingest(postgres.url, odd)
    assert r.returncode == 0, r.stderr
    with open_store(postgres.url) as store:
        assert "caf\\xe9" in {h.scan.hostname for h in build_fleet_report(store, now=NOW).hosts}
