"""Scan-to-scan diff: exact sets of new failures, fixes and other changes between the web1
baseline and today's scan, and its table, JSON and Markdown forms."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from secpolicy.errors import InputError
from secpolicy.reports.diff import diff_results, load_results, render_diff

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
sys.path.insert(0, str(FIX))
from gen_results import agree, generate

OLD = str(FIX / "web1_baseline.json")
NEW = str(FIX / "web1_results.json")


def _ids(changes) -> list[tuple[str, str | None, str | None]]:
    return [(c.rule_id, c.old_status, c.new_status) for c in changes]


def test_diff_classifies_every_status_change():
    d = diff_results(load_results(OLD), load_results(NEW))
    assert _ids(d.new_failures) == [
        ("cis.ssh.max_auth_tries", "pass", "fail"),
        ("hipaa.access.auto_logoff", "pass", "fail"),
    ]
    assert _ids(d.fixed) == [("cis.kernel.ip_forward", "fail", "pass")]
    assert _ids(d.changed) == [
        ("cis.ssh.permit_root_login", "fail", "waived"),
        ("cis.audit.sudoers_watch", "fail", "error"),
    ]
    assert _ids(d.added_rules) == [("hipaa.audit.auditd_running", None, "skipped")]
    assert _ids(d.removed_rules) == [("cis.svc.avahi", "fail", None)]
    assert d.new_failures[0].evidence == 'sshd.config["MaxAuthTries"] <= 4: expected <= 4, observed 6 (at /etc/ssh/sshd_config:52)'
    assert d.regressed


def test_a_scan_against_itself_has_no_changes():
    doc = load_results(NEW)
    d = diff_results(doc, doc)
    assert (d.new_failures, d.fixed, d.changed, d.added_rules, d.removed_rules) == ((), (), (), (), ())
    assert not d.regressed


def test_a_failing_rule_new_in_the_later_scan_is_a_new_failure_and_an_expired_waiver_too():
    old = load_results(NEW)
    new = json.loads(json.dumps(old))
    waived = next(r for r in new["results"] if r["rule_id"] == "pci.time.ntp")
    waived["status"], waived["waiver"] = "fail", None
    extra = json.loads(json.dumps(next(r for r in new["results"] if r["rule_id"] == "cis.ssh.ciphers")))
    extra["rule_id"] = "cis.ssh.macs"
    new["results"].append(extra)
    d = diff_results(old, agree(new))
    assert _ids(d.new_failures) == [("cis.ssh.macs", None, "fail"), ("pci.time.ntp", "waived", "fail")]


def test_markdown_is_a_pull_request_comment_that_cannot_be_hijacked():
    d = diff_results(load_results(OLD), load_results(NEW))
    out = io.StringIO()
    render_diff(d, "markdown", out)
    md = out.getvalue()
    assert md.startswith("### :x: secpolicy: 2 new failure(s), 1 fixed\n")
    assert "#### New failures (2)" in md
    assert "| cis.ssh.max_auth_tries | medium | pass → fail | Ensure SSH MaxAuthTries is set to 4 or less |" in md
    assert "Compliance **41.7% → 40.0%** on web1 " in md
    assert "| cis.svc.avahi | medium | fail → (absent) | Ensure Avahi server is not enabled |  |" in md
    # A title with markup or a pipe stays inside its cell.
    new = load_results(NEW)
    aslr = next(r for r in new["results"] if r["rule_id"] == "cis.kernel.aslr")
    aslr["title"] = "x | <img src=x onerror=alert(1)> `y`"
    aslr["status"] = "fail"
    out = io.StringIO()
    render_diff(diff_results(load_results(OLD), agree(new)), "markdown", out)
    line = next(x for x in out.getvalue().splitlines() if "onerror" in x)
    assert "x \\| &lt;img src=x onerror=alert(1)&gt; \\`y\\`" in line
    assert line.count(" | ") == 4


def test_json_and_table_forms():
    d = diff_results(load_results(OLD), load_results(NEW))
    out = io.StringIO()
    render_diff(d, "json", out)
    doc = json.loads(out.getvalue())
    assert [c["rule_id"] for c in doc["new_failures"]] == ["cis.ssh.max_auth_tries", "hipaa.access.auto_logoff"]
    assert doc["compliance_pct"] == {"old": d.old_pct, "new": d.new_pct}
    out = io.StringIO()
    render_diff(d, "table", out)
    table = out.getvalue()
    assert "2 new failure(s), 1 fixed, 2 other change(s), 1 rule(s) added, 1 removed" in table
    assert "  cis.kernel.ip_forward  medium    fail -> pass                Ensure IP forwarding is disabled" in table


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", ":1:2: not JSON"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b'{"schema_version": "1.0"}', "'scan' is a required property"),
    ],
)
def test_load_results_refuses_bad_files_naming_them(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(InputError) as exc:
        load_results(str(p))
    assert exc.value.render().startswith(f"{p}:")
    assert message in exc.value.render()


def test_load_results_of_a_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"cannot read results file .*nope.json \(no such file or directory\)"):
        load_results(str(tmp_path / "nope.json"))


def test_markdown_stays_within_a_pull_request_comment():
    old = generate(1500, fail_rate=0.0)
    new = generate(1500, fail_rate=0.9)
    d = diff_results(old, new)
    assert len(d.new_failures) > 1000
    out = io.StringIO()
    render_diff(d, "markdown", out)
    md = out.getvalue()
    assert len(md) < 65_536
    assert f"#### New failures ({len(d.new_failures)})" in md
    assert f"…and {len(d.new_failures) - 100} more (new failures); `secpolicy diff --format json` lists them all." in md


def test_a_rule_the_later_scan_deselected_says_notselected_not_absent():
    """A failing rule the new scan's tailoring deselected is not gone, nor fixed: it reads
    `fail -> notselected` (XCCDF), and a rule selected again reads `notselected -> ...`."""
    old, new = load_results(OLD), load_results(NEW)
    new["not_selected"] = [{"rule_id": "cis.svc.avahi", "result": "notselected",
                            "reason": "disabled by tailoring t1: no Avahi here", "source": "t.yaml:4"}]
    d = diff_results(old, new)
    assert _ids(d.removed_rules) == [("cis.svc.avahi", "fail", "notselected")]
    assert _ids(d.fixed) == [("cis.kernel.ip_forward", "fail", "pass")]
    out = io.StringIO()
    render_diff(d, "table", out)
    assert "fail -> notselected" in out.getvalue()
    back = diff_results(new, old)
    assert _ids(back.added_rules) == [("cis.svc.avahi", "notselected", "fail")]
    assert ("cis.svc.avahi", "notselected", "fail") in _ids(back.new_failures)
