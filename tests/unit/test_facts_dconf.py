"""dconf(profile) and gdm: the profile, its compiled databases and locks as dconf reads them
(the keyfiles only as far as `dconf update` compiled them), and GDM's daemon.conf as GKeyFile
reads it; evidence names the line in force, or what is not compiled."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from facts_helpers import context, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.dconf import GVariantError, KeyFileError, parse_gvariant, read_keyfile

IDLE = "/org/gnome/desktop/session/idle-delay"
BANNER = "/org/gnome/login-screen/banner-message-enable"
USER = "user-db:user\nsystem-db:local\nsystem-db:site\n"
LOCAL = "etc/dconf/db/local"


def _hash(key: bytes) -> int:  # gvdb's djb hash over signed chars
    h = 5381
    for b in key:
        h = (h * 33 + (b - 256 if b >= 128 else b)) & 0xFFFFFFFF
    return h


def gvdb(values: dict[str, str], locks: tuple[str, ...] = ()) -> bytes:
    """A compiled dconf database (gvdb) holding `values` (GVariant text of basic types) and
    `locks`: one hash bucket, no bloom filter, full keys; `dconf read` and `dconf list-locks`
    read such a file as they read `dconf compile`'s."""
    out = bytearray(24)
    fmt = {"b": "<?", "y": "<B", "n": "<h", "q": "<H", "i": "<i", "u": "<I", "x": "<q", "d": "<d"}

    def body(text: str) -> bytes:
        v = parse_gvariant(text)
        data = struct.pack(fmt[v.type], v.value) if v.type in fmt else v.value.encode() + b"\0"
        return data + b"\0" + v.type.encode()

    def table(items: list) -> tuple[int, int]:
        start = len(out)
        out.extend(struct.pack("<III", 0, 1, 0) + bytes(24 * len(items)))
        for i, (key, typ, value) in enumerate(items):
            k = key.encode()
            kstart = len(out)
            out.extend(k)
            if callable(value):
                vstart, vend = value()
            else:
                out.extend(bytes(-len(out) % 8))
                vstart = len(out)
                out.extend(value)
                vend = len(out)
            struct.pack_into(
                "<IIIHccII", out, start + 12 + 24 * i, _hash(k), 0xFFFFFFFF, kstart, len(k), typ,
                b"\0", vstart, vend,
            )  # fmt: skip
        return start, start + 12 + 24 * len(items)

    def locks_table() -> tuple[int, int]:
        out.extend(bytes(-len(out) % 4))
        return table([(lock, b"v", b"\0s") for lock in locks])

    items: list = [(k, b"v", body(v)) for k, v in values.items()]
    if locks:
        items.append((".locks", b"H", locks_table))
    start, end = table(items)
    out[:24] = b"GVariant" + struct.pack("<IIII", 0, 0, start, end)
    return bytes(out)


def compiled(root: Path, rel: str, values: dict[str, str], locks: tuple[str, ...] = ()) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(gvdb(values, locks))


def _dconf(root: Path, profile: str, files: dict[str, str]):
    for rel, text in files.items():
        write(root, rel, text)
    return context(root).fact("dconf", (profile,))


def test_later_file_wins_and_names_its_line(tmp_path: Path) -> None:
    compiled(tmp_path, LOCAL, {IDLE: "uint32 1800"})  # what dconf update made of local.d
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
    compiled(
        tmp_path,
        "etc/dconf/db/gdm",
        {
            "/org/gnome/desktop/screensaver/banner-message-enable": "true",
            "/org/gnome/login-screen/disable-user-list": "'true'",
            "/org/gnome/login-screen/banner-message-text": '"it\'s"',
        },
    )
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
        "/etc/dconf/profile/gdm (not set: /etc/dconf/db/gdm set no /org/gnome/login-screen/banner-message-enable)"
    )
    assert d.value("/org/gnome/login-screen/disable-user-list") == "'true'"
    assert d.string("/org/gnome/login-screen/banner-message-text") == "it's"


def test_lock_in_a_later_database_decides(tmp_path: Path) -> None:
    compiled(tmp_path, LOCAL, {IDLE: "uint32 300"})
    compiled(tmp_path, "etc/dconf/db/site", {IDLE: "uint32 1800"}, (IDLE,))
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
    compiled(tmp_path, LOCAL, {IDLE: "900"})
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
                "dconf update refuses /etc/dconf/db/local.d/00:2: [org/gnome/desktop/session] idle-delay=uint32 -1: "
                "number out of range for type 'u'"
            ),
        ),
        (
            {"00": "[org/gnome/desktop/session]\n\nidle-delay\n"},
            "dconf update refuses /etc/dconf/db/local.d/00:3: the keyfile",
        ),
        (
            {"00": "[/org/gnome]\nx=1\n"},
            "dconf update refuses /etc/dconf/db/local.d/00:2: [/org/gnome] x: invalid path",
        ),
    ],
)
def test_what_dconf_update_refuses_leaves_the_compiled_database(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    """`dconf update` writes nothing for a directory it refuses: never compiled, nothing of it
    is in force; compiled before, the old database stays in force (checked with dconf 0.40)."""
    write(tmp_path, "etc/dconf/profile/user", USER)
    for name, text in files.items():
        write(tmp_path, f"etc/dconf/db/local.d/{name}", text)
    d = context(tmp_path).fact("dconf", ("user",))
    assert d.value(IDLE) is None
    assert d.where("value", IDLE).startswith(
        f"/etc/dconf/profile/user (not set: /etc/dconf/db/local (absent: {message}"
    )
    compiled(tmp_path, LOCAL, {IDLE: "uint32 900"}, (IDLE,))
    d = context(tmp_path).fact("dconf", ("user",))
    assert (d.uint32(IDLE), d.locked(IDLE)) == (900, True)
    for where in (d.where("value", IDLE), d.where("locked", IDLE)):
        assert where.startswith(
            "/etc/dconf/db/local (compiled, not from the keyfiles of /etc/dconf/db/local.d now: "
            + message
        )


def test_refused_earlier_duplicate_is_not_read(tmp_path: Path) -> None:
    compiled(tmp_path, LOCAL, {"/a/k": "1"})
    d = _dconf(
        tmp_path,
        "user",
        {"etc/dconf/profile/user": USER, "etc/dconf/db/local.d/00": "[a]\nk=not gvariant\nk=1\n"},
    )
    assert d.value("/a/k") == "1"


# dconf reads the compiled /etc/dconf/db/NAME only; `dconf update` (dconf 0.40) rewrites it from
# NAME.d each time it runs, whatever the files' times. Checked with dconf read/list-locks.
LOCK_DELAY = "/org/gnome/desktop/screensaver/lock-delay"


def test_keyfiles_never_compiled_are_not_in_force(tmp_path: Path) -> None:
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": "user-db:user\nsystem-db:local\n",
            f"{LOCAL}.d/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}.d/locks/00-cis": f"{IDLE}\n",
        },
    )
    assert (d.value(IDLE), d.locked(IDLE)) == (None, False)
    absent = "/etc/dconf/db/local (absent: dconf update has not been run for /etc/dconf/db/local.d)"
    assert d.where("value", IDLE) == (
        f"/etc/dconf/profile/user (not set: {absent} set no {IDLE}; /etc/dconf/db/local.d/00-cis:2 "
        "sets it to uint32 900, not compiled: /etc/dconf/db/local is absent (dconf update has not been run))"
    )
    assert d.where("locked", IDLE) == (
        f"/etc/dconf/profile/user (no lock: {absent} lock no {IDLE}; /etc/dconf/db/local.d/locks/00-cis:1 "
        "locks it, not compiled: /etc/dconf/db/local is absent (dconf update has not been run))"
    )


@pytest.mark.parametrize(
    ("in_force", "edited"), [("uint32 900", "uint32 0"), ("uint32 0", "uint32 900")]
)
def test_compiled_database_decides_over_an_edited_keyfile(
    tmp_path: Path, in_force: str, edited: str
) -> None:
    compiled(tmp_path, LOCAL, {IDLE: in_force, LOCK_DELAY: "uint32 5"})
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": USER,
            f"{LOCAL}.d/00-cis": f"[org/gnome/desktop/session]\nidle-delay={edited}\n"
            "[org/gnome/desktop/screensaver]\nlock-delay=uint32 5\n",
        },
    )
    assert d.value(IDLE) == in_force
    assert d.where("value", IDLE) == (
        f"/etc/dconf/db/local (compiled: /etc/dconf/db/local.d/00-cis:2 sets {edited}, not compiled: "
        "dconf update not run since it changed, /etc/dconf/db/local is in force)"
    )
    # where the compiled database and the keyfiles agree, the keyfile line is named
    assert d.where("value", LOCK_DELAY) == "/etc/dconf/db/local.d/00-cis:4"


def test_compiled_database_without_its_keyfiles(tmp_path: Path) -> None:
    compiled(tmp_path, LOCAL, {IDLE: "uint32 900"}, (IDLE,))
    write(tmp_path, "etc/dconf/profile/user", USER)
    d = context(tmp_path).fact("dconf", ("user",))  # local.d removed: the database stays
    assert (d.uint32(IDLE), d.locked(IDLE)) == (900, True)
    assert d.where("value", IDLE) == d.where("locked", IDLE) == "/etc/dconf/db/local"
    write(tmp_path, f"{LOCAL}.d/00", "[org/gnome/desktop/session]\nlock-enabled=true\n")
    d = context(tmp_path).fact("dconf", ("user",))  # local.d no longer sets the key
    assert (d.uint32(IDLE), d.locked(IDLE)) == (900, True)
    assert d.where("value", IDLE) == (
        f"/etc/dconf/db/local (compiled: no keyfile of /etc/dconf/db/local.d sets {IDLE} now, "
        "not compiled: dconf update not run since they changed)"
    )
    assert d.where("locked", IDLE).startswith(
        f"/etc/dconf/db/local (compiled: locks {IDLE}; no file of /etc/dconf/db/local.d/locks"
    )
    assert d.value("/org/gnome/desktop/session/lock-enabled") is None


def test_a_lock_written_but_not_compiled(tmp_path: Path) -> None:
    compiled(tmp_path, LOCAL, {IDLE: "uint32 900"})
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": USER,
            f"{LOCAL}.d/00": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}.d/locks/00": f"{IDLE}\n",
        },
    )
    assert (d.uint32(IDLE), d.locked(IDLE)) == (900, False)
    assert d.where("value", IDLE) == "/etc/dconf/db/local.d/00:2"
    assert d.where("locked", IDLE) == (
        f"/etc/dconf/profile/user (no lock: /etc/dconf/db/local, /etc/dconf/db/site (absent) lock no "
        f"{IDLE}; /etc/dconf/db/local.d/locks/00:1 locks it, not compiled: dconf update not run since "
        "it changed, /etc/dconf/db/local is in force)"
    )


def test_a_later_database_in_force_names_the_earlier_keyfile_not_compiled(tmp_path: Path) -> None:
    compiled(tmp_path, "etc/dconf/db/site", {IDLE: "uint32 0"})
    d = _dconf(
        tmp_path,
        "user",
        {
            "etc/dconf/profile/user": USER,
            f"{LOCAL}.d/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
        },
    )
    assert d.value(IDLE) == "uint32 0"
    assert d.where("value", IDLE) == (
        "/etc/dconf/db/site (/etc/dconf/db/local.d/00-cis:2 sets it to uint32 900, not compiled: "
        "/etc/dconf/db/local is absent (dconf update has not been run))"
    )


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
