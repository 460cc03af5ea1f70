"""From one grouped audit event to at most one Event: a builder per syscall (the builders table
below, one function per argument layout) and per user-space record type (PAM, shadow-utils, sudo)."""

from __future__ import annotations

import posixpath
import re
import socket
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from secpolicy.events.audit_names import ARCH_X86_64, SYSCALLS, record_type_number
from secpolicy.kernel_names import BPF_CMDS as _BPF_CMDS
from secpolicy.kernel_names import CAPABILITIES as _CAPS
from secpolicy.kernel_names import open_flags as _open_flags
from secpolicy.models import (
    Event,
    EventAccount,
    EventAuth,
    EventBpf,
    EventConfig,
    EventCred,
    EventFile,
    EventLogin,
    EventMount,
    EventNet,
    EventOutcome,
    EventProc,
    EventPtrace,
    EventType,
    EventUser,
    OutcomeResult,
)

__all__ = ["MAX_ARGS", "Names", "Rec", "build_event", "decode_value", "parse_fields", "plain_value", "timestamp"]

MAX_ARGS = 1 << 16  # arguments kept of one execve (the kernel's MAX_ARG_STRINGS is 0x7FFFFFFF)
_UNSET = frozenset({"4294967295", "-1", "unset", "?", ""})

# Records of one audit event: (type, body, ENRICHED interpretations, position in the input).
Rec = tuple[str, str, str, int]


class Names(Protocol):
    """User names by uid (an account database)."""

    def get(self, uid: int) -> str | None: ...


_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_ARG_RE = re.compile(r"[0-9a-fA-F]{1,16}")
_NONE_VALUES = frozenset({"(null)", "?", "(none)", ""})


def _kv(body: str) -> dict[str, str]:
    """`key=value` pairs of a kernel record (values never hold spaces: the kernel hex-encodes
    them); the first of a repeated key wins, as in the audit tools' own parser."""
    out: dict[str, str] = {}
    for part in body.split(" "):
        k, _, v = part.partition("=")
        if k not in out:
            out[k] = v
    return out


_KV_RE = re.compile(r"""([A-Za-z0-9_\-\[\]]+)=("[^"]*"?|'[^']*'?|[^ ]*)""")


def parse_fields(text: str, _depth: int = 0) -> dict[str, str]:
    """`key=value` pairs of a user-space record body: values bare, "double-quoted" (kept with
    their quotes so hex and quoted values stay distinguishable) or 'single-quoted' (the nested
    `msg='...'`, whose pairs are merged in). Words without `=` are ignored (AVC prose), except
    after `op=`, where user-space tools write operations with spaces (`op=adding user`)."""
    out: dict[str, str] = {}
    matches = list(_KV_RE.finditer(text))
    for k, m in enumerate(matches):
        key, value = m.group(1), m.group(2)
        if value[:1] == "'":
            inner = value[1:-1] if len(value) > 1 and value[-1] == "'" else value[1:]
            if key == "msg" and _depth == 0:
                for ik, iv in parse_fields(inner, 1).items():
                    out.setdefault(ik, iv)
            elif key not in out:
                out[key] = inner
            continue
        if value[:1] != '"':
            if key == "op":
                nxt = matches[k + 1].start() if k + 1 < len(matches) else len(text)
                gap = text[m.end() : nxt].strip()
                if gap and "=" not in gap and "'" not in gap:
                    value = f"{value} {gap}"
            # `(hostname=?, addr=?, terminal=cron res=success)` in old PAM records.
            value = value.rstrip(",") if value.startswith("(") else value.rstrip(",)")
        if key not in out:
            out[key] = value
    return out


def decode_value(value: str | None) -> str | None:
    """The text of a field: "quoted" values unquoted, hex-encoded values (names, arguments,
    proctitle) decoded (bytes that are not UTF-8 shown as \\xNN); `(null)`, `?`, absent: None."""
    if value is None or value in _NONE_VALUES:
        return None
    if value[0] == '"':
        return value[1:-1] if len(value) >= 2 and value[-1] == '"' else value[1:]
    if len(value) % 2 == 0 and _HEX_RE.fullmatch(value):
        return bytes.fromhex(value).decode("utf-8", "backslashreplace")
    return value


def plain_value(value: str | None) -> str | None:
    """The text of a field auditd never hex-encodes (ids, addresses, terminals, operations):
    unquoted, `?`/`(null)` as None, and no hex decoding (`id=1001` is a number, not bytes)."""
    if value is None or value in _NONE_VALUES:
        return None
    if value[0] == '"':
        return value[1:-1] if len(value) >= 2 and value[-1] == '"' else value[1:]
    return value


def _u32(value: str) -> int | None:
    """A decimal id or count that fits 32 bits (pids, uids, sessions), else None."""
    if len(value) <= 10 and value.isdigit() and value.isascii():
        n = int(value)
        if n <= 0xFFFFFFFF:
            return n
    return None


def _arg(value: str | None) -> int | None:
    """A syscall argument (a0..a3: hexadecimal, at most 64 bits)."""
    if value is None or _ARG_RE.fullmatch(value) is None:
        return None
    return int(value, 16)


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _result(res: str | None) -> OutcomeResult | None:
    if res is None:
        return None
    v = res.strip("'\"").lower()
    if v in ("success", "yes", "1"):
        return "success"
    if v in ("failed", "failure", "no", "0", "fail"):
        return "failure"
    return None


def _join_path(cwd: str | None, name: str | None) -> str | None:
    if name is None:
        return None
    if name[:1] != "/":
        if not cwd:
            return None
        name = cwd.rstrip("/") + "/" + name
    elif "/." not in name and "//" not in name and not name.endswith("/"):
        return name
    # Lexical normalisation only: the log's file system is not ours to resolve symlinks in.
    norm = posixpath.normpath(name)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _audit_keys(value: str | None) -> list[str]:
    """The keys of the audit rules that matched (`key="x"`, or hex with 0x01 between keys)."""
    if value is None or value == "(null)" or not value:
        return []
    if value[0] == '"':
        inner = value[1:-1] if len(value) >= 2 and value[-1] == '"' else value[1:]
        return [inner] if inner else []
    decoded = decode_value(value) or ""
    return [k for k in decoded.split("\x01") if k][:64]


def _parse_sockaddr(hexstr: str) -> dict[str, Any] | None:
    """Family, address and port of a SOCKADDR record's `saddr` (struct sockaddr in hex)."""
    family = hexstr[:4].upper()
    try:
        if family == "0100":
            return {"family": "unix"}
        if family == "0200" and len(hexstr) >= 16:
            ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(hexstr[8:16]))
            return {"family": "inet", "port": int(hexstr[4:8], 16), "ip": ip}
        if family == "0A00" and len(hexstr) >= 48:
            ip = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexstr[16:48]))
            return {"family": "inet6", "port": int(hexstr[4:8], 16), "ip": ip}
    except ValueError:
        return None
    return None


_FLAG_CACHE: dict[int, list[str]] = {}


def _flags(value: int) -> list[str]:
    names = _FLAG_CACHE.get(value)
    if names is None:
        names = _open_flags(value)
        if len(_FLAG_CACHE) < 4096:
            _FLAG_CACHE[value] = names
    return list(names)


_WRITE_FLAGS = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"})
_TS_CACHE: dict[int, str] = {}


def timestamp(sec: int, milli: int) -> str:
    """The Event timestamp of an audit time stamp (seconds and milliseconds)."""
    base = _TS_CACHE.get(sec)
    if base is None:
        if len(_TS_CACHE) > 8192:
            _TS_CACHE.clear()
        base = _TS_CACHE[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{base}.{milli:03d}000000Z"


class _Ctx:
    """One audit event being turned into an Event: its records by type, id and time."""

    __slots__ = ("_by", "_cwd", "_paths", "at_cwd", "bad_at", "key", "milli", "names", "recs", "sec")

    def __init__(self, key: str, sec: int, milli: int, recs: list[Rec], names: Names | None,
                 bad_at: Callable[[int, str], None]) -> None:
        self.names = names
        self.bad_at = bad_at
        self.key = key
        self.sec = sec
        self.milli = milli
        self.recs = recs
        self._by: dict[str, list[Rec]] | None = None
        self._paths: list[tuple[str | None, str, str]] | None = None
        self._cwd: str | None | bool = False
        # Whether relative names are relative to the working directory: (the path argument,
        # rename's new path). Not when an *at syscall was given a directory descriptor.
        self.at_cwd = (True, True)

    @property
    def by(self) -> dict[str, list[Rec]]:
        """The records by type (built on first use: single-record events never need it)."""
        by = self._by
        if by is None:
            by = self._by = {}
            for r in self.recs:
                lst = by.get(r[0])
                if lst is None:
                    by[r[0]] = [r]
                else:
                    lst.append(r)
        return by

    def first(self, rtype: str) -> Rec | None:
        lst = self.by.get(rtype)
        return lst[0] if lst else None

    def base(self, etype: EventType, probe: str) -> Event:
        ev: Event = {"type": etype, "ts": timestamp(self.sec, self.milli)}
        slash = self.key.rfind("/")
        if slash > 0:
            ev["host"] = self.key[:slash]
        ev["source"] = {"name": "auditd", "probe": probe, "records": [self.key]}
        return ev

    def name(self, uid: int, interp: str, field_name: str) -> str | None:
        """A user name: the log's own interpretation when ENRICHED, else the account database."""
        if interp:
            v = _interp_value(interp, field_name)
            if v is not None:
                return _name_of(v)
        names = self.names
        return names.get(uid) if names is not None and uid >= 0 else None

    def bad(self, rec: Rec, why: str) -> None:
        self.bad_at(rec[3], why)

    def paths(self) -> list[tuple[str | None, str, str]]:
        """(absolute path, name type, item number) of the PATH records, relative names
        resolved against CWD."""
        if self._paths is None:
            cwd = self.cwd()
            out = []
            for r in self.by.get("PATH", ()):
                body = r[1]
                m = _PATH_RE.match(body)
                nt = body.find(" nametype=") if m is not None else -1
                if nt >= 0:
                    item, name = m.groups()  # type: ignore[union-attr]
                    end = body.find(" ", nt + 10)
                    nametype = body[nt + 10 : end] if end >= 0 else body[nt + 10 :]
                else:
                    f = _kv(r[1])
                    item, name = f.get("item", ""), f.get("name")
                    nametype = f.get("nametype") or f.get("objtype") or "NORMAL"
                nametype = nametype.upper()
                text = decode_value(name)
                at_cwd = self.at_cwd[1] if nametype == "CREATE" else self.at_cwd[0]
                if not at_cwd and text is not None and nametype == "PARENT" and (text[-1:] != "/" or text == "/"):
                    # For a name without a directory part the kernel logs the working directory
                    # as its parent (audit_log_name), which a directory descriptor makes wrong;
                    # a parent taken from the name itself ends in "/".
                    text = None
                out.append((_join_path(cwd if at_cwd else None, text), nametype, item))
            self._paths = out
        return self._paths

    def cwd(self) -> str | None:
        """The working directory of the CWD record (decoded once)."""
        if self._cwd is False:
            rec = self.first("CWD")
            if rec is None:
                self._cwd = None
            else:
                body = rec[1]
                self._cwd = decode_value(body[4:] if body.startswith("cwd=") and " " not in body else _kv(body).get("cwd"))
        return self._cwd  # type: ignore[return-value]


_PATH_RE = re.compile(r"item=(\d{1,10}) name=(\S+) ")


_NAMES: dict[str, str | None] = {}


def _name_of(interpreted: str) -> str | None:
    """The user name in an ENRICHED interpretation (`"root"`), None for `"unset"` and for
    `"unknown(4242)"` (the recording host had no name for it)."""
    name = _NAMES.get(interpreted)
    if name is None and interpreted not in _NAMES:
        v = interpreted.strip('"')
        name = None if (not v or v == "unset" or v.startswith("unknown(")) else v
        if len(_NAMES) < 4096:
            _NAMES[interpreted] = name
    return name


def _interp_value(interp: str, name: str) -> str | None:
    """One field of an ENRICHED record's interpretations (`UID="root" AUID="alice" ...`)."""
    if interp.startswith(name) and interp[len(name) : len(name) + 1] == "=":
        i = len(name) + 1
    else:
        i = interp.find(f" {name}=")
        if i < 0:
            return None
        i += len(name) + 2
    j = interp.find(" ", i)
    return interp[i:j] if j >= 0 else interp[i:]


_PROC_IDS: tuple[tuple[str, Literal["pid", "ppid", "uid", "euid", "gid", "egid"]], ...] = (
    ("pid", "pid"), ("ppid", "ppid"), ("uid", "uid"), ("euid", "euid"), ("gid", "gid"), ("egid", "egid"))


def _actor(ctx: _Ctx, rec: Rec, f: dict[str, str], user_space: bool) -> tuple[EventProc, EventUser, EventLogin]:
    """`proc`, `user` (the acting user: euid, or uid for user-space records) and `login`
    (audit login uid, name, session; empty when unset) of one record's fields."""
    proc: EventProc = {}
    for src, dst in _PROC_IDS:
        v = f.get(src)
        if v is None or v in _UNSET:
            continue
        n = _u32(v)
        if n is None:
            ctx.bad(rec, f"{src}={v[:32]} is not a 32-bit number: field left out")
            continue
        proc[dst] = n
    login = _login(ctx, rec, proc, f.get("auid"), f.get("ses"))
    comm = decode_value(f.get("comm"))
    if comm is not None:
        proc["comm"] = comm
    exe = decode_value(f.get("exe"))
    if exe is not None:
        proc["exe"] = exe
    tty = plain_value(f.get("tty") if "tty" in f else f.get("terminal"))
    if tty is not None:
        proc["tty"] = tty
    user: EventUser = {}
    uid, label = (proc.get("uid"), "UID") if user_space or "euid" not in proc else (proc["euid"], "EUID")
    if uid is not None:
        user["uid"] = uid
        name = ctx.name(uid, rec[2], label)
        if name:
            user["name"] = name
    return proc, user, login


def _login(ctx: _Ctx, rec: Rec, proc: EventProc, auid: str | None, ses: str | None) -> EventLogin:
    login: EventLogin = {}
    if auid is not None and auid not in _UNSET:
        n = _u32(auid)
        if n is None:
            ctx.bad(rec, f"auid={auid[:32]} is not a 32-bit number: field left out")
        else:
            proc["auid"] = login["uid"] = n
            name = ctx.name(n, rec[2], "AUID")
            if name:
                login["name"] = name
    if ses is not None and ses not in _UNSET:
        n = _u32(ses)
        if n is None:
            ctx.bad(rec, f"ses={ses[:32]} is not a 32-bit number: field left out")
        else:
            proc["session"] = n
            if login:
                login["session"] = n
    return login


def _attach(ev: Event, proc: EventProc, user: EventUser, login: EventLogin) -> None:
    if proc:
        ev["proc"] = proc
    if user:
        ev["user"] = user
    if login:
        ev["login"] = login


# SYSCALL records: syscall name -> (event type, builder of the type's own fields).
SyscallBuilder = Callable[[_Ctx, Event, dict[str, str]], None]


def _pick(ctx: _Ctx, *want: str) -> str | None:
    paths = ctx.paths()
    for nt in want:
        for path, nametype, _ in paths:
            if nametype == nt and path is not None:
                return path
    return None


def _open_file(ev: Event, ctx: _Ctx, flags: int | None, mode: int | None, creates: bool = True) -> None:
    file: EventFile = {}
    if flags is not None:
        names = _flags(flags)
        file["flags"] = names
        if not _WRITE_FLAGS.isdisjoint(names):
            ev["type"] = "write"
        if creates and mode is not None and "O_CREAT" in names:
            file["mode"] = mode & 0o7777
    path = _pick(ctx, "CREATE", "NORMAL", "UNKNOWN") or _pick(ctx, "PARENT")
    if path:
        file["path"] = path
    if file:
        ev["file"] = file


def _opening(flags: str | int, mode: str | None, creates: bool = True) -> SyscallBuilder:
    """The builder of an open-like syscall: its flags in argument `flags` (a0..a3) or always
    these flags (creat, truncate, mkdir), the mode in argument `mode`."""

    def build(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
        fl = _arg(f.get(flags)) if isinstance(flags, str) else flags
        _open_file(ev, ctx, fl, _arg(f.get(mode)) if mode else None, creates)

    return build


def _b_openat2(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    # The flags are in a struct in user memory; the OPENAT2 record carries them when present.
    rec = ctx.first("OPENAT2")
    flags = _arg(_kv(rec[1]).get("oflag")) if rec else None
    mode = _arg(_kv(rec[1]).get("mode")) if rec else None
    _open_file(ev, ctx, flags, mode)


def _b_delete(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    path = _pick(ctx, "DELETE", "NORMAL", "UNKNOWN")
    if path:
        ev["file"] = {"path": path}


def _b_rename(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    file: EventFile = {}
    old = _pick(ctx, "DELETE")
    new = _pick(ctx, "CREATE")
    if old:
        file["path"] = old
    if new:
        file["target"] = new
    if file:
        ev["file"] = file


def _chmod(ctx: _Ctx, ev: Event, mode: int | None) -> None:
    file: EventFile = {}
    if mode is not None:
        file["mode"] = mode & 0o7777
    path = _pick(ctx, "NORMAL", "UNKNOWN")
    if path:
        file["path"] = path
    if file:
        ev["file"] = file


def _chmoding(mode: str) -> SyscallBuilder:
    def build(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
        _chmod(ctx, ev, _arg(f.get(mode)))

    return build


def _chown(ctx: _Ctx, ev: Event, uid: int | None, gid: int | None) -> None:
    file: EventFile = {}
    if uid is not None:
        file["uid"] = _signed32(uid)
    if gid is not None:
        file["gid"] = _signed32(gid)
    path = _pick(ctx, "NORMAL", "UNKNOWN")
    if path:
        file["path"] = path
    ev["file"] = file


def _chowning(uid: str, gid: str) -> SyscallBuilder:
    def build(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
        _chown(ctx, ev, _arg(f.get(uid)), _arg(f.get(gid)))

    return build


def _b_setxattr(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    # The attribute name is in user memory: audit records do not carry it (file.xattr absent).
    path = _pick(ctx, "NORMAL", "UNKNOWN")
    if path:
        ev["file"] = {"path": path}


def _b_exec(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    proc = ev.setdefault("proc", {})
    if "exe" not in proc:
        path = _pick(ctx, "NORMAL", "UNKNOWN")
        if path:
            proc["exe"] = path


def _b_net(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    sa = ctx.first("SOCKADDR")
    if sa is None:
        return
    addr = _parse_sockaddr(_kv(sa[1]).get("saddr", ""))
    if addr is None:
        return
    net: EventNet = {"family": addr["family"]}
    if addr["family"] == "unix":
        pass  # the Event has no socket path field
    elif ev["type"] == "connect":
        net["dst_ip"], net["dst_port"] = addr["ip"], addr["port"]
    else:
        net["src_ip"], net["src_port"] = addr["ip"], addr["port"]
    ev["net"] = net


def _b_cred(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    proc = ev.get("proc", {})
    cred: EventCred = {}
    for k in _CRED_IDS:
        if k in proc:
            cred[k] = proc[k]
    if cred:
        ev["cred"] = cred


_CRED_IDS: tuple[Literal["uid", "euid", "gid", "egid"], ...] = ("uid", "euid", "gid", "egid")


def _b_capset(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    cap = ctx.first("CAPSET")
    if cap is None:
        return
    pe = _arg(_kv(cap[1]).get("cap_pe"))
    if pe is not None:
        ev["cred"] = {"caps": [n for b, n in enumerate(_CAPS) if pe >> b & 1]}


def _b_bpf(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    bpf: EventBpf = {}
    cmd = _arg(f.get("a0"))
    if cmd is not None and cmd < len(_BPF_CMDS):
        bpf["cmd"] = _BPF_CMDS[cmd]
    b = ctx.first("BPF")
    if b is not None:
        _bpf_record(ctx, b, bpf)
    if bpf:
        ev["bpf"] = bpf


def _bpf_record(ctx: _Ctx, rec: Rec, bpf: EventBpf) -> None:
    f = _kv(rec[1])
    op = (f.get("op") or "").upper()
    if op and "cmd" not in bpf:
        bpf["cmd"] = "BPF_PROG_LOAD" if op == "LOAD" else f"BPF_PROG_{op}"[:64]
    v = f.get("prog-id")
    if v is not None:
        n = _u32(v)
        if n is None:
            ctx.bad(rec, f"prog-id={v[:32]} is not a 32-bit number: field left out")
        else:
            bpf["prog_id"] = n


def _b_module(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    km = ctx.first("KERN_MODULE")
    if km is None:
        return
    name = decode_value(_kv(km[1]).get("name"))
    if name:
        ev["module"] = {"name": name}


def _b_ptrace(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    pt: EventPtrace = {}
    req, target = _arg(f.get("a0")), _arg(f.get("a1"))
    if req is not None:
        pt["request"] = _signed32(req)
    if target is not None:
        pt["target_pid"] = _signed32(target)
    ev["ptrace"] = pt


def _b_mount(ctx: _Ctx, ev: Event, f: dict[str, str]) -> None:
    # The kernel looks up the mount point first (item 0), then a source it resolves as a path
    # (item 1: a bind mount's directory, a block device); auditd on `mount --bind SRC DST`
    # writes DST as item 0 and SRC as item 1. The live monitor names the mount point too. The
    # file system type and a source that is no path (`none`, `tmpfs`) are not in the records.
    m: EventMount = {}
    flags = _arg(f.get("a3"))
    if flags is not None:
        m["flags"] = flags
    for path, nametype, item in ctx.paths():
        if path is None or nametype not in ("NORMAL", "UNKNOWN"):
            continue
        if item == "0":
            ev["file"] = {"path": path}
        elif item == "1":
            m["source"] = path
    ev["mount"] = m


_SYSCALL_EVENTS: dict[str, tuple[EventType, SyscallBuilder]] = {
    "execve": ("exec", _b_exec), "execveat": ("exec", _b_exec),
    "open": ("open", _opening("a1", "a2")), "openat": ("open", _opening("a2", "a3")),
    "creat": ("write", _opening(0o1101, "a1")), "openat2": ("open", _b_openat2),
    "truncate": ("write", _opening(0o1001, None)),
    "mkdir": ("write", _opening(0o200100, None, creates=False)), "mkdirat": ("write", _opening(0o200100, None, creates=False)),
    "mknod": ("write", _opening(0o200100, None, creates=False)), "mknodat": ("write", _opening(0o200100, None, creates=False)),
    # a new name: a hard link or a symlink (into /usr/bin, /etc/cron.d ...), named by its CREATE item
    **{n: ("write", _opening(0o101, None, creates=False)) for n in ("link", "linkat", "symlink", "symlinkat")},
    "unlink": ("unlink", _b_delete), "unlinkat": ("unlink", _b_delete), "rmdir": ("unlink", _b_delete),
    "rename": ("rename", _b_rename), "renameat": ("rename", _b_rename), "renameat2": ("rename", _b_rename),
    "chmod": ("chmod", _chmoding("a1")), "fchmod": ("chmod", _chmoding("a1")),
    "fchmodat": ("chmod", _chmoding("a2")), "fchmodat2": ("chmod", _chmoding("a2")),
    "chown": ("chown", _chowning("a1", "a2")), "fchown": ("chown", _chowning("a1", "a2")),
    "lchown": ("chown", _chowning("a1", "a2")), "fchownat": ("chown", _chowning("a2", "a3")),
    "setxattr": ("setxattr", _b_setxattr), "lsetxattr": ("setxattr", _b_setxattr),
    "fsetxattr": ("setxattr", _b_setxattr), "removexattr": ("setxattr", _b_setxattr),
    "lremovexattr": ("setxattr", _b_setxattr), "fremovexattr": ("setxattr", _b_setxattr),
    "setxattrat": ("setxattr", _b_setxattr), "removexattrat": ("setxattr", _b_setxattr),
    "connect": ("connect", _b_net), "accept": ("accept", _b_net), "accept4": ("accept", _b_net),
    "capset": ("capset", _b_capset), "bpf": ("bpf", _b_bpf),
    "init_module": ("module_load", _b_module), "finit_module": ("module_load", _b_module),
    "ptrace": ("ptrace", _b_ptrace), "mount": ("mount", _b_mount),
}
for _name in ("setuid", "setreuid", "setresuid", "setfsuid", "setgid", "setregid", "setresgid",
              "setfsgid", "setuid32", "setreuid32", "setresuid32", "setfsuid32", "setgid32",
              "setregid32", "setresgid32", "setfsgid32"):
    _SYSCALL_EVENTS[_name] = ("setuid", _b_cred)
for _name in ("chown32", "lchown32", "fchown32"):  # i386: what glibc's chown, lchown, fchown call
    _SYSCALL_EVENTS[_name] = ("chown", _chowning("a1", "a2"))
# i386 socketcall(call, args): a0 says which socket call it is (linux/net.h SYS_CONNECT ...).
_SOCKETCALLS = {3: "connect", 5: "accept", 18: "accept4"}


# The *at syscalls: the argument holding the directory descriptor that relative names are
# relative to (and rename's second one, for the new name). A name relative to a descriptor
# other than AT_FDCWD is not relative to the CWD record's directory (`rm -rf DIR` deletes
# DIR's files with unlinkat(fd of DIR, "name")), and the log does not say which directory the
# descriptor was: such a name is left unresolved rather than joined to the wrong directory.
_DIRFD_ARGS: dict[str, tuple[str, str | None]] = {
    name: ("a0", None) for name in (
        "openat", "openat2", "mkdirat", "mknodat", "unlinkat", "fchmodat", "fchmodat2", "fchownat",
        "execveat", "setxattrat", "removexattrat")
}
_DIRFD_ARGS["renameat"] = _DIRFD_ARGS["renameat2"] = _DIRFD_ARGS["linkat"] = ("a0", "a2")
_DIRFD_ARGS["symlinkat"] = ("a1", None)
_AT_FDCWD = 0xFFFFFF9C  # -100 as a 32-bit int (a0=ffffff9c; 64-bit registers may sign-extend it)


def _is_at_fdcwd(value: str | None) -> bool:
    n = _arg(value)
    return n is not None and n & 0xFFFFFFFF == _AT_FDCWD and n >> 32 in (0, 0xFFFFFFFF)


def _syscall_name(arch: str | None, number: str | None, interp: str) -> str | None:
    if interp:
        name = _interp_value(interp, "SYSCALL")
        if name:
            return name
    table = SYSCALLS.get((arch or ARCH_X86_64).lower())
    num = _u32(number) if number else None
    if table is None or num is None:
        return None
    return table.get(num)


# What a SYSCALL record says: syscall name, proc, user, login, success, exit, key, the fields.
_Syscall = tuple[str | None, EventProc, EventUser, EventLogin, str | None, str | None, str | None, dict[str, str]]

# The SYSCALL record as Linux has written it since 2.6.3x (audit_log_exit): matched in one go;
# any other shape (older kernels, out-of-range numbers) goes through the generic field split.
_SYSCALL_RE = re.compile(
    r"arch=([0-9a-f]{1,8}) syscall=(\d{1,9})(?: success=(yes|no) exit=(-?\d{1,20}))? "
    r"a0=([0-9a-f]{1,16}) a1=([0-9a-f]{1,16}) a2=([0-9a-f]{1,16}) a3=([0-9a-f]{1,16}) items=\d{1,10} "
    r"ppid=(\d{1,9}) pid=(\d{1,9}) auid=(\d{1,10}) uid=(\d{1,9}) gid=(\d{1,9}) euid=(\d{1,9}) "
    r"suid=\d{1,10} fsuid=\d{1,10} egid=(\d{1,9}) sgid=\d{1,10} fsgid=\d{1,10} tty=(\S+) ses=(\d{1,10}) "
    r"comm=(\S+) exe=(\S+)"
)


def _syscall_fast(ctx: _Ctx, rec: Rec, m: re.Match[str]) -> _Syscall:
    arch, nr, success, exit_, a0, a1, a2, a3, ppid, pid, auid, uid, gid, euid, egid, tty, ses, comm, exe = m.groups()
    body = rec[1]
    # The first key= wins, up to the next space, as in _kv and the audit tools' own parser.
    k = body.find(" key=", m.end() - 1)
    if k >= 0:
        end = body.find(" ", k + 5)
        key: str | None = body[k + 5 : end] if end >= 0 else body[k + 5 :]
    else:
        key = None
    interp = rec[2]
    name = auid_name = euid_name = None
    if interp:
        # auditd writes ARCH SYSCALL AUID UID GID EUID ... in this order.
        ip = interp.split(" ", 6)
        if len(ip) > 5 and ip[1][:8] == "SYSCALL=" and ip[2][:5] == "AUID=" and ip[5][:5] == "EUID=":
            name, auid_name, euid_name = ip[1][8:], _name_of(ip[2][5:]), _name_of(ip[5][5:])
        else:
            name = _interp_value(interp, "SYSCALL")
            auid_name, euid_name = ctx.name(-1, interp, "AUID"), ctx.name(-1, interp, "EUID")
    if not name:
        table = SYSCALLS.get(arch)
        name = table.get(int(nr)) if table is not None else None
    e = int(euid)
    proc: EventProc = {"pid": int(pid), "ppid": int(ppid), "uid": int(uid), "euid": e, "gid": int(gid),
                            "egid": int(egid)}
    login: EventLogin = {}
    if auid != "4294967295":
        a = int(auid)
        if a <= 0xFFFFFFFF:
            proc["auid"] = a
            login = {"uid": a}
            lname = auid_name if interp else ctx.name(a, interp, "AUID")
            if lname:
                login["name"] = lname
        else:
            ctx.bad(rec, f"auid={auid} is not a 32-bit number: field left out")
    if ses != "4294967295":
        n = int(ses)
        if n <= 0xFFFFFFFF:
            proc["session"] = n
            if login:
                login["session"] = n
        else:
            ctx.bad(rec, f"ses={ses} is not a 32-bit number: field left out")
    comm_text = comm[1:-1] if comm[0] == '"' and comm[-1] == '"' else decode_value(comm)
    if comm_text is not None:
        proc["comm"] = comm_text
    exe_text = exe[1:-1] if exe[0] == '"' and exe[-1] == '"' else decode_value(exe)
    if exe_text is not None:
        proc["exe"] = exe_text
    if tty != "(none)":
        proc["tty"] = tty
    user: EventUser = {"uid": e}
    uname = euid_name if interp else ctx.name(e, interp, "EUID")
    if uname:
        user["name"] = uname
    return name, proc, user, login, success, exit_, key, {"a0": a0, "a1": a1, "a2": a2, "a3": a3}


def _syscall_slow(ctx: _Ctx, rec: Rec) -> _Syscall:
    f = _kv(rec[1])
    proc, user, login = _actor(ctx, rec, f, user_space=False)
    name = _syscall_name(f.get("arch"), f.get("syscall"), rec[2])
    return name, proc, user, login, f.get("success"), f.get("exit"), f.get("key"), f


_SEPARATORS: dict[int, str] = {}


def _separators(n: int) -> str:
    """` a1= a2= ... a{n-1}=`: what lies between the quoted arguments of an EXECVE record."""
    sep = _SEPARATORS.get(n)
    if sep is None:
        sep = "".join(f" a{i}=" for i in range(1, n))
        if n <= 4096:
            _SEPARATORS[n] = sep
    return sep


def _exec_args(ctx: _Ctx) -> list[str] | None:
    recs = ctx.by.get("EXECVE")
    if not recs:
        return None
    if len(recs) == 1:
        # The usual case: `argc=N a0="..." a1="..."` in one record, every argument quoted (the
        # kernel hex-encodes one holding a quote or a space), checked by its separators at once.
        quoted = recs[0][1].split('"')
        n = len(quoted) // 2
        if n and quoted[-1] == "" and quoted[0] == f"argc={n} a0=" and "".join(quoted[2:-1:2]) == _separators(n):
            return quoted[1::2]
    parts: dict[int, str] = {}
    split: dict[int, dict[int, str]] = {}
    argc: int | None = None
    for r in recs:
        body = r[1]
        if argc is None and body.startswith("argc="):
            end = body.find(" ")
            argc = _u32(body[5:end] if end > 0 else body[5:])
        for k, v in _kv(body).items():
            if k[:1] != "a" or not k[1:2].isdigit() or k.endswith("_len"):
                continue
            idx, bracket, rest = k[1:].partition("[")
            if not (idx.isdigit() and len(idx) <= 7):
                continue
            if bracket:  # a1[0]=..., a1[1]=...: one long argument split across records
                if rest[:-1].isdigit() and len(rest) <= 8:
                    split.setdefault(int(idx), {})[int(rest[:-1])] = decode_value(v) or ""
            else:
                parts[int(idx)] = decode_value(v) or ""
    for arg, chunks in split.items():
        parts[arg] = "".join(chunks[j] for j in sorted(chunks))
    if not parts:
        return []
    # argc comes from the input: the list is as long as the arguments actually logged.
    n = max(parts) + 1
    if argc is not None:
        n = min(n, argc)
    n = min(n, len(parts) + 64, MAX_ARGS)
    if len(parts) > MAX_ARGS:
        ctx.bad(recs[0], f"more than {MAX_ARGS} execve arguments: the first {MAX_ARGS} kept")
    return [parts.get(j, "") for j in range(n)]


def _proctitle(ctx: _Ctx) -> list[str] | None:
    rec = ctx.first("PROCTITLE")
    if rec is None:
        return None
    body = rec[1]
    raw = body[10:] if body.startswith("proctitle=") else _kv(body).get("proctitle")
    if not raw:
        return None
    args = _PROCTITLES.get(raw)
    if args is None:
        if raw[0] == '"':
            args = [raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]]
        else:
            try:
                args = bytes.fromhex(raw).decode("utf-8", "backslashreplace").rstrip("\x00").split("\x00")
            except ValueError:
                args = [raw]
        if len(_PROCTITLES) >= 4096:
            _PROCTITLES.clear()
        _PROCTITLES[raw] = args
    return list(args)


# Command lines repeat (the same programs run again and again): decoded once each.
_PROCTITLES: dict[str, list[str]] = {}


def _from_syscall(ctx: _Ctx, rec: Rec) -> Event | None:
    m = _SYSCALL_RE.match(rec[1])
    name, proc, user, login, success, exit_, key, f = _syscall_fast(ctx, rec, m) if m else _syscall_slow(ctx, rec)
    if name is not None and name[:10] == "socketcall":  # ENRICHED logs say socketcall(connect)
        call = _arg(f.get("a0"))
        spec = _SYSCALL_EVENTS.get(_SOCKETCALLS.get(call, "")) if call is not None else None
    else:
        spec = _SYSCALL_EVENTS.get(name or "")
    if spec is None:
        return None
    etype, build = spec
    dirfds = _DIRFD_ARGS.get(name or "")
    if dirfds is not None:
        ctx.at_cwd = (_is_at_fdcwd(f.get(dirfds[0])), _is_at_fdcwd(f.get(dirfds[1] or dirfds[0])))
    ev = ctx.base(etype, f"SYSCALL:{name}")
    cwd = ctx.cwd()
    if cwd:
        proc["cwd"] = cwd
    args = _exec_args(ctx) if etype == "exec" else None
    if args is None:
        args = _proctitle(ctx)
    if args:
        proc["args"] = args
        proc["cmdline"] = " ".join(args)
    if proc:
        ev["proc"] = proc
    if user:
        ev["user"] = user
    if login:
        ev["login"] = login
    if success is not None:
        if success == "yes":
            ev["outcome"] = {"result": "success"}
        else:
            outcome: EventOutcome = {"result": "failure"}
            ex = exit_ or ""
            if ex[:1] == "-" and len(ex) <= 6 and ex[1:].isdigit() and ex.isascii():
                outcome["errno"] = int(ex[1:])
            ev["outcome"] = outcome
    if key is not None and key != "(null)":
        if key[0] == '"' and key[-1] == '"' and len(key) > 2:
            ev["audit"] = {"key": key[1:-1]}
        else:
            keys = _audit_keys(key)
            if keys:
                ev["audit"] = {"key": keys[0], "keys": keys} if len(keys) > 1 else {"key": keys[0]}
    build(ctx, ev, f)
    return ev


# Records written by user-space programs (PAM, shadow-utils, sudo, auditd ...).
RecordBuilder = Callable[[_Ctx, Rec, dict[str, str]], Event]


def _user_space(rtype: str) -> bool:
    """Whether records of this type are written by user-space programs (values may hold spaces,
    `msg='...'` nests the program's fields) rather than by the kernel."""
    n = record_type_number(rtype)
    return n == 1005 or 1100 <= n <= 1299 or 2100 <= n <= 2999


def _user_record(ctx: _Ctx, rec: Rec, etype: EventType) -> tuple[Event, dict[str, str]]:
    f = parse_fields(rec[1]) if _user_space(rec[0]) else _kv(rec[1])
    ev = ctx.base(etype, rec[0])
    proc, user, login = _actor(ctx, rec, f, user_space=True)
    _attach(ev, proc, user, login)
    res = _result(f.get("res"))
    if res is not None:
        ev["outcome"] = {"result": res}
    return ev, f


def _from_user_auth(ctx: _Ctx, rec: Rec, _f: dict[str, str]) -> Event:
    ev, f = _user_record(ctx, rec, "auth")
    auth: EventAuth = {}
    exe = decode_value(f.get("exe"))
    if exe:
        auth["service"] = exe.rsplit("/", 1)[-1]
    acct = decode_value(f.get("acct"))
    if acct is None and "acct" in f:
        acct = "?"  # the record names no account (e.g. an invalid user); keep it visible
    if acct is None:
        # aureport attributes an attempt that names no account to the record's uid.
        acct = ev.get("user", {}).get("name") or f.get("uid")
    if acct is not None:
        auth["user"] = acct
    result = _result(f.get("res"))
    if result is not None:
        auth["result"] = result
        ev["outcome"] = {"result": result}
    host = plain_value(f.get("hostname"))
    rhost = host if host else plain_value(f.get("addr"))
    if rhost:
        auth["rhost"] = rhost
    op = plain_value(f.get("op"))
    if op:
        auth["method"] = op
    ev["auth"] = auth
    return ev


def _from_user_cmd(ctx: _Ctx, rec: Rec, _f: dict[str, str]) -> Event:
    ev, f = _user_record(ctx, rec, "exec")
    proc = ev.setdefault("proc", {})
    cmd = decode_value(f.get("cmd"))
    if cmd is not None:
        proc["cmdline"] = cmd
        proc["args"] = cmd.split(" ")[:MAX_ARGS]
    cwd = decode_value(f.get("cwd"))
    if cwd is not None:
        proc["cwd"] = cwd
    return ev


def _from_account(ctx: _Ctx, rec: Rec, _f: dict[str, str]) -> Event:
    ev, f = _user_record(ctx, rec, "account_change")
    account: EventAccount = {}
    ident = decode_value(_interp_value(rec[2], "ID")) if rec[2] else None
    if ident is not None and ident.startswith("unknown("):
        ident = None
    name = decode_value(f.get("acct")) or ident or plain_value(f.get("id"))
    if name:
        account["name"] = name
    group = decode_value(f.get("grp"))
    if group:
        account["group"] = group
    op = plain_value(f.get("op"))
    account["op"] = op or rec[0].lower()
    ev["account"] = account
    return ev


def _from_config(ctx: _Ctx, rec: Rec, _f: dict[str, str]) -> Event:
    ev, f = _user_record(ctx, rec, "config_change")
    config: EventConfig = {}
    op = plain_value(f.get("op"))
    if op:
        config["op"] = op
    key = decode_value(f.get("key")) or plain_value(f.get("table")) or plain_value(f.get("feature"))
    if key:
        config["key"] = key
    old = plain_value(f.get("old")) or plain_value(f.get("old_val"))
    new = plain_value(f.get("new")) or plain_value(f.get("new_val"))
    if old is not None:
        config["old"] = old
    if new is not None:
        config["new"] = new
    if not config:
        config["op"] = rec[0].lower()
    ev["config"] = config
    if "outcome" not in ev:
        res = f.get("res")
        if res in ("0", "1"):
            ev["outcome"] = {"result": "success" if res == "1" else "failure"}
    sc = ctx.first("SYSCALL")
    if sc is not None:
        sf = _kv(sc[1])
        proc, user, login = _actor(ctx, sc, sf, user_space=False)
        ev["proc"] = {**proc, **ev.get("proc", {})}  # the record's own fields first
        if user and "user" not in ev:
            ev["user"] = user
        if login and "login" not in ev:
            ev["login"] = login
        keys = _audit_keys(sf.get("key"))
        if keys:
            ev["audit"] = {"key": keys[0], "keys": keys} if len(keys) > 1 else {"key": keys[0]}
    return ev


def _daemon_state(state: str) -> RecordBuilder:
    def build(ctx: _Ctx, rec: Rec, f: dict[str, str]) -> Event:
        ev = _from_config(ctx, rec, f)
        ev["config"] = {"key": "auditd", "op": state}
        return ev

    return build


def _from_bpf_record(ctx: _Ctx, rec: Rec, _f: dict[str, str]) -> Event:
    ev = ctx.base("bpf", rec[0])
    bpf: EventBpf = {}
    _bpf_record(ctx, rec, bpf)
    ev["bpf"] = bpf
    return ev


_RECORD_BUILDERS: dict[str, RecordBuilder] = {"USER_AUTH": _from_user_auth, "USER_CMD": _from_user_cmd}
for _t in ("ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "USER_MGMT", "GRP_MGMT", "USER_CHAUTHTOK",
           "GRP_CHAUTHTOK", "ACCT_LOCK", "ACCT_UNLOCK", "ROLE_ASSIGN", "ROLE_REMOVE", "ROLE_MODIFY",
           "CHUSER_ID", "CHGRP_ID"):
    _RECORD_BUILDERS[_t] = _from_account
for _t in ("CONFIG_CHANGE", "DAEMON_CONFIG", "USYS_CONFIG", "NETFILTER_CFG", "MAC_CONFIG_CHANGE",
           "MAC_POLICY_LOAD", "MAC_STATUS", "FEATURE_CHANGE", "USER_MAC_CONFIG_CHANGE", "USER_MAC_POLICY_LOAD"):
    _RECORD_BUILDERS[_t] = _from_config
# The audit daemon starting or stopping is a change of the audit configuration (PCI DSS
# 10.2.1.6: initialisation, stopping or pausing of the audit logs).
for _t, _state in (("DAEMON_START", "start"), ("DAEMON_END", "stop"), ("DAEMON_ABORT", "abort")):
    _RECORD_BUILDERS[_t] = _daemon_state(_state)


_BUILT_FROM_RECORD = frozenset(_RECORD_BUILDERS)


def build_event(key: str, sec: int, milli: int, records: list[Rec], names: Names | None = None,
                bad_at: Callable[[int, str], None] | None = None) -> Event | None:
    """The Event of one audit event (`key` its id, `node/sec.ms:serial`), or None when nothing
    in it maps to an Event type: the first user-space record with a builder, else the SYSCALL
    record, else a BPF record. Values out of range are left out and reported to `bad_at`."""
    ctx = _Ctx(key, sec, milli, records, names, bad_at or _ignore)
    syscall = bpf = None
    for rec in records:
        t = rec[0]
        if t in _BUILT_FROM_RECORD:
            return _RECORD_BUILDERS[t](ctx, rec, {})
        if t == "SYSCALL":
            if syscall is None:
                syscall = rec
        elif t == "BPF" and bpf is None:
            bpf = rec
    if syscall is not None:
        return _from_syscall(ctx, syscall)
    if bpf is not None:
        return _from_bpf_record(ctx, bpf, {})
    return None




def _ignore(pos: int, why: str) -> None:
    pass
