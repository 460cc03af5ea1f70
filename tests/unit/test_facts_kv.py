"""login_defs, useradd_defaults, pwquality, faillock, auditd_conf, journald: each file's own syntax and order,
and each program's built-in default for what the files leave unset (tests/conformance asks the
real programs: shadow's useradd and chgpasswd, systemd's own journald.conf)."""

from __future__ import annotations

from pathlib import Path

import pytest
from facts_helpers import HOSTILE_LINE_BREAKS, context, materialize, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.kv import c_integer, parse_size


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_login_defs(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("login_defs", ())
    assert (h.int("PASS_MAX_DAYS"), h.int("PASS_MIN_DAYS"), h.option("ENCRYPT_METHOD")) == (
        365,
        1,
        "YESCRYPT",
    )
    assert (h.option("UMASK"), h.mode("UMASK"), h.int("UMASK")) == ("027", 0o27, 0o27)
    assert h.where("option", "PASS_MAX_DAYS") == "/etc/login.defs:29"
    w = context(roots["weak"]).fact("login_defs", ())
    # shadow-utils keeps the last definition
    assert (w.int("PASS_WARN_AGE"), w.where("int", "PASS_WARN_AGE")) == (3, "/etc/login.defs:32")
    assert (
        w.option("NOT_A_KEY") is None
        and w.where("option", "NOT_A_KEY") == "/etc/login.defs (not set)"
    )


def test_pwquality_dropins_are_read_before_the_main_file(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("pwquality", ())
    assert (h.int("minlen"), h.where("int", "minlen")) == (
        14,
        "/etc/security/pwquality.conf.d/50-cis.conf:2",
    )
    assert (h.int("minclass"), h.option("enforce_for_root")) == (4, "true")
    w = context(roots["weak"]).fact("pwquality", ())
    assert (w.int("minlen"), w.where("int", "minlen")) == (8, "/etc/security/pwquality.conf:2")
    assert w.files == ["/etc/security/pwquality.conf.d/50-cis.conf", "/etc/security/pwquality.conf"]


def test_faillock_flags(roots: dict[str, Path]) -> None:
    h = context(roots["hardened"]).fact("faillock", ())
    assert (h.int("deny"), h.int("unlock_time"), h.option("even_deny_root"), h.option("audit")) == (
        5,
        900,
        "true",
        "true",
    )
    w = context(roots["weak"]).fact("faillock", ())
    assert (w.int("deny"), w.has("even_deny_root"), w.option("even_deny_root")) == (10, False, None)


@pytest.mark.parametrize(
    ("text", "deny", "unlock", "root_unlock"),
    [
        ("deny = 4abc  # CIS\nunlock_time = never\n", 4, 0, 0),  # sscanf; never is 0
        ("DENY = 4\nUnlock_Time = 900\n", 3, 600, 600),  # names are case-sensitive
        ("deny=-1\nunlock_time = 700000\n", 65535, 600, 600),  # %hu wraps; > a week refused
        ("deny = x\ndeny = 5\nunlock_time = 1200\nroot_unlock_time = 60\n", 5, 1200, 60),
        ("even_deny_root = 0\n", 3, 600, 600),  # a flag is on whatever follows it
    ],
)
def test_faillock_is_read_as_pam_faillock_reads_it(
    tmp_path: Path, text: str, deny: int, unlock: int, root_unlock: int
) -> None:
    write(tmp_path, "etc/security/faillock.conf", text)
    f = context(tmp_path).fact("faillock", ())
    assert (f.int("deny"), f.int("unlock_time"), f.int("root_unlock_time")) == (
        deny,
        unlock,
        root_unlock,
    )
    assert f.has("even_deny_root") == ("even_deny_root" in text)


def test_a_value_pam_faillock_refuses_is_named_as_refused_not_as_unset(tmp_path: Path) -> None:
    """The evidence for a default that stands because the file's value is refused names that
    line and says so ("not set" would send an auditor looking for a line that is there)."""
    write(tmp_path, "etc/security/faillock.conf", "deny = 5\n# a week and more\nunlock_time = 700000\n")
    write(tmp_path, "etc/pam.d/common-auth", "auth requisite pam_faillock.so preauth\n")
    ctx = context(tmp_path)
    f = ctx.fact("faillock", ())
    assert f.int("unlock_time") == 600
    where = f.where("int", "unlock_time")
    assert where.startswith("/etc/security/faillock.conf:3: ") and "ignores the line: its default 600" in where
    assert f.where("int", "root_unlock_time").startswith("/etc/security/faillock.conf:3: ")
    assert f.where("int", "deny") == "/etc/security/faillock.conf:1"
    with_args = f.with_args(ctx.fact("pam", ("common-auth",)).module("pam_faillock.so"))
    assert with_args.where("int", "unlock_time") == where


def test_faillock_with_pam_arguments(tmp_path: Path) -> None:
    write(tmp_path, "etc/security/faillock.conf", "deny = 5\nunlock_time = 900\n")
    write(
        tmp_path,
        "etc/pam.d/common-auth",
        "auth requisite pam_faillock.so preauth deny=abc unlock_time=1800 even_deny_root\n",
    )
    ctx = context(tmp_path)
    e = ctx.fact("pam", ("common-auth",)).module("pam_faillock.so")
    f = ctx.fact("faillock", ()).with_args(e)
    assert (f.int("deny"), f.int("unlock_time"), f.int("root_unlock_time")) == (5, 1800, 1800)
    assert f.has("even_deny_root") and not f.has("preauth")
    assert f.where("int", "unlock_time") == "/etc/pam.d/common-auth:1"
    assert f.where("int", "root_unlock_time").endswith(
        "(root_unlock_time not set: it follows unlock_time)"
    )


def test_faillock_conf_argument_names_the_file_pam_faillock_reads(tmp_path: Path) -> None:
    # pam_faillock 1.5.2's args_parse(): the last `conf=` names the file read_config_file()
    # reads instead of faillock.conf, then the other arguments override it; a conf= file it
    # cannot open fails every authentication (PAM_SERVICE_ERR), so no lockout can be read.
    write(tmp_path, "etc/security/faillock.conf", "deny = 5\nunlock_time = 1800\n")
    write(tmp_path, "etc/security/faillock-pci.conf", "deny = 50\nunlock_time = 60\nfail_interval = 30\n")
    write(
        tmp_path,
        "etc/pam.d/common-auth",
        "auth requisite pam_faillock.so preauth conf=/etc/security/nope.conf conf=/etc/security/faillock-pci.conf"
        " unlock_time=120\n"
        "auth [default=die] pam_faillock.so authfail conf=/etc/security/missing.conf\n",
    )
    ctx = context(tmp_path)
    pre, fail = ctx.fact("pam", ("common-auth",)).entries
    f = ctx.fact("faillock", ()).with_args(pre)
    assert (f.int("deny"), f.int("unlock_time"), f.int("fail_interval")) == (50, 120, 30)
    assert f.where("int", "deny") == "/etc/security/faillock-pci.conf:1"
    assert f.files == ["/etc/security/faillock-pci.conf"] and not f.has("conf")
    with pytest.raises(EvaluationError, match=r"conf=/etc/security/missing.conf: the file cannot be read"):
        ctx.fact("faillock", ()).with_args(fail)


def test_auditd_conf(roots: dict[str, Path]) -> None:
    a = context(roots["hardened"]).fact("auditd_conf", ())
    assert (
        a.exists,
        a.option("max_log_file_action"),
        a.int("max_log_file"),
        a.option("DISK_FULL_ACTION"),
    ) == (
        True,
        "keep_logs",
        32,
        "halt",
    )
    assert a.errors == ()
    missing = context(roots["weak"]).fact("auditd_conf", ())
    # auditd 3.0.9 runs on clear_config()'s values when its file is absent
    assert (missing.exists, missing.int("max_log_file"), missing.option("disk_full_action")) == (
        False,
        0,
        "IGNORE",
    )
    assert missing.where("option", "disk_full_action") == (
        "/etc/audit/auditd.conf (absent: auditd 3.0.9 default)"
    )
    assert missing.where("option", "x") == "/etc/audit/auditd.conf (absent)"
    assert not missing.has("disk_full_action") and missing.option("x") is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("disk_full_action=halt\n", "1: Wrong number of arguments"),
        ("disk_full_action\t=\thalt\n", "1: Wrong number of arguments"),
        ("disk_full_action : halt\n", "1: Missing equal sign"),
        ("disk_full_action = halts\n", "1: Option halts not found"),
        ("disk_full_actions = halt\n", '1: Unknown keyword "disk_full_actions"'),
        ("num_logs = 1000\n", "1: num_logs must be 999 or less"),
        ("max_log_file = 8 MB\n", '1: Keyword "max_log_file" has invalid option "MB"'),
        (
            "space_left = 50\nadmin_space_left = 75\n",
            "space_left(50) must be larger than admin_space_left(75)",
        ),
        (
            "space_left = 75\nadmin_space_left = 50\nflush = incremental\n",
            "incremental flushing chosen, but 0 selected for freq",
        ),
        ("log_file = /var/log/x/audit.log\n", "1: Could not open dir /var/log/x"),
        # log_file_parser takes dirname(3) of the value, which must be "/var" long or more
        ("log_file = audit.log\n", "1: The directory name: . is too short"),
        ("log_file = /x/audit.log\n", "1: The directory name: /x is too short"),
        ("log_file = /var/log/audit/\n", "1: /var/log/audit/ is not a regular file"),
        ("log_file = nosuch/audit.log\n", "1: Could not open dir nosuch"),
    ],
)
def test_auditd_refuses_what_its_parser_refuses(tmp_path: Path, text: str, error: str) -> None:
    write(tmp_path, "etc/audit/auditd.conf", text)
    (tmp_path / "var/log/audit").mkdir(parents=True)
    a = context(tmp_path).fact("auditd_conf", ())
    assert len(a.errors) == 1 and error in a.errors[0], a.errors


def test_auditd_accepts_what_its_parser_accepts(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/audit/auditd.conf",
        "# c\n  Disk_Full_Action = EXEC /usr/local/bin/alert\nspace_left = 25%\n"
        "admin_space_left = 10%\nmax_log_file = 8\nmax_log_file = 16\n",
    )
    a = context(tmp_path).fact("auditd_conf", ())
    assert a.errors == () and (a.option("disk_full_action"), a.int("max_log_file")) == ("EXEC", 16)


def test_auditd_opens_a_relative_log_file_from_its_working_directory(tmp_path: Path) -> None:
    # auditd.service runs in /: a relative log_file is read from there (auditd -n accepts
    # `logs/audit.log` when its working directory holds logs/)
    write(tmp_path, "etc/audit/auditd.conf", "log_file = var/log/audit/audit.log\nspace_left = 75\nadmin_space_left = 50\n")
    (tmp_path / "var/log/audit").mkdir(parents=True)
    a = context(tmp_path).fact("auditd_conf", ())
    assert a.errors == () and a.option("log_file") == "/var/log/audit/audit.log"
    assert a.where("option", "log_file") == "/etc/audit/auditd.conf:1"


def test_login_defs_defaults_are_shadows(tmp_path: Path) -> None:
    write(tmp_path, "etc/login.defs", "MAIL_DIR /var/mail\n")
    d = context(tmp_path).fact("login_defs", ())
    assert (d.int("PASS_MAX_DAYS"), d.mode("UMASK"), d.option("ENCRYPT_METHOD")) == (
        -1,
        0o22,
        "DES",
    )
    assert d.where("option", "ENCRYPT_METHOD") == "/etc/login.defs (not set: shadow 4.13 default)"
    write(tmp_path, "etc/login.defs", "MD5_CRYPT_ENAB yes\n")
    assert context(tmp_path).fact("login_defs", ()).option("ENCRYPT_METHOD") == "MD5"


def test_pwquality_and_faillock_defaults(tmp_path: Path) -> None:
    p = context(tmp_path).fact("pwquality", ())
    assert (p.int("minlen"), p.int("difok"), p.int("dictcheck"), p.option("enforce_for_root")) == (
        8,
        1,
        1,
        None,
    )
    write(tmp_path, "etc/security/faillock.conf", "unlock_time = 1200\n")
    f = context(tmp_path).fact("faillock", ())
    assert (f.int("deny"), f.int("unlock_time"), f.int("root_unlock_time")) == (3, 1200, 1200)


@pytest.mark.parametrize(
    ("text", "minlen"),
    [
        ("minlen = 14   # CIS\n", 14),  # a # anywhere starts a comment
        ("MINLEN 14\n", 14),  # names are case-insensitive; = is optional
        ("\tminlen=+14\r\n", 14),
        ("minlen = 3\n", 6),  # raised to libpwquality's floor
        ("minlen = 14\nminlen = 15\n", 15),
        ("bogus = 1\nminlen = 14\n", 8),  # an unknown name stops the reading
        ("; note\nminlen = 14\n", 8),
        ("minlen = 14abc\n", 8),  # not an integer: stops, default kept
        ("minlen = 16\nminclass = four\nminlen = 20\n", 16),  # what came before stays
        ("minlen==14\n", 8),
    ],
)
def test_pwquality_is_read_as_libpwquality_reads_it(tmp_path: Path, text: str, minlen: int) -> None:
    write(tmp_path, "etc/security/pwquality.conf", text)
    p = context(tmp_path).fact("pwquality", ())
    assert p.int("minlen") == minlen
    assert (
        bool(p.errors)
        == ("stops reading" in " ".join(p.errors))
        == (text.startswith(("bogus", ";")) or "abc" in text or "four" in text or "==" in text)
    )


def test_pwquality_error_in_a_dropin_stops_the_main_file_too(tmp_path: Path) -> None:
    write(tmp_path, "etc/security/pwquality.conf.d/10.conf", "minlen = 15\nbogus\n")
    write(tmp_path, "etc/security/pwquality.conf", "difok = 4\nenforce_for_root\n")
    p = context(tmp_path).fact("pwquality", ())
    assert (p.int("minlen"), p.int("difok"), p.has("enforce_for_root")) == (15, 1, False)
    stop = "/etc/security/pwquality.conf.d/10.conf:2: unknown setting 'bogus';"
    assert p.errors == (stop + " libpwquality stops reading here",)
    assert "where reading stopped" in p.where("int", "difok")


def test_pwquality_with_pam_arguments(tmp_path: Path) -> None:
    write(tmp_path, "etc/security/pwquality.conf", "minlen = 14\n")
    write(
        tmp_path,
        "etc/pam.d/common-password",
        "password requisite pam_pwquality.so retry=3 minlen=10 minlen=16 difok=x enforce_for_root\n",
    )
    ctx = context(tmp_path)
    e = ctx.fact("pam", ("common-password",)).module("pam_pwquality.so")
    assert e.arg("minlen") == "16"  # modules apply their arguments in order: the last wins
    p = ctx.fact("pwquality", ()).with_args(e)
    assert (p.int("minlen"), p.int("difok"), p.has("enforce_for_root")) == (16, 1, True)
    assert p.where("int", "minlen") == "/etc/pam.d/common-password:1"
    assert p.where("int", "difok").endswith("(not set: libpwquality 1.4.5 default)")
    assert ctx.fact("pwquality", ()).int("minlen") == 14  # the file's own view is unchanged


def test_journald_sections_and_dropins(roots: dict[str, Path], tmp_path: Path) -> None:
    j = context(roots["hardened"]).fact("journald", ())
    assert (j.option("Storage"), j.option("Compress"), j.option("ForwardToSyslog")) == (
        "persistent",
        "yes",
        "yes",
    )
    assert (j.size("SystemMaxUse"), j.where("option", "Storage")) == (
        1 << 30,
        "/etc/systemd/journald.conf.d/60-cis.conf:3",
    )
    assert context(roots["weak"]).fact("journald", ()).option("Storage") == "volatile"
    write(
        tmp_path,
        "etc/systemd/journald.conf",
        "[Journal]\nStorage=persistent\n[Other]\nStorage=none\n",
    )
    write(tmp_path, "usr/lib/systemd/journald.conf.d/10-vendor.conf", "[Journal]\nStorage=auto\n")
    write(tmp_path, "etc/systemd/journald.conf.d/20-site.conf", "[Journal]\nCompress=no\n")
    j2 = context(tmp_path).fact("journald", ())
    assert (j2.option("Storage"), j2.option("Compress")) == ("auto", "no")
    assert (j2.bool("Compress"), j2.bool("ForwardToSyslog"), j2.option("Seal")) == (
        False,
        True,
        "yes",
    )
    assert (
        j2.where("option", "Seal")
        == "/etc/systemd/journald.conf (not set: Debian systemd 252 default)"
    )
    assert j2.files == [
        "/etc/systemd/journald.conf",
        "/usr/lib/systemd/journald.conf.d/10-vendor.conf",
        "/etc/systemd/journald.conf.d/20-site.conf",
    ]


def test_number_readers() -> None:
    assert [c_integer(s) for s in ("027", "0x1F", "-5", "0", "abc", None)] == [
        23,
        31,
        -5,
        0,
        None,
        None,
    ]
    # systemd's parse_size(): `1G 512M` adds up, `2KiB` is refused (tests/conformance asks it)
    assert [parse_size(s) for s in ("500M", "1G", "4096", "2KiB", "x", "1G 512M")] == [
        500 << 20,
        1 << 30,
        4096,
        None,
        None,
        (1 << 30) + (512 << 20),
    ]




@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_login_defs_lines_end_at_newline_only(tmp_path: Path, sep: str) -> None:
    # shadow's getdef.c reads fgets() lines: the setting after the separator is in the comment
    write(tmp_path, "etc/login.defs", f"PASS_MAX_DAYS 99999\n# was:{sep}PASS_MAX_DAYS 365\n")
    d = context(tmp_path).fact("login_defs", ())
    assert (d.int("PASS_MAX_DAYS"), d.where("int", "PASS_MAX_DAYS")) == (99999, "/etc/login.defs:1")


def test_login_defs_words_are_split_at_blanks_and_tabs_only(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/login.defs",
        'PASS_MAX_DAYS 90\nPASS_MAX_DAYS\x0b365\nPASS_MAX_DAYS\nPASS_MIN_DAYS\t "7"\nUMASK 027 \r\n',
    )
    d = context(tmp_path).fact("login_defs", ())
    assert (d.int("PASS_MAX_DAYS"), d.int("PASS_MIN_DAYS"), d.option("UMASK")) == (90, 7, "027")


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_pwquality_and_faillock_lines_end_at_newline_only(tmp_path: Path, sep: str) -> None:
    write(tmp_path, "etc/security/pwquality.conf", f"minlen = 8\n# was{sep}minlen = 14\n")
    write(tmp_path, "etc/security/faillock.conf", f"deny = 9\n# was{sep}deny = 3\n")
    ctx = context(tmp_path)
    assert ctx.fact("pwquality", ()).int("minlen") == 8
    assert ctx.fact("faillock", ()).int("deny") == 9


@pytest.mark.parametrize(("sep", "applied"), [(s, s == "\r") for s in HOSTILE_LINE_BREAKS])
def test_journald_lines_end_where_systemd_ends_them(
    tmp_path: Path, sep: str, applied: bool
) -> None:
    # systemd's read_line() ends a line at \n, \r or NUL only
    write(
        tmp_path,
        "etc/systemd/journald.conf",
        f"[Journal]\nStorage=volatile\n# x{sep}Storage=persistent\n",
    )
    storage = context(tmp_path).fact("journald", ()).option("Storage")
    assert storage == ("persistent" if applied else "volatile")


@pytest.mark.parametrize(
    ("main", "dropin", "storage", "errors"),
    [
        # a trailing backslash joins the next line: Storage= is part of ForwardToSyslog's value
        ("[Journal]\nForwardToSyslog=no \\\nStorage=persistent\n", None, "auto",
         ("/etc/systemd/journald.conf:2: Failed to parse boolean value, ignoring: no  Storage=persistent",)),
        # an assignment journald refuses keeps the value before it
        ("[Journal]\nStorage=persistent\n", "[Journal]\nStorage=Persistent\n", "persistent",
         ("/etc/systemd/journald.conf.d/50-x.conf:2: Failed to parse storage setting, ignoring: Persistent",)),
        # a comment inside a continuation is skipped, the continuation goes on after it
        ("[Journal]\nStorage=persistent \\\n# note\n\n", None, "persistent", ()),
        # a comment line ending in a backslash continues nothing
        ("[Journal]\n# note \\\nStorage=persistent\n", None, "persistent", ()),
        # a section name is kept as written
        ("[ Journal ]\nStorage=persistent\n", None, "auto", ()),
        # a broken header stops the file and the drop-ins after it
        ("[Journal]\nStorage=volatile\n[Journal\nStorage=persistent\n", "[Journal]\nStorage=persistent\n",
         "volatile", (("/etc/systemd/journald.conf:3: Invalid section header '[Journal'; systemd reads no "
                      "further (nor the files after it)"),)),
    ],
)
def test_journald_files_are_read_as_systemds_config_parser_reads_them(
    tmp_path: Path, main: str, dropin: str | None, storage: str, errors: tuple[str, ...]
) -> None:
    # tests/conformance calls systemd's own config_parse() on each kind of line
    write(tmp_path, "etc/systemd/journald.conf", main)
    if dropin is not None:
        write(tmp_path, "etc/systemd/journald.conf.d/50-x.conf", dropin)
    journald = context(tmp_path).fact("journald", ())
    assert (journald.option("Storage"), journald.errors) == (storage, errors)


@pytest.mark.parametrize(("pad", "value"), [(1021, 99999), (1020, 90), (1022, 90)])
def test_login_defs_lines_come_in_1023_byte_pieces_as_fgets_reads_them(tmp_path: Path, pad: int, value: int) -> None:
    # shadow's def_load() reads with fgets() into 1024 bytes: a setting that starts at byte
    # 1024 of a comment line is read (tests/conformance asks useradd)
    write(tmp_path, "etc/login.defs", "PASS_MAX_DAYS 90\n# " + "x" * pad + "PASS_MAX_DAYS 99999\n")
    assert context(tmp_path).fact("login_defs", ()).int("PASS_MAX_DAYS") == value


@pytest.mark.parametrize("pad", [1022, 1023])
def test_pwquality_and_faillock_give_up_on_a_line_too_long(tmp_path: Path, pad: int) -> None:
    # both read with fgets() into 1024 bytes and refuse a file with a longer line (tests/
    # conformance asks libpwquality and pam_faillock): libpwquality keeps what it read before
    # it, pam_faillock fails every authentication it takes part in
    long_line = "# " + "x" * (pad - 2) + "\n"
    write(tmp_path, "etc/security/pwquality.conf", "minlen = 9\n" + long_line + "minlen = 14\n")
    write(tmp_path, "etc/security/faillock.conf", "deny = 4\n" + long_line)
    ctx = context(tmp_path)
    if pad < 1023:
        assert (ctx.fact("pwquality", ()).int("minlen"), ctx.fact("faillock", ()).int("deny")) == (14, 4)
        return
    pwq = ctx.fact("pwquality", ())
    assert (pwq.int("minlen"), pwq.errors) == (9, (
        ("/etc/security/pwquality.conf:2: line longer than 1022 bytes (malformed configuration file); "
        "libpwquality stops reading here"),))
    with pytest.raises(EvaluationError, match="faillock.conf:2: line longer than 1022 bytes"):
        ctx.fact("faillock", ())


@pytest.mark.parametrize(
    ("text", "action"),
    [
        # get_line() reads with fgets() into 160 bytes and skips a line whose newline is not
        # in them: the setting on a line of 159 bytes or more never applies (bytes: é is two)
        ("disk_full_action = halt" + " " * 135 + "\n", "halt"),
        ("disk_full_action = halt" + " " * 136 + "\n", "IGNORE"),
        ("disk_full_action = halt #" + "é" * 67 + "\n", "IGNORE"),
        # strchr() stops at a NUL: that line is "too long", and so is the next one
        ("disk_full_action = halt\0\ndisk_full_action = single\n", "IGNORE"),
        ("x = y\0\ndisk_full_action = single\ndisk_full_action = halt\n", "halt"),
        # a last line without its newline is read
        ("disk_full_action = halt", "halt"),
    ],
)
def test_auditd_reads_lines_as_its_get_line_hands_them_over(tmp_path: Path, text: str, action: str) -> None:
    write(tmp_path, "etc/audit/auditd.conf", "space_left = 75\nadmin_space_left = 50\n" + text)
    a = context(tmp_path).fact("auditd_conf", ())
    assert (a.option("disk_full_action"), a.errors) == (action, ())


@pytest.mark.parametrize(
    ("text", "inactive"),
    [
        ("INACTIVE=30\n", 30),
        ("INACTIVE=30\nINACTIVE=-1\n", -1),  # the last line wins
        ("INACTIVE = 30\n", -1),  # no KEY= at the start: not read
        (" INACTIVE=30\n", -1),
        ("INACTIVE=30 \n", -1),  # refused: something after the number
        ("INACTIVE=030\n", 24),  # strtol base 0
        ("INACTIVE=-5\n", -1),  # below -1: refused
        ("#" + "x" * 1022 + "INACTIVE=7\n", 7),  # fgets() hands useradd the tail as a line
    ],
)
def test_useradd_defaults_read_as_useradd_reads_them(tmp_path: Path, text: str, inactive: int) -> None:
    # tests/conformance compares with `useradd -D`
    write(tmp_path, "etc/default/useradd", text)
    d = context(tmp_path).fact("useradd_defaults", ())
    assert d.int("INACTIVE") == inactive
    assert (d.option("SHELL"), d.option("LOG_INIT")) == ("/bin/bash", "yes")
