"""Reader of Linux audit logs (auditd RAW and ENRICHED formats): groups records into audit events
exactly as ausearch/aureport do, and turns each event into at most one normalised Event.

Grouping follows ausearch's rules so that counts agree with `aureport`: records belong to the
same event when node, seconds, milliseconds and serial agree while that event is still open; an
event closes when its first record is a single-record type (user-space messages, LOGIN, anomaly
and integrity records ...), when a new event starts more than two seconds later, or at the end of
the input. A record that arrives after its event closed starts a new event, as in aureport.
"""

from __future__ import annotations

import heapq
import os.path
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secpolicy.errors import InputError
from secpolicy.events.model import format_ts
from secpolicy.kernel_names import BPF_CMDS as _BPF_CMDS
from secpolicy.kernel_names import CAPABILITIES as _CAPS
from secpolicy.kernel_names import open_flags as _open_flags

__all__ = [
    "RECORD_TYPES",
    "AuditSummary",
    "AuditdReader",
    "AuditdSource",
    "Record",
    "build_event",
    "decode_value",
    "group_records",
    "parse_fields",
    "parse_record",
]

# Record type numbers (linux/audit.h and libaudit): needed to close events the way ausearch does.
RECORD_TYPES: dict[str, int] = {
    "GET": 1000, "SET": 1001, "LIST": 1002, "ADD": 1003, "DEL": 1004, "USER": 1005,
    "LOGIN": 1006, "WATCH_INS": 1007, "WATCH_REM": 1008, "WATCH_LIST": 1009,
    "SIGNAL_INFO": 1010, "ADD_RULE": 1011, "DEL_RULE": 1012, "LIST_RULES": 1013, "TRIM": 1014,
    "MAKE_EQUIV": 1015, "TTY_GET": 1016, "TTY_SET": 1017, "SET_FEATURE": 1018,
    "GET_FEATURE": 1019,
    "USER_AUTH": 1100, "USER_ACCT": 1101, "USER_MGMT": 1102, "CRED_ACQ": 1103,
    "CRED_DISP": 1104, "USER_START": 1105, "USER_END": 1106, "USER_AVC": 1107,
    "USER_CHAUTHTOK": 1108, "USER_ERR": 1109, "CRED_REFR": 1110, "USYS_CONFIG": 1111,
    "USER_LOGIN": 1112, "USER_LOGOUT": 1113, "ADD_USER": 1114, "DEL_USER": 1115,
    "ADD_GROUP": 1116, "DEL_GROUP": 1117, "DAC_CHECK": 1118, "CHGRP_ID": 1119,
    "TEST": 1120, "TRUSTED_APP": 1121, "USER_SELINUX_ERR": 1122, "USER_CMD": 1123,
    "USER_TTY": 1124, "CHUSER_ID": 1125, "GRP_AUTH": 1126, "SYSTEM_BOOT": 1127,
    "SYSTEM_SHUTDOWN": 1128, "SYSTEM_RUNLEVEL": 1129, "SERVICE_START": 1130,
    "SERVICE_STOP": 1131, "GRP_MGMT": 1132, "GRP_CHAUTHTOK": 1133, "MAC_CHECK": 1134,
    "ACCT_LOCK": 1135, "ACCT_UNLOCK": 1136, "USER_DEVICE": 1137, "SOFTWARE_UPDATE": 1138,
    "DAEMON_START": 1200, "DAEMON_END": 1201, "DAEMON_ABORT": 1202, "DAEMON_CONFIG": 1203,
    "DAEMON_RECONFIG": 1204, "DAEMON_ROTATE": 1205, "DAEMON_RESUME": 1206,
    "DAEMON_ACCEPT": 1207, "DAEMON_CLOSE": 1208, "DAEMON_ERR": 1209,
    "SYSCALL": 1300, "PATH": 1302, "IPC": 1303, "SOCKETCALL": 1304, "CONFIG_CHANGE": 1305,
    "SOCKADDR": 1306, "CWD": 1307, "EXECVE": 1309, "IPC_SET_PERM": 1311, "MQ_OPEN": 1312,
    "MQ_SENDRECV": 1313, "MQ_NOTIFY": 1314, "MQ_GETSETATTR": 1315, "KERNEL_OTHER": 1316,
    "FD_PAIR": 1317, "OBJ_PID": 1318, "TTY": 1319, "EOE": 1320, "BPRM_FCAPS": 1321,
    "CAPSET": 1322, "MMAP": 1323, "NETFILTER_PKT": 1324, "NETFILTER_CFG": 1325,
    "SECCOMP": 1326, "PROCTITLE": 1327, "FEATURE_CHANGE": 1328, "REPLACE": 1329,
    "KERN_MODULE": 1330, "FANOTIFY": 1331, "TIME_INJOFFSET": 1332, "TIME_ADJNTPVAL": 1333,
    "BPF": 1334, "EVENT_LISTENER": 1335, "URINGOP": 1336, "OPENAT2": 1337,
    "DM_CTRL": 1338, "DM_EVENT": 1339,
    "AVC": 1400, "SELINUX_ERR": 1401, "AVC_PATH": 1402, "MAC_POLICY_LOAD": 1403,
    "MAC_STATUS": 1404, "MAC_CONFIG_CHANGE": 1405, "MAC_UNLBL_ALLOW": 1406,
    "MAC_CIPSOV4_ADD": 1407, "MAC_CIPSOV4_DEL": 1408, "MAC_MAP_ADD": 1409,
    "MAC_MAP_DEL": 1410, "MAC_IPSEC_ADDSA": 1411, "MAC_IPSEC_DELSA": 1412,
    "MAC_IPSEC_ADDSPD": 1413, "MAC_IPSEC_DELSPD": 1414, "MAC_IPSEC_EVENT": 1415,
    "MAC_UNLBL_STCADD": 1416, "MAC_UNLBL_STCDEL": 1417, "MAC_CALIPSO_ADD": 1418,
    "MAC_CALIPSO_DEL": 1419,
    "ANOM_PROMISCUOUS": 1700, "ANOM_ABEND": 1701, "ANOM_LINK": 1702, "ANOM_CREAT": 1703,
    "INTEGRITY_DATA": 1800, "INTEGRITY_METADATA": 1801, "INTEGRITY_STATUS": 1802,
    "INTEGRITY_HASH": 1803, "INTEGRITY_PCR": 1804, "INTEGRITY_RULE": 1805,
    "INTEGRITY_EVM_XATTR": 1806, "INTEGRITY_POLICY_RULE": 1807,
    "KERNEL": 2000,
    "ANOM_LOGIN_FAILURES": 2100, "ANOM_LOGIN_TIME": 2101, "ANOM_LOGIN_SESSIONS": 2102,
    "ANOM_LOGIN_ACCT": 2103, "ANOM_LOGIN_LOCATION": 2104, "ANOM_MAX_DAC": 2105,
    "ANOM_MAX_MAC": 2106, "ANOM_AMTU_FAIL": 2107, "ANOM_RBAC_FAIL": 2108,
    "ANOM_RBAC_INTEGRITY_FAIL": 2109, "ANOM_CRYPTO_FAIL": 2110, "ANOM_ACCESS_FS": 2111,
    "ANOM_EXEC": 2112, "ANOM_MK_EXEC": 2113, "ANOM_ADD_ACCT": 2114, "ANOM_DEL_ACCT": 2115,
    "ANOM_MOD_ACCT": 2116, "ANOM_ROOT_TRANS": 2117, "ANOM_LOGIN_SERVICE": 2118,
    "ANOM_LOGIN_ROOT": 2119, "ANOM_ORIGIN_FAILURES": 2120, "ANOM_SESSION": 2121,
    "RESP_ANOMALY": 2200, "RESP_ALERT": 2201, "RESP_KILL_PROC": 2202, "RESP_TERM_ACCESS": 2203,
    "RESP_ACCT_REMOTE": 2204, "RESP_ACCT_LOCK_TIMED": 2205, "RESP_ACCT_UNLOCK_TIMED": 2206,
    "RESP_ACCT_LOCK": 2207, "RESP_TERM_LOCK": 2208, "RESP_SEBOOL": 2209, "RESP_EXEC": 2210,
    "RESP_SINGLE": 2211, "RESP_HALT": 2212, "RESP_ORIGIN_BLOCK": 2213,
    "RESP_ORIGIN_BLOCK_TIMED": 2214, "RESP_ORIGIN_UNBLOCK_TIMED": 2215,
    "USER_ROLE_CHANGE": 2300, "ROLE_ASSIGN": 2301, "ROLE_REMOVE": 2302,
    "LABEL_OVERRIDE": 2303, "LABEL_LEVEL_CHANGE": 2304, "USER_LABELED_EXPORT": 2305,
    "USER_UNLABELED_EXPORT": 2306, "DEV_ALLOC": 2307, "DEV_DEALLOC": 2308, "FS_RELABEL": 2309,
    "USER_MAC_POLICY_LOAD": 2310, "ROLE_MODIFY": 2311, "USER_MAC_CONFIG_CHANGE": 2312,
    "USER_MAC_STATUS": 2313,
    "CRYPTO_TEST_USER": 2400, "CRYPTO_PARAM_CHANGE_USER": 2401, "CRYPTO_LOGIN": 2402,
    "CRYPTO_LOGOUT": 2403, "CRYPTO_KEY_USER": 2404, "CRYPTO_FAILURE_USER": 2405,
    "CRYPTO_REPLAY_USER": 2406, "CRYPTO_SESSION": 2407, "CRYPTO_IKE_SA": 2408,
    "CRYPTO_IPSEC_SA": 2409,
    "VIRT_CONTROL": 2500, "VIRT_RESOURCE": 2501, "VIRT_MACHINE_ID": 2502,
    "VIRT_INTEGRITY_CHECK": 2503, "VIRT_CREATE": 2504, "VIRT_DESTROY": 2505,
    "VIRT_MIGRATE_IN": 2506, "VIRT_MIGRATE_OUT": 2507,
}

_FIRST_EVENT = 1300
_FIRST_ANOM = 1700
_MAC_UNLBL_ALLOW, _MAC_CALIPSO_DEL = 1406, 1419
_GROUP_SPAN = 2  # seconds: ausearch closes an event when a record 3 s later starts a new one

_UNSET_IDS = {"4294967295", "-1", "unset"}
_HEX_RE = re.compile(r"^(?:[0-9A-F]{2})+$")
_HEADER_RE = re.compile(
    r"^(?:node=(?P<node>\S*) )?type=(?P<type>\S+) msg=audit\((?P<sec>\d+)(?:\.(?P<ms>\d+))?"
    r"(?::(?P<serial>\d+))?\):? ?"
)
_TYPE_NUM_RE = re.compile(r"^UNKNOWN\[(\d+)\]$")


def _type_number(name: str) -> int:
    n = RECORD_TYPES.get(name)
    if n is not None:
        return n
    m = _TYPE_NUM_RE.match(name)
    return int(m.group(1)) if m else 0


def _single_record(type_num: int) -> bool:
    # The record types after which ausearch considers an event complete (see module docstring).
    return (
        type_num == 1327
        or type_num < _FIRST_EVENT
        or type_num >= _FIRST_ANOM
        or _MAC_UNLBL_ALLOW <= type_num <= _MAC_CALIPSO_DEL
    )


@dataclass(frozen=True)
class Record:
    """One line of an audit log. `body` is the text after `msg=audit(...):`, `interp` the
    ENRICHED part after 0x1D (empty for RAW logs), `where` is `file:line`."""

    type: str
    node: str | None
    sec: int
    milli: int
    serial: int
    body: str
    interp: str
    where: str

    @property
    def key(self) -> tuple[str | None, int, int, int]:
        return (self.node, self.sec, self.milli, self.serial)

    @property
    def id(self) -> str:
        ident = f"{self.sec}.{self.milli:03d}:{self.serial}"
        return f"{self.node}/{ident}" if self.node else ident


def parse_record(line: str, where: str = "") -> Record | None:
    """Split one log line into a Record; None when the line has no `type=... msg=audit(...)`
    header (blank, truncated, garbled or `msg=?` lines, which ausearch skips too)."""
    line = line.rstrip("\n")
    interp = ""
    sep = line.find("\x1d")
    if sep >= 0:
        line, interp = line[:sep], line[sep + 1 :]
    m = _HEADER_RE.match(line)
    if m is None:
        return None
    ms = m.group("ms")
    serial = m.group("serial")
    return Record(
        type=m.group("type"),
        node=m.group("node"),
        sec=int(m.group("sec")),
        milli=int(ms) if ms else 0,
        serial=int(serial) if serial else 0,
        body=line[m.end() :],
        interp=interp,
        where=where,
    )


_KV_RE = re.compile(r"""([A-Za-z0-9_\-\[\]]+)=("[^"]*"?|'[^']*'?|[^ ]*)""")


def parse_fields(text: str) -> dict[str, str]:
    """`key=value` pairs of a record body: values bare, "double-quoted" (kept with their
    quotes so hex and quoted values stay distinguishable) or 'single-quoted' (user-space
    `msg='...'`, whose pairs are merged in). Words without `=` are ignored (AVC prose), except
    after `op=`, where user-space tools write operations with spaces (`op=adding user`)."""
    out: dict[str, str] = {}
    matches = list(_KV_RE.finditer(text))
    for k, m in enumerate(matches):
        key, value = m.group(1), m.group(2)
        if value[:1] == "'":
            inner = value[1:-1] if len(value) > 1 and value[-1] == "'" else value[1:]
            if key == "msg":
                for ik, iv in parse_fields(inner).items():
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
    proctitle with NUL separators) decoded; `(null)`, `?` and absent give None."""
    if value is None or value in ("(null)", "?", "(none)", ""):
        return None
    if value[0] == '"':
        return value[1:-1] if len(value) >= 2 and value[-1] == '"' else value[1:]
    if len(value) % 2 == 0 and _HEX_RE.match(value):
        raw = bytes.fromhex(value)
        return raw.decode("utf-8", errors="replace")
    return value


def plain_value(value: str | None) -> str | None:
    """The text of a field auditd never hex-encodes (ids, addresses, terminals, operations):
    unquoted, `?`/`(null)` as None, and no hex decoding (`id=1001` is a number, not bytes)."""
    if value is None or value in ("(null)", "?", "(none)", ""):
        return None
    if value[0] == '"':
        return value[1:-1] if len(value) >= 2 and value[-1] == '"' else value[1:]
    return value


def _int(value: str | None, base: int = 10) -> int | None:
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        return None


@dataclass
class AuditSummary:
    """What a reader saw: records per type, events per first-record type (what
    `aureport -e --summary` counts), normalised events per type, unreadable lines."""

    records: Counter[str] = field(default_factory=Counter)
    audit_events: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    not_in_aureport: Counter[str] = field(default_factory=Counter)
    records_not_in_ausearch: Counter[str] = field(default_factory=Counter)
    garbled: int = 0
    garbled_where: list[str] = field(default_factory=list)
    failed_auth: int = 0
    auth: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": dict(sorted(self.records.items())),
            "audit_events": dict(sorted(self.audit_events.items())),
            "events": dict(sorted(self.events.items())),
            "unmapped_audit_events": dict(sorted(self.unmapped.items())),
            "audit_events_aureport_skips": dict(sorted(self.not_in_aureport.items())),
            "records_ausearch_skips": dict(sorted(self.records_not_in_ausearch.items())),
            "garbled_lines": self.garbled,
            "authentications": self.auth,
            "failed_authentications": self.failed_auth,
        }


def group_records(
    records: Iterable[Record], summary: AuditSummary | None = None
) -> Iterator[list[Record]]:
    """Group records into audit events with ausearch's algorithm, yielding each event (its
    records in file order) when it completes."""
    building: dict[tuple[str | None, int, int, int], list[Record]] = {}
    by_time: list[tuple[int, int, tuple[str | None, int, int, int]]] = []
    seq = 0
    for rec in records:
        if summary is not None:
            summary.records[rec.type] += 1
        key = rec.key
        current = building.get(key)
        if current is not None:
            current.append(rec)
            continue
        group = [rec]
        building[key] = group
        seq += 1
        heapq.heappush(by_time, (rec.sec, seq, key))
        # Events older than two seconds before this new one are complete.
        while by_time and by_time[0][0] + _GROUP_SPAN < rec.sec:
            _, _, old_key = heapq.heappop(by_time)
            done = building.pop(old_key, None)
            if done is not None:
                yield done
        if _single_record(_type_number(rec.type)):
            del building[key]
            yield group
    for group in building.values():
        yield group


# --- From an audit event to an Event -----------------------------------------------------

_ARCH_X86_64 = "c000003e"
_ARCH_AARCH64 = "c00000b7"
_ARCH_I386 = "40000003"

_SYSCALLS: dict[str, dict[int, str]] = {
    _ARCH_X86_64: {
        2: "open", 42: "connect", 43: "accept", 59: "execve", 76: "truncate", 82: "rename",
        83: "mkdir", 84: "rmdir", 85: "creat", 87: "unlink", 90: "chmod", 91: "fchmod",
        92: "chown", 93: "fchown", 94: "lchown", 101: "ptrace", 105: "setuid", 106: "setgid",
        113: "setreuid", 114: "setregid", 117: "setresuid", 119: "setresgid", 122: "setfsuid",
        123: "setfsgid", 126: "capset", 133: "mknod", 165: "mount", 175: "init_module",
        257: "openat", 258: "mkdirat", 259: "mknodat", 260: "fchownat", 263: "unlinkat",
        264: "renameat", 268: "fchmodat", 288: "accept4", 313: "finit_module",
        316: "renameat2", 321: "bpf", 322: "execveat", 437: "openat2", 452: "fchmodat2",
    },
    _ARCH_AARCH64: {
        33: "mknodat", 34: "mkdirat", 35: "unlinkat", 38: "renameat", 40: "mount",
        45: "truncate", 52: "fchmod", 53: "fchmodat", 54: "fchownat", 55: "fchown",
        56: "openat", 91: "capset", 105: "init_module", 117: "ptrace", 143: "setregid",
        144: "setgid", 145: "setreuid", 146: "setuid", 147: "setresuid", 149: "setresgid",
        151: "setfsuid", 152: "setfsgid", 202: "accept", 203: "connect", 221: "execve",
        242: "accept4", 273: "finit_module", 276: "renameat2", 280: "bpf", 281: "execveat",
        437: "openat2", 452: "fchmodat2",
    },
    _ARCH_I386: {
        5: "open", 8: "creat", 10: "unlink", 11: "execve", 14: "mknod", 15: "chmod",
        21: "mount", 23: "setuid", 26: "ptrace", 38: "rename", 39: "mkdir", 40: "rmdir",
        92: "truncate", 94: "fchmod", 128: "init_module", 182: "chown", 185: "capset",
        203: "setreuid32", 208: "setresuid32", 213: "setuid32", 295: "openat", 296: "mkdirat",
        298: "fchownat", 301: "unlinkat", 302: "renameat", 306: "fchmodat", 350: "finit_module",
        353: "renameat2", 357: "bpf", 358: "execveat", 362: "connect", 364: "accept4",
    },
}

# syscall name -> (event type, how to read its arguments)
_SYSCALL_EVENTS: dict[str, tuple[str, str]] = {
    "execve": ("exec", "exec"), "execveat": ("exec", "exec"),
    "open": ("open", "open0"), "openat": ("open", "open1"), "creat": ("write", "creat"),
    "openat2": ("open", "openat2"), "truncate": ("write", "truncate"),
    "mkdir": ("write", "mkdir"), "mkdirat": ("write", "mkdir"),
    "mknod": ("write", "mkdir"), "mknodat": ("write", "mkdir"),
    "unlink": ("unlink", "delete"), "unlinkat": ("unlink", "delete"),
    "rmdir": ("unlink", "delete"),
    "rename": ("rename", "rename"), "renameat": ("rename", "rename"),
    "renameat2": ("rename", "rename"),
    "chmod": ("chmod", "chmod1"), "fchmod": ("chmod", "chmod1"),
    "fchmodat": ("chmod", "chmod2"), "fchmodat2": ("chmod", "chmod2"),
    "chown": ("chown", "chown1"), "fchown": ("chown", "chown1"), "lchown": ("chown", "chown1"),
    "fchownat": ("chown", "chown2"),
    "connect": ("connect", "net"), "accept": ("accept", "net"), "accept4": ("accept", "net"),
    "setuid": ("setuid", "cred"), "setreuid": ("setuid", "cred"),
    "setresuid": ("setuid", "cred"), "setfsuid": ("setuid", "cred"),
    "setgid": ("setuid", "cred"), "setregid": ("setuid", "cred"),
    "setresgid": ("setuid", "cred"), "setfsgid": ("setuid", "cred"),
    "setuid32": ("setuid", "cred"), "setreuid32": ("setuid", "cred"),
    "setresuid32": ("setuid", "cred"),
    "capset": ("capset", "capset"), "bpf": ("bpf", "bpf"),
    "init_module": ("module_load", "module"), "finit_module": ("module_load", "module"),
    "ptrace": ("ptrace", "ptrace"), "mount": ("mount", "mount"),
}

_ACCOUNT_TYPES = frozenset(
    {
        "ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "USER_MGMT", "GRP_MGMT",
        "USER_CHAUTHTOK", "GRP_CHAUTHTOK", "ACCT_LOCK", "ACCT_UNLOCK", "ROLE_ASSIGN",
        "ROLE_REMOVE", "ROLE_MODIFY", "CHUSER_ID", "CHGRP_ID",
    }
)
_CONFIG_TYPES = frozenset(
    {
        "CONFIG_CHANGE", "DAEMON_CONFIG", "USYS_CONFIG", "NETFILTER_CFG", "MAC_CONFIG_CHANGE",
        "MAC_POLICY_LOAD", "MAC_STATUS", "FEATURE_CHANGE", "USER_MAC_CONFIG_CHANGE",
        "USER_MAC_POLICY_LOAD",
    }
)

# The audit daemon starting or stopping is a change of the audit configuration (PCI DSS
# 10.2.1.6: initialisation, stopping or pausing of the audit logs).
_DAEMON_STATES = {"DAEMON_START": "start", "DAEMON_END": "stop", "DAEMON_ABORT": "abort"}

_WRITE_FLAGS = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"})


def _signed32(value: int | None) -> int | None:
    if value is None:
        return None
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _parse_sockaddr(hexstr: str) -> dict[str, Any] | None:
    try:
        raw = bytes.fromhex(hexstr)
    except ValueError:
        return None
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[:2], "little")
    if family == 2 and len(raw) >= 8:
        return {"family": "inet", "port": int.from_bytes(raw[2:4], "big"), "ip": ".".join(str(b) for b in raw[4:8])}
    if family == 10 and len(raw) >= 24:
        import ipaddress

        return {
            "family": "inet6",
            "port": int.from_bytes(raw[2:4], "big"),
            "ip": str(ipaddress.IPv6Address(raw[8:24])),
        }
    if family == 1:
        path = raw[2:].split(b"\x00", 1)[0].decode("utf-8", "replace")
        if not path and len(raw) > 3:  # abstract socket: leading NUL
            path = "@" + raw[3:].split(b"\x00", 1)[0].decode("utf-8", "replace")
        return {"family": "unix", "path": path}
    return None


def _ts(rec: Record) -> str:
    return format_ts(rec.sec, rec.milli * 1_000_000)


def _result(res: str | None) -> str | None:
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
    if not name.startswith("/"):
        if not cwd:
            return None
        name = cwd.rstrip("/") + "/" + name
    # Lexical normalisation only: the log's file system is not ours to resolve symlinks in.
    norm = os.path.normpath(name)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


class _Ctx:
    """The records of one audit event, parsed on demand."""

    __slots__ = ("fields", "interp", "recs")

    def __init__(self, recs: list[Record]) -> None:
        self.recs = recs
        self.fields: list[dict[str, str]] = [parse_fields(r.body) for r in recs]
        self.interp: list[dict[str, str]] = [parse_fields(r.interp) if r.interp else {} for r in recs]

    def first(self, rtype: str) -> tuple[dict[str, str], dict[str, str]] | None:
        for r, f, i in zip(self.recs, self.fields, self.interp):
            if r.type == rtype:
                return f, i
        return None

    def all(self, rtype: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        return [(f, i) for r, f, i in zip(self.recs, self.fields, self.interp) if r.type == rtype]


def _proc_user(f: dict[str, str], i: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    proc: dict[str, Any] = {}
    for src, dst in (("pid", "pid"), ("ppid", "ppid"), ("uid", "uid"), ("euid", "euid"),
                     ("gid", "gid"), ("egid", "egid")):
        v = _int(f.get(src))
        if v is not None and f.get(src) not in _UNSET_IDS:
            proc[dst] = v
    auid = f.get("auid")
    if auid is not None and auid not in _UNSET_IDS and _int(auid) is not None:
        proc["auid"] = int(auid)
    ses = f.get("ses")
    if ses is not None and ses not in _UNSET_IDS and _int(ses) is not None:
        proc["session"] = int(ses)
    comm = decode_value(f.get("comm"))
    if comm is not None:
        proc["comm"] = comm
    exe = decode_value(f.get("exe"))
    if exe is not None:
        proc["exe"] = exe
    tty = plain_value(f.get("tty"))
    if tty is not None:
        proc["tty"] = tty
    user: dict[str, Any] = {}
    if "auid" in proc:
        user["uid"] = proc["auid"]
        name = decode_value(i.get("AUID"))
    elif "uid" in proc:
        user["uid"] = proc["uid"]
        name = decode_value(i.get("UID"))
    else:
        name = None
    if name and name not in ("unset",) and not name.startswith("unknown("):
        user["name"] = name
    return proc, user


def _exec_args(ctx: _Ctx) -> list[str] | None:
    rec = ctx.first("EXECVE")
    if rec is None:
        return None
    parts: dict[int, str] = {}
    split: dict[int, dict[int, str]] = {}
    for ex, _ in ctx.all("EXECVE"):
        for k, v in ex.items():
            if not k.startswith("a") or not k[1:2].isdigit():
                continue
            name = k[1:]
            if "[" in name:  # a1[0]=..., a1[1]=...: one long argument split across records
                idx, _, rest = name.partition("[")
                if idx.isdigit() and rest[:-1].isdigit():
                    split.setdefault(int(idx), {})[int(rest[:-1])] = decode_value(v) or ""
            elif name.isdigit():
                parts[int(name)] = decode_value(v) or ""
    for arg, chunks in split.items():
        parts[arg] = "".join(chunks[j] for j in sorted(chunks))
    argc = _int(rec[0].get("argc"))
    n = argc if argc is not None else (max(parts) + 1 if parts else 0)
    return [parts.get(j, "") for j in range(n)]


def _proctitle(ctx: _Ctx) -> list[str] | None:
    rec = ctx.first("PROCTITLE")
    if rec is None:
        return None
    raw = rec[0].get("proctitle")
    if raw is None:
        return None
    if raw.startswith('"'):
        return [raw[1:-1]]
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        return [raw]
    return [p.decode("utf-8", "replace") for p in data.rstrip(b"\x00").split(b"\x00")]


def _paths(ctx: _Ctx, cwd: str | None) -> list[tuple[str | None, str, dict[str, str]]]:
    out = []
    for f, _ in ctx.all("PATH"):
        name = decode_value(f.get("name"))
        nametype = (f.get("nametype") or f.get("objtype") or "NORMAL").upper()
        out.append((_join_path(cwd, name), nametype, f))
    return out


def _pick_path(paths: list[tuple[str | None, str, dict[str, str]]], *want: str) -> tuple[str | None, dict[str, str]] | None:
    for nt in want:
        for path, nametype, f in paths:
            if nametype == nt and path is not None:
                return path, f
    return None


def _syscall_name(f: dict[str, str], i: dict[str, str]) -> str | None:
    name = i.get("SYSCALL")
    if name:
        return name
    table = _SYSCALLS.get((f.get("arch") or "").lower())
    num = _int(f.get("syscall"))
    if table is None or num is None:
        return None
    return table.get(num)


def _base(ctx: _Ctx, rec: Record, etype: str, probe: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": etype, "ts": _ts(rec)}
    if rec.node:
        ev["host"] = rec.node
    ev["source"] = {"name": "auditd", "probe": probe, "records": [rec.id]}
    return ev


def _from_syscall(ctx: _Ctx, rec: Record, f: dict[str, str], i: dict[str, str]) -> dict[str, Any] | None:  # noqa: C901 - to be split
    name = _syscall_name(f, i)
    spec = _SYSCALL_EVENTS.get(name or "")
    if spec is None:
        return None
    etype, layout = spec
    ev = _base(ctx, rec, etype, f"SYSCALL:{name}")
    proc, user = _proc_user(f, i)
    cwd_rec = ctx.first("CWD")
    cwd = decode_value(cwd_rec[0].get("cwd")) if cwd_rec else None
    if cwd:
        proc["cwd"] = cwd
    args = _exec_args(ctx) if layout == "exec" else None
    if args is None:
        args = _proctitle(ctx)
    if args:
        proc["args"] = args
        proc["cmdline"] = " ".join(args)
    ev["proc"] = proc
    if user:
        ev["user"] = user
    success = f.get("success")
    outcome: dict[str, Any] = {}
    if success is not None:
        outcome["result"] = "success" if success == "yes" else "failure"
        ex = _int(f.get("exit"))
        if success != "yes" and ex is not None and ex < 0:
            outcome["errno"] = -ex
    if outcome:
        ev["outcome"] = outcome
    a = [_int(f.get(f"a{k}"), 16) for k in range(4)]
    paths = _paths(ctx, cwd)
    file: dict[str, Any] = {}
    if layout in ("open0", "open1", "creat", "openat2", "truncate", "mkdir"):
        if layout == "open0":
            flags_val, mode_val = a[1], a[2]
        elif layout == "open1":
            flags_val, mode_val = a[2], a[3]
        elif layout == "creat":
            flags_val, mode_val = 0o1101, a[1]
        elif layout == "truncate":
            flags_val, mode_val = 0o1001, None
        elif layout == "mkdir":
            flags_val, mode_val = 0o200100, None
        else:
            flags_val, mode_val = None, None
        if flags_val is not None:
            flags = _open_flags(flags_val)
            file["flags"] = flags
            if _WRITE_FLAGS.intersection(flags):
                ev["type"] = "write"
            if "O_CREAT" in flags and mode_val is not None and layout != "mkdir":
                file["mode"] = mode_val & 0o7777
        picked = _pick_path(paths, "CREATE", "NORMAL", "UNKNOWN") or _pick_path(paths, "PARENT")
        if picked:
            file["path"] = picked[0]
    elif layout == "delete":
        picked = _pick_path(paths, "DELETE", "NORMAL", "UNKNOWN")
        if picked:
            file["path"] = picked[0]
    elif layout == "rename":
        old = _pick_path(paths, "DELETE")
        new = _pick_path(paths, "CREATE")
        if old:
            file["path"] = old[0]
        if new:
            file["target"] = new[0]
    elif layout in ("chmod1", "chmod2"):
        mode = a[1] if layout == "chmod1" else a[2]
        if mode is not None:
            file["mode"] = mode & 0o7777
        picked = _pick_path(paths, "NORMAL", "UNKNOWN")
        if picked:
            file["path"] = picked[0]
    elif layout in ("chown1", "chown2"):
        uid, gid = (a[1], a[2]) if layout == "chown1" else (a[2], a[3])
        if uid is not None:
            file["uid"] = _signed32(uid)
        if gid is not None:
            file["gid"] = _signed32(gid)
        picked = _pick_path(paths, "NORMAL", "UNKNOWN")
        if picked:
            file["path"] = picked[0]
    elif layout == "exec":
        picked = _pick_path(paths, "NORMAL", "UNKNOWN")
        if picked and "exe" not in proc:
            proc["exe"] = picked[0]
    elif layout == "net":
        sa = ctx.first("SOCKADDR")
        if sa is not None:
            addr = _parse_sockaddr(sa[0].get("saddr", ""))
            if addr is not None:
                net: dict[str, Any] = {"family": addr["family"]}
                if addr["family"] == "unix":
                    pass  # the Event has no socket path field
                elif etype == "connect":
                    net["dst_ip"], net["dst_port"] = addr["ip"], addr["port"]
                else:
                    net["src_ip"], net["src_port"] = addr["ip"], addr["port"]
                ev["net"] = net
    elif layout == "cred":
        cred = {k: proc[k] for k in ("uid", "euid", "gid", "egid") if k in proc}
        if cred:
            ev["cred"] = cred
    elif layout == "capset":
        cap = ctx.first("CAPSET")
        if cap is not None:
            pe = _int(cap[0].get("cap_pe"), 16)
            if pe is not None:
                ev["cred"] = {"caps": [n for b, n in enumerate(_CAPS) if pe >> b & 1]}
    elif layout == "bpf":
        bpf: dict[str, Any] = {}
        if a[0] is not None and a[0] < len(_BPF_CMDS):
            bpf["cmd"] = _BPF_CMDS[a[0]]
        b = ctx.first("BPF")
        if b is not None:
            pid = _int(b[0].get("prog-id"))
            if pid is not None:
                bpf["prog_id"] = pid
        if bpf:
            ev["bpf"] = bpf
    elif layout == "module":
        km = ctx.first("KERN_MODULE")
        if km is not None:
            mname = decode_value(km[0].get("name"))
            if mname:
                ev["module"] = {"name": mname}
    elif layout == "ptrace":
        pt: dict[str, Any] = {}
        if a[0] is not None:
            pt["request"] = a[0]
        if a[1] is not None:
            pt["target_pid"] = a[1]
        ev["ptrace"] = pt
    elif layout == "mount":
        target = _pick_path([p for p in paths if p[2].get("item") == "1"], "NORMAL", "UNKNOWN")
        if target:
            file["path"] = target[0]
    if file:
        ev["file"] = file
    return ev


def _user_record_common(rec: Record, f: dict[str, str], i: dict[str, str], ev: dict[str, Any]) -> None:
    proc, user = _proc_user(f, i)
    term = plain_value(f.get("terminal"))
    if term is not None:
        proc["tty"] = term
    if proc:
        ev["proc"] = proc
    if user:
        ev["user"] = user
    res = _result(f.get("res"))
    if res is not None:
        ev["outcome"] = {"result": res}


def _from_user_auth(ctx: _Ctx, rec: Record, f: dict[str, str], i: dict[str, str]) -> dict[str, Any]:
    ev = _base(ctx, rec, "auth", rec.type)
    _user_record_common(rec, f, i, ev)
    auth: dict[str, Any] = {}
    exe = decode_value(f.get("exe"))
    if exe:
        auth["service"] = exe.rsplit("/", 1)[-1]
    acct = decode_value(f.get("acct"))
    if acct is None and "acct" in f:
        acct = "?"  # the record names no account (e.g. an invalid user); keep it visible
    if acct is None:
        # aureport attributes an attempt that names no account to the record's uid.
        uid = f.get("uid")
        acct = decode_value(i.get("UID")) or uid
    if acct is not None:
        auth["user"] = acct
    result = _result(f.get("res"))
    if result is not None:
        auth["result"] = result
    if result is not None:
        ev["outcome"] = {"result": result}
    host = plain_value(f.get("hostname"))
    addr = plain_value(f.get("addr"))
    rhost = host if host else addr
    if rhost:
        auth["rhost"] = rhost
    op = plain_value(f.get("op"))
    if op:
        auth["method"] = op
    ev["auth"] = auth
    return ev


def _from_user_cmd(ctx: _Ctx, rec: Record, f: dict[str, str], i: dict[str, str]) -> dict[str, Any]:
    ev = _base(ctx, rec, "exec", rec.type)
    _user_record_common(rec, f, i, ev)
    proc = ev.setdefault("proc", {})
    cmd = decode_value(f.get("cmd"))
    if cmd is not None:
        proc["cmdline"] = cmd
        proc["args"] = cmd.split(" ")
    cwd = decode_value(f.get("cwd"))
    if cwd is not None:
        proc["cwd"] = cwd
    return ev


def _from_account(ctx: _Ctx, rec: Record, f: dict[str, str], i: dict[str, str]) -> dict[str, Any]:
    ev = _base(ctx, rec, "account_change", rec.type)
    _user_record_common(rec, f, i, ev)
    account: dict[str, Any] = {}
    ident = decode_value(i.get("ID"))
    if ident is not None and ident.startswith("unknown("):
        ident = None
    name = decode_value(f.get("acct")) or ident or plain_value(f.get("id"))
    if name:
        account["name"] = name
    op = plain_value(f.get("op"))
    account["op"] = op or rec.type.lower()
    ev["account"] = account
    return ev


def _from_config(ctx: _Ctx, rec: Record, f: dict[str, str], i: dict[str, str]) -> dict[str, Any]:
    ev = _base(ctx, rec, "config_change", rec.type)
    _user_record_common(rec, f, i, ev)
    config: dict[str, Any] = {}
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
        config["op"] = rec.type.lower()
    ev["config"] = config
    if "outcome" not in ev:
        res = f.get("res")
        if res in ("0", "1"):
            ev["outcome"] = {"result": "success" if res == "1" else "failure"}
    sc = ctx.first("SYSCALL")
    if sc is not None:
        proc, user = _proc_user(*sc)
        ev.setdefault("proc", {}).update({k: v for k, v in proc.items() if k not in ev.get("proc", {})})
        if user and "user" not in ev:
            ev["user"] = user
    return ev


def _from_bpf_record(ctx: _Ctx, rec: Record, f: dict[str, str], i: dict[str, str]) -> dict[str, Any]:
    ev = _base(ctx, rec, "bpf", rec.type)
    bpf: dict[str, Any] = {}
    op = (f.get("op") or "").upper()
    if op:
        bpf["cmd"] = "BPF_PROG_LOAD" if op == "LOAD" else f"BPF_PROG_{op}"
    pid = _int(f.get("prog-id"))
    if pid is not None:
        bpf["prog_id"] = pid
    ev["bpf"] = bpf
    return ev


def build_event(records: list[Record]) -> dict[str, Any] | None:
    """The normalised Event of one audit event, or None when nothing in it maps to an
    event type (the records still count in the summary)."""
    ctx = _Ctx(records)
    for rec, f, i in zip(ctx.recs, ctx.fields, ctx.interp):
        t = rec.type
        if t == "USER_AUTH":
            ev = _from_user_auth(ctx, rec, f, i)
        elif t == "USER_CMD":
            ev = _from_user_cmd(ctx, rec, f, i)
        elif t in _ACCOUNT_TYPES:
            ev = _from_account(ctx, rec, f, i)
        elif t in _CONFIG_TYPES:
            ev = _from_config(ctx, rec, f, i)
        elif t in _DAEMON_STATES:
            ev = _from_config(ctx, rec, f, i)
            ev["config"] = {"key": "auditd", "op": _DAEMON_STATES[t]}
        else:
            continue
        ev["source"]["records"] = [r.id for r in records][:1]
        return ev
    sc = ctx.first("SYSCALL")
    if sc is not None:
        rec = next(r for r in ctx.recs if r.type == "SYSCALL")
        return _from_syscall(ctx, rec, *sc)
    for rec, f, i in zip(ctx.recs, ctx.fields, ctx.interp):
        if rec.type == "BPF":
            return _from_bpf_record(ctx, rec, f, i)
    return None


def _aureport_skips(group: list[Record]) -> bool:
    """Whether aureport leaves this audit event out of its reports: its record parser rejects
    (as "malformed") the old NETFILTER_CFG form without pid= and AppArmor AVC records, which
    are not in SELinux `avc:` form. We still read them; the summary counts them apart."""
    first = group[0]
    return (first.type == "NETFILTER_CFG" and "pid=" not in first.body) or (
        first.type == "AVC" and "avc:" not in first.body
    )


class AuditdReader:
    """Reads audit log files into Events (in the order their audit events complete) while
    counting records, audit events and garbled lines into `summary`."""

    def __init__(self, paths: Iterable[Path | str]) -> None:
        self.paths = [Path(p) for p in paths]
        self.summary = AuditSummary()

    def _records(self) -> Iterator[Record]:
        for path in self.paths:
            try:
                fh = open(path, encoding="utf-8", errors="surrogateescape", newline="\n")  # noqa: SIM115
            except OSError as exc:
                raise InputError(f"cannot read audit log: {exc.strerror}", str(path)) from None
            with fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    rec = parse_record(line, f"{path}:{lineno}")
                    if rec is None:
                        self.summary.garbled += 1
                        if len(self.summary.garbled_where) < 100:
                            self.summary.garbled_where.append(f"{path}:{lineno}")
                        continue
                    yield rec

    def audit_events(self) -> Iterator[list[Record]]:
        """Grouped audit events (lists of records), counting them by first record type."""
        for group in group_records(self._records(), self.summary):
            if _aureport_skips(group):
                self.summary.not_in_aureport[group[0].type] += 1
                if group[0].type == "AVC":
                    # ausearch drops these too (it keeps the old NETFILTER_CFG form).
                    self.summary.records_not_in_ausearch.update(r.type for r in group)
            else:
                self.summary.audit_events[group[0].type] += 1
            yield group

    def events(self) -> Iterator[dict[str, Any]]:
        s = self.summary
        for group in self.audit_events():
            ev = build_event(group)
            if ev is None:
                s.unmapped[group[0].type] += 1
                continue
            s.events[ev["type"]] += 1
            if ev["type"] == "auth":
                s.auth += 1
                if ev["auth"].get("result") == "failure":
                    s.failed_auth += 1
            yield ev


class AuditdSource(AuditdReader):
    """EventSource over audit log files (see secpolicy.events.sources.EventSource)."""
