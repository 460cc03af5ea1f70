"""Small real BPF objects for live tests, made through bpf(2) with ctypes: maps and socket
filters whose ids, names and helper calls the inventory facts and bpftool must both report."""

from __future__ import annotations

import ctypes

import pytest

from secpolicy.facts.bpf_inventory import bpf_syscall

__all__ = [
    "BPF_F_NO_PREALLOC",
    "BPF_MAP_CREATE",
    "BPF_MAP_FREEZE",
    "BPF_PROG_LOAD",
    "MapCreate",
    "MapFd",
    "bpf_syscall",
    "insn",
    "load_socket_filter",
    "object_id",
]

BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_MAP_FREEZE = 0, 5, 22
BPF_F_NO_PREALLOC = 1


class MapCreate(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
    ]


class _ProgLoad(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


class MapFd(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32)]


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction, encoded."""
    return (
        bytes([code, (src << 4) | dst])
        + off.to_bytes(2, "little", signed=True)
        + imm.to_bytes(4, "little", signed=True)
    )


def load_socket_filter(prog: bytes, name: bytes) -> int:
    """BPF_PROG_LOAD of a socket filter; a refusal fails the test with the verifier's log."""
    buf = ctypes.create_string_buffer(prog, len(prog))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = _ProgLoad(
        prog_type=1,  # socket_filter
        insn_cnt=len(prog) // 8,
        insns=ctypes.addressof(buf),
        license=ctypes.addressof(lic),
        log_level=1,
        log_size=len(log),
        log_buf=ctypes.addressof(log),
        prog_name=name,
    )
    try:
        return bpf_syscall(BPF_PROG_LOAD, attr)
    except OSError as e:
        pytest.fail(f"BPF_PROG_LOAD refused: {e}; verifier log: {log.value.decode(errors='replace')[-400:]}")


def object_id(fd: int) -> int:
    """The kernel id of the BPF program or map behind `fd` (BPF_OBJ_GET_INFO_BY_FD): a test's
    own object, whatever other objects of the same name exist or are still being freed."""
    info = ctypes.create_string_buffer(256)

    class _InfoAttr(ctypes.Structure):
        _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]

    bpf_syscall(15, _InfoAttr(bpf_fd=fd, info_len=len(info), info=ctypes.addressof(info)))
    # struct bpf_prog_info has the id after `type`; struct bpf_map_info too.
    return int.from_bytes(info.raw[4:8], "little")
