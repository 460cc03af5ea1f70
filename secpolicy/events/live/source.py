"""LiveSource, the EventSource over the running kernel: a reader thread drains the ring buffer
into a bounded queue, `events()` decodes in timestamp order, and every record that could not be
delivered (ring buffer or pending table full in the kernel, queue full here) is counted by type
and time window."""

from __future__ import annotations

import heapq
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from secpolicy.errors import RuntimeFailure
from secpolicy.events.bpf_plan import KernelPlan
from secpolicy.events.live.decode import Decoder
from secpolicy.events.live.kernel import KernelProbes
from secpolicy.events.live.procs import Clock
from secpolicy.events.live.record import OFF, TYPE_OF_ID
from secpolicy.events.live.ring import PAGE, RingBuffer
from secpolicy.models import Event

__all__ = ["LiveSource", "LiveStats", "LossWindow"]

_SEQ = struct.Struct("<I")
_TS = struct.Struct("<Q")
_TYPE = struct.Struct("<I")
_OFF_SEQ, _OFF_TS, _OFF_TYPE = OFF["lost_seq"], OFF["ts"], OFF["type"]
# Seconds between two looks at the watched files' inodes (KernelProbes.refresh_watched_inodes).
_INODE_REFRESH = 0.5


@dataclass(frozen=True)
class LossWindow:
    """Records lost between two delivered records (`kernel`) or dropped from the user-space
    queue (`queue`), with the time span they fall in."""

    start: str
    end: str
    count: int
    where: str
    by_type: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "count": self.count, "where": self.where,
                "by_type": dict(self.by_type)}


@dataclass(frozen=True)
class LiveStats:
    delivered: dict[str, int]
    kernel_sent: dict[str, int]
    kernel_lost: dict[str, int]
    queue_dropped: dict[str, int]
    internal: dict[str, int]
    windows: tuple[LossWindow, ...]

    def lost(self) -> dict[str, int]:
        out = dict(self.kernel_lost)
        for k, v in self.queue_dropped.items():
            out[k] = out.get(k, 0) + v
        return {k: v for k, v in out.items() if v}

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "kernel_sent": self.kernel_sent,
            "kernel_lost": self.kernel_lost,
            "queue_dropped": self.queue_dropped,
            "lost": self.lost(),
            "lost_total": sum(self.lost().values()),
            "internal": self.internal,
            "loss_windows": [w.to_dict() for w in self.windows],
        }


class LiveSource:
    """An EventSource over the running kernel. `start()` compiles and attaches the probes the
    plan needs; `events()` yields events until `stop()`; `stats()` and `lost()` count what was
    delivered and what was lost, in the kernel and in the user-space queue."""

    def __init__(
        self,
        plan: KernelPlan,
        *,
        ringbuf_pages: int = 4096,
        queue_max: int = 1 << 18,
        poll_interval: float = 0.02,
        reorder: float = 0.25,
        host: str | None = None,
        libpam: str | None = None,
    ) -> None:
        if ringbuf_pages <= 0 or ringbuf_pages & (ringbuf_pages - 1):
            raise RuntimeFailure(f"ring buffer pages must be a power of two, got {ringbuf_pages}")
        self.plan = plan
        self.ringbuf_pages = ringbuf_pages
        self.queue_max = queue_max
        self.poll_interval = poll_interval
        self.reorder = reorder
        self.kernel = KernelProbes(plan, ringbuf_pages=ringbuf_pages, libpam=libpam)
        self.clock = Clock()
        self.decoder = Decoder(plan, host or socket.gethostname(), self.clock)
        self._ring: RingBuffer | None = None
        self._queue: deque[tuple[bytes, list[tuple[int, int]]]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._inodes: threading.Thread | None = None
        self._reader_error: BaseException | None = None
        self._reader_done = False
        self._queue_dropped: dict[str, int] = {}
        self._windows: list[LossWindow] = []
        self._lost_seq = 0
        self._last_ts_ns = 0
        self._kernel_lost_seen: dict[str, int] = {}
        self._final_counts: tuple[dict[str, int], dict[str, int]] = ({}, {})
        # The first record the decoder failed on (counted in internal["decode_errors"]).
        self.decode_error: str | None = None

    # -- setup ------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.kernel.loaded

    @property
    def attached(self) -> list[str]:
        return self.kernel.attached

    @property
    def task_storage(self) -> bool:
        return self.kernel.task_storage

    def now(self) -> str:
        return self.clock.now()

    def start(self) -> None:
        self.kernel.load()
        self._ring = RingBuffer(self.kernel.ring_fd, self.ringbuf_pages * PAGE)
        self.kernel.arm()
        self._reader = threading.Thread(target=self._read_loop, name="secpolicy-ring", daemon=True)
        self._reader.start()
        self._inodes = threading.Thread(target=self._inode_loop, name="secpolicy-inodes", daemon=True)
        self._inodes.start()

    def _inode_loop(self) -> None:
        """Keep the kernel's watched inodes current (a watched file replaced by a rename gets
        its new one), in a thread of its own: a stat that hangs (a dead network mount) never
        holds up the ring buffer's reader. A failed update is counted and tried again."""
        while not self._stop.wait(_INODE_REFRESH):
            try:
                self.kernel.refresh_watched_inodes()
            except OSError:
                self.decoder.internal["inode_refresh_errors"] = self.decoder.internal.get("inode_refresh_errors", 0) + 1

    # -- reading ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        ring = self._ring
        assert ring is not None
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping:
                    # Disarmed: a program that was sending as it happened finishes within
                    # microseconds; the last drain comes after it.
                    time.sleep(0.02)
                chunk, recs = ring.drain()
                if recs:
                    self._enqueue(chunk, recs)
                if stopping:
                    break
                if not recs:
                    self._stop.wait(self.poll_interval)
        except BaseException as exc:  # noqa: BLE001 - surfaced by events()
            self._reader_error = exc
        finally:
            with self._cond:
                self._reader_done = True
                self._cond.notify_all()

    def _enqueue(self, chunk: bytes, recs: list[tuple[int, int]]) -> None:
        # Every record carries the kernel's running count of lost records: a change between
        # two records means records were lost between their timestamps.
        seq_of = _SEQ.unpack_from
        last_seq = self._lost_seq
        for off, _ln in recs:
            seq = seq_of(chunk, off + _OFF_SEQ)[0]
            if seq != last_seq:
                self._kernel_loss(seq, _TS.unpack_from(chunk, off + _OFF_TS)[0])
                last_seq = seq
        self._last_ts_ns = _TS.unpack_from(chunk, recs[-1][0] + _OFF_TS)[0]
        with self._cond:
            room = self.queue_max - self._queued
            if room < len(recs):
                keep = max(room, 0)
                self._drop(chunk, recs[keep:])
                recs = recs[:keep]
            if recs:
                self._queue.append((chunk, recs))
                self._queued += len(recs)
                self._cond.notify()

    def _drop(self, chunk: bytes, recs: list[tuple[int, int]]) -> None:
        by_type: dict[str, int] = {}
        first = last = None
        for off, _ln in recs:
            ts = _TS.unpack_from(chunk, off + _OFF_TS)[0]
            name = TYPE_OF_ID.get(_TYPE.unpack_from(chunk, off + _OFF_TYPE)[0], "unknown")
            by_type[name] = by_type.get(name, 0) + 1
            first = ts if first is None else min(first, ts)
            last = ts if last is None else max(last, ts)
        for k, v in by_type.items():
            self._queue_dropped[k] = self._queue_dropped.get(k, 0) + v
        if first is not None and last is not None:
            self._windows.append(LossWindow(self.clock.ts(first), self.clock.ts(last),
                                            len(recs), "queue", by_type))

    def events(self) -> Iterator[Event]:
        """Events in timestamp order (records of different CPUs arrive a little out of order;
        they are held `reorder` seconds), so a recording replays in the very same order."""
        if not self.started:
            self.start()
        decode = self.decoder.decode
        heap: list[tuple[str, int, Event]] = []
        seq = 0
        push, pop = heapq.heappush, heapq.heappop
        lag_ns = int(self.reorder * 1e9)
        clock = self.clock
        while True:
            with self._cond:
                while not self._queue and not self._reader_done:
                    if heap:
                        self._cond.wait(min(self.reorder, 0.1))
                        break
                    self._cond.wait(0.5)
                batch = self._queue.popleft() if self._queue else None
                if batch is not None:
                    self._queued -= len(batch[1])
                finished = batch is None and self._reader_done and not self._queue
            if batch is not None:
                chunk, recs = batch
                for off, _ln in recs:
                    try:
                        ev = decode(chunk, off)
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the monitor
                        self._decode_failed(exc)
                        continue
                    if ev is not None:
                        seq += 1
                        push(heap, (ev["ts"], seq, ev))
            if finished:
                break
            limit = clock.ts(time.clock_gettime_ns(time.CLOCK_BOOTTIME) - lag_ns)
            while heap and heap[0][0] <= limit:
                yield pop(heap)[2]
        while heap:
            yield pop(heap)[2]
        if self._reader_error is not None:
            raise RuntimeFailure(f"reading the ring buffer failed: {self._reader_error}")

    def _decode_failed(self, exc: Exception) -> None:
        """Counted with the record's loss (it reaches no rule) and named in the summary."""
        self.decoder.internal["decode_errors"] = self.decoder.internal.get("decode_errors", 0) + 1
        if self.decode_error is None:
            self.decode_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """Ask the source to finish: the kernel side sends nothing more, and what is in the ring
        buffer is still delivered; sent = delivered + dropped then holds exactly."""
        if self.started:
            self.kernel.disarm()
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if self._inodes is not None:
            self._inodes.join(timeout=5)  # before the maps it updates are closed
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.started:
            self._final_counts = self.kernel.counts()
            self.kernel.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accounting -------------------------------------------------------------------------

    def _read_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        return self.kernel.counts() if self.started else self._final_counts

    def lost(self) -> dict[str, int]:
        return self.stats().lost()

    def stats(self) -> LiveStats:
        sent, klost = self._read_counts()
        windowed = sum(w.count for w in self._windows if w.where == "kernel")
        rest = sum(klost.values()) - windowed
        if rest > 0 and self._reader_done:
            # Lost after the last delivered record: the window runs to now.
            start = self.clock.ts(self._last_ts_ns) if self._last_ts_ns else self.clock.now()
            by_type = {k: v - self._kernel_lost_seen.get(k, 0) for k, v in klost.items()
                       if v - self._kernel_lost_seen.get(k, 0) > 0}
            self._kernel_lost_seen = dict(klost)
            self._windows.append(LossWindow(start, self.clock.now(), rest, "kernel", by_type))
        return LiveStats(
            delivered=dict(self.decoder.delivered),
            kernel_sent=sent,
            kernel_lost=klost,
            queue_dropped=dict(self._queue_dropped),
            internal=dict(self.decoder.internal),
            windows=tuple(self._windows),
        )

    def loss_windows(self) -> tuple[LossWindow, ...]:
        return tuple(self._windows)

    def _kernel_loss(self, seq: int, ts_ns: int) -> None:
        """Records were lost just before the one stamped `seq` at `ts_ns`: a window from the
        previous delivered record to it, by type from the kernel's per-type counters."""
        count = (seq - self._lost_seq) & 0xFFFFFFFF
        self._lost_seq = seq
        _sent, lost = self._read_counts()
        by_type = {k: v - self._kernel_lost_seen.get(k, 0) for k, v in lost.items()
                   if v - self._kernel_lost_seen.get(k, 0)}
        self._kernel_lost_seen = lost
        start = self.clock.ts(self._last_ts_ns) if self._last_ts_ns else self.clock.ts(ts_ns)
        self._windows.append(LossWindow(start, self.clock.ts(ts_ns), count, "kernel", by_type))
