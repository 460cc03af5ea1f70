"""The event fields rules may use in `when:` expressions, as types for the checker.
Mirrors the Event contract in docs/contracts.md and schemas/event.schema.json."""

from __future__ import annotations

from secpolicy.dsl.types import INT, IP, MODE, STR, ListType, ObjectType, Type

__all__ = ["EVENT", "EVENT_TYPES", "event_field_type"]

EVENT_TYPES = (
    "exec",
    "open",
    "write",
    "unlink",
    "rename",
    "chmod",
    "chown",
    "connect",
    "accept",
    "auth",
    "setuid",
    "capset",
    "bpf",
    "module_load",
    "ptrace",
    "mount",
    "setxattr",
    "config_change",
    "account_change",
)

STRS = ListType(STR)


def _obj(name: str, fields: dict[str, Type], doc: str = "") -> ObjectType:
    return ObjectType(name, fields, doc=doc, dict_access=True)


PROC = _obj(
    "event.proc",
    {
        "pid": INT,
        "ppid": INT,
        "tid": INT,
        "comm": STR,
        "exe": STR,
        "cmdline": STR,
        "args": STRS,
        "cwd": STR,
        "uid": INT,
        "euid": INT,
        "gid": INT,
        "egid": INT,
        "auid": INT,
        "session": INT,
        "tty": STR,
        "ancestors": STRS,
        "pexe": STR,
        "container_id": STR,
        "cgroup": STR,
    },
    "the process that caused the event",
)

EVENT = _obj(
    "event",
    {
        "type": STR,
        "ts": STR,
        "host": STR,
        "proc": PROC,
        "user": _obj("event.user", {"uid": INT, "name": STR}, "the acting user (effective uid)"),
        "login": _obj("event.login", {"uid": INT, "name": STR, "session": INT}, "the login user (audit login uid) and session"),
        "file": _obj(
            "event.file",
            {"path": STR, "flags": STRS, "mode": MODE, "target": STR, "uid": INT, "gid": INT, "xattr": STR},
        ),
        "net": _obj(
            "event.net",
            {
                "family": STR,
                "protocol": STR,
                "src_ip": IP,
                "src_port": INT,
                "dst_ip": IP,
                "dst_port": INT,
            },
        ),
        "auth": _obj("event.auth", {"service": STR, "user": STR, "result": STR, "rhost": STR, "method": STR}),
        "cred": _obj("event.cred", {"uid": INT, "euid": INT, "gid": INT, "egid": INT, "caps": STRS}),
        "bpf": _obj(
            "event.bpf", {"cmd": STR, "prog_id": INT, "prog_type": STR, "name": STR, "map_type": STR}
        ),
        "module": _obj("event.module", {"name": STR}),
        "ptrace": _obj("event.ptrace", {"request": INT, "target_pid": INT}),
        "mount": _obj("event.mount", {"source": STR, "fstype": STR, "flags": INT}),
        "account": _obj("event.account", {"name": STR, "op": STR, "group": STR}),
        "config": _obj("event.config", {"key": STR, "op": STR, "old": STR, "new": STR}),
        "outcome": _obj("event.outcome", {"result": STR, "errno": INT}),
        "audit": _obj("event.audit", {"key": STR, "keys": STRS}, "what the Linux audit system said (auditd only)"),
        "source": _obj("event.source", {"name": STR, "probe": STR, "records": STRS}),
        "redacted": STRS,
    },
    "a normalised security event",
)


def event_field_type(path: str) -> Type | None:
    """The type of a dotted event field path such as `auth.rhost`, or None if unknown."""
    return EVENT.path_type(path)
