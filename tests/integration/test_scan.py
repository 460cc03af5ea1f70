"""Scanning root trees built in temporary directories: exact failing rule ids, evidence that
names the file and line, waivers, exit codes and the results schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from secpolicy.engine import exit_code, scan
from secpolicy.models import Severity, Status
from secpolicy.policy.waivers import load_waivers
from secpolicy.resources import load_schema
from secpolicy.ruletests import materialize_files
from secpolicy.vocabulary import builtin_registry, load_policies

POLICY = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "core.yaml"
SECPOLICY = [sys.executable, "-m", "secpolicy"]

PASSWD_OK = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\n"
SHADOW_OK = "root:$y$j9T$abc$def:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$y$j9T$xyz$uvw:19000:0:365:7:::\n"

HARDENED = {
    "/etc/passwd": {"content": PASSWD_OK, "mode": 0o644},
    "/etc/shadow": {"content": SHADOW_OK, "mode": 0o640},
    "/etc/group": "root:x:0:\nshadow:x:42:\n",
    "/etc/ssh/sshd_config": "# hardened\nPermitRootLogin no\nPasswordAuthentication no\n",
    "/etc/sysctl.d/60-net.conf": "net.ipv4.ip_forward = 0\n",
    "/etc/cron.d/backup": {"content": "0 1 * * * root /usr/local/bin/backup\n", "mode": 0o600},
    "/etc/login.defs": "PASS_MAX_DAYS 365\nPASS_MIN_DAYS 1\n",
    "/etc/motd": "Authorized use only.\n",
}

WEAK = {
    "/etc/passwd": {"content": PASSWD_OK + "toor:x:0:0::/root:/bin/sh\n", "mode": 0o664},
    "/etc/shadow": {"content": SHADOW_OK + "toor::19000:0:99999:7:::\n", "mode": 0o644},
    "/etc/group": "root:x:0:\nshadow:x:42:\n",
    "/etc/ssh/sshd_config": "# weak\nPort 22\nPermitRootLogin yes\n",
    "/etc/sysctl.d/60-net.conf": "# routing\nnet.ipv4.ip_forward = 1\n",
    "/etc/cron.d/backup": {"content": "0 1 * * * root /usr/local/bin/backup\n", "mode": 0o666},
    "/etc/login.defs": "PASS_MIN_DAYS 0\nPASS_MAX_DAYS 99999\n",
    "/etc/motd": "Debian GNU/Linux 12\n",
}


def build(tmp_path: Path, files: dict) -> str:
    root = tmp_path / "root"
    root.mkdir()
    materialize_files(str(root), files)
    return str(root)


def run_scan(root: str, **kw):
    reg = builtin_registry()
    ps = load_policies([POLICY], reg)
    return scan(ps, reg, root=root, **kw)


def by_id(result):
    return {f.rule_id: f for f in result.findings}


def test_hardened_root_passes_every_check(tmp_path):
    result = run_scan(build(tmp_path, HARDENED))
    statuses = {f.rule_id: f.status for f in result.findings}
    assert {r for r, s in statuses.items() if s != Status.PASS} == {"core-exec-shell"}
    assert statuses["core-exec-shell"] == Status.SKIPPED
    assert exit_code(result.findings, Severity.LOW) == 0


def test_weak_root_fails_exactly_where_it_is_broken(tmp_path):
    result = run_scan(build(tmp_path, WEAK))
    failing = {f.rule_id for f in result.findings if f.status == Status.FAIL}
    assert failing == {
        "core-shadow-perms",
        "core-passwd-perms",
        "core-ssh-root-login",
        "core-ip-forward",
        "core-only-root-uid0",
        "core-no-empty-passwords",
        "core-cron-not-writable",
        "core-motd-no-os",
        "core-pass-max-days",
    }
    assert not [f for f in result.findings if f.status == Status.ERROR]
    assert exit_code(result.findings, Severity.LOW) == 1


def test_weak_root_evidence_names_file_line_and_values(tmp_path):
    f = by_id(run_scan(build(tmp_path, WEAK)))
    (ev,) = f["core-ssh-root-login"].evidence
    assert ev.expression == 'sshd.option("PermitRootLogin") == "no"'
    assert (ev.expected, ev.observed) == ('"no"', '"yes"')
    assert ev.source == "/etc/ssh/sshd_config:3"

    (ev,) = f["core-shadow-perms"].evidence
    assert ev.observed == "0o644 & 0o137 = 0o4" and ev.expected == "0"
    assert ev.source == "/etc/shadow"

    (ev,) = f["core-ip-forward"].evidence
    assert ev.observed == "1" and ev.source == "/etc/sysctl.d/60-net.conf:2"

    (ev,) = f["core-cron-not-writable"].evidence
    assert ev.observed == "0o666 & 0o22 = 0o22" and ev.source == "/etc/cron.d/backup"

    uid0 = f["core-only-root-uid0"].evidence
    # Only toor's comparisons: root's `u.uid != 0` was false too, but root passed the `or`.
    assert [(e.expression, e.observed, e.source) for e in uid0] == [
        ("u.uid != 0", "0", "/etc/passwd:4"),
        ('u.name == "root"', '"toor"', "/etc/passwd:4"),
    ]


def test_results_validate_against_the_schema(tmp_path):
    results = run_scan(build(tmp_path, WEAK)).to_results()
    jsonschema.validate(results, load_schema("results"))
    assert results["summary"]["by_status"]["fail"] == 9
    cis = results["summary"]["frameworks"]["cis"]
    assert cis["pass"] == 0 and cis["fail"] == 9 and cis["compliance_pct"] == 0.0


def test_waivers_turn_failures_into_waived_and_expired_ones_do_not(tmp_path):
    root = build(tmp_path, WEAK)
    wfile = tmp_path / "waivers.yaml"
    wfile.write_text(
        "waivers:\n"
        "  - rule_id: core-motd-no-os\n    justification: marketing banner\n    approver: ciso\n    expires: 2999-01-01\n"
        "  - rule_id: core-pass-max-days\n    justification: old exception\n    expires: 2000-01-01\n"
    )
    result = run_scan(root, waivers=load_waivers(wfile))
    f = by_id(result)
    assert f["core-motd-no-os"].status == Status.WAIVED
    assert f["core-motd-no-os"].waiver.approver == "ciso"
    assert f["core-pass-max-days"].status == Status.FAIL
    states = {w["rule_id"]: w["status"] for w in result.waiver_report}
    assert states == {"core-motd-no-os": "applied", "core-pass-max-days": "expired"}



@pytest.mark.parametrize("zone", ["Etc/GMT+12", "Etc/GMT-14"])
def test_a_waiver_expires_by_the_scans_utc_date_in_every_time_zone(tmp_path, monkeypatch, zone):
    # The results and reports give the scan's time in UTC; judged by the local date, a waiver
    # expiring "yesterday" (UTC) would still apply west of Greenwich half the day, and one
    # expiring "today" would be expired east of it.
    import datetime as dt
    import time

    root = build(tmp_path, WEAK)
    wfile = tmp_path / "waivers.yaml"
    for _ in range(2):  # once more if the UTC date changed between writing the file and the scan
        today = dt.datetime.now(dt.UTC).date()
        wfile.write_text(
            "waivers:\n"
            f"  - rule_id: core-motd-no-os\n    justification: until yesterday\n    expires: {today - dt.timedelta(days=1)}\n"
            f"  - rule_id: core-pass-max-days\n    justification: until today\n    expires: {today}\n"
        )
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            result = run_scan(root, waivers=load_waivers(wfile))
        finally:
            monkeypatch.undo()
            time.tzset()
        if result.scan["started_at"][:10] == str(today):
            break
    states = {w["rule_id"]: w["status"] for w in result.waiver_report}
    assert states == {"core-motd-no-os": "expired", "core-pass-max-days": "applied"}


def test_only_waived_failures_exit_4(tmp_path):
    root = build(tmp_path, HARDENED | {"/etc/motd": "Debian\n"})
    wfile = tmp_path / "w.yaml"
    wfile.write_text("- rule_id: core-motd-no-os\n  justification: banner required by the vendor\n")
    result = run_scan(root, waivers=load_waivers(wfile))
    assert exit_code(result.findings, Severity.LOW) == 4


def test_fail_on_threshold(tmp_path):
    result = run_scan(build(tmp_path, HARDENED | {"/etc/motd": "Debian\n"}))
    assert exit_code(result.findings, Severity.LOW) == 1
    assert exit_code(result.findings, Severity.MEDIUM) == 0


def test_unreadable_file_is_error_not_pass(tmp_path):
    root = build(tmp_path, HARDENED)
    (Path(root) / "etc/ssh/sshd_config").unlink()
    (Path(root) / "etc/ssh/sshd_config").symlink_to("sshd_config")  # a symlink loop
    f = by_id(run_scan(root))
    assert f["core-ssh-root-login"].status == Status.ERROR
    assert "symbolic links" in f["core-ssh-root-login"].reason


def test_symlinks_resolve_inside_the_root(tmp_path):
    # An absolute link in the image must not read the scanning host's /etc/shadow.
    root = build(tmp_path, HARDENED)
    (Path(root) / "etc/shadow").unlink()
    (Path(root) / "srv").mkdir()
    (Path(root) / "srv/shadow").write_text(SHADOW_OK)
    (Path(root) / "srv/shadow").chmod(0o600)
    (Path(root) / "etc/shadow").symlink_to("/srv/shadow")
    f = by_id(run_scan(root))
    assert f["core-shadow-perms"].status == Status.PASS


# the CLI, as a user runs it ------------------------------------------------------------------
def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_cli_scan_json_and_exit_codes(tmp_path):
    weak = build(tmp_path, WEAK)
    p = cli("scan", "--policy", str(POLICY), "--root", weak, "--format", "json")
    assert p.returncode == 1, p.stderr
    data = json.loads(p.stdout)
    jsonschema.validate(data, load_schema("results"))
    assert data["scan"]["root"] == weak
    assert data["scan"]["policies"][0]["id"] == "core-example"


def test_cli_invalid_inputs_exit_2_with_one_located_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {id: x, title: X, version: '1'}\nrules:\n  - {id: r, title: t, severity: low, check: 'file(\"/x\").mod == 1'}\n")
    cases = [
        ("scan", "--policy", str(bad)),
        ("lint", str(bad)),
        ("scan", "--policy", str(POLICY), "--fail-on", "urgent"),
        ("scan", "--policy", str(POLICY), "--root", str(tmp_path / "missing")),
        ("scan", "--policy", str(tmp_path / "missing.yaml")),
        ("explain", "no-such-rule", "--policy", str(POLICY)),
    ]
    for args in cases:
        p = cli(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
    p = cli("lint", str(bad))
    assert p.stderr.splitlines()[0].startswith(f"{bad}:3:")


def test_cli_waiver_for_unknown_rule_is_rejected(tmp_path):
    w = tmp_path / "w.yaml"
    w.write_text("- rule_id: nope\n  justification: x\n")
    for args in (("lint", str(POLICY), "--waivers", str(w)), ("scan", "--policy", str(POLICY), "--waivers", str(w))):
        p = cli(*args)
        assert p.returncode == 2 and "unknown rule id 'nope'" in p.stderr


def test_cli_schema_and_explain():
    p = cli("schema", "results")
    assert p.returncode == 0 and json.loads(p.stdout)["title"] == "secpolicy scan results"
    p = cli("explain", "core-shadow-perms", "--policy", str(POLICY))
    assert p.returncode == 0
    assert "facts read: file" in p.stdout and "compare ==" in p.stdout


@pytest.mark.parametrize("expect_fail", [False, True])
def test_cli_test_runs_inline_tests(tmp_path, expect_fail):
    p = tmp_path / "p.yaml"
    verdict = "fail" if expect_fail else "pass"
    p.write_text(
        "metadata: {id: x, title: X, version: '1'}\nrules:\n"
        "  - id: r\n    title: t\n    severity: low\n    check: file(\"/etc/issue\").mode == 0o644\n"
        "    tests:\n"
        f"      - {{name: ok, files: {{/etc/issue: {{content: hi, mode: 0o644}}}}, expect: {verdict}}}\n"
    )
    out = cli("test", str(p))
    if expect_fail:
        assert out.returncode == 1 and "0 passed, 1 failed" in out.stdout
        assert "FAIL r: ok: expected fail, got pass" in out.stdout
    else:
        assert out.returncode == 0 and "1 passed, 0 failed" in out.stdout


def test_cli_test_of_rules_without_inline_tests_is_no_green_run(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "metadata: {id: x, title: X, version: '1'}\nrules:\n"
        "  - id: r\n    title: t\n    severity: low\n    check: file(\"/etc/issue\").mode == 0o644\n"
    )
    out = cli("test", str(p))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "0 passed, 0 failed" in out.stdout and "no inline tests in the rules selected" in out.stderr


def test_cli_scan_records_itself_in_the_audit_log(tmp_path):
    logdir, key = tmp_path / "log", tmp_path / "key"
    assert cli("log", "init", str(logdir), "--key-out", str(key)).returncode == 0
    weak = build(tmp_path, WEAK)
    assert cli("scan", "--policy", str(POLICY), "--root", weak, "--audit-log", str(logdir), "--format", "json").returncode == 1
    v = cli("log", "verify", str(logdir), "--key-file", str(key))
    assert v.returncode == 0, v.stdout + v.stderr
    lines = [json.loads(x) for f in sorted(logdir.glob("segment-*.jsonl")) for x in f.read_text().splitlines()]
    types = [ln["body"]["event_type"] for ln in lines if ln.get("kind") == "record"]
    assert types[0] == "scan_start" and types[-1] == "scan_stop"
    assert types.count("finding") == 10 and types.count("config_loaded") == 1


def test_cli_explain_event_rule_shows_index_and_kernel_tier(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text(
        "metadata: {id: e, title: E, version: '1'}\nrules:\n"
        "  - id: e1\n    title: writes under /etc\n    severity: high\n"
        "    when: type == \"write\" and file.path startswith \"/etc/\"\n"
    )
    out = cli("explain", "e1", "--policy", str(p))
    assert out.returncode == 0, out.stderr
    assert "'types': ['write']" in out.stdout
    assert "kernel tier" in out.stdout and "write: (path starts with /etc/)" in out.stdout


def test_monitor_losses_become_a_finding(tmp_path):
    summary = {
        "duration_s": 10.0, "events": 500, "alerts": 0, "lost": 7, "lost_by_type": {"open": 4, "exec": 3},
        "loss_windows": [{"start": "2026-11-21T05:00:00.000000000Z", "end": "2026-11-21T05:00:00.500000000Z",
                          "count": 7, "where": "user-space queue", "by_type": {"open": 4, "exec": 3}}],
    }
    lossy, clean = tmp_path / "lossy.json", tmp_path / "clean.json"
    lossy.write_text(json.dumps(summary))
    clean.write_text(json.dumps(summary | {"lost": 0, "lost_by_type": {}, "loss_windows": []}))
    root = build(tmp_path, HARDENED)
    for path, status, code in ((lossy, "fail", 1), (clean, "pass", 0)):
        p = cli("scan", "--policy", str(POLICY), "--root", root, "--monitor-summary", str(path), "--format", "json")
        data = json.loads(p.stdout)
        jsonschema.validate(data, load_schema("results"))
        (f,) = [r for r in data["results"] if r["rule_id"] == "secpolicy-monitor-lost-events"]
        assert f["status"] == status and p.returncode == code
    assert [(e["expression"], e["observed"]) for e in json.loads(cli(
        "scan", "--policy", str(POLICY), "--root", root, "--monitor-summary", str(lossy), "--format", "json"
    ).stdout)["results"][-1]["evidence"][:2]] == [("lost events of type exec", "3"), ("lost events of type open", "4")]


def test_inline_tests_can_stand_in_for_live_only_facts(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "metadata: {id: x, title: X, version: '1'}\nrules:\n"
        "  - id: caps\n    title: no CAP_SYS_ADMIN outside root\n    severity: high\n"
        "    check: >-\n      none(p in processes: p.uid != 0 and \"CAP_SYS_ADMIN\" in p.caps_eff)\n"
        "    tests:\n"
        "      - {name: clean, facts: {processes: [{pid: 1, uid: 0, caps_eff: [CAP_SYS_ADMIN]}]}, expect: pass}\n"
        "      - {name: rogue, facts: {processes: [{pid: 42, uid: 1000, caps_eff: [CAP_SYS_ADMIN]}]}, expect: fail}\n"
        "      - {name: no twin, expect: not_applicable}\n"
    )
    out = cli("test", str(p))
    assert out.returncode == 0 and "3 passed, 0 failed" in out.stdout, out.stdout + out.stderr
    p.write_text(p.read_text().replace("caps_eff: [CAP_SYS_ADMIN]}]}, expect: pass", "capz: [CAP_SYS_ADMIN]}]}, expect: pass"))
    out = cli("lint", str(p))
    assert out.returncode == 2 and "unknown field 'capz' of process" in out.stderr


def test_stand_ins_cannot_replace_facts_whose_methods_the_check_calls(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "metadata: {id: x, title: X, version: '1'}\nrules:\n"
        "  - id: r\n    title: t\n    severity: low\n    check: file(\"/etc/x\").exists and sshd.option(\"x\") == \"y\"\n"
        "    tests:\n      - {facts: {sshd: {exists: true}}, expect: pass}\n"
    )
    out = cli("lint", str(p))
    assert out.returncode == 2 and "calls sshd.option(), which a plain-data stand-in cannot provide" in out.stderr


def test_audit_rules_twin_builds_the_real_fact(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "metadata: {id: x, title: X, version: '1'}\nrules:\n"
        "  - id: r\n    title: loaded rules match the disk\n    severity: low\n"
        "    check: audit_rules.has_loaded(\"-w /etc/passwd -p wa -k identity\") == audit_rules.has(\"-w /etc/passwd -p wa -k identity\")\n"
        "    tests:\n"
        "      - name: same\n        files: {/etc/audit/rules.d/50.rules: \"-w /etc/passwd -p wa -k identity\\n\"}\n"
        "        facts: {audit_rules: {loaded: [\"-w /etc/passwd -p wa -k identity\"]}}\n        expect: pass\n"
        "      - name: not loaded\n        files: {/etc/audit/rules.d/50.rules: \"-w /etc/passwd -p wa -k identity\\n\"}\n"
        "        facts: {audit_rules: {loaded: []}}\n        expect: fail\n"
    )
    out = cli("test", str(p))
    assert out.returncode == 0 and "2 passed, 0 failed" in out.stdout, out.stdout + out.stderr


def test_cli_malformed_waivers_are_located(tmp_path):
    cases = {
        "- rule_id: core-ssh-root-login\n": "missing required field: justification",
        "waivers: 5\n": "a waiver file is a list of waivers",
        "- {rule_id: core-ssh-root-login, justification: j, expires: 2025-13-45}\n": "expires must be a date",
        "- {rule_id: core-ssh-root-login, justification: j, approved_by: me}\n": "unknown field 'approved_by'",
    }
    for text, message in cases.items():
        w = tmp_path / "w.yaml"
        w.write_text(text)
        p = cli("lint", str(POLICY), "--waivers", str(w))
        assert p.returncode == 2 and message in p.stderr and p.stderr.startswith(f"{w}:1:"), (text, p.stderr)
