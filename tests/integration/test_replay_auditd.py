"""Replay against the reference tools: `replay --summary` says what `aureport --summary` and
`aureport -k` say, counts per record type and per audit event type agree with ausearch/aureport
on every real log (and on a large log built from them), failed authentications are attributed
to the same accounts, and the recorded workload gives exactly its expected alerts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from secpolicy.cli.events import replay_cmd
from secpolicy.events.auditd import AuditdReader

REPO = Path(__file__).resolve().parents[2]
# ../shared/data/auditd beside the checkout (or beside the directory holding several checkouts).
SHARED = next((p / "shared" / "data" / "auditd" for p in REPO.parents if (p / "shared" / "data" / "auditd").is_dir()),
              REPO.parent / "shared" / "data" / "auditd")
FIXTURES = REPO / "tests" / "fixtures" / "events"
WORKLOAD = FIXTURES / "workload-debian12.log"
PCI_EVENTS = REPO / "policies" / "pci-dss" / "events.yaml"


def real_logs() -> list[Path]:
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared audit logs missing: {SHARED}")
        return [WORKLOAD]
    return sorted(SHARED.glob("*/*.log")) + [WORKLOAD]


needs_aureport = pytest.mark.skipif(
    shutil.which("aureport") is None and not os.environ.get("CI"), reason="aureport (auditd) not installed"
)


def _run(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=False).stdout


def aureport(log: Path, *args: str) -> str:
    # end_of_event_timeout as auditd.conf's default, whatever this host's auditd.conf says
    return _run("aureport", "--eoe-timeout", "2", "-if", str(log), *args)


def aureport_numbers(log: Path) -> dict[str, int]:
    """`Number of ...: N` lines of aureport --summary."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(?m)^(Number of [^:]+): (\d+)$", aureport(log, "--summary"))}


def aureport_keys(log: Path) -> tuple[dict[str, int], int]:
    """Events per key (aureport -k --summary) and the rows of aureport -k."""
    per_key = {}
    for line in aureport(log, "-k", "--summary").splitlines():
        m = re.match(r"^(\d+)\s+(\S+)$", line.strip())
        if m:
            per_key[m.group(2)] = int(m.group(1))
    rows = len(re.findall(r"(?m)^\d+\. ", aureport(log, "-k")))
    return per_key, rows


def replay_numbers(output: str) -> tuple[dict[str, int], dict[str, int], int]:
    """The aureport sections of `replay --summary`: numbers, events per key, keyed events."""
    numbers = {m.group(1): int(m.group(2)) for m in re.finditer(r"(?m)^(Number of [^:]+): (\d+)$", output)}
    section = output.split("Audit events per key (aureport -k --summary)\n", 1)[1].split("\n\n", 1)[0]
    per_key = {}
    for line in section.splitlines()[1:]:
        m = re.match(r"^\s*(\d+)\s+(\S+)$", line)
        if m:
            per_key[m.group(2)] = int(m.group(1))
    keyed = int(re.search(r"Audit events with a key \(rows of aureport -k\): (\d+)", output).group(1))  # type: ignore[union-attr]
    return numbers, per_key, keyed


def aureport_event_types(log: Path) -> Counter[str]:
    out = Counter()
    for line in aureport(log, "-e", "-i", "--summary").splitlines():
        m = re.match(r"^\s*(\d+)\s+(\S+)\s*$", line)
        if m:
            out[m.group(2)] += int(m.group(1))
    return out


def ausearch_record_types(log: Path) -> Counter[str]:
    out = Counter()
    for line in _run("ausearch", "-if", str(log), "--raw").split("\n"):
        m = re.match(r"^(?:node=\S* )?type=(\S+) msg=audit\(", line)
        if m:
            out[m.group(1)] += 1
    return out


def aureport_auth(log: Path) -> list[tuple[str, str, int]]:
    rows = []
    for line in aureport(log, "-au").splitlines():
        m = re.match(r"^\d+\. \S+ \S+ (.*) \S+ \S+ \S+ (yes|no) (\d+)$", line)
        if m:
            rows.append((m.group(1), "success" if m.group(2) == "yes" else "failure", int(m.group(3))))
    return sorted(rows)


@needs_aureport
@pytest.mark.parametrize("log", real_logs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_counts_and_auth_attribution_agree_with_aureport(log: Path) -> None:
    reader = AuditdReader([log])
    events = list(reader.events())
    s = reader.summary
    assert Counter(s.audit_events) == aureport_event_types(log)
    # Records ausearch drops with their event (AppArmor AVC) are read and counted apart.
    assert Counter(s.records) - s.records_not_in_ausearch == ausearch_record_types(log)
    mine = sorted(
        (e["auth"]["user"], e["auth"]["result"], int(e["source"]["records"][0].rsplit(":", 1)[1]))
        for e in events
        if e["type"] == "auth" and "result" in e["auth"]
    )
    assert mine == aureport_auth(log)


@needs_aureport
@pytest.mark.parametrize("log", real_logs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_summary_is_what_aureport_says(log: Path) -> None:
    code, output = _replay([str(log), "--policy", str(PCI_EVENTS), "--summary"])
    assert code == 0, output
    numbers, per_key, keyed = replay_numbers(output)
    assert numbers == aureport_numbers(log)
    assert (per_key, keyed) == aureport_keys(log)


@needs_aureport
def test_a_nul_byte_ends_its_line_as_for_aureport(tmp_path: Path) -> None:
    """aureport reads a line as a C string: a NUL ends it, and what follows on that line is
    not read. Five records with a NUL in their pid field, each one bad line."""
    lines = WORKLOAD.read_bytes().split(b"\n")
    hit = 0
    for i, line in enumerate(lines):
        if b" pid=" in line and hit < 5:
            lines[i] = line.replace(b" pid=", b" pid=\0", 1)
            hit += 1
    log = tmp_path / "nul.log"
    log.write_bytes(b"\n".join(lines))
    code, output = _replay([str(log), "--policy", str(PCI_EVENTS), "--summary"])
    assert code == 0, output
    numbers, per_key, keyed = replay_numbers(output)
    assert numbers == aureport_numbers(log)
    assert (per_key, keyed) == aureport_keys(log)
    assert "Bad input lines: 5" in output and output.count("NUL byte at byte") == 5
    assert "\0" not in output


@needs_aureport
def test_summary_is_what_aureport_says_on_a_large_log_built_from_the_real_ones(tmp_path: Path) -> None:
    """20,000 records: the real logs' audit events repeated with new times, ids and pids, some
    interleaved (bench/replay_bench.py builds the same log, larger, for its speed figures)."""
    spec = importlib.util.spec_from_file_location("replay_bench", REPO / "bench" / "replay_bench.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = tmp_path / "audit.log"
    bench.build_log(log, 20_000, seed=7)
    reader = AuditdReader([log], aureport=True)
    for _ in reader.events():
        pass
    mine = reader.summary.aureport
    from secpolicy.events.aureport import SUMMARY_LINES

    assert {label: mine.summary()[key] for key, label in SUMMARY_LINES} == aureport_numbers(log)
    assert (dict(mine.per_key), mine.keyed_events) == aureport_keys(log)
    assert Counter(reader.summary.audit_events) == aureport_event_types(log)


def _replay(args: list[str]) -> tuple[int, str]:
    """Run the command as the top-level group does: SecpolicyError -> its exit code."""
    from secpolicy.errors import SecpolicyError

    result = CliRunner().invoke(replay_cmd, args)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.output + result.exception.render()
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_recorded_workload_gives_exactly_the_expected_alerts(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    code, _ = _replay([str(WORKLOAD), "--policy", str(PCI_EVENTS), "-o", str(out)])
    assert code == 0
    got = [json.loads(l) for l in out.read_text().splitlines()]
    want = [json.loads(l) for l in (FIXTURES / "workload-debian12.expected.jsonl").read_text().splitlines()]
    assert [
        {"rule_id": a["rule_id"], "ts": a["ts"], "kind": a["context"]["kind"], "count": a["context"]["count"], "message": a["message"]}
        for a in got
    ] == want
    by_rule = Counter(a["rule_id"] for a in got)
    # The attacks of the workload (see record_auditd.sh), each reported once:
    assert by_rule["pci-10.2.1.4-brute-force-local"] == 1  # 6 failures, then 2 more after a quiet minute
    assert by_rule["pci-privilege-escalation-chain"] == 1
    assert by_rule["pci-10.2.1.4-access-denied"] == 2  # /etc/shadow and /etc/gshadow as nobody
    assert by_rule["pci-10.2.1.5-account-change"] == 5  # useradd + userdel records
    (chain,) = [a for a in got if a["rule_id"] == "pci-privilege-escalation-chain"]
    assert [e["type"] for e in chain["events"]] == ["exec", "write", "connect"]
    assert chain["events"][2]["net"]["dst_ip"] == "192.0.2.10"  # not the loopback connect


def test_replay_summary_exit_codes_and_garbled_input(tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    text = WORKLOAD.read_text(encoding="utf-8")
    lines = text.split("\n")
    # Truncate one record mid-header and add noise: counted and reported, never a traceback.
    lines.insert(10, lines[10][:25])
    lines.insert(20, "\x00\x01binary junk")
    log.write_text("\n".join(lines), encoding="utf-8")
    code, output = _replay([str(log), "--policy", str(PCI_EVENTS), "--summary"])
    assert code == 0
    assert "Bad input lines: 2" in output
    assert "Number of failed authentications: 8" in output
    assert f"bad input line {log}:11: not an audit record" in output
    code, _ = _replay([str(log), "--policy", str(PCI_EVENTS), "--summary", "--strict"])
    assert code == 2
    code, _ = _replay([str(WORKLOAD), "--policy", str(PCI_EVENTS), "-o", str(tmp_path / "a"), "--fail-on-alert"])
    assert code == 1
    code, output = _replay([str(tmp_path / "missing.log"), "--policy", str(PCI_EVENTS)])
    assert code == 2


def test_replay_of_jsonl_and_audit_logs_together_in_time_order(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(
        json.dumps({"type": "auth", "ts": "2026-11-21T05:43:20.000000000Z", "auth": {"result": "failure", "user": "root"},
                    "user": {"uid": 0}, "login": {"uid": 4242}}) + "\n"
        + "not json\n",
        encoding="utf-8",
    )
    out = tmp_path / "alerts.jsonl"
    code, output = _replay([str(WORKLOAD), str(events), "--policy", str(PCI_EVENTS), "-o", str(out)])
    assert code == 0
    assert f"bad input line {events}:2" in output
    alerts = [json.loads(l) for l in out.read_text().splitlines()]
    assert [a["ts"] for a in alerts] == sorted(a["ts"] for a in alerts)
    (brute,) = [a for a in alerts if a["rule_id"] == "pci-10.2.1.4-brute-force-local"]
    # The JSONL failure (no rhost, same acting and login user) joins the local burst and is
    # among the five that fire it.
    assert "2026-11-21T05:43:20.000000000Z" in [e["ts"] for e in brute["events"]]


def test_module_entry_point_runs_replay(tmp_path: Path) -> None:
    code = (
        "import sys; from secpolicy.cli.events import replay_cmd; "
        "replay_cmd.main(sys.argv[1:], prog_name='secpolicy replay')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(WORKLOAD), "--policy", str(PCI_EVENTS), "--summary"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Audit events (as aureport counts them):" in proc.stdout
    assert "Traceback" not in proc.stderr


ATTACK = FIXTURES / "attack-debian12.log"


def test_recorded_intrusion_gives_an_alert_for_each_step(tmp_path: Path) -> None:
    """The intrusion record_attack.sh recorded with a real auditd: each step has its alert, every
    alert names the acting user and the login user (the log could resolve both), and the whole
    replay gives exactly the expected alerts."""
    out = tmp_path / "alerts.jsonl"
    code, _ = _replay([str(ATTACK), "--policy", str(PCI_EVENTS), "-o", str(out)])
    assert code == 0
    got = [json.loads(l) for l in out.read_text().splitlines()]
    want = [json.loads(l) for l in (FIXTURES / "attack-debian12.expected.jsonl").read_text().splitlines()]
    assert [
        {"rule_id": a["rule_id"], "ts": a["ts"], "kind": a["context"]["kind"], "count": a["context"]["count"], "message": a["message"]}
        for a in got
    ] == want
    by_rule = {a["rule_id"]: a for a in got}
    steps = {
        "pci-10.2.1.2-bpf-program-load": "bpf",  # 1. a BPF program loaded through bpf(2)
        "pci-10.2.1.7-system-config-overwritten": "write",  # 2. cp over an existing file in /etc
        "pci-10.2.1.5-file-capabilities-set": "setxattr",  # 3. setcap cap_setuid+ep on a backdoor
        "pci-10.2.1.2-became-root": "setuid",  # 4. the backdoor, run as nobody, calls setuid(0)
        "pci-10.2.1.5-privileged-group-add": "exec",  # 5. usermod -aG sudo
        "pci-10.2.1.7-kernel-module-load": "module_load",  # 6. finit_module (refused: no module support)
    }
    for rule_id, etype in steps.items():
        assert by_rule[rule_id]["event"]["type"] == etype, rule_id
    became = by_rule["pci-10.2.1.2-became-root"]["event"]
    assert became["proc"]["exe"].endswith("/backdoor") and became["cred"]["uid"] == 0
    assert by_rule["pci-10.2.1.2-bpf-program-load"]["event"]["bpf"] == {"cmd": "BPF_PROG_LOAD", "prog_id": 8113}
    overwrite = by_rule["pci-10.2.1.7-system-config-overwritten"]["event"]["file"]
    assert overwrite == {"path": "/etc/secpolicy-rec-attack.conf", "flags": ["O_WRONLY", "O_TRUNC"]}
    for a in got:
        ev = a["event"]
        assert ev["user"]["name"] and ev["login"]["name"] == "cloudsdk", a["rule_id"]
        assert re.search(rf"\b{ev['user']['name']}\b", a["message"]), a["message"]  # the acting user
        assert "cloudsdk" in a["message"], a["message"]  # the login user
