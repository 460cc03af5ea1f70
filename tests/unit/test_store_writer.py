"""`store ingest`'s writer process: the rows it stores are the rows `EventStore.ingest` stores,
batch by batch, and a failure on either side ends the run with what came before kept."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secpolicy.auditlog import store_writer
from secpolicy.auditlog.store import EventStore, JsonLines, event_row
from secpolicy.auditlog.store_writer import ingest_in_writer
from secpolicy.errors import InputError, RuntimeFailure

EVENTS = Path(__file__).resolve().parent.parent / "fixtures" / "auditlog" / "events.jsonl"


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with EventStore(path, create=False) as store:
        return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("events", "alerts")}


def test_the_writer_stores_what_ingest_stores(tmp_path: Path) -> None:
    lines = EVENTS.read_text(encoding="utf-8")
    many = tmp_path / "many.jsonl"
    many.write_text(lines * 7, encoding="utf-8")  # several batches of 5, the last one short
    with EventStore(tmp_path / "in-process.db") as store:
        expected = store.ingest(JsonLines([many]).rows(), batch=5)
    got = ingest_in_writer(tmp_path / "writer.db", JsonLines([many]).rows(), batch=5)
    kinds = [k for k, _ in JsonLines([EVENTS])]
    once = (kinds.count("event"), kinds.count("alert"))  # each record is stored once
    assert got == expected == once and once[0] > 5 and once[1] > 0
    assert (got.duplicate_events, got.duplicate_alerts) == (6 * once[0], 6 * once[1])
    assert (expected.duplicate_events, expected.duplicate_alerts) == (6 * once[0], 6 * once[1])
    assert _tables(tmp_path / "writer.db") == _tables(tmp_path / "in-process.db")


def _rows(bad_at: int | None = None, fail_at: int | None = None, total: int = 40) -> Iterator[tuple[str, Any]]:
    rows = [event_row(o) for k, o in JsonLines([EVENTS]) if k == "event"]
    for i in range(total):
        if i == fail_at:
            raise InputError("the source went away")
        yield "event", rows[i % len(rows)] if i != bad_at else (1, 2)


def test_a_batch_that_cannot_be_stored_ends_the_run_keeping_the_batches_before(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with pytest.raises(RuntimeFailure, match="cannot store 2 rows"):
        ingest_in_writer(db, _rows(bad_at=9), batch=2)  # the fifth batch of two fails
    with EventStore(db, create=False) as store:
        assert store.count_events() == 8  # nothing after the failed batch, though it was read
    # The store is usable after: of rows 0-9 the first eight are stored already (each record once).
    again = ingest_in_writer(db, _rows(total=10), batch=2)
    assert again == (2, 0) and again.duplicate_events == 8
    with EventStore(db, create=False) as store:
        assert store.count_events() == 10


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """The writer processes started while the test runs."""
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recorded(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = popen(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(store_writer.subprocess, "Popen", recorded)
    return started


def test_a_source_that_fails_keeps_what_was_handed_over(tmp_path: Path, writers: list[subprocess.Popen[bytes]]) -> None:
    db = tmp_path / "events.db"
    with pytest.raises(InputError, match="went away"):
        ingest_in_writer(db, _rows(fail_at=11), batch=2)
    with EventStore(db, create=False) as store:
        assert store.count_events() == 10  # five whole batches; the sixth was never sent
    assert len(writers) == 1 and writers[0].returncode == 0  # waited for: no process left behind


def test_a_writer_that_dies_is_a_failure_never_a_short_success(tmp_path: Path,
                                                                writers: list[subprocess.Popen[bytes]]) -> None:
    def source() -> Iterator[tuple[str, Any]]:
        for i, item in enumerate(_rows(total=4000)):
            if i == 10:
                os.kill(writers[0].pid, signal.SIGKILL)  # as the OOM killer would
            yield item

    with pytest.raises(RuntimeFailure, match="killed by signal 9 before reporting"):
        ingest_in_writer(tmp_path / "events.db", source(), batch=2)
    with EventStore(tmp_path / "events.db", create=False) as store:
        assert store.count_events() <= 10  # what it committed before it died, and no more


def test_without_a_second_process_it_stores_in_this_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(store_writer.subprocess, "Popen", no_process)
    assert ingest_in_writer(tmp_path / "events.db", _rows(total=7), batch=3) == (7, 0)


def test_an_unusable_store_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    db.write_bytes(b"not a database" * 100)
    read = []

    def source() -> Iterator[tuple[str, Any]]:
        read.append(1)
        yield from _rows(total=3)

    with pytest.raises(InputError, match="not a usable event store"):
        ingest_in_writer(db, source())
    assert read == []
