"""dconf(profile) and gdm: the profile, its keyfile databases and locks as dconf reads them, and
GDM's daemon.conf as GKeyFile reads it; evidence names the line in force."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from facts_helpers import context, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.dconf import GVariantError, KeyFileError, parse_gvariant, read_keyfile

IDLE = "/org/gnome/desktop/session/idle-delay"
BANNER = "/org/gnome/login-screen/banner-message-enable"
USER = "user-db:user\nsystem-db:local\nsystem-db:site\n"


def _dconf(root: Path, profile: str, files: dict[str, str]):
    for rel, text in files.items():
        write(root, rel, text)
    return context(root).fact("dconf", (profile,))


def test_later_file_wins_and_names_its_line(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": USER,
            "etc/dconf/db/local.d/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            "etc/dconf/db/local.d/50-local": "# x\n[org/gnome/desktop/session]\nidle-delay=uint32 1800\n",
            "etc/dconf/db/local.d/.swp": "[org/gnome/desktop/session]\nidle-delay=uint32 1\n",
        },
    )
    assert (d.value(IDLE), d.uint32(IDLE)) == ("uint32 1800", 1800)
    assert d.where("uint32", IDLE) == "/etc/dconf/db/local.d/50-local:3"
    assert d.databases == ("user-db:user", "system-db:local", "system-db:site")


def test_wrong_group_and_types(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "gdm",
        {
            "etc/dconf/profile/gdm": "user-db:user\nsystem-db:gdm\n",
            "etc/dconf/db/gdm.d/00": "[org/gnome/desktop/screensaver]\nbanner-message-enable=true\n"
            "[org/gnome/login-screen]\ndisable-user-list='true'\nbanner-message-text=\"it's\"\n",
        },
    )
    assert d.value(BANNER) is None
    assert d.where("value", BANNER) == (
        "/etc/dconf/profile/gdm (not set: /etc/dconf/db/gdm.d set no /org/gnome/login-screen/banner-message-enable)"
    )
    assert d.value("/org/gnome/login-screen/disable-user-list") == "'true'"
    assert d.string("/org/gnome/login-screen/banner-message-text") == "it's"


def test_lock_in_a_later_database_decides(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": USER,
            "etc/dconf/db/local.d/00": "[org/gnome/desktop/session]\nidle-delay=uint32 300\n",
            "etc/dconf/db/site.d/00": "[org/gnome/desktop/session]\nidle-delay=uint32 1800\n",
            "etc/dconf/db/site.d/locks/00": f"# locks\n{IDLE}\n",
        },
    )
    assert d.uint32(IDLE) == 1800 and d.locked(IDLE)
    assert d.where("locked", IDLE) == "/etc/dconf/db/site.d/locks/00:2"
    assert not d.locked("/org/gnome/desktop/session/other")


def test_int32_is_not_uint32(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": USER,
            "etc/dconf/db/local.d/00": "[org/gnome/desktop/session]\nidle-delay=900\n",
        },
    )
    assert (d.value(IDLE), d.uint32(IDLE)) == ("900", None)


def test_missing_profiles(tmp_path: Path) -> None:
    write(
        tmp_path, "etc/dconf/db/local.d/00", "[org/gnome/desktop/session]\nidle-delay=uint32 900\n"
    )
    ctx = context(tmp_path)
    user, gdm = ctx.fact("dconf", ("user",)), ctx.fact("dconf", ("gdm",))
    assert (user.databases, user.value(IDLE), user.locked(IDLE)) == (("user-db:user",), None, False)
    assert (gdm.databases, gdm.value(IDLE), gdm.locked(IDLE)) == ((), None, True)
    assert user.where("value", IDLE).startswith(
        "/etc/dconf/profile/user (absent: dconf uses user-db:user)"
    )


def test_debian_gdm_profile_reads_the_greeter_defaults(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "gdm",
        {
            "usr/share/dconf/profile/gdm": "user-db:user\nfile-db:/var/lib/gdm3/greeter-dconf-defaults\n",
            "usr/share/gdm/dconf/90-debian-settings": "[org/gnome/login-screen]\nbanner-message-enable=true\n",
            "etc/dconf/db/gdm.d/00": "[org/gnome/login-screen]\nbanner-message-enable=false\n",
        },
    )
    assert d.path == "/usr/share/dconf/profile/gdm"
    assert (d.value(BANNER), d.where("value", BANNER)) == (
        "true",
        "/usr/share/gdm/dconf/90-debian-settings:2",
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"00": "[org/gnome/desktop/session]\nidle-delay=uint32 -1\n"},
            (
                "/etc/dconf/db/local.d/00:2: dconf update refuses [org/gnome/desktop/session] idle-delay=uint32 -1: "
                "number out of range for type 'u'"
            ),
        ),
        (
            {"00": "[org/gnome/desktop/session]\n\nidle-delay\n"},
            "/etc/dconf/db/local.d/00:3: dconf update refuses the keyfile",
        ),
        (
            {"00": "[/org/gnome]\nx=1\n"},
            "/etc/dconf/db/local.d/00:2: dconf update refuses [/org/gnome] x: invalid path",
        ),
    ],
)
def test_what_dconf_refuses_is_an_error(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    write(tmp_path, "etc/dconf/profile/user", USER)
    for name, text in files.items():
        write(tmp_path, f"etc/dconf/db/local.d/{name}", text)
    with pytest.raises(EvaluationError) as e:
        context(tmp_path).fact("dconf", ("user",))
    assert str(e.value).startswith(message)


def test_refused_earlier_duplicate_is_not_read(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "user",
        {"etc/dconf/profile/user": USER, "etc/dconf/db/local.d/00": "[a]\nk=not gvariant\nk=1\n"},
    )
    assert d.value("/a/k") == "1"


def test_keyfile_reading() -> None:
    groups = read_keyfile("# c\n  [a] \n k = v  \r\n[b]\nx=1\n[a]\nk=w\n")
    assert {g: {k: (e.value, e.line) for k, e in ks.items()} for g, ks in groups.items()} == {
        "a": {"k": ("w", 7)},
        "b": {"x": ("1", 5)},
    }
    for bad in ("k=v\n[a]\n", "[a]\n;c\n", "[a]\n=v\n", "[a\n", "[a]\n k=v\n[]\n"):
        with pytest.raises(KeyFileError):
            read_keyfile(bad)


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("true", "true"),
        ("  uint32 0x10 ", "uint32 16"),
        ("010", "8"),
        ("@u 5", "uint32 5"),
        ("[1, uint32 2]", "[uint32 1, 2]"),
        ("@as []", "@as []"),
        ('"it\'s"', '"it\'s"'),
        ("'a\\nb'", "'a\\nb'"),
        ("byte 255", "byte 0xff"),
        ("1e3", "1000.0"),
        ("[('xkb', 'us')]", "[('xkb', 'us')]"),
        ("<1>", "<1>"),
    ],
)
def test_gvariant_text(text: str, printed: str) -> None:
    assert parse_gvariant(text).text() == printed


@pytest.mark.parametrize(
    "text",
    [
        "True",
        "uint32 -1",
        "99999999999",
        "[]",
        "09",
        "900 # c",
        "byte 'a'",
        "'unterminated",
        "objectpath 'a'",
    ],
)
def test_gvariant_refused(text: str) -> None:
    with pytest.raises(GVariantError):
        parse_gvariant(text)


def test_gdm_xdmcp(tmp_path: Path) -> None:
    assert not context(tmp_path).fact("gdm", ()).xdmcp_enabled
    write(
        tmp_path, "etc/gdm3/custom.conf", "[xdmcp]\nEnable=true\n"
    )  # Debian's gdm3 never reads it
    write(
        tmp_path, "etc/gdm3/daemon.conf", "[xdmcp]\nEnable=true\n[daemon]\n[xdmcp]\nEnable=false\n"
    )
    g = context(tmp_path).fact("gdm", ())
    assert (g.xdmcp_enabled, g.where("xdmcp_enabled")) == (False, "/etc/gdm3/daemon.conf:5")
    write(tmp_path, "run/gdm3/custom.conf", "[xdmcp]\nEnable=TRUE\n")
    g = context(tmp_path).fact("gdm", ())
    assert (g.xdmcp_enabled, g.where("xdmcp_enabled")) == (True, "/run/gdm3/custom.conf:2")
    os.remove(tmp_path / "run/gdm3/custom.conf")
    write(tmp_path, "etc/gdm3/daemon.conf", "Enable=false\n")
    with pytest.raises(EvaluationError, match="/etc/gdm3/daemon.conf:1: GDM cannot read"):
        context(tmp_path).fact("gdm", ())
