"""The decoder's view of processes, users and cgroups: process context by pid kept current by
exec, chdir and exit records, user names and cgroup paths by id, and the boot-time clock."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

from secpolicy.events.auditd import decode_value

_EXECS_KEPT = 4  # execs of one process remembered, for children forked before them

__all__ = ["Clock", "Names", "Proc", "ProcessView", "readlink", "text"]


def text(raw: bytes) -> str:
    """Bytes from the kernel (names, arguments, comm) as the auditd reader renders a hex-encoded
    value: UTF-8, and each byte that is not shown as \\xNN, so that two names differing in such
    bytes stay two names, the same live and in replay."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return decode_value(raw.hex()) or ""


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class Proc:
    """What the decoder knows of one process."""

    __slots__ = ("ancestors", "args", "cmdline", "comm", "cwd", "exe", "ppid", "start")

    def __init__(self, exe: str | None, args: list[str] | None, cwd: str | None, comm: str,
                 ppid: int, start: int = 0) -> None:
        self.exe = exe
        self.args = args
        self.cmdline = " ".join(args) if args is not None else None
        self.cwd = cwd
        self.comm = comm
        self.ppid = ppid
        # the kernel's start time of the process (0 when unknown): a pid reused by another
        # process has another
        self.start = start
        # (generation of the view, executables of the ancestors) as last computed
        self.ancestors: tuple[int, list[str]] | None = None


class ProcessView:
    """Process context by pid, kept current by exec and chdir records; /proc is read only for
    processes first seen without an exec (started before the monitor, or forked). No exit
    records: a record whose start time differs from the one known for its pid is of another
    process (the pid was reused), and processes gone are swept out when the view grows."""

    def __init__(self, max_depth: int = 12, max_size: int = 32768) -> None:
        self.procs: dict[int, Proc] = {}
        self.max_depth = max_depth
        self.max_size = max_size
        self.proc_reads = 0
        self.sweeps = 0
        # Bumped whenever a process starts, changes program, is reparented or goes: the
        # ancestors computed before may have changed (they are cached per process otherwise).
        self.generation = 0
        # pid -> [(exec time, what it ran before)], the last few execs of each process
        self._before: dict[int, list[tuple[int, Proc]]] = {}

    def set(self, pid: int, p: Proc, when: int = 0) -> None:
        """`pid` now runs `p` (an exec at `when`, boot-clock ns). What it ran before is kept
        for a while: a child forked before this exec runs that program, not this one."""
        if len(self.procs) >= self.max_size:
            self._sweep()
        old = self.procs.get(pid)
        if old is not None and when and (not p.start or old.start in (0, p.start)):
            self._before[pid] = [*self._before.get(pid, [])[-(_EXECS_KEPT - 1):], (when, old)]
        self.procs[pid] = p
        self.generation += 1

    def _as_at(self, parent_pid: int, parent: Proc, start: int) -> Proc:
        """What `parent_pid` ran at `start` (a child's start time: the fork): the program it
        had before the first exec after that, else what it runs now."""
        for when, before in self._before.get(parent_pid, ()):
            if start and when > start:
                return before
        return parent

    def known(self, pid: int, start: int) -> Proc | None:
        """What is known of `pid` if it is the same process (same start time)."""
        p = self.procs.get(pid)
        if p is not None and start and p.start and p.start != start:
            return None
        return p

    def _sweep(self) -> None:
        """Forget the processes that are gone (their /proc entry too)."""
        self.sweeps += 1
        for pid in [pid for pid in self.procs if not os.path.exists(f"/proc/{pid}")]:
            del self.procs[pid]
            self._before.pop(pid, None)
        self.generation += 1

    def _from_proc(self, pid: int, comm: str, ppid: int) -> Proc | None:
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
        real_comm = text(stat[stat.find(b"(") + 1 : close])
        if comm and real_comm != comm:
            return None  # the pid was reused since the event: /proc tells of another process
        if not ppid and len(fields) > 1:
            ppid = int(fields[1])
        args = [text(a) for a in raw.split(b"\0")[:-1]] if raw else None
        return Proc(readlink(f"{base}/exe"), args, readlink(f"{base}/cwd"), real_comm, ppid)

    def get(self, pid: int, comm: str = "", ppid: int = 0, start: int = 0) -> Proc:
        p = self.known(pid, start)
        if p is not None:
            if ppid and p.ppid != ppid:
                p.ppid = ppid  # reparented
                self.generation += 1
            return p
        # Not seen to exec (it started before the monitor, or is a fork that has not exec'd):
        # its own /proc entry while it lives; else its parent's program as it was when the
        # child started (a fork without exec runs it, whatever the parent exec'd since).
        p = self._from_proc(pid, comm, ppid)
        if p is None or p.exe is None:  # gone, or a zombie whose exe cannot be read
            parent = self.procs.get(ppid) if ppid else None
            if parent is not None:
                parent = self._as_at(ppid, parent, start)
            p = Proc(parent.exe if parent else None, parent.args if parent else None,
                     (p.cwd if p is not None else None) or (parent.cwd if parent else None), comm, ppid)
        p.start = start
        if len(self.procs) >= self.max_size:
            self._sweep()
        self.procs[pid] = p
        self.generation += 1
        return p

    def cwd(self, pid: int, p: Proc) -> str | None:
        if p.cwd is None:
            p.cwd = readlink(f"/proc/{pid}/cwd")
        return p.cwd

    def ancestors(self, p: Proc) -> list[str]:
        """Executables of the parent, grandparent ... (shared between events: not to be
        changed by callers)."""
        cached = p.ancestors
        if cached is not None and cached[0] == self.generation:
            return cached[1]
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
                self.generation += 1
            if a.exe:
                out.append(a.exe)
            if ppid == 1:
                break
            ppid = a.ppid
        p.ancestors = (self.generation, out)
        return out




class Names:
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


class Clock:
    """Kernel boot-time nanoseconds to canonical UTC timestamps."""

    def __init__(self) -> None:
        best: tuple[int, int] | None = None
        for _ in range(5):
            t0 = time.time_ns()
            b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            t1 = time.time_ns()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, (t0 + t1) // 2 - b)
        assert best is not None
        self.offset = best[1]
        # (second, its formatted prefix), replaced as one object: two threads format times.
        self._last: tuple[int, str] = (-1, "")

    def ts(self, boot_ns: int) -> str:
        sec, ns = divmod(boot_ns + self.offset, 1_000_000_000)
        last = self._last
        if sec != last[0]:
            last = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
            self._last = last
        return f"{last[1]}.{ns:09d}Z"

    def now(self) -> str:
        return self.ts(time.clock_gettime_ns(time.CLOCK_BOOTTIME))
