"""The kernel side of the live monitor: what this kernel offers (tracefs, tracepoints, libpam),
bpf/secpolicy.bpf.c compiled with bcc for a plan, attached, its filter maps filled, its
per-type counters read, and everything detached again."""

from __future__ import annotations

import os
import re
import stat
import struct
from pathlib import Path
from typing import Any, Self

from secpolicy.errors import RuntimeFailure
from secpolicy.events.bpf_btf import KernelOffsets
from secpolicy.events.bpf_plan import LIVE_TYPES, KernelPlan, link_heads, watched_files
from secpolicy.events.live import bpfsys
from secpolicy.events.live.objcache import (
    LoadedObject,
    compile_object,
    object_key,
    read_cached,
    write_cached,
)
from secpolicy.events.live.record import ID_OF_TYPE, TYPE_OF_ID, C
from secpolicy.events.live.ring import PAGE
from secpolicy.resources import bpf_dir

__all__ = [
    "KernelProbes",
    "available_types",
    "capture_fd2",
    "find_libpam",
    "last_lines",
    "tracefs_dir",
    "tracefs_problem",
]

# Syscall tracepoints and the programs attached to them: (sys_enter program, sys_exit program,
# event types that need them). None: the program is a TRACEPOINT_PROBE, attached by bcc as it
# loads (only compiled in when its type is wanted), or there is none. Most programs serve
# several syscalls and tell them apart by the syscall number.
_OPEN, _PATH_EXIT = frozenset({"open", "write"}), "sp_exit_path"
_SYSCALLS: dict[str, tuple[str | None, str | None, frozenset[str]]] = {
    "openat": (None, _PATH_EXIT, _OPEN),
    **{n: ("sp_enter_path", _PATH_EXIT, _OPEN) for n in ("openat2", "open", "creat")},
    # what the auditd reader makes a write of too: truncate(2) (O_WRONLY|O_TRUNC), mkdir, mknod, link, symlink
    **{n: ("sp_enter_path", _PATH_EXIT, frozenset({"write"})) for n in ("truncate", "mkdir", "mkdirat", "mknod",
                                                                      "mknodat", "link", "linkat", "symlink",
                                                                      "symlinkat")},
    **{n: ("sp_enter_path", _PATH_EXIT, frozenset({"unlink"})) for n in ("unlinkat", "unlink", "rmdir")},
    **{n: ("sp_enter_path", _PATH_EXIT, frozenset({"chmod"})) for n in ("fchmodat", "fchmodat2", "chmod", "fchmod")},
    **{n: ("sp_enter_path", _PATH_EXIT, frozenset({"chown"})) for n in ("fchownat", "chown", "lchown", "fchown")},
    **{n: ("sp_enter_path", _PATH_EXIT, frozenset({"setxattr"}))
       for n in ("setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
                 "setxattrat", "removexattrat")},
    **{n: ("sp_enter_rename", _PATH_EXIT, frozenset({"rename"})) for n in ("renameat2", "renameat", "rename")},
    **{n: ("sp_enter_exec", "sp_exit_exec", frozenset({"exec"})) for n in ("execve", "execveat")},
    **{n: (None, "sp_exit_chdir", frozenset({"exec"})) for n in ("chdir", "fchdir")},
    "connect": (None, None, frozenset({"connect"})),
    **{n: ("sp_enter_accept", "sp_exit_accept", frozenset({"accept"})) for n in ("accept4", "accept")},
    **{n: ("sp_enter_setid", "sp_exit_setid", frozenset({"setuid"}))
       for n in ("setuid", "setreuid", "setresuid", "setgid", "setregid", "setresgid")},
    "capset": (None, "sp_exit_plain", frozenset({"capset"})),
    "bpf": (None, "sp_exit_plain", frozenset({"bpf"})),
    **{n: (None, "sp_exit_plain", frozenset({"module_load"})) for n in ("finit_module", "init_module")},
    "ptrace": (None, "sp_exit_plain", frozenset({"ptrace"})),
    "mount": (None, "sp_exit_plain", frozenset({"mount"})),
    "sendto": (None, None, frozenset({"account_change", "config_change"})),
}
# TRACEPOINT_PROBEs of syscalls some kernels lack: compiled in only when the tracepoint exists.
_OPTIONAL = ("finit_module", "init_module")
# io_uring's tracepoints for the path operations submitted through a ring (open, write, unlink,
# rename and setxattr types): compiled in only when the kernel has both (and the BTF offsets of the request).
_IO_URING = ("io_uring_submit_req", "io_uring_complete")
# Types that need the kernel's BTF offsets (the socket behind a descriptor).
_NEED_BTF = {"account_change": "kernel BTF (to tell NETLINK_AUDIT sockets apart)",
             "config_change": "kernel BTF (to tell NETLINK_AUDIT sockets apart)"}
# Audit message types read from NETLINK_AUDIT (as auditd's reader names them): account
# changes (shadow-utils through libaudit) and configuration changes (auditctl, user tools).
ACCOUNT_MESSAGES = ("ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "USER_MGMT", "GRP_MGMT", "USER_CHAUTHTOK",
                    "GRP_CHAUTHTOK", "ACCT_LOCK", "ACCT_UNLOCK", "ROLE_ASSIGN", "ROLE_REMOVE", "ROLE_MODIFY",
                    "CHUSER_ID", "CHGRP_ID")
CONFIG_MESSAGES = ("SET", "ADD_RULE", "DEL_RULE", "USYS_CONFIG", "USER_MAC_CONFIG_CHANGE", "USER_MAC_POLICY_LOAD")


_TRACEFS_DIRS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # EACCES: tracefs is root's (mode 0700) unless mounted otherwise
        return False


def tracefs_dir() -> Path | None:
    """Where tracefs is mounted (with its events/), or None (also when this user may not read
    it: see `tracefs_problem`)."""
    for d in _TRACEFS_DIRS:
        if _is_dir(d / "events"):
            return d
    return None


def tracefs_problem() -> str:
    """Why tracefs_dir() found nothing: not mounted, or not readable by this user."""
    for d in _TRACEFS_DIRS:
        try:
            (d / "events").stat()
        except PermissionError:
            return f"tracefs at {d} is not readable by uid {os.geteuid()} (it belongs to root)"
        except OSError:
            continue
    return "tracefs is not mounted"


def _has_syscall_tp(tracefs: Path, name: str) -> bool:
    return _is_dir(tracefs / "events" / "syscalls" / f"sys_enter_{name}")


# The fields of io_uring_submit_req that the rename program reads through a struct of its own
# (struct sp_uring_submit in bpf/secpolicy.bpf.c): name, offset, size.
_SUBMIT_FIELDS = {("req", 16, 8), ("user_data", 24, 8), ("opcode", 32, 1)}


def _submit_layout(tracefs: Path) -> bool:
    """Whether io_uring_submit_req's record has the layout struct sp_uring_submit assumes."""
    try:
        text = (tracefs / "events" / "io_uring" / "io_uring_submit_req" / "format").read_text()
    except OSError:
        return False
    fields = {(m[1], int(m[2]), int(m[3]))
              for m in re.finditer(r"field:[^;]*?(\w+)(?:\[\d*\])?;\s*offset:(\d+);\s*size:(\d+);", text)}
    return _SUBMIT_FIELDS <= fields


def find_libpam() -> str | None:
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
              "/lib", "/usr/lib", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
        p = Path(d) / "libpam.so.0"
        if p.exists():
            return str(p.resolve())
    return None


def _type_tracepoints(etype: str) -> list[str]:
    return [n for n, (_e, _x, types) in _SYSCALLS.items() if etype in types]


def available_types(tracefs: Path | None = None, btf: bool | None = None) -> dict[str, str | None]:
    """Per live event type: None when this machine can produce it, else why not."""
    tracefs = tracefs or tracefs_dir()
    if btf is None:
        from secpolicy.events.bpf_btf import VMLINUX_BTF

        btf = VMLINUX_BTF.is_file()
    out: dict[str, str | None] = {}
    for t in LIVE_TYPES:
        if t == "auth":
            out[t] = None if find_libpam() else "libpam.so.0 not found (no PAM on this system)"
            continue
        if tracefs is None:
            out[t] = tracefs_problem()
            continue
        tps = _type_tracepoints(t)
        if not any(_has_syscall_tp(tracefs, n) for n in tps):
            names = ", ".join(f"syscalls:sys_enter_{n}" for n in tps)
            out[t] = f"no tracepoint {names} in this kernel"
        elif t in _NEED_BTF and not btf:
            out[t] = f"needs {_NEED_BTF[t]}"
        else:
            out[t] = None
    if tracefs is not None and not _is_dir(tracefs / "events" / "sched" / "sched_process_exec"):
        out["exec"] = "no tracepoint sched:sched_process_exec in this kernel"
    return out


class capture_fd2:
    """Collect what C code writes to file descriptor 2 (bcc's compiler diagnostics)."""

    def __init__(self) -> None:
        import tempfile

        self._tmp = tempfile.TemporaryFile()  # noqa: SIM115 - read by text() after the block
        self._saved = -1

    def __enter__(self) -> Self:
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)

    def text(self) -> str:
        self._tmp.seek(0)
        return self._tmp.read().decode("utf-8", "replace")


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "unknown error"


class KernelProbes:
    """The BPF programs of one plan: `load()` compiles them (or takes them from the cache of
    compiled objects), creates the maps, loads and attaches the programs and fills the filter
    maps; `arm()` starts recording; `counts()` reads the per-type sent/lost counters;
    `close()` detaches and releases everything."""

    def __init__(self, plan: KernelPlan, *, ringbuf_pages: int, libpam: str | None = None) -> None:
        self.plan = plan
        self.ringbuf_pages = ringbuf_pages
        self.libpam = libpam
        self.types = set(plan.types)
        self.obj: LoadedObject | None = None
        self.attached: list[str] = []
        self._perf_fds: list[int] = []
        self._uprobes: list[tuple[bytes, int]] = []
        # The write rules' watched files and, of those that are regular files, the inode keys
        # the kernel holds (refresh_watched_inodes).
        self._watched: tuple[str, ...] = ()
        self._inodes: dict[bytes, str] = {}
        # Where a path syscall that only a failure can make interesting waits for sys_exit:
        # task storage when the kernel allows it (cheapest), else a hash by thread id.
        self.task_storage = False
        # Why the build with task storage and typed task reads did not load, when it did not.
        self.typed_failure: str | None = None
        # Whether paths are resolved in the kernel (BTF offsets for the dentry walk).
        self.kernel_paths = False
        # Whether the compiled programs came from the cache (no compile in this run).
        self.cached = False

    @property
    def loaded(self) -> bool:
        return self.obj is not None

    def cflags(self, offsets: KernelOffsets | None = None, task_storage: bool = False) -> list[str]:
        """The compile flags: they depend on the plan's types and on this kernel only (never on
        the run), so that the compiled programs can be reused."""
        tracefs = tracefs_dir()
        flags = [f"-I{bpf_dir()}"]
        if task_storage:
            flags.append("-DSP_TASK_STORAGE")
        if tracefs is not None:
            flags += [f"-DSP_HAVE_{n.upper()}" for n in _OPTIONAL if _has_syscall_tp(tracefs, n)]
            if all(_is_dir(tracefs / "events" / "io_uring" / tp) for tp in _IO_URING):
                flags.append("-DSP_HAVE_IO_URING")
                if _submit_layout(tracefs):
                    flags.append("-DSP_URING_SUBMIT_LAYOUT")
        flags += [f"-DSP_WANT_{t.upper()}" for t in sorted(self.types) if t != "exec"]
        if offsets is not None:
            flags += offsets.cflags()
        return flags

    def load(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeFailure(f"the live monitor needs root to load eBPF programs and attach them to tracepoints "
                                 f"(running as uid {os.geteuid()}); `secpolicy doctor` lists what else is missing")
        tracefs = tracefs_dir()
        if tracefs is None:
            raise RuntimeFailure(f"{tracefs_problem()}: mount -t tracefs tracefs /sys/kernel/tracing")
        try:
            import bcc  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeFailure(
                f"bcc is not importable ({exc}): apt-get install python3-bpfcc and run scripts/setup.sh"
            ) from None
        from secpolicy.events.bpf_btf import read_offsets

        try:
            offsets: KernelOffsets | None = read_offsets()
        except RuntimeFailure:
            offsets = None  # no BTF: ppid, euid and auid come from /proc instead
        self.kernel_paths = offsets is not None and offsets.kernel_paths
        source = b"".join((bpf_dir() / n).read_bytes() for n in ("secpolicy.bpf.c", "secpolicy.h"))
        text = (bpf_dir() / "secpolicy.bpf.c").read_bytes()
        # Task storage needs the kernel's BTF (the task pointer is typed) and a kernel that lets
        # tracepoint programs use it; the same build reads the task's files, fs and mm through
        # the typed pointer (loads, not helper calls). Where loading fails with it, a hash by
        # thread id and helper reads do the same (tried second, so that kernels that allow it
        # compile once).
        failure: RuntimeFailure | None = None
        for task_storage in ((True, False) if offsets is not None else (False,)):
            cflags = self.cflags(offsets, task_storage)
            key = object_key(source, cflags, getattr(bcc, "__version__", "?"))
            compiled = read_cached(key)
            self.cached = compiled is not None
            if compiled is None:
                compiled = compile_object(text, cflags, key)
            try:
                self.obj = LoadedObject(compiled, {"events": self.ringbuf_pages * PAGE})
                self._attach_all(tracefs)
            except RuntimeFailure as exc:
                failure = exc
                if task_storage:
                    self.typed_failure = str(exc)
                self.close()
                continue
            if not self.cached:
                write_cached(compiled)
            self.task_storage = task_storage
            break
        else:
            assert failure is not None
            raise RuntimeFailure(f"loading the eBPF programs failed: {failure}")
        self._load_filters()

    def _attach_tracepoint(self, fn: str, category: str, event: str) -> None:
        from bcc import lib

        assert self.obj is not None
        prog = self.obj.program(fn, bpfsys.PROG_TYPE_TRACEPOINT)
        fd = lib.bpf_attach_tracepoint(prog, category.encode(), event.encode())
        if fd < 0:
            raise RuntimeFailure(f"attaching {fn} to tracepoint {category}:{event} failed")
        self._perf_fds.append(fd)
        self.attached.append(f"tracepoint:{category}:{event}")

    def _attach_all(self, tracefs: Path) -> None:
        """TRACEPOINT_PROBEs to their tracepoints, the programs several syscalls share to each
        tracepoint a wanted type needs, the PAM uprobes."""
        assert self.obj is not None
        probes: list[tuple[str, str, str]] = []  # (function, category, event)
        for fn in self.obj.functions:
            if fn.startswith("tracepoint__"):
                category, event = fn[len("tracepoint__"):].split("__", 1)
                probes.append((fn, category, event))
        if "sp_uring_rename" in self.obj.functions:  # a second program on the ring's submissions
            probes.append(("sp_uring_rename", "io_uring", "io_uring_submit_req"))
        for name, (enter, exit_, types) in _SYSCALLS.items():
            if not types & self.types or not _has_syscall_tp(tracefs, name):
                continue
            for prog, tp in ((enter, f"sys_enter_{name}"), (exit_, f"sys_exit_{name}")):
                if prog is not None:
                    probes.append((prog, "syscalls", tp))
        # Verified side by side (most of a start's time), then attached one by one in this order.
        self.obj.preload([fn for fn, _, _ in probes], bpfsys.PROG_TYPE_TRACEPOINT)
        for fn, category, event in probes:
            self._attach_tracepoint(fn, category, event)
        self.attached.sort()
        if "auth" in self.types:
            self._attach_pam()

    def _attach_pam(self) -> None:
        from bcc import BPF, lib

        assert self.obj is not None
        path = self.libpam or find_libpam()
        if path is None:
            raise RuntimeFailure("a rule needs auth events but libpam.so.0 was not found")
        for sym, fn in (("pam_authenticate", "sp_pam_auth_enter"), ("pam_acct_mgmt", "sp_pam_acct_enter")):
            try:
                binary, addr = BPF._check_path_symbol(path.encode(), sym.encode(), None, -1)
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                raise RuntimeFailure(f"{path}:{sym}: {exc}") from None
            for kind, prog_name in ((0, fn), (1, "sp_pam_return")):
                prog = self.obj.program(prog_name, bpfsys.PROG_TYPE_KPROBE)
                ev = b"%s_secpolicy_%d_%s_0x%x" % (b"pr"[kind:kind + 1], os.getpid(), sym.encode(), addr)
                fd = lib.bpf_attach_uprobe(prog, kind, ev, binary, addr, -1)
                if fd < 0:
                    raise RuntimeFailure(f"attaching the uprobe on {path}:{sym} failed")
                self._uprobes.append((ev, fd))
            self.attached.append(f"uprobe:{path}:{sym}")

    @property
    def ring_fd(self) -> int:
        assert self.obj is not None
        return self.obj.map_fds["events"]

    def _map(self, name: str) -> tuple[int, int]:
        """(fd, value size) of a map, its value size checked against this module's layouts."""
        assert self.obj is not None
        return self.obj.map_fds[name], self.obj.map_specs[name].value_size

    def _load_filters(self) -> None:
        cfg_fd, cfg_size = self._map("type_cfg")
        uid_fd, _ = self._map("uid_filter")
        comm_fd, _ = self._map("comm_filter")
        pre_fd, pre_size = self._map("prefixes")
        if cfg_size != TYPE_CFG.size or pre_size != PREFIX.size:
            raise RuntimeFailure(f"bpf/secpolicy.h and the decoder disagree on filter layouts "
                                 f"({cfg_size}/{TYPE_CFG.size}, {pre_size}/{PREFIX.size} bytes)")
        slots: dict[str, tuple[int, int, int]] = {}  # prefix -> (slot, length, first word)
        one = b"\x01"

        def slot_of(prefix: str) -> int:
            if prefix not in slots:
                raw = prefix.encode()[: C["SP_PREFIX_WORDS"] * 8]
                padded = raw.ljust(C["SP_PREFIX_WORDS"] * 8, b"\0")
                words = struct.unpack(f"<{C['SP_PREFIX_WORDS']}Q", padded)
                slots[prefix] = (len(slots), len(raw), words[0])
                bpfsys.update(pre_fd, _U32.pack(slots[prefix][0]), PREFIX.pack(len(raw), 0, *words))
            return slots[prefix][0]

        for etype, flt in self.plan.filters.items():
            if etype not in self.types or etype == "exec":
                continue
            tid = ID_OF_TYPE[etype]
            flags = 0
            if flt.uids is not None:
                flags |= C["SP_FILTER_UID"]
                for u in flt.uids:
                    bpfsys.update(uid_fd, struct.pack("<II", tid, u & 0xFFFFFFFF), one)
            if flt.comm is not None:
                flags |= C["SP_FILTER_COMM"]
                for c in flt.comm:
                    bpfsys.update(comm_fd, struct.pack("<I16s", tid, c.encode()[:15]), one)
            clauses: list[tuple[int, int, int]] = []
            prefix_mask = 0
            if flt.clauses is not None:
                flags |= C["SP_FILTER_CLAUSES"]
                for clause in flt.clauses:
                    clauses.append(_clause(clause, slot_of))
                    prefix_mask |= clauses[-1][1]
            used = [(slot, ln, w0) for slot, ln, w0 in sorted(slots.values()) if prefix_mask >> slot & 1]
            bpfsys.update(cfg_fd, _U32.pack(tid), _type_cfg(flags, prefix_mask, clauses, used))
        if self.types & {"account_change", "config_change"}:
            self._load_audit_kinds()
        self._load_link_heads()
        assert self.obj is not None
        if "write" in self.types and "watched_inodes" in self.obj.map_fds:
            self._watched = watched_files(self.plan.filter_for("write"))
            self.refresh_watched_inodes()

    def refresh_watched_inodes(self) -> None:
        """Give the kernel the inode of each watched file the write rules name, as it is now
        (a file replaced by a rename, or created since the last call, gets its new one): a
        write-open of that inode under another name is then named by the watched path. Cheap
        (a stat per file); the monitor calls it about twice a second."""
        if not self._watched or self.obj is None:
            return
        want: dict[bytes, str] = {}
        for path in self._watched:
            try:
                st = os.lstat(path)
            except OSError:
                continue  # not there (yet): nothing to watch by inode
            if stat.S_ISREG(st.st_mode):
                # super_block.s_dev as the kernel encodes it (MKDEV: major << 20 | minor)
                want.setdefault(INODE_KEY.pack(st.st_ino, os.major(st.st_dev) << 20 | os.minor(st.st_dev), 0), path)
        if want == self._inodes or self.obj is None:  # unchanged, or closed meanwhile
            return
        fd, size = self._map("watched_inodes")
        if size != INODE_PATH.size:
            raise RuntimeFailure(f"bpf/secpolicy.h and the decoder disagree on struct sp_inode_path "
                                 f"({size}/{INODE_PATH.size} bytes)")
        for key, path in self._inodes.items():
            if want.get(key) != path:
                bpfsys.delete(fd, key)
        for key, path in want.items():
            if self._inodes.get(key) != path:
                raw = path.encode()
                bpfsys.update(fd, key, INODE_PATH.pack(len(raw) + 1, raw))
        self._inodes = want

    def _load_link_heads(self) -> None:
        """The first components (and stems) of the write type's success-accepting prefixes,
        which let a write-open kept for the file it opened skip the full path test
        (sp_link_head_ok); left off (every such file tested in full) where they would not tell
        (bpf_plan.link_heads)."""
        assert self.obj is not None
        if "write" not in self.types or "link_heads" not in self.obj.map_fds:
            return
        heads = link_heads(self.plan.filter_for("write"))
        if heads is None:
            return
        fd, _ = self._map("link_heads")
        for h in heads.names:
            bpfsys.update(fd, h.ljust(C["SP_HEAD_MAX"], b"\0"), b"\x01")
        cfg_fd, cfg_size = self._map("link_cfg")
        if cfg_size != LINK_CFG.size:
            raise RuntimeFailure(f"bpf/secpolicy.h and the decoder disagree on struct sp_link_cfg "
                                 f"({cfg_size}/{LINK_CFG.size} bytes)")
        n = C["SP_HEAD_STEMS"]
        stems = sorted(heads.stems)
        words = [int.from_bytes(s, "little") for s in stems] + [0] * (n - len(stems))
        masks = [(1 << 8 * len(s)) - 1 for s in stems] + [0] * (n - len(stems))
        bpfsys.update(cfg_fd, _U32.pack(0), LINK_CFG.pack(1, len(stems), *words, *masks))

    def _load_audit_kinds(self) -> None:
        from secpolicy.events.auditd import RECORD_TYPES

        fd, _ = self._map("audit_kind")
        for names, kind, etype in ((ACCOUNT_MESSAGES, 1, "account_change"), (CONFIG_MESSAGES, 2, "config_change")):
            if etype not in self.types:
                continue
            for n in names:
                bpfsys.update(fd, _U32.pack(RECORD_TYPES[n] - C["SP_AUDIT_FIRST"]), bytes([kind]))

    def arm(self) -> None:
        """Start recording (the programs stay silent until the filters are in place); the
        monitor's own process is never recorded."""
        fd, _ = self._map("armed")
        bpfsys.update(fd, _U32.pack(0), struct.pack("<II", 1, os.getpid()))

    def disarm(self) -> None:
        """Stop recording: from now on the programs send nothing (the counters stay put)."""
        if self.obj is not None:
            fd, _ = self._map("armed")
            bpfsys.update(fd, _U32.pack(0), struct.pack("<II", 0, os.getpid()))

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Records handed to the ring buffer and records lost, per event type."""
        sent: dict[str, int] = {}
        lost: dict[str, int] = {}
        for name, out in (("sent", sent), ("lost", lost)):
            fd, size = self._map(name)
            for tid, etype in TYPE_OF_ID.items():
                v = sum(int.from_bytes(b, "little") for b in bpfsys.lookup_percpu(fd, _U32.pack(tid), size))
                if v:
                    out[etype] = v
        return sent, lost

    def close(self) -> None:
        """Detach (in parallel: each close waits for an RCU grace period, and one after the
        other that takes seconds for fifty probes), then release programs and maps."""
        from concurrent.futures import ThreadPoolExecutor

        if self._perf_fds or self._uprobes:
            from bcc import lib

            fds = self._perf_fds + [fd for _ev, fd in self._uprobes]
            with ThreadPoolExecutor(max_workers=min(32, len(fds))) as pool:
                list(pool.map(lib.bpf_close_perf_event_fd, fds))
            for ev, _fd in self._uprobes:
                lib.bpf_detach_uprobe(ev)
            self._perf_fds.clear()
            self._uprobes.clear()
        if self.obj is not None:
            self.obj.close()
            self.obj = None
        self.attached = []


_U32 = struct.Struct("<I")
# struct sp_type_cfg and struct sp_prefix (bpf/secpolicy.h), as the filter maps hold them.
TYPE_CFG = struct.Struct(f"<4I{C['SP_MAX_CLAUSES'] * 'IIQ'}{C['SP_MAX_PREFIXES']}Q{C['SP_MAX_PREFIXES']}Q"
                         f"{C['SP_MAX_PREFIXES']}I")
PREFIX = struct.Struct(f"<II{C['SP_PREFIX_WORDS']}Q")
LINK_CFG = struct.Struct(f"<II{C['SP_HEAD_STEMS']}Q{C['SP_HEAD_STEMS']}Q")  # struct sp_link_cfg
INODE_KEY = struct.Struct("<QII")  # struct sp_inode_key
INODE_PATH = struct.Struct(f"<I{C['SP_PREFIX_WORDS'] * 8 + 4}s")  # struct sp_inode_path


def _clause(clause: Any, slot_of: Any) -> tuple[int, int, int]:
    """(flags, prefix mask, errno mask) of one rule clause."""
    flags = prefix_mask = errno_mask = 0
    if clause.path_prefixes is not None:
        flags |= C["SP_C_PREFIX"]
        for p in clause.path_prefixes:
            prefix_mask |= 1 << slot_of(p)
    if clause.errnos is not None and all(0 < e < 64 for e in clause.errnos):
        flags |= C["SP_C_ERRNO"]
        for e in clause.errnos:
            errno_mask |= 1 << e
    if clause.result == "failure":
        flags |= C["SP_C_FAILURE"]
    elif clause.result == "success":
        flags |= C["SP_C_SUCCESS"]
    return flags, prefix_mask, errno_mask


def _type_cfg(flags: int, prefix_mask: int, clauses: list[tuple[int, int, int]],
              used: list[tuple[int, int, int]]) -> bytes:
    """One type's entry: its clauses, and the first 8 bytes (masked to their length) and slot
    of each prefix its clauses use."""
    n = C["SP_MAX_PREFIXES"]
    c = [v for cl in clauses for v in cl] + [0] * (3 * (C["SP_MAX_CLAUSES"] - len(clauses)))
    head = [w0 & ((1 << 8 * min(ln, 8)) - 1) for _slot, ln, w0 in used] + [0] * (n - len(used))
    mask = [(1 << 8 * min(ln, 8)) - 1 for _slot, ln, _w0 in used] + [0] * (n - len(used))
    slot = [s for s, _ln, _w0 in used] + [0] * (n - len(used))
    return TYPE_CFG.pack(flags, prefix_mask, len(clauses), len(used), *c, *head, *mask, *slot)
