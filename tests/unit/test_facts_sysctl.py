"""sysctl(name): running values from proc/sys, persisted values in systemd-sysctl order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from facts_helpers import as_nobody, context, materialize, public_tmpdir, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.sysctl import normalize_name


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_hardened_running_and_persisted_agree(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    s = ctx.fact("sysctl", ("net.ipv4.ip_forward",))
    assert (s.name, s.value, s.running, s.persisted) == ("net.ipv4.ip_forward", 0, 0, 0)
    assert s.persisted_source == "/etc/sysctl.d/60-cis-network.conf:2"
    assert s.where("value") == "/proc/sys/net/ipv4/ip_forward"
    assert s.where("persisted") == "/etc/sysctl.d/60-cis-network.conf:2"
    assert s.exists is True


def test_weak_sysctl_conf_is_applied_last(roots: dict[str, Path]) -> None:
    # 30-router.conf sets 0, /etc/sysctl.conf (read last) sets 1; the kernel still runs 0
    s = context(roots["weak"]).fact("sysctl", ("kernel.randomize_va_space",))
    assert (s.running, s.persisted, s.value) == (0, 1, 0)
    assert s.persisted_source == "/etc/sysctl.conf:12"


def test_symlinked_sysctl_conf_is_read_once_and_named_by_its_real_path(tmp_path: Path) -> None:
    write(tmp_path, "etc/sysctl.conf", "vm.swappiness = 10\n")
    os.makedirs(tmp_path / "etc/sysctl.d")
    os.symlink("../sysctl.conf", tmp_path / "etc/sysctl.d/99-sysctl.conf")
    write(tmp_path, "etc/sysctl.d/98-late.conf", "vm.swappiness = 60\n")
    s = context(tmp_path).fact("sysctl", ("vm.swappiness",))
    assert (s.persisted, s.persisted_source) == (10, "/etc/sysctl.conf:1")


def test_glob_keys_lose_to_explicit_keys_and_dash_prefix_is_ignored(roots: dict[str, Path]) -> None:
    ctx = context(roots["weak"])
    eth0 = ctx.fact("sysctl", ("net.ipv4.conf.eth0.rp_filter",))
    assert (eth0.running, eth0.persisted, eth0.persisted_source) == (
        None,
        0,
        "/etc/sysctl.d/30-router.conf:5",
    )
    assert eth0.value == 0  # no proc/sys entry for eth0 in the root: the persisted value


def test_etc_masks_usr_lib_file_of_the_same_name_and_order_is_by_file_name(tmp_path: Path) -> None:
    write(tmp_path, "usr/lib/sysctl.d/50-pid-max.conf", "kernel.pid_max = 4194304\n")
    write(tmp_path, "etc/sysctl.d/50-pid-max.conf", "kernel.pid_max = 65536\n")
    write(tmp_path, "usr/lib/sysctl.d/60-later.conf", "kernel.sysrq = 16\n")
    write(tmp_path, "etc/sysctl.d/10-early.conf", "kernel.sysrq = 0\n")
    ctx = context(tmp_path)
    assert (
        ctx.fact("sysctl", ("kernel.pid_max",)).persisted_source
        == "/etc/sysctl.d/50-pid-max.conf:1"
    )
    sysrq = ctx.fact("sysctl", ("kernel.sysrq",))
    assert (sysrq.persisted, sysrq.persisted_source) == (16, "/usr/lib/sysctl.d/60-later.conf:1")


def test_dev_null_link_masks_a_vendor_file(tmp_path: Path) -> None:
    write(tmp_path, "usr/lib/sysctl.d/50-pid-max.conf", "kernel.pid_max = 4194304\n")
    os.makedirs(tmp_path / "etc/sysctl.d")
    os.symlink("/dev/null", tmp_path / "etc/sysctl.d/50-pid-max.conf")
    s = context(tmp_path).fact("sysctl", ("kernel.pid_max",))
    assert (s.persisted, s.exists) == (None, False)


def test_multi_value_parameters_read_as_space_separated_strings(roots: dict[str, Path]) -> None:
    s = context(roots["hardened"]).fact("sysctl", ("net.ipv4.ip_local_port_range",))
    assert s.running == "32768 60999"


def test_slash_names_and_absent_parameters(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    s = ctx.fact("sysctl", ("net/ipv4/conf/all/rp_filter",))
    assert (s.name, s.value) == ("net.ipv4.conf.all.rp_filter", 1)
    missing = ctx.fact("sysctl", ("net.ipv4.no_such_knob",))
    assert (missing.value, missing.exists) == (None, False)
    assert missing.where("persisted") == "no sysctl.d assignment"


def test_name_normalisation_keeps_dots_inside_levels() -> None:
    assert normalize_name("net/ipv4/conf/eth0.100/rp_filter") == "net.ipv4.conf.eth0/100.rp_filter"
    assert normalize_name("net.ipv4.ip_forward") == "net.ipv4.ip_forward"


def test_no_proc_sys_under_root_means_no_running_value(tmp_path: Path) -> None:
    write(tmp_path, "etc/sysctl.d/60.conf", "net.ipv4.ip_forward=1\n")
    s = context(tmp_path).fact("sysctl", ("net.ipv4.ip_forward",))
    assert (s.running, s.value, s.where("value")) == (None, 1, "/etc/sysctl.d/60.conf:1")


def test_unreadable_sysctl_file_is_an_evaluation_error() -> None:
    # Root reads any file, so the reader drops to uid 65534 (as the shadow test does); a
    # non-root test runner lacks the permission already.
    base = public_tmpdir()
    try:
        p = write(base, "etc/sysctl.d/60.conf", "a.b=1\n")
        p.chmod(0)

        def probe() -> str:
            try:
                context(base).fact("sysctl", ("a.b",))
            except EvaluationError as e:
                return str(e)
            return "no error"

        if os.geteuid() == 0:
            status, value = as_nobody(probe)
            assert status == "ok"
        else:
            value = probe()
        assert "permission denied" in value
    finally:
        shutil.rmtree(base)


def test_live_host_reads_proc_sys() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        expected = int(f.read())
    s = context("/").fact("sysctl", ("kernel.pid_max",))
    assert s.running == expected and s.where("running") == "/proc/sys/kernel/pid_max"


@pytest.mark.parametrize(
    ("text", "persisted", "line"),
    [
        # read_line() ends lines at \n, \r and NUL only: the rest is inside the comment
        ("# tuned\x1cnet.ipv4.ip_forward = 0\n", 1, 1),
        ("# tuned\x0bnet.ipv4.ip_forward = 0\n", 1, 1),
        ("# tuned\x0cnet.ipv4.ip_forward = 0\n", 1, 1),
        ("# tuned\x85net.ipv4.ip_forward = 0\n", 1, 1),
        ("# tuned\u2028net.ipv4.ip_forward = 0\n", 1, 1),
        ("# tuned\u2029net.ipv4.ip_forward = 0\n", 1, 1),
        # ... and those do end one, \r\n and \n\r as a single end
        ("# tuned\rnet.ipv4.ip_forward = 0\n", 0, 2),
        ("# tuned\0net.ipv4.ip_forward = 0\n", 0, 2),
        ("# a\r\n# b\n\rnet.ipv4.ip_forward = 0\n", 0, 3),
        ("# a\n\nnet.ipv4.ip_forward = 0\r\n", 0, 3),
        # strstrip() takes " \t\n\r": a \x1c before the name makes another name
        ("\x1cnet.ipv4.ip_forward = 0\n", 1, 1),
    ],
)
def test_sysctl_d_lines_end_where_systemd_sysctl_ends_them(
    tmp_path: Path, text: str, persisted: int, line: int
) -> None:
    write(tmp_path, "etc/sysctl.d/10-forward.conf", "net.ipv4.ip_forward = 1\n")
    write(tmp_path, "etc/sysctl.d/20-tuned.conf", text)
    s = context(tmp_path).fact("sysctl", ("net.ipv4.ip_forward",))
    source = (
        "/etc/sysctl.d/10-forward.conf:1" if persisted else f"/etc/sysctl.d/20-tuned.conf:{line}"
    )
    assert (s.persisted, s.persisted_source) == (persisted, source)


@pytest.mark.parametrize("link", [None, "/dev/null"])
def test_sysctl_conf_counts_only_through_its_sysctl_d_link(tmp_path: Path, link: str | None) -> None:
    """systemd-sysctl (Debian's procps.service is an alias of it) reads the sysctl.d
    directories only: /etc/sysctl.conf was read even with its 99-sysctl.conf link gone or
    masked, so a setting no boot applies passed as persisted."""
    write(tmp_path, "etc/sysctl.conf", "net.ipv4.conf.all.accept_redirects = 0\n")
    os.makedirs(tmp_path / "etc/sysctl.d")
    if link is not None:
        os.symlink(link, tmp_path / "etc/sysctl.d/99-sysctl.conf")
    s = context(tmp_path).fact("sysctl", ("net.ipv4.conf.all.accept_redirects",))
    assert (s.persisted, s.persisted_source) == (None, None)


_UFW_STATUS = "Package: ufw\nStatus: install ok installed\nArchitecture: all\nVersion: 0.36.2-1\n\n"


@pytest.mark.parametrize(
    ("enabled", "default_ufw", "persisted", "source"),
    [
        # ufw applies its IPT_SYSCTL file with `sysctl -p` when it starts, after systemd-sysctl
        ("yes", "IPT_SYSCTL=/etc/ufw/sysctl.conf\n", 1, "/etc/ufw/sysctl.conf:2"),
        ("yes", 'IPT_SYSCTL="/etc/ufw/sysctl.conf"\n', 1, "/etc/ufw/sysctl.conf:2"),
        ("yes", "IPT_SYSCTL=/etc/ufw/other.conf\nIPT_SYSCTL=/etc/ufw/sysctl.conf # the last\n", 1,
         "/etc/ufw/sysctl.conf:2"),
        ("yes", "#IPT_SYSCTL=/etc/ufw/sysctl.conf\n", 0, "/etc/sysctl.d/60-net.conf:1"),
        ("no", "IPT_SYSCTL=/etc/ufw/sysctl.conf\n", 0, "/etc/sysctl.d/60-net.conf:1"),
    ],
)
def test_ufw_sysctl_file_is_applied_after_the_sysctl_d_files_when_ufw_is_enabled(
        tmp_path: Path, enabled: str, default_ufw: str, persisted: int, source: str) -> None:
    write(tmp_path, "var/lib/dpkg/status", _UFW_STATUS)
    write(tmp_path, "etc/ufw/ufw.conf", f"ENABLED={enabled}\n")
    write(tmp_path, "etc/default/ufw", default_ufw)
    write(tmp_path, "etc/ufw/sysctl.conf", "# ufw's own\nnet/ipv4/ip_forward=1\n")
    write(tmp_path, "etc/sysctl.d/60-net.conf", "net.ipv4.ip_forward = 0\n")
    s = context(tmp_path).fact("sysctl", ("net.ipv4.ip_forward",))
    assert (s.persisted, s.persisted_source) == (persisted, source)


def test_a_dash_key_line_unsets_the_key_and_evidence_names_it(tmp_path: Path) -> None:
    """systemd-sysctl: `-key` without `=` drops an earlier assignment and keeps every glob off
    the key; `..` in a dotted name is an empty level, which systemd drops."""
    write(tmp_path, "etc/sysctl.d/10-cis.conf",
          "net.ipv4.conf.all.send_redirects = 0\nnet.ipv4.tcp_syncookies = 1\n")
    write(tmp_path, "etc/sysctl.d/90-x.conf",
          "-net.ipv4.conf.all.send_redirects\nnet.ipv4.conf.*.send_redirects = 1\n"
          "net.ipv4..tcp_syncookies = 0\n")
    ctx = context(tmp_path)
    s = ctx.fact("sysctl", ("net.ipv4.conf.all.send_redirects",))
    assert (s.persisted, s.persisted_source, s.exists) == (None, None, False)
    assert s.where("persisted") == "no sysctl.d assignment (/etc/sysctl.d/90-x.conf:1: a `-key` line)"
    lo = ctx.fact("sysctl", ("net.ipv4.conf.lo.send_redirects",))
    assert (lo.persisted, lo.persisted_source) == (1, "/etc/sysctl.d/90-x.conf:2")
    syn = ctx.fact("sysctl", ("net.ipv4.tcp_syncookies",))
    assert (syn.persisted, syn.persisted_source) == (0, "/etc/sysctl.d/90-x.conf:3")


def test_a_glob_in_ufws_sysctl_file_sets_what_sysctl_d_set(tmp_path: Path) -> None:
    """procps 4's `sysctl -p` expands globs as systemd-sysctl does (tried in a namespace over a
    tmpfs /proc/sys): ufw's glob overrides the sysctl.d files, except for its own explicit key."""
    write(tmp_path, "var/lib/dpkg/status", _UFW_STATUS)
    write(tmp_path, "etc/ufw/ufw.conf", "ENABLED=yes\n")
    write(tmp_path, "etc/default/ufw", "IPT_SYSCTL=/etc/ufw/sysctl.conf\n")
    write(tmp_path, "etc/ufw/sysctl.conf", "net/ipv4/conf/*/rp_filter=0\nnet.ipv4.conf.lo.rp_filter=2\n")
    write(tmp_path, "etc/sysctl.d/60-net.conf", "net.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.lo.rp_filter = 1\n")
    ctx = context(tmp_path)
    got = {i: (s.persisted, s.persisted_source) for i in ("all", "lo", "default")
           if (s := ctx.fact("sysctl", (f"net.ipv4.conf.{i}.rp_filter",)))}
    assert got == {
        "all": (0, "/etc/ufw/sysctl.conf:1"),
        "lo": (2, "/etc/ufw/sysctl.conf:2"),
        "default": (0, "/etc/ufw/sysctl.conf:1"),
    }


def _conf(root: Path, family: str, values: dict[str, str]) -> None:
    for rel, v in values.items():  # "eth0/send_redirects": "1"
        write(root, f"proc/sys/net/{family}/conf/{rel}", v + "\n")


def test_interfaces_combine_all_with_each_interface_as_the_kernel_does(tmp_path: Path) -> None:
    """IN_DEV_ORCONF, ANDCONF, MAXCONF; accept_redirects OR where the interface does not
    forward, AND where it does; IPv6 the interface's own value (tests/conformance watches it)."""
    _conf(tmp_path, "ipv4", {
        "all/send_redirects": "0", "eth0/send_redirects": "1", "eth1/send_redirects": "0",
        "all/accept_source_route": "0", "eth0/accept_source_route": "1",
        "all/rp_filter": "1", "eth0/rp_filter": "2", "eth1/rp_filter": "0",
        "all/accept_redirects": "0", "eth0/accept_redirects": "1", "eth0/forwarding": "0",
        "eth1/accept_redirects": "1", "eth1/forwarding": "1",
    })
    _conf(tmp_path, "ipv6", {
        "all/accept_ra": "0", "eth0/accept_ra": "1", "eth0/forwarding": "0",
        "eth1/accept_ra": "1", "eth1/forwarding": "1",
        "all/accept_redirects": "1", "eth0/accept_redirects": "0",
    })
    ctx = context(tmp_path)

    def eff(key: str) -> dict[str, int]:
        return {i.name: i.effective for i in ctx.fact("sysctl", (key,)).interfaces}

    assert eff("net.ipv4.conf.all.send_redirects") == {"eth0": 1, "eth1": 0}
    assert eff("net.ipv4.conf.all.accept_source_route") == {"eth0": 0}
    assert eff("net.ipv4.conf.all.rp_filter") == {"eth0": 2, "eth1": 1}
    assert eff("net.ipv4.conf.all.accept_redirects") == {"eth0": 1, "eth1": 0}
    assert eff("net.ipv6.conf.all.accept_ra") == {"eth0": 1, "eth1": 0}
    # IPv6 does not read all (1 here); eth1 has no accept_redirects file: not listed
    assert eff("net.ipv6.conf.all.accept_redirects") == {"eth0": 0}
    eth0 = ctx.fact("sysctl", ("net.ipv4.conf.all.send_redirects",)).interfaces[0]
    assert (eth0.name, eth0.value, eth0.all, eth0.forwarding) == ("eth0", 1, 0, None)
    assert eth0.where("effective") == (
        "/proc/sys/net/ipv4/conf/eth0/send_redirects = 1, /proc/sys/net/ipv4/conf/all/send_redirects = 0"
        " (the kernel uses all OR the interface's value)"
    )


def test_interfaces_without_a_running_kernel_and_for_other_keys(tmp_path: Path) -> None:
    write(tmp_path, "etc/sysctl.d/60.conf", "net.ipv4.conf.all.send_redirects = 0\n")
    ctx = context(tmp_path)
    assert ctx.fact("sysctl", ("net.ipv4.conf.all.send_redirects",)).interfaces == ()
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.default.send_redirects", "net.ipv4.conf.all.arp_ignore"):
        with pytest.raises(EvaluationError, match="only for a key the kernel combines"):
            _ = ctx.fact("sysctl", (key,)).interfaces


def test_interfaces_without_the_all_value_are_an_error(tmp_path: Path) -> None:
    _conf(tmp_path, "ipv4", {"eth0/send_redirects": "1"})
    with pytest.raises(EvaluationError, match="all/send_redirects: does not exist"):
        _ = context(tmp_path).fact("sysctl", ("net.ipv4.conf.all.send_redirects",)).interfaces


def test_persisted_interfaces_are_the_interfaces_a_sysctl_d_key_names(tmp_path: Path) -> None:
    """A sysctl.d key naming an interface is written there when it appears (systemd-sysctl's
    udev hook): the kernel then combines it with all. Globs name no interface; `-key` sets none."""
    write(tmp_path, "etc/sysctl.d/60-net.conf", "net.ipv4.conf.all.send_redirects = 0\n"
          "net.ipv4.conf.eth0.send_redirects = 1\nnet.ipv4.conf.eth1.send_redirects = 0\n"
          "net.ipv4.conf.eth*.send_redirects = 1\n-net.ipv4.conf.eth2.send_redirects\n"
          "net.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.wlan0.rp_filter = 2\n")
    write(tmp_path, "etc/sysctl.d/70-later.conf", "net.ipv4.conf.eth1.send_redirects = 1\n")
    ctx = context(tmp_path)
    sent = ctx.fact("sysctl", ("net.ipv4.conf.all.send_redirects",)).persisted_interfaces
    assert [(i.name, i.value, i.all, i.effective) for i in sent] == [("eth0", 1, 0, 1), ("eth1", 1, 0, 1)]
    assert sent[1].where("value") == "/etc/sysctl.d/70-later.conf:1"
    (wlan0,) = ctx.fact("sysctl", ("net.ipv4.conf.all.rp_filter",)).persisted_interfaces
    assert (wlan0.name, wlan0.effective) == ("wlan0", 2)
    assert ctx.fact("sysctl", ("net.ipv4.conf.all.log_martians",)).persisted_interfaces == ()
    with pytest.raises(EvaluationError):
        _ = ctx.fact("sysctl", ("net.ipv4.ip_forward",)).persisted_interfaces
