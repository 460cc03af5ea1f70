"""`bpf_programs` and `bpf_maps`: every eBPF program and map loaded in the kernel, read with the
bpf(2) syscall through ctypes (the same walk bpftool does), live host only."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import platform
import re
import struct
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from secpolicy import kernel_names as bpf_names
from secpolicy.dsl.types import BOOL, INT, STR, ListType, ObjectType
from secpolicy.errors import EvaluationError

if TYPE_CHECKING:
    from secpolicy.facts.base import FactRegistry

__all__ = [
    "BPF_MAP",
    "BPF_PROG",
    "BpfMap",
    "BpfProgram",
    "bpf_syscall",
    "list_maps",
    "list_programs",
    "register",
]

BPF_PROG = ObjectType(
    "bpf_prog",
    {
        "id": INT,
        "type": STR,
        "name": STR,
        "tag": STR,
        "loaded_at": INT,
        "uid": INT,
        "map_ids": ListType(INT),
        "helpers": ListType(STR),
        "jited": BOOL,
        "btf_id": INT,
        "bytes_xlated": INT,
        "bytes_jited": INT,
        "gpl_compatible": BOOL,
    },
    doc="a loaded eBPF program (bpf(2) BPF_OBJ_GET_INFO_BY_FD)",
    field_docs={
        "type": "program type as bpftool names it (socket_filter, tracepoint, kprobe, xdp, ...)",
        "tag": "hex of the program's 8-byte tag (a hash of its instructions)",
        "loaded_at": "load time, seconds since the epoch",
        "helpers": "helper functions it calls (bpf_map_lookup_elem, ...), from its translated instructions",
    },
)

BPF_MAP = ObjectType(
    "bpf_map",
    {
        "id": INT,
        "type": STR,
        "name": STR,
        "max_entries": INT,
        "flags": INT,
        "frozen": BOOL,
        "key_size": INT,
        "value_size": INT,
    },
    doc="a loaded eBPF map",
)

# bpf(2) commands
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15

_SYSCALL_NR = {
    "x86_64": 321,
    "aarch64": 280,
    "i686": 357,
    "i386": 357,
    "armv7l": 386,
    "ppc64le": 361,
    "s390x": 351,
}
BPF_OBJ_NAME_LEN = 16


class _GetId(ctypes.Structure):
    _fields_ = [
        ("start_id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    ]


class _InfoByFd(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class _ProgInfo(ctypes.Structure):
    # struct bpf_prog_info of linux/bpf.h; the kernel fills the prefix it knows
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _BtfInfo(ctypes.Structure):
    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("name", ctypes.c_uint64),
        ("name_len", ctypes.c_uint32),
        ("kernel_btf", ctypes.c_uint32),
    ]


class _FuncInfo(ctypes.Structure):
    _fields_ = [("insn_off", ctypes.c_uint32), ("type_id", ctypes.c_uint32)]


BPF_BTF_GET_FD_BY_ID = 19
# bytes after each struct btf_type, by kind (linux/btf.h); a callable takes vlen
_BTF_TRAILER = {1: 4, 3: 12, 4: 12, 5: 12, 6: 8, 13: 8, 14: 4, 15: 12, 17: 4, 19: 12}
_BTF_PER_MEMBER = {4, 5, 6, 13, 15, 19}


def _btf_type_name(blob: bytes, type_id: int) -> str | None:
    """Name of type `type_id` in a raw BTF blob (standalone BTF, as programs carry)."""
    if len(blob) < 24 or int.from_bytes(blob[0:2], "little") != 0xEB9F:
        return None
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", blob, 4)
    types = blob[hdr_len + type_off : hdr_len + type_off + type_len]
    strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
    off, tid = 0, 1
    while off + 12 <= len(types):
        name_off, info, _ = struct.unpack_from("<III", types, off)
        if tid == type_id:
            end = strings.find(b"\0", name_off)
            return strings[name_off:end].decode("utf-8", "replace") if end > name_off else None
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        size = _BTF_TRAILER.get(kind, 0)
        off += 12 + (size * vlen if kind in _BTF_PER_MEMBER else size)
        tid += 1
    return None


def _full_name(fd: int, info: _ProgInfo) -> str | None:
    """bpftool's full program name: names are cut at 15 bytes, so a program with BTF is named
    by its first function's BTF name instead."""
    if not info.btf_id or not info.nr_func_info:
        return None
    try:
        fi = _FuncInfo()
        again = _ProgInfo(
            nr_func_info=1, func_info_rec_size=ctypes.sizeof(fi), func_info=ctypes.addressof(fi)
        )
        _info(fd, again)
        btf_fd = bpf_syscall(BPF_BTF_GET_FD_BY_ID, _GetId(start_id=info.btf_id))
        try:
            binfo = _BtfInfo()
            _info(btf_fd, binfo)
            buf = ctypes.create_string_buffer(binfo.btf_size)
            binfo2 = _BtfInfo(btf=ctypes.addressof(buf), btf_size=binfo.btf_size)
            _info(btf_fd, binfo2)
        finally:
            os.close(btf_fd)
    except OSError:
        return None
    return _btf_type_name(buf.raw, fi.type_id)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def bpf_syscall(cmd: int, attr: ctypes.Structure) -> int:
    """bpf(cmd, &attr, sizeof attr); raises OSError with errno on failure."""
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise EvaluationError(
            f"bpf inventory: no bpf(2) syscall number known for {platform.machine()}"
        )
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(
        ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def _ids(cmd: int) -> list[int]:
    out: list[int] = []
    attr = _GetId()
    while True:
        attr.next_id = 0
        try:
            bpf_syscall(cmd, attr)
        except OSError as e:
            if e.errno == 2:  # ENOENT: no more objects
                return out
            raise
        out.append(attr.next_id)
        attr.start_id = attr.next_id


def _fd_by_id(cmd: int, ident: int) -> int | None:
    attr = _GetId(start_id=ident)
    try:
        return bpf_syscall(cmd, attr)
    except OSError as e:
        if e.errno == 2:  # unloaded between the id walk and now
            return None
        raise


def _info(fd: int, info: ctypes.Structure) -> None:
    attr = _InfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf_syscall(BPF_OBJ_GET_INFO_BY_FD, attr)


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _type_name(table: tuple[str, ...], n: int) -> str:
    return table[n] if 0 <= n < len(table) else str(n)


# --- helper names --------------------------------------------------------------------------------
_FN = re.compile(r"FN\((\w+)(?:\s*,\s*(\d+))?")


def _header_helpers(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    start = text.find("#define ___BPF_FUNC_MAPPER(")
    if start < 0:
        start = text.find("#define __BPF_FUNC_MAPPER(")
    if start < 0:
        return []
    end = text.find("\n\n", start)
    names: dict[int, str] = {}
    for i, (name, num) in enumerate(
        m.groups() for m in _FN.finditer(text[start:end]) if m.group(1) != "FN"
    ):
        names[int(num) if num else i] = name
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


@lru_cache(maxsize=1)
def helper_names() -> tuple[str, ...]:
    """enum bpf_func_id names: from the newest installed linux/bpf.h, else the built-in table."""
    best = list(bpf_names.HELPERS)
    candidates = [
        "/usr/include/linux/bpf.h",
        f"/lib/modules/{os.uname().release}/build/include/uapi/linux/bpf.h",
    ]
    candidates += sorted(glob.glob("/usr/src/linux-headers-*/include/uapi/linux/bpf.h"))
    for path in candidates:
        names = _header_helpers(path)
        if len(names) > len(best):
            best = names
    return tuple(best)


@dataclass(frozen=True)
class _Kallsyms:
    call_base: int | None
    by_addr: dict[int, str]


@lru_cache(maxsize=1)
def _kallsyms() -> _Kallsyms:
    """Kernel symbols of helper implementations: a translated BPF_CALL's imm is the helper's
    address relative to __bpf_call_base, as bpftool resolves it."""
    base = None
    by_addr: dict[int, str] = {}
    try:
        with open("/proc/kallsyms", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                name = parts[2]
                if name == "__bpf_call_base":
                    base = int(parts[0], 16)
                elif parts[1] in "tTwW":
                    by_addr.setdefault(int(parts[0], 16), name)
    except OSError:
        pass
    if base == 0:  # addresses hidden (kptr_restrict or no privilege)
        base = None
    return _Kallsyms(base, by_addr)


# Kernel functions called in place of a helper whose names are not the helper's plus a suffix:
# the verifier's substitutes (do_misc_fixups), and the kernel's bpf_probe_read(_str) protos
# (kernel/trace/bpf_trace.c), whose functions are bpf_probe_read_compat(_str).
_ALIASES = {
    "bpf_user_rnd_u32": "bpf_get_prandom_u32",
    "bpf_get_raw_cpu_id": "bpf_get_smp_processor_id",
    "bpf_probe_read_compat": "bpf_probe_read",
    "bpf_probe_read_compat_str": "bpf_probe_read_str",
}
_MAP_OP = re.compile(
    r"_map_(lookup_elem|update_elem|delete_elem|push_elem|pop_elem|peek_elem|lookup_percpu_elem|redirect)$"
)


def _helper_from_symbol(symbol: str, names: frozenset[str]) -> str:
    """The helper a kernel function implements: `bpf_ktime_get_ns` -> itself,
    `bpf_perf_event_output_tp` -> bpf_perf_event_output, `htab_map_lookup_elem` (a map's own
    lookup, called directly after verification) -> bpf_map_lookup_elem."""
    if symbol in _ALIASES:
        return _ALIASES[symbol]
    m = _MAP_OP.search(symbol)
    if m and not symbol.startswith("bpf_map_"):
        op = m.group(1)
        return "bpf_redirect_map" if op == "redirect" else f"bpf_map_{op}"
    if symbol.startswith("bpf_"):
        stem = symbol[4:]
        for suffix in (
            "",
            "_tp",
            "_raw_tp",
            "_proto",
            "_pe",
            "_sock",
            "_sk",
            "_xdp",
            "_tracing",
            "_btf",
            "_kprobe",
            "_kprobe_multi",
            "_uprobe_multi",
            "_trace",
            "_curr",
            "_sleepable",
        ):
            if suffix and not stem.endswith(suffix):
                continue
            base = stem[: -len(suffix)] if suffix else stem
            if base in names:
                return "bpf_" + base
    return symbol


def _helpers(insns: bytes) -> tuple[str, ...] | None:
    ks = _kallsyms()
    names = frozenset(helper_names())
    out: dict[str, None] = {}
    for off in range(0, len(insns) - 7, 8):
        code = insns[off]
        regs = insns[off + 1]
        if code != 0x85 or (regs >> 4) != 0:  # BPF_JMP|BPF_CALL to a helper (src_reg 0)
            continue
        imm = int.from_bytes(insns[off + 4 : off + 8], "little", signed=True)
        if ks.call_base is None:
            return None
        sym = ks.by_addr.get(ks.call_base + imm)
        out[_helper_from_symbol(sym, names) if sym else f"helper@{imm:#x}"] = None
    return tuple(out)


# --- objects -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BpfProgram:
    id: int
    type: str
    name: str
    tag: str
    loaded_at: int
    uid: int
    map_ids: tuple[int, ...]
    helpers: tuple[str, ...] | None
    jited: bool
    btf_id: int
    bytes_xlated: int
    bytes_jited: int
    gpl_compatible: bool

    def describe(self) -> str:
        return f"bpf program {self.id} {self.type} {self.name!r}"

    def where(self, name: str, *args: Any) -> str | None:
        return f"bpf(BPF_OBJ_GET_INFO_BY_FD) prog id {self.id}"


@dataclass(frozen=True)
class BpfMap:
    id: int
    type: str
    name: str
    max_entries: int
    flags: int
    frozen: bool | None
    key_size: int
    value_size: int

    def describe(self) -> str:
        return f"bpf map {self.id} {self.type} {self.name!r}"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "frozen":
            return f"/proc/self/fdinfo of map id {self.id}"
        return f"bpf(BPF_OBJ_GET_INFO_BY_FD) map id {self.id}"


def _boot_offset() -> int:
    """Nanoseconds to add to a CLOCK_BOOTTIME reading to get wall-clock time."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _program(fd: int, offset: int) -> BpfProgram:
    info = _ProgInfo()
    _info(fd, info)
    n_maps, xlated_len = info.nr_map_ids, info.xlated_prog_len
    map_ids: tuple[int, ...] = ()
    insns = b""
    if n_maps or xlated_len:
        # second call with buffers sized from the first (the kernel's info_len handshake)
        again = _ProgInfo()
        maps_buf = (ctypes.c_uint32 * max(n_maps, 1))()
        insn_buf = ctypes.create_string_buffer(max(xlated_len, 1))
        again.nr_map_ids = n_maps
        again.map_ids = ctypes.addressof(maps_buf)
        again.xlated_prog_len = xlated_len
        again.xlated_prog_insns = ctypes.addressof(insn_buf) if xlated_len else 0
        _info(fd, again)
        map_ids = tuple(maps_buf[i] for i in range(min(n_maps, again.nr_map_ids)))
        insns = insn_buf.raw[: min(xlated_len, again.xlated_prog_len)]
    name = _name(bytes(info.name))
    if len(name.encode()) == BPF_OBJ_NAME_LEN - 1:
        name = _full_name(fd, info) or name
    return BpfProgram(
        id=info.id,
        type=_type_name(bpf_names.PROG_TYPES, info.type),
        name=name,
        tag=bytes(info.tag).hex(),
        loaded_at=(info.load_time + offset) // 1_000_000_000,  # whole seconds, as bpftool prints them
        uid=info.created_by_uid,
        map_ids=map_ids,
        helpers=_helpers(insns) if insns else (),
        jited=info.jited_prog_len > 0,
        btf_id=info.btf_id,
        bytes_xlated=info.xlated_prog_len,
        bytes_jited=info.jited_prog_len,
        gpl_compatible=bool(info.gpl_compatible & 1),
    )


def _frozen(fd: int) -> bool | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("frozen:"):
                    return line.split(":", 1)[1].strip() == "1"
    except OSError:
        return None
    return False


def _map(fd: int) -> BpfMap:
    info = _MapInfo()
    _info(fd, info)
    return BpfMap(
        id=info.id,
        type=_type_name(bpf_names.MAP_TYPES, info.type),
        name=_name(bytes(info.name)),
        max_entries=info.max_entries,
        flags=info.map_flags,
        frozen=_frozen(fd),
        key_size=info.key_size,
        value_size=info.value_size,
    )


def _walk(next_cmd: int, fd_cmd: int, read: Any) -> list[Any]:
    out = []
    for ident in _ids(next_cmd):
        fd = _fd_by_id(fd_cmd, ident)
        if fd is None:
            continue
        try:
            out.append(read(fd))
        finally:
            os.close(fd)
    return out


def _failure(what: str, e: OSError) -> EvaluationError:
    if e.errno in (1, 13):  # EPERM, EACCES
        return EvaluationError(
            f"{what}: permission denied by the kernel (needs root / CAP_SYS_ADMIN)"
        )
    if e.errno == 38:  # ENOSYS
        return EvaluationError(f"{what}: this kernel has no bpf(2) syscall")
    return EvaluationError(f"{what}: bpf(2) failed: {e.strerror}")


def list_programs() -> list[BpfProgram]:
    offset = _boot_offset()
    try:
        return _walk(BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID, lambda fd: _program(fd, offset))
    except OSError as e:
        raise _failure("bpf_programs", e) from None


def list_maps() -> list[BpfMap]:
    try:
        return _walk(BPF_MAP_GET_NEXT_ID, BPF_MAP_GET_FD_BY_ID, _map)
    except OSError as e:
        raise _failure("bpf_maps", e) from None


def register(reg: FactRegistry) -> None:
    reg.register(
        "bpf_programs",
        lambda ctx: list_programs(),
        returns=ListType(BPF_PROG),
        doc="eBPF programs loaded in the kernel (bpf(2))",
        live_only=True,
    )
    reg.register(
        "bpf_maps",
        lambda ctx: list_maps(),
        returns=ListType(BPF_MAP),
        doc="eBPF maps loaded in the kernel (bpf(2))",
        live_only=True,
    )
