"""Probes of `secpolicy diff`, `verify-report` and the CSV report against references outside
the code: hand counts over the two results files, openssl for Ed25519, Python's csv module."""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
RESULTS = FIX / "web1_results.json"
BASELINE = FIX / "web1_baseline.json"
sys.path.insert(0, str(FIX))
from gen_results import agree

FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _limits() -> None:
    # An input read without end fails fast with MemoryError instead of exhausting the machine.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))


def secpolicy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # The timeout only stops a hung process; no assertion depends on how long anything takes.
    return subprocess.run([sys.executable, "-m", "secpolicy", *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=cwd, preexec_fn=_limits)


def _doc(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text())


def _put(path: Path, doc: dict[str, Any]) -> Path:
    """Write `doc` with its summary counts made to agree with its results list (its stated
    percentages, which no reader trusts, left as they are)."""
    pcts = {fw: e["compliance_pct"] for fw, e in doc["summary"]["frameworks"].items()}
    pcts[""] = doc["summary"]["compliance_pct"]
    agree(doc)
    doc["summary"]["compliance_pct"] = pcts[""]
    for fw, e in doc["summary"]["frameworks"].items():
        e["compliance_pct"] = pcts.get(fw, e["compliance_pct"])
    path.write_text(json.dumps(doc))
    return path


def _status(doc: dict[str, Any]) -> dict[str, str]:
    return {r["rule_id"]: r["status"] for r in doc["results"]}


def _pct(doc: dict[str, Any]) -> float | None:
    """By hand: passing among pass, fail and error (docs/reports.md), to one decimal."""
    s = list(_status(doc).values())
    decided = s.count("pass") + s.count("fail") + s.count("error")
    return round(100 * s.count("pass") / decided, 1) if decided else None


def _diff_json(old: Path, new: Path, *extra: str) -> dict[str, Any]:
    p = secpolicy("diff", str(old), str(new), "--format", "json", *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# diff ------------------------------------------------------------------------------------
def test_an_error_that_now_passes_is_not_reported_as_fixed(tmp_path):
    """error -> pass: the control was never seen failing, so nothing is known to be fixed;
    the diff lists it as another status change. Only fail -> pass is `fixed`."""
    old = _doc()
    new = copy.deepcopy(old)
    errored = next(r for r in new["results"] if r["status"] == "error")
    failing = next(r for r in new["results"] if r["status"] == "fail")
    errored["status"], errored["reason"] = "pass", None
    failing["status"] = "pass"
    o, n = _put(tmp_path / "old.json", old), _put(tmp_path / "new.json", new)
    before, after = _status(old), _status(new)
    by_hand_fixed = sorted(r for r in before if before[r] == "fail" and after.get(r) == "pass")
    by_hand_other = sorted(r for r in before if r in after and before[r] != after[r] and r not in by_hand_fixed)
    d = _diff_json(o, n)
    assert sorted(c["rule_id"] for c in d["fixed"]) == by_hand_fixed == [failing["rule_id"]]
    assert sorted(c["rule_id"] for c in d["changed"]) == by_hand_other == [errored["rule_id"]]
    assert d["changed"][0]["old_status"] == "error" and d["changed"][0]["new_status"] == "pass"
    table = secpolicy("diff", str(o), str(n)).stdout
    assert "0 new failure(s), 1 fixed, 1 other change(s)" in table


def test_diff_states_the_compliance_the_results_hold_not_an_edited_summary(tmp_path):
    old, new = _doc(BASELINE), _doc()
    new["summary"]["compliance_pct"] = 100.0  # edited; the results still fail
    d = _diff_json(_put(tmp_path / "old.json", old), _put(tmp_path / "new.json", new))
    assert d["compliance_pct"] == {"old": _pct(old), "new": _pct(new)}
    assert _pct(new) == 40.0


def test_a_report_states_the_compliance_of_the_counts_not_an_edited_percentage(tmp_path):
    """`report` of a results file whose summary says 100% (overall and per framework) while
    its results fail: every format shows what the counts give, computed by hand here."""
    doc = _doc()
    doc["summary"]["compliance_pct"] = 100.0
    for entry in doc["summary"]["frameworks"].values():
        entry["compliance_pct"] = 100.0
    src = _put(tmp_path / "edited.json", doc)
    sarif = tmp_path / "r.sarif"
    p = secpolicy("report", str(src), "--format", "sarif", "-o", str(sarif))
    assert p.returncode == 0, p.stderr
    props = json.loads(sarif.read_text())["runs"][0]["properties"]
    assert props["compliance_pct"] == _pct(doc) == 40.0
    for fw, entry in doc["summary"]["frameworks"].items():
        decided = entry["pass"] + entry["fail"] + entry["error"]
        assert props["frameworks"][fw] == (round(100 * entry["pass"] / decided, 1) if decided else None), fw
    html = tmp_path / "r.html"
    assert secpolicy("report", str(src), "--format", "html", "-o", str(html)).returncode == 0
    assert "100.0%" not in html.read_text() and "40.0%" in html.read_text()


def test_a_report_refuses_counts_and_requirement_rows_its_results_do_not_give(tmp_path):
    """A results file whose counts by framework or severity, or whose requirement rows, say
    other than its own findings (edited or broken) is refused, exit 2, naming the first place
    that disagrees, and no report is written; what a scan wrote, and what this test's own
    arithmetic re-derives after an edit, are accepted."""
    root = tmp_path / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin yes\n")
    written = tmp_path / "scan.json"
    p = secpolicy("scan", "--root", str(root), "--format", "json", "-o", str(written))
    assert p.returncode == 1, p.stderr
    doc = json.loads(written.read_text())
    assert len(doc["requirements"]) >= 4 and {"fail", "error"} <= {r["status"] for r in doc["results"]}
    assert agree(copy.deepcopy(doc)) == doc  # this test's arithmetic gives what the scan wrote
    out = tmp_path / "r.html"
    assert secpolicy("report", str(written), "--format", "html", "-o", str(out)).returncode == 0

    def edited(change) -> subprocess.CompletedProcess:
        bad = copy.deepcopy(doc)
        change(bad)
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(bad))
        out.unlink(missing_ok=True)
        return secpolicy("report", str(path), "--format", "html", "-o", str(out))

    fw = next(f for f, e in doc["summary"]["frameworks"].items() if e["fail"])
    row = next(r for r in doc["requirements"][fw] if r["status"] == "fail")
    sev = next(s for s, c in doc["summary"]["by_severity"].items() if c["fail"])

    def more_passes(counts):
        counts["fail"] -= 1
        counts["pass"] += 1

    cases = {
        f"framework {fw} (the results give": lambda d: more_passes(d["summary"]["frameworks"][fw]),
        f"severity {sev} (the results give": lambda d: more_passes(d["summary"]["by_severity"][sev]),
        f"{fw} requirement {row['id']} (its rules:": lambda d: next(
            r for r in d["requirements"][fw] if r["id"] == row["id"]).update(status="pass"),
        f"{fw} requirement {row['id']} ": lambda d: d["requirements"][fw].remove(
            next(r for r in d["requirements"][fw] if r["id"] == row["id"])),
        f"framework {fw} ": lambda d: d["summary"]["frameworks"].pop(fw),
    }
    for where, change in cases.items():
        p = edited(change)
        assert p.returncode == 2, (where, p.stderr)
        assert "disagree with the results list at " + where in p.stderr, (where, p.stderr)
        assert "Traceback" not in p.stderr and not out.exists(), where
    # The same edit of a finding, with the counts and rows made to agree again, is accepted.
    fixed = copy.deepcopy(doc)
    next(r for r in fixed["results"] if r["rule_id"] in row["rule_ids"])["status"] = "pass"
    path = tmp_path / "agreeing.json"
    path.write_text(json.dumps(agree(fixed)))
    assert secpolicy("report", str(path), "--format", "html", "-o", str(out)).returncode == 0
    # An earlier scan feeds the trend its framework counts: those are checked too (its rows,
    # which the trend does not read, are not).
    earlier = copy.deepcopy(doc)
    earlier["scan"]["started_at"] = earlier["scan"]["finished_at"] = "2026-01-01T00:00:00+00:00"
    earlier["requirements"][fw][0]["status"] = "pass"
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    assert secpolicy("report", str(written), "--history", str(path), "-f", "html", "-o", str(out)).returncode == 0
    more_passes(earlier["summary"]["frameworks"][fw])
    path.write_text(json.dumps(earlier))
    out.unlink()
    p = secpolicy("report", str(written), "--history", str(path), "-f", "html", "-o", str(out))
    assert p.returncode == 2 and f"disagree with the results list at framework {fw} (" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_diff_refuses_the_scans_in_reverse_order(tmp_path):
    """OLD newer than NEW: read that way every regression would be `fixed` and the gate pass."""
    old, new = _doc(BASELINE), _doc()
    assert old["scan"]["started_at"] < new["scan"]["started_at"]
    o, n = _put(tmp_path / "old.json", old), _put(tmp_path / "new.json", new)
    out = tmp_path / "diff.json"
    p = secpolicy("diff", str(n), str(o), "--fail-on-new", "-o", str(out))
    assert p.returncode == 2, p.stderr
    assert "is the later scan" in p.stderr and "give the baseline first" in p.stderr
    assert "Traceback" not in p.stderr and not out.exists()
    # The right way round, the regressions gate.
    p = secpolicy("diff", str(o), str(n), "--fail-on-new")
    assert p.returncode == 1 and "2 new failure(s)" in p.stdout
    # A scan compared with itself (the same time) is no reversal.
    assert secpolicy("diff", str(n), str(n), "--fail-on-new").returncode == 0


def test_a_markdown_diff_of_two_hosts_names_both(tmp_path):
    old, new = _doc(), _doc()
    old["scan"]["started_at"], old["scan"]["finished_at"] = (_doc(BASELINE)["scan"][k] for k in ("started_at", "finished_at"))
    new["scan"]["host"] = new["scan"]["host_identity"]["hostname"] = "db9"
    new["scan"]["host_identity"]["machine_id"] = "0" * 32
    p = secpolicy("diff", str(_put(tmp_path / "old.json", old)), str(_put(tmp_path / "new.json", new)),
                  "--format", "markdown", "--allow-mixed-hosts")
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stdout.splitlines() if x.startswith("Compliance "))
    assert f"on web1 (machine-id {old['scan']['host_identity']['machine_id'][:12]}) → db9 (machine-id 000000000000)" in line


def test_a_rule_no_longer_tailored_is_a_tailoring_change(tmp_path):
    old, new = _doc(BASELINE), _doc()
    old["tailoring"] = {
        "path": "t.yaml", "sha256": "a" * 64, "id": "acme", "title": "acme", "vars": [],
        "rules": [{"rule_id": "cis.svc.avahi", "default_enabled": True, "enabled": False, "reason": "CHG-1"}],
    }
    d = _diff_json(_put(tmp_path / "old.json", old), _put(tmp_path / "new.json", new))
    assert d["tailoring_changes"] == [
        f"tailoring acme (sha256 {'a' * 12}...) -> none",
        "rule cis.svc.avahi enabled again, no longer tailored (the earlier tailoring disabled it: CHG-1)",
    ]


# verify-report -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make and check Ed25519 keys independently")
    d = tmp_path_factory.mktemp("signed")
    for name in ("k", "other"):
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(d / f"{name}.pem")], check=True)
        subprocess.run(["openssl", "pkey", "-in", str(d / f"{name}.pem"), "-pubout", "-out", str(d / f"{name}.pub")],
                       check=True)
    report = d / "report.csv"
    p = secpolicy("report", str(RESULTS), "-f", "csv", "-o", str(report), "--sign", str(d / "k.pem"))
    assert p.returncode == 0, p.stderr
    return {"dir": d, "report": report, "sig": d / "report.csv.sig", "pub": d / "k.pub", "other": d / "other.pub"}


def test_openssl_verifies_the_signature_over_the_signed_fields(signed):
    sig = json.loads(signed["sig"].read_text())
    fields = ("format", "algorithm", "file", "size", "sha256", "results_sha256", "public_key_sha256", "signed_at")
    msg = signed["dir"] / "msg"
    msg.write_bytes(json.dumps({k: sig[k] for k in fields}, sort_keys=True, separators=(",", ":")).encode())
    raw = signed["dir"] / "sig.bin"
    raw.write_bytes(base64.b64decode(sig["signature"]))

    def openssl_verify(pub: Path) -> int:
        return subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
                               "-in", str(msg), "-sigfile", str(raw)], capture_output=True, check=False).returncode

    assert openssl_verify(signed["pub"]) == 0 and openssl_verify(signed["other"]) != 0
    assert secpolicy("verify-report", str(signed["report"]), "--key", str(signed["pub"])).returncode == 0
    assert secpolicy("verify-report", str(signed["report"]), "--key", str(signed["other"])).returncode == 5


def _sig_with(signed: dict[str, Path], **change: Any) -> dict[str, Any]:
    return dict(json.loads(signed["sig"].read_text()), **change)


@pytest.mark.parametrize(("content", "code", "message"), [
    ("signature=5", 5, "the signature does not verify"),  # used to crash in the base64 decoder
    ("signature=list", 5, "the signature does not verify"),
    ("deep", 2, "nested deeper than"),  # used to exhaust the JSON reader's recursion
])
def test_a_garbled_signature_file_is_exit_5_or_2_never_a_crash(signed, content, code, message):
    bad = signed["dir"] / "bad.sig"
    if content == "deep":
        bad.write_text("[" * 20_000 + "]" * 20_000)
    else:
        key, kind = content.split("=")
        bad.write_text(json.dumps(_sig_with(signed, **{key: {"5": 5, "list": ["AAAA"]}[kind]})))
    p = secpolicy("verify-report", str(signed["report"]), "--key", str(signed["pub"]), "--signature", str(bad))
    assert p.returncode == code, p.stderr
    assert message in p.stderr and "internal error" not in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("which", ["report", "signature", "results", "diff-old", "diff-new"])
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_device_or_a_silent_fifo_as_an_input_is_exit_2(signed, tmp_path, which, kind):
    """/dev/zero used to be read until memory ran out (internal error), a FIFO nobody writes
    to waited for ever; both are now refused or read as empty, exit 2 naming the path."""
    bad = "/dev/zero"
    if kind == "fifo":
        bad = str(tmp_path / "fifo")
        os.mkfifo(bad)
    report, pub, sig = str(signed["report"]), str(signed["pub"]), str(signed["sig"])
    args = {
        "report": ["verify-report", bad, "--key", pub, "--signature", sig],
        "signature": ["verify-report", report, "--key", pub, "--signature", bad],
        "results": ["verify-report", report, "--key", pub, "--results", bad],
        "diff-old": ["diff", bad, str(RESULTS)],
        "diff-new": ["diff", str(RESULTS), bad],
    }[which]
    p = secpolicy(*args)
    if kind == "fifo" and which in ("report", "results"):
        # Read as empty: not what was signed.
        assert p.returncode == 5, p.stderr
        assert "does not match its signature" in p.stderr or bad in p.stderr, p.stderr
    else:
        assert p.returncode == 2 and bad in p.stderr, p.stderr
    assert "internal error" not in p.stderr


def test_an_oversized_signature_file_is_exit_2(signed):
    """A signature document is a few hundred bytes: reading one is bounded (a pipe that never
    ends cannot exhaust memory), and a file past the bound is refused naming it."""
    big = signed["dir"] / "big.sig"
    big.write_text(json.dumps(_sig_with(signed, note="x" * 100_000)))
    p = secpolicy("verify-report", str(signed["report"]), "--key", str(signed["pub"]), "--signature", str(big))
    assert p.returncode == 2 and "larger than 65536 bytes" in p.stderr, p.stderr


# CSV ---------------------------------------------------------------------------------------
def test_csv_cells_led_by_spaces_or_line_breaks_before_a_formula_are_neutralised(tmp_path):
    """Reference: the OWASP list of formula starts, applied after the trimming of leading
    spaces and line breaks a spreadsheet import may do (LibreOffice's "Trim spaces")."""
    doc = _doc()
    payloads = ["=1+1", " =HYPERLINK(\"http://x\")", "\n=1+1", "  \n +cmd", " -2", "\n@SUM(A1)", "plain", "'quoted"]
    for r, text in zip(doc["results"], payloads, strict=False):
        r["title"] = text
    doc["scan"]["host"] = doc["scan"]["host_identity"]["hostname"] = " =evil()"
    out = tmp_path / "r.csv"
    p = secpolicy("report", str(_put(tmp_path / "in.json", doc)), "-f", "csv", "-o", str(out))
    assert p.returncode == 0, p.stderr
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    header, body = rows[0], rows[1:]
    assert len(body) == len(doc["results"])
    for row in body:
        for cell in row:
            if not cell.startswith("'"):
                assert not cell.lstrip(" \n").startswith(FORMULA), cell
    titles = {row[header.index("title")] for row in body}
    assert {t.removeprefix("'") for t in titles} >= set(payloads)  # dropping one ' restores it
    assert {row[header.index("host")] for row in body} == {"' =evil()"}


# coverage ------------------------------------------------------------------------------------
def test_coverage_counts_agree_with_a_count_by_hand_of_the_bundled_packs():
    """Automated or partial needs an enabled rule referencing the requirement; else manual."""
    import yaml

    declared: dict[str, dict[str, set[str]]] = {}
    referenced: dict[str, set[str]] = {}
    for path in sorted((FIX.parents[2] / "policies").rglob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        for fw, lists in (data.get("coverage") or {}).items():
            d = declared.setdefault(fw, {k: set() for k in ("automated", "partial", "manual")})
            for k in d:
                d[k] |= {str(x) for x in lists.get(k) or ()}
        for rule in data.get("rules") or ():
            if rule.get("enabled", True):
                for fw, ids in (rule.get("references") or {}).items():
                    referenced.setdefault(fw, set()).update(str(i) for i in ids)
    p = secpolicy("coverage", "--format", "json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert set(got) == set(declared)
    for fw, d in declared.items():
        refs = referenced.get(fw, set())
        automated = {r for r in d["automated"] if r in refs}
        partial = {r for r in d["partial"] - d["automated"] if r in refs}
        manual = (d["automated"] | d["partial"] | d["manual"]) - automated - partial
        assert (set(got[fw]["automated"]), set(got[fw]["partial"]), set(got[fw]["manual"])) == (automated, partial, manual)
        assert got[fw]["total"] == len(automated) + len(partial) + len(manual)


def test_coverage_of_a_requirement_only_a_disabled_rule_maps_is_manual(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "metadata: {id: probe, title: probe, version: '1', standard: probe-fw}\n"
        "coverage:\n  probe-fw: {automated: ['1.1', '1.2'], partial: ['2.1'], manual: ['3.1']}\n"
        "rules:\n"
        "  - {id: probe.on, title: enabled rule, severity: low, references: {probe-fw: ['1.1']}, check: 'true'}\n"
        "  - {id: probe.off, title: disabled rule, severity: low, enabled: false, references: {probe-fw: ['1.2', '2.1']},"
        " check: 'true'}\n"
    )
    p = secpolicy("coverage", "-p", str(tmp_path), "--format", "json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["probe-fw"]
    assert (got["automated"], got["partial"], got["manual"]) == (["1.1"], [], ["1.2", "2.1", "3.1"])
    assert got["claimed_but_unbacked"] == ["1.2", "2.1"]
    p = secpolicy("coverage", "-p", str(tmp_path), "--standard", "nope")
    assert p.returncode == 2 and "no coverage data for framework 'nope'" in p.stderr


def test_a_requirement_declared_both_automated_and_manual_is_a_lint_error(tmp_path):
    """Counted once, in the strongest class, as the docs say; but a pack saying both about one
    requirement is a mistake `lint` names rather than a claim it settles silently."""
    (tmp_path / "p.yaml").write_text(
        "metadata: {id: probe, title: probe, version: '1', standard: probe-fw}\n"
        "coverage:\n  probe-fw: {automated: ['1.1'], manual: ['1.1', '3.1']}\n"
        "rules:\n"
        "  - {id: probe.on, title: enabled rule, severity: low, references: {probe-fw: ['1.1']}, check: 'true'}\n"
    )
    p = secpolicy("lint", str(tmp_path))
    assert p.returncode == 2
    assert "coverage: probe-fw 1.1 is declared in more than one of automated, partial and manual" in p.stderr
    assert "3.1" not in p.stderr
    got = json.loads(secpolicy("coverage", "-p", str(tmp_path), "--format", "json").stdout)["probe-fw"]
    assert (got["automated"], got["manual"]) == (["1.1"], ["3.1"])
