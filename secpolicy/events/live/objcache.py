"""Compiled BPF programs kept between runs. bcc compiles C at run time and cannot load a
compiled object, so after compiling we take what it produced (each function's instructions and
the maps they refer to) and keep it, keyed by source, compile flags, bcc and kernel; a run with
the same key skips the compiler and only creates the maps and loads the programs (bpfsys)."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import platform
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secpolicy.errors import RuntimeFailure
from secpolicy.events.live import bpfsys

__all__ = ["CompiledObject", "LoadedObject", "MapSpec", "ProgSpec", "cache_dir", "compile_object", "object_key"]

_FORMAT = 1
_LD_IMM64 = 0x18
_PSEUDO_MAP_FD = 1


@dataclass(frozen=True)
class MapSpec:
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@dataclass(frozen=True)
class ProgSpec:
    """One function: its instructions, and for each instruction loading a map, the map's name."""

    name: str
    insns: bytes
    maps: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class CompiledObject:
    key: str
    maps: tuple[MapSpec, ...]
    progs: tuple[ProgSpec, ...]
    license: str

    def to_json(self) -> str:
        return json.dumps({
            "format": _FORMAT, "key": self.key, "license": self.license,
            "maps": [m.__dict__ for m in self.maps],
            "progs": [{"name": p.name, "insns": base64.b64encode(p.insns).decode(), "maps": list(p.maps)}
                      for p in self.progs],
        })

    @classmethod
    def from_json(cls, text: str) -> CompiledObject:
        d = json.loads(text)
        if d.get("format") != _FORMAT:
            raise ValueError("another format")
        return cls(d["key"], tuple(MapSpec(**m) for m in d["maps"]),
                   tuple(ProgSpec(p["name"], base64.b64decode(p["insns"]), tuple((int(i), str(n)) for i, n in p["maps"]))
                         for p in d["progs"]),
                   d["license"])


def object_key(source: bytes, cflags: list[str], bcc_version: str) -> str:
    """What the compiled instructions depend on: the C source and header, the flags (types,
    BTF offsets of this kernel), the compiler (bcc) and the kernel release."""
    h = hashlib.sha256()
    for part in (source, "\0".join(cflags).encode(), bcc_version.encode(), platform.release().encode(),
                 platform.machine().encode(), str(_FORMAT).encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "secpolicy" / "bpf"


def _private_dir(d: Path) -> bool:
    """The directory exists (made 0700 if new), is ours and nobody else may write to it: a
    program loaded from it runs in the kernel."""
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = d.stat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_cached(key: str) -> CompiledObject | None:
    d = cache_dir()
    path = d / f"{key}.json"
    if not _private_dir(d):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        try:
            obj = CompiledObject.from_json(f.read())
        except (ValueError, KeyError, TypeError):
            return None
    return obj if obj.key == key else None


def write_cached(obj: CompiledObject) -> None:
    """Best effort: a cache that cannot be written costs the next run a compile, nothing else."""
    d = cache_dir()
    if not _private_dir(d):
        return
    tmp = d / f".{obj.key}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(obj.to_json())
        os.replace(tmp, d / f"{obj.key}.json")
    except OSError:
        tmp.unlink(missing_ok=True)


def _declare(lib: Any) -> None:
    """Signatures of the libbcc functions bcc's Python module does not declare."""
    for name, restype in (("bpf_num_tables", ctypes.c_size_t), ("bpf_table_name", ctypes.c_char_p),
                          ("bpf_table_fd_id", ctypes.c_int), ("bpf_table_key_size_id", ctypes.c_size_t),
                          ("bpf_table_leaf_size_id", ctypes.c_size_t)):
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = [ctypes.c_void_p] if name == "bpf_num_tables" else [ctypes.c_void_p, ctypes.c_size_t]


def compile_object(source: bytes, cflags: list[str], key: str) -> CompiledObject:
    """Compile with bcc (nothing is loaded into the kernel) and take the result. bcc creates
    the maps while compiling and writes their descriptors into the instructions: those are
    recorded by map name, and the maps closed with the module."""
    from bcc import BPF, lib  # type: ignore[import-not-found]

    from secpolicy.events.live.kernel import capture_fd2, last_lines

    _declare(lib)

    class Module(BPF):  # type: ignore[misc,valid-type]
        def _trace_autoload(self) -> None:
            return None  # compile only

    capture = capture_fd2()
    try:
        with capture:
            mod = Module(text=source, cflags=cflags)
    except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception for compile failures
        raise RuntimeFailure(f"compiling the eBPF programs failed: {last_lines(capture.text() or str(exc))}") from None
    try:
        m = mod.module
        maps: list[MapSpec] = []
        by_fd: dict[int, str] = {}
        for i in range(lib.bpf_num_tables(m)):
            name = lib.bpf_table_name(m, i).decode()
            maps.append(MapSpec(name, lib.bpf_table_type_id(m, i), lib.bpf_table_key_size_id(m, i),
                                lib.bpf_table_leaf_size_id(m, i), lib.bpf_table_max_entries_id(m, i),
                                lib.bpf_table_flags_id(m, i)))
            by_fd[lib.bpf_table_fd_id(m, i)] = name
        progs = []
        for i in range(lib.bpf_num_functions(m)):
            fname = lib.bpf_function_name(m, i)
            insns = mod.dump_func(fname)
            refs = []
            for at in range(len(insns) // 8):
                code, regs, _off, imm = struct.unpack_from("<BBhi", insns, at * 8)
                if code == _LD_IMM64 and regs >> 4 == _PSEUDO_MAP_FD:
                    if imm not in by_fd:
                        raise RuntimeFailure(f"{fname.decode()}: instruction {at} loads an unknown map")
                    refs.append((at, by_fd[imm]))
            progs.append(ProgSpec(fname.decode(), insns, tuple(refs)))
        license_text = (lib.bpf_module_license(m) or b"GPL").decode()
    finally:
        mod.cleanup()
    return CompiledObject(key, tuple(maps), tuple(progs), license_text)


class LoadedObject:
    """The maps created and (on demand) the programs loaded of a CompiledObject; `close()`
    releases them all."""

    def __init__(self, obj: CompiledObject, sizes: dict[str, int] | None = None) -> None:
        self.obj = obj
        self.map_fds: dict[str, int] = {}
        self.map_specs = {m.name: m for m in obj.maps}
        self.prog_fds: dict[str, int] = {}
        self._progs = {p.name: p for p in obj.progs}
        try:
            for m in obj.maps:
                entries = (sizes or {}).get(m.name, m.max_entries)
                self.map_fds[m.name] = bpfsys.make_map(m.map_type, m.name, m.key_size, m.value_size, entries,
                                                       m.flags)
        except OSError as exc:
            self.close()
            raise RuntimeFailure(f"creating the BPF maps failed: {exc.strerror}") from None

    @property
    def functions(self) -> list[str]:
        return list(self._progs)

    def program(self, name: str, prog_type: int) -> int:
        """The fd of function `name` loaded as `prog_type` (loaded once)."""
        fd = self.prog_fds.get(name)
        if fd is not None:
            return fd
        spec = self._progs.get(name)
        if spec is None:
            raise RuntimeFailure(f"no BPF function {name} in the compiled object")
        insns = bytearray(spec.insns)
        for at, map_name in spec.maps:
            struct.pack_into("<i", insns, at * 8 + 4, self.map_fds[map_name])
        fd = bpfsys.load_program(prog_type, name, bytes(insns), self.obj.license)
        self.prog_fds[name] = fd
        return fd

    def preload(self, names: list[str], prog_type: int) -> None:
        """Load the functions `names` as `prog_type`, several at once: the kernel verifies
        each program in the loading thread (privileged loads take no global lock), and the
        io_uring and path programs take it a second or less each. Returns once every load
        has ended; the first refusal, in the order of `names`, is raised."""
        from concurrent.futures import ThreadPoolExecutor

        todo = [n for n in dict.fromkeys(names) if n not in self.prog_fds]
        with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
            done = [pool.submit(self.program, name, prog_type) for name in todo]
        for future in done:
            future.result()

    def close(self) -> None:
        for fd in [*self.prog_fds.values(), *self.map_fds.values()]:
            os.close(fd)
        self.prog_fds.clear()
        self.map_fds.clear()
