"""`secpolicy fim` as a user runs it: each baseline generation recorded in the audit log and
a rolled-back baseline refused; Ctrl-C ends a run with one line; progress on terminals only."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SECPOLICY = [sys.executable, "-m", "secpolicy"]
# Ctrl-C reaches a foreground job with SIGINT at its default; a suite run as a background job of a
# script inherits it ignored (POSIX), and so would secpolicy. Start the child as a terminal would.
FOREGROUND = ["env", "--default-signal=INT"]


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=300, check=False, **kw)


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, list[str], Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("listen 80\n")
    (tmp_path / "fim.yaml").write_text("name: app\npaths:\n  - path: /etc\n    attrs: R\n")
    (tmp_path / "key").write_bytes(os.urandom(32))
    log = tmp_path / "log"
    p = run("log", "init", str(log), "--key-out", str(tmp_path / "log.key"))
    assert p.returncode == 0, p.stderr
    common = ["--config", str(tmp_path / "fim.yaml"), "--db", str(tmp_path / "fim.db"), "--root", str(root),
              "--key-file", str(tmp_path / "key"), "--no-progress"]
    return root, common, log


def _generations(log: Path) -> list[dict]:
    out = []
    for seg in sorted(log.glob("segment-*.jsonl")):
        for line in seg.read_text().splitlines():
            body = json.loads(line)["body"]
            if body.get("event_type") == "fim_baseline":
                out.append(body["details"])
    return out


def test_a_genuine_baseline_put_back_after_an_update_is_refused(setup, tmp_path: Path) -> None:
    root, common, log = setup
    audit = ["--audit-log", str(log)]
    db = tmp_path / "fim.db"
    assert run("fim", "init", *common, *audit).returncode == 0
    shutil.copy2(db, tmp_path / "copy-gen1.db")  # a genuine copy, taken before the update
    (root / "etc" / "app.conf").write_text("listen 8080\n")
    up = run("fim", "update", *common, *audit, "--format", "json")
    assert up.returncode == 0, up.stderr
    new = json.loads(up.stdout)["new_baseline"]
    gens = _generations(log)
    assert [(g["generation"], g["command"]) for g in gens] == [(1, "fim init"), (2, "fim update")]
    assert gens[1]["baseline_id"] == new["baseline_id"] and gens[1]["root_hash"] == new["root_hash"]
    assert gens[1]["db"] == os.path.realpath(db)
    assert run("fim", "check", *common, *audit).returncode == 0

    os.replace(tmp_path / "copy-gen1.db", db)  # the rollback
    p = run("fim", "check", *common, *audit)
    assert p.returncode == 5
    assert f"older than generation 2 (baseline {new['baseline_id']}) recorded in the audit log" in p.stderr
    assert "rollback" in p.stderr
    assert run("fim", "update", *common, *audit).returncode == 5  # nor is it updated from
    # Without the audit log the copy verifies: it is genuine. The log is what remembers.
    assert run("fim", "check", *common).returncode == 1
    # The refusal itself is on record, as a critical failure.
    records = [json.loads(line)["body"] for seg in sorted(log.glob("segment-*.jsonl")) for line in seg.read_text().splitlines()]
    fails = [r for r in records if r.get("event_type") == "failure" and r["details"].get("kind") == "integrity"]
    assert len(fails) == 2 and all(r["severity"] == "critical" for r in fails)
    assert run("log", "verify", str(log), "--key-file", str(tmp_path / "log.key")).returncode == 0


def test_an_older_generation_is_refused_wherever_the_database_path_points(setup, tmp_path: Path) -> None:
    """--db is a symlink: `update` writes the new generation where it points (the link stays),
    and a copy of the older generation is refused at the link's old target and at any other
    path, since the audit log knows its lineage has a newer generation."""
    root, common, log = setup
    audit = ["--audit-log", str(log)]
    (tmp_path / "srv").mkdir()
    target = tmp_path / "srv" / "fim.db"
    link = tmp_path / "fim.db"  # the --db of `common`
    link.symlink_to(Path("srv") / "fim.db")
    assert run("fim", "init", *common, *audit).returncode == 0
    assert link.is_symlink() and target.is_file()
    shutil.copy2(target, tmp_path / "copy-gen1.db")
    (root / "etc" / "app.conf").write_text("listen 8080\n")
    assert run("fim", "update", *common, *audit).returncode == 0
    assert link.is_symlink() and os.readlink(link) == os.path.join("srv", "fim.db")
    assert [g["db"] for g in _generations(log)] == [os.path.realpath(target)] * 2

    # The old generation put back where the link points, and under a path of its own
    # that the link is then pointed at: refused both ways.
    shutil.copy2(tmp_path / "copy-gen1.db", target)
    p = run("fim", "check", *common, *audit)
    assert p.returncode == 5 and "rollback" in p.stderr, p.stderr
    elsewhere = tmp_path / "elsewhere.db"
    os.replace(tmp_path / "copy-gen1.db", elsewhere)
    link.unlink()
    link.symlink_to(elsewhere)
    p = run("fim", "check", *common, *audit)
    assert p.returncode == 5, p.stderr
    assert "older than generation 2" in p.stderr and f"written to {os.path.realpath(target)}" in p.stderr


def test_a_generation_made_without_the_audit_log_is_noted_not_refused(setup, tmp_path: Path) -> None:
    root, common, log = setup
    audit = ["--audit-log", str(log)]
    assert run("fim", "init", *common, *audit).returncode == 0
    (root / "etc" / "app.conf").write_text("listen 8080\n")
    assert run("fim", "update", *common).returncode == 0  # not recorded
    p = run("fim", "check", *common, *audit, "--format", "json")
    assert p.returncode == 0, p.stderr
    notes = [n["message"] for n in json.loads(p.stdout)["notes"]]
    assert any("newer than generation 1, the newest recorded in the audit log" in n for n in notes)


def _children(pid: int) -> set[int]:
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d))
    return out


def test_ctrl_c_during_init_prints_interrupted_and_no_traceback(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    for i in range(700):  # more than one batch: hashing runs in worker processes
        (root / "data" / f"f{i:03d}").write_bytes(b"x" * 100)
    with open(root / "data" / "big.img", "wb") as f:
        f.truncate(64 << 30)  # sparse: takes the workers many seconds to hash, no disk
    (tmp_path / "fim.yaml").write_text("paths:\n  - path: /data\n    attrs: R\n")
    db = tmp_path / "db" / "fim.db"
    db.parent.mkdir()
    proc = subprocess.Popen([*FOREGROUND, *SECPOLICY, "fim", "init", "--config", str(tmp_path / "fim.yaml"), "--db", str(db),
                             "--root", str(root), "--no-key", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:
            workers = {c for c in _children(proc.pid) if b"hasher.py" in Path(f"/proc/{c}/cmdline").read_bytes()}
            time.sleep(0.02)
        assert len(workers) == 2, "the hashing workers never started"
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.strip() == "secpolicy: interrupted"
        assert "Traceback" not in err and out == ""
        assert list(db.parent.iterdir()) == []  # no baseline, no temporary file left
        for w in workers:
            assert not Path(f"/proc/{w}").exists() or "Z" in Path(f"/proc/{w}/stat").read_text().split()[2]
    finally:  # a failed run must not leave 64 GiB being hashed
        for pid in (*workers, proc.pid):
            with contextlib.suppress(OSError):  # gone already
                if b"secpolicy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        proc.wait()


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; returns (exit code, what reached the terminal)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)


def test_progress_shows_on_a_terminal_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    for i in range(3000):
        (root / "data" / f"f{i:04d}").write_bytes(os.urandom(1000))
    (tmp_path / "fim.yaml").write_text("paths:\n  - path: /data\n    attrs: R\n")
    base = [*SECPOLICY, "fim", "init", "--config", str(tmp_path / "fim.yaml"), "--root", str(root), "--no-key"]
    rc, seen = _on_a_terminal([*base, "--db", str(tmp_path / "a.db")])
    assert rc == 0
    # Totals from the first stat pass: entries and bytes done of all.
    assert "fim init: " in seen and "/3,001 entries" in seen and "/3 MB hashed" in seen
    rc, seen = _on_a_terminal([*base, "--db", str(tmp_path / "b.db"), "--quiet"])
    assert rc == 0 and "entries" not in seen
    piped = run(*base[3:], "--db", str(tmp_path / "c.db"))
    assert piped.returncode == 0 and "entries," not in piped.stderr and "\r" not in piped.stderr


def test_a_checkpoint_copy_that_fails_does_not_hide_the_check(tmp_path: Path) -> None:
    """The copy `log init` set up became a directory: `fim check` prints its result, names the
    copy after it, exits 1 on changes and 3 when clean; the audit log stays sealed."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("listen 80\n")
    (tmp_path / "fim.yaml").write_text("name: app\npaths:\n  - path: /etc\n    attrs: R\n")
    (tmp_path / "key").write_bytes(os.urandom(32))
    log, copy = tmp_path / "log", tmp_path / "cpx"
    assert run("log", "init", str(log), "--key-out", str(tmp_path / "log.key"),
               "--copy-checkpoints", str(copy)).returncode == 0
    common = ["--config", str(tmp_path / "fim.yaml"), "--db", str(tmp_path / "fim.db"), "--root", str(root),
              "--key-file", str(tmp_path / "key"), "--no-progress", "--audit-log", str(log)]
    assert run("fim", "init", *common).returncode == 0
    copy.unlink()
    copy.mkdir()
    p = run("fim", "check", *common)
    assert p.returncode == 3, p.stderr
    assert p.stdout.startswith("fim check: clean")
    assert p.stderr.startswith(f"secpolicy: audit log: {copy}: cannot copy checkpoint ")
    (root / "etc" / "app.conf").write_text("listen 8080\n")
    p = run("fim", "check", *common, "--format", "json")
    assert p.returncode == 1 and json.loads(p.stdout)["result"] == "changed"
    assert "cannot copy checkpoint" in p.stderr
    v = run("log", "verify", str(log), "--key-file", str(tmp_path / "log.key"))
    assert v.returncode == 0, v.stdout + v.stderr
    assert "this checkpoint copy was not used" in v.stdout
