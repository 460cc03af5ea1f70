"""Live events from the running kernel: bpf/secpolicy.bpf.c loaded with bcc, its ring buffer
drained into contract-shaped event dicts, and every record that could not be delivered counted."""

from __future__ import annotations

import ctypes
import heapq
import mmap
import os
import pwd
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from secpolicy.errors import RuntimeFailure
from secpolicy.events.bpf_plan import LIVE_TYPES, KernelPlan
from secpolicy.kernel_names import CAPABILITIES as _CAPS
from secpolicy.kernel_names import MAP_TYPES as _MAP_TYPES
from secpolicy.kernel_names import PROG_TYPES as _PROG_TYPES
from secpolicy.kernel_names import open_flags as _open_flags
from secpolicy.resources import bpf_dir

__all__ = [
    "LiveSource",
    "LiveStats",
    "LossWindow",
    "available_types",
    "find_libpam",
    "header_constants",
    "tracefs_dir",
]

_PAGE = mmap.PAGESIZE
_BUSY = 1 << 31
_DISCARD = 1 << 30
_AT_FDCWD = -100
_HDR = struct.Struct("<QQq6QIIIIIIIIIIHBB16sI")
_NO_ID = 0xFFFFFFFF
_SEQ = struct.Struct("<I")
_SEQ_OFF = _HDR.size - 4  # lost_seq closes the header
_TS = struct.Struct("<Q")


def header_constants() -> dict[str, int]:
    """The SP_* numbers of bpf/secpolicy.h, the one definition shared with the BPF side."""
    text = (bpf_dir() / "secpolicy.h").read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define (SP_\w+) (-?\d+)\s*$", text, re.MULTILINE)}


_C = header_constants()
if _C["SP_HDR_SIZE"] != _HDR.size:  # the header and this decoder must agree
    raise RuntimeFailure(f"bpf/secpolicy.h record header is {_C['SP_HDR_SIZE']} bytes, decoder expects {_HDR.size}")
_TYPE_OF_ID = {v: k[6:].lower() for k, v in _C.items() if k.startswith("SP_EV_") and k != "SP_EV_MAX"}
_ID_OF_TYPE = {v: k for k, v in _TYPE_OF_ID.items()}
_PROBE_OF_ID = {v: k[5:].lower() for k, v in _C.items() if k.startswith("SP_P_")}
_EXEC, _EXIT, _CHDIR = _C["SP_EV_EXEC"], _C["SP_EV_EXIT"], _C["SP_EV_CHDIR"]
_F_TRUNC, _F_RET, _F_CREDS, _F_PPID = _C["SP_F_TRUNCATED"], _C["SP_F_RET"], _C["SP_F_CREDS"], _C["SP_F_PPID"]
_F_AUDIT, _F_FD_PATH = _C["SP_F_AUDIT"], _C["SP_F_FD_PATH"]

# Syscall tracepoints behind each event type (the first must exist for the type to work).
_TYPE_TRACEPOINTS: dict[str, tuple[str, ...]] = {
    "exec": ("execve", "execveat"),
    "open": ("openat", "openat2", "open"),
    "write": ("openat", "openat2", "open", "creat"),
    "unlink": ("unlinkat", "unlink", "rmdir"),
    "rename": ("renameat2", "renameat", "rename"),
    "chmod": ("fchmodat", "fchmodat2", "chmod", "fchmod"),
    "chown": ("fchownat", "chown", "lchown", "fchown"),
    "connect": ("connect",),
    "accept": ("accept4", "accept"),
    "setuid": ("setuid", "setreuid", "setresuid", "setgid", "setregid", "setresgid"),
    "capset": ("capset",),
    "bpf": ("bpf",),
    "module_load": ("finit_module", "init_module"),
    "ptrace": ("ptrace",),
    "mount": ("mount",),
}
# Syscalls that exist on some architectures only: compiled in only when present.
_OPTIONAL = ("open", "creat", "unlink", "rmdir", "rename", "renameat", "chmod", "chown",
             "lchown", "fchmodat2", "finit_module", "init_module")


def tracefs_dir() -> Path | None:
    """Where tracefs is mounted (with its events/), or None."""
    for d in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (d / "events").is_dir():
            return d
    return None


def _has_syscall_tp(tracefs: Path, name: str) -> bool:
    return (tracefs / "events" / "syscalls" / f"sys_enter_{name}").is_dir()


def find_libpam() -> str | None:
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
              "/lib", "/usr/lib", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        p = Path(d) / "libpam.so.0"
        if p.exists():
            return str(p.resolve())
    return None


def available_types(tracefs: Path | None = None) -> dict[str, str | None]:
    """Per live event type: None when this machine can produce it, else why not."""
    tracefs = tracefs or tracefs_dir()
    out: dict[str, str | None] = {}
    for t in LIVE_TYPES:
        if t == "auth":
            out[t] = None if find_libpam() else "libpam.so.0 not found (no PAM on this system)"
            continue
        if tracefs is None:
            out[t] = "tracefs is not mounted"
            continue
        tps = _TYPE_TRACEPOINTS.get(t)
        if tps is None:  # an Event type (setxattr) this monitor has no probe for yet
            out[t] = "not traced by the live monitor"
            continue
        if any(_has_syscall_tp(tracefs, n) for n in tps):
            out[t] = None
        else:
            names = ", ".join(f"syscalls:sys_enter_{n}" for n in tps)
            out[t] = f"no tracepoint {names} in this kernel"
    if tracefs is not None and not (tracefs / "events" / "sched" / "sched_process_exec").is_dir():
        out["exec"] = "no tracepoint sched:sched_process_exec in this kernel"
    return out


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


# ---------------------------------------------------------------------------------------------
# decoding helpers


_BPF_CMDS = {0: "BPF_MAP_CREATE", 5: "BPF_PROG_LOAD", 8: "BPF_PROG_ATTACH",
             17: "BPF_RAW_TRACEPOINT_OPEN", 18: "BPF_BTF_LOAD", 28: "BPF_LINK_CREATE"}
_PROBE_NAMES = {
    "sched_exec": "tracepoint:sched:sched_process_exec",
    "sched_exit": "tracepoint:sched:sched_process_exit",
    "pam_authenticate": "uprobe:libpam:pam_authenticate",
    "pam_acct_mgmt": "uprobe:libpam:pam_acct_mgmt",
}
_CONTAINER_RE = re.compile(
    r"(?:docker[-/]|cri-containerd-|crio-|libpod-|containerd[-/]|/kubepods[^/]*/(?:[^/]+/)*pod[^/]+/)"
    r"([0-9a-f]{64})"
)


def _probe_name(pid: int) -> str:
    name = _PROBE_OF_ID.get(pid, str(pid))
    return _PROBE_NAMES.get(name, f"tracepoint:syscalls:{name}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _caps(mask: int) -> list[str]:
    return [name for i, name in enumerate(_CAPS) if mask >> i & 1] + [
        f"CAP_{i}" for i in range(len(_CAPS), 64) if mask >> i & 1
    ]


def _clean(path: str) -> str:
    if "//" in path or "/." in path or path.endswith("/") and len(path) > 1:
        path = os.path.normpath(path)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
    return path


def _clauses_may_hold(ev: dict[str, Any], clauses: tuple[Any, ...]) -> bool:
    """The kernel's clause test again, on the resolved paths (relative and re-read paths reach
    user space untested); an unresolved path may match anything."""
    f = ev.get("file") or {}
    paths = [v for v in (f.get("path"), f.get("target")) if v is not None]
    failed = ev.get("outcome", {}).get("result") == "failure"
    errno = ev.get("outcome", {}).get("errno")
    for c in clauses:
        if (c.path_prefixes is not None and paths and all(p.startswith("/") for p in paths)
                and not any(p.startswith(c.path_prefixes) for p in paths)):
            continue
        if c.result == "failure" and not failed or c.result == "success" and failed:
            continue
        if c.errnos is not None and errno not in c.errnos:
            continue
        return True
    return False


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class _Proc:
    __slots__ = ("args", "cmdline", "comm", "cwd", "exe", "ppid")

    def __init__(self, exe: str | None, args: list[str] | None, cwd: str | None, comm: str,
                 ppid: int) -> None:
        self.exe = exe
        self.args = args
        self.cmdline = " ".join(args) if args is not None else None
        self.cwd = cwd
        self.comm = comm
        self.ppid = ppid


class _ProcessCache:
    """Process context by pid, kept current by exec, chdir and exit records; /proc is read
    only for processes first seen without an exec (started before the monitor, or forked)."""

    def __init__(self, max_depth: int = 12) -> None:
        self.procs: dict[int, _Proc] = {}
        self.max_depth = max_depth
        self.proc_reads = 0

    def _from_proc(self, pid: int, comm: str, ppid: int) -> _Proc | None:
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                stat = f.read()
            with open(f"{base}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return None
        self.proc_reads += 1
        close = stat.rfind(b")")
        fields = stat[close + 2 :].split()
        real_comm = stat[stat.find(b"(") + 1 : close].decode("utf-8", "replace")
        if comm and real_comm != comm:
            return None  # the pid was reused since the event: /proc tells of another process
        if not ppid and len(fields) > 1:
            ppid = int(fields[1])
        args = [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] if raw else None
        return _Proc(_readlink(f"{base}/exe"), args, _readlink(f"{base}/cwd"), real_comm, ppid)

    def get(self, pid: int, comm: str = "", ppid: int = 0) -> _Proc:
        p = self.procs.get(pid)
        if p is not None:
            if ppid and p.ppid != ppid:
                p.ppid = ppid  # reparented
            return p
        parent = self.procs.get(ppid) if ppid else None
        # A fork without exec runs its parent's program: same exe, args and cwd.
        if parent is not None and parent.comm == comm:
            p = _Proc(parent.exe, parent.args, parent.cwd, comm, ppid)
        else:
            p = self._from_proc(pid, comm, ppid)
            if p is None:
                p = _Proc(parent.exe if parent else None, parent.args if parent else None,
                          parent.cwd if parent else None, comm, ppid)
        self.procs[pid] = p
        return p

    def cwd(self, pid: int, p: _Proc) -> str | None:
        if p.cwd is None:
            p.cwd = _readlink(f"/proc/{pid}/cwd")
        return p.cwd

    def ancestors(self, p: _Proc) -> list[str]:
        out: list[str] = []
        seen = set()
        ppid = p.ppid
        while ppid and ppid not in seen and len(out) < self.max_depth:
            seen.add(ppid)
            a = self.procs.get(ppid)
            if a is None:
                a = self._from_proc(ppid, "", 0)
                if a is None:
                    break
                self.procs[ppid] = a
            if a.exe:
                out.append(a.exe)
            if ppid == 1:
                break
            ppid = a.ppid
        return out

    def exit(self, pid: int) -> None:
        self.procs.pop(pid, None)


class _Names:
    """User names and cgroup paths by id, cached."""

    def __init__(self) -> None:
        self.users: dict[int, str | None] = {}
        self.cgroups: dict[int, str] = {}
        self.cgroup_scan = 0.0
        self.cgroup_root = _cgroup2_root()

    def user(self, uid: int) -> str | None:
        try:
            return self.users[uid]
        except KeyError:
            try:
                name: str | None = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = None
            self.users[uid] = name
            return name

    def cgroup(self, cgid: int) -> str | None:
        path = self.cgroups.get(cgid)
        if path is None and time.monotonic() - self.cgroup_scan > 1.0:
            self._scan()
            path = self.cgroups.get(cgid)
        return path

    def _scan(self) -> None:
        self.cgroup_scan = time.monotonic()
        root = self.cgroup_root
        if root is None:
            return
        # cgroup v2 ids are the inode numbers of the cgroup directories.
        for dirpath, _dirs, _files in os.walk(root):
            try:
                ino = os.stat(dirpath).st_ino
            except OSError:
                continue
            rel = "/" + os.path.relpath(dirpath, root) if dirpath != str(root) else "/"
            self.cgroups[ino] = rel.replace("/./", "/") if rel != "/." else "/"


def _cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (bpf_get_current_cgroup_id names its dirs)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        pass
    return None


class _Clock:
    """Kernel boot-time nanoseconds to canonical UTC timestamps."""

    def __init__(self) -> None:
        best = None
        for _ in range(5):
            t0 = time.time_ns()
            b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            t1 = time.time_ns()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, (t0 + t1) // 2 - b)
        assert best is not None
        self.offset = best[1]
        self._sec = -1
        self._prefix = ""

    def ts(self, boot_ns: int) -> str:
        sec, ns = divmod(boot_ns + self.offset, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{ns:09d}Z"

    def now(self) -> str:
        return self.ts(time.clock_gettime_ns(time.CLOCK_BOOTTIME))


# ---------------------------------------------------------------------------------------------
# the ring buffer, read directly through its shared mapping (one copy per batch, no callback
# per record)


class _Ring:
    def __init__(self, map_fd: int, size: int) -> None:
        self.size = size
        self.mask = size - 1
        self.cons = mmap.mmap(map_fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        # Producer page, then the data area mapped twice so a record never wraps.
        self.prod = mmap.mmap(map_fd, _PAGE + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=_PAGE)

    def drain(self) -> tuple[bytes, list[tuple[int, int]]]:
        """All committed records: the bytes and (offset, length) of each within them."""
        unpack = struct.unpack_from
        cons = unpack("<Q", self.cons, 0)[0]
        prod = unpack("<Q", self.prod, 0)[0]
        if cons == prod:
            return b"", []
        start = cons
        recs: list[tuple[int, int]] = []
        base = _PAGE
        mask = self.mask
        data = self.prod
        while cons < prod:
            hdr = unpack("<I", data, base + (cons & mask))[0]
            if hdr & _BUSY:
                break
            ln = hdr & ~(_BUSY | _DISCARD)
            if not hdr & _DISCARD:
                recs.append((cons - start + 8, ln))
            cons += (ln + 15) & ~7
        if cons == start:
            return b"", []
        off = base + (start & mask)
        chunk = data[off : off + (cons - start)]
        struct.pack_into("<Q", self.cons, 0, cons)
        return chunk, recs

    def close(self) -> None:
        self.cons.close()
        self.prod.close()


# ---------------------------------------------------------------------------------------------


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
        self.host = host or socket.gethostname()
        self.libpam = libpam
        self.bpf: Any = None
        self.attached: list[str] = []
        # Where a path syscall that only a failure can make interesting waits for sys_exit:
        # task storage when the kernel allows it (cheapest), else a hash by thread id.
        self.task_storage = False
        self._ring: _Ring | None = None
        self._queue: deque[tuple[bytes, list[tuple[int, int]]]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._reader_error: BaseException | None = None
        self._delivered: dict[str, int] = {}
        self._internal: dict[str, int] = {}
        self._queue_dropped: dict[str, int] = {}
        self._windows: list[LossWindow] = []
        self._lost_seq = 0
        self._last_ts_ns = 0
        self._kernel_lost_seen: dict[str, int] = {}
        self._cache = _ProcessCache()
        self._names = _Names()
        self._clock = _Clock()
        self._types = set(plan.types)
        self._exe_filter = {t: f.exe for t, f in plan.filters.items() if f.exe is not None}
        self._realpaths: dict[str, str] = {}
        self._clauses = {t: f.clauses for t, f in plan.filters.items() if f.clauses is not None}

    # -- setup ------------------------------------------------------------------------------

    def cflags(self, offsets: dict[str, int] | None = None, task_storage: bool = False) -> list[str]:
        tracefs = tracefs_dir()
        flags = [
            f"-I{bpf_dir()}",
            f"-DSP_SELF_TGID={os.getpid()}",
            f"-DSP_RINGBUF_PAGES={self.ringbuf_pages}",
            "-DSP_WANT_CHDIR",
        ]
        if task_storage:
            flags.append("-DSP_TASK_STORAGE")
        if tracefs is not None:
            flags += [f"-DSP_HAVE_{n.upper()}" for n in _OPTIONAL if _has_syscall_tp(tracefs, n)]
        flags += [f"-DSP_WANT_{t.upper()}" for t in sorted(self._types) if t != "exec"]
        if offsets:
            flags += [f"-DSP_OFF_{k}={v}" for k, v in sorted(offsets.items())]
        return flags

    def start(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeFailure("the live monitor needs root (CAP_BPF and CAP_PERFMON) to load eBPF programs")
        tracefs = tracefs_dir()
        if tracefs is None:
            raise RuntimeFailure("tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing")
        try:
            from bcc import BPF  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeFailure(
                f"bcc is not importable ({exc}): apt-get install python3-bpfcc and run scripts/setup.sh"
            ) from None
        from secpolicy.events.bpf_btf import read_offsets

        try:
            offsets = read_offsets().values
        except RuntimeFailure:
            offsets = {}  # no BTF: ppid, euid and auid come from /proc instead
        self._have_offsets = bool(offsets)
        # Task storage needs the kernel's BTF (the task pointer is typed) and a kernel that lets
        # tracepoint programs use it; without either, a hash by thread id does the same.
        self.task_storage = bool(offsets) and _task_storage_works(BPF)
        src = (bpf_dir() / "secpolicy.bpf.c").read_text(encoding="utf-8")
        capture = _capture_fd2()
        try:
            # bcc prints compiler and verifier diagnostics on fd 2: keep them for the message.
            with capture:
                self.bpf = BPF(text=src.encode(), cflags=self.cflags(offsets, self.task_storage))
        except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception for compile and load failures
            detail = capture.text() or str(exc)
            raise RuntimeFailure(f"loading the eBPF programs failed: {_last_lines(detail)}") from None
        self.attached = sorted(
            "tracepoint:" + (k.decode() if isinstance(k, bytes) else str(k))
            for k in getattr(self.bpf, "tracepoint_fds", {})
        )
        if "auth" in self._types:
            lib = self.libpam or find_libpam()
            if lib is None:
                raise RuntimeFailure("a rule needs auth events but libpam.so.0 was not found")
            for sym, fn in (("pam_authenticate", "sp_pam_auth_enter"), ("pam_acct_mgmt", "sp_pam_acct_enter")):
                try:
                    self.bpf.attach_uprobe(name=lib.encode(), sym=sym.encode(), fn_name=fn.encode())
                    self.bpf.attach_uretprobe(name=lib.encode(), sym=sym.encode(), fn_name=b"sp_pam_return")
                except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                    raise RuntimeFailure(f"attaching the uprobe on {lib}:{sym} failed: {exc}") from None
                self.attached.append(f"uprobe:{lib}:{sym}")
        self._load_filters()
        table = self.bpf[b"events"]
        self._ring = _Ring(table.map_fd, self.ringbuf_pages * _PAGE)
        self._reader = threading.Thread(target=self._read_loop, name="secpolicy-ring", daemon=True)
        self._reader.start()

    def _load_filters(self) -> None:
        b = self.bpf
        cfg, uids, comms, prefixes = b[b"type_cfg"], b[b"uid_filter"], b[b"comm_filter"], b[b"prefixes"]
        slots: dict[str, int] = {}

        def slot_of(prefix: str) -> int:
            if prefix not in slots:
                raw = prefix.encode()[: _C["SP_PREFIX_WORDS"] * 8]
                leaf = prefixes.Leaf()
                leaf.len = len(raw)
                padded = raw.ljust(_C["SP_PREFIX_WORDS"] * 8, b"\0")
                for i in range(_C["SP_PREFIX_WORDS"]):
                    leaf.w[i] = int.from_bytes(padded[8 * i : 8 * i + 8], "little")
                slots[prefix] = len(slots)
                prefixes[ctypes.c_int(slots[prefix])] = leaf
            return slots[prefix]

        for etype, flt in self.plan.filters.items():
            if etype not in self._types or etype == "exec":
                continue
            tid = _ID_OF_TYPE[etype]
            leaf = cfg.Leaf()
            if flt.uids is not None:
                leaf.flags |= _C["SP_FILTER_UID"]
                for u in flt.uids:
                    uids[uids.Key(tid, u & 0xFFFFFFFF)] = ctypes.c_uint8(1)
            if flt.comm is not None:
                leaf.flags |= _C["SP_FILTER_COMM"]
                for c in flt.comm:
                    k = comms.Key()
                    k.type = tid
                    k.comm = c.encode()[:15]
                    comms[k] = ctypes.c_uint8(1)
            if flt.clauses is not None:
                leaf.flags |= _C["SP_FILTER_CLAUSES"]
                leaf.nclauses = len(flt.clauses)
                for i, clause in enumerate(flt.clauses):
                    c = leaf.c[i]
                    if clause.path_prefixes is not None:
                        c.flags |= _C["SP_C_PREFIX"]
                        for p in clause.path_prefixes:
                            c.prefix_mask |= 1 << slot_of(p)
                        leaf.prefix_mask |= c.prefix_mask
                    if clause.errnos is not None and all(0 < e < 64 for e in clause.errnos):
                        c.flags |= _C["SP_C_ERRNO"]
                        for e in clause.errnos:
                            c.errno_mask |= 1 << e
                    if clause.result == "failure":
                        c.flags |= _C["SP_C_FAILURE"]
                    elif clause.result == "success":
                        c.flags |= _C["SP_C_SUCCESS"]
            used = [slot for slot in range(_C["SP_MAX_PREFIXES"]) if leaf.prefix_mask >> slot & 1]
            leaf.nprefixes = len(used)
            for i, slot in enumerate(used):
                leaf.slot[i] = slot
                first = prefixes[ctypes.c_int(slot)]
                leaf.head[i] = first.w[0]
                leaf.head_mask[i] = (1 << 8 * min(first.len, 8)) - 1
            cfg[ctypes.c_int(tid)] = leaf
        b[b"armed"][ctypes.c_int(0)] = ctypes.c_uint32(1)

    # -- reading ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        ring = self._ring
        assert ring is not None
        try:
            while True:
                stopping = self._stop.is_set()
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
        ts_of = _TS.unpack_from
        last_seq = self._lost_seq
        for off, _ln in recs:
            seq = seq_of(chunk, off + _SEQ_OFF)[0]
            if seq != last_seq:
                self._kernel_loss(seq, ts_of(chunk, off)[0])
                last_seq = seq
        self._last_ts_ns = ts_of(chunk, recs[-1][0])[0]
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
            ts, etype = struct.unpack_from("<Q", chunk, off)[0], struct.unpack_from("<I", chunk, off + 72)[0]
            name = _TYPE_OF_ID.get(etype, "unknown")
            by_type[name] = by_type.get(name, 0) + 1
            first = ts if first is None else min(first, ts)
            last = ts if last is None else max(last, ts)
        for k, v in by_type.items():
            self._queue_dropped[k] = self._queue_dropped.get(k, 0) + v
        if first is not None and last is not None:
            self._windows.append(LossWindow(self._clock.ts(first), self._clock.ts(last),
                                            len(recs), "queue", by_type))

    def events(self) -> Iterator[dict[str, Any]]:
        """Events in timestamp order (records of different CPUs arrive a little out of order;
        they are held `reorder` seconds), so a recording replays in the very same order."""
        if self.bpf is None:
            self.start()
        self._reader_done = getattr(self, "_reader_done", False)
        decode = self._decode
        heap: list[tuple[str, int, dict[str, Any]]] = []
        seq = 0
        push, pop = heapq.heappush, heapq.heappop
        lag_ns = int(self.reorder * 1e9)
        clock = self._clock
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
                for off, ln in recs:
                    ev = decode(chunk, off, ln)
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

    def stop(self) -> None:
        """Ask the source to finish: what is in the ring buffer is still delivered."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.bpf is not None:
            self._final_counts = self._read_counts()
            _detach_tracepoints(self.bpf)
            self.bpf.cleanup()
            self.bpf = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accounting -------------------------------------------------------------------------

    def _read_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        sent: dict[str, int] = {}
        lost: dict[str, int] = {}
        if self.bpf is None:
            return getattr(self, "_final_counts", ({}, {}))
        for name, out in (("sent", sent), ("lost", lost)):
            table = self.bpf[name.encode()]
            for tid, etype in _TYPE_OF_ID.items():
                v = sum(table[ctypes.c_int(tid)])
                if v:
                    out[etype] = v
        return sent, lost

    def lost(self) -> dict[str, int]:
        return self.stats().lost()

    def stats(self) -> LiveStats:
        sent, klost = self._read_counts()
        windowed = sum(w.count for w in self._windows if w.where == "kernel")
        rest = sum(klost.values()) - windowed
        if rest > 0 and self._reader_done_flag():
            # Lost after the last delivered record: the window runs to now.
            start = self._clock.ts(self._last_ts_ns) if self._last_ts_ns else self._clock.now()
            by_type = {k: v - self._kernel_lost_seen.get(k, 0) for k, v in klost.items()
                       if v - self._kernel_lost_seen.get(k, 0) > 0}
            self._kernel_lost_seen = dict(klost)
            self._windows.append(LossWindow(start, self._clock.now(), rest, "kernel", by_type))
        return LiveStats(
            delivered=dict(self._delivered),
            kernel_sent=sent,
            kernel_lost=klost,
            queue_dropped=dict(self._queue_dropped),
            internal=dict(self._internal),
            windows=tuple(self._windows),
        )

    def _reader_done_flag(self) -> bool:
        return bool(getattr(self, "_reader_done", False))

    def loss_windows(self) -> tuple[LossWindow, ...]:
        return tuple(self._windows)

    def _kernel_loss(self, seq: int, ts_ns: int) -> None:
        count = (seq - self._lost_seq) & 0xFFFFFFFF
        self._lost_seq = seq
        ts = self._clock.ts(ts_ns)
        by_type: dict[str, int] = {}
        try:
            _sent, lost = self._read_counts()
            for k, v in lost.items():
                d = v - self._kernel_lost_seen.get(k, 0)
                if d:
                    by_type[k] = d
            self._kernel_lost_seen = lost
        except Exception:  # noqa: BLE001, S110 - counts are best effort while attributing a loss
            pass
        start = self._clock.ts(self._last_ts_ns) if self._last_ts_ns else ts
        self._windows.append(LossWindow(start, ts, count, "kernel", by_type))

    # -- decoding ---------------------------------------------------------------------------

    def _decode(self, chunk: bytes, off: int, ln: int) -> dict[str, Any] | None:  # noqa: C901 - to be split
        (ts_ns, cgid, ret, a0, a1, a2, a3, a4, a5, etype, pid, tid, ppid, uid, gid, euid, egid,
         auid, session, str_len, _nstr, flags, comm_b, _lost_seq) = _HDR.unpack_from(chunk, off)
        ts = self._clock.ts(ts_ns)
        comm = comm_b.split(b"\0", 1)[0].decode("utf-8", "replace")
        cache = self._cache
        if etype == _EXIT:
            cache.exit(pid)
            self._internal["exit"] = self._internal.get("exit", 0) + 1
            return None
        if str_len:
            s0 = off + _HDR.size
            strs = [x.decode("utf-8", "replace") for x in chunk[s0 : s0 + str_len - 1].split(b"\0")]
        else:
            strs = []
        if etype == _CHDIR:
            self._internal["chdir"] = self._internal.get("chdir", 0) + 1
            if ret == 0:
                cur = cache.get(pid, comm, ppid)
                if flags & _F_FD_PATH or not strs:
                    cur.cwd = None  # re-read from /proc when next needed
                else:
                    new = strs[0]
                    base = (cur.cwd or "") if not new.startswith("/") else ""
                    cur.cwd = _clean(os.path.join(base, new)) if (base or new.startswith("/")) else None
            return None
        name = _TYPE_OF_ID.get(etype)
        if name is None:
            return None
        if etype == _EXEC:
            p = cache.procs.get(pid)
            cwd = p.cwd if p is not None else None
            if p is None:
                cwd = _readlink(f"/proc/{pid}/cwd")
                if cwd is None and ppid:
                    # Gone already: a fresh child runs in its parent's directory.
                    parent = cache.procs.get(ppid) or cache.get(ppid)
                    cwd = cache.cwd(ppid, parent)
            filename = strs[0] if strs else ""
            if not filename.startswith("/"):
                dfd = _signed(a0)
                dirpath = cwd if dfd == _AT_FDCWD else _readlink(f"/proc/{pid}/fd/{dfd}")
                if dirpath:
                    filename = os.path.join(dirpath, filename) if filename else dirpath
            exe = self._realpath(_clean(filename))
            args = strs[1:] if len(strs) > 1 else [filename]
            p = _Proc(exe, args, cwd, comm, ppid)
            cache.procs[pid] = p
        else:
            p = cache.get(pid, comm, ppid if flags & _F_PPID else 0)
            exe_filter = self._exe_filter.get(name)
            if exe_filter is not None and p.exe not in exe_filter:
                return None  # no rule of this type looks at this program
        proc: dict[str, Any] = {"pid": pid, "tid": tid, "comm": comm, "uid": uid, "gid": gid,
                                "euid": euid, "egid": egid}
        if p.ppid:
            proc["ppid"] = p.ppid
        if p.exe:
            proc["exe"] = p.exe
        if p.args is not None:
            proc["args"] = p.args
            proc["cmdline"] = p.cmdline
        if p.cwd:
            proc["cwd"] = p.cwd
        if flags & _F_AUDIT:
            if auid != _NO_ID:
                proc["auid"] = auid
            if session != _NO_ID:
                proc["session"] = session
        anc = cache.ancestors(p)
        if anc:
            proc["ancestors"] = anc
            if anc[0]:
                proc["pexe"] = anc[0]
        cg = self._names.cgroup(cgid)
        if cg:
            proc["cgroup"] = cg
            m = _CONTAINER_RE.search(cg)
            if m:
                proc["container_id"] = m.group(1)
        user: dict[str, Any] = {"uid": euid}
        uname = self._names.user(euid)
        if uname:
            user["name"] = uname
        ev: dict[str, Any] = {"type": name, "ts": ts, "host": self.host, "proc": proc, "user": user,
                              "source": {"name": "ebpf", "probe": _probe_name(a5 & 0xFFFFFFFF)}}
        if flags & _F_TRUNC:
            self._internal["truncated"] = self._internal.get("truncated", 0) + 1
        if flags & _F_RET:
            ev["outcome"] = self._outcome(name, ret)
        build = _BUILDERS.get(name)
        if build is not None:
            build(self, ev, pid, p, strs, flags, ret, (a0, a1, a2, a3, a4, a5))
        clauses = self._clauses.get(name)
        if clauses is not None and not _clauses_may_hold(ev, clauses):
            # Relative or re-read paths reach user space unfiltered; now they are absolute.
            self._internal["filtered"] = self._internal.get("filtered", 0) + 1
            return None
        self._delivered[name] = self._delivered.get(name, 0) + 1
        return ev

    def _realpath(self, path: str) -> str:
        """The executable as auditd and /proc/PID/exe name it: symlinks resolved (cached)."""
        real = self._realpaths.get(path)
        if real is None:
            real = os.path.realpath(path) if path.startswith("/") else path
            if len(self._realpaths) > 65536:
                self._realpaths.clear()
            self._realpaths[path] = real
        return real

    @staticmethod
    def _outcome(name: str, ret: int) -> dict[str, Any]:
        if name == "auth":
            return {"result": "success" if ret == 0 else "failure"}
        if ret >= 0 or (name == "connect" and ret == -115):  # EINPROGRESS: under way
            return {"result": "success"}
        return {"result": "failure", "errno": -ret}

    def resolve(self, pid: int, p: _Proc, dfd: int, path: str, fd_path: bool = False) -> str:
        """An absolute path for `path` relative to descriptor `dfd` (or the cwd). Falls back
        to the path as given when the process or descriptor is already gone."""
        if fd_path:
            return _readlink(f"/proc/{pid}/fd/{_s32(dfd)}") or ""
        if path.startswith("/"):
            return _clean(path)
        dfd = _s32(dfd)
        base = self._cache.cwd(pid, p) if dfd == _AT_FDCWD else _readlink(f"/proc/{pid}/fd/{dfd}")
        if not base:
            return path
        return _clean(os.path.join(base, path)) if path else base


# ---------------------------------------------------------------------------------------------
# per-type payloads


def _b_file_open(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
                 ret: int, a: tuple[int, ...]) -> None:
    fl = _open_flags(a[1])
    f: dict[str, Any] = {"path": src.resolve(pid, p, a[0], strs[0] if strs else ""), "flags": fl}
    if "O_CREAT" in fl:
        f["mode"] = a[2] & 0o7777
    ev["file"] = f


def _b_unlink(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    f: dict[str, Any] = {"path": src.resolve(pid, p, a[0], strs[0] if strs else "")}
    if a[1] & 0x200:
        f["flags"] = ["AT_REMOVEDIR"]
    ev["file"] = f


def _b_rename(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    old = strs[0] if strs else ""
    new = strs[1] if len(strs) > 1 else ""
    ev["file"] = {"path": src.resolve(pid, p, a[0], old), "target": src.resolve(pid, p, a[1], new)}


def _b_chmod(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
             ret: int, a: tuple[int, ...]) -> None:
    path = src.resolve(pid, p, a[0], strs[0] if strs else "", bool(flags & _F_FD_PATH))
    ev["file"] = {"path": path, "mode": a[1] & 0o7777} if path else {"mode": a[1] & 0o7777}


def _b_chown(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
             ret: int, a: tuple[int, ...]) -> None:
    path = src.resolve(pid, p, a[0], strs[0] if strs else "", bool(flags & _F_FD_PATH))
    ev["file"] = {"uid": _s32(a[1]), "gid": _s32(a[2])}
    if path:
        ev["file"]["path"] = path


def _ip(family: int, lo: int, hi: int) -> str | None:
    if family == 2:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", lo & 0xFFFFFFFF))
    if family == 10:
        return socket.inet_ntop(socket.AF_INET6, struct.pack("<QQ", lo, hi))
    return None


def _net(a: tuple[int, ...], strs: list[str], accept: bool) -> tuple[dict[str, Any], str | None]:
    family = a[0] & 0xFFFF
    stype = (a[0] >> 16) & 0xFFFF
    lport = (a[0] >> 32) & 0xFFFF
    rport = (a[0] >> 48) & 0xFFFF
    net: dict[str, Any] = {"family": {2: "inet", 10: "inet6", 1: "unix"}.get(family, str(family))}
    proto = {1: "tcp", 2: "udp"}.get(stype & 0xF)
    if proto and family != 1:
        net["protocol"] = proto
    remote = _ip(family, a[1], a[2])
    local = _ip(family, a[3], a[4]) if (a[3] or a[4] or lport) else None
    # connect: we are the source; accept: the peer is the source and we are the destination.
    r_ip, r_port, l_ip, l_port = ("src_ip", "src_port", "dst_ip", "dst_port") if accept else (
        "dst_ip", "dst_port", "src_ip", "src_port")
    if remote is not None:
        net[r_ip] = remote
        net[r_port] = rport
    if local is not None:
        net[l_ip] = local
    if lport:
        net[l_port] = lport
    unix_path = strs[0] if family == 1 and strs else None
    return net, unix_path


def _b_connect(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
               ret: int, a: tuple[int, ...]) -> None:
    net, unix_path = _net(a, strs, accept=False)
    ev["net"] = net
    if unix_path:
        ev["file"] = {"path": unix_path if unix_path.startswith("/") else "@" + unix_path.lstrip("\0")}


def _b_accept(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    ev["net"] = _net(a, strs, accept=True)[0]


def _b_setuid(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    ev["cred"] = {"uid": a[3] & 0xFFFFFFFF, "euid": a[3] >> 32, "gid": a[4] & 0xFFFFFFFF,
                  "egid": a[4] >> 32}


def _b_capset(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    proc = ev["proc"]
    ev["cred"] = {"uid": proc["uid"], "euid": proc["euid"], "gid": proc["gid"],
                  "egid": proc["egid"], "caps": _caps(a[0])}


def _b_bpf(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
           ret: int, a: tuple[int, ...]) -> None:
    cmd = a[0]
    b: dict[str, Any] = {"cmd": _BPF_CMDS.get(cmd, f"BPF_CMD_{cmd}")}
    if cmd == 5:
        b["prog_type"] = _PROG_TYPES[a[1]] if a[1] < len(_PROG_TYPES) else str(a[1])
    elif cmd == 0:
        b["map_type"] = _MAP_TYPES[a[1]] if a[1] < len(_MAP_TYPES) else str(a[1])
    if strs and strs[0]:
        b["name"] = strs[0]
    ev["bpf"] = b


def _b_module(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    if flags & _F_FD_PATH:
        path = _readlink(f"/proc/{pid}/fd/{a[0]}")
        if path:
            ev["file"] = {"path": path}
            name = path.rsplit("/", 1)[-1]
            for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
                name = name.removesuffix(ext)
            ev["module"] = {"name": name}
            return
    ev["module"] = {}


def _b_ptrace(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
              ret: int, a: tuple[int, ...]) -> None:
    ev["ptrace"] = {"request": a[0], "target_pid": _s32(a[1])}


def _b_mount(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
             ret: int, a: tuple[int, ...]) -> None:
    strs = strs + [""] * (3 - len(strs))
    ev["file"] = {"path": src.resolve(pid, p, _AT_FDCWD, strs[0])}
    m: dict[str, Any] = {"flags": a[1]}
    if strs[1]:
        m["source"] = strs[1]
    if strs[2]:
        m["fstype"] = strs[2]
    ev["mount"] = m


def _b_auth(src: LiveSource, ev: dict, pid: int, p: _Proc, strs: list[str], flags: int,
            ret: int, a: tuple[int, ...]) -> None:
    strs = strs + [""] * (5 - len(strs))
    acct = _PROBE_OF_ID.get(a[5] & 0xFFFFFFFF) == "pam_acct_mgmt"
    auth: dict[str, Any] = {"result": "success" if ret == 0 else "failure",
                            "method": "PAM:accounting" if acct else "PAM:authentication"}
    for key, val in zip(("service", "user", "rhost"), strs[:3]):
        if val:
            auth[key] = val
    if strs[4]:
        ev["proc"]["tty"] = strs[4]  # PAM_TTY: the terminal of the session being opened
    ev["auth"] = auth


_BUILDERS = {
    "open": _b_file_open,
    "write": _b_file_open,
    "unlink": _b_unlink,
    "rename": _b_rename,
    "chmod": _b_chmod,
    "chown": _b_chown,
    "connect": _b_connect,
    "accept": _b_accept,
    "setuid": _b_setuid,
    "capset": _b_capset,
    "bpf": _b_bpf,
    "module_load": _b_module,
    "ptrace": _b_ptrace,
    "mount": _b_mount,
    "auth": _b_auth,
}


# ---------------------------------------------------------------------------------------------


def _detach_tracepoints(bpf: Any) -> None:
    """Close the tracepoint links in parallel: each close waits for an RCU grace period, and
    one after the other that takes seconds for seventy probes."""
    from concurrent.futures import ThreadPoolExecutor

    from bcc import lib  # type: ignore[import-not-found]

    fds = list(bpf.tracepoint_fds.values())
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(fds)))) as pool:
        list(pool.map(lib.bpf_close_perf_event_fd, fds))
    bpf.tracepoint_fds.clear()


_TASK_STORAGE_PROBE = b"""
struct sp_probe_v { u64 x; };
BPF_TASK_STORAGE(sp_probe_store, struct sp_probe_v);
int sp_probe(void *ctx)
{
    struct sp_probe_v *v = sp_probe_store.task_storage_get(bpf_get_current_task_btf(), 0,
                                                           BPF_LOCAL_STORAGE_GET_F_CREATE);
    return v ? 0 : 1;
}
"""


def _task_storage_works(bpf_class: Any) -> bool:
    """Whether a tracepoint program may keep per-thread state in task storage here (about 0.2 s:
    a tiny program compiled and loaded, never attached)."""
    try:
        with _capture_fd2():
            probe = bpf_class(text=_TASK_STORAGE_PROBE)
            try:
                probe.load_func(b"sp_probe", bpf_class.TRACEPOINT)
            finally:
                probe.cleanup()
    except Exception:  # noqa: BLE001 - bcc raises bare Exception when the kernel refuses the helper or map
        return False
    return True


class _capture_fd2:
    """Collect what C code writes to file descriptor 2 (bcc's compiler diagnostics)."""

    def __enter__(self) -> Self:
        import tempfile

        self._tmp = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)

    def text(self) -> str:
        self._tmp.seek(0)
        return self._tmp.read().decode("utf-8", "replace")


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "unknown error"
