"""mounts/fstab, kmod, grub, firewall, apparmor, rsyslog, timesync, kernel and listening on the
fixture roots, with exact values and evidence."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from facts_helpers import HOSTILE_LINE_BREAKS, context, materialize, write

from secpolicy.errors import EvaluationError, NotApplicable
from secpolicy.facts.procs import decode_caps, parse_net
from secpolicy.facts.system import (
    AUDIT_STATUS_SOURCE,
    _kstrtoul,
    apparmor_boot_refusal,
    audit_enabled_source,
    kernel_words,
)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_mounts_and_fstab(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"])
    tmp = h.fact("mount", ("/tmp",))
    assert (tmp.fstype, tmp.has_option("noexec"), tmp.option("size"), tmp.where("options")) == (
        "tmpfs",
        True,
        "2097152k",
        "/proc/self/mounts:15",
    )
    assert h.fact("mount", ("/media/usb stick",)).fstype == "vfat"  # \040 unescaped
    entry = h.fact("fstab_entry", ("/var/log/audit",))
    assert (entry.source, entry.options, entry.where("options")) == (
        "/dev/mapper/vg0-audit",
        ("defaults", "nodev", "nosuid", "noexec"),
        "/etc/fstab:14",
    )
    w = context(roots["weak"])
    assert not w.fact("fstab_entry", ("/tmp",)).has_option("nodev")
    assert w.fact("fstab_entry", ("/var/tmp",)) is None and w.fact("mount", ("/var/tmp",)) is None
    with pytest.raises(NotApplicable):
        context(roots["weak"].parent / "nothing-here").fact("mounts", ())


def test_kmod(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"])
    cramfs = h.fact("kmod", ("cramfs",))
    assert (
        cramfs.loaded,
        cramfs.blacklisted,
        cramfs.disabled,
        cramfs.install,
        cramfs.available,
    ) == (
        False,
        True,
        True,
        "/bin/false",
        True,
    )
    assert cramfs.where("blacklisted") == "/etc/modprobe.d/cis.conf:3"
    usb = h.fact("kmod", ("usb_storage",))  # - and _ are the same to modprobe
    assert (usb.blacklisted, usb.disabled) == (True, True)
    assert h.fact("kmod", ("squashfs",)).loaded is True
    assert h.fact("kmod", ("ext4",)).builtin is True
    w = context(roots["weak"])
    wc = w.fact("kmod", ("cramfs",))
    assert (wc.loaded, wc.blacklisted, wc.disabled) == (True, True, False)
    assert w.fact("kmod", ("usb-storage",)).disabled is True  # install ... /bin/true
    assert context(roots["weak"].parent / "empty").fact("kmod", ("cramfs",)).loaded is None


@pytest.mark.parametrize("brk", HOSTILE_LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_kmod_tables_end_lines_at_newlines_only(tmp_path: Path, brk: str) -> None:
    """depmod writes modules.dep and modules.builtin, and the kernel /proc/modules, one entry
    per `\n`-ended line: a name after another break character is part of the line before it,
    not a module of its own (str.splitlines() made one of it). A modules.builtin line names the
    module of its basename, as depmod takes it: `udf` here, not `b`."""
    write(tmp_path, "/lib/modules/6.1.0-test/modules.dep", f"kernel/fs/a/a.ko:{brk}kernel/fs/cramfs/cramfs.ko:\n")
    write(tmp_path, "/lib/modules/6.1.0-test/modules.builtin", f"kernel/fs/b/b.ko{brk}kernel/fs/udf/udf.ko\n")
    write(tmp_path, "/proc/modules", f"a 16384 0 - Live 0x0{brk}squashfs 16384 0 - Live 0x0\n")
    ctx = context(tmp_path)
    assert ctx.fact("kmod", ("a",)).available is True and ctx.fact("kmod", ("a",)).loaded is True
    assert ctx.fact("kmod", ("cramfs",)).available is False
    assert ctx.fact("kmod", ("b",)).builtin is False and ctx.fact("kmod", ("udf",)).builtin is True
    assert ctx.fact("kmod", ("squashfs",)).loaded is False


def test_nft_ruleset_lines_hold_no_text_of_comments_or_quoted_strings(tmp_path: Path) -> None:
    """Under --root the saved ruleset is read as nft's scanner reads it: a `#` comment is no
    line, and a quoted string (a comment, a log prefix) neither ends a line nor reads as a
    statement, so no text given as data passes for a chain head, policy or rule."""
    write(tmp_path, "/etc/nftables.conf", (
        "#!/usr/sbin/nft -f\n"
        "# type filter hook forward priority 0; policy drop;\n"
        "table inet filter {\n"
        "  chain input {\n"
        '    type filter hook input priority 0; policy accept; # policy drop\n'
        '    tcp dport 22 log prefix "ssh\ntype filter hook output priority 0; policy drop;" accept\n'
        '    counter comment "iif lo accept"\n'
        '    iifname "lo" accept # "unbalanced\n'
        "  }\n"
        "}\n"
    ))
    nft = context(tmp_path).fact("nft_ruleset", ())
    assert not nft.has_line(r"hook\s+(input|forward|output)\b.*policy\s+drop")
    assert not nft.has_line(r"iif\s+lo\s+accept")
    assert nft.has_line(r"hook\s+input\b.*policy\s+accept")
    assert nft.where("has_line", r'iifname\s+"lo"\s+accept') == "/etc/nftables.conf:9"  # numbered as written
    assert nft.where("has_line", r"^\s*}$") == "/etc/nftables.conf:10"


def test_rsyslog_lines_are_numbered_where_their_statement_starts(tmp_path: Path) -> None:
    write(tmp_path, "/etc/rsyslog.conf", (
        'template(name="t" type="string"\n  string="%msg%\n$FileCreateMode 0600\n")\n'  # lines 1-4: one string
        "*.* @@loghost:514 \\\n  ;RSYSLOG_ForwardFormat\n"  # 5-6: joined by the backslash
        'module(load="builtin:omfile") $FileCreateMode 0640\n'  # 7: two statements
    ))
    r = context(tmp_path).fact("rsyslog", ())
    assert r.file_create_mode == "0640" and r.where("file_create_mode") == "/etc/rsyslog.conf:7"
    assert r.where("has_line", "string=") == "/etc/rsyslog.conf:2"
    assert r.where("has_line", "@@loghost:514 ;RSYSLOG_ForwardFormat") == "/etc/rsyslog.conf:5"
    assert not r.has_line(r"^\$FileCreateMode 0600")


@pytest.mark.parametrize(("files", "where"), [
    ({"/etc/rsyslog.conf": '*.* /var/log/a.log\nif $msg contains "x" then {\n*.* @@h:514\n'}, "/etc/rsyslog.conf:4"),
    ({"/etc/rsyslog.conf": "*.* /var/log/a.log\n}\n*.* @@h:514\n"}, "/etc/rsyslog.conf:2"),
    ({"/etc/rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/*.conf\n*.* @@h:514\n",
      "/etc/rsyslog.d/a.conf": "*.* /var/log/a.log\nelse\n"}, "/etc/rsyslog.d/a.conf:2"),
    ({"/etc/rsyslog.conf": "*.* /var/log/a.log\n$IncludeConfig /etc/nosuch.conf\n*.* @@h:514\n"}, "/etc/rsyslog.conf:2"),
    ({"/etc/rsyslog.conf": 'include(file="/etc/x.conf" mode="abort-if-missing")\n'}, "/etc/rsyslog.conf:1"),
])
def test_rsyslog_configuration_rsyslogd_stops_reading_is_an_error_naming_where(tmp_path: Path, files, where) -> None:
    # rsyslogd runs only what comes before a syntax error or an unreadable $IncludeConfig
    for path, text in files.items():
        write(tmp_path, path, text)
    with pytest.raises(EvaluationError, match=f"^{where}: "):
        context(tmp_path).fact("rsyslog", ())


def test_rsyslog_statements_rsyslogd_skips_are_not_in_force(tmp_path: Path) -> None:
    write(tmp_path, "/etc/rsyslog.conf", (
        'action(type="omrelp" target="relp.example")\n'  # omrelp never loaded: skipped
        'input(type="imtcp" port="514")\n$InputTCPServerRun 514\n'  # imtcp never loaded: skipped
        'action(type="omfile" file="/var/log/x" fileCreateMode="0999")\n'  # a mode refused: skipped
        'action(type="omfile" file="/var/log/y" fileCreateMode="0640xy")\n'  # six characters: the first four taken
        'frobnicate\n$FooBar on\ninclude(file="/etc/nosuch.conf")\n*.* @@loghost:514\n'  # warnings only
    ))
    r = context(tmp_path).fact("rsyslog", ())
    assert (r.forward_targets, r.inputs, r.file_modes) == (("loghost",), (), ("0640",))


def test_rsyslog_configuration_beyond_its_budget_is_an_error_not_read(tmp_path: Path) -> None:
    write(tmp_path, "/etc/rsyslog.conf", "$IncludeConfig /etc/rsyslog.d/*.conf\n")
    write(tmp_path, "/etc/rsyslog.d/a.conf", "#" * 700_000 + "\n")
    write(tmp_path, "/etc/rsyslog.d/b.conf", "#" * 700_000 + "\n")  # 1.4 MB in all
    with pytest.raises(EvaluationError, match=r"/etc/rsyslog.d/b.conf: rsyslog configuration beyond 1048576 bytes"):
        context(tmp_path).fact("rsyslog", ())


def test_grub(roots: dict[str, Path]) -> None:
    g = context(roots["hardened"]).fact("grub", ())
    assert (g.exists, g.password_set, g.superusers, g.cfg_mode, g.cfg_uid) == (
        True,
        True,
        "grubadmin",
        0o400,
        0,
    )
    assert g.cmdline == "apparmor=1 security=apparmor audit=1 audit_backlog_limit=8192 quiet"
    assert (
        g.has_arg("audit=1")
        and g.has_arg("audit_backlog_limit")
        and g.arg("audit_backlog_limit") == "8192"
    )
    assert not g.has_arg("quiet")  # the recovery entry lacks it
    assert g.where("has_arg", "quiet") == "/boot/grub/grub.cfg:40"
    w = context(roots["weak"]).fact("grub", ())
    assert (w.password_set, w.cfg_mode, w.has_arg("audit=1"), w.cmdline) == (
        False,
        0o644,
        False,
        "quiet",
    )
    assert w.where("has_arg", "audit=1") == "/boot/grub/grub.cfg:25"


def test_firewall(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("firewall", ())
    assert (
        h.active,
        h.count_active,
        h.nftables_enabled,
        h.ufw_installed,
        h.iptables_installed,
    ) == (
        "nftables",
        1,
        True,
        False,
        False,
    )
    w = context(roots["weak"]).fact("firewall", ())
    assert (w.active, w.count_active, w.ufw_enabled, w.where("ufw_enabled")) == (
        "ufw",
        2,
        True,
        "/etc/ufw/ufw.conf:6",
    )


def test_apparmor(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("apparmor", ())
    assert (
        h.enabled,
        h.bootloader_enabled,
        h.profiles_loaded,
        h.profiles_enforce,
        h.profiles_complain,
    ) == (
        True,
        True,
        8,
        8,
        0,
    )
    assert h.profiles_defined == 2
    with pytest.raises(NotApplicable):
        _ = h.unconfined
    w = context(roots["weak"]).fact("apparmor", ())
    assert (w.enabled, w.bootloader_enabled, w.profiles_defined) == (False, False, 0)
    with pytest.raises(NotApplicable):
        _ = w.profiles_loaded


def test_rsyslog(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("rsyslog", ())
    assert (h.file_create_mode, h.where("file_create_mode")) == ("0640", "/etc/rsyslog.conf:21")
    assert (
        h.has_line(r'type="omfwd"')
        and h.where("has_line", "omfwd") == "/etc/rsyslog.d/60-remote.conf:2"
    )
    assert h.files == ["/etc/rsyslog.conf", "/etc/rsyslog.d/60-remote.conf"]
    assert not any(line.startswith("#") for line in h.lines)
    w = context(roots["weak"]).fact("rsyslog", ())
    assert (w.file_create_mode, w.has_line("omfwd")) == ("0644", False)


def test_timesync(roots: dict[str, Path], tmp_path: Path) -> None:
    h = context(roots["hardened"]).fact("timesync", ())
    assert (h.active, h.chrony, h.count_active) == ("chrony", True, 1)
    assert h.servers == ("2.debian.pool.ntp.org", "ntp1.example.internal", "ntp2.example.internal")
    w = context(roots["weak"]).fact("timesync", ())
    assert (w.active, w.servers) == ("none", ())
    write(tmp_path, "etc/systemd/timesyncd.conf", "[Time]\nNTP=a.example b.example\n")
    write(tmp_path, "etc/systemd/timesyncd.conf.d/10.conf", "[Time]\nNTP=c.example\n")
    write(
        tmp_path,
        "usr/lib/systemd/system/systemd-timesyncd.service",
        "[Service]\nExecStart=/x\n[Install]\nWantedBy=sysinit.target\n",
    )
    (tmp_path / "etc/systemd/system/sysinit.target.wants").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service").symlink_to(
        "/usr/lib/systemd/system/systemd-timesyncd.service"
    )
    write(
        tmp_path,
        "var/lib/dpkg/status",
        "Package: systemd-timesyncd\nStatus: install ok installed\nVersion: 252\n",
    )
    t = context(tmp_path).fact("timesync", ())
    assert (t.active, t.servers, t.where("servers")) == (
        "systemd-timesyncd",
        ("c.example",),
        "/etc/systemd/timesyncd.conf.d/10.conf:2",
    )


def test_kernel(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("kernel", ())
    assert (h.release, h.lockdown, h.audit_enabled, h.has_arg("apparmor=1")) == (
        "6.1.0-18-amd64",
        "integrity",
        True,
        True,
    )
    w = context(roots["weak"]).fact("kernel", ())
    assert (w.lockdown, w.audit_enabled) == ("none", None)


def test_kernel_audit_enabled_names_where_its_value_came_from(roots: dict[str, Path]) -> None:
    # audit=1 on the captured command line; none there: unknown, and the command line is
    # what was looked at.
    assert context(roots["hardened"]).fact("kernel", ()).where("audit_enabled") == "/proc/cmdline"
    assert context(roots["weak"]).fact("kernel", ()).where("audit_enabled") == "/proc/cmdline"
    # Live, audit= on the command line decides; without it the kernel's audit status does.
    assert audit_enabled_source("ro quiet audit=0", live=True) == "/proc/cmdline"
    assert audit_enabled_source("ro quiet audit=1", live=True) == "/proc/cmdline"
    assert (
        audit_enabled_source("ro quiet audit_backlog_limit=8192", live=True) == AUDIT_STATUS_SOURCE
    )
    assert audit_enabled_source("ro quiet", live=False) == "/proc/cmdline"
    assert AUDIT_STATUS_SOURCE == "netlink AUDIT_GET"


# What the kernel's parse_args()/next_arg() (kernel/params.c) make of a command line: blanks
# outside double quotes split it, the quotes around a word or a value go, `--` ends it.
KERNEL_WORDS = [
    ("ro quiet -- audit=1", ["ro", "quiet"]),
    ("  ro\tquiet\n", ["ro", "quiet"]),
    ('a="b c" d', ["a=b c", "d"]),
    ('"x y" z', ["x y", "z"]),
    ('foo="bar"baz', ['foo=bar"baz']),
    ('p="a b"c" d', ['p=a b"c" d']),
    ('a="', ["a="]),
    ("=a=b", ["=a=b"]),
    ("x --=1 y", ["x", "--=1", "y"]),
    ('"--" audit=1', []),  # the quotes go before the word is compared with --
]


@pytest.mark.parametrize(("cmdline", "words"), KERNEL_WORDS)
def test_kernel_command_lines_split_as_the_kernel_splits_them(cmdline: str, words: list[str]) -> None:
    assert kernel_words(cmdline) == words


@pytest.mark.parametrize(
    ("cmdline", "enabled", "has_audit_1"),
    [
        ("ro quiet -- audit=1", None, False),  # after --: init's, not the kernel's
        ("ro audit=1 audit=0", False, False),  # the last one given counts
        ("ro audit=0 audit=1", False, True),  # audit=0 disables it until reboot, whatever follows
        ("ro audit=OFF", False, False),
        ("ro audit=on", True, False),
        ("ro audit=2", True, False),  # not 0/off: the kernel enables it (and logs an error)
        ('ro "audit=1"', True, True),
    ],
)
def test_kernel_audit_flag_is_what_the_kernel_makes_of_the_command_line(
    tmp_path: Path, cmdline: str, enabled: bool | None, has_audit_1: bool
) -> None:
    write(tmp_path, "proc/cmdline", cmdline + "\n")
    k = context(tmp_path).fact("kernel", ())
    assert (k.audit_enabled, k.has_arg("audit=1")) == (enabled, has_audit_1)


def test_grub_arguments_after_dashes_are_inits(tmp_path: Path) -> None:
    write(
        tmp_path,
        "boot/grub/grub.cfg",
        "menuentry 'Debian' {\n\tlinux /vmlinuz root=/dev/sda1 ro quiet -- audit=1 apparmor=1 security=apparmor\n}\n",
    )
    g = context(tmp_path).fact("grub", ())
    assert not g.has_arg("audit=1") and not g.has_arg("apparmor=1") and g.arg("security") is None
    write(tmp_path, "boot/grub/grub.cfg", "menuentry 'Debian' {\n\tlinux /vmlinuz ro audit-backlog-limit=8192\n}\n")
    assert context(tmp_path).fact("grub", ()).arg("audit_backlog_limit") == "8192"  # - and _ are one


def test_kernel_audit_enabled_source_on_this_host() -> None:
    live = context("/").fact("kernel", ())
    on_cmdline = {"audit=0", "audit=1"} & set(Path("/proc/cmdline").read_text().split())
    expected = "/proc/cmdline" if on_cmdline else "netlink AUDIT_GET"
    assert live.where("audit_enabled") == expected
    assert (
        live.where("cmdline") == "/proc/cmdline"
        and live.where("release") == "/proc/sys/kernel/osrelease"
    )


def test_listening_under_root(roots: dict[str, Path]) -> None:
    socks = context(roots["weak"]).fact("listening", ())
    assert [(s.protocol, s.address, s.port) for s in socks] == [
        ("tcp", "0.0.0.0", 22),
        ("tcp", "0.0.0.0", 23),
        ("tcp", "0.0.0.0", 21),
        ("tcp", "0.0.0.0", 111),
        ("tcp", "127.0.0.1", 631),
        ("tcp6", "::", 22),
        ("udp", "0.0.0.0", 161),
        ("udp", "0.0.0.0", 5353),
    ]
    assert socks[1].where("port") == "/proc/net/tcp:3" and socks[1].pid is None
    h = context(roots["hardened"]).fact("listening", ())
    assert [(s.protocol, s.address, s.port) for s in h if s.protocol.startswith("udp")] == [
        ("udp", "127.0.0.1", 323),
        ("udp6", "::1", 323),
    ]


def test_proc_net_parsing_skips_established_and_maps_v4_in_v6() -> None:
    text = (
        "  sl  local_address rem_address st\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 42 1\n"
        "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000 0 43 1\n"
    )
    assert parse_net(text, "tcp", "/proc/net/tcp") == [
        ("127.0.0.1", 8080, 42, 1000, "/proc/net/tcp:2")
    ]
    v6 = "  sl x\n   0: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 77 1\n"
    assert parse_net(v6, "tcp6", "/proc/net/tcp6")[0][:2] == ("127.0.0.1", 80)


@pytest.mark.parametrize("brk", HOSTILE_LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_proc_net_entries_end_at_newlines_only(brk: str) -> None:
    """A copy of /proc/net/tcp under --root: the kernel ends each entry with `\n`, so what
    follows another break character is more fields of the same entry, not a second socket."""
    text = (
        "  sl  local_address rem_address st\n"
        f"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 42 1{brk}"
        "   1: 00000000:0017 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 43 1\n"
    )
    assert [(a, port) for a, port, *_ in parse_net(text, "tcp", "/proc/net/tcp")] == [("127.0.0.1", 8080)]


def test_capability_decoding() -> None:
    assert decode_caps("0000000000003000") == ("CAP_NET_ADMIN", "CAP_NET_RAW")
    assert (
        decode_caps("000001ffffffffff")[-1] == "CAP_CHECKPOINT_RESTORE"
        and len(decode_caps("000001ffffffffff")) == 41
    )
    assert decode_caps("0000020000000000") == ("cap_41",)
    assert decode_caps("0") == ()


def test_processes_are_live_only(roots: dict[str, Path]) -> None:
    with pytest.raises(NotApplicable):
        context(roots["hardened"]).fact("processes", ())


_FSTAB = (
    "/dev/sda1 / ext4 defaults 0 1\n"
    "# old{sep}tmpfs /tmp tmpfs nodev,nosuid 0 0\n"
    "\x0btmpfs /t2 tmpfs a 0 0\n"
    "tmpfs\x0b/t3 tmpfs b 0 0\n"
    "  tmpfs /t4\ttmpfs c,d 0 0\r\n"
    "tmpfs /t5\n"
    "tmpfs /t6 tmpfs\n"
    "/dev/x /t7 ext4 a\0b 0 0\n"
)
# what `findmnt --fstab -F FILE -n -r -o SOURCE,TARGET,FSTYPE,OPTIONS` (libmount) prints
_FSTAB_READ = [
    ("/dev/sda1", "/", "ext4", ("defaults",)),
    ("\x0btmpfs", "/t2", "tmpfs", ("a",)),
    ("tmpfs\x0b/t3", "tmpfs", "b", ("0",)),
    ("tmpfs", "/t4", "tmpfs", ("c", "d")),
    ("tmpfs", "/t6", "tmpfs", ()),
]


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_fstab_is_read_as_libmount_reads_it(tmp_path: Path, sep: str) -> None:
    write(tmp_path, "etc/fstab", _FSTAB.format(sep=sep))
    got = [(m.source, m.target, m.fstype, m.options) for m in context(tmp_path).fact("fstab", ())]
    assert got == _FSTAB_READ
    assert context(tmp_path).fact("fstab_entry", ("/tmp",)) is None


@pytest.mark.skipif(shutil.which("findmnt") is None, reason="needs findmnt (util-linux)")
@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_fstab_reading_agrees_with_findmnt(tmp_path: Path, sep: str) -> None:
    fstab = tmp_path / "fstab"
    fstab.write_bytes(_FSTAB.format(sep=sep).encode())
    out = subprocess.run(
        ["findmnt", "--fstab", "-F", str(fstab), "-n", "-r", "-o", "SOURCE,TARGET,FSTYPE,OPTIONS"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split(" ") for line in out.splitlines()]
    unescape = [[f.replace("\\x0b", "\x0b") for f in row] for row in rows]
    assert [(s, t, f, tuple(o for o in opts.split(",") if o)) for s, t, f, opts in unescape] == [
        m[:3] + (m[3] if m[3] else (),) for m in _FSTAB_READ
    ]


@pytest.mark.skipif(shutil.which("findmnt") is None, reason="needs findmnt (util-linux)")
def test_octal_escapes_in_every_fstab_field_read_as_findmnt_reads_them(tmp_path: Path) -> None:
    # The kernel and fstab write a space, a tab, a newline and a backslash in a field as \040,
    # \011, \012 and \134; libmount reads them back in the options too.
    text = "/dev/disk\\040a /mnt/a\\040b ext\\0634 defaults,x-note=a\\040b\\134c,noexec 0 2\n"
    write(tmp_path, "etc/fstab", text)
    (m,) = context(tmp_path).fact("fstab", ())
    out = subprocess.run(["findmnt", "--fstab", "-F", str(tmp_path / "etc/fstab"), "-J", "-o",
                          "SOURCE,TARGET,FSTYPE,OPTIONS"], capture_output=True, text=True, check=True).stdout
    (want,) = json.loads(out)["filesystems"]
    assert (m.source, m.target, m.fstype, ",".join(m.options)) == (
        want["source"], want["target"], want["fstype"], want["options"])
    assert m.option("x-note") == "a b\\c"


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_modprobe_d_is_read_as_libkmod_reads_it(tmp_path: Path, sep: str) -> None:
    write(
        tmp_path,
        "etc/modprobe.d/cis.conf",
        f"# old{sep}install cramfs /bin/false\n"
        f"# old{sep}blacklist cramfs\n"
        "install\x0busb-storage /bin/true\n"
        "blacklist\x1cudf\n"
        "install squashfs /bin/\\\nfalse\n"
        "blacklist hf\\sp\\\nlus # comment\n"
        "install jffs2 /bin/true\x1c\n"
        "  # indented comment\n"
        "blacklist\tfat\0\n"
        "install vfat\n"
        "blacklist #x\n",
    )
    ctx = context(tmp_path)
    kmods = {
        n: ctx.fact("kmod", (n,))
        for n in ("cramfs", "usb-storage", "udf", "squashfs", "hfsplus", "jffs2", "fat", "vfat")
    }
    assert {n: (k.blacklisted, k.disabled, k.install) for n, k in kmods.items()} == {
        "cramfs": (False, False, None),
        "usb-storage": (False, False, None),
        "udf": (False, False, None),
        "squashfs": (False, True, "/bin/false"),
        "hfsplus": (True, False, None),
        "jffs2": (False, False, "/bin/true\x1c"),
        "fat": (True, False, None),
        "vfat": (False, False, None),
    }
    assert kmods["squashfs"].where("install") == "/etc/modprobe.d/cis.conf:5"
    assert kmods["hfsplus"].where("blacklisted") == "/etc/modprobe.d/cis.conf:7"


def test_grub_password_is_what_grub_cfg_sets_not_what_grub_d_would(tmp_path: Path) -> None:
    """GRUB reads grub.cfg at boot, and the CIS audit greps it: a superuser and password only
    in /etc/grub.d take effect once update-grub writes them there. The evidence says so."""
    users = 'cat <<EOF\nset superusers="root"\npassword_pbkdf2 root grub.pbkdf2.sha512.10000.AB.CD\nEOF\n'
    write(tmp_path, "/etc/grub.d/01_users", "#!/bin/sh\n" + users)
    write(tmp_path, "/boot/grub/grub.cfg", "set default=0\nmenuentry 'Debian' {\n\tlinux /vmlinuz ro\n}\n")
    g = context(tmp_path).fact("grub", ())
    assert (g.password_set, g.superusers) == (False, None)
    assert g.where("password_set") == ("/boot/grub/grub.cfg (no superusers and password both set); /etc/grub.d/01_users:3"
                                       " sets superusers, which takes effect once update-grub writes it there")
    write(tmp_path, "/boot/grub/grub.cfg", "### BEGIN /etc/grub.d/01_users ###\n" + users.split("\n", 1)[1].rsplit("EOF", 1)[0])
    g = context(tmp_path).fact("grub", ())
    assert (g.password_set, g.superusers) == (True, "root")
    assert g.where("password_set") == "/boot/grub/grub.cfg:2 and /boot/grub/grub.cfg:3"


_PBKDF2 = "password_pbkdf2 root grub.pbkdf2.sha512.10000.AB.CD\n"


@pytest.mark.parametrize(
    ("cfg", "superusers", "note"),
    [
        # the last top-level assignment wins: GRUB runs grub.cfg top to bottom
        ('set superusers="root"\n' + _PBKDF2 + "unset superusers\n", None, "grub.cfg:3 unsets superusers"),
        ("unset superusers\nsuperusers=admin\nexport superusers\n" + _PBKDF2, "admin", None),
        # set, even to "", GRUB asks for a password that only a listed user passes (auth.c)
        ('set superusers="root"\n' + _PBKDF2 + "set superusers=\n", "", None),
        # a conditional body runs only when its condition holds
        ('if [ x$feature_x = xy ]; then\n  set superusers="root"\nfi\n' + _PBKDF2, None,
         "grub.cfg:2 sets superusers only inside a conditional block, which runs only when its condition holds"),
        ("if [ -e /x ]; then set superusers=root; fi\n" + _PBKDF2, None, "grub.cfg:1 sets superusers only inside"),
        ("set superusers='root admin'\n" + _PBKDF2 + "while false; do\n unset superusers\ndone\n", None,
         "grub.cfg:4 unsets superusers inside a conditional block: the menu is protected only when its condition"),
        ("set superusers=root\n" + _PBKDF2 + "if [ -e /x ]; then\n set superusers=admin\nelse\n true\nfi\n", "root", None),
        ("function users {\n set superusers=root\n}\n" + _PBKDF2, None,
         "grub.cfg:2 sets superusers only inside a function body, which runs when it is called"),
        ("menuentry 'Debian' {\n set superusers=root\n unset x\n}\n" + _PBKDF2, None,
         "grub.cfg:2 sets superusers only inside a menuentry or submenu body"),
        ("menuentry 'Debian' {\n unset superusers\n}\n# set superusers=x\nset superusers=root # admins\n" + _PBKDF2,
         "root", None),
    ],
)
def test_grub_superusers_is_what_grub_cfg_leaves_set(tmp_path: Path, cfg: str, superusers: str | None,
                                                    note: str | None) -> None:
    write(tmp_path, "/boot/grub/grub.cfg", cfg)
    g = context(tmp_path).fact("grub", ())
    assert (g.superusers, g.password_set) == (superusers, superusers is not None)
    if note is None:
        assert "no superusers" not in g.where("password_set")
    else:
        assert f"; /boot/grub/{note}" in g.where("password_set")


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_grub_lines_end_at_newline_only(tmp_path: Path, sep: str) -> None:
    # grub_file_getline() ends a line at \n and drops \r; sh reads /etc/default/grub the same
    write(
        tmp_path,
        "boot/grub/grub.cfg",
        'set superusers="root"\n'
        f"# old{sep}password_pbkdf2 root grub.pbkdf2.sha512.10000.AB.CD\n"
        "menuentry 'Debian' {\n\tlinux /vmlinuz root=/dev/sda1 ro audit=1\n"
        f"# old{sep}linux /vmlinuz root=/dev/sda1 ro\n}}\n",
    )
    g = context(tmp_path).fact("grub", ())
    assert (g.superusers, g.password_set, g.has_arg("audit=1")) == ("root", False, True)
    (tmp_path / "boot/grub/grub.cfg").unlink()
    write(
        tmp_path,
        "etc/default/grub",
        f'GRUB_CMDLINE_LINUX=""\n# old{sep}GRUB_CMDLINE_LINUX="audit=1"\n',
    )
    assert not context(tmp_path).fact("grub", ()).has_arg("audit=1")


def test_grub_cfg_carriage_returns_are_dropped(tmp_path: Path) -> None:
    write(
        tmp_path,
        "boot/grub/grub.cfg",
        "\tlinux /vmlinuz ro audit=1\r\n\tlinux /vmlinuz a\rudit=1\n",
    )
    assert context(tmp_path).fact("grub", ()).has_arg("audit=1")


def test_grub_arguments_are_what_the_kernel_takes(tmp_path: Path) -> None:
    # each occurrence of an argument calls its handler again: the last one given counts
    write(
        tmp_path,
        "boot/grub/grub.cfg",
        "\tlinux /vmlinuz ro audit=1 audit_backlog_limit=8192 quiet audit=0\n"
        "\tlinux /vmlinuz ro single audit=1 audit_backlog_limit=64 audit_backlog_limit=8192\n",
    )
    g = context(tmp_path).fact("grub", ())
    assert (g.has_arg("audit=1"), g.has_arg("audit"), g.arg("audit_backlog_limit")) == (False, True, "8192")
    assert g.where("has_arg", "audit=1") == "/boot/grub/grub.cfg:1"
    assert (g.arg("audit"), g.where("arg", "audit")) == (None, "/boot/grub/grub.cfg:2")  # the lines differ
    assert (g.arg("quiet"), g.arg("nosmt")) == (None, None)  # on one line only; on none
    # /etc/default/grub counts only where there is no grub.cfg: the kernel boots grub.cfg's lines
    write(tmp_path, "etc/default/grub", 'GRUB_CMDLINE_LINUX="audit=1 audit_backlog_limit=16384 quiet"\n')
    assert context(tmp_path).fact("grub", ()).arg("audit_backlog_limit") == "8192"
    (tmp_path / "boot/grub/grub.cfg").unlink()
    g = context(tmp_path).fact("grub", ())
    assert (g.arg("audit_backlog_limit"), g.arg("quiet"), g.has_arg("audit=1")) == ("16384", "", True)


@pytest.mark.parametrize(
    "text",
    [
        'GRUB_CMDLINE_LINUX="audit=1"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT splash"\n',
        'GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} audit=1"\n',
        'GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX b"\n',
        "GRUB_CMDLINE_LINUX='audit=1  audit_backlog_limit=8192' # CIS\n",
    ],
)
def test_default_grub_reads_as_sh_sources_it(tmp_path: Path, text: str) -> None:
    # grub-mkconfig sources /etc/default/grub with sh: ask sh what the two variables hold
    write(tmp_path, "etc/default/grub", text)
    sh = subprocess.run(
        ["sh", "-c", '. "$1"; printf "%s %s" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"', "sh",
         str(tmp_path / "etc/default/grub")],
        capture_output=True, text=True, check=True,
    )
    assert context(tmp_path).fact("grub", ()).cmdline.split() == sh.stdout.split()


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_rsyslog_lines_end_at_newline_only(tmp_path: Path, sep: str) -> None:
    write(tmp_path, "etc/rsyslog.conf", f"$FileCreateMode 0644\n# old{sep}$FileCreateMode 0640\n")
    assert context(tmp_path).fact("rsyslog", ()).file_create_mode == "0644"


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_time_servers_hidden_in_comments_are_not_servers(tmp_path: Path, sep: str) -> None:
    # chronyd reads fgets() lines; timesyncd's read_line() also ends a line at \r
    write(tmp_path, "etc/chrony/chrony.conf", f"# old{sep}server a.example iburst\n")
    write(tmp_path, "etc/systemd/timesyncd.conf", f"[Time]\n# old{sep}NTP=b.example\n")
    servers = context(tmp_path).fact("timesync", ()).servers
    assert servers == (("b.example",) if sep == "\r" else ())


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1), ("10", 10), ("+1", 1), ("0x1f", 31), ("0X1F", 31), ("017", 15), ("0", 0), ("1\n", 1),
    ("0x", None), ("08", None), ("", None), ("yes", None), ("1 ", None), ("-1", None),
    ("18446744073709551615", (1 << 64) - 1), ("18446744073709551616", None),
])
def test_kstrtoul_reads_a_number_as_the_kernel_does(text: str, value: int | None) -> None:
    """lib/kstrtox.c: kstrtoul(s, 0): `+`, 0x hex (a hex digit must follow), 0 octal, decimal,
    the whole string but one newline, within an unsigned long."""
    assert _kstrtoul(text) == value


@pytest.mark.parametrize(("cmdline", "enabled"), [
    ("ro apparmor=1 security=apparmor", True),
    ("ro apparmor=10 security=apparmor", True),  # the CIS grep for apparmor=1 passes it too
    ("ro apparmor=0x1 security=apparmor", True),
    ("ro apparmor=1 security=apparmor apparmor=0", False),  # each occurrence calls the handler again
    ("ro apparmor=yes security=apparmor", False),
    ("ro apparmor=1 security=apparmor lsm=landlock,yama", False),  # lsm= supersedes security=
    ("ro apparmor=1 lsm=landlock,yama,apparmor", True),
    ("ro apparmor=1 security=selinux", False),
    ("ro apparmor=1 security=selinux security=apparmor", True),
    ("ro security=apparmor", False),
    ("ro -- apparmor=1 security=apparmor", False),  # after `--`, init's arguments
])
def test_apparmor_is_enabled_by_the_parameters_the_kernel_reads(cmdline: str, enabled: bool) -> None:
    assert (apparmor_boot_refusal(kernel_words(cmdline)) is None) == enabled
