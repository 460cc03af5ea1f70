"""Live processes and listening sockets: a socket this test opens is found with its owner,
and capability sets decode the same masks /proc shows."""

from __future__ import annotations

import os
import socket

from secpolicy.facts import FactContext
from secpolicy.facts.procs import decode_caps
from secpolicy.vocabulary import builtin_registry


def test_own_listening_socket_is_found_with_its_owner() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("::1", 0))
        port, uport = tcp.getsockname()[1], udp.getsockname()[1]
        socks = FactContext(builtin_registry(), "/").fact("listening", ())
        mine = [s for s in socks if s.pid == os.getpid()]
        assert ("tcp", "127.0.0.1", port) in [(s.protocol, s.address, s.port) for s in mine]
        assert ("udp6", "::1", uport) in [(s.protocol, s.address, s.port) for s in mine]
        assert all(s.process for s in mine)


def test_processes_include_this_one_with_decoded_capabilities() -> None:
    procs = {p.pid: p for p in FactContext(builtin_registry(), "/").fact("processes", ())}
    me = procs[os.getpid()]
    with open("/proc/self/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    assert me.exe == os.readlink("/proc/self/exe")
    assert me.uid == os.getuid() and me.euid == os.geteuid() and me.ppid == os.getppid()
    assert me.caps_eff == decode_caps(status["CapEff"].strip())
    assert me.caps_bnd == decode_caps(status["CapBnd"].strip())
    assert me.where("caps_eff") == f"/proc/{os.getpid()}/status"
