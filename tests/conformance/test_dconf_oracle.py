"""The `dconf` fact against dconf 0.40 itself: for each tree, `dconf update` compiles its keyfile
databases (a database it refuses must be an error of every profile naming it), then, in a private
mount namespace with the tree's etc/dconf over /etc/dconf, `dconf read` gives the value in force
and `dconf list-locks` whether the key is locked, for the profiles gdm and user; the fact must
say the same. `gdm`'s reading of daemon.conf is compared with GLib's GKeyFile (python3-gi).
dconf comes from the Debian package scripts/setup.sh --with-test-tools unpacks into the virtual
environment (dconf-cli is not installed on the host)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
"$DCONF" update 2>"$TREE/update.err"; echo "update $?"
for p in gdm user; do
  # a session names no profile: dconf opens "user", and without it uses user-db:user
  if [ $p = gdm ]; then export DCONF_PROFILE=gdm; else unset DCONF_PROFILE; fi
  for k in $KEYS; do
    echo "read $p $k $("$DCONF" read "$k" 2>/dev/null)"
    echo "locks $p $k $("$DCONF" list-locks "${k%/*}/" 2>/dev/null | tr '\\n' '|')"
  done
done
"""


def _asked(root: Path) -> tuple[dict[tuple[str, str, str], str], str]:
    """What dconf says of each (kind, profile, key), and what `dconf update` printed."""
    env = {
        **os.environ,
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
    ctx = FactContext(builtin_registry(), str(root))
    for profile in ("gdm", "user"):
        text = "".join(p.read_text() for p in root.glob(f"**/dconf/profile/{profile}"))
        named = {
            line.split("#")[0].strip().removeprefix("system-db:") for line in text.splitlines()
        }
        if refused & named:
            with pytest.raises(EvaluationError, match="dconf update refuses"):
                ctx.fact("dconf", (profile,))
            continue
        fact = ctx.fact("dconf", (profile,))
        for key in KEYS:
            assert (fact.value(key) or "") == said[("read", profile, key)], (profile, key)
            locks = said[("locks", profile, key)].split("|")
            by_dconf = any(
                key == lock or key.startswith(lock) and lock.endswith("/") for lock in locks
            )
            assert fact.locked(key) == by_dconf, (profile, key, locks)
    assert (said[("update", "", "")] == "0") == (not refused)


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
