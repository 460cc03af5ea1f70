"""An attacker racing the scan: a parent directory swapped with a symlink to a decoy while
`update` and `check` run never gets a decoy's attributes sealed or a change hidden; names
like the baseline's temporary files hide nothing; trees deeper than PATH_MAX are watched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Self

from secpolicy import fim
from secpolicy.fim import record as R
from secpolicy.fim.store import Baseline

KEY = fim.Key(b"r" * 32, "test key")
FILES = 40

# Swaps two paths with renameat2(RENAME_EXCHANGE) as fast as it can until told to stop,
# and always leaves them as it found them: both names exist at every instant.
SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b, stop = (x.encode() for x in sys.argv[1:4])
n = 0
sys.stdout.write("started\n"); sys.stdout.flush()
while not os.path.exists(stop) or n % 2:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
    n += 1
print(n)
"""


def _tree(tmp_path: Path, real_xattr: bytes, decoy_xattr: bytes) -> tuple[fim.FimConfig, Path, Path, Path]:
    """root/w/a/f* (real) and, outside the watched tree, root/x/s: a symlink to root/decoy,
    whose f* differ from the real ones in xattr, mode and content."""
    root = tmp_path / "root"
    real = root / "w" / "a"
    decoy = root / "decoy"
    real.mkdir(parents=True)
    decoy.mkdir()
    (root / "x").mkdir()
    for i in range(FILES):
        f = real / f"f{i:02d}"
        f.write_bytes(b"real content\n")
        os.chmod(f, 0o644)
        os.setxattr(f, "user.origin", real_xattr)
        g = decoy / f"f{i:02d}"
        g.write_bytes(b"DECOY CONTENT\n")
        os.chmod(g, 0o600)
        os.setxattr(g, "user.origin", decoy_xattr)
    os.symlink(decoy, root / "x" / "s")
    config = fim.config_from_dict({"paths": [{"path": "/w", "attrs": "R"}], "workers": 2})
    return config, root, real, root / "x" / "s"


class _Swapping:
    def __init__(self, a: Path, b: Path, stop: Path) -> None:
        self.stop = stop
        self.proc = subprocess.Popen([sys.executable, "-c", SWAPPER, str(a), str(b), str(stop)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "started\n"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.touch()
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0
        self.swaps = int(out)


def _sealed(db: Path) -> dict[str, R.Record]:
    with Baseline(str(db), KEY) as b:
        return {fim_key: R.unpack(r) for fim_key, r in ((os.fsdecode(k.replace(b"\0", b"/")), r) for k, r in b.rows())}


def test_directory_swapped_during_update_never_seals_a_decoy(tmp_path: Path) -> None:
    config, root, real, link = _tree(tmp_path, b"real", b"decoy")
    db = tmp_path / "db"
    fim.init_baseline(config, db, root, KEY)
    decoy_digest = fim_digest(b"DECOY CONTENT\n")
    updates = swapped_seen = 0
    with _Swapping(real, link, tmp_path / "stop") as swapping:
        for _ in range(40):
            up = fim.update(config, db, root, KEY)
            updates += 1
            swapped_seen += bool(up.check.errors or up.check.changed or up.check.removed)
            for path, rec in _sealed(db).items():
                if not path.startswith("/w/a/"):
                    continue
                assert dict(rec.xattrs).get("user.origin") != b"decoy", (path, updates)
                assert stat_mode(rec) != 0o600 and rec.digest != decoy_digest, (path, updates)
    assert swapping.swaps > 0
    # The swapping was seen (the walk met the symlink or a replaced directory), not missed.
    assert swapped_seen > 0
    # Once the directory is back, every file is sealed with its real attributes.
    fim.update(config, db, root, KEY)
    sealed = _sealed(db)
    for i in range(FILES):
        rec = sealed[f"/w/a/f{i:02d}"]
        assert dict(rec.xattrs)["user.origin"] == b"real" and stat_mode(rec) == 0o644


def test_directory_swapped_during_check_never_hides_a_change(tmp_path: Path) -> None:
    # Sealed as "good"; then the real files get "evil" (ctime moves) and the decoy shows
    # "good": a check that read xattrs through the swapped path would report only `c`.
    config, root, real, link = _tree(tmp_path, b"good", b"good")
    db = tmp_path / "db"
    fim.init_baseline(config, db, root, KEY)
    for i in range(FILES):
        os.setxattr(real / f"f{i:02d}", "user.origin", b"evil")
    with _Swapping(real, link, tmp_path / "stop"):
        for n in range(40):
            result = fim.check(config, db, root, KEY, record=False)
            assert result.status != "clean", n
            for e in result.changed:
                if e.path.startswith("/w/a/f"):
                    names = {c.name: c.new for c in e.changes}
                    assert names.get("xattrs") == "user.origin=evil", (n, e)
            reported = {e.path for e in result.changed} | {e.path for e in result.errors}
            # Each real file's change is reported, or its directory could not be read.
            assert all(f"/w/a/f{i:02d}" in reported for i in range(FILES)) or "/w/a" in reported, (n, result)


def fim_digest(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()


def stat_mode(rec: R.Record) -> int:
    return rec.mode & 0o7777


def test_names_like_the_baseline_temporaries_hide_nothing(tmp_path: Path) -> None:
    root = tmp_path / "r"
    var = root / "var"
    var.mkdir(parents=True)
    (var / "f").write_text("x")
    config = fim.config_from_dict({"paths": [{"path": "/var", "attrs": "R"}]})
    db = var / "fim.db"
    fim.init_baseline(config, db, root, KEY)
    hidden = var / ".fim.db.tmp-x"
    hidden.mkdir()
    (hidden / "backdoor").write_bytes(b"\x7fELF")
    os.chmod(hidden / "backdoor", 0o4755)
    (var / "fim.db.prev").write_bytes(b"\x7fELF")  # a setuid program wearing .prev's name
    os.chmod(var / "fim.db.prev", 0o4755)
    result = fim.check(config, db, root, KEY)
    assert {e.path for e in result.added} == {"/var/.fim.db.tmp-x", "/var/.fim.db.tmp-x/backdoor",
                                              "/var/fim.db.prev"}
    # And a new baseline records them (only this process's own temporary file is skipped).
    up = fim.update(config, db, root, KEY)
    assert {e.path for e in up.check.added} >= {"/var/.fim.db.tmp-x/backdoor"}
    sealed = _sealed(db)
    assert stat_mode(sealed["/var/.fim.db.tmp-x/backdoor"]) == 0o4755
    assert not any(p.startswith("/var/.fim.db.tmp-") and p != "/var/.fim.db.tmp-x" and "/backdoor" not in p
                   for p in sealed)
    assert fim.check(config, db, root, KEY).added == ()


def _mkdir_deep(base: Path, levels: int, name: str) -> list[str]:
    """levels nested directories, made relative to descriptors (the path soon exceeds
    PATH_MAX); returns the components."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("deep.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"setting = 1\n")
        os.close(wfd)
    finally:
        os.close(fd)
    return [name] * levels


def _write_deep(base: Path, parts: list[str], data: bytes) -> None:
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for p in parts:
            nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("deep.conf", os.O_WRONLY | os.O_TRUNC, dir_fd=fd)
        os.write(wfd, data)
        os.close(wfd)
    finally:
        os.close(fd)


def test_paths_longer_than_path_max_are_watched(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "srv").mkdir(parents=True)
    parts = _mkdir_deep(root / "srv", 30, "d" * 200)
    deep_path = "/srv/" + "/".join(parts) + "/deep.conf"
    assert len(str(root) + deep_path) > os.pathconf("/", "PC_PATH_MAX")
    config = fim.config_from_dict({"paths": [{"path": "/srv", "attrs": "R"}]})
    db = tmp_path / "db"
    s = fim.init_baseline(config, db, root, KEY)
    assert s.errors == () and s.entries == 32 and s.hashed == 1
    assert fim.check(config, db, root, KEY).status == "clean"
    _write_deep(root / "srv", parts, b"setting = 2\n")
    result = fim.check(config, db, root, KEY)
    assert result.errors == ()
    assert [e.path for e in result.changed if e.path.endswith("deep.conf")] == [deep_path]
    assert "sha256" in {c.name for e in result.changed if e.path == deep_path for c in e.changes}
    fim.update(config, db, root, KEY)
    assert fim.check(config, db, root, KEY).status == "clean"
    # Live re-checks reach it too.
    os.utime(root / "srv", None)
    assert fim.recheck_paths(config, db, root, KEY, [deep_path]).changed == ()
