"""A representative subset of a hostile sweep over every command, option and argument of the
command line (found by walking the click tree): each case here was a traceback-free but wrong
answer before (an internal error, a read without end, a green run without what was asked, a
symbolic link replaced, a previous output lost to a run that failed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.app.outputs import OutputOptions, RunOutputs
from secpolicy.errors import InputError

TESTS = Path(__file__).resolve().parents[1]
EVENTS = TESTS / "fixtures" / "auditlog" / "events.jsonl"
SECPOLICY = [sys.executable, "-m", "secpolicy"]


def run(*args: str | bytes, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Bytes go to argv as they are (a file name that is not UTF-8); a read without end is a
    # failure of the test, not a wait for the suite's own timeout.
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def refused(p: subprocess.CompletedProcess[str], message: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("store") / "events.db"
    p = run("store", "ingest", str(db), str(EVENTS))
    assert p.returncode == 0, p.stderr
    return db


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("log")
    p = run("log", "init", str(d / "log"), "--key-out", str(d / "log.key"))
    assert p.returncode == 0, p.stderr
    return d / "log", d / "log.key"


# An empty value (an unset shell variable) dropped the option: the signature check, the
# audit log, the checkpoint copy or the filter silently did not happen, exit 0.
@pytest.mark.parametrize(("args", "message"), [
    (["log", "verify", "{log}", "--key-file", "{key}", "--pubkey", ""], "--pubkey is empty: give a path"),
    (["log", "checkpoint", "{log}", "--out", ""], "--out is empty: give a path"),
    (["replay", str(EVENTS), "--audit-log", ""], "--audit-log is empty: give a path"),
    (["timeline", "--db", "{store}", "--user", ""], "--user is empty: give a value"),
])
def test_an_empty_value_is_refused_not_dropped(args, message, log, store):
    values = {"{log}": str(log[0]), "{key}": str(log[1]), "{store}": str(store)}
    refused(run(*(values.get(a, a) for a in args)), message)


# A device as an input was read without end (/dev/zero, /dev/full): memory filled, no answer.
@pytest.mark.parametrize(("args", "what"), [
    (["anomaly", "detect", "--db", "{store}", "--baseline", "/dev/zero"], "baseline"),
    (["dashboard", "--db", "{store}", "--once", "--results", "/dev/full"], "results file"),
    (["fim", "check", "--config", "/dev/zero", "--no-key"], "FIM configuration"),
    (["log", "append", "{log}", "/dev/zero"], "input"),
    (["store", "ingest", "{tmp}/new.db", "/dev/zero"], "input"),
])
def test_a_device_as_an_input_is_refused_not_read_forever(args, what, log, store, tmp_path):
    values = {"{log}": str(log[0]), "{store}": str(store), "{tmp}/new.db": str(tmp_path / "new.db")}
    dev = next(a for a in args if a.startswith("/dev/"))
    refused(run(*(values.get(a, a) for a in args)), f"cannot read {what} {dev} (it is a device)")
    assert not (tmp_path / "new.db").exists()


def test_numbers_and_names_sqlite_or_the_terminal_cannot_hold_are_invalid_input(store, tmp_path):
    huge = "99999999999999999999999"
    refused(run("dashboard", "--db", str(store), "--once", "--width", huge), "is not in the range 40<=x<=10000")
    refused(run("store", "prune", str(store), "--max-events", huge), "--max-events")
    refused(run("timeline", "--db", str(store), "--rule", b"\xff\xfe"), "'--rule': is not UTF-8 text")
    refused(run("log", "init", str(tmp_path / "log"), "--key-out", str(tmp_path / "k"),
                "--copy-checkpoints", os.fsencode(str(tmp_path)) + b"/\xff"),
            "--copy-checkpoints: the file name is not UTF-8 text")
    assert not (tmp_path / "log").exists() and not (tmp_path / "k").exists()


def test_log_init_refuses_what_it_cannot_make_before_making_anything(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    refused(run("log", "init", str(tmp_path / "fifo"), "--key-out", str(tmp_path / "k")),
            "cannot make the log directory: it is not a directory")
    # The initial key's directory is missing: the log must not be made without its key.
    refused(run("log", "init", str(tmp_path / "log"), "--key-out", str(tmp_path / "no" / "k")),
            "(no such directory)")
    assert not (tmp_path / "log").exists()
    # A public key that cannot be written leaves no half pair behind.
    p = run("log", "keygen", str(tmp_path / "priv.pem"), "/dev/full")
    refused(p, "cannot write /dev/full (no space left on device)")
    assert not (tmp_path / "priv.pem").exists()


def test_a_read_error_of_an_input_is_not_called_a_write_error(log):
    refused(run("log", "append", str(log[0]), "/proc/self/mem"), "/proc/self/mem: cannot read: Input/output error")


def test_the_witness_link_is_written_through_never_replaced(log, tmp_path):
    target = tmp_path / "witness.json"
    link = tmp_path / "witness-link"
    link.symlink_to(target)
    refused(run("log", "verify", str(log[0]), "--key-file", str(log[1]), "--witness", str(link)),
            "it is a symbolic link")
    assert link.is_symlink() and not target.exists()
    p = run("--follow-symlinks", "log", "verify", str(log[0]), "--key-file", str(log[1]), "--witness", str(link))
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and target.stat().st_size > 0


# The monitor's alert file and event recording are written in place (others follow them): they
# were truncated when opened, so a run refused by a later output (an event store that is not
# one) left the last run's alerts empty.
def test_a_failed_run_leaves_the_last_runs_live_outputs_as_they_were(tmp_path):
    alerts, events, bad = tmp_path / "alerts.jsonl", tmp_path / "events.jsonl", tmp_path / "bad.db"
    alerts.write_text('{"rule_id": "earlier"}\n')
    events.write_text('{"type": "exec"}\n')
    bad.write_text("not an SQLite database\n")
    settings = OutputOptions(store=str(bad)).settings(alerts=str(alerts), events=str(events), stream=True)
    run_outputs = RunOutputs(settings, "monitor", overflow="drop", on_error=lambda _m: None)
    with pytest.raises(InputError, match="not a usable event store") as failure:
        run_outputs.open()
    run_outputs.fail(failure.value)
    assert alerts.read_text() == '{"rule_id": "earlier"}\n'
    assert events.read_text() == '{"type": "exec"}\n'
    # A run that ends well replaces them, even having written nothing.
    ok = RunOutputs(OutputOptions().settings(alerts=str(alerts), stream=True), "monitor", overflow="drop",
                    on_error=lambda _m: None)
    ok.open()
    ok.finish()
    assert alerts.read_text() == ""


def test_checkpoint_copies_go_through_devices_and_fifos(tmp_path):
    # fsync of a checkpoint copy on /dev/null (or a FIFO) is EINVAL: it was an internal error,
    # exit 3, and the log was left without its copy's record of checkpoint 1.
    p = run("log", "init", str(tmp_path / "log"), "--key-out", str(tmp_path / "log.key"),
            "--copy-checkpoints", "/dev/null")
    assert p.returncode == 0, p.stderr
    fifo = tmp_path / "copies"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open before the run: it has a reader
    try:
        p = run("log", "checkpoint", str(tmp_path / "log"), "--out", str(fifo))
        assert p.returncode == 0, p.stderr
        out = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert out.endswith(b"\n") and out.count(b"\n") >= 1, out[:200]
