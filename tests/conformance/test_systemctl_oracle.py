"""service(name) and the CIS rules built on it, against `systemctl is-enabled` itself: on corpus
trees (`systemctl --root=TREE`) for the cases where systemctl does not read unit files at all (a
service that is only a SysV script, handed to systemd-sysv-install) or where a rule's verdict
hangs on more than one unit (a socket, an alias), and on the live host's own units. The expected
verdict of a rule is the benchmark's audit run over what systemctl prints, never a word of ours."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import corpus
import pytest
from corpus import Edit, delete, install, symlink, unit, write

from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

V = "usr/lib/systemd/system"
E = "etc/systemd/system"
INIT = "#!/bin/sh\n### BEGIN INIT INFO\n# Default-Start: 2 3 4 5\n### END INIT INFO\n"


def _tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        pytest.skip(f"{name} is not installed: it is the oracle here")
    return path


def _is_enabled(unit_name: str, root: Path | None) -> tuple[str | None, str]:
    """What `systemctl [--root=ROOT] is-enabled UNIT` prints: its word (None when it fails),
    and its last line on stderr. One unit a call: with several, systemctl stops at the first it
    fails on and says nothing of the others."""
    cmd = [_tool("systemctl"), *([f"--root={root}"] if root is not None else []), "is-enabled", unit_name]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    words = done.stdout.split()
    errors = done.stderr.strip().splitlines()
    return (words[-1] if words else None), (errors[-1] if errors else "")


def _installed(root: Path, package: str) -> bool:
    done = subprocess.run([_tool("dpkg-query"), f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${db:Status-Status}",
                           package], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() in ("installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending")


def _disagreement(ctx: FactContext, unit_name: str, root: Path | None) -> str | None:
    """How service(UNIT) differs from systemctl's word for it: an alias is reported with the
    state of the unit it names; where systemctl fails, ours is not-found or bad."""
    s = ctx.fact("service", (unit_name,))
    word, error = _is_enabled(unit_name, root)
    ours = f"state={s.state} enabled={s.enabled} alias_of={s.alias_of}"
    if word == "alias":
        if s.alias_of is None:
            return f"{unit_name}: systemctl says alias, we say {ours}"
        word, error = _is_enabled(s.alias_of, root)
    if s.enabled != (s.state in ("enabled", "enabled-runtime")):
        return f"{unit_name}: enabled is {s.enabled} for state {s.state}"
    if word is not None:
        return None if word == s.state else f"{unit_name}: systemctl says {word}, we say {ours}"
    if s.state in ("not-found", "bad"):
        return None
    return f"{unit_name}: systemctl fails ({error}), we say {ours}"


# The CIS Debian Linux 12 v1.1.0 audits: `dpkg-query -s PKG` for each package, then
# `systemctl is-enabled UNITS 2>/dev/null | grep 'enabled'`; a rule fails where a package is
# installed and a unit prints a word with "enabled" in it.
_NOT_IN_USE = {
    "cis-2.1.3-dhcp-server-not-in-use": (["isc-dhcp-server"], ["isc-dhcp-server.service", "isc-dhcp-server6.service"]),
    "cis-2.1.7-ldap-server-not-in-use": (["slapd"], ["slapd.service"]),
    "cis-2.1.16-tftp-server-not-in-use": (["tftpd-hpa"], ["tftpd-hpa.service"]),
    "cis-2.1.18-web-server-not-in-use": (["apache2", "nginx"], ["apache2.socket", "apache2.service", "nginx.service"]),
}
# 2.3.1.1: exactly one of the time daemons prints enabled (an alias prints "alias": it is the
# unit it names, not a second daemon).
_TIME_DAEMONS = ["chrony.service", "systemd-timesyncd.service", "ntpsec.service", "ntp.service", "openntpd.service"]


def _audit_verdict(root: Path, rule_id: str) -> str:
    if rule_id == "cis-2.3.1.1-single-time-daemon":
        enabled = [u for u in _TIME_DAEMONS if (_is_enabled(u, root)[0] or "").startswith("enabled")]
        return "pass" if len(enabled) == 1 else "fail"
    packages, units = _NOT_IN_USE[rule_id]
    if not any(_installed(root, p) for p in packages):
        return "pass"
    return "fail" if any("enabled" in (_is_enabled(u, root)[0] or "") for u in units) else "pass"


def _sysv(name: str, start_link: str | None = None, *, script: Edit | None = None) -> list[Edit]:
    edits = [script or write(f"etc/init.d/{name}", INIT, 0o755)]
    if start_link is not None:
        edits.append(symlink(start_link, f"../init.d/{name}"))
    return edits


NTPSEC = "[Service]\nExecStart=/usr/sbin/ntpd\n[Install]\nWantedBy=multi-user.target\nAlias=ntp.service ntpd.service\n"
APACHE_SOCKET = "[Socket]\nListenStream=80\n[Install]\nWantedBy=sockets.target\n"

# name -> (edits of the corpus base tree, units asked, rules whose verdict is compared)
CASES: dict[str, tuple[list[Edit], list[str], list[str]]] = {
    "a SysV script started in runlevel 5": (
        [install("isc-dhcp-server"), *_sysv("isc-dhcp-server", "etc/rc5.d/S01isc-dhcp-server")],
        ["isc-dhcp-server.service", "isc-dhcp-server", "isc-dhcp-server6.service"],
        ["cis-2.1.3-dhcp-server-not-in-use"]),
    "a SysV script started in rcS": (
        [install("isc-dhcp-server"), *_sysv("isc-dhcp-server6", "etc/rcS.d/S02isc-dhcp-server6")],
        ["isc-dhcp-server.service", "isc-dhcp-server6.service"], ["cis-2.1.3-dhcp-server-not-in-use"]),
    "a SysV script started in runlevel 2 only (is-enabled reads rcS and rc5)": (
        [install("slapd"), *_sysv("slapd", "etc/rc2.d/S01slapd")], ["slapd.service"],
        ["cis-2.1.7-ldap-server-not-in-use"]),
    "a SysV script with a stop link only": (
        [install("slapd"), *_sysv("slapd", "etc/rc5.d/K01slapd")], ["slapd.service"],
        ["cis-2.1.7-ldap-server-not-in-use"]),
    "a SysV start link that dangles": (
        [install("tftpd-hpa"), *_sysv("tftpd-hpa"), symlink("etc/rc5.d/S03tftpd-hpa", "../init.d/gone")],
        ["tftpd-hpa.service"], ["cis-2.1.16-tftp-server-not-in-use"]),
    "a plain file as a SysV start link": (
        [install("tftpd-hpa"), *_sysv("tftpd-hpa"), write("etc/rc5.d/S03tftpd-hpa", INIT)],
        ["tftpd-hpa.service"], ["cis-2.1.16-tftp-server-not-in-use"]),
    "a SysV start link with one digit (not S??NAME)": (
        [install("tftpd-hpa"), *_sysv("tftpd-hpa", "etc/rc5.d/S3tftpd-hpa")], ["tftpd-hpa.service"],
        ["cis-2.1.16-tftp-server-not-in-use"]),
    "a SysV script and the unit its generator made at boot": (
        [install("isc-dhcp-server"), *_sysv("isc-dhcp-server", "etc/rc5.d/S01isc-dhcp-server"),
         write("run/systemd/generator.late/isc-dhcp-server.service",
               "[Unit]\nSourcePath=/etc/init.d/isc-dhcp-server\n[Service]\nExecStart=/etc/init.d/isc-dhcp-server start\n"),
         symlink("run/systemd/generator.late/multi-user.target.wants/isc-dhcp-server.service",
                 "../isc-dhcp-server.service")],
        ["isc-dhcp-server.service"], ["cis-2.1.3-dhcp-server-not-in-use"]),
    "a SysV script beside a native unit (the unit decides), and one alone": (
        [install("tftpd-hpa"), install("slapd"), unit("tftpd-hpa.service"),
         *_sysv("tftpd-hpa", "etc/rc5.d/S01tftpd-hpa"), *_sysv("slapd", "etc/rc5.d/S01slapd")],
        ["tftpd-hpa.service", "slapd.service"],
        ["cis-2.1.16-tftp-server-not-in-use", "cis-2.1.7-ldap-server-not-in-use"]),
    "apache2.socket enabled, apache2.service not": (
        [install("apache2"), unit("apache2.service"), write(f"{V}/apache2.socket", APACHE_SOCKET),
         symlink(f"{E}/sockets.target.wants/apache2.socket", "/lib/systemd/system/apache2.socket")],
        ["apache2.socket", "apache2.service"], ["cis-2.1.18-web-server-not-in-use"]),
    "ntpsec enabled with its Alias= links, the only time daemon": (
        [delete(f"{E}/multi-user.target.wants/chrony.service"), install("ntpsec"), write(f"{V}/ntpsec.service", NTPSEC),
         symlink(f"{E}/multi-user.target.wants/ntpsec.service", "/lib/systemd/system/ntpsec.service"),
         symlink(f"{E}/ntp.service", "/lib/systemd/system/ntpsec.service"),
         symlink(f"{E}/ntpd.service", "/lib/systemd/system/ntpsec.service")],
        ["ntpsec.service", "ntp.service", "ntpd.service", "chrony.service"], ["cis-2.3.1.1-single-time-daemon"]),
}


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: c.replace(" ", "-"))
def test_service_states_and_verdicts_are_what_systemctl_gives(bundle, base_tree, tmp_path, case) -> None:
    edits, asked, rules = CASES[case]
    root = corpus.edited_copy(tmp_path, base_tree, edits)
    ctx = FactContext(builtin_registry(), str(root))
    assert [d for u in asked if (d := _disagreement(ctx, u, root)) is not None] == []
    ps, reg = bundle
    ours = {r: [f.status.value for f in scan(ps, reg, root=str(root), rule_ids=[r]).findings] for r in rules}
    assert ours == {r: [_audit_verdict(root, r)] for r in rules}


def _host_unit_names() -> list[str]:
    names: set[str] = set()
    for d in ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
              "/usr/lib/systemd/system", "/run/systemd/generator", "/run/systemd/generator.late"):
        if os.path.isdir(d):
            names |= {n for n in os.listdir(d) if n.endswith((".service", ".socket", ".timer"))}
    if os.path.isdir("/etc/init.d"):
        names |= {f"{n}.service" for n in os.listdir("/etc/init.d") if not n.startswith(".")}
    return sorted(names)


def test_the_live_hosts_units_get_the_states_systemctl_gives() -> None:
    # Read-only: `systemctl is-enabled` on the host, beside service() read live. The SysV
    # scripts of /etc/init.d are asked too (on Debian, hwclock.sh is one started from rcS.d).
    _tool("systemctl")
    names = _host_unit_names()
    if not names:
        pytest.skip("the host has no systemd unit files and no /etc/init.d scripts")
    ctx = FactContext(builtin_registry(), "/")
    assert [d for u in names if (d := _disagreement(ctx, u, None)) is not None] == []
