"""Fleet roll-up: results of several hosts (from a real scan, varied per host) ingested into
SQLite and into a real PostgreSQL server; the matrix, the worst controls, the trend and the
stale hosts are exactly what the ingested scans say; duplicates and conflicts are handled."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, private_postgres

from secpolicy.errors import InputError
from secpolicy.fleet import build_fleet_report, open_store, read_results, render_fleet_html
from secpolicy.fleet.report import requirement_group

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "reports"))
from gen_results import agree

SECPOLICY = [sys.executable, "-m", "secpolicy"]
NOW = dt.datetime(2026, 6, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def scan_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("scan") / "results.json"
    root = REPO / "tests" / "fixtures" / "roots" / "hardened"
    r = subprocess.run([*SECPOLICY, "scan", "--root", str(root), "--format", "json", "-o", str(out)],
                       capture_output=True, text=True, check=False)
    assert r.returncode in (0, 1), r.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def variant(base: dict[str, Any], host: str, when: dt.datetime, fail: set[str], scan_id: str) -> dict[str, Any]:
    """`base` as scanned on `host` at `when`, with exactly the rules in `fail` failing."""
    d = copy.deepcopy(base)
    d["scan"].update(id=scan_id, host=host, started_at=when.isoformat(), finished_at=when.isoformat())
    for f in d["results"]:
        if f["status"] in ("pass", "fail", "error"):
            f["status"] = "fail" if f["rule_id"] in fail else "pass"
    return agree(d)


def write(tmp: Path, name: str, data: dict[str, Any]) -> str:
    p = tmp / f"{name}.json"
    p.write_text(json.dumps(data))
    return str(p)


def _checked_rules(base: dict[str, Any]) -> list[str]:
    return [f["rule_id"] for f in base["results"] if f["status"] in ("pass", "fail")
            and "pci-dss" in f["references"]]


def _fleet_files(base: dict[str, Any], tmp: Path) -> tuple[list[str], list[str]]:
    rules = _checked_rules(base)
    a, b = rules[0], rules[1]
    files = [
        write(tmp, "web1-old", variant(base, "web1", NOW - dt.timedelta(days=2), {a, b}, "s-web1-1")),
        write(tmp, "web1-new", variant(base, "web1", NOW - dt.timedelta(hours=3), {a}, "s-web1-2")),
        write(tmp, "db1", variant(base, "db1", NOW - dt.timedelta(days=9), {a, b}, "s-db1-1")),
        write(tmp, "app1", variant(base, "app1", NOW - dt.timedelta(hours=1), set(), "s-app1-1")),
    ]
    return files, [a, b]


def _check_rollup(target: str, base: dict[str, Any], tmp: Path) -> None:
    files, (a, b) = _fleet_files(base, tmp)
    with open_store(target) as store:
        done = store.ingest(read_results(files))
        assert (done.scans, done.duplicates) == (4, 0)
        again = store.ingest(read_results(files[:2]))
        assert (again.scans, again.duplicates) == (0, 2)
        assert store.counts() == (3, 4, 4 * len(base["results"]))
        report = build_fleet_report(store, framework="pci-dss", now=NOW, stale_after_days=7)
    hosts = {h.scan.hostname: h for h in report.hosts}
    assert sorted(hosts) == ["app1", "db1", "web1"]
    assert hosts["web1"].scan.scan_id == "s-web1-2"  # the newest scan of a host stands for it
    assert hosts["web1"].scan.failed == 1 and hosts["db1"].scan.failed == 2 and hosts["app1"].scan.failed == 0
    assert len(hosts["web1"].trend) == 2 and hosts["web1"].trend[0] < hosts["web1"].trend[1]
    assert [h.scan.hostname for h in report.stale] == ["db1"]
    worst = {w[0]: (w[3], w[4]) for w in report.worst}
    assert worst[a] == (2, 3) and worst[b] == (1, 3) and set(worst) == {a, b}
    # Matrix cells: the requirement section of rule a fails on web1 and db1, holds on app1.
    ref = next(f for f in base["results"] if f["rule_id"] == a)["references"]["pci-dss"][0]
    col = report.groups.index(requirement_group(ref))
    assert hosts["web1"].cells[col] == "fail" and hosts["db1"].cells[col] == "fail"
    assert hosts["app1"].cells[col] == "pass"
    out = tmp / "fleet.html"
    with out.open("w") as f:
        render_fleet_html(report, f)
    html = out.read_text()
    fails = sum(c == "fail" for h in report.hosts for c in h.cells)
    assert fails >= 2 and html.count('class="cell s-fail"') == fails
    # Each host's row names the scan it stands for, so an auditor can trace it to its results.
    assert "<td><code>s-web1-2</code></td>" in html


def test_sqlite_rollup_is_what_the_scans_say(scan_results: dict[str, Any], tmp_path: Path) -> None:
    _check_rollup(str(tmp_path / "fleet.db"), scan_results, tmp_path)
    assert oct((tmp_path / "fleet.db").stat().st_mode & 0o777) == "0o600"


def test_same_scan_id_with_other_content_is_refused(scan_results: dict[str, Any], tmp_path: Path) -> None:
    rules = _checked_rules(scan_results)
    one = write(tmp_path, "one", variant(scan_results, "h", NOW, set(), "same-id"))
    two = write(tmp_path, "two", variant(scan_results, "h", NOW, {rules[0]}, "same-id"))
    with open_store(str(tmp_path / "f.db")) as store:
        store.ingest(read_results([one]))
        with pytest.raises(InputError, match="already in the fleet store with other content"):
            store.ingest(read_results([two]))
        assert store.counts()[1] == 1


def test_cli_ingest_and_report_pdf(scan_results: dict[str, Any], tmp_path: Path) -> None:
    files, _ = _fleet_files(scan_results, tmp_path)
    db = str(tmp_path / "fleet.db")
    r = subprocess.run([*SECPOLICY, "fleet", "ingest", "--store", db, *files], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0 and "ingested 4 scans" in r.stderr, r.stderr
    pdf = tmp_path / "fleet.pdf"
    r = subprocess.run([*SECPOLICY, "fleet", "report", "--store", db, "--format", "pdf", "-o", str(pdf),
                        "--framework", "pci-dss"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Fleet compliance" in text and "web1" in text and "db1" in text
    bad = subprocess.run([*SECPOLICY, "fleet", "report", "--store", db, "-o", str(tmp_path / "x.html"),
                          "--framework", "pci"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "pci-dss" in bad.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"scan": {}}')
    r = subprocess.run([*SECPOLICY, "fleet", "ingest", "--store", db, str(broken)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2 and "broken.json" in r.stderr


@pytest.fixture
def postgres() -> Iterator[PgServer]:
    yield from private_postgres()


def test_postgresql_rollup_is_what_the_scans_say(postgres: PgServer, scan_results: dict[str, Any],
                                                 tmp_path: Path) -> None:
    _check_rollup(postgres.url, scan_results, tmp_path)
