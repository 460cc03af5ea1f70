"""login_defs, pwquality, faillock, auditd_conf, journald: each file's own syntax and order."""

from __future__ import annotations

from pathlib import Path

import pytest
from facts_helpers import context, materialize, write

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
    missing = context(roots["weak"]).fact("auditd_conf", ())
    assert (missing.exists, missing.option("max_log_file"), missing.where("option", "x")) == (
        False,
        None,
        "/etc/audit/auditd.conf (absent)",
    )


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
    assert [parse_size(s) for s in ("500M", "1G", "4096", "2KiB", "x")] == [
        500 << 20,
        1 << 30,
        4096,
        2048,
        None,
    ]
