"""sshd: first value wins, Include followed in order, Match blocks apart, sshd -T spelling."""

from __future__ import annotations

from pathlib import Path

import pytest
from facts_helpers import context, materialize, write

from secpolicy.facts.sshd import normalize_value


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_hardened_values_and_evidence(roots: dict[str, Path]) -> None:
    s = context(roots["hardened"]).fact("sshd", ())
    assert s.exists and s.path == "/etc/ssh/sshd_config"
    expected = {
        "PermitRootLogin": ("no", "/etc/ssh/sshd_config.d/50-cis.conf:4"),
        "maxauthtries": ("4", "/etc/ssh/sshd_config.d/50-cis.conf:5"),
        "ClientAliveInterval": ("300", "/etc/ssh/sshd_config.d/50-cis.conf:9"),
        "LoginGraceTime": ("60", "/etc/ssh/sshd_config.d/50-cis.conf:8"),
        "LogLevel": ("VERBOSE", "/etc/ssh/sshd_config.d/50-cis.conf:3"),
        "X11Forwarding": ("no", "/etc/ssh/sshd_config.d/50-cis.conf:16"),
        "UsePAM": ("yes", "/etc/ssh/sshd_config:42"),
        "AcceptEnv": ("LANG LC_*", "/etc/ssh/sshd_config:51"),
        "Subsystem": ("sftp /usr/lib/openssh/sftp-server", "/etc/ssh/sshd_config:54"),
        "Banner": ("/etc/issue.net", "/etc/ssh/sshd_config.d/50-cis.conf:19"),
    }
    assert {k: (s.option(k), s.where("option", k)) for k in expected} == expected
    assert s.files == [
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/50-cis.conf",
        "/etc/ssh/sshd_config.d/90-local.conf",
    ]


def test_kex_minus_list_removes_from_the_default(roots: dict[str, Path]) -> None:
    kex = context(roots["hardened"]).fact("sshd", ()).option("KexAlgorithms").split(",")
    assert "diffie-hellman-group14-sha256" not in kex and not any(
        k.startswith("ecdh-sha2-") for k in kex
    )
    assert kex[0] == "sntrup761x25519-sha512" and "curve25519-sha256" in kex


def test_weak_plus_list_appends_to_the_default_and_defaults_are_named(
    roots: dict[str, Path],
) -> None:
    s = context(roots["weak"]).fact("sshd", ())
    assert s.option("Ciphers").endswith(",3des-cbc,aes128-cbc")
    assert s.option("Ciphers").startswith("chacha20-poly1305@openssh.com,")
    assert s.option("LogLevel") == "QUIET"
    assert s.option("PermitEmptyPasswords") == "yes"
    assert (
        s.option("AllowGroups") is None
        and s.where("option", "AllowGroups") == "/etc/ssh/sshd_config"
    )
    assert s.option("MaxSessions") == "10"
    assert s.where("option", "MaxSessions") == "/etc/ssh/sshd_config (not set: OpenSSH 9.2 default)"
    assert s.is_set("MaxSessions") is False and s.is_set("MaxAuthTries") is True


def test_match_blocks_stay_apart(roots: dict[str, Path]) -> None:
    s = context(roots["hardened"]).fact("sshd", ())
    (m,) = s.matches
    assert m.criteria == "Group sftponly" and m.line == "/etc/ssh/sshd_config:57"
    assert (
        m.option("PasswordAuthentication") == "yes"
        and m.where("option", "PasswordAuthentication") == "/etc/ssh/sshd_config:61"
    )
    assert m.option("PermitRootLogin") is None
    # the Match block's `PasswordAuthentication yes` does not leak into the global value
    assert s.option("PasswordAuthentication") == "no"


def test_include_order_match_scope_and_aliases(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/ssh/sshd_config",
        "Include conf.d/*.conf\n"
        "PasswordAuthentication no\n"
        "ChallengeResponseAuthentication yes\n"
        "Match User alice\n"
        "  Include inmatch.conf\n",
    )
    write(
        tmp_path,
        "etc/ssh/conf.d/20-b.conf",
        "passwordauthentication=YES\nMatch Address 10.0.0.0/8\n  X11Forwarding yes\n",
    )
    write(tmp_path, "etc/ssh/conf.d/10-a.conf", "Port 2222\nPort 22\n")
    write(tmp_path, "etc/ssh/inmatch.conf", "AllowTcpForwarding no\n")
    s = context(tmp_path).fact("sshd", ())
    assert s.option("PasswordAuthentication") == "yes"
    assert s.where("option", "PasswordAuthentication") == "/etc/ssh/conf.d/20-b.conf:1"
    assert s.option("Port") == "2222 22"
    # a Match block opened in an included file ends with that file
    assert s.option("X11Forwarding") == "no"
    assert s.option("KbdInteractiveAuthentication") == "yes"
    assert [
        (m.criteria, m.option("X11Forwarding"), m.option("AllowTcpForwarding")) for m in s.matches
    ] == [
        ("Address 10.0.0.0/8", "yes", None),
        ("User alice", None, "no"),
    ]
    assert s.matches[1].where("option", "AllowTcpForwarding") == "/etc/ssh/inmatch.conf:1"


def test_match_all_returns_to_global_scope(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/ssh/sshd_config",
        "Match User bob\n  PermitTTY no\nMatch all\nPermitTTY yes\nMaxAuthTries 3\n",
    )
    s = context(tmp_path).fact("sshd", ())
    assert (s.option("PermitTTY"), s.option("MaxAuthTries")) == ("yes", "3")
    assert s.matches[0].option("PermitTTY") == "no"


def test_absent_config(tmp_path: Path) -> None:
    s = context(tmp_path).fact("sshd", ())
    assert (s.exists, s.option("PermitRootLogin"), s.matches, s.files) == (False, None, [], [])


def test_value_normalisation_matches_sshd_t() -> None:
    assert normalize_value("permitrootlogin", "Prohibit-Password") == "without-password"
    assert normalize_value("logingracetime", "1m30s") == "90"
    assert normalize_value("clientaliveinterval", "2h") == "7200"
    assert normalize_value("loglevel", "verbose") == "VERBOSE"
    assert normalize_value("macs", "^hmac-sha2-512").split(",")[0] == "hmac-sha2-512"
    assert normalize_value("banner", "/etc/Issue.net") == "/etc/Issue.net"


def test_comments_quotes_and_equals(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/ssh/sshd_config",
        'Banner "/etc/issue net" # the banner\nMaxStartups = 10:30:60\n',
    )
    s = context(tmp_path).fact("sshd", ())
    assert (s.option("Banner"), s.option("MaxStartups")) == ("/etc/issue net", "10:30:60")


def test_values_are_every_value_a_connection_can_get(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/ssh/sshd_config",
        "MaxAuthTries 4\n"
        "Match User backup\n  MaxAuthTries 3\n"
        "Match User !nobody\n  MaxAuthTries 8\n"  # only negated: selects no connection
        "Match Address 10.0.0.0/8\n  MaxAuthTries 10\n"
        "Match all\n  MaxAuthTries 6\n"
        "Match Host *.example\n  MaxAuthTries 12\n",  # after Match all: never reached
    )
    s = context(tmp_path).fact("sshd", ())
    # like `sshd -T`, `Match all` applies without connection details
    assert (
        s.option("MaxAuthTries") == "6"
        and s.where("option", "MaxAuthTries") == "/etc/ssh/sshd_config:9"
    )
    got = [(v.value, v.criteria, v.source) for v in s.values("maxauthtries")]
    assert got == [
        ("6", None, "/etc/ssh/sshd_config:9"),
        ("3", "User backup", "/etc/ssh/sshd_config:3"),
        ("10", "Address 10.0.0.0/8", "/etc/ssh/sshd_config:7"),
    ]
    assert [v.value for v in s.values("MaxSessions")] == ["10"]  # the default only


@pytest.mark.parametrize(
    "sep", ["\x1c", "\x1d", "\x1e", "\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"]
)
def test_a_setting_behind_a_hostile_separator_stays_in_its_comment(
    tmp_path: Path, sep: str
) -> None:
    # sshd ends lines at \n only (tests/conformance asks the real sshd -T)
    write(tmp_path, "etc/ssh/sshd_config", f"# note{sep}PermitRootLogin no\nPermitRootLogin yes\n")
    s = context(tmp_path).fact("sshd", ())
    assert (s.option("PermitRootLogin"), s.where("option", "PermitRootLogin"), s.errors) == (
        "yes",
        "/etc/ssh/sshd_config:2",
        (),
    )


@pytest.mark.parametrize(
    ("line", "value", "errors"),
    [
        ("MaxAuthTries 04", "4", ()),
        ("MaxAuthTries 010", "10", ()),
        ("MaxAuthTries +4", "4", ()),
        ("MaxAuthTries 4 # four", "4", ()),
        ("MaxAuthTries 4#x", "6", ("/etc/ssh/sshd_config:1: MaxAuthTries integer value invalid.",)),
        ("MaxAuthTries 0x4", "6", ("/etc/ssh/sshd_config:1: MaxAuthTries integer value invalid.",)),
        ("MaxAuthTries #4", "6", ("/etc/ssh/sshd_config:1: MaxAuthTries integer value missing.",)),
        (
            "MaxAuthTries 4 5",
            "6",
            ("/etc/ssh/sshd_config:1: keyword MaxAuthTries extra arguments at end of line",),
        ),
    ],
)
def test_integers_are_read_as_sshd_reads_them(
    tmp_path: Path, line: str, value: str, errors: tuple[str, ...]
) -> None:
    write(tmp_path, "etc/ssh/sshd_config", line + "\n")
    s = context(tmp_path).fact("sshd", ())
    assert (s.option("MaxAuthTries"), s.errors) == (value, errors)


@pytest.mark.parametrize(
    ("line", "keyword", "value", "errors"),
    [
        ("PermitRootLogin NO", "PermitRootLogin", "no", ()),
        ("Compression delayed", "Compression", "yes", ()),
        ("AllowTcpForwarding All", "AllowTcpForwarding", "yes", ()),
        ("KeepAlive no", "TCPKeepAlive", "no", ()),
        # yes and no compared case-sensitively; anything else is a pattern list, kept as written
        ("PermitUserEnvironment NO", "PermitUserEnvironment", "NO", ()),
        ("PermitTunnel Yes", "PermitTunnel", "no", ("/etc/ssh/sshd_config:1: bad PermitTunnel argument Yes",)),
        ("PermitRootLogin nope", "PermitRootLogin", "without-password",
         ('/etc/ssh/sshd_config:1: unsupported option "nope".',)),
        ("UsePAM yes no", "UsePAM", "no",
         ("/etc/ssh/sshd_config:1: keyword UsePAM extra arguments at end of line",)),
        ("PermitRootLogins no", "PermitRootLogin", "without-password",
         ("/etc/ssh/sshd_config:1: Bad configuration option: PermitRootLogins",)),
        ("Match User backup\nUsePAM yes", "UsePAM", "no",
         ("/etc/ssh/sshd_config:2: Directive 'UsePAM' is not allowed within a Match block",)),
        ("Match all\nUsePAM yes", "UsePAM", "yes", ()),
    ],
)
def test_words_and_keywords_are_read_as_sshd_reads_them(
    tmp_path: Path, line: str, keyword: str, value: str, errors: tuple[str, ...]
) -> None:
    # tests/conformance asks the real sshd -T about each kind of line
    write(tmp_path, "etc/ssh/sshd_config", line + "\n")
    s = context(tmp_path).fact("sshd", ())
    assert (s.option(keyword), s.errors) == (value, errors)
