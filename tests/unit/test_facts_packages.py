"""packages / package(name): dpkg status entries and Debian version ordering."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
from facts_helpers import context, materialize

from secpolicy.facts.packages import compare_versions


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_installed_removed_and_unknown(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    ssh = ctx.fact("package", ("openssh-server",))
    assert (ssh.installed, ssh.version, ssh.arch, ssh.status, ssh.source) == (
        True,
        "1:9.2p1-2+deb12u3",
        "amd64",
        "installed",
        "openssh",
    )
    assert ssh.where("version") == "/var/lib/dpkg/status:152"
    telnet = ctx.fact("package", ("telnet",))  # removed, config files left: "rc"
    assert (telnet.installed, telnet.status) == (False, "config-files")
    nis = ctx.fact("package", ("nis",))
    assert (nis.installed, nis.status, nis.version) == (False, "not-installed", None)
    assert nis.where("installed") == "/var/lib/dpkg/status (no entry for nis)"


def test_multiarch_entries(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    assert ctx.fact("package", ("libc6:i386",)).arch == "i386"
    assert ctx.fact("package", ("libc6",)).installed
    assert sum(p.name == "libc6" for p in ctx.fact("packages", ())) == 2


def test_weak_installed_set(roots: dict[str, Path]) -> None:
    installed = {p.name for p in context(roots["weak"]).fact("packages", ()) if p.installed}
    assert {
        "telnet",
        "rsh-client",
        "nis",
        "xinetd",
        "avahi-daemon",
        "ufw",
        "iptables",
        "nftables",
    } <= installed
    assert not {"auditd", "apparmor", "libpam-pwquality", "chrony", "aide"} & installed


def test_version_methods(roots: dict[str, Path]) -> None:
    ctx = context(roots["weak"])
    ssh = ctx.fact("package", ("openssh-server",))
    assert ssh.version_below("1:9.2p1-2+deb12u3") is True  # before the regreSSHion fix
    assert ssh.version_at_least("1:9.2p1-2") is True
    assert ctx.fact("package", ("aide",)).version_at_least("0") is None


PAIRS = [
    ("1.0", "1.0"),
    ("1.0", "1.0-1"),
    ("1:1.0", "2.0"),
    ("1.0~rc1", "1.0"),
    ("1.0~~", "1.0~"),
    ("1.0+b1", "1.0"),
    ("2.36-9+deb12u4", "2.36-9+deb12u10"),
    ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u10"),
    ("0.17+2.4-2", "0.17-24"),
    ("1.2a", "1.2"),
    ("1.002", "1.2"),
    ("a", "A"),
    ("1.0.0", "1.0"),
    ("252.22-1~deb12u1", "252.22-1"),
    ("3.0pl1-162", "3.0pl1-16"),
]


def test_ordering_is_antisymmetric_and_matches_known_answers() -> None:
    for a, b in PAIRS:
        assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions("1.0~rc1", "1.0") == -1
    assert compare_versions("1:1.0", "2.0") == 1
    assert compare_versions("1.002", "1.2") == 0
    assert compare_versions("2.36-9+deb12u4", "2.36-9+deb12u10") == -1


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
def test_ordering_equals_dpkg_compare_versions() -> None:
    versions = sorted({v for pair in PAIRS for v in pair})
    for a, b in itertools.combinations(versions, 2):
        lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0
        eq = subprocess.run(["dpkg", "--compare-versions", a, "eq", b], check=False).returncode == 0
        expected = -1 if lt else (0 if eq else 1)
        assert compare_versions(a, b) == expected, (a, b)
