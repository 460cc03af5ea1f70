"""Audit messages user space sent the kernel over NETLINK_AUDIT (shadow-utils' account changes,
auditctl's rule and status changes), turned into the audit record auditd would log for them and
read by the auditd reader, so live and replayed account and configuration events agree."""

from __future__ import annotations

import grp
import pwd
import re
import struct

from secpolicy.events.auditd import RECORD_TYPES, build_event, parse_record
from secpolicy.models import Event

__all__ = ["audit_event"]

_NAME_OF = {v: k for k, v in RECORD_TYPES.items()}
_SET, _ADD_RULE, _DEL_RULE = RECORD_TYPES["SET"], RECORD_TYPES["ADD_RULE"], RECORD_TYPES["DEL_RULE"]
_GROUP_TYPES = frozenset({"ADD_GROUP", "DEL_GROUP", "GRP_MGMT", "GRP_CHAUTHTOK", "CHGRP_ID"})

# struct audit_status (linux/audit.h): mask, enabled, failure, pid, rate_limit, backlog_limit,
# lost, backlog, feature_bitmap, backlog_wait_time; the kernel's names for each mask bit, in the
# order the kernel applies them.
_STATUS = struct.Struct("<10I")
_STATUS_BITS = ((4, "audit_pid", 3), (1, "audit_enabled", 1), (2, "audit_failure", 2),
                (8, "audit_rate_limit", 4), (0x10, "audit_backlog_limit", 5),
                (0x20, "audit_backlog_wait_time", 9), (0x40, "lost", 6))
# struct audit_rule_data: flags, action, field_count, mask[64], fields[64], values[64],
# fieldflags[64], buflen, then buf.
_RULE_HEAD = struct.Struct("<3I")
_RULE_FIELDS_AT = 12 + 64 * 4
_RULE_BUF_AT = 12 + 4 * 64 * 4 + 4
_FILTERKEY = 210
_FILTER_PREPEND = 0x10
# Field types whose value is a string in buf (its length in values[]): security labels,
# watch, dir, exe, filterkey.
_STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, _FILTERKEY})
_SAFE = re.compile(r'^[\x21-\x7e]*$')


def _quoted(value: str) -> str:
    """A value as the kernel logs an untrusted string: quoted, or hex when it must be."""
    if _SAFE.match(value) and '"' not in value:
        return f'"{value}"'
    return value.encode().hex().upper()


def _rule_keys(payload: bytes) -> tuple[str | None, int] | None:
    """The filter key(s) and list number of a struct audit_rule_data, or None if truncated."""
    if len(payload) < _RULE_BUF_AT:
        return None
    flags, _action, count = _RULE_HEAD.unpack_from(payload, 0)
    count = min(count, 64)
    fields = struct.unpack_from(f"<{count}I", payload, _RULE_FIELDS_AT)
    values = struct.unpack_from(f"<{count}I", payload, _RULE_FIELDS_AT + 64 * 4)
    buf = payload[_RULE_BUF_AT:]
    at = 0
    keys: list[str] = []
    for f, v in zip(fields, values, strict=True):
        if f not in _STRING_FIELDS:
            continue
        if f == _FILTERKEY:
            keys.append(buf[at : at + v].decode("utf-8", "replace"))
        at += v
    return ("\x01".join(keys) if keys else None), flags & ~_FILTER_PREPEND


def _kernel_line(mtype: int, payload: bytes, ids: str) -> str | None:
    """The CONFIG_CHANGE (or DAEMON_START/END) record the kernel would log for a request."""
    if mtype in (_ADD_RULE, _DEL_RULE):
        found = _rule_keys(payload)
        if found is None:
            return None
        key, listnr = found
        op = "add_rule" if mtype == _ADD_RULE else "remove_rule"
        keytext = _quoted(key) if key is not None else "(null)"
        return f"type=CONFIG_CHANGE msg=audit(0.000:0): {ids} op={op} key={keytext} list={listnr}"
    if mtype == _SET and len(payload) >= 16:
        status = _STATUS.unpack_from(payload.ljust(_STATUS.size, b"\0"), 0)
        for bit, name, index in _STATUS_BITS:
            if status[0] & bit:
                if name == "audit_pid":
                    # The audit daemon registering (or unregistering): what auditd logs as
                    # DAEMON_START / DAEMON_END.
                    kind = "DAEMON_START" if status[index] else "DAEMON_END"
                    return f"type={kind} msg=audit(0.000:0): op={'start' if status[index] else 'stop'} {ids}"
                return f"type=CONFIG_CHANGE msg=audit(0.000:0): op=set {name}={status[index]} {ids}"
    return None


def _id_name(type_name: str, text: str) -> str:
    """The ENRICHED interpretation of the message's numeric id= (a user, or a group)."""
    m = re.search(r"\bid=(\d+)", text)
    if m is None:
        return ""
    try:
        if type_name in _GROUP_TYPES:
            name = grp.getgrgid(int(m.group(1))).gr_name
        else:
            name = pwd.getpwuid(int(m.group(1))).pw_name
    except (KeyError, OverflowError):
        return ""
    return f'\x1dID="{name}"'


def audit_event(mtype: int, payload: bytes, pid: int, uid: int, auid: int, ses: int) -> Event | None:
    """The Event the auditd reader makes of the record logged for this message (its payload as
    sent), or None when it is not one the reader turns into an event."""
    ids = f"pid={pid} uid={uid} auid={auid} ses={ses}"
    type_name = _NAME_OF.get(mtype)
    if type_name is None:
        return None
    if type_name in ("SET", "ADD_RULE", "DEL_RULE"):
        line = _kernel_line(mtype, payload, ids)
    else:
        text = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
        line = f"type={type_name} msg=audit(0.000:0): {ids} msg='{text}'{_id_name(type_name, text)}"
    if line is None:
        return None
    rec = parse_record(line)
    return build_event([rec]) if rec is not None else None
