"""Live process facts: `processes` with decoded capability sets (/proc/PID/status) and
`listening` sockets from /proc/net/{tcp,udp}[6] mapped to the processes that own them."""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import INT, STR, ListType, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import read_proc, require_proc, text_lines
from secpolicy.kernel_names import CAPABILITIES

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["CAPABILITIES", "PROCESS", "SOCKET", "decode_caps", "parse_net", "register"]


PROCESS = ObjectType(
    "process",
    {
        "pid": INT,
        "ppid": INT,
        "comm": STR,
        "exe": STR,
        "cmdline": STR,
        "uid": INT,
        "euid": INT,
        "gid": INT,
        "caps_eff": ListType(STR),
        "caps_prm": ListType(STR),
        "caps_bnd": ListType(STR),
        "caps_inh": ListType(STR),
        "caps_amb": ListType(STR),
    },
    doc="a running process (live): identity and capability sets decoded to CAP_ names",
    field_docs={"exe": "the executable (null for kernel threads or when unreadable)"},
)

SOCKET = ObjectType(
    "socket",
    {
        "protocol": STR,
        "address": STR,
        "port": INT,
        "inode": INT,
        "uid": INT,
        "pid": INT,
        "process": STR,
    },
    doc="a listening TCP socket or a bound UDP socket (/proc/net)",
    field_docs={"pid": "owning process (live only; null when not found or under --root)"},
)


def decode_caps(mask: str | int) -> tuple[str, ...]:
    """A CapEff-style hex mask -> CAP_ names, lowest bit first; unknown bits as cap_N."""
    value = int(mask, 16) if isinstance(mask, str) else mask
    out = []
    bit = 0
    while value:
        if value & 1:
            out.append(CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"cap_{bit}")
        value >>= 1
        bit += 1
    return tuple(out)


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int | None
    comm: str
    exe: str | None
    cmdline: str
    uid: int | None
    euid: int | None
    gid: int | None
    caps_eff: tuple[str, ...]
    caps_prm: tuple[str, ...]
    caps_bnd: tuple[str, ...]
    caps_inh: tuple[str, ...]
    caps_amb: tuple[str, ...]

    def describe(self) -> str:
        return f"process {self.pid} {self.comm}"

    def where(self, name: str, *args: Any) -> str | None:
        return f"/proc/{self.pid}/status"


def _process(pid: str) -> Process | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            return None  # exited while we walked /proc
        raise EvaluationError(f"processes: cannot read /proc/{pid}/status: {e.strerror}") from None
    try:
        exe: str | None = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        cmdline = ""
    uids = status.get("Uid", "").split()
    gids = status.get("Gid", "").split()
    caps = {
        k: decode_caps(status.get(k, "0").strip() or "0")
        for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")
    }
    return Process(
        pid=int(pid),
        ppid=int(status["PPid"]) if status.get("PPid", "").strip().isdigit() else None,
        comm=status.get("Name", "").strip(),
        exe=exe,
        cmdline=cmdline,
        uid=int(uids[0]) if uids else None,
        euid=int(uids[1]) if len(uids) > 1 else None,
        gid=int(gids[0]) if gids else None,
        caps_eff=caps["CapEff"],
        caps_prm=caps["CapPrm"],
        caps_bnd=caps["CapBnd"],
        caps_inh=caps["CapInh"],
        caps_amb=caps["CapAmb"],
    )


def _proc_hides_processes() -> str | None:
    """Why /proc may not list every process to this scan, or None. procfs mounted with
    `hidepid=` other than 0 shows another user's processes only to a member of its `gid=`
    group or to a process that may ptrace them (CAP_SYS_PTRACE): anyone else sees fewer
    processes and no error (has_pid_permissions in fs/proc/base.c)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            mounts = [line.split() for line in f]
    except OSError as e:
        return f"cannot read /proc/self/mountinfo: {e.strerror}"
    proc = [m for m in mounts if len(m) > 4 and m[4] == "/proc" and "-" in m]
    if not proc:
        return None
    fields = proc[-1]  # the last mount on /proc is the one in force
    options = dict(o.partition("=")[::2] for o in fields[-1].split(","))
    hidepid = options.get("hidepid", "0")
    if hidepid in ("0", "off"):
        return None
    gid = options.get("gid")
    if gid is not None and gid.isdigit() and int(gid) in (os.getegid(), *os.getgroups()):
        return None
    me = _process(str(os.getpid()))
    if me is not None and "CAP_SYS_PTRACE" in me.caps_eff:
        return None
    return (f"/proc is mounted with hidepid={hidepid}, which hides other users' processes from"
            f" uid {os.geteuid()} without CAP_SYS_PTRACE; scan with that capability (root normally has it)")


def collect_processes(ctx: FactContext) -> list[Process]:
    ctx.require_live("processes")
    hidden = _proc_hides_processes()
    if hidden is not None:
        raise EvaluationError(f"processes: {hidden}")
    out = []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        proc = _process(pid)
        if proc is not None:
            out.append(proc)
    return out


# --- sockets -------------------------------------------------------------------------------------------
_TCP_LISTEN, _UDP_UNCONN = "0A", "07"


def _addr(hexaddr: str) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(
        struct.pack(">I", struct.unpack("<I", raw[i : i + 4])[0]) for i in range(0, len(raw), 4)
    )
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


@dataclass(frozen=True)
class Socket:
    protocol: str
    address: str
    port: int
    inode: int
    uid: int
    pid: int | None
    process: str | None
    origin: str

    def describe(self) -> str:
        return f"{self.protocol} {self.address}:{self.port}"

    def where(self, name: str, *args: Any) -> str | None:
        return self.origin


def parse_net(text: str, protocol: str, path: str) -> list[tuple[str, int, int, int, str]]:
    """(address, port, inode, uid, path:line) of listening/bound sockets in one /proc/net table."""
    want = _TCP_LISTEN if protocol.startswith("tcp") else _UDP_UNCONN
    out = []
    for n, line in enumerate(text_lines(text), 1):  # the kernel ends each entry with \n
        parts = line.split()
        if len(parts) < 10 or parts[0] == "sl" or not parts[0].endswith(":"):
            continue
        if parts[3] != want:
            continue
        address, port = _addr(parts[1])
        out.append((address, port, int(parts[9]), int(parts[7]), f"{path}:{n}"))
    return out


def _socket_owners() -> dict[int, tuple[int, str]]:
    owners: dict[int, tuple[int, str]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        comm = None
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                if comm is None:
                    try:
                        with open(f"/proc/{pid}/comm") as f:
                            comm = f.read().strip()
                    except OSError:
                        comm = ""
                owners.setdefault(int(target[8:-1]), (int(pid), comm))
    return owners


def collect_listening(ctx: FactContext) -> list[Socket]:
    require_proc(ctx, "/proc/net/tcp", "listening")
    owners = _socket_owners() if ctx.live else {}
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        path = f"/proc/net/{proto}"
        for address, port, inode, uid, origin in parse_net(read_proc(ctx, path) or "", proto, path):
            pid, comm = owners.get(inode, (None, None))
            out.append(Socket(proto, address, port, inode, uid, pid, comm, origin))
    return out


def register(reg: FactRegistry) -> None:
    reg.register(
        "processes",
        collect_processes,
        returns=ListType(PROCESS),
        doc="running processes and capabilities",
        live_only=True,
    )
    reg.register(
        "listening",
        collect_listening,
        returns=ListType(SOCKET),
        doc="listening TCP and bound UDP sockets",
    )
