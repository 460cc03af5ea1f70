"""The live decoder's `net` object keeps to the Event schema: a socket family the Event has no
name for (accept() on AF_ALG, AF_VSOCK, or a socket whose family could not be read) leaves
`family` out rather than writing its number."""

from __future__ import annotations

import socket
import struct

from secpolicy.events.live.decode import _net
from secpolicy.events.live.record import Header
from secpolicy.events.model import event_errors

_ZERO = Header(**{f: 0 for f in Header._fields} | {"comm": b""})


def header(family: int, stype: int = 1, lport: int = 0, rport: int = 0, remote: int = 0, local: int = 0) -> Header:
    return _ZERO._replace(a0=family | stype << 16 | lport << 32 | rport << 48, a1=remote, a3=local)


def _v4(addr: str) -> int:
    return int(struct.unpack("<I", socket.inet_aton(addr))[0])


def event(net: dict) -> dict:
    return {"type": "accept", "ts": "2026-01-01T00:00:00.000000000Z", "net": net}


def test_families_the_event_names() -> None:
    net, _ = _net(header(2, lport=22, rport=40000, remote=_v4("10.0.0.2"), local=_v4("10.0.0.1")), [], accept=True)
    assert net == {"family": "inet", "protocol": "tcp", "src_ip": "10.0.0.2", "src_port": 40000,
                   "dst_ip": "10.0.0.1", "dst_port": 22}
    net, path = _net(header(1), ["/run/x.sock"], accept=False)
    assert net == {"family": "unix"} and path == "/run/x.sock"
    assert _net(header(10, stype=2), [], accept=False)[0]["family"] == "inet6"


def test_other_families_leave_family_out() -> None:
    for family in (0, socket.AF_NETLINK, 38, 40):  # unread, netlink, AF_ALG, AF_VSOCK
        net, path = _net(header(family, stype=1, lport=7), [], accept=True)
        assert "family" not in net and path is None
        assert net == {"protocol": "tcp", "dst_port": 7}
        assert event_errors(event(net)) == []


def test_a_connect_under_way_is_the_failure_auditd_records() -> None:
    # auditd: `syscall=42 success=no exit=-115` (a real one is in go-libaudit's audit-rhel7.log,
    # which the auditd reader's test checks against go-libaudit's own parse); live says the same.
    from secpolicy.events.live.decode import _outcome

    assert _outcome("connect", -115) == {"result": "failure", "errno": 115}
    assert _outcome("connect", 0) == {"result": "success"}
    assert _outcome("connect", -111) == {"result": "failure", "errno": 111}
