"""The `dconf` fact against dconf 0.40 itself: for each tree, `dconf update` compiles its keyfile
databases (it writes nothing for a database it refuses), then, in a private mount namespace with
the tree's etc/dconf over /etc/dconf, `dconf read` gives the value in force and `dconf
list-locks` whether the key is locked, for the profiles gdm and user; the fact must say the same.
dconf reads only the compiled /etc/dconf/db/NAME: keyfiles never compiled, or edited since
`dconf update` last ran, are not in force, and the fact's evidence must say so. `gdm`'s reading of daemon.conf is compared with GLib's GKeyFile (python3-gi).
The compiled databases the CIS pack's inline tests hold (base64) are what `dconf compile` writes
from each test's own keyfiles. dconf comes from the Debian package scripts/setup.sh
--with-test-tools unpacks into the virtual environment (dconf-cli is not installed on the host)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

ORACLES = Path(sys.prefix) / "oracles"
SESSION = "/org/gnome/desktop/session/idle-delay"
LOCK_DELAY = "/org/gnome/desktop/screensaver/lock-delay"
BANNER = "/org/gnome/login-screen/banner-message-enable"
TEXT = "/org/gnome/login-screen/banner-message-text"
AUTOMOUNT = "/org/gnome/desktop/media-handling/automount"
KEYS = (SESSION, LOCK_DELAY, BANNER, TEXT, AUTOMOUNT)
GDM = "user-db:user\nsystem-db:gdm\nfile-db:/etc/dconf/compiled/greeter\n"
USER = "user-db:user\nsystem-db:local\nsystem-db:site\n"
LOCAL = "db/local.d"

# (id, files under etc/dconf, keyfile dirs under etc/dconf compiled to etc/dconf/compiled/NAME)
CASES: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    (
        "hardened",
        {
            "profile/gdm": GDM,
            "profile/user": USER,
            "db/gdm.d/01-banner": "[org/gnome/login-screen]\nbanner-message-enable=true\nbanner-message-text='Authorised'\n",
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/locks/00-cis": f"{SESSION}\n{LOCK_DELAY}\n",
        },
        (),
    ),
    (
        "wrong-group",
        {
            "profile/gdm": GDM,
            "db/gdm.d/00": "[org/gnome/desktop/screensaver]\nbanner-message-enable=true\n",
        },
        (),
    ),
    (
        "later-file-wins",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/50-x": "[org/gnome/desktop/session]\nidle-delay=uint32 0\n",
            f"{LOCAL}/.hidden": "[org/gnome/desktop/session]\nidle-delay=uint32 7\n",
        },
        (),
    ),
    (
        "duplicate-key-and-group",
        {
            "profile/user": USER,
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=uint32 5\n[a]\nb=1\n"
            "[org/gnome/desktop/session]\nidle-delay=uint32 600\n",
        },
        (),
    ),
    (
        "first-db-wins-unless-locked-below",
        {
            "profile/user": USER,
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=uint32 300\n"
            "[org/gnome/desktop/screensaver]\nlock-delay=uint32 1\n",
            "db/site.d/00": "[org/gnome/desktop/session]\nidle-delay=uint32 1800\n"
            "[org/gnome/desktop/screensaver]\nlock-delay=uint32 9\n",
            "db/site.d/locks/00": f"{SESSION}\n",
        },
        (),
    ),
    (
        "lock-below-without-value",
        {
            "profile/user": USER,
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=uint32 300\n",
            "db/site.d/locks/00": f"{SESSION}\n{AUTOMOUNT} \n# {LOCK_DELAY}\n",
        },
        (),
    ),
    (
        "no-profile",
        {
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=uint32 300\n",
            "db/gdm.d/00": "[org/gnome/login-screen]\nbanner-message-enable=true\n",
        },
        (),
    ),
    (
        "system-db-first",
        {
            "profile/user": "system-db:local\nuser-db:user\n",
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=900\n",
        },
        (),
    ),
    (
        "profile-syntax",
        {
            "profile/user": "  # comment\nsystem-db:nothere\nbogus:x\n\tuser-db:user  # mine\nsystem-db:local \n",
            f"{LOCAL}/00": "[org/gnome/desktop/media-handling]\nautomount=false\n"
            "[org/gnome/desktop/session]\nidle-delay=uint32 0x10\n",
        },
        (),
    ),
    (
        "types",
        {
            "profile/gdm": GDM,
            "db/gdm.d/00": "[org/gnome/login-screen]\nbanner-message-enable='true'\n"
            'banner-message-text="it\'s"\n',
            "profile/user": USER,
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=010\n[org/gnome/desktop/media-handling]\nautomount=[1, uint32 2]\n",
        },
        (),
    ),
    (
        "refused-value",
        {
            "profile/user": USER,
            "profile/gdm": GDM,
            f"{LOCAL}/00": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/10": "[org/gnome/desktop/screensaver]\nlock-delay=5 # minutes\n",
            "db/gdm.d/00": "[org/gnome/login-screen]\nbanner-message-enable=true\n",
        },
        (),
    ),
    (
        "debian-gdm-profile",
        {
            "/usr/share/dconf/profile/gdm": "user-db:user\nfile-db:/etc/dconf/compiled/greeter\n",
            "greeter.d/00": "[org/gnome/login-screen]\nbanner-message-enable=true\n",
            "db/gdm.d/00": "[org/gnome/login-screen]\nbanner-message-enable=false\n",
        },
        ("greeter",),
    ),
    (
        "refused-keyfile",
        {
            "profile/gdm": GDM,
            "db/gdm.d/00": "banner-message-enable=true\n[org/gnome/login-screen]\n",
        },
        (),
    ),
    (
        "refused-path",
        {
            "profile/gdm": GDM,
            "db/gdm.d/00": "[/org/gnome/login-screen]\nbanner-message-enable=true\n",
        },
        (),
    ),
    (
        "file-db",
        {
            "profile/gdm": GDM,
            "greeter.d/00": "[org/gnome/login-screen]\nbanner-message-enable=true\n"
            "banner-message-text='Hi'\n[org/gnome/desktop/session]\nidle-delay=uint32 60\n",
            "greeter.d/locks/00": f"{BANNER}\n",
            "db/gdm.d/00": "[org/gnome/login-screen]\nbanner-message-enable=false\nbanner-message-text='Bye'\n",
        },
        ("greeter",),
    ),
]


def _dconf() -> str:
    binary = ORACLES / "usr/bin/dconf"
    if not binary.exists():
        pytest.skip("dconf-cli is not unpacked by scripts/setup.sh --with-test-tools")
    if not Path("/etc/dconf").is_dir() or shutil.which("unshare") is None:
        pytest.skip("no /etc/dconf to mount a tree over, or no unshare(1)")
    return str(binary)


def _tree(tmp_path: Path, files: dict[str, str], compiled: tuple[str, ...]) -> Path:
    root = tmp_path / "root"
    for rel, text in files.items():
        p = root / rel.lstrip("/") if rel.startswith("/") else root / "etc/dconf" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "etc/dconf/db").mkdir(parents=True, exist_ok=True)
    (root / "etc/dconf/compiled").mkdir(parents=True, exist_ok=True)
    for name in compiled:
        subprocess.run(
            [
                _dconf(),
                "compile",
                str(root / "etc/dconf/compiled" / name),
                str(root / "etc/dconf" / f"{name}.d"),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return root


_SCRIPT = """
set -u
mount --bind "$TREE/etc/dconf" /etc/dconf || exit 97
if [ "$UPDATE" = 1 ]; then "$DCONF" update 2>"$TREE/update.err"; echo "update $?"; fi
for p in gdm user; do
  # a session names no profile: dconf opens "user", and without it uses user-db:user
  if [ $p = gdm ]; then export DCONF_PROFILE=gdm; else unset DCONF_PROFILE; fi
  for k in $KEYS; do
    echo "read $p $k $("$DCONF" read "$k" 2>/dev/null)"
    echo "locks $p $k $("$DCONF" list-locks "${k%/*}/" 2>/dev/null | tr '\\n' '|')"
  done
done
"""


def _asked(root: Path, update: bool = True) -> tuple[dict[tuple[str, str, str], str], str]:
    """What dconf says of each (kind, profile, key) after `dconf update` (unless not `update`),
    and what `dconf update` printed."""
    (root / "update.err").write_text("")
    env = {
        **os.environ,
        "UPDATE": "1" if update else "0",
        "TREE": str(root),
        "DCONF": _dconf(),
        "KEYS": " ".join(KEYS),
        "XDG_CONFIG_HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_DATA_DIRS": f"{root}/usr/local/share:{root}/usr/share",
    }
    env.pop("DCONF_PROFILE", None)
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: dict[tuple[str, str, str], str] = {}
    for line in done.stdout.splitlines():
        kind, rest = line.split(" ", 1)
        if kind == "update":
            out[("update", "", "")] = rest
            continue
        profile, key, said = (rest.split(" ", 2) + [""])[:3]
        out[(kind, profile, key)] = said
    return out, (root / "update.err").read_text()


def _compare(root: Path, said: dict[tuple[str, str, str], str]) -> dict[str, object]:
    """The fact agrees with dconf on every key of both profiles; returns the facts."""
    ctx = FactContext(builtin_registry(), str(root))
    facts: dict[str, object] = {}
    for profile in ("gdm", "user"):
        fact = facts[profile] = ctx.fact("dconf", (profile,))
        for key in KEYS:
            if said[("read", profile, key)].startswith(("[", "(", "<", "@")):
                with pytest.raises(EvaluationError, match="of a type secpolicy does not decode"):
                    fact.value(key)
            else:
                assert (fact.value(key) or "") == said[("read", profile, key)], (profile, key)
            locks = said[("locks", profile, key)].split("|")
            by_dconf = any(
                key == lock or key.startswith(lock) and lock.endswith("/") for lock in locks
            )
            assert fact.locked(key) == by_dconf, (profile, key, locks)
    return facts


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_dconf_fact_reads_what_dconf_reads(tmp_path: Path, case) -> None:
    _id, files, compiled = case
    root = _tree(tmp_path, files, compiled)
    said, update_err = _asked(root)
    refused = {
        line.split(":", 1)[0].rsplit("/", 1)[-1].removesuffix(".d")
        for line in update_err.splitlines()
        if ":" in line
    }
    facts = _compare(root, said)
    for name in refused:  # nothing of it is in force, and the evidence says why
        for fact in facts.values():
            if f"system-db:{name}" in fact.databases:  # type: ignore[attr-defined]
                where = fact.where("value", BANNER if name == "gdm" else SESSION)  # type: ignore[attr-defined]
                assert f"/etc/dconf/db/{name} (absent: dconf update refuses" in where
    assert (said[("update", "", "")] == "0") == (not refused)


# (id, files under etc/dconf, run `dconf update` first, edits after it (None removes), run it
# again, what the evidence of /org/gnome/desktop/session/idle-delay for the user says)
STALE = "dconf update not run since"
LATER: list[tuple[str, dict[str, str], bool, dict[str, str | None], bool, str]] = [
    (
        "never-compiled",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/locks/00-cis": f"{SESSION}\n",
        },
        False,
        {},
        False,
        "/etc/dconf/db/local (absent: dconf update has not been run for /etc/dconf/db/local.d)",
    ),
    (
        "keyfile-edited-after-update",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
        },
        True,
        {f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 0\n"},
        False,
        f"/etc/dconf/db/local (compiled: /etc/dconf/db/local.d/00-cis:2 sets uint32 0, not compiled: {STALE}",
    ),
    (
        "edited-with-an-older-mtime-then-updated",  # dconf update rewrites whatever the times
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
        },
        True,
        {f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 0\n"},
        True,
        "/etc/dconf/db/local.d/00-cis:2",
    ),
    (
        "keyfile-removed-after-update",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/10-other": "[org/gnome/desktop/media-handling]\nautomount=false\n",
        },
        True,
        {f"{LOCAL}/00-cis": None},
        False,
        f"/etc/dconf/db/local (compiled: no keyfile of /etc/dconf/db/local.d sets {SESSION} now",
    ),
    (
        "directory-removed-after-update",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/locks/00-cis": f"{SESSION}\n",
        },
        True,
        {LOCAL: None},
        True,
        "/etc/dconf/db/local",
    ),
    (
        "lock-added-after-update",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
        },
        True,
        {f"{LOCAL}/locks/00-cis": f"{SESSION}\n{AUTOMOUNT}\n"},
        False,
        "/etc/dconf/db/local.d/00-cis:2",
    ),
    (
        "lock-removed-after-update",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
            f"{LOCAL}/locks/00-cis": f"{SESSION}\n",
        },
        True,
        {f"{LOCAL}/locks/00-cis": None},
        False,
        "/etc/dconf/db/local.d/00-cis:2",
    ),
    (
        "refused-after-update-keeps-the-old-database",
        {
            "profile/user": USER,
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n",
        },
        True,
        {
            f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 0\n",
            f"{LOCAL}/10-x": "[org/gnome/desktop/screensaver]\nlock-delay=5 # minutes\n",
        },
        True,
        (
            "/etc/dconf/db/local (compiled, not from the keyfiles of /etc/dconf/db/local.d now: "
            "dconf update refuses /etc/dconf/db/local.d/10-x:2"
        ),
    ),
    (
        "a-later-database-in-force",
        {
            "profile/user": USER,
            "db/site.d/00": "[org/gnome/desktop/session]\nidle-delay=uint32 0\n",
        },
        True,
        {f"{LOCAL}/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n"},
        False,
        (
            "/etc/dconf/db/site.d/00:2 (/etc/dconf/db/local.d/00-cis:2 sets it to uint32 900, not "
            "compiled: /etc/dconf/db/local is absent"
        ),
    ),
]


@pytest.mark.parametrize("case", LATER, ids=[c[0] for c in LATER])
def test_dconf_reads_only_what_dconf_update_compiled(tmp_path: Path, case) -> None:
    _id, files, first, edits, again, evidence = case
    root = _tree(tmp_path, files, ())
    if first:
        _asked(root)
    for rel, text in edits.items():
        p = root / "etc/dconf" / rel
        if text is None:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.utime(p, (946684800, 946684800))  # 2000-01-01: older than any compiled database
        os.utime(p.parent, (946684800, 946684800))
    said, _err = _asked(root, update=again)
    facts = _compare(root, said)
    assert evidence in facts["user"].where("value", SESSION)  # type: ignore[attr-defined]


GKEYFILE = """
import sys
from gi.repository import GLib
kf = GLib.KeyFile()
try:
    text = sys.stdin.read()
    kf.load_from_data(text, len(text.encode()), GLib.KeyFileFlags.NONE)
except GLib.Error:
    print("refused")
    raise SystemExit
try:
    print("value " + kf.get_value("xdmcp", "Enable"))
except GLib.Error:
    print("unset")
"""

DAEMON_CONFS = [
    "[xdmcp]\nEnable=true\n",
    "[xdmcp]\nEnable=true\nEnable=false\n",
    "[xdmcp]\nEnable=false\n[daemon]\n[xdmcp]\nEnable=true\n",
    "[xdmcp]\nEnable = true  \n",
    "[xdmcp] \n  Enable=TRUE\r\n",
    "[XDMCP]\nEnable=true\n",
    "[xdmcp]\nenable=true\n",
    "[xdmcp]\n;Enable=true\n",
    "Enable=true\n[xdmcp]\n",
    "[xdmcp]\n# Enable=true\nEnable=1 \n",
    "[xdmcp\nEnable=true\n",
]


@pytest.mark.parametrize("conf", DAEMON_CONFS)
def test_gdm_reads_daemon_conf_as_gkeyfile(tmp_path: Path, conf: str) -> None:
    python = "/usr/bin/python3"
    probe = (
        subprocess.run([python, "-c", "import gi"], capture_output=True, check=False)
        if os.path.exists(python)
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("no python3-gi (GLib's GKeyFile) on this machine")
    said = subprocess.run(
        [python, "-c", GKEYFILE], input=conf, capture_output=True, text=True, timeout=30, check=True
    ).stdout.rstrip("\n")
    (tmp_path / "etc/gdm3").mkdir(parents=True)
    (tmp_path / "etc/gdm3/daemon.conf").write_text(conf)
    ctx = FactContext(builtin_registry(), str(tmp_path))
    if said == "refused":
        with pytest.raises(EvaluationError, match="GDM cannot read"):
            ctx.fact("gdm", ())
        return
    raw = said.removeprefix("value ") if said != "unset" else None
    enabled = raw is not None and (
        raw.lower() == "true" or raw == "1"
    )  # gdm_settings_parse_value_as_boolean
    assert ctx.fact("gdm", ()).xdmcp_enabled == enabled


# Inline tests of the CIS pack hold compiled databases as base64 (`/etc/dconf/db/NAME`): each
# must be what `dconf compile` writes from that test's own keyfiles of NAME.d, except a test
# whose database was compiled before its keyfiles were edited. Those are listed here with the
# keyfiles as they were when compiled (the test's name says "after dconf update").
POLICY = Path(__file__).resolve().parents[2] / "policies/cis/1-initial-setup.yaml"
COMPILED_BEFORE_AN_EDIT: dict[tuple[str, str], dict[str, str]] = {
    (
        "cis-1.7.4-gdm-screen-lock-idle",
        "keyfile edited after dconf update (db compiled from idle-delay=uint32 900): the compiled value is in force",
    ): {
        "/etc/dconf/db/local.d/00-cis": "[org/gnome/desktop/session]\nidle-delay=uint32 900\n"
        "[org/gnome/desktop/screensaver]\nlock-delay=uint32 5\n",
    },
}


def _compiler() -> str:
    binary = ORACLES / "usr/bin/dconf"
    if not binary.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("dconf-cli is not unpacked: run scripts/setup.sh --with-test-tools")
        pytest.skip("dconf-cli is not unpacked by scripts/setup.sh --with-test-tools")
    return str(binary)


def _compiled_in_tests() -> list[tuple[str, str, str, dict[str, object]]]:
    """(rule id, test name, NAME, the test's files) for each base64 /etc/dconf/db/NAME."""
    out = []
    for rule in yaml.safe_load(POLICY.read_text())["rules"]:
        for test in rule.get("tests") or ():
            files = test.get("files") or {}
            for path, spec in files.items():
                name = path.removeprefix("/etc/dconf/db/")
                if name != path and "/" not in name and isinstance(spec, dict) and "base64" in spec:
                    out.append((rule["id"], test["name"], name, files))
    return out


COMPILED_IN_TESTS = _compiled_in_tests()


def test_the_pack_holds_compiled_databases_and_every_edit_case_is_one_of_them() -> None:
    controls = {rule.split("-")[1] for rule, _test, _name, _files in COMPILED_IN_TESTS}
    assert {f"1.7.{i}" for i in range(2, 10)} <= controls
    tests = {(rule, test) for rule, test, _name, _files in COMPILED_IN_TESTS}
    assert set(COMPILED_BEFORE_AN_EDIT) <= tests


@pytest.mark.parametrize(
    "case", COMPILED_IN_TESTS, ids=[f"{c[0]}:{c[1][:40]}:{c[2]}" for c in COMPILED_IN_TESTS]
)
def test_compiled_databases_in_the_pack_are_what_dconf_compile_writes(tmp_path: Path, case) -> None:
    rule, test, name, files = case
    prefix = f"/etc/dconf/db/{name}.d/"
    keyfiles = {p: s for p, s in files.items() if p.startswith(prefix)}
    stated = COMPILED_BEFORE_AN_EDIT.get((rule, test))
    if stated is not None:  # compiled from other keyfiles: they differ from the test's own
        assert any(keyfiles.get(p) != text for p, text in stated.items())
        keyfiles = {**keyfiles, **stated}
    source = tmp_path / f"{name}.d"
    source.mkdir()
    for path, spec in keyfiles.items():
        p = source / path.removeprefix(prefix)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(spec if isinstance(spec, str) else spec["content"])  # type: ignore[index]
    subprocess.run(
        [_compiler(), "compile", str(tmp_path / name), str(source)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    held = base64.b64decode(files[f"/etc/dconf/db/{name}"]["base64"])  # type: ignore[index]
    assert held == (tmp_path / name).read_bytes()
