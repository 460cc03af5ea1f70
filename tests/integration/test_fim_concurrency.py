"""`fim check` racing `fim update`: whatever the interleaving, a check compares with a genuine
generation and never reports a false tamper alarm (exit 5) or a runtime failure (exit 3).
Three interleavings are forced step by step; then real processes run side by side."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from secpolicy import fim
from secpolicy.fim import scan as fim_scan
from secpolicy.fim.store import Baseline

KEY = fim.Key(b"c" * 32, "test key")


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[fim.FimConfig, Path, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for i in range(30):
        (root / "etc" / f"f{i}").write_text(f"content {i}\n")
    config = fim.config_from_dict({"name": "race", "paths": [{"path": "/etc", "attrs": "R"}]})
    db = tmp_path / "base.db"
    fim.init_baseline(config, db, root, KEY)
    return config, root, db


class _Updater:
    """Runs one `update` on a thread; `promoted` is set once the new generation is in place
    (before the previous one is sealed as superseded, which may wait for readers)."""

    def __init__(self, config: fim.FimConfig, db: Path, root: Path) -> None:
        self.promoted = threading.Event()
        self.result: Any = None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, args=(config, db, root))

    def _run(self, config: fim.FimConfig, db: Path, root: Path) -> None:
        try:
            self.result = fim.update(config, db, root, KEY)
        except Exception as e:  # noqa: BLE001 - re-raised by join() in the test thread
            self.error = e

    def start(self) -> _Updater:
        self.thread.start()
        return self

    def join(self) -> Any:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture()
def promoted_hook(monkeypatch: pytest.MonkeyPatch) -> list[_Updater]:
    """Updaters started by a test; the scan's `promote` tells them when the swap happened."""
    updaters: list[_Updater] = []
    real = fim_scan.promote

    def promote(tmp: str, path: str, keep_previous: bool) -> str | None:
        out = real(tmp, path, keep_previous)
        for u in updaters:
            if u.thread is threading.current_thread():
                u.promoted.set()
        return out

    monkeypatch.setattr(fim_scan, "promote", promote)
    return updaters


def _once(fn: Callable[..., Any]) -> Callable[..., Any]:
    done = []

    def wrapper(*args: Any, **kw: Any) -> Any:
        if done:
            return None
        done.append(True)
        return fn(*args, **kw)

    return wrapper


def test_update_promoted_while_the_check_opens_the_baseline(tree, monkeypatch, promoted_hook) -> None:
    config, root, db = tree
    real = Baseline._read_header
    main = threading.current_thread()

    @_once
    def race(self: Baseline) -> None:
        self.db.execute("SELECT count(*) FROM sqlite_master").fetchall()  # the old file is open
        u = _Updater(config, db, root)
        promoted_hook.append(u)
        u.start().join()  # promoted, and the old generation sealed as superseded

    def read_header(self: Baseline) -> dict[str, Any]:
        if threading.current_thread() is main:
            race(self)
        return real(self)

    monkeypatch.setattr(Baseline, "_read_header", read_header)
    result = fim.check(config, db, root, KEY)
    assert result.status == "clean" and result.baseline.generation == 2
    assert result.notes == ()
    assert fim.fim_status(db, KEY).checks == 2  # the update's own record and this check


def test_update_promoted_while_the_check_streams_the_rows(tree, monkeypatch, promoted_hook) -> None:
    config, root, db = tree
    real = Baseline.rows
    main = threading.current_thread()

    def rows(self: Baseline) -> Iterator[tuple[bytes, bytes]]:
        it = real(self)
        if threading.current_thread() is not main or promoted_hook:
            yield from it
            return
        yield next(it)
        u = _Updater(config, db, root)
        promoted_hook.append(u)
        u.start()
        assert u.promoted.wait(60)  # renamed over the path while we hold the old file open
        yield from it

    monkeypatch.setattr(Baseline, "rows", rows)
    result = fim.check(config, db, root, KEY)
    up = promoted_hook[0].join()
    assert up.baseline.generation == 2
    assert result.status == "clean" and result.baseline.generation == 1
    assert [n.message for n in result.notes] == [
        ("check compared with generation 1 and not recorded: the baseline was replaced by a newer "
         "generation during this check")]
    assert fim.check(config, db, root, KEY).baseline.generation == 2


def test_update_promoted_between_the_scan_and_the_check_record(tree, monkeypatch, promoted_hook) -> None:
    config, root, db = tree
    real = Baseline.record_check

    @_once
    def race() -> None:
        u = _Updater(config, db, root)
        promoted_hook.append(u)
        u.start().join()

    def record_check(self: Baseline, record: dict[str, Any]) -> str | None:
        race()
        return real(self, record)

    monkeypatch.setattr(Baseline, "record_check", record_check)
    result = fim.check(config, db, root, KEY)
    assert result.status == "clean" and result.baseline.generation == 1
    assert len(result.notes) == 1 and "not recorded" in result.notes[0].message
    # The superseded generation took no record; the new one verifies with its own.
    st = fim.fim_status(db, KEY, deep=True)
    assert st.verified and st.generation == 2 and st.checks == 1


@pytest.mark.parametrize("audit_log", [False, True], ids=["plain", "audit-log"])
def test_checks_and_updates_side_by_side_never_alarm(tree, tmp_path: Path, audit_log: bool) -> None:
    _, root, db = tree
    cfg = tmp_path / "fim.yaml"
    cfg.write_text("name: race\npaths:\n  - path: /etc\n    attrs: R\n")
    key = tmp_path / "key"
    key.write_bytes(b"c" * 32)
    common = ["--config", str(cfg), "--db", str(db), "--root", str(root), "--key-file", str(key), "--no-progress"]
    cli = [sys.executable, "-m", "secpolicy", "fim"]
    if audit_log:
        # Both sides write the same audit log (one writer at a time: they take turns), and
        # every check compares with the newest generation recorded there.
        subprocess.run([sys.executable, "-m", "secpolicy", "log", "init", str(tmp_path / "log"),
                        "--key-out", str(tmp_path / "log.key")], check=True, capture_output=True)
        common += ["--audit-log", str(tmp_path / "log")]
    rounds = 6 if audit_log else 12
    subprocess.run([*cli, "init", "--force", *common], check=True, capture_output=True)
    updates_done = threading.Event()
    check_runs: list[subprocess.CompletedProcess[str]] = []

    def checks() -> None:
        while not updates_done.is_set() or len(check_runs) < 5:
            check_runs.append(subprocess.run([*cli, "check", *common], capture_output=True, text=True,
                                             timeout=120, check=False))

    t = threading.Thread(target=checks)
    t.start()
    update_codes = []
    try:
        for i in range(rounds):
            (root / "etc" / f"f{i}").write_text(f"changed {i}\n")  # something to accept each time
            update_codes.append(subprocess.run([*cli, "update", *common], capture_output=True, text=True,
                                               timeout=120, check=False))
            time.sleep(0.01 * (i % 3))
    finally:
        updates_done.set()
        t.join(timeout=300)
    assert [u.returncode for u in update_codes] == [0] * rounds, [u.stderr for u in update_codes]
    bad = [(c.returncode, c.stderr) for c in check_runs if c.returncode not in (0, 1)]
    assert bad == [] and len(check_runs) >= 5
    assert fim.fim_status(db, KEY, deep=True).generation == rounds + 1
