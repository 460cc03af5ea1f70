"""Text from scanned hosts, logs and events reaches the terminal inert: the table and plain
outputs of scan, diff, timeline, dashboard and the replay summary print control sequences
(title changes, screen clears, OSC 52 clipboard writes, bidi overrides) as escapes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from secpolicy.auditlog import dashboard
from secpolicy.auditlog.store import EventStore
from secpolicy.auditlog.timeline import TimelineQuery, build_timeline, read_replay, render_table
from secpolicy.cli.core import _print_plain, _print_table
from secpolicy.reports.diff import diff_results, render_diff
from secpolicy.terminal import inert, inert_line

SECPOLICY = [sys.executable, "-m", "secpolicy"]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "reports"))
from gen_results import agree

# A window title change, an OSC 52 clipboard write, a screen clear, a C1 CSI and a bidi override.
HOSTILE = "x\x1b]0;pwned\x07\x1b]52;c;ZWNobyBw\x07\x1b[2J\u009b31m\u202eevil"
RAW = ("\x1b", "\x07", "\u009b", "\u202e")


def _clean(text: str) -> None:
    for ch in RAW:
        assert ch not in text, (ch, text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcode and 漢字", "plain text, ünïcode and 漢字"),
        ("two\nlines\tand a tab", "two\nlines\tand a tab"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("c1\u009b", "c1\\xc2\\x9b"),
        ("del\x7f", "del\\x7f"),
        ("\u202eevil", "\\xe2\\x80\\xaeevil"),
        ("byte \udcff", "byte \\xff"),  # an undecodable byte kept by surrogateescape
        ("cr\rreturn", "cr\\x0dreturn"),
    ],
)
def test_inert_escapes_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert inert(text) == shown


def test_inert_can_escape_newlines_too() -> None:
    assert inert("a\nb", keep=frozenset()) == "a\\x0ab"


def test_inert_line_keeps_a_value_on_its_line() -> None:
    # A file name `!x\npass ...` printed on one line must not start a forged line of its own.
    assert inert_line("/data/!x\npass   critical\tcis-9.9\x1b[2J") == "/data/!x\\x0apass   critical\tcis-9.9\\x1b[2J"
    assert inert("two\nlines\tand a tab\u202e") == "two\nlines\tand a tab\\xe2\\x80\\xae"


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real scan of a root whose hostname and sshd_config carry control sequences."""
    root = tmp_path_factory.mktemp("hostile-root")
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "hostname").write_text(HOSTILE + "\n", encoding="utf-8")
    (root / "etc" / "ssh" / "sshd_config").write_text(f"PermitEmptyPasswords yes{HOSTILE}\n", encoding="utf-8")
    out = root.parent / "results.json"
    p = subprocess.run([*SECPOLICY, "scan", "--root", str(root), "--rule", "cis-5.1.19-sshd-permit-empty-passwords",
                        "--format", "json", "-o", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 1, p.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert "\x1b" in results["scan"]["host"]  # the results keep what was read; only the terminal is spared
    return results


def test_scan_table_and_plain_outputs_are_inert(hostile_results: dict) -> None:
    for printer in (_print_table, _print_plain):
        out = io.StringIO()
        printer(hostile_results, out, True)
        text = out.getvalue()
        _clean(text)
        assert "x\\x1b]0;pwned\\x07" in text  # the host, escaped
        assert "\\x1b[2" in text  # the evidence, escaped (sshd lowercases the value)


def test_a_subprocess_scan_prints_no_control_sequence(hostile_results: dict, tmp_path: Path) -> None:
    root = Path(hostile_results["scan"]["root"])
    p = subprocess.run([*SECPOLICY, "scan", "--root", str(root), "--rule", "cis-5.1.19-sshd-permit-empty-passwords"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 1, p.stderr
    _clean(p.stdout)
    assert "x\\x1b]0;pwned" in p.stdout


def test_diff_table_is_inert(hostile_results: dict) -> None:
    old = json.loads(json.dumps(hostile_results))
    for r in old["results"]:
        r["status"] = "pass"
    out = io.StringIO()
    render_diff(diff_results(agree(old), hostile_results), "table", out)
    text = out.getvalue()
    _clean(text)
    assert "1 new failure(s)" in text and "x\\x1b]0;pwned" in text


def _hostile_events(tmp_path: Path) -> Path:
    events = tmp_path / "events.jsonl"
    base = {"ts": "2026-11-21T10:00:00.000000000Z", "user": {"name": f"u{HOSTILE}", "uid": 1000}}
    rows = [dict(base, type="open", file={"path": f"/tmp/{HOSTILE}"}),
            {"kind": "alert", "ts": "2026-11-21T10:00:01.000000000Z", "rule_id": f"r{HOSTILE}", "severity": "critical",
             "title": f"t{HOSTILE}", "message": "m", "event": dict(base, type="open")}]
    events.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return events


def test_timeline_and_dashboard_tables_are_inert(tmp_path: Path) -> None:
    from rich.console import Console

    events = _hostile_events(tmp_path)
    items = list(read_replay([events]))
    assert [k for k, _ in items] == ["event", "alert"]
    console = Console(file=io.StringIO(), record=True, width=300)
    for part in render_table(build_timeline(TimelineQuery(), replay=read_replay([events]))):
        console.print(part)
    text = console.export_text(styles=False)
    _clean(text)
    assert "/tmp/x\\x1b]0;pwned" in text

    store = EventStore(tmp_path / "events.db")
    store.add_events(o for k, o in items if k == "event")
    store.add_alerts(o for k, o in items if k == "alert")
    snap = dashboard.collect(store, None, datetime(2026, 11, 21, 12, tzinfo=UTC))
    console = Console(file=io.StringIO(), record=True, width=300)
    console.print(dashboard.render(snap))
    text = console.export_text(styles=False)
    _clean(text)
    assert "tx\\x1b]0;pwned" in text


def test_replay_summary_names_audit_keys_inertly(tmp_path: Path) -> None:
    # auditd writes a key holding special characters in hex; decoded, it is the log's text.
    log = tmp_path / "audit.log"
    key = b"k\x1b]0;pwned\x07".hex()
    log.write_text(
        "type=SYSCALL msg=audit(1700000000.000:1): arch=c000003e syscall=2 success=yes exit=3 a0=1 a1=0 a2=0 a3=0 "
        "items=0 ppid=1 pid=5 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 "
        f'comm="cat" exe="/usr/bin/cat" key={key}\ntype=EOE msg=audit(1700000000.000:1): \n', encoding="ascii")
    p = subprocess.run([*SECPOLICY, "replay", "--summary", str(log)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode == 0, p.stderr
    _clean(p.stdout)
    assert "1  k\\x1b]0;pwned\\x07" in p.stdout
