"""The few bpf(2) commands the live monitor issues itself (include/uapi/linux/bpf.h): create a
map (with a minimal BTF where the map type demands one), load a program, update, look up and
delete map elements. bcc compiles; loading compiled programs again needs only this."""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from functools import cache

from secpolicy.errors import RuntimeFailure

__all__ = [
    "MAP_TYPE_TASK_STORAGE",
    "PROG_TYPE_KPROBE",
    "PROG_TYPE_TRACEPOINT",
    "delete",
    "load_program",
    "lookup",
    "lookup_percpu",
    "make_map",
    "possible_cpus",
    "update",
]

_SYSCALL_NR = {"x86_64": 321, "aarch64": 280}
_MAP_CREATE, _MAP_LOOKUP_ELEM, _MAP_UPDATE_ELEM, _MAP_DELETE_ELEM, _PROG_LOAD, _BTF_LOAD = 0, 1, 2, 3, 5, 18
PROG_TYPE_KPROBE, PROG_TYPE_TRACEPOINT = 2, 5
MAP_TYPE_TASK_STORAGE = 29
_F_NO_PREALLOC = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise RuntimeFailure(f"bpf(2) syscall number unknown for {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def _attr(size: int = 128) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(size)


def _storage_btf(value_size: int) -> int:
    """A BTF with the two types a local-storage map declares: key `int`, value a struct of
    value_size bytes (its members do not matter to the kernel: none is a lock or timer)."""
    strings = b"\0int\0sp_value\0"
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)  # [1] INT "int", signed, 32 bits
    types += struct.pack("<III", 5, 4 << 24, value_size)  # [2] STRUCT "sp_value", no members
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    blob = ctypes.create_string_buffer(header + types + strings)
    attr = _attr()
    struct.pack_into("<Q", attr, 0, ctypes.addressof(blob))
    struct.pack_into("<I", attr, 16, len(blob) - 1)
    return _bpf(_BTF_LOAD, attr)


def make_map(map_type: int, name: str, key_size: int, value_size: int, max_entries: int, flags: int) -> int:
    """A new map's fd (closed by the caller)."""
    attr = _attr()
    btf_fd = -1
    if map_type == MAP_TYPE_TASK_STORAGE:
        btf_fd = _storage_btf(value_size)
        flags |= _F_NO_PREALLOC
    try:
        struct.pack_into("<IIIIIII16s", attr, 0, map_type, key_size, value_size, max_entries, flags, 0, 0,
                         name.encode()[:15])
        if btf_fd >= 0:
            struct.pack_into("<IIII", attr, 44, 0, btf_fd, 1, 2)  # map_ifindex, btf_fd, key id, value id
        return _bpf(_MAP_CREATE, attr)
    finally:
        if btf_fd >= 0:
            os.close(btf_fd)


def load_program(prog_type: int, name: str, insns: bytes, license: str = "GPL") -> int:
    """A loaded program's fd; a refusal raises RuntimeFailure with the end of the verifier log."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _attr()
    struct.pack_into("<IIQQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code), ctypes.addressof(lic))
    struct.pack_into("<16s", attr, 48, name.encode()[:15])
    try:
        return _bpf(_PROG_LOAD, attr)
    except OSError as first:
        log = ctypes.create_string_buffer(1 << 22)
        struct.pack_into("<IIQ", attr, 24, 1, len(log), ctypes.addressof(log))
        try:
            return _bpf(_PROG_LOAD, attr)
        except OSError:
            tail = " | ".join(log.value.decode("utf-8", "replace").strip().splitlines()[-3:])
            raise RuntimeFailure(f"the kernel refused BPF program {name}: {first.strerror}: {tail}") from None


def update(map_fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    attr = _attr()
    struct.pack_into("<IIQQQ", attr, 0, map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    _bpf(_MAP_UPDATE_ELEM, attr)


def delete(map_fd: int, key: bytes) -> None:
    """Remove a key; one that is not there is no error."""
    k = ctypes.create_string_buffer(key, len(key))
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, map_fd, 0, ctypes.addressof(k))
    try:
        _bpf(_MAP_DELETE_ELEM, attr)
    except FileNotFoundError:
        pass


def lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    attr = _attr()
    struct.pack_into("<IIQQ", attr, 0, map_fd, 0, ctypes.addressof(k), ctypes.addressof(v))
    try:
        _bpf(_MAP_LOOKUP_ELEM, attr)
    except FileNotFoundError:
        return None
    return v.raw


@cache
def possible_cpus() -> int:
    """CPUs a per-CPU map holds a value for (/sys/devices/system/cpu/possible, e.g. 0-1)."""
    text = open("/sys/devices/system/cpu/possible", encoding="ascii").read().strip()  # noqa: SIM115
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def lookup_percpu(map_fd: int, key: bytes, value_size: int) -> list[bytes]:
    """The value of each CPU (each rounded up to 8 bytes in the kernel's copy)."""
    step = (value_size + 7) & ~7
    raw = lookup(map_fd, key, step * possible_cpus())
    if raw is None:
        return []
    return [raw[i * step : i * step + value_size] for i in range(possible_cpus())]


_ENABLE_STATS, _OBJ_GET_INFO_BY_FD = 32, 15


def enable_run_time_stats() -> int:
    """An fd that keeps the kernel counting run time per program while it is open (BPF_ENABLE_STATS:
    reference counted, unlike the kernel.bpf_stats_enabled sysctl others may rely on)."""
    attr = _attr()
    struct.pack_into("<I", attr, 0, 0)  # BPF_STATS_RUN_TIME
    return _bpf(_ENABLE_STATS, attr)


def run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a loaded program (struct bpf_prog_info)."""
    info = ctypes.create_string_buffer(256)
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, prog_fd, len(info), ctypes.addressof(info))
    _bpf(_OBJ_GET_INFO_BY_FD, attr)
    # struct bpf_prog_info: run_time_ns at offset 192, run_cnt at 200 (linux/bpf.h since 5.1)
    run_time_ns, run_cnt = struct.unpack_from("<QQ", info, 192)
    return run_time_ns, run_cnt
