"""chattr flags as the `e2fsattrs` attribute, on a real ext4 filesystem (an image made with
mkfs.ext4 and loop-mounted for the test): +i and +a are reported as `lsattr` prints them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from secpolicy import fim

KEY = fim.Key(b"f" * 32, "test key")
TOOLS = all(shutil.which(t) for t in ("mkfs.ext4", "mount", "umount", "chattr", "lsattr"))
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not TOOLS or not os.path.exists("/dev/loop-control"),
                                reason="needs root, mkfs.ext4, chattr/lsattr and loop devices to mount an ext4 image")


@pytest.fixture()
def ext4(tmp_path: Path) -> Iterator[Path]:
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["chattr", "-R", "-i", "-a", str(mnt)], check=False, capture_output=True)
        subprocess.run(["umount", str(mnt)], check=True)


def lsattr(path: Path) -> str:
    out = subprocess.run(["lsattr", "-d", str(path)], check=True, capture_output=True, text=True).stdout
    return out.split()[0]


def test_immutable_and_append_only_flags_are_reported_like_lsattr(ext4: Path, tmp_path: Path) -> None:
    srv = ext4 / "srv"
    (srv / "conf.d").mkdir(parents=True)
    for name in ("sudoers", "audit.log", "plain"):
        (srv / name).write_text(f"{name}\n")
    config = fim.config_from_dict({"paths": [{"path": "/srv", "attrs": "R"}]})
    db = tmp_path / "db"
    fim.init_baseline(config, db, ext4, KEY)
    assert fim.check(config, db, ext4, KEY).status == "clean"

    before = {p: lsattr(srv / p) for p in ("sudoers", "audit.log", "conf.d")}
    subprocess.run(["chattr", "+i", str(srv / "sudoers")], check=True)
    subprocess.run(["chattr", "+a", str(srv / "audit.log")], check=True)
    subprocess.run(["chattr", "+i", str(srv / "conf.d")], check=True)
    result = fim.check(config, db, ext4, KEY)
    flags = {e.path: c for e in result.changed for c in e.changes if c.name == "e2fsattrs"}
    assert set(flags) == {"/srv/sudoers", "/srv/audit.log", "/srv/conf.d"}
    for name in ("sudoers", "audit.log", "conf.d"):
        change = flags[f"/srv/{name}"]
        assert (change.old, change.new) == (before[name], lsattr(srv / name))
    assert flags["/srv/sudoers"].new[4] == "i" and flags["/srv/audit.log"].new[5] == "a"
    # Only the inode change time moved besides the flags: the content was not touched.
    assert {c.name for e in result.changed if e.path == "/srv/sudoers" for c in e.changes} == {"e2fsattrs", "c"}

    fim.update(config, db, ext4, KEY)
    assert fim.check(config, db, ext4, KEY).status == "clean"
    subprocess.run(["chattr", "-i", str(srv / "sudoers")], check=True)
    (entry,) = fim.check(config, db, ext4, KEY).changed
    assert entry.path == "/srv/sudoers"
    assert [c.new for c in entry.changes if c.name == "e2fsattrs"] == [lsattr(srv / "sudoers")]


@pytest.mark.skipif(shutil.which("aide") is None, reason="the aide binary is not installed (apt-get install aide)")
def test_flag_changes_agree_with_aide(ext4: Path, tmp_path: Path) -> None:
    srv = ext4 / "srv"
    srv.mkdir()
    for name in ("a", "b", "c"):
        (srv / name).write_text(name)
    conf = tmp_path / "aide.conf"
    conf.write_text(f"database_in=file:{tmp_path}/aide.db\ndatabase_out=file:{tmp_path}/aide.db.new\n"
                    f"gzip_dbout=no\nreport_url=stdout\n{srv} p+ftype+i+l+n+u+g+s+m+c+sha256+X\n")
    subprocess.run(["aide", "-c", str(conf), "--init"], check=True, capture_output=True)
    os.replace(tmp_path / "aide.db.new", tmp_path / "aide.db")
    config = fim.config_from_dict({"paths": [{"path": "/srv", "attrs": "R"}]})
    fim.init_baseline(config, tmp_path / "db", ext4, KEY)
    subprocess.run(["chattr", "+i", str(srv / "a")], check=True)
    subprocess.run(["chattr", "+a", str(srv / "b")], check=True)
    report = subprocess.run(["aide", "-c", str(conf), "--check"], capture_output=True, text=True, check=False).stdout
    aide: dict[str, tuple[str, str]] = {}
    current = None
    for line in report.splitlines():
        if line.startswith("File: "):
            current = line[len("File: "):]
        elif line.strip().startswith("E2FSAttrs") and current:
            old, new = (x.strip() for x in line.split(":", 1)[1].split("|"))
            aide[current.removeprefix(str(ext4))] = (old, new)
    ours = {e.path: (c.old, c.new) for e in fim.check(config, tmp_path / "db", ext4, KEY).changed
            for c in e.changes if c.name == "e2fsattrs"}
    assert ours == aide and set(ours) == {"/srv/a", "/srv/b"}
