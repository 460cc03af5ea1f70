"""Bulk loading of the event store on two cores: this process reads, checks and redacts the
lines while a writer process inserts the rows of the batch before into SQLite.

Reading (decoding, checking, extracting columns, screening for redaction) and SQLite's inserts
each cost about half of an ingest, and both hold the interpreter lock (binding a row's values
does), so a writer thread gains nothing; a writer process does. Each batch crosses a pipe as
one marshal frame and is stored in one transaction, exactly as `EventStore.ingest` stores it
(a row the store holds already is skipped and counted as a duplicate).

The writer is a fresh interpreter (not a fork: a fork would inherit whatever locks other
threads of the caller hold), started with -P so the working directory is not on its path.
"""

from __future__ import annotations

import fcntl
import gc
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from secpolicy.auditlog.store import EventStore, Ingested, cycles_paused, row_batches
from secpolicy.errors import RuntimeFailure

__all__ = ["ingest_in_writer", "serve"]

_FRAME = struct.Struct("<Q")  # the length of the marshal frame that follows
_PIPE_SIZE = 1 << 20  # what Linux allows an unprivileged pipe by default (fs.pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# The package's parent directory, appended to the writer's path (after site-packages).
_ROOT = str(Path(__file__).resolve().parents[2])
_START = "import sys; sys.path.append(sys.argv[1]); from secpolicy.auditlog.store_writer import serve; serve(sys.argv[2])"
Row = tuple[Any, ...]


def ingest_in_writer(path: str | Path, rows: Iterable[tuple[str, Row]], batch: int = 50_000) -> Ingested:
    """`EventStore(path).ingest(rows, batch)`, with the inserts in a writer process; returns
    (events, alerts) stored, with the duplicates skipped. Batches are stored in order, each in one transaction. When one
    cannot be stored, the batches before it stay stored, none after it is, reading stops at
    the next batch and RuntimeFailure is raised as `ingest` raises it; so it is when the
    writer dies. When `rows` raises (or the run is interrupted), the batches already handed
    over are stored before this returns."""
    EventStore(path).close()  # created (or refused) here, before any line is read
    try:
        writer = subprocess.Popen(
            [sys.executable, "-P", "-c", _START, _ROOT, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True,
            # Its own process group: Ctrl-C reaches this process only, which closes the pipe;
            # the writer stores the batch in hand and ends.
            process_group=0,
        )
    except OSError:
        with EventStore(path) as store:  # no second process to be had: in this one
            return store.ingest(rows, batch)
    assert writer.stdin is not None and writer.stdout is not None
    out, status = writer.stdin.fileno(), writer.stdout.fileno()
    try:
        fcntl.fcntl(out, _F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass  # a smaller pipe only costs more wake-ups
    try:
        with cycles_paused():
            failure = _feed(rows, batch, out, status)
    finally:
        try:
            writer.stdin.close()  # the end of the frames
        except OSError:
            pass
        report = writer.stdout.read()
        writer.stdout.close()
        code = writer.wait()
    how = f"was killed by signal {-code}" if code < 0 else f"ended with status {code}"
    if not report:  # it died before it could say what it stored
        raise RuntimeFailure(f"the event store's writer process {how} before reporting; the batches it "
                             f"committed are stored, the rest is not")
    try:
        n_events, n_alerts, d_events, d_alerts, message = marshal.loads(report)
    except (EOFError, ValueError, TypeError):
        raise RuntimeFailure(f"the event store's writer process {how} with an unreadable report") from None
    if message is not None:
        raise RuntimeFailure(message)
    if failure or code != 0:
        raise RuntimeFailure(f"the event store's writer process {how} after storing {n_events} events "
                             f"and {n_alerts} alerts")
    return Ingested(n_events, n_alerts, d_events, d_alerts)


def _feed(rows: Iterable[tuple[str, Row]], batch: int, out: int, status: int) -> bool:
    """Send `rows` in frames of `batch`; True when the writer stopped taking them (it says why)."""
    # The writer writes to `status` only when done: readable (or closed) before the end means
    # it failed or died. poll, not select: the descriptor may be beyond select's 1024.
    said = select.poll()
    said.register(status, select.POLLIN)
    return not all(_send(out, said, events, alerts) for events, alerts in row_batches(rows, batch))


def _send(out: int, said: select.poll, events: list[Row], alerts: list[Row]) -> bool:
    """One frame to the writer; False when it has stopped (a batch failed, or it died)."""
    if said.poll(0):
        return False  # read no further
    frame = marshal.dumps((events, alerts))
    try:
        _write_all(out, _FRAME.pack(len(frame)))
        _write_all(out, frame)
    except BrokenPipeError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(path: str) -> None:
    """The writer process: store every whole frame read from standard input, then write
    (events, alerts, duplicate events, duplicate alerts, failure or None) to standard output
    as one marshal record."""
    # Interrupts are the reader's to handle: it closes the pipe, and the batch in hand is
    # still stored whole (a frame cut short is not).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()
    n_events = n_alerts = d_events = d_alerts = 0
    message: str | None = None
    try:
        with EventStore(path) as store, os.fdopen(0, "rb", buffering=_PIPE_SIZE) as frames:
            store.prepare_bulk_load()
            while len(head := frames.read(_FRAME.size)) == _FRAME.size:
                size = _FRAME.unpack(head)[0]
                body = frames.read(size)
                if len(body) != size:
                    break
                events, alerts = marshal.loads(body)
                stored_events, stored_alerts = store.insert(events, alerts)
                n_events += stored_events
                n_alerts += stored_alerts
                d_events += len(events) - stored_events
                d_alerts += len(alerts) - stored_alerts
    except RuntimeFailure as exc:
        message = exc.message
    except BaseException as exc:  # noqa: BLE001 - reported to the reader, which raises it
        message = f"the event store's writer process failed: {exc}"
    try:
        _write_all(1, marshal.dumps((n_events, n_alerts, d_events, d_alerts, message)))
    except OSError:
        pass  # the reader is gone (killed): no one to tell
    os._exit(0 if message is None else 1)  # nothing else to flush or run at exit
