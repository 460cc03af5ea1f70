"""Records of the ring buffer to contract-shaped event dicts: the header to `proc`, `user` and
`outcome`, then one builder per event type for its payload. The decoder owns its caches
(process view, user and cgroup names, resolved executables) and its counters."""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, cast

from secpolicy.events.bpf_plan import Clause, KernelPlan, watched_files
from secpolicy.events.fields import EVENT_TYPES
from secpolicy.events.live.audit_msgs import audit_event
from secpolicy.events.live.procs import Clock, Names, Proc, ProcessView, readlink, text
from secpolicy.events.live.record import HDR, PROBE_OF_ID, TYPE_OF_ID, C, Header
from secpolicy.kernel_names import CAPABILITIES as _CAPS
from secpolicy.kernel_names import MAP_TYPES as _MAP_TYPES
from secpolicy.kernel_names import PROG_TYPES as _PROG_TYPES
from secpolicy.kernel_names import open_flags as _open_flags
from secpolicy.models import (
    Event,
    EventAuth,
    EventBpf,
    EventFile,
    EventLogin,
    EventMount,
    EventNet,
    EventOutcome,
    EventProc,
    EventType,
    EventUser,
)

__all__ = ["Decoder", "Header"]

_AT_FDCWD = -100
_NO_ID = 0xFFFFFFFF
_EXEC, _CHDIR = C["SP_EV_EXEC"], C["SP_EV_CHDIR"]
_OPENED = C["SP_OPENED_PATH"]  # a[3] of an open whose second string is the opened file's path
# a[3] of a write-open tested on the file it opened (its path as given matched no prefix): the
# first string is the opened file's path, the second the path as given
_LINKED = C["SP_LINKED_PATH"]
# a[3] of an open named by the file it opened, its second string: a write-open of a watched file
# under another name (a hard link; the second string is the watched path), or a ring's write-open
# that reached a watched file through a link
_NAMED = C["SP_NAMED_OPENED"]
# A string the kernel cut at its buffer (SP_PIECE_MAX bytes with the NUL): shown as such, never
# normalised into a real-looking path.
_PIECE = C["SP_PIECE_MAX"] - 1
CUT_MARK = "...(truncated)"
_F_TRUNC, _F_RET, _F_PPID = C["SP_F_TRUNCATED"], C["SP_F_RET"], C["SP_F_PPID"]
_F_AUDIT, _F_FD_PATH, _F_KPATH = C["SP_F_AUDIT"], C["SP_F_FD_PATH"], C["SP_F_KPATH"]
_AUDIT_MSGS = frozenset({C["SP_EV_ACCOUNT_CHANGE"], C["SP_EV_CONFIG_CHANGE"]})
# The Event type of each record type that makes an event (chdir only keeps the process view).
_EVENT_TYPE: dict[int, EventType] = {i: cast(EventType, n) for i, n in TYPE_OF_ID.items() if n in EVENT_TYPES}
_EXE_AND_CWD = 2  # a[4] of an exec record opening with mm->exe_file and the cwd

_BPF_CMDS = {0: "BPF_MAP_CREATE", 5: "BPF_PROG_LOAD", 8: "BPF_PROG_ATTACH",
             17: "BPF_RAW_TRACEPOINT_OPEN", 18: "BPF_BTF_LOAD", 28: "BPF_LINK_CREATE"}
_PROBE_NAMES = {
    "sched_exec": "tracepoint:sched:sched_process_exec",
    "pam_authenticate": "uprobe:libpam:pam_authenticate",
    "pam_acct_mgmt": "uprobe:libpam:pam_acct_mgmt",
}
_CONTAINER_RE = re.compile(
    r"(?:docker[-/]|cri-containerd-|crio-|libpod-|containerd[-/]|/kubepods[^/]*/(?:[^/]+/)*pod[^/]+/)"
    r"([0-9a-f]{64})"
)


def _probe_title(name: str) -> str:
    if name.startswith("io_uring_"):  # a request submitted through a ring (io_uring:io_uring_submit_req)
        return f"tracepoint:io_uring:{name[9:]}"
    return _PROBE_NAMES.get(name, f"tracepoint:syscalls:{name}")


# source.probe of every probe id, named once rather than for each record
_PROBE_TITLES = {pid: _probe_title(name) for pid, name in PROBE_OF_ID.items()}


def _probe_name(pid: int) -> str:
    title = _PROBE_TITLES.get(pid)
    return title if title is not None else _probe_title(str(pid))


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _caps(mask: int) -> list[str]:
    return [name for i, name in enumerate(_CAPS) if mask >> i & 1] + [
        f"CAP_{i}" for i in range(len(_CAPS), 64) if mask >> i & 1
    ]


def own_proc(path: str, pid: int, tid: int) -> str | None:
    """`path` with a link that names the calling process's own files (`/proc/self/...`,
    `/proc/thread-self/...`, `/dev/fd/N`) rewritten to name that process by its pid, or None
    when it has none: resolved in the monitor, such a link names the monitor's own files."""
    if not path.startswith(("/proc/", "/dev/")):
        return None
    for link, own in (("/proc/self", f"/proc/{pid}"), ("/proc/thread-self", f"/proc/{pid}/task/{tid}"),
                      ("/dev/fd", f"/proc/{pid}/fd")):
        if path == link or path.startswith(link + "/"):
            return own + path[len(link):]
    return None


def clean_path(path: str, pid: int = 0, tid: int = 0) -> str:
    """`path` normalised (`//`, `/.`, `..`, a trailing `/`). `..` after a name is resolved as
    the kernel does, through what that name is (a symlink's target), not lexically: the part
    up to the last `..` is resolved on this machine, when the event is decoded (a link naming
    the calling process's files, `/proc/self` ..., through that process, `pid`)."""
    if "//" in path or "/." in path or path.endswith("/") and len(path) > 1:
        if path.startswith("/") and "/../" in path + "/":
            head, _sep, tail = (path + "/").rpartition("/../")
            head = (own_proc(head, pid, tid) if pid else None) or head
            path = os.path.realpath(head + "/..") + "/" + tail
        path = os.path.normpath(path)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
    return path


def _cut(h: Header, path: str) -> bool:
    """Whether `path` is a string the kernel cut short (the record says something was, and
    this string is long enough to be it)."""
    return bool(h.flags & _F_TRUNC) and len(path.encode("utf-8", "surrogateescape")) >= _PIECE


def _clauses_may_hold(ev: Event, clauses: tuple[Clause, ...]) -> bool:
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


def _strings(payload: bytes) -> list[str]:
    """The record's NUL-separated strings (UTF-8 cannot hold a NUL inside a character)."""
    try:
        return payload.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        return [text(x) for x in payload.split(b"\0")]


def _opened_or_given(given: str, opened: str | None, raw: str, h: Header) -> str:
    """An open's path: as given (made absolute), as auditd names it, a symlink in it not
    followed; but the file the kernel opened where the path as given cannot be read without
    the file system as it was: `..` (which follows a symlink before it), a string cut short,
    openat2's RESOLVE_IN_ROOT (whose `..` stops at the directory), or a chroot (the path as
    given is the chroot's, the one opened the host's, ending the same)."""
    if opened is None or opened == given:
        return given
    parts = raw.split("/")
    if ".." in parts or _cut(h, raw) or h.a3 & _RESOLVE_IN_ROOT or not given.startswith("/"):
        return opened
    if given != "/" and opened.endswith(given):
        return opened
    return given


def _as_given(ev: Event, strs: list[str]) -> bool:
    """Whether the event names the path the kernel's clause test saw."""
    f = ev.get("file")
    return f is None or not strs or f.get("path") in (strs[0], None)


_RESOLVE_IN_ROOT = C["SP_RESOLVE_IN_ROOT"]
_UNSETTLED = C["SP_F_DEFER"] | C["SP_F_FD_PATH"]
_SCAN_MAX = 256  # SP_SCAN_MAX in secpolicy.bpf.c


def _settled(h: Header, name: str, strs: list[str]) -> bool:
    """Whether the kernel's clause test was decisive for this record: its paths were read at
    the call, absolute, short enough and free of `//` and `/.` (the kernel sends up any other
    path with every clause left open, for user space to test once it is resolved)."""
    if h.flags & _UNSETTLED:
        return False
    paths = strs[:2] if name == "rename" else strs[:1]
    return all(p[:1] == "/" and len(p) <= _SCAN_MAX and "//" not in p and "/." not in p for p in paths)


def _outcome(name: str, ret: int) -> EventOutcome:
    if name == "auth":
        return {"result": "success" if ret == 0 else "failure"}
    if ret >= 0:
        return {"result": "success"}
    # A non-blocking connect under way (EINPROGRESS) too is a failure with its errno, as the
    # kernel returns it and auditd records it (success=no exit=-115): one meaning in both.
    return {"result": "failure", "errno": -ret}


class Decoder:
    """`decode(chunk, off)` turns one record into an event dict, or None for the internal
    records that only keep the process view current and for records no rule can match."""

    def __init__(self, plan: KernelPlan, host: str, clock: Clock) -> None:
        self.host = host
        self.clock = clock
        self.procs = ProcessView()
        self.names = Names()
        self.delivered: dict[str, int] = {}
        self.internal: dict[str, int] = {}
        self._exe_filter = {t: f.exe for t, f in plan.filters.items() if f.exe is not None}
        self._clauses = {t: f.clauses for t, f in plan.filters.items() if f.clauses is not None}
        self._realpaths: dict[str, str] = {}
        # The files the kernel knows by inode (an inode of two of them is named by the first)
        self.watched = frozenset(watched_files(plan.filter_for("write")))

    def _count(self, what: str) -> None:
        self.internal[what] = self.internal.get(what, 0) + 1

    def decode(self, chunk: bytes, off: int) -> Event | None:
        h = Header._make(HDR.unpack_from(chunk, off))
        etype = h.type
        comm = text(h.comm.split(b"\0", 1)[0])
        s0 = off + HDR.size
        payload = chunk[s0 : s0 + h.str_len - 1] if h.str_len else b""
        if etype in _AUDIT_MSGS:
            return self._audit_message(h, comm, payload)
        strs = _strings(payload) if h.str_len else []
        if etype == _CHDIR:
            self._chdir(h, comm, strs)
            return None
        name = _EVENT_TYPE.get(etype)
        if name is None:
            return None
        if etype == _EXEC:
            p = self._exec(h, comm, strs)
        else:
            p = self.procs.get(h.pid, comm, h.ppid if h.flags & _F_PPID else 0, h.start_time)
            exe_filter = self._exe_filter.get(name)
            if exe_filter is not None and p.exe not in exe_filter:
                return None  # no rule of this type looks at this program
        ev = self._event(name, h, comm, p)
        build = _BUILDERS.get(name)
        if build is not None:
            build(self, ev, h, p, strs)
        clauses = self._clauses.get(name)
        if clauses is not None and not (_settled(h, name, strs) and _as_given(ev, strs)) \
                and not _clauses_may_hold(ev, clauses):
            # Relative or re-read paths reach user space unfiltered; now they are absolute.
            self._count("filtered")
            return None
        self.delivered[name] = self.delivered.get(name, 0) + 1
        return ev

    def _audit_message(self, h: Header, comm: str, payload: bytes) -> Event | None:
        """An account or configuration change told to the audit system: the event the auditd
        reader makes of the record the kernel logs for it, with this record's process."""
        aev = audit_event(h.a0 & 0xFFFF, payload, h.pid, h.uid, h.auid, h.session)
        if aev is None:
            self._count("audit_unmapped")
            return None
        name = aev["type"]
        ev = self._event(name, h, comm, self.procs.get(h.pid, comm, h.ppid if h.flags & _F_PPID else 0, h.start_time))
        if "account" in aev:
            ev["account"] = aev["account"]
        if "config" in aev:
            ev["config"] = aev["config"]
        if "outcome" in aev:
            ev["outcome"] = aev["outcome"]
        tty = aev.get("proc", {}).get("tty")
        if tty:
            ev["proc"]["tty"] = tty
        self.delivered[name] = self.delivered.get(name, 0) + 1
        return ev

    def _chdir(self, h: Header, comm: str, strs: list[str]) -> None:
        """A successful chdir/fchdir: the new working directory as the kernel resolved it
        (without BTF offsets, re-read from /proc when next needed)."""
        self._count("chdir")
        cur = self.procs.get(h.pid, comm, h.ppid, h.start_time)
        cur.cwd = strs[0] if h.flags & _F_KPATH and strs and strs[0] else None

    def _exec(self, h: Header, comm: str, strs: list[str]) -> Proc:
        """The process after exec. With kernel paths, the record holds the executable and the
        working directory as the kernel has them (mm->exe_file: symlinks resolved, the
        interpreter of a script, as auditd names it) and argv as copied onto the new stack;
        otherwise (and for a failed exec) the path as given, resolved here, in the directory
        the process had (a fork runs in its parent's)."""
        pid, ppid = h.pid, h.ppid
        if h.a4 == _EXE_AND_CWD and h.flags & _F_KPATH and len(strs) >= 2:
            new = Proc(strs[0], strs[2:] or [strs[0]], strs[1] or None, comm, ppid, h.start_time)
            self.procs.set(pid, new, h.ts)
            return new
        args = strs[1:] if len(strs) > 1 else None
        # A fork not seen before runs in its parent's directory (a chdir of its own would
        # have been seen); /proc only when neither is known.
        known = self.procs.known(pid, h.start_time) or self.procs.procs.get(ppid)
        cwd = known.cwd if known is not None else None
        if cwd is None:
            cwd = readlink(f"/proc/{pid}/cwd")
        filename = strs[0] if strs else ""
        if not filename.startswith("/"):
            dfd = _signed(h.a0)
            dirpath = cwd if dfd == _AT_FDCWD else readlink(f"/proc/{pid}/fd/{dfd}")
            if dirpath:
                filename = os.path.join(dirpath, filename) if filename else dirpath
        new = Proc(self._exe_of(h, clean_path(filename, pid, h.tid)), args or [filename], cwd, comm, ppid,
                   h.start_time)
        self.procs.set(pid, new, h.ts)
        return new

    def _event(self, name: EventType, h: Header, comm: str, p: Proc) -> Event:
        proc: EventProc = {"pid": h.pid, "tid": h.tid, "comm": comm, "uid": h.uid, "gid": h.gid,
                                "euid": h.euid, "egid": h.egid}
        if p.ppid:
            proc["ppid"] = p.ppid
        if p.exe:
            proc["exe"] = p.exe
        if p.args is not None and p.cmdline is not None:  # both or neither
            proc["args"] = p.args
            proc["cmdline"] = p.cmdline
        if p.cwd:
            proc["cwd"] = p.cwd
        if h.flags & _F_AUDIT:
            if h.auid != _NO_ID:
                proc["auid"] = h.auid
            if h.session != _NO_ID:
                proc["session"] = h.session
        anc = self.procs.ancestors(p)
        if anc:
            proc["ancestors"] = anc
            if anc[0]:
                proc["pexe"] = anc[0]
        cg = self.names.cgroup(h.cgroup_id)
        if cg:
            proc["cgroup"] = cg
            m = _CONTAINER_RE.search(cg)
            if m:
                proc["container_id"] = m.group(1)
        user: EventUser = {"uid": h.euid}
        uname = self.names.user(h.euid)
        if uname:
            user["name"] = uname
        ev: Event = {"type": name, "ts": self.clock.ts(h.ts), "host": self.host, "proc": proc,
                              "user": user, "source": {"name": "ebpf", "probe": _probe_name(h.a5 & 0xFFFFFFFF)}}
        if h.flags & _F_AUDIT and h.auid != _NO_ID:
            # The login user (audit uid and session), as the auditd reader gives it.
            login: EventLogin = {"uid": h.auid}
            lname = self.names.user(h.auid)
            if lname:
                login["name"] = lname
            if h.session != _NO_ID:
                login["session"] = h.session
            ev["login"] = login
        if h.flags & _F_TRUNC:
            self._count("truncated")
        if h.flags & _F_RET:
            ev["outcome"] = _outcome(name, h.ret)
        return ev

    def _exe_of(self, h: Header, path: str) -> str:
        """The executable of an exec record the kernel could not name, from the path as given
        (made absolute). A path through the caller's own descriptors (`/dev/fd/N`, what
        fexecve and execveat(fd, "", AT_EMPTY_PATH) give) is the caller's: after a successful
        exec its /proc/PID/exe, before one its descriptor; never the monitor's own."""
        own = own_proc(path, h.pid, h.tid)
        if own is None:
            return self._realpath(path)
        if h.ret >= 0:  # the exec succeeded: the process runs it now
            exe = readlink(f"/proc/{h.pid}/exe")
            if exe:
                return exe
        real = os.path.realpath(own)
        return real if real != own else path

    def _realpath(self, path: str) -> str:
        """The executable as auditd and /proc/PID/exe name it: symlinks resolved (cached)."""
        real = self._realpaths.get(path)
        if real is None:
            real = os.path.realpath(path) if path.startswith("/") else path
            if len(self._realpaths) > 65536:
                self._realpaths.clear()
            self._realpaths[path] = real
        return real

    def resolve(self, h: Header, p: Proc, dfd: int, path: str) -> str:
        """The absolute path of a record's path string. The kernel resolves descriptors and
        relative paths at the time of the call; only where it could not (no BTF offsets, a
        pseudo file) is /proc read here, as late as that is, falling back to the path as
        given when the process or descriptor is gone."""
        if _cut(h, path):
            # The rest of the name is unknown: neither `..` nor `.` can be resolved in it.
            return path + CUT_MARK
        if path.startswith("/"):
            return clean_path(path, h.pid, h.tid)
        pid = h.pid
        if h.flags & _F_FD_PATH and not path:
            self._count("proc_fd_lookups")
            return readlink(f"/proc/{pid}/fd/{_s32(h.a0)}") or ""
        dfd = _s32(dfd)
        base = self.procs.cwd(pid, p) if dfd == _AT_FDCWD else readlink(f"/proc/{pid}/fd/{dfd}")
        if not base:
            return path
        return clean_path(os.path.join(base, path), h.pid, h.tid) if path else base


# ---------------------------------------------------------------------------------------------
# per-type payloads


@lru_cache(maxsize=1024)
def _flags_of(value: int) -> list[str]:
    """open(2) flags by name (the few combinations programs use, cached; callers copy)."""
    return _open_flags(value)

_Builder = Callable[[Decoder, Event, Header, Proc, list[str]], None]


def _first(strs: list[str]) -> str:
    return strs[0] if strs else ""


def _b_file_open(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    fl = _flags_of(h.a1)
    if h.a3 & _LINKED:
        # A write that reached a watched file through a symlink, a /proc/self/fd link or a hard
        # link: named by the file written, the path the kernel's test passed (the path as given
        # is strs[1]).
        path = _first(strs)
    else:
        given = d.resolve(h, p, h.a0, _first(strs))
        opened = strs[1] if h.a3 & _OPENED and len(strs) > 1 and strs[1].startswith("/") else None
        if h.a3 & _NAMED and opened is not None and given not in d.watched:
            # A watched file opened for writing by another name: the watched file's path (an
            # audit file watch matches the inode, whatever the name), or a ring's write-open
            # through a link: the file it opened.
            path = opened
        else:
            path = _opened_or_given(given, opened, _first(strs), h)
    f: EventFile = {"path": path, "flags": list(fl)}
    if "O_CREAT" in fl and h.a5 & 0xFFFFFFFF not in _MADE:
        f["mode"] = h.a2 & 0o7777
    ev["file"] = f


# mkdir and mknod (O_CREAT|O_DIRECTORY), link and symlink (O_WRONLY|O_CREAT): writes without a
# mode, as the auditd reader makes them
_MADE = frozenset(C[f"SP_P_{n}"] for n in ("MKDIR", "MKDIRAT", "MKNOD", "MKNODAT", "LINK", "LINKAT", "SYMLINK",
                                         "SYMLINKAT", "IO_URING_MKDIRAT", "IO_URING_SYMLINKAT",
                                         "IO_URING_LINKAT"))


def _b_unlink(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    f: EventFile = {"path": d.resolve(h, p, h.a0, _first(strs))}
    if h.a1 & 0x200:
        f["flags"] = ["AT_REMOVEDIR"]
    ev["file"] = f


def _b_rename(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    new = strs[1] if len(strs) > 1 else ""
    ev["file"] = {"path": d.resolve(h, p, h.a0, _first(strs)), "target": d.resolve(h, p, h.a1, new)}


def _b_chmod(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    path = d.resolve(h, p, h.a0, _first(strs))
    ev["file"] = {"path": path, "mode": h.a1 & 0o7777} if path else {"mode": h.a1 & 0o7777}


def _b_chown(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    path = d.resolve(h, p, h.a0, _first(strs))
    ev["file"] = {"uid": _s32(h.a1), "gid": _s32(h.a2)}
    if path:
        ev["file"]["path"] = path


def _ip(family: int, lo: int, hi: int) -> str | None:
    if family == 2:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", lo & 0xFFFFFFFF))
    if family == 10:
        return socket.inet_ntop(socket.AF_INET6, struct.pack("<QQ", lo, hi))
    return None


_FAMILIES: dict[int, Literal["inet", "inet6", "unix"]] = {2: "inet", 10: "inet6", 1: "unix"}
_PROTOCOLS: dict[int, Literal["tcp", "udp"]] = {1: "tcp", 2: "udp"}
_Sides = tuple[Literal["src_ip", "dst_ip"], Literal["src_port", "dst_port"], Literal["src_ip", "dst_ip"],
               Literal["src_port", "dst_port"]]
_ACCEPT_SIDES: _Sides = ("src_ip", "src_port", "dst_ip", "dst_port")  # remote ip, port; local ip, port
_CONNECT_SIDES: _Sides = ("dst_ip", "dst_port", "src_ip", "src_port")


def _net(h: Header, strs: list[str], accept: bool) -> tuple[EventNet, str | None]:
    family = h.a0 & 0xFFFF
    stype = (h.a0 >> 16) & 0xFFFF
    lport = (h.a0 >> 32) & 0xFFFF
    rport = (h.a0 >> 48) & 0xFFFF
    net: EventNet = {}
    name = _FAMILIES.get(family)
    if name is not None:  # accept() on another family (AF_ALG, AF_VSOCK ...) has none the Event names
        net["family"] = name
    proto = _PROTOCOLS.get(stype & 0xF)
    if proto and family != 1:
        net["protocol"] = proto
    remote = _ip(family, h.a1, h.a2)
    local = _ip(family, h.a3, h.a4) if (h.a3 or h.a4 or lport) else None
    # connect: we are the source; accept: the peer is the source and we are the destination.
    r_ip, r_port, l_ip, l_port = _ACCEPT_SIDES if accept else _CONNECT_SIDES
    if remote is not None:
        net[r_ip] = remote
        net[r_port] = rport
    if local is not None:
        net[l_ip] = local
    if lport:
        net[l_port] = lport
    unix_path = strs[0] if family == 1 and strs else None
    return net, unix_path


def _b_connect(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    net, unix_path = _net(h, strs, accept=False)
    ev["net"] = net
    if unix_path is None:
        return
    if h.a2 & 1:  # an abstract name (sun_path starts with a NUL), as `ss` shows it
        ev["file"] = {"path": "@" + unix_path}
    elif unix_path:  # a socket file, relative to the working directory when not absolute
        ev["file"] = {"path": d.resolve(h, p, _AT_FDCWD, unix_path)}


def _b_accept(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    ev["net"] = _net(h, strs, accept=True)[0]


def _b_setuid(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    ev["cred"] = {"uid": h.a3 & 0xFFFFFFFF, "euid": h.a3 >> 32, "gid": h.a4 & 0xFFFFFFFF, "egid": h.a4 >> 32}


def _b_capset(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    ev["cred"] = {"uid": h.uid, "euid": h.euid, "gid": h.gid, "egid": h.egid, "caps": _caps(h.a0)}


def _b_bpf(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    cmd = h.a0
    b: EventBpf = {"cmd": _BPF_CMDS.get(cmd, f"BPF_CMD_{cmd}")}
    if cmd == 5:
        b["prog_type"] = _PROG_TYPES[h.a1] if h.a1 < len(_PROG_TYPES) else str(h.a1)
    elif cmd == 0:
        b["map_type"] = _MAP_TYPES[h.a1] if h.a1 < len(_MAP_TYPES) else str(h.a1)
    if strs and strs[0]:
        b["name"] = strs[0]
    ev["bpf"] = b


def _b_setxattr(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    f: EventFile = {}
    path = d.resolve(h, p, h.a0, _first(strs))
    if path:
        f["path"] = path
    if len(strs) > 1 and strs[1]:
        f["xattr"] = strs[1]
    ev["file"] = f


def _b_module(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    if PROBE_OF_ID.get(h.a5 & 0xFFFFFFFF) == "finit_module":
        path = d.resolve(h, p, h.a0, _first(strs))
        if path:
            ev["file"] = {"path": path}
            name = path.rsplit("/", 1)[-1]
            for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
                name = name.removesuffix(ext)
            ev["module"] = {"name": name}
            return
    ev["module"] = {}


def _b_ptrace(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    ev["ptrace"] = {"request": h.a0, "target_pid": _s32(h.a1)}


def _b_mount(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    strs = strs + [""] * (3 - len(strs))
    ev["file"] = {"path": d.resolve(h, p, _AT_FDCWD, strs[0])}
    m: EventMount = {"flags": h.a1}
    if strs[1]:
        m["source"] = strs[1]
    if strs[2]:
        m["fstype"] = strs[2]
    ev["mount"] = m


def _b_auth(d: Decoder, ev: Event, h: Header, p: Proc, strs: list[str]) -> None:
    strs = strs + [""] * (5 - len(strs))
    acct = PROBE_OF_ID.get(h.a5 & 0xFFFFFFFF) == "pam_acct_mgmt"
    auth: EventAuth = {"result": "success" if h.ret == 0 else "failure",
                       "method": "PAM:accounting" if acct else "PAM:authentication"}
    if strs[0]:
        auth["service"] = strs[0]
    if strs[1]:
        auth["user"] = strs[1]
    if strs[2]:
        auth["rhost"] = strs[2]
    if strs[4]:
        ev["proc"]["tty"] = strs[4]  # PAM_TTY: the terminal of the session being opened
    ev["auth"] = auth


_BUILDERS: dict[str, _Builder] = {
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
    "setxattr": _b_setxattr,
}
