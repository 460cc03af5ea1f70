"""The BPF inventory against bpftool: with a socket filter and a hash map loaded by this test
(through bpf(2) directly), bpf_programs/bpf_maps list the same objects as `bpftool -j`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from bpf_objects import (
    BPF_MAP_CREATE,
    BPF_MAP_FREEZE,
    MapCreate,
    MapFd,
    bpf_syscall,
    insn,
    load_socket_filter,
)

from secpolicy.errors import NotApplicable
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

BPFTOOL = shutil.which("bpftool") or (
    "/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None
)
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="loading eBPF programs and listing them needs root"
    ),
]

def _load(map_fd: int) -> int:
    prog = b"".join(
        [
            insn(0x62, dst=10, off=-4, imm=0),  # *(u32 *)(r10 - 4) = 0
            insn(0xBF, dst=2, src=10),  # r2 = r10
            insn(0x07, dst=2, imm=-4),  # r2 += -4
            insn(0x18, dst=1, src=1, imm=map_fd),  # r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
            insn(0x00),
            insn(0x85, imm=1),  # call bpf_map_lookup_elem
            insn(0x85, imm=7),  # call bpf_get_prandom_u32
            insn(0xB7, dst=0, imm=0),  # r0 = 0
            insn(0x95),  # exit
        ]
    )
    return load_socket_filter(prog, b"secpol_probe")


@pytest.fixture(scope="module")
def loaded():
    hash_fd = bpf_syscall(
        BPF_MAP_CREATE,
        MapCreate(map_type=1, key_size=4, value_size=8, max_entries=16, map_name=b"secpol_hash"),
    )
    frozen_fd = bpf_syscall(
        BPF_MAP_CREATE,
        MapCreate(map_type=2, key_size=4, value_size=4, max_entries=1, map_name=b"secpol_frozen"),
    )
    bpf_syscall(BPF_MAP_FREEZE, MapFd(map_fd=frozen_fd))
    prog_fd = _load(hash_fd)
    try:
        yield
    finally:
        for fd in (prog_fd, hash_fd, frozen_fd):
            os.close(fd)


def _bpftool(*args: str) -> list[dict]:
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed (Debian package bpftool): no cross-check possible")
    out = subprocess.run(
        [BPFTOOL, "-j", *args], capture_output=True, text=True, check=True, timeout=30
    )
    return json.loads(out.stdout or "[]")


def _bracketed(kind: str, fact: str) -> tuple[dict, dict]:
    """bpftool's view just before and just after ours: other tests may load or unload
    programs meanwhile, so ours must hold every id in both and no id in neither."""
    before = {o["id"]: o for o in _bpftool(kind, "show")}
    mine = {o.id: o for o in FactContext(builtin_registry(), "/").fact(fact, ())}
    after = {o["id"]: o for o in _bpftool(kind, "show")}
    stable = {i: o for i, o in before.items() if i in after}
    assert set(stable) <= set(mine) <= set(before) | set(after)
    assert mine and stable
    return mine, stable


def test_programs_equal_bpftool(loaded: None) -> None:
    mine, theirs = _bracketed("prog", "bpf_programs")
    for pid, t in theirs.items():
        m = mine[pid]
        assert (m.type, m.name, m.tag, m.uid) == (
            t["type"],
            t.get("name", ""),
            t["tag"],
            t["uid"],
        ), pid
        assert list(m.map_ids) == t.get("map_ids", []), pid
        # bpftool truncates to the second; the two boot-clock offsets differ by microseconds
        assert t["loaded_at"] - 1 <= m.loaded_at <= t["loaded_at"], pid
        assert m.bytes_xlated == t["bytes_xlated"] and m.jited == bool(
            t.get("jited", t.get("bytes_jited", 0))
        ), pid
    probe = next(p for p in mine.values() if p.name == "secpol_probe")
    assert probe.type == "socket_filter" and len(probe.map_ids) == 1
    assert probe.helpers == ("bpf_map_lookup_elem", "bpf_get_prandom_u32")
    assert abs(probe.loaded_at - time.time()) < 600


def test_maps_equal_bpftool(loaded: None) -> None:
    mine, theirs = _bracketed("map", "bpf_maps")
    for mid, t in theirs.items():
        m = mine[mid]
        assert (m.type, m.name, m.max_entries, m.flags) == (
            t["type"],
            t.get("name", ""),
            t["max_entries"],
            t["flags"],
        ), mid
        assert m.frozen == bool(t.get("frozen", 0)), mid
        assert (m.key_size, m.value_size) == (t["bytes_key"], t["bytes_value"]), mid
    by_name = {m.name: m for m in mine.values()}
    assert (by_name["secpol_hash"].type, by_name["secpol_hash"].frozen) == ("hash", False)
    assert (by_name["secpol_frozen"].type, by_name["secpol_frozen"].frozen) == ("array", True)


def test_not_applicable_under_root(tmp_path) -> None:
    ctx = FactContext(builtin_registry(), str(tmp_path))
    with pytest.raises(NotApplicable):
        ctx.fact("bpf_programs", ())


def test_btf_full_names_and_helpers_of_a_bcc_program() -> None:
    """Names are cut to 15 bytes in the kernel; like bpftool, the fact names a program with
    BTF by its function (bcc programs carry BTF)."""
    import sys

    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from bcc import BPF  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("bcc is not installed (Debian package python3-bpfcc)")
    try:
        b = BPF(
            text="BPF_HASH(secpol_counts, u32, u64, 8);\n"
            "TRACEPOINT_PROBE(sched, sched_process_exec) {\n"
            '  u32 k = 0; u64 *v = secpol_counts.lookup(&k); if (v) { bpf_trace_printk("exec\\n"); }\n'
            "  return 0; }\n"
        )
    except Exception as e:  # noqa: BLE001 - bcc raises plain Exceptions for compile/load failures
        pytest.skip(f"bcc cannot compile or load here: {e}")
    try:
        mine, theirs = _bracketed("prog", "bpf_programs")
        ours = [p for p in mine.values() if p.name == "tracepoint__sched__sched_process_exec"]
        assert ours, [p.name for p in mine.values()]
        probe = ours[-1]
        assert theirs[probe.id]["name"] == probe.name
        assert set(probe.helpers) == {"bpf_map_lookup_elem", "bpf_trace_printk"}
        assert len(probe.map_ids) == 1
    finally:
        b.cleanup()
