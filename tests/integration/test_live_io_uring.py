"""Opens submitted through io_uring (IORING_OP_OPENAT, IORING_OP_OPENAT2) enter no syscall
tracepoint: before the ring's own tracepoints were traced, a write-open of a watched file made
that way raised nothing. Each case here is a child process that opens through a ring of its own
(io_uring_setup and io_uring_enter through libc's syscall(), no liburing), and the alert names
its file, flags, mode and result, with source.probe naming the ring's operation. Real BPF,
watched trees of the test's own."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

POLICY = """\
metadata: {{id: io-uring-opens, title: io_uring opens, version: "1.0.0"}}
rules:
  - id: watched-write
    title: write under the watched tree
    severity: high
    when: type == "write" and file.path startswith "{watched}/" and outcome.result == "success"
    message: "{{proc.exe}} wrote {{file.path}}"
  - id: watched-read
    title: read under the watched tree
    severity: low
    when: type == "open" and file.path startswith "{watched}/"
  - id: watched-failed-write
    title: write under the watched tree refused
    severity: medium
    when: type == "write" and file.path startswith "{watched}/" and outcome.result == "failure"
"""

# A ring of one entry, driven through libc's syscall(): io_uring_setup (425) and io_uring_enter
# (426) have these numbers on every architecture. open_in_ring(op, dfd, path, flags, mode) submits
# one IORING_OP_OPENAT (18) or IORING_OP_OPENAT2 (28) and returns its result (a descriptor or
# -errno), as the completion queue gives it.
RING = r'''
import ctypes, mmap, struct
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

def open_in_ring(op, dfd, path, flags, mode):
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = _libc.syscall(425, ctypes.c_uint(1), params)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "io_uring_setup")
    sq_entries, cq_entries = struct.unpack_from("<II", params, 0)
    sq_head, sq_tail, sq_mask, _, _, _, sq_array = struct.unpack_from("<7I", params, 40)
    cq_head, cq_tail, cq_mask, _, _, cqes = struct.unpack_from("<6I", params, 80)
    shared = mmap.MAP_SHARED | mmap.MAP_POPULATE
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    sq = mmap.mmap(fd, sq_array + 4 * sq_entries, shared, rw, offset=0)
    cq = mmap.mmap(fd, cqes + 16 * cq_entries, shared, rw, offset=0x8000000)
    sqes = mmap.mmap(fd, 64 * sq_entries, shared, rw, offset=0x10000000)
    name = ctypes.create_string_buffer(path.encode())
    how = ctypes.create_string_buffer(struct.pack("<QQQ", flags, mode, 0))  # struct open_how
    tail = struct.unpack_from("<I", sq, sq_tail)[0]
    mask = struct.unpack_from("<I", sq, sq_mask)[0]
    i = tail & mask
    if op == 18:
        sqe = struct.pack("<BBHiQQII", 18, 0, 0, dfd, 0, ctypes.addressof(name), mode, flags)
    else:
        sqe = struct.pack("<BBHiQQII", 28, 0, 0, dfd, ctypes.addressof(how), ctypes.addressof(name), 24, 0)
    sqes[64 * i:64 * i + 64] = (sqe + struct.pack("<Q", 0x5EC) ).ljust(64, b"\0")
    struct.pack_into("<I", sq, sq_array + 4 * i, i)
    struct.pack_into("<I", sq, sq_tail, tail + 1)
    if _libc.syscall(426, fd, 1, 1, 1, None, 0) < 0:  # io_uring_enter(fd, 1, 1, IORING_ENTER_GETEVENTS)
        raise OSError(ctypes.get_errno(), "io_uring_enter")
    head = struct.unpack_from("<I", cq, cq_head)[0]
    cmask = struct.unpack_from("<I", cq, cq_mask)[0]
    user_data, res = struct.unpack_from("<Qi", cq, cqes + 16 * (head & cmask))
    assert user_data == 0x5EC, user_data
    struct.pack_into("<I", cq, cq_head, head + 1)
    return res
'''


def child(code: str) -> int:
    """Run RING and then `code` in a new Python process; its pid."""
    argv = [sys.executable, "-I", "-c", "import os\nprint(os.getpid(), flush=True)\n" + RING + code]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[0])


class Run:
    def __init__(self, base: Path) -> None:
        self.watched = base / "watched"
        self.outside = base / "outside"
        self.pids: dict[str, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def of(self, case: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["event"]["proc"]["pid"] == self.pids[case]]


W, C, T, A = os.O_WRONLY, os.O_CREAT, os.O_TRUNC, os.O_APPEND


def _workload(r: Run) -> None:
    w = r.watched
    (w / "existing").write_text("x")
    r.pids["absolute"] = child(f"assert open_in_ring(18, -100, {str(w / 'abs')!r}, {W | C | T}, 0o600) >= 0")
    r.pids["relative"] = child(f"""
d = os.open({str(w)!r}, os.O_RDONLY | os.O_DIRECTORY)
assert open_in_ring(18, d, "rel", {W | C | A}, 0o644) >= 0
""")
    r.pids["openat2"] = child(f"assert open_in_ring(28, -100, {str(w / 'two')!r}, {W | C}, 0o640) >= 0")
    r.pids["read"] = child(f"assert open_in_ring(18, -100, {str(w / 'existing')!r}, {os.O_RDONLY}, 0) >= 0")
    r.pids["refused"] = child(f"assert open_in_ring(18, -100, {str(w / 'no-such-dir' / 'f')!r}, {W | C}, 0o600) == -2")
    r.pids["outside"] = child(f"assert open_in_ring(18, -100, {str(r.outside / 'f')!r}, {W | C}, 0o600) >= 0")


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    from secpolicy.cli.core import load
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine

    base = Path(tempfile.mkdtemp(prefix="secpolicy-io-uring-"))
    r = Run(base)
    try:
        r.watched.mkdir()
        r.outside.mkdir()
        policy = base / "policy.yaml"
        policy.write_text(POLICY.format(watched=r.watched))
        rules = list(load([str(policy)]).event_rules)
        mon = Monitor(rules, EventEngine(rules))
        mon.start()
        attached = mon.source.kernel.attached  # type: ignore[attr-defined]
        assert "tracepoint:io_uring:io_uring_submit_req" in attached, attached
        out = io.StringIO()
        error: list[BaseException] = []
        marker = str(r.watched / "marker")
        seen_marker = threading.Event()

        def work() -> None:
            try:
                _workload(r)
                # Written last, through the ring too: once its alert is out, every earlier
                # open has been decoded.
                child(f"assert open_in_ring(18, -100, {marker!r}, {W | C}, 0o600) >= 0")
                seen_marker.wait(60)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                error.append(exc)
            finally:
                mon.stop()

        def on_alert(a: dict[str, Any]) -> None:
            if a["event"]["file"]["path"] == marker:
                seen_marker.set()

        t = threading.Thread(target=work)
        t.start()
        mon.run(out, on_alert=on_alert, on_event=r.events.append)
        t.join()
        if error:
            raise error[0]
        r.alerts = [json.loads(line) for line in out.getvalue().splitlines()]
        assert seen_marker.is_set(), r.alerts
        yield r
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _one(r: Run, case: str) -> dict[str, Any]:
    mine = r.of(case)
    assert len(mine) == 1, (case, mine, [e for e in r.events if e["proc"]["pid"] == r.pids[case]])
    return mine[0]


def test_a_write_open_through_a_ring_names_the_file_flags_mode_and_operation(run: Run) -> None:
    a = _one(run, "absolute")
    assert a["rule_id"] == "watched-write"
    ev = a["event"]
    assert ev["file"] == {"path": str(run.watched / "abs"), "flags": ["O_WRONLY", "O_CREAT", "O_TRUNC"], "mode": 0o600}
    assert ev["outcome"] == {"result": "success"}
    assert ev["source"] == {"name": "ebpf", "probe": "tracepoint:io_uring:openat"}
    assert a["message"].endswith(f" wrote {run.watched / 'abs'}")


def test_a_path_relative_to_a_directory_descriptor_is_made_absolute(run: Run) -> None:
    ev = _one(run, "relative")["event"]
    assert ev["file"]["path"] == str(run.watched / "rel")
    assert "O_APPEND" in ev["file"]["flags"]


def test_openat2_through_a_ring_is_seen_with_its_open_how(run: Run) -> None:
    ev = _one(run, "openat2")["event"]
    assert ev["file"] == {"path": str(run.watched / "two"), "flags": ["O_WRONLY", "O_CREAT"], "mode": 0o640}
    assert ev["source"]["probe"] == "tracepoint:io_uring:openat2"


def test_a_read_is_an_open_and_a_refused_write_carries_its_errno(run: Run) -> None:
    read = _one(run, "read")
    assert read["rule_id"] == "watched-read" and read["event"]["type"] == "open"
    refused = _one(run, "refused")
    assert refused["rule_id"] == "watched-failed-write"
    assert refused["event"]["outcome"] == {"result": "failure", "errno": 2}
    assert refused["event"]["file"]["path"] == str(run.watched / "no-such-dir" / "f")


def test_a_write_open_outside_the_watched_tree_raises_nothing(run: Run) -> None:
    assert run.of("outside") == []
