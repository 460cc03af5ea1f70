"""Path operations submitted through io_uring (IORING_OP_OPENAT, OPENAT2, RENAMEAT, UNLINKAT,
MKDIRAT, SYMLINKAT, LINKAT, SETXATTR, FSETXATTR) enter no syscall tracepoint: before the ring's own tracepoints were traced, a
write-open or an unlink of a watched file made that way raised nothing. Each case here is a child
process that submits through a ring of its own (io_uring_setup and io_uring_enter through libc's
syscall(), no liburing), and the alert names its file, flags, mode and result, as the syscall's
would, with source.probe naming the ring's operation. A ring's write-open is named by the file it
opened, as the syscall's is: through a symlinked directory, and through a hard link of a watched
file (also under a name another rule watches). Real BPF, watched trees of the test's own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_events import monitor_until_marker, only_alert, python_child

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
  - id: watched-unlink
    title: unlink under the watched tree
    severity: high
    when: type == "unlink" and file.path startswith "{watched}/"
  - id: watched-rename
    title: rename into the watched tree
    severity: high
    when: type == "rename" and file.target startswith "{watched}/"
  - id: watched-xattr
    title: extended attribute set under the watched tree
    severity: high
    when: type == "setxattr" and file.path startswith "{watched}/"
  - id: secret-write
    title: the watched file written
    severity: high
    when: type == "write" and file.path == "{secret}" and outcome.result == "success"
"""

# A ring of one entry, driven through libc's syscall(): io_uring_setup (425) and io_uring_enter
# (426) have these numbers on every architecture. ring_op submits one request (the SQE's opcode,
# fd, addr, len, op flags, addr2 and addr3; a str is passed as a pointer to its bytes) and returns its
# result as the completion queue gives it (a descriptor, 0, or -errno).
RING = r'''
import ctypes, mmap, struct
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
OPENAT, OPENAT2, RENAMEAT, UNLINKAT, MKDIRAT, SYMLINKAT, LINKAT, FSETXATTR, SETXATTR = 18, 28, 35, 36, 37, 38, 39, 41, 42

def ring_op(op, fd, addr, length=0, op_flags=0, addr2=0, addr3=0):
    keep = []
    def ptr(v):
        if isinstance(v, str):
            keep.append(ctypes.create_string_buffer(v.encode()))
            return ctypes.addressof(keep[-1])
        return v
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    ring = _libc.syscall(425, ctypes.c_uint(1), params)
    if ring < 0:
        raise OSError(ctypes.get_errno(), "io_uring_setup")
    sq_entries, cq_entries = struct.unpack_from("<II", params, 0)
    sq_head, sq_tail, sq_mask, _, _, _, sq_array = struct.unpack_from("<7I", params, 40)
    cq_head, cq_tail, cq_mask, _, _, cqes = struct.unpack_from("<6I", params, 80)
    shared = mmap.MAP_SHARED | mmap.MAP_POPULATE
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    sq = mmap.mmap(ring, sq_array + 4 * sq_entries, shared, rw, offset=0)
    cq = mmap.mmap(ring, cqes + 16 * cq_entries, shared, rw, offset=0x8000000)
    sqes = mmap.mmap(ring, 64 * sq_entries, shared, rw, offset=0x10000000)
    tail = struct.unpack_from("<I", sq, sq_tail)[0]
    i = tail & struct.unpack_from("<I", sq, sq_mask)[0]
    sqe = struct.pack("<BBHiQQIIQHHiQ", op, 0, 0, fd, ptr(addr2), ptr(addr), length, op_flags, 0x5EC, 0, 0, 0,
                      ptr(addr3))
    sqes[64 * i:64 * i + 64] = sqe.ljust(64, bytes(1))
    struct.pack_into("<I", sq, sq_array + 4 * i, i)
    struct.pack_into("<I", sq, sq_tail, tail + 1)
    if _libc.syscall(426, ring, 1, 1, 1, None, 0) < 0:  # io_uring_enter(ring, 1, 1, IORING_ENTER_GETEVENTS)
        raise OSError(ctypes.get_errno(), "io_uring_enter")
    head = struct.unpack_from("<I", cq, cq_head)[0]
    user_data, res = struct.unpack_from("<Qi", cq, cqes + 16 * (head & struct.unpack_from("<I", cq, cq_mask)[0]))
    assert user_data == 0x5EC, user_data
    struct.pack_into("<I", cq, cq_head, head + 1)
    return res

def open_in_ring(op, dfd, path, flags, mode):
    if op == OPENAT:
        return ring_op(OPENAT, dfd, path, mode, flags)
    how = ctypes.create_string_buffer(struct.pack("<QQQ", flags, mode, 0))  # struct open_how
    return ring_op(OPENAT2, dfd, path, 24, 0, ctypes.addressof(how))
'''


def child(code: str) -> int:
    """Run RING and then `code` in a new Python process; its pid."""
    return python_child(RING + code)


class Run:
    def __init__(self, base: Path) -> None:
        self.watched = base / "watched"
        self.outside = base / "outside"
        self.secret = base / "secret"
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
    (w / "doomed").write_text("x")
    (w / "gone").mkdir()
    r.pids["unlink"] = child(f"assert ring_op(UNLINKAT, -100, {str(w / 'doomed')!r}) == 0")
    r.pids["rmdir"] = child(f"assert ring_op(UNLINKAT, -100, {str(w / 'gone')!r}, 0, 0x200) == 0")  # AT_REMOVEDIR
    r.pids["mkdir"] = child(f"assert ring_op(MKDIRAT, -100, {str(w / 'newdir')!r}, 0o755) == 0")
    # symlinkat(target, newdfd, new): fd = newdfd, addr = target, addr2 = new
    r.pids["symlink"] = child(f"assert ring_op(SYMLINKAT, -100, '/etc/hostname', 0, 0, {str(w / 'sl')!r}) == 0")
    # linkat(olddfd, old, newdfd, new, flags): fd = olddfd, addr = old, len = newdfd (AT_FDCWD), addr2 = new
    r.pids["link"] = child(f"assert ring_op(LINKAT, -100, {str(w / 'existing')!r}, 0xFFFFFF9C, 0, {str(w / 'hl')!r}) == 0")
    (w / "tagged").write_text("x")
    # setxattr(path, name, value, size, flags): addr = name, addr2 = value, len = size, addr3 = path
    r.pids["setxattr"] = child(f"assert ring_op(SETXATTR, 0, 'user.secpolicy', 1, 0, 'v', {str(w / 'tagged')!r}) == 0")
    (w / "tagged2").write_text("x")
    # fsetxattr(fd, name, value, size, flags): fd, addr = name, addr2 = value, len = size
    r.pids["fsetxattr"] = child(f"""
fd = os.open({str(w / 'tagged2')!r}, os.O_RDONLY)
assert ring_op(FSETXATTR, fd, 'user.secpolicy2', 1, 0, 'v') == 0
""")
    # named by the file opened: through a symlinked directory, through a hard link of the watched
    # file made outside, and through one made under the watched tree (another rule's prefix)
    (r.outside / "dirlink").symlink_to(w)
    r.pids["via-symlink"] = child(f"assert open_in_ring(18, -100, {str(r.outside / 'dirlink' / 'vialink')!r}, {W | C}, 0o600) >= 0")
    os.link(r.secret, r.outside / "alias")
    r.pids["via-hardlink"] = child(f"assert open_in_ring(18, -100, {str(r.outside / 'alias')!r}, {W | A}, 0) >= 0")
    os.link(r.secret, w / "alias")
    r.pids["via-watched-hardlink"] = child(f"assert open_in_ring(18, -100, {str(w / 'alias')!r}, {W | A}, 0) >= 0")
    (r.outside / "incoming").write_text("x")
    # renameat(olddfd, old, newdfd, new): fd = olddfd, addr = old, len = newdfd (AT_FDCWD), addr2 = new
    r.pids["rename"] = child(f"assert ring_op(RENAMEAT, -100, {str(r.outside / 'incoming')!r}, 0xFFFFFF9C, 0, "
                             f"{str(w / 'renamed')!r}) == 0")


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    base = Path(tempfile.mkdtemp(prefix="secpolicy-io-uring-"))
    r = Run(base)
    try:
        r.watched.mkdir()
        r.outside.mkdir()
        r.secret.write_text("s")
        policy = base / "policy.yaml"
        policy.write_text(POLICY.format(watched=r.watched, secret=r.secret))
        marker = str(r.watched / "marker")

        def started(mon: Any) -> None:
            attached = mon.source.kernel.attached
            assert "tracepoint:io_uring:io_uring_submit_req" in attached, attached

        # the marker is written last, through the ring too
        r.alerts, r.events = monitor_until_marker(
            policy, lambda: _workload(r), marker,
            lambda: child(f"assert open_in_ring(18, -100, {marker!r}, {W | C}, 0o600) >= 0"), started)
        yield r
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _one(r: Run, case: str) -> dict[str, Any]:
    return only_alert(r.alerts, r.events, r.pids[case], case)


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


def test_unlinks_and_directory_removals_through_a_ring_are_seen(run: Run) -> None:
    ev = _one(run, "unlink")["event"]
    assert ev["type"] == "unlink" and ev["file"] == {"path": str(run.watched / "doomed")}
    assert ev["source"]["probe"] == "tracepoint:io_uring:unlinkat"
    gone = _one(run, "rmdir")["event"]
    assert gone["file"] == {"path": str(run.watched / "gone"), "flags": ["AT_REMOVEDIR"]}


def test_mkdir_symlink_and_link_through_a_ring_are_writes_of_the_new_name(run: Run) -> None:
    made = _one(run, "mkdir")["event"]  # as a syscall mkdir is (test_live_probe)
    assert made["file"] == {"path": str(run.watched / "newdir"), "flags": ["O_RDONLY", "O_CREAT", "O_DIRECTORY"]}
    assert made["source"]["probe"] == "tracepoint:io_uring:mkdirat"
    for case, name in (("symlink", "sl"), ("link", "hl")):
        ev = _one(run, case)["event"]
        assert ev["file"] == {"path": str(run.watched / name), "flags": ["O_WRONLY", "O_CREAT"]}, case
        assert ev["source"]["probe"] == f"tracepoint:io_uring:{case}at"


def test_a_rename_into_the_watched_tree_through_a_ring_names_both_paths(run: Run) -> None:
    ev = _one(run, "rename")["event"]
    assert ev["type"] == "rename"
    assert ev["file"] == {"path": str(run.outside / "incoming"), "target": str(run.watched / "renamed")}
    assert ev["source"]["probe"] == "tracepoint:io_uring:renameat"


def test_extended_attributes_set_through_a_ring_name_the_file_and_the_attribute(run: Run) -> None:
    ev = _one(run, "setxattr")["event"]
    assert ev["type"] == "setxattr"
    assert ev["file"] == {"path": str(run.watched / "tagged"), "xattr": "user.secpolicy"}
    assert ev["source"]["probe"] == "tracepoint:io_uring:setxattr"
    # by a descriptor of the submitting process (whose own open of the file is a read: watched-read)
    (alert,) = [a for a in run.of("fsetxattr") if a["rule_id"] == "watched-xattr"]
    ev = alert["event"]
    assert ev["file"] == {"path": str(run.watched / "tagged2"), "xattr": "user.secpolicy2"}
    assert ev["source"]["probe"] == "tracepoint:io_uring:fsetxattr"



def test_a_write_open_through_a_ring_names_the_file_it_opened(run: Run) -> None:
    # through a symlinked directory into the watched tree
    a = _one(run, "via-symlink")
    assert a["rule_id"] == "watched-write"
    assert a["event"]["file"]["path"] == str(run.watched / "vialink")
    assert a["event"]["source"]["probe"] == "tracepoint:io_uring:openat"
    # through hard links of the watched file: made outside, and under the watched tree
    for case in ("via-hardlink", "via-watched-hardlink"):
        b = _one(run, case)
        assert b["rule_id"] == "secret-write", case
        assert b["event"]["file"]["path"] == str(run.secret), case
        assert "O_APPEND" in b["event"]["file"]["flags"], case
