"""The audit trail commands through click: exit codes, messages and the numbers they show."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from secpolicy.cli.auditlog import COMMANDS
from secpolicy.errors import SecpolicyError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "auditlog"
EVENTS = FIXTURES / "events.jsonl"
RESULTS = FIXTURES / "scan_results.json"


@click.group()
def cli() -> None:
    pass


for _command in COMMANDS:
    cli.add_command(_command)


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    """Exit code and output as the top-level command would give them."""
    result = CliRunner().invoke(cli, list(args), input=input, standalone_mode=False)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.output + result.exception.render()
    if isinstance(result.exception, SystemExit):
        return result.exit_code, result.output
    if isinstance(result.exception, click.UsageError):
        return 2, result.output + str(result.exception)
    if result.exception is not None:
        raise result.exception
    return 0, result.output


@pytest.fixture()
def written_log(tmp_path: Path) -> dict[str, Path]:
    directory, key, offhost = tmp_path / "log", tmp_path / "initial.key", tmp_path / "offhost.jsonl"
    priv, pub = tmp_path / "sign.pem", tmp_path / "sign.pub"
    assert run("log", "keygen", str(priv), str(pub))[0] == 0
    code, out = run("log", "init", str(directory), "--key-out", str(key), "--sign-key", str(priv),
                    "--copy-checkpoints", str(offhost))
    assert code == 0, out
    alerts = [json.loads(line) for line in EVENTS.read_text().splitlines() if '"rule_id"' in line]
    code, out = run("log", "append", str(directory), "-", "--sign-key", str(priv), "--copy-checkpoints",
                    str(offhost), "--checkpoint-every", "2", input="".join(json.dumps(a) + "\n" for a in alerts))
    assert code == 0, out
    assert out.startswith("appended 3 records")
    return {"dir": directory, "key": key, "offhost": offhost, "pub": pub, "priv": priv}


def test_verify_intact_log(written_log: dict[str, Path]) -> None:
    w = written_log
    code, out = run("log", "verify", str(w["dir"]), "--key-file", str(w["key"]), "--checkpoint", str(w["offhost"]),
                    "--pubkey", str(w["pub"]))
    assert code == 0, out
    assert "intact:" in out and "3 records" in out and "sealed" in out and "MACs" in out
    code, out = run("log", "verify", str(w["dir"]), "--key-file", str(w["key"]), "--json")
    assert code == 0 and json.loads(out)["records"] == 3


def test_verify_names_the_first_bad_record(written_log: dict[str, Path]) -> None:
    w = written_log
    seg = w["dir"] / "segment-000000.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if b"SSH brute force" in ln)
    lines[n] = lines[n].replace(b"SSH brute force", b"SSH brute farce")
    seg.write_bytes(b"".join(lines))
    code, out = run("log", "verify", str(w["dir"]), "--key-file", str(w["key"]))
    assert code == 5
    assert f"segment-000000.jsonl:{n + 1}: seq {n}: MAC does not verify" in out


def test_verify_needs_something_to_verify_against(written_log: dict[str, Path]) -> None:
    code, out = run("log", "verify", str(written_log["dir"]))
    assert code == 2 and "nothing to verify against" in out
    code, out = run("log", "verify", str(written_log["dir"] / "absent.jsonl"), "--key", "00" * 32)
    assert code == 2 and "no such file" in out
    code, out = run("log", "verify", str(written_log["dir"]), "--key", "xyz")
    assert code == 2 and "not hex" in out


def test_append_rejects_bad_input_before_touching_the_log(written_log: dict[str, Path], tmp_path: Path) -> None:
    seg = written_log["dir"] / "segment-000000.jsonl"
    before = seg.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"rule_id": "a", "severity": "high"}\n{"nothing": 1}\n')
    code, out = run("log", "append", str(written_log["dir"]), str(bad))
    assert code == 2 and f"{bad}:2:" in out
    assert seg.read_bytes() == before


def test_checkpoint_command_and_proofs(written_log: dict[str, Path], tmp_path: Path) -> None:
    w = written_log
    code, out = run("log", "checkpoint", str(w["dir"]), "--out", str(w["offhost"]), "--sign-key", str(w["priv"]))
    assert code == 0
    cp = json.loads(out)
    assert cp["signature"] and cp["tree_size"] > 5

    code, out = run("log", "prove", "inclusion", str(w["dir"]), "--seq", "3", "--tree-size", str(cp["tree_size"]))
    assert code == 0
    proof = json.loads(out)
    assert proof["root"] == cp["root"]
    (tmp_path / "inc.json").write_text(out)
    code, out = run("log", "prove", "check", str(tmp_path / "inc.json"), "--checkpoint", str(w["offhost"]),
                    "--pubkey", str(w["pub"]))
    assert code == 0 and "inclusion proof holds" in out and "root matches the off-host checkpoint" in out

    proof["entry"] = proof["entry"].replace('"seq":3,', '"seq":33,')
    (tmp_path / "bad.json").write_text(json.dumps(proof))
    code, out = run("log", "prove", "check", str(tmp_path / "bad.json"))
    assert code == 5 and "does not hash to the leaf hash" in out

    code, out = run("log", "prove", "consistency", str(w["dir"]), "--old", "3", "--new", str(cp["tree_size"]))
    assert code == 0
    (tmp_path / "con.json").write_text(out)
    code, out = run("log", "prove", "check", str(tmp_path / "con.json"), "--checkpoint", str(w["offhost"]))
    assert code == 5 and "not anchored" in out and "old root (tree size 3)" in out  # 3 is no checkpoint
    code, out = run("log", "prove", "check", str(tmp_path / "con.json"), "--checkpoint", str(w["offhost"]),
                    "--unanchored")
    assert code == 0 and "new root matches" in out and "old root (tree size 3) is not anchored" in out
    con = json.loads((tmp_path / "con.json").read_text())
    con["old_root"] = "00" * 32
    (tmp_path / "con2.json").write_text(json.dumps(con))
    assert run("log", "prove", "check", str(tmp_path / "con2.json"))[0] == 5


def test_format_names_of_the_options_are_the_formatters() -> None:
    from secpolicy.auditlog.sinks.formats import FORMATS
    from secpolicy.cli.auditlog import FORMAT_NAMES

    assert sorted(FORMATS) == list(FORMAT_NAMES)


def test_init_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("precious")
    code, out = run("log", "init", str(tmp_path / "log"), "--key-out", str(tmp_path / "k"))
    assert code == 2 and "refusing to overwrite" in out
    assert (tmp_path / "k").read_text() == "precious"


# -- store, timeline, dashboard, anomaly ----------------------------------------------------


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    code, out = run("store", "ingest", str(path), str(EVENTS))
    assert code == 0 and out.strip().endswith("stored 10 events and 3 alerts in " + str(path))
    return path


def test_timeline_json_over_store_and_replay(db: Path) -> None:
    args = ["--user", "admin", "--since", "2026-11-21T10:00:00Z", "--until", "2026-11-21T10:15:00Z",
            "--format", "json"]
    code, out = run("timeline", "--db", str(db), *args)
    assert code == 0
    from_db = json.loads(out)
    code, out = run("timeline", "--replay", str(EVENTS), *args)
    assert code == 0 and json.loads(out) == from_db
    assert [r["type"] for r in from_db["rows"]] == ["exec", "exec", "setuid", "open", "connect", "alert", "auth", "alert"]
    assert len(from_db["chains"]) == 2


def test_timeline_table_and_html(db: Path, tmp_path: Path) -> None:
    code, _ = run("timeline", "--db", str(db), "--user", "admin", "--format", "table",
                    "-o", str(tmp_path / "t.txt"))
    assert code == 0
    text = (tmp_path / "t.txt").read_text()
    assert "2026-11-21 10:02:00.000" in text and "sudo -i" in text and "escalated to root" in text
    code, _ = run("timeline", "--db", str(db), "--format", "html", "-o", str(tmp_path / "t.html"))
    assert code == 0 and "<h2>Correlated chains (2)</h2>" in (tmp_path / "t.html").read_text()


def test_hostile_lines_never_end_ingest_or_timeline(tmp_path: Path) -> None:
    from test_auditlog_store import HOSTILE, hostile

    path = hostile(tmp_path)
    code, out = run("store", "ingest", str(tmp_path / "h.db"), str(path))
    assert code == 0 and "stored 1 events and 1 alerts" in out
    assert f"skipped {path}:3: time '2024-02-30T10:00:00.000000000Z' is not an ISO 8601 date" in out
    assert f"{len(HOSTILE) - 2} malformed input line(s) skipped" in out
    code, out = run("store", "ingest", str(tmp_path / "h2.db"), str(path), "--strict")
    assert code == 2 and f"skipped {path}:7: not JSON" in out
    code, out = run("timeline", "--replay", str(path), "--format", "json", "--strict")
    assert code == 2 and f"skipped {path}:6: not UTF-8" in out
    assert json.loads(out[: out.index("\nsecpolicy:") + 1])["rows"][0]["type"] == "exec"


def test_timeline_option_errors(db: Path) -> None:
    assert run("timeline")[0] == 2
    code, out = run("timeline", "--db", str(db), "--since", "yesterday")
    assert code == 2 and "ISO 8601" in out
    code, out = run("timeline", "--db", str(db.parent / "absent.db"))
    assert code == 2 and "no such event store" in out
    code, out = run("timeline", "--db", str(db), "--type", "bogus")
    assert code == 2 and "'bogus' is not an event type; known: exec, " in out and ", alert" in out
    assert run("timeline", "--db", str(db), "--type", "alert", "--format", "json")[0] == 0


def test_timeline_refuses_an_auditd_log_given_as_replay_lines(tmp_path: Path) -> None:
    # Every line of it would be skipped as a bad JSON line and the timeline shown empty, exit 0.
    log = tmp_path / "audit.log"
    log.write_text('type=SYSCALL msg=audit(1700000000.123:1): arch=c000003e syscall=59 success=yes exit=0 pid=1\n')
    code, out = run("timeline", "--replay", str(log), "--format", "json")
    assert code == 2 and "an auditd log, not event or alert JSON lines" in out and str(log) in out


def test_dashboard_once_shows_the_numbers(db: Path, tmp_path: Path) -> None:
    # Five failures from one address make it a brute-force source.
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({
        "type": "auth", "ts": f"2026-11-21T10:07:0{i}.000000000Z", "host": "web1",
        "auth": {"service": "sshd", "user": f"u{i % 2}", "result": "failure", "rhost": "203.0.113.9"}}) + "\n"
        for i in range(3)))
    assert run("store", "ingest", str(db), str(more))[0] == 0
    code, out = run("dashboard", "--db", str(db), "--results", str(RESULTS), "--once",
                    "--now", "2026-11-21T12:00:00Z", "--width", "140")
    assert code == 0, out
    figures = out.split("privileged cmds")[1].split("\n")[1].split()
    # events, alerts, critical, failed auth, FIM violations, privileged commands
    assert figures[1:7] == ["13", "3", "1", "5", "1", "1"]
    assert "critical: 1  high: 1  medium: 1" in out
    assert "87.5%" in out and "77.8%" in out and "92.3%" in out
    assert "exec -> open /etc/shadow -> connect" in out
    brute = out.split("brute-force sources")[1]
    assert "203.0.113.9" in brute and "5" in brute.split("203.0.113.9")[1].split()[1]
    _, out = run("dashboard", "--db", str(db), "--once", "--now", "2026-11-23T12:00:00Z", "--width", "140")
    assert out.split("privileged cmds")[1].split("\n")[1].split()[1:7] == ["0"] * 6


def test_readers_refuse_a_file_that_is_no_event_store_and_leave_it_as_it_was(db: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_text('{"version": 1, "interval": 60, "buckets": 1, "start": "", "end": "", "types": {}}')
    readers = [["dashboard", "--once", "--db"], ["timeline", "--db"], ["anomaly", "learn", "--out", str(tmp_path / "c.json"), "--db"],
               ["anomaly", "detect", "--baseline", str(baseline), "--db"], ["store", "export"]]
    for name, content in (("empty.log", b""), ("junk.db", b"not a database\n"), ("other.db", None)):
        path = tmp_path / name
        if content is None:  # an SQLite database, but not an event store
            import sqlite3

            with sqlite3.connect(path) as con:
                con.execute("CREATE TABLE t (x)")
            content = path.read_bytes()
        else:
            path.write_bytes(content)
        for reader in readers:
            code, out = run(*reader, str(path))
            assert code == 2 and f"{path}: not an event store" in out, (name, reader, out)
            assert path.read_bytes() == content, (name, reader)
            assert sorted(p.name for p in tmp_path.glob(name + "*")) == [name], (name, reader)
    assert not (tmp_path / "c.json").exists()
    # A store a writer holds open, its last rows still in the write-ahead log, is read as it is.
    from secpolicy.auditlog.store import EventStore

    with EventStore(db) as writer:
        writer.add_events([{"type": "exec", "ts": "2026-11-21T11:00:00.000000000Z", "proc": {"exe": "/bin/true"}}])
        code, out = run("timeline", "--db", str(db), "--since", "2026-11-21T10:59:00Z", "--format", "json")
        assert code == 0 and [r["type"] for r in json.loads(out)["rows"]] == ["exec"]


def test_anomaly_learn_and_detect(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.jsonl"
    busy = tmp_path / "busy.jsonl"
    quiet.write_text("".join(json.dumps({"type": "exec", "ts": f"2026-11-21T09:{m:02d}:{s:02d}.000000000Z"}) + "\n"
                             for m in range(30) for s in (0, 30)))
    busy.write_text("".join(json.dumps({"type": "exec", "ts": f"2026-11-21T11:00:{s:02d}.000000000Z"}) + "\n"
                            for s in range(40)))
    code, out = run("anomaly", "learn", "--replay", str(quiet), "--out", str(tmp_path / "b.json"))
    assert code == 0 and "30 intervals" in out
    code, out = run("anomaly", "detect", "--replay", str(quiet), "--baseline", str(tmp_path / "b.json"))
    assert (code, out) == (0, "secpolicy: 60 events compared with the baseline, 0 anomalies\n")
    code, out = run("anomaly", "detect", "--replay", str(busy), "--baseline", str(tmp_path / "b.json"))
    assert code == 1
    lines = out.splitlines()
    assert "secpolicy: 40 events compared with the baseline, 1 anomaly" in lines
    alerts = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(a["rule_id"], a["context"]["count"]) for a in alerts] == [("anomaly.rate", 40)]
    # A window holding no event is not "no anomalies": it says nothing was compared.
    code, out = run("anomaly", "detect", "--replay", str(busy), "--baseline", str(tmp_path / "b.json"),
                    "--since", "2026-11-22T00:00:00Z")
    assert (code, out) == (0, "secpolicy: no events in the window: nothing was compared with the baseline\n")


def test_anomaly_option_errors(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.jsonl"
    quiet.write_text(json.dumps({"type": "exec", "ts": "2026-11-21T09:00:00.000000000Z"}) + "\n")
    baseline = tmp_path / "b.json"
    assert run("anomaly", "learn", "--replay", str(quiet), "--out", str(baseline))[0] == 0
    for k in ("nan", "inf", "1", "-1"):
        code, out = run("anomaly", "detect", "--replay", str(quiet), "--baseline", str(baseline), "--k", k)
        assert code == 2 and "is not a finite number greater than 1" in out, k
    backwards = ["--since", "2030-01-01T00:00:00Z", "--until", "2020-01-01T00:00:00Z"]
    for command in (["detect", "--baseline", str(baseline)], ["learn", "--out", str(tmp_path / "c.json")]):
        code, out = run("anomaly", *command, "--replay", str(quiet), *backwards)
        assert code == 2 and "--since 2030-01-01T00:00:00.000000000Z is not before --until" in out, command
    assert not (tmp_path / "c.json").exists()


def test_store_export_ocsf(db: Path, tmp_path: Path) -> None:
    from ocsf_conformance import violations

    code, out = run("store", "export", str(db), "-o", str(tmp_path / "o.jsonl"))
    assert code == 0 and "OCSF events written; not mapped to OCSF: " in out
    events = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    kinds = [e["class_uid"] for e in events]
    assert kinds.count(1007) == 3 and kinds.count(2004) == 3  # the exec events and the alerts
    for e in events:
        assert violations(e, "process_activity" if e["class_uid"] == 1007 else "detection_finding") == []


def test_store_prune(db: Path) -> None:
    code, out = run("store", "prune", str(db), "--max-events", "4")
    assert code == 0 and out.strip() == "deleted 6 events and 0 alerts"
    assert run("store", "prune", str(db))[0] == 2


def test_copied_log_verifies_elsewhere(written_log: dict[str, Path], tmp_path: Path) -> None:
    """A log copied off the host verifies there with only the initial key."""
    copy = tmp_path / "copy"
    shutil.copytree(written_log["dir"], copy)
    (copy / "state.json").unlink()
    code, out = run("log", "verify", str(copy), "--key-file", str(written_log["key"]))
    assert code == 0, out


@pytest.mark.parametrize("target", ["adir", "missing/cp.jsonl"])
def test_a_copy_target_that_cannot_be_written_is_refused_before_the_log_is(tmp_path: Path, target: str) -> None:
    """`--out`/`--copy-checkpoints` naming a directory or a file in a missing directory is exit 2,
    nothing is written, and the untampered log still verifies (no crash on record)."""
    directory, key = tmp_path / "log", tmp_path / "log.key"
    assert run("log", "init", str(directory), "--key-out", str(key))[0] == 0
    (tmp_path / "adir").mkdir()
    before = (directory / "segment-000000.jsonl").read_bytes()
    code, out = run("log", "checkpoint", str(directory), "--out", str(tmp_path / target))
    assert code == 2 and "cannot append checkpoints here" in out and target in out
    (tmp_path / "rec.jsonl").write_text("".join(line + "\n" for line in EVENTS.read_text().splitlines()
                                                if '"rule_id"' in line))
    code, out = run("log", "append", str(directory), str(tmp_path / "rec.jsonl"),
                    "--copy-checkpoints", str(tmp_path / target))
    assert code == 2 and "cannot append checkpoints here" in out
    assert (directory / "segment-000000.jsonl").read_bytes() == before
    code, out = run("log", "verify", str(directory), "--key-file", str(key))
    assert code == 0 and "sealed" in out, out
    assert run("log", "checkpoint", str(directory))[0] == 0
    assert b'"resumed_after":"crash"' not in (directory / "segment-000000.jsonl").read_bytes()


def test_a_configured_copy_that_became_a_directory_leaves_the_log_sealed(tmp_path: Path) -> None:
    """The copy set up at `log init` fails later: the checkpoint is printed, the log sealed,
    the command exits 3 naming the copy; verify warns that the copy was not used."""
    directory, key, copy = tmp_path / "log", tmp_path / "log.key", tmp_path / "cpx"
    assert run("log", "init", str(directory), "--key-out", str(key), "--copy-checkpoints", str(copy))[0] == 0
    copy.unlink()
    copy.mkdir()
    code, out = run("log", "checkpoint", str(directory))
    assert code == 3
    assert json.loads(out.splitlines()[0])["tree_size"] == 4
    assert out.splitlines()[1] == f"{copy}: cannot copy 2 checkpoints (the first: 4): Is a directory"
    code, out = run("log", "verify", str(directory), "--key-file", str(key))
    assert code == 0 and "sealed" in out, out
    assert f"warning: {copy}: cannot be read (Is a directory); this checkpoint copy was not used" in out
    copy.rmdir()
    os.mkfifo(copy)  # nor does a FIFO in its place hang verify
    code, out = run("log", "verify", str(directory), "--key-file", str(key))
    assert code == 0 and "(not a regular file); this checkpoint copy was not used" in out, out


def test_key_files_that_are_fifos_or_devices_are_refused_without_waiting(written_log: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """`--key-file`, `--pubkey`, `--witness`, `--sign-key` and the log's pseudonym key: a FIFO
    or /dev/zero is exit 2 naming it (reading one used to wait forever or without end)."""
    from secpolicy.auditlog.log import read_pseudonym_key

    w = written_log
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for bad in (str(fifo), "/dev/zero"):
        assert run("log", "verify", str(w["dir"]), "--key-file", bad) == (2, f"{bad}: key file is not a regular file")
        code, out = run("log", "verify", str(w["dir"]), "--key-file", str(w["key"]), "--pubkey", bad)
        assert (code, out) == (2, f"{bad}: public key is not a regular file")
        code, out = run("log", "verify", str(w["dir"]), "--key-file", str(w["key"]), "--witness", bad)
        assert (code, out) == (2, f"{bad}: witness file is not a regular file")
        code, out = run("log", "checkpoint", str(w["dir"]), "--sign-key", bad)
        assert (code, out) == (2, f"{bad}: private key is not a regular file")
    (tmp_path / "long.key").write_bytes(b"0" * 20000)
    code, out = run("log", "verify", str(w["dir"]), "--key-file", str(tmp_path / "long.key"))
    assert code == 2 and "holds more than 16384 bytes: not a key file" in out
    (w["dir"] / "pseudonym.key").unlink()
    os.mkfifo(w["dir"] / "pseudonym.key")
    with pytest.raises(SecpolicyError, match="the pseudonym key is not a regular file"):
        read_pseudonym_key(w["dir"])
