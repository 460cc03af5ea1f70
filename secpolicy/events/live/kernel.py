"""The kernel side of the live monitor: what this kernel offers (tracefs, tracepoints, libpam),
bpf/secpolicy.bpf.c compiled with bcc for a plan, attached, its filter maps filled, its
per-type counters read, and everything detached again."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, Self

from secpolicy.errors import RuntimeFailure
from secpolicy.events.bpf_btf import KernelOffsets
from secpolicy.events.bpf_plan import LIVE_TYPES, KernelPlan
from secpolicy.events.live.record import ID_OF_TYPE, TYPE_OF_ID, C
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


def _quiet_module(bpf_class: Any) -> Any:
    """bcc's BPF class, without attaching its TRACEPOINT_PROBEs while it is being constructed:
    if one fails, the object would be lost with the others still attached."""

    class Module(bpf_class):  # type: ignore[misc,valid-type]
        def _trace_autoload(self) -> None:
            return None

    return Module


def _detach_tracepoints(bpf: Any) -> None:
    """Close the tracepoint links in parallel: each close waits for an RCU grace period, and
    one after the other that takes seconds for seventy probes."""
    from concurrent.futures import ThreadPoolExecutor

    from bcc import lib  # type: ignore[import-not-found]

    fds = list(bpf.tracepoint_fds.values())
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(fds)))) as pool:
        list(pool.map(lib.bpf_close_perf_event_fd, fds))
    bpf.tracepoint_fds.clear()


class KernelProbes:
    """The BPF programs of one plan: `load()` compiles, attaches, fills the filter maps and
    arms them; `counts()` reads the per-type sent/lost counters; `close()` detaches."""

    def __init__(self, plan: KernelPlan, *, ringbuf_pages: int, libpam: str | None = None) -> None:
        self.plan = plan
        self.ringbuf_pages = ringbuf_pages
        self.libpam = libpam
        self.types = set(plan.types)
        self.bpf: Any = None
        self.attached: list[str] = []
        # Where a path syscall that only a failure can make interesting waits for sys_exit:
        # task storage when the kernel allows it (cheapest), else a hash by thread id.
        self.task_storage = False
        # Whether paths are resolved in the kernel (BTF offsets for the dentry walk).
        self.kernel_paths = False

    def cflags(self, offsets: KernelOffsets | None = None, task_storage: bool = False) -> list[str]:
        tracefs = tracefs_dir()
        flags = [
            f"-I{bpf_dir()}",
            f"-DSP_SELF_TGID={os.getpid()}",
            f"-DSP_RINGBUF_PAGES={self.ringbuf_pages}",
        ]
        if task_storage:
            flags.append("-DSP_TASK_STORAGE")
        if tracefs is not None:
            flags += [f"-DSP_HAVE_{n.upper()}" for n in _OPTIONAL if _has_syscall_tp(tracefs, n)]
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
            from bcc import BPF
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
        # Task storage needs the kernel's BTF (the task pointer is typed) and a kernel that lets
        # tracepoint programs use it; where the load fails with it, a hash by thread id does the
        # same (tried second, so that kernels that allow it pay for one compile only).
        src = (bpf_dir() / "secpolicy.bpf.c").read_text(encoding="utf-8").encode()
        failure = ""
        for task_storage in ((True, False) if offsets is not None else (False,)):
            capture = capture_fd2()
            try:
                # bcc prints compiler and verifier diagnostics on fd 2: keep them for the message.
                with capture:
                    self.bpf = _quiet_module(BPF)(text=src, cflags=self.cflags(offsets, task_storage))
                    BPF._trace_autoload(self.bpf)  # kept for after the object exists: close() undoes it
                    self._attach_shared(tracefs)
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception for compile and load failures
                failure = last_lines(capture.text() or str(exc))
                self.close()
                continue
            self.task_storage = task_storage
            break
        else:
            raise RuntimeFailure(f"loading the eBPF programs failed: {failure}")
        self.attached = sorted(
            "tracepoint:" + (k.decode() if isinstance(k, bytes) else str(k))
            for k in getattr(self.bpf, "tracepoint_fds", {})
        )
        if "auth" in self.types:
            self._attach_pam()
        self._load_filters()

    def _attach_shared(self, tracefs: Path) -> None:
        """Attach the programs several syscalls share to each tracepoint a wanted type needs."""
        for name, (enter, exit_, types) in _SYSCALLS.items():
            if not types & self.types or not _has_syscall_tp(tracefs, name):
                continue
            for prog, tp in ((enter, f"sys_enter_{name}"), (exit_, f"sys_exit_{name}")):
                if prog is not None:
                    self.bpf.attach_tracepoint(tp=f"syscalls:{tp}".encode(), fn_name=prog.encode())

    def _attach_pam(self) -> None:
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

    @property
    def ring_fd(self) -> int:
        return int(self.bpf[b"events"].map_fd)

    def _load_filters(self) -> None:
        b = self.bpf
        cfg, uids, comms, prefixes = b[b"type_cfg"], b[b"uid_filter"], b[b"comm_filter"], b[b"prefixes"]
        slots: dict[str, int] = {}

        def slot_of(prefix: str) -> int:
            if prefix not in slots:
                raw = prefix.encode()[: C["SP_PREFIX_WORDS"] * 8]
                leaf = prefixes.Leaf()
                leaf.len = len(raw)
                padded = raw.ljust(C["SP_PREFIX_WORDS"] * 8, b"\0")
                for i in range(C["SP_PREFIX_WORDS"]):
                    leaf.w[i] = int.from_bytes(padded[8 * i : 8 * i + 8], "little")
                slots[prefix] = len(slots)
                prefixes[ctypes.c_int(slots[prefix])] = leaf
            return slots[prefix]

        for etype, flt in self.plan.filters.items():
            if etype not in self.types or etype == "exec":
                continue
            tid = ID_OF_TYPE[etype]
            leaf = cfg.Leaf()
            if flt.uids is not None:
                leaf.flags |= C["SP_FILTER_UID"]
                for u in flt.uids:
                    uids[uids.Key(tid, u & 0xFFFFFFFF)] = ctypes.c_uint8(1)
            if flt.comm is not None:
                leaf.flags |= C["SP_FILTER_COMM"]
                for c in flt.comm:
                    k = comms.Key()
                    k.type = tid
                    k.comm = c.encode()[:15]
                    comms[k] = ctypes.c_uint8(1)
            if flt.clauses is not None:
                leaf.flags |= C["SP_FILTER_CLAUSES"]
                leaf.nclauses = len(flt.clauses)
                for i, clause in enumerate(flt.clauses):
                    c = leaf.c[i]
                    if clause.path_prefixes is not None:
                        c.flags |= C["SP_C_PREFIX"]
                        for p in clause.path_prefixes:
                            c.prefix_mask |= 1 << slot_of(p)
                        leaf.prefix_mask |= c.prefix_mask
                    if clause.errnos is not None and all(0 < e < 64 for e in clause.errnos):
                        c.flags |= C["SP_C_ERRNO"]
                        for e in clause.errnos:
                            c.errno_mask |= 1 << e
                    if clause.result == "failure":
                        c.flags |= C["SP_C_FAILURE"]
                    elif clause.result == "success":
                        c.flags |= C["SP_C_SUCCESS"]
            used = [slot for slot in range(C["SP_MAX_PREFIXES"]) if leaf.prefix_mask >> slot & 1]
            leaf.nprefixes = len(used)
            for i, slot in enumerate(used):
                leaf.slot[i] = slot
                first = prefixes[ctypes.c_int(slot)]
                leaf.head[i] = first.w[0]
                leaf.head_mask[i] = (1 << 8 * min(first.len, 8)) - 1
            cfg[ctypes.c_int(tid)] = leaf
        if self.types & {"account_change", "config_change"}:
            self._load_audit_kinds()

    def _load_audit_kinds(self) -> None:
        from secpolicy.events.auditd import RECORD_TYPES

        kinds = self.bpf[b"audit_kind"]
        for names, kind, etype in ((ACCOUNT_MESSAGES, 1, "account_change"), (CONFIG_MESSAGES, 2, "config_change")):
            if etype not in self.types:
                continue
            for n in names:
                kinds[ctypes.c_int(RECORD_TYPES[n] - C["SP_AUDIT_FIRST"])] = ctypes.c_uint8(kind)

    def arm(self) -> None:
        """Start recording (the programs stay silent until the filters are in place)."""
        self.bpf[b"armed"][ctypes.c_int(0)] = ctypes.c_uint32(1)

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Records handed to the ring buffer and records lost, per event type."""
        sent: dict[str, int] = {}
        lost: dict[str, int] = {}
        for name, out in (("sent", sent), ("lost", lost)):
            table = self.bpf[name.encode()]
            for tid, etype in TYPE_OF_ID.items():
                v = sum(table[ctypes.c_int(tid)])
                if v:
                    out[etype] = v
        return sent, lost

    def close(self) -> None:
        if self.bpf is not None:
            _detach_tracepoints(self.bpf)
            self.bpf.cleanup()
            self.bpf = None
