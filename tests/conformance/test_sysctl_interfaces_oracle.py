"""`sysctl(K).interfaces` and the CIS 3.3 rules on a `conf.all.` key against the kernel itself:
in network namespaces of its own (a veth pair between a host and a router, all traffic inside
them) each case sets `all` and the interface's own value, makes the kernel meet the situation
(forward a packet back out the interface it came in on; receive an ICMP redirect or a router
advertisement) and watches what it does. Where the kernel acted on the interface, the fact's
`effective` value there says so and the rule fails; where it did not, `effective` says not.

Ordering, not time, tells what happened: the sender is pinned to one CPU, so the packets of a
case pass the veth pair (one per-CPU backlog) in order, and a last packet whose answer is awaited
proves the ones before it were handled."""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.facts.sysctl import Assignment, Persisted, Settings

pytestmark = [
    # all traffic stays in namespaces of its own, but `ip netns add` mounts /run/netns on the host
    pytest.mark.xdist_group("live"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]

_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)
_WAIT = 30  # seconds: only how long a case waits for an answer that is sure to come


def _ip() -> str:
    path = shutil.which("ip", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ip (iproute2) is not installed")
        pytest.skip("ip (iproute2) is not installed")
    return path


def _run(*args: str) -> str:
    done = subprocess.run([_ip(), *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _in_ns(ns: str, fn: Callable[[], Any]) -> Any:
    """fn() in a thread of its own that has entered network namespace `ns`: /proc/sys/net and
    the sockets it opens are the namespace's."""
    out: dict[str, Any] = {}

    def body() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
            out["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _put(values: dict[str, int]) -> None:
    for key, v in values.items():  # keys relative to /proc/sys/net, in order
        with open(f"/proc/sys/net/{key}", "w") as f:
            f.write(f"{v}\n")


def _mac(ns: str, dev: str) -> str:
    return str(json.loads(_run("-n", ns, "-j", "link", "show", dev))[0]["address"])


@contextmanager
def _pair(tag: str) -> Iterator[tuple[str, str]]:
    """Namespaces H (h0, 10.0.0.1, fe80::1) and R (r0, 10.0.0.2, fe80::2) joined by a veth pair,
    no duplicate address detection; removed afterwards."""
    h, r = f"sp{os.getpid()}{tag}h", f"sp{os.getpid()}{tag}r"
    made = []
    try:
        for ns in (h, r):
            _run("netns", "add", ns)
            made.append(ns)
            _in_ns(ns, lambda: _put({"ipv6/conf/default/accept_dad": 0, "ipv6/conf/all/accept_dad": 0}))
        _run("link", "add", "h0", "netns", h, "type", "veth", "peer", "r0", "netns", r)
        for ns, dev, v4, v6 in ((h, "h0", "10.0.0.1/24", "fe80::1/64"), (r, "r0", "10.0.0.2/24", "fe80::2/64")):
            _run("-n", ns, "addr", "add", v4, "dev", dev)
            _run("-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            _run("-n", ns, "link", "set", dev, "up")
            _run("-n", ns, "link", "set", "lo", "up")
        yield h, r
    finally:
        for ns in made:
            subprocess.run([_ip(), "netns", "del", ns], capture_output=True, check=False)


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _icmp(type_: int, code: int, rest: bytes) -> bytes:
    msg = struct.pack("!BBH", type_, code, 0) + rest
    return msg[:2] + struct.pack("!H", _csum(msg)) + msg[4:]


def _await_echo(s: socket.socket, reply_type: int) -> None:
    while True:
        ready, _, _ = select.select([s], [], [], _WAIT)
        assert ready, "no echo reply: the peer never answered"
        d = s.recv(65535)
        body = d if s.family == socket.AF_INET6 else d[(d[0] & 15) * 4 :]
        if body[0] == reply_type and body[4:6] == b"\x05\xec":
            return


# ---- what the kernel does ---------------------------------------------------------------

_MARK = b"secpolicy-interfaces-oracle"


def _sends_redirect(h: str, r: str) -> bool:
    """R forwards H's packet for 10.9.9.9 back out r0 to 10.0.0.3 (its lladdr is h0's, so the
    packet comes back to H): did an ICMP redirect (type 5) from R reach H before it?"""
    _run("-n", h, "route", "add", "10.9.9.0/24", "via", "10.0.0.2")
    _run("-n", r, "neigh", "add", "10.0.0.3", "lladdr", _mac(h, "h0"), "dev", "r0", "nud", "permanent")
    _run("-n", r, "route", "add", "10.9.9.0/24", "via", "10.0.0.3")

    def probe() -> bool:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as cap, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            cap.bind(("h0", 0))
            udp.sendto(_MARK, ("10.9.9.9", 9))
            redirected = False
            while True:
                ready, _, _ = select.select([cap], [], [], _WAIT)
                assert ready, "the forwarded packet never came back"
                data, addr = cap.recvfrom(65535)
                if addr[2] == socket.PACKET_OUTGOING or addr[1] != 0x0800:
                    continue
                ip = data[14:]
                body = ip[(ip[0] & 15) * 4 :]
                if ip[9] == 1 and body[0] == 5 and ip[12:16] == socket.inet_aton("10.0.0.2"):
                    redirected = True
                if ip[9] == 17 and ip[16:20] == socket.inet_aton("10.9.9.9") and _MARK in body:
                    return redirected

    return bool(_in_ns(h, probe))


def _takes_redirect_v4(h: str, r: str) -> bool:
    """R, H's gateway for 10.9.9.9, sends H an ICMP host redirect to 10.0.0.3, then a ping:
    once the reply is back, does H route 10.9.9.9 via 10.0.0.3?"""
    _run("-n", h, "route", "add", "10.9.9.0/24", "via", "10.0.0.2")
    _run("-n", h, "neigh", "add", "10.0.0.2", "lladdr", _mac(r, "r0"), "dev", "h0", "nud", "permanent")
    _run("-n", h, "neigh", "add", "10.0.0.3", "lladdr", "02:00:00:00:00:03", "dev", "h0", "nud", "permanent")
    _run("-n", r, "neigh", "add", "10.0.0.1", "lladdr", _mac(h, "h0"), "dev", "r0", "nud", "permanent")

    def send() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        inner_icmp = struct.pack("!BBHHH", 0, 0, 0, 1, 1)  # an echo reply H sent to 10.9.9.9
        inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 1, 0,
                            socket.inet_aton("10.0.0.1"), socket.inet_aton("10.9.9.9"))
        inner = inner[:10] + struct.pack("!H", _csum(inner)) + inner[12:] + inner_icmp
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
            s.sendto(_icmp(5, 1, socket.inet_aton("10.0.0.3") + inner), ("10.0.0.1", 0))
            s.sendto(_icmp(8, 0, struct.pack("!HH", 0x5EC, 1)), ("10.0.0.1", 0))
            _await_echo(s, 0)

    _in_ns(r, send)
    route = _run("-n", h, "route", "get", "10.9.9.9").split()
    return route[route.index("via") + 1] == "10.0.0.3"


def _from_router_v6(h: str, r: str, message: bytes) -> None:
    _run("-n", r, "-6", "neigh", "add", "fe80::1", "lladdr", _mac(h, "h0"), "dev", "r0", "nud", "permanent")
    _run("-n", h, "-6", "neigh", "replace", "fe80::2", "lladdr", _mac(r, "r0"), "dev", "h0", "nud", "permanent")

    def send() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        idx = socket.if_nametoindex("r0")
        with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            s.bind(("fe80::2", 0, 0, idx))
            s.sendto(message, ("fe80::1", 0, 0, idx))  # the kernel fills in the checksum
            s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x5EC, 1), ("fe80::1", 0, 0, idx))
            _await_echo(s, 129)

    _in_ns(r, send)


def _takes_redirect_v6(h: str, r: str) -> bool:
    """R (fe80::2), H's gateway for 2001:db8:9::/64, redirects H to fe80::3 for 2001:db8:9::9."""
    _run("-n", h, "-6", "route", "add", "2001:db8:9::/64", "via", "fe80::2", "dev", "h0")
    msg = struct.pack("!BBHI", 137, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, "fe80::3")
    msg += socket.inet_pton(socket.AF_INET6, "2001:db8:9::9") + struct.pack("!BB6s", 2, 1, bytes.fromhex("020000000003"))
    _from_router_v6(h, r, msg)
    route = _run("-n", h, "-6", "route", "get", "2001:db8:9::9").split()
    return route[route.index("via") + 1] == "fe80::3"


def _takes_ra(h: str, r: str) -> bool:
    """R sends H a router advertisement (lifetime 1800 s, its link-layer address): does H take
    R as its default router?"""
    msg = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    msg += struct.pack("!BB6s", 1, 1, bytes.fromhex(_mac(r, "r0").replace(":", "")))
    _from_router_v6(h, r, msg)
    return "fe80::2" in _run("-n", h, "-6", "route", "show", "default")


# ---- the cases ---------------------------------------------------------------------------

# (rule, key, the side whose interface is judged, what the kernel is asked, the interface's
# sysctls to write in order (relative to /proc/sys/net), whether the kernel acts)
def _cases() -> Iterator[tuple[str, str, str, Callable[[str, str], bool], dict[str, int]]]:
    for a, i in itertools.product((0, 1), repeat=2):
        yield ("cis-3.3.2-ipv4-all-send-redirects", "send_redirects", "r", _sends_redirect,
               {"ipv4/ip_forward": 1, "ipv4/conf/all/rp_filter": 0, "ipv4/conf/r0/rp_filter": 0,
                "ipv4/conf/all/send_redirects": a, "ipv4/conf/r0/send_redirects": i})
    for f, a, i in itertools.product((0, 1), repeat=3):
        yield ("cis-3.3.5-ipv4-all-accept-redirects", "accept_redirects", "h", _takes_redirect_v4,
               {"ipv4/conf/all/secure_redirects": 0, "ipv4/conf/h0/secure_redirects": 0,
                "ipv4/conf/all/forwarding": f, "ipv4/conf/h0/forwarding": f,
                "ipv4/conf/all/accept_redirects": a, "ipv4/conf/h0/accept_redirects": i})
    for a, i in itertools.product((0, 1), repeat=2):
        # secure redirects are in force where a redirect to a gateway that is no default
        # gateway is refused (with shared_media off, which otherwise overrides it)
        yield ("cis-3.3.6-ipv4-all-secure-redirects", "secure_redirects", "h",
               lambda h, r: not _takes_redirect_v4(h, r),
               {"ipv4/conf/all/accept_redirects": 1, "ipv4/conf/h0/accept_redirects": 1,
                "ipv4/conf/all/shared_media": 0, "ipv4/conf/h0/shared_media": 0,
                "ipv4/conf/all/secure_redirects": a, "ipv4/conf/h0/secure_redirects": i})
    for f, a, i in itertools.product((0, 1), repeat=3):
        yield ("cis-3.3.5-ipv6-all-accept-redirects", "accept_redirects", "h", _takes_redirect_v6,
               {"ipv6/conf/all/forwarding": f, "ipv6/conf/all/accept_redirects": a,
                "ipv6/conf/h0/accept_redirects": i})
    for f, a, i in [(0, a, i) for a, i in itertools.product((0, 1), repeat=2)] + [(1, 0, 1), (1, 0, 2), (1, 2, 1)]:
        yield ("cis-3.3.11-ipv6-all-accept-ra", "accept_ra", "h", _takes_ra,
               {"ipv6/conf/all/forwarding": f, "ipv6/conf/all/accept_ra": a, "ipv6/conf/h0/accept_ra": i})


_CASES = list(_cases())


def _ids() -> list[str]:
    return ["{}:{}".format(c[0].split("-", 1)[1], ",".join(f"{k.split('/')[-2]}.{k.split('/')[-1]}={v}"
            for k, v in c[4].items() if "/all/" in k or "/h0/" in k or "/r0/" in k)) for c in _CASES]


@pytest.mark.parametrize(("rule", "key", "side", "ask", "values"), _CASES, ids=_ids())
def test_the_verdict_follows_what_the_kernel_does(
    bundle: tuple[Any, Any], rule: str, key: str, side: str,
    ask: Callable[[str, str], bool], values: dict[str, int],
) -> None:
    ps, reg = bundle  # conftest: the bundled policies
    family = next(iter(values)).split("/")[0]
    dotted = f"net.{family}.conf.all.{key}"
    dev = "h0" if side == "h" else "r0"
    # the persisted half holds: systemd-sysctl would write 0 for `all` (from a file of the test)
    persisted = Persisted(Settings({f"net/{family}/conf/all/{key}": Assignment("0", "/etc/sysctl.d/60-test.conf:1")}))
    with _pair(str(_CASES.index((rule, key, side, ask, values)))) as (h, r):
        ns = h if side == "h" else r
        _in_ns(ns, lambda: _put(values))
        acted = ask(h, r)

        def judge() -> tuple[Any, str, str]:
            ctx = FactContext(reg, "/", preset={"_sysctl_persisted": persisted})
            found = {i.name: i for i in ctx.fact("sysctl", (dotted,)).interfaces}
            finding = scan(ps, reg, rule_ids=[rule], context=ctx).findings[0]
            return found[dev], finding.status.value, repr(finding.evidence)

        iface, status, evidence = _in_ns(ns, judge)
    # the fact: what the kernel uses on the interface
    assert (iface.effective != 0) == acted, (iface, iface.where("effective"))
    # the rule: where the kernel acted it fails, naming the interface and both values
    if acted:
        assert status == "fail", evidence
        if values.get(f"{family}/conf/all/{key}") == 0:
            assert f"/proc/sys/net/{family}/conf/{dev}/{key} = " in evidence, evidence
            assert f"/proc/sys/net/{family}/conf/all/{key} = 0" in evidence, evidence
    elif all(v == 0 for k, v in values.items() if k.endswith(f"/all/{key}")):
        assert status == "pass", evidence
