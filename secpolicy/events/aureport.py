"""aureport's own counting over grouped audit events, so `replay --summary` says what
`aureport --summary` and `aureport -k` say about the same log (audit-userspace 3.x semantics).

aureport reads each record of an event with a per-type field scanner (ausearch-parse.c) that
looks for a few fields in a fixed order and rejects an event as malformed when one it needs is
missing; what it needs depends on the report (a summary wants comm= and exe=, the key report does
not). The scanners below reproduce those searches, their order and their failure points, and the
counters of `aureport --summary` and of the key reports (aureport-scan.c).
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from secpolicy.events.audit_names import record_type_number

__all__ = ["SUMMARY_LINES", "AureportCounts"]

_HEXDIGITS = frozenset("0123456789abcdefABCDEF")
_ULONG_MAX = (1 << 64) - 1
_NAME_OFFSET = 28  # aureport starts looking for PATH names and cwd 28 characters in

# Record type numbers (linux/audit.h) the scanners and counters test for.
(USER, USER_AUTH, USER_MGMT, USER_END, USER_AVC, USER_CHAUTHTOK, USYS_CONFIG, USER_LOGIN) = (
    1005, 1100, 1102, 1106, 1107, 1108, 1111, 1112)
ADD_USER, DEL_GROUP, GRP_AUTH, GRP_MGMT = 1114, 1117, 1126, 1132
LAST_USER_MSG, FIRST_USER_MSG2, LAST_USER_MSG2 = 1199, 2100, 2999
(DAEMON_START, DAEMON_END, DAEMON_ABORT, DAEMON_CONFIG, DAEMON_ROTATE, DAEMON_RESUME,
 DAEMON_ACCEPT, DAEMON_CLOSE) = (1200, 1201, 1202, 1203, 1205, 1206, 1207, 1208)
SYSCALL, PATH, IPC, CONFIG_CHANGE, SOCKADDR, CWD, OBJ_PID, TTY = 1300, 1302, 1303, 1305, 1306, 1307, 1318, 1319
NETFILTER_PKT, NETFILTER_CFG, SECCOMP, FEATURE_CHANGE, EVENT_LISTENER = 1324, 1325, 1326, 1328, 1335
LOGIN = 1006
AVC, AVC_PATH, MAC_POLICY_LOAD, MAC_UNLBL_STCDEL = 1400, 1402, 1403, 1417
ANOM_PROMISCUOUS, ANOM_ABEND, ANOM_LINK = 1700, 1701, 1702
INTEGRITY_FIRST, INTEGRITY_RULE, INTEGRITY_LAST = 1800, 1805, 1899
USER_MAC_CONFIG_CHANGE, ROLE_ASSIGN, ROLE_REMOVE = 2312, 2301, 2302
VIRT_RESOURCE = 2501


@dataclass(frozen=True)
class _Wants:
    """Which fields a report makes the scanners look for (aureport-options.c)."""

    loginuid: bool = True
    terminal: bool = False
    comm: bool = False
    exe: bool = False
    filename: bool = False
    hostname: bool = False
    key: bool = False


_SUMMARY = _Wants(terminal=True, comm=True, exe=True, filename=True, hostname=True, key=True)
_KEYS = _Wants(exe=True, key=True)


class _Malformed(Exception):
    pass


def _c_int(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _strtoul(text: str, base: int = 10) -> int:
    """C strtoul: leading blanks and sign, the longest run of digits; ERANGE is an error."""
    i, n = 0, len(text)
    while i < n and text[i] in " \t\n\v\f\r":
        i += 1
    neg = False
    if i < n and text[i] in "+-":
        neg = text[i] == "-"
        i += 1
    if base == 16 and text[i : i + 2].lower() == "0x":
        i += 2
    digits = "0123456789abcdef"[:base]
    j = i
    while j < n and text[j].lower() in digits:
        j += 1
    if j == i:
        return 0
    value = int(text[i:j], base)
    if value > _ULONG_MAX:
        raise _Malformed
    return (-value) & _ULONG_MAX if neg else value


def _cstr(text: str) -> str:
    """What C sees of a string: up to its first NUL."""
    nul = text.find("\x00")
    return text if nul < 0 else text[:nul]


def _unescape_bytes(m: str, i: int) -> bytes | None:
    """ausearch-lookup.c unescape(): `(...)` kept as is, else the run of hex digits decoded."""
    if m[i : i + 1] == "(":
        j = m.find(")", i)
        return None if j < 0 else m[i : j + 1].encode("utf-8", "surrogateescape")
    j = i
    while j < len(m) and m[j] in _HEXDIGITS:
        j += 1
    if j - i < 2:
        return None
    h = m[i:j]
    if len(h) % 2:
        h += "0"  # x2c() reads the terminating NUL as a zero nibble
    return bytes.fromhex(h)


def _unescape(m: str, i: int) -> str | None:
    raw = _unescape_bytes(m, i)
    return None if raw is None else _cstr(raw.decode("utf-8", "surrogateescape"))


@dataclass
class _Items:
    """The search_items of one event (ausearch-llist.h), as far as the reports use them."""

    pid: int = -1
    loginuid: int = -2
    loginuid_seen: bool = False
    success: int = -1  # S_UNSET; S_FAILED = 0, S_SUCCESS = 1
    syscall: int = 0
    keys: list[str] | None = None
    exe: str | None = None
    comm: str | None = None
    terminal: str | None = None
    hostname: str | None = None
    cwd: str | None = None
    files: list[str] | None = None


class _Scan:
    """One record's message, scanned the way ausearch-parse.c scans it (positions, not NULs)."""

    __slots__ = ("m", "s", "type", "w")

    def __init__(self, message: str, items: _Items, wants: _Wants) -> None:
        self.m = message
        self.s = items
        self.w = wants
        self.type = 0

    def find(self, sub: str, start: int) -> int:
        return self.m.find(sub, start)

    def space(self, start: int) -> int:
        return self.m.find(" ", start)

    def number(self, start: int, end: int, base: int = 10) -> int:
        return _strtoul(self.m[start:end] if end >= 0 else self.m[start:], base)

    def quoted_or_hex(self, at: int, err: int) -> tuple[str | None, int]:
        """A `"quoted"` value (closing quote required) or an unescaped one; and the new term."""
        if self.m[at : at + 1] == '"':
            end = self.m.find('"', at + 1)
            if end < 0:
                raise _Malformed(err)
            return self.m[at + 1 : end], end
        return _unescape(self.m, at), -1

    def legacy(self, at: int) -> tuple[str | None, int]:
        """acct=/exe=/cwd= of user records: hex when every character is a hex digit."""
        end, legacy = at, False
        while end < len(self.m) and self.m[end] != " ":
            if self.m[end] not in _HEXDIGITS:
                legacy = True
            end += 1
        return (self.m[at:end] if legacy else _unescape(self.m, at)), end

    def optional_comm(self, term: int, err: int) -> int:
        """comm= when present (quoted or hex); the new search position."""
        at = self.find("comm=", term)
        if at >= 0:
            self.s.comm, end = self.quoted_or_hex(at + 5, err)
            return end if end >= 0 else term
        return term

    def quoted_or_legacy(self, at: int, err: int) -> str | None:
        """cwd=/exe= of user records: `"quoted"`, else hex or (legacy) plain."""
        if self.m[at : at + 1] == '"':
            return self.quoted_or_hex(at, err)[0]
        return self.legacy(at)[0]

    def comma_or_space(self, at: int) -> int:
        """Where a hostname= or addr= value ends: the first comma after it, else a space."""
        end = self.m.find(",", at)
        if end < 0:
            end = self.space(at)
            if end < 0:
                raise _Malformed
        return end

    def loginuid(self, at: int, needs_space: bool) -> int:
        end = self.space(at)
        if end < 0 and needs_space:
            raise _Malformed
        self.s.loginuid = _c_int(self.number(at, end))
        self.s.loginuid_seen = True
        return end

    def value_of(self, start: int, *names: str) -> int:
        """Where the value of the first of `names` (`key=` strings) found after `start`
        begins; none found makes the record malformed."""
        for name in names:
            at = self.find(name, start)
            if at >= 0:
                return at + len(name)
        raise _Malformed

    def auid_or_loginuid(self, start: int) -> int:
        """`auid=` (or the older `loginuid=`), required, followed by a space."""
        return self.loginuid(self.value_of(start, "auid=", "loginuid="), needs_space=True)

    def pid(self, needle: str, start: int, required: bool) -> int:
        at = self.find(needle, start)
        if at < 0:
            if required:
                raise _Malformed
            return start
        at += len(needle)
        end = self.space(at)
        if end < 0:
            raise _Malformed
        self.s.pid = _c_int(self.number(at, end))
        return end

    def keys(self, start: int) -> None:
        at = self.find("key=", start)
        if at < 0:
            return
        if self.s.keys is None:
            self.s.keys = []
        at += 4
        if self.m[at : at + 1] == '"':
            end = self.m.find('"', at + 1)
            if end < 0:
                raise _Malformed
            self.s.keys.append(self.m[at + 1 : end])
            return
        raw = _unescape(self.m, at)
        if raw is None:
            raise _Malformed
        self.s.keys.extend(k for k in raw.split("\x01") if k)

    def path(self, at: int) -> None:
        """common_path_parser(): one file name (quoted, hex, abstract socket or (null))."""
        m, s = self.m, self.s
        if m[at : at + 1] == '"':
            end = m.find('"', at + 1)
            if end < 0:
                raise _Malformed
            name: str | None = m[at + 1 : end]
        elif m.startswith("(null)", at):
            name = "(null)"
        elif m[at : at + 1] not in _HEXDIGITS or at >= len(m):
            raise _Malformed
        elif m.startswith("00", at):
            name = _unescape(m, at + 2)
        else:
            if self.space(at) < 0:
                raise _Malformed
            name = _unescape(m, at)
        if name is None:
            raise _Malformed
        if name[:1] == "." and name[1:2] in (".", "/") and s.cwd:
            name = f"{s.cwd}/{name}"[:4095]
        if s.files is None:
            s.files = []
        s.files.append(name)

    # --- one scanner per record family (extract_search_items) -------------------------------

    def task_info(self) -> int:
        w, s = self.w, self.s
        term = self.pid(" pid=", 0, required=True)
        if w.loginuid:
            term = self.auid_or_loginuid(term)
        if w.terminal:
            at = self.find("tty=", term)
            if at >= 0:
                end = self.space(at + 4)
                if end < 0:
                    raise _Malformed
                s.terminal = self.m[at + 4 : end]
                term = end
        if w.comm:
            at = self.find("comm=", term)
            if at < 0:
                raise _Malformed
            s.comm, end = self.quoted_or_hex(at + 5, 37)
            term = end if end >= 0 else term
        if w.exe:
            at = self.find("exe=", 0)
            if at < 0:
                raise _Malformed
            s.exe, end = self.quoted_or_hex(at + 4, 39)
            term = end if end >= 0 else term
        self.numeric_res(term)
        return term

    def numeric_res(self, term: int) -> None:
        at = self.find("res=", max(term, 0))
        if at >= 0:
            self.s.success = _c_int(self.number(at + 4, self.space(at + 4)))

    def required_number(self, name: str, start: int, base: int = 10) -> tuple[int, int]:
        """A `name=N ` field that must be there, followed by a space: (N, where it ends)."""
        at = self.find(name, start)
        if at < 0:
            raise _Malformed
        at += len(name)
        end = self.space(at)
        if end < 0:
            raise _Malformed
        return self.number(at, end, base), end

    def syscall(self) -> None:
        s = self.s
        number, term = self.required_number("syscall=", 0)
        s.syscall = _c_int(number)
        at = self.find("success=", term)
        if at >= 0:
            end = self.space(at + 8)
            if end < 0:
                raise _Malformed
            s.success = 1 if self.m[at + 8 : end] == "yes" else 0
            term = end
        for arg in ("a0=", "a1="):
            _, term = self.required_number(arg, term, 16)
        self.task_info()
        if self.w.key:
            self.keys(term)

    def cwd(self) -> None:
        if not self.w.filename:
            return
        at = self.find(" cwd=", _NAME_OFFSET)
        if at < 0:
            return
        value, _ = self.quoted_or_hex(at + 5, 1)
        if self.s.cwd is None:
            self.s.cwd = value

    def path_record(self) -> None:
        if not self.w.filename:
            return
        at = self.find(" name=", _NAME_OFFSET)
        if at >= 0:
            self.path(at + 6)

    def avc_path(self) -> int:
        if not self.w.filename:
            return 0
        at = self.find(" path=", 0)
        if at < 0:
            return 1
        self.path(at + 6)
        return 0

    def user(self) -> None:
        """A user-space record: ids, then the program's own fields from the position after
        the account (aureport searches each of them from there), then the result."""
        term = self.pid("pid=", 0, required=True)
        if self.w.loginuid:
            term = self.auid_or_loginuid(term)
        if self.type == VIRT_RESOURCE and self.w.filename:
            at, step = self.find(" path=", term), 6
            if at < 0:
                at, step = self.find(" new-disk=", term), 10
            if at >= 0:
                self.path(at + step)
                term = at + step
        mptr = self.user_comm_acct(term)
        self.user_fields(mptr)
        self.user_result(mptr)

    def user_comm_acct(self, term: int) -> int:
        """comm= and acct=; where the later searches start."""
        m, mptr = self.m, term
        if self.w.comm:
            at = self.find("comm=", mptr)
            if at >= 0:
                self.s.comm, end = self.quoted_or_hex(at + 5, 16)
                term = end if end >= 0 else term
        at = self.find("acct=", mptr)
        if at >= 0:
            at += 5
            if m[at : at + 1] == '"':
                end = m.find('"', at + 1)
                term = end if end >= 0 else len(m)
            else:
                _, term = self.legacy(at)
        return term

    def user_fields(self, mptr: int) -> None:
        w, s, m = self.w, self.s, self.m
        if w.hostname:
            at = self.find("hostname=", mptr)
            if at >= 0:
                end = self.comma_or_space(at + 9)
                s.hostname = m[at + 9 : end]
                if s.hostname == "?":
                    at = self.find("addr=", end + 1)
                    if at >= 0:
                        end = self.comma_or_space(at + 5)
                        s.hostname = m[at + 5 : end]
        if w.filename:
            at = self.find("cwd=", mptr)
            if at >= 0:
                s.cwd = self.quoted_or_legacy(at + 4, 20)
        if w.terminal:
            at = self.find("terminal=", mptr)
            if at >= 0:
                at += 9
                end = self.space(at)
                if end < 0:
                    end = m.find(")", at)
                    if end < 0:
                        raise _Malformed
                s.terminal = m[at:end]
        if w.exe:
            at = self.find("exe=", mptr)
            if at >= 0:
                s.exe = self.quoted_or_legacy(at + 4, 26)

    def user_result(self, mptr: int) -> None:
        """res= (up to the closing quote), else the older result=...)."""
        m = self.m
        at = self.find("res=", mptr)
        if at >= 0:
            if m.find("'", at + 4) < 0:
                raise _Malformed(21)
            self.s.success = 0 if m.startswith("failed", at + 4) else 1
            return
        at = self.find("result=", mptr)
        if at >= 0:
            end = m.find(")", at + 7)
            if end < 0:
                raise _Malformed(22)
            self.s.success = 1 if m[at + 7 : end].lower() == "success" else 0

    def login(self) -> None:
        s = self.s
        term = self.pid("pid=", 0, required=True)
        if self.w.loginuid:
            # "new auid=" (kernels before 3.14 wrote it so), " auid=", "new loginuid=".
            term = self.loginuid(self.value_of(term, "new auid=", " auid=", "new loginuid="), needs_space=False)
        at = self.find("res=", max(term, 0))
        if at >= 0:
            s.success = _c_int(self.number(at + 4, self.space(at + 4)))
        else:
            s.success = 1  # older kernels: always successful

    def daemon1(self) -> None:
        m = self.m
        mptr = m.find(")")
        mptr = max(mptr, 0)
        term = mptr
        if self.w.loginuid:
            at = self.find("auid=", mptr)
            if at < 0:
                raise _Malformed
            term = self.loginuid(at + 5, needs_space=True)
        self.pid("pid=", term, required=True)
        self.word_res(mptr)

    def daemon2(self) -> None:
        m, s = self.m, self.s
        term = 0
        if self.w.hostname:
            at = self.find("addr=", 0)
            if at >= 0:
                at += 5
                end = m.find(":", at)
                if end < 0:
                    end = self.space(at)
                    if end < 0:
                        raise _Malformed
                s.hostname = m[at:end]
                term = end
        self.word_res(term)

    def word_res(self, start: int) -> None:
        m = self.m
        at = self.find("res=", start)
        if at >= 0:
            end = at + 4
            while end < len(m) and m[end].isascii() and m[end].isalpha():
                end += 1
            if end == at + 4:
                raise _Malformed
            self.s.success = 0 if m.startswith("failed", at + 4) else 1

    def sockaddr(self) -> None:
        w, s, m = self.w, self.s, self.m
        if not (w.hostname or w.filename):
            return
        at = self.find("saddr=", 0)
        if at < 0:
            return
        at += 6
        if m[at : at + 1] == "(":
            close = m.find(")", at)
            length = close - at + 1 if close >= 0 else 0
        else:
            end = at
            while end < len(m) and m[end] in _HEXDIGITS:
                end += 1
            length = (end - at) // 2
        raw = _unescape_bytes(m, at)
        if raw is None:
            raise _Malformed
        family = int.from_bytes(raw[:2].ljust(2, b"\0"), "little")
        if family == socket.AF_INET:
            if length < 16:
                raise _Malformed
            if w.hostname:
                s.hostname = socket.inet_ntop(socket.AF_INET, raw[4:8].ljust(4, b"\0"))
        elif family == socket.AF_INET6:
            if length < 28:
                raise _Malformed
            if w.hostname:
                host = socket.inet_ntop(socket.AF_INET6, raw[8:24].ljust(16, b"\0"))
                scope = int.from_bytes(raw[24:28].ljust(4, b"\0"), "little")
                s.hostname = f"{host}%{scope}" if scope else host
        elif family == socket.AF_UNIX:
            if length < 4:
                raise _Malformed
            if w.filename:
                path = raw[2:] if raw[2:3] != b"\0" else raw[3:]
                if s.files is None:
                    s.files = []
                s.files.append(_cstr(path.decode("utf-8", "surrogateescape")))
            s.hostname = None
        else:
            s.hostname = None

    def avc(self) -> None:
        w, s, m = self.w, self.s, self.m
        term = 0
        at = self.find("avc: ", 0)
        if at >= 0:
            brace = m.find("{", at + 5)
            if brace >= 0:
                s.success = 0 if "denied" in m[at + 5 : brace] else 1
                close = m.find("}", brace + 1)
                if close < 0:
                    raise _Malformed
                term = close
                while term > 0 and m[term - 1] == " ":
                    term -= 1
        if self.type == USER_AVC:
            try:
                self.user()
            except _Malformed as exc:
                if not (exc.args and exc.args[0] > 20):
                    raise
            return
        term = self.pid("pid=", term, required=False)
        if w.comm and s.comm is None:
            at = self.find("comm=", term)
            if at < 0:
                raise _Malformed
            at += 5
            if m[at : at + 1] == '"':
                s.comm, term = self.quoted_or_hex(at, 6)
            else:
                s.comm = _unescape(m, at)
                if s.comm is None:
                    raise _Malformed
                term = at + 6
        if w.filename:
            at = self.find(" path=", term)
            if at < 0:
                at = self.find(" name=", term)
            if at >= 0:
                self.path(at + 6)
                term += 7
        if self.find("tclass=", term) < 0:
            raise _Malformed

    def kernel_anom(self) -> None:
        w, s = self.w, self.s
        term = 0
        if w.loginuid:
            at = self.find("auid=", 0)
            if at < 0:
                raise _Malformed
            end = self.loginuid(at + 5, needs_space=False)
            term = end if end >= 0 else at + 5
        if self.type == ANOM_PROMISCUOUS:
            return
        term = self.pid("pid=", term, required=False)
        if w.comm:
            term = self.optional_comm(term, 12)
        if w.exe:
            at = self.find("exe=", term)
            if at >= 0:
                s.exe, end = self.quoted_or_hex(at + 4, 13)
                term = end if end >= 0 else term
            elif self.type != ANOM_ABEND:
                raise _Malformed
        if self.type == SECCOMP:
            at = self.find("arch=", term)
            if at < 0:
                return
            _, end = self.required_number("arch=", at, 16)
            number, term = self.required_number("syscall=", end)
            s.syscall = _c_int(number)
        self.numeric_res(term)

    def simple_message(self) -> None:
        s = self.s
        term = 0
        if self.w.loginuid:
            at = self.find("auid=", 0)
            if at < 0 and self.type != CONFIG_CHANGE:
                raise _Malformed
            if at >= 0:
                end = self.loginuid(at + 5, needs_space=False)
                term = end if end >= 0 else at + 5
        if self.w.key:
            self.keys(term)
        if self.type == CONFIG_CHANGE:
            s.success = 1
        self.numeric_res(term)

    def integrity(self) -> None:
        w = self.w
        term = self.pid("pid=", 0, required=False)
        if w.loginuid:
            at = self.find("auid=", 0)
            if at >= 0:
                term = self.loginuid(at + 5, needs_space=True)
        if w.comm:
            term = self.optional_comm(term, 7)
        if w.filename:
            at = self.find(" name=", term)
            if at >= 0:
                self.path(at + 6)
        self.numeric_res(term)

    def tty(self) -> None:
        w = self.w
        term = self.pid("pid=", 0, required=False)
        if w.loginuid:
            at = self.find("auid=", term)
            if at < 0:
                raise _Malformed
            end = self.loginuid(at + 5, needs_space=False)
            term = end if end >= 0 else at + 5
        if w.comm:
            self.optional_comm(term, 11)

    def pkt(self) -> None:
        if self.w.hostname:
            at = self.find("saddr=", 0)
            if at >= 0:
                end = self.space(at + 6)
                if end < 0:
                    raise _Malformed
                self.s.hostname = self.m[at + 6 : end]

    def kernel(self) -> None:
        w, s, m = self.w, self.s, self.m
        term = 0
        if s.pid == -1:
            at = self.find(" pid=", 0)
            if at < 0:
                raise _Malformed
            term = self.pid(" pid=", 0, required=True)
        if not s.loginuid_seen and w.loginuid:
            at = self.find("auid=", term)
            if at >= 0:
                term = self.loginuid(at + 5, needs_space=True)
            else:
                s.loginuid = -1
            s.loginuid_seen = True
        if s.terminal is None and w.terminal:
            at = self.find("tty=", term)
            if at >= 0:
                end = self.space(at + 4)
                if end < 0:
                    raise _Malformed
                s.terminal = m[at + 4 : end]
                term = end
            else:
                s.terminal = "(none)"
        if s.comm is None and w.comm:
            at = self.find("comm=", term)
            if at < 0:
                raise _Malformed
            s.comm, end = self.quoted_or_hex(at + 5, 65)
            term = end if end >= 0 else term
        if s.exe is None and w.exe:
            at = self.find("exe=", 0)
            if at >= 0:
                s.exe, end = self.quoted_or_hex(at + 4, 67)
                term = end if end >= 0 else term
            else:
                s.exe = "(null)"
        self.numeric_res(term)

    def scan(self, type_num: int) -> None:
        self.type = type_num
        t = type_num
        if t == SYSCALL:
            self.syscall()
        elif t == CWD:
            self.cwd()
        elif t == AVC_PATH:
            if self.avc_path():
                raise _Malformed
        elif t == PATH:
            self.path_record()
        elif t == USER_AVC or t == AVC:
            self.avc()
        elif t == USER or USER_AUTH <= t <= USER_END or USER_CHAUTHTOK <= t <= LAST_USER_MSG or FIRST_USER_MSG2 <= t <= LAST_USER_MSG2:
            self.user()
        elif t == SOCKADDR:
            self.sockaddr()
        elif t == LOGIN:
            self.login()
        elif t in (IPC, OBJ_PID):
            pass  # only object contexts, which no report asked for here
        elif t in (DAEMON_START, DAEMON_END, DAEMON_ABORT, DAEMON_CONFIG, DAEMON_ROTATE, DAEMON_RESUME):
            self.daemon1()
        elif t in (DAEMON_ACCEPT, DAEMON_CLOSE):
            self.daemon2()
        elif t == CONFIG_CHANGE:
            self.simple_message()
            try:
                self.avc_path()
            except _Malformed:
                pass  # aureport ignores this scanner's result for CONFIG_CHANGE
        elif t == NETFILTER_PKT:
            self.pkt()
        elif t in (FEATURE_CHANGE, ANOM_LINK):
            self.task_info()
        elif t in (SECCOMP, ANOM_PROMISCUOUS, ANOM_ABEND):
            self.kernel_anom()
        elif MAC_POLICY_LOAD <= t <= MAC_UNLBL_STCDEL:
            self.simple_message()
        elif INTEGRITY_FIRST <= t <= INTEGRITY_RULE:
            self.integrity()
        elif t in (NETFILTER_CFG, EVENT_LISTENER):
            self.kernel()
        elif t == TTY:
            self.tty()


def _scan_event(types: list[int], messages: list[str], wants: _Wants) -> _Items | None:
    """The search items of one event, or None when aureport rejects it as malformed."""
    items = _Items()
    for t, m in zip(types, messages):
        try:
            _Scan(m, items, wants).scan(t)
        except _Malformed:
            return None
    return items


def _has(types: list[int], t: int) -> bool:
    return t in types


def _has_range(types: list[int], low: int, high: int) -> bool:
    return any(low <= t <= high for t in types)


SUMMARY_LINES = (
    ("changes", "Number of changes in configuration"),
    ("acct_changes", "Number of changes to accounts, groups, or roles"),
    ("logins", "Number of logins"),
    ("failed_logins", "Number of failed logins"),
    ("authentications", "Number of authentications"),
    ("failed_authentications", "Number of failed authentications"),
    ("users", "Number of users"),
    ("terminals", "Number of terminals"),
    ("host_names", "Number of host names"),
    ("executables", "Number of executables"),
    ("commands", "Number of commands"),
    ("files", "Number of files"),
    ("avcs", "Number of AVC's"),
    ("mac_events", "Number of MAC events"),
    ("failed_syscalls", "Number of failed syscalls"),
    ("anomalies", "Number of anomaly events"),
    ("responses", "Number of responses to anomaly events"),
    ("crypto", "Number of crypto events"),
    ("integrity", "Number of integrity events"),
    ("virt", "Number of virt events"),
    ("keys", "Number of keys"),
    ("process_ids", "Number of process IDs"),
    ("events", "Number of events"),
)


@dataclass
class AureportCounts:
    """The counters of `aureport --summary`, and the per-key counts of `aureport -k --summary`
    with the number of rows of `aureport -k` (events whose first key is not "(null)")."""

    counts: Counter[str] = field(default_factory=Counter)
    users: set[int] = field(default_factory=set)
    terminals: set[str] = field(default_factory=set)
    host_names: set[str] = field(default_factory=set)
    executables: set[str] = field(default_factory=set)
    commands: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    per_key: Counter[str] = field(default_factory=Counter)
    keyed_events: int = 0

    def add(self, key: str, records: list[tuple[str, str, str, int]]) -> None:
        """Count one grouped audit event (records as the reader holds them)."""
        slash = key.rfind("/")
        node, ident = (key[:slash], key[slash + 1 :]) if slash >= 0 else ("", key)
        prefix = f"node={node} " if node else ""
        types = [record_type_number(r[0]) for r in records]
        messages = [f"{prefix}type={r[0]} msg=audit({ident}): {r[1]}" for r in records]
        s = _scan_event(types, messages, _SUMMARY)
        if s is not None:
            self._summary(types, s)
        k = _scan_event(types, messages, _KEYS)
        if k is not None and k.keys:
            for name in k.keys:
                if name != "(null)":
                    self.per_key[name] += 1
            if k.keys[0] != "(null)":
                self.keyed_events += 1

    def _summary(self, types: list[int], s: _Items) -> None:
        c = self.counts
        c["events"] += 1
        c["changes"] += sum(_has(types, t) for t in (CONFIG_CHANGE, DAEMON_CONFIG, USYS_CONFIG, NETFILTER_CFG,
                                                     FEATURE_CHANGE, USER_MAC_CONFIG_CHANGE))
        c["changes"] += _has_range(types, MAC_POLICY_LOAD, MAC_UNLBL_STCDEL)
        c["acct_changes"] += (_has(types, USER_CHAUTHTOK) + _has_range(types, ADD_USER, DEL_GROUP)
                              + _has(types, USER_MGMT) + _has(types, GRP_MGMT)
                              + _has_range(types, ROLE_ASSIGN, ROLE_REMOVE))
        c["crypto"] += _has_range(types, 1600, 1699) + _has_range(types, 2400, 2499)
        if _has(types, USER_LOGIN):
            if s.success == 1:
                c["logins"] += 1
            elif s.success == 0:
                c["failed_logins"] += 1
        if _has(types, USER_AUTH) or _has(types, GRP_AUTH):
            if s.success == 1:
                c["authentications"] += 1
            elif s.success == 0:
                c["failed_authentications"] += 1
        elif _has(types, USER_MGMT) and s.success == 0:
            c["failed_authentications"] += 1
        if s.loginuid != -2:
            self.users.add(s.loginuid)
        if s.terminal is not None:
            self.terminals.add(s.terminal)
        if s.hostname is not None:
            self.host_names.add(s.hostname)
        if s.exe is not None:
            self.executables.add(s.exe)
        if s.comm is not None:
            self.commands.add(s.comm)
        self.files.update(s.files or ())
        c["avcs"] += _has(types, AVC) or _has(types, USER_AVC)
        c["mac_events"] += _has_range(types, MAC_POLICY_LOAD, MAC_UNLBL_STCDEL) + _has_range(types, 2300, 2399)
        c["virt"] += _has_range(types, 2500, 2599)
        c["integrity"] += _has_range(types, INTEGRITY_FIRST, INTEGRITY_LAST)
        if s.success == 0 and s.syscall > 0:
            c["failed_syscalls"] += 1
        if s.pid != -1:
            self.pids.add(s.pid)
        c["anomalies"] += _has_range(types, 2100, 2199) + _has_range(types, 1700, 1799)
        c["responses"] += _has_range(types, 2200, 2299)
        self.keys.update(k for k in (s.keys or ()) if k != "(null)")

    def summary(self) -> dict[str, int]:
        """The numbers of `aureport --summary`, by the keys of SUMMARY_LINES."""
        out = dict.fromkeys((k for k, _ in SUMMARY_LINES), 0)
        out.update(self.counts)
        out.update(users=len(self.users), terminals=len(self.terminals), host_names=len(self.host_names),
                   executables=len(self.executables), commands=len(self.commands), files=len(self.files),
                   keys=len(self.keys), process_ids=len(self.pids))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "keys": dict(sorted(self.per_key.items())),
            "keyed_events": self.keyed_events,
        }
