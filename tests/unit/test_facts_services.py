"""services / service(name): unit files and enablement links, as systemctl is-enabled says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from facts_helpers import context, materialize, write


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_hardened_states(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    states = {s.name: s.state for s in ctx.fact("services", ())}
    assert states == {
        "aidecheck.service": "static",
        "apparmor.service": "enabled",
        "auditd.service": "enabled",
        "chrony.service": "enabled",
        "cron.service": "enabled",
        "debug-shell.service": "masked",
        "nftables.service": "enabled",
        "rsyslog.service": "enabled",
        "ssh.service": "enabled",
        "systemd-journald.service": "static",
    }


def test_names_suffixes_aliases_templates_and_masks(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    sshd = ctx.fact("service", ("sshd",))
    assert (sshd.name, sshd.alias_of, sshd.state, sshd.enabled) == (
        "ssh.service",
        "ssh.service",
        "enabled",
        True,
    )
    assert sshd.where("enabled") == "/etc/systemd/system/multi-user.target.wants/ssh.service"
    assert sshd.exec_start == "/usr/sbin/sshd -D $SSHD_OPTS"
    assert ctx.fact("service", ("getty@tty1",)).state == "enabled"
    assert ctx.fact("service", ("getty@tty2",)).state == "disabled"
    assert ctx.fact("service", ("aidecheck.timer",)).state == "enabled"
    cad = ctx.fact("service", ("ctrl-alt-del.target",))
    assert (cad.state, cad.masked, cad.exists) == ("masked", True, True)
    assert cad.where("state") == "/etc/systemd/system/ctrl-alt-del.target -> /dev/null"
    nope = ctx.fact("service", ("avahi-daemon",))
    assert (nope.exists, nope.state, nope.enabled, nope.masked) == (
        False,
        "not-found",
        False,
        False,
    )


def test_active_is_null_under_root(roots: dict[str, Path]) -> None:
    ssh = context(roots["hardened"]).fact("service", ("ssh",))
    assert ssh.active is None and ssh.where("active") == "not known under --root"


def test_weak_enabled_set(roots: dict[str, Path]) -> None:
    enabled = {s.name for s in context(roots["weak"]).fact("services", ()) if s.enabled}
    assert enabled == {
        "avahi-daemon.service",
        "cron.service",
        "cups.service",
        "nftables.service",
        "rpcbind.service",
        "rsyslog.service",
        "snmpd.service",
        "ssh.service",
        "ufw.service",
        "xinetd.service",
    }
    assert context(roots["weak"]).fact("service", ("vsftpd",)).state == "disabled"


def test_etc_unit_overrides_vendor_unit(tmp_path: Path) -> None:
    write(
        tmp_path,
        "usr/lib/systemd/system/foo.service",
        "[Service]\nExecStart=/usr/bin/foo\n[Install]\nWantedBy=multi-user.target\n",
    )
    write(tmp_path, "etc/systemd/system/foo.service", "[Service]\nExecStart=/usr/local/bin/foo\n")
    foo = context(tmp_path).fact("service", ("foo",))
    assert (foo.path, foo.exec_start, foo.state) == (
        "/etc/systemd/system/foo.service",
        "/usr/local/bin/foo",
        "static",
    )


def test_live_active_matches_a_running_binary() -> None:
    ctx = context("/")
    running = ctx.fact("_running_units", ())
    if running.systemd:
        pytest.skip("systemd is PID 1 here: active comes from systemctl, covered elsewhere")
    # without systemd, a unit counts as active when its ExecStart binary runs
    exe = os.readlink("/proc/self/exe")
    assert exe in running.running_exes()


@pytest.mark.parametrize(
    ("sep", "state"),
    [("\x0b", "static"), ("\x1c", "static"), ("\u2028", "static"), ("\r", "disabled")],
)
def test_unit_file_lines_end_where_systemd_ends_them(tmp_path: Path, sep: str, state: str) -> None:
    # read_line(): \n, \r and NUL end a line; an [Install] section behind \v is in the comment
    write(
        tmp_path,
        "usr/lib/systemd/system/foo.service",
        f"[Service]\nExecStart=/usr/bin/foo\n# x{sep}[Install]\nWantedBy=multi-user.target\n",
    )
    assert context(tmp_path).fact("service", ("foo",)).state == state
