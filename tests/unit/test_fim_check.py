"""FIM init/check/update on real trees: every kind of change AIDE detects is reported with
exactly the attributes that changed, and nothing else is."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from secpolicy import fim
from secpolicy.errors import InputError, IntegrityError
from secpolicy.fim import scan as fim_scan
from secpolicy.fim.hasher import read_regular

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fim"
_spec = importlib.util.spec_from_file_location("fimtree", FIXTURES / "fimtree.py")
assert _spec and _spec.loader
fimtree = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fimtree)

KEY = fim.Key(b"k" * 32, "test key")


def changed_map(result: fim.CheckResult) -> dict[str, set[str]]:
    return {e.path: {c.name for c in e.changes} for e in result.changed}


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[fim.FimConfig, Path, Path]:
    root = tmp_path / "root"
    fimtree.build(root)
    cfg_path = tmp_path / "fim.yaml"
    cfg_path.write_text(fimtree.CONFIG)
    return fim.load_config(cfg_path), root, tmp_path / "base.db"


def test_every_kind_of_change_is_reported_with_exactly_its_attributes(tree):
    config, root, db = tree
    summary = fim.init_baseline(config, db, root, KEY)
    assert summary.errors == ()
    clean = fim.check(config, db, root, KEY)
    assert clean.status == "clean" and not clean.errors

    fimtree.mutate(root)
    result = fim.check(config, db, root, KEY)

    assert changed_map(result) == fimtree.EXPECTED_CHANGED
    assert {e.path for e in result.added} == fimtree.EXPECTED_ADDED
    assert {e.path for e in result.removed} == fimtree.EXPECTED_REMOVED
    assert result.errors == ()
    assert result.status == "changed"

    # A full re-hash finds the same, no more.
    full = fim.check(config, db, root, KEY, full=True)
    assert changed_map(full) == fimtree.EXPECTED_CHANGED
    assert {e.path for e in full.added} == fimtree.EXPECTED_ADDED


def test_old_and_new_values_are_reported(tree):
    config, root, db = tree
    fim.init_baseline(config, db, root, KEY)
    fimtree.mutate(root)
    result = fim.check(config, db, root, KEY)
    by_path = {e.path: {c.name: (c.old, c.new) for c in e.changes} for e in result.changed}
    assert by_path["/etc/perms.txt"]["p"] == ("0644", "0600")
    assert by_path["/etc/owner.txt"]["u"] == (0, 1234)
    assert by_path["/etc/lnk"]["l"] == ("content.txt", "perms.txt")
    assert by_path["/etc/typechg"]["ftype"] == ("file", "directory")
    assert by_path["/etc/xattr.txt"]["xattrs"] == (None, "user.fim-test=1")
    assert by_path["/log/trunc.log"]["S"] == (21, 7)
    old_hash, new_hash = by_path["/etc/content.txt"]["sha256"]
    assert len(old_hash) == 64 and old_hash != new_hash
    assert by_path["/etc/cap.bin"]["caps"][0] is None
    assert by_path["/etc/cap.bin"]["caps"][1] == "security.capability=0x" + fimtree.CAP_BLOB.hex()


def test_growing_log_append_is_accepted_but_a_rewrite_is_not(tree):
    config, root, db = tree
    fim.init_baseline(config, db, root, KEY)
    with open(root / "log" / "quiet.log", "ab") as f:
        f.write(b"more\n" * 1000)
    assert fim.check(config, db, root, KEY).status == "clean"
    with open(root / "log" / "quiet.log", "r+b") as f:
        f.write(b"X")
    assert changed_map(fim.check(config, db, root, KEY)) == {"/log/quiet.log": {"sha256"}}


def test_update_accepts_changes_and_keeps_previous(tree):
    config, root, db = tree
    fim.init_baseline(config, db, root, KEY)
    fimtree.mutate(root)
    up = fim.update(config, db, root, KEY)
    assert changed_map(up.check) == fimtree.EXPECTED_CHANGED
    assert up.baseline.generation == 2
    assert up.previous == str(db) + ".prev"
    after = fim.check(config, db, root, KEY)
    assert after.status == "clean", after.to_dict()
    # The previous generation is sealed as superseded: putting it back is refused.
    os.replace(str(db) + ".prev", db)
    with pytest.raises(IntegrityError, match="superseded"):
        fim.check(config, db, root, KEY)


def test_check_rehashes_only_entries_whose_inode_changed(tree):
    config, root, db = tree
    fim.init_baseline(config, db, root, KEY)
    assert fim.check(config, db, root, KEY).hashed == 0
    os.chmod(root / "etc" / "perms.txt", 0o600)
    assert fim.check(config, db, root, KEY).hashed == 1
    full = fim.check(config, db, root, KEY, full=True)
    regular = sum(1 for p in root.rglob("*") if p.is_file() and not p.is_symlink() and stat.S_ISREG(p.lstat().st_mode))
    assert full.hashed == regular


def test_include_exclude_and_nested_rules(tmp_path: Path):
    root = tmp_path / "r"
    (root / "srv" / "cache").mkdir(parents=True)
    (root / "srv" / "keep").mkdir()
    for rel in ("srv/a.conf", "srv/a.tmp", "srv/cache/x.conf", "srv/keep/b.conf", "srv/keep/b.txt"):
        (root / rel).write_text(rel)
    config = fim.config_from_dict({
        "paths": [
            {"path": "/srv", "attrs": "p+sha256", "exclude": ["*.tmp", "/srv/cache"]},
            {"path": "/srv/keep", "attrs": "sha256", "include": ["*.conf"]},
        ]
    })
    db = tmp_path / "db"
    summary = fim.init_baseline(config, db, root, KEY)
    # /srv, /srv/a.conf and /srv/keep/b.conf: /srv/keep itself is not *.conf, but is entered.
    assert summary.entries == 3
    for rel in ("srv/a.tmp", "srv/cache/x.conf", "srv/keep/b.txt"):
        (root / rel).write_text("changed")
    (root / "srv" / "cache" / "new.conf").write_text("new")
    assert fim.check(config, db, root, KEY).status == "clean"
    (root / "srv" / "keep" / "b.conf").write_text("changed")
    assert changed_map(fim.check(config, db, root, KEY)) == {"/srv/keep/b.conf": {"sha256"}}


def test_non_utf8_names_round_trip_and_display_escaped(tree):
    config, root, db = tree
    fim.init_baseline(config, db, root, KEY)
    with open(os.path.join(os.fsencode(root / "etc"), fimtree.BAD), "wb") as f:
        f.write(b"X" * 3)
    result = fim.check(config, db, root, KEY)
    bad = os.fsdecode(b"/etc/" + fimtree.BAD)
    assert bad in changed_map(result)
    shown = [e["path"] for e in result.to_dict()["changed"]]
    assert "/etc/bad\\xffname" in shown


def test_hashing_in_worker_processes_matches_inline(tmp_path: Path, monkeypatch):
    root = tmp_path / "r"
    (root / "d").mkdir(parents=True)
    for i in range(700):
        (root / "d" / f"f{i:04d}").write_bytes(os.urandom(64) * (i % 7))
    config = fim.config_from_dict({"paths": [{"path": "/d", "attrs": "R"}], "workers": 2})
    db = tmp_path / "db"
    # 700 entries > one batch: the pool of hashing processes is used.
    s = fim.init_baseline(config, db, root, KEY)
    assert s.hashed == 700 and not s.errors
    monkeypatch.setattr(fim_scan, "BATCH_ITEMS", 10_000)
    assert fim.check(config, db, root, KEY, full=True).status == "clean"
    (root / "d" / "f0500").write_bytes(b"changed")
    monkeypatch.setattr(fim_scan, "BATCH_ITEMS", 64)
    r = fim.check(config, db, root, KEY, full=True)
    assert changed_map(r) == {"/d/f0500": {"s", "m", "c", "sha256"}} or changed_map(r) == {"/d/f0500": {"s", "c", "sha256"}}


def test_many_batches_in_flight_finish_in_key_order(tmp_path: Path, monkeypatch):
    """Tiny batches and window: results come back from two workers while a big file holds
    up the head of the queue; the baseline must equal one hashed inline, row for row."""
    root = tmp_path / "r"
    for d in ("a", "a/sub", "b", "c"):
        (root / "w" / d).mkdir(parents=True)
    (root / "w" / "a" / "big").write_bytes(os.urandom(3 << 20))
    for i in range(120):
        d = ("a", "a/sub", "b", "c")[i % 4]
        (root / "w" / d / f"f{i:03d}").write_bytes(os.urandom(i * 37))
    os.symlink("f001", root / "w" / "a" / "link")
    config = fim.config_from_dict({"paths": [{"path": "/w", "attrs": "R"}], "workers": 2})

    def rows(db: Path) -> list[tuple[bytes, bytes]]:
        con = sqlite3.connect(db)
        try:
            return con.execute("SELECT k, r FROM entries ORDER BY k").fetchall()
        finally:
            con.close()

    inline = fim.init_baseline(config, tmp_path / "inline.db", root, KEY)
    monkeypatch.setattr(fim_scan, "BATCH_ITEMS", 5)
    monkeypatch.setattr(fim_scan, "BATCH_BYTES", 1 << 20)
    monkeypatch.setattr(fim_scan, "MAX_PENDING", 12)
    pooled = fim.init_baseline(config, tmp_path / "pooled.db", root, KEY)
    assert (pooled.entries, pooled.hashed, pooled.errors) == (inline.entries, inline.hashed, ()) == (127, 121, ())
    assert rows(tmp_path / "pooled.db") == rows(tmp_path / "inline.db")

    assert fim.check(config, tmp_path / "pooled.db", root, KEY, full=True).status == "clean"
    (root / "w" / "c" / "f119").write_bytes(b"changed")
    r = fim.check(config, tmp_path / "pooled.db", root, KEY, full=True)
    assert set(changed_map(r)) == {"/w/c/f119"} and "sha256" in changed_map(r)["/w/c/f119"]


def test_blake3_config(tmp_path: Path):
    root = tmp_path / "r"
    (root / "x").mkdir(parents=True)
    (root / "x" / "f").write_bytes(b"abc")
    config = fim.config_from_dict({"hash": "blake3", "paths": [{"path": "/x", "attrs": "R-m-c"}]})
    db = tmp_path / "db"
    fim.init_baseline(config, db, root, KEY)
    (root / "x" / "f").write_bytes(b"abd")
    import blake3

    r = fim.check(config, db, root, KEY)
    assert changed_map(r) == {"/x/f": {"blake3"}}
    assert r.changed[0].changes[0].old == blake3.blake3(b"abc").hexdigest()


def test_reads_refuse_fifos_symlinks_replacements_and_moving_targets(tmp_path: Path):
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        f = tmp_path / "f"
        f.write_bytes(b"data")
        st = os.lstat(f)
        _digest, _, st9, err, *_ = read_regular(d, "f", st.st_dev, st.st_ino, "sha256")
        assert err is None and st9 is not None and st9[5] == 4
        # Replaced by another inode after the walk saw it.
        (tmp_path / "f2").write_bytes(b"data")
        os.rename(tmp_path / "f2", f)
        assert read_regular(d, "f", st.st_dev, st.st_ino, "sha256")[3] == "replaced while being scanned"
        # Replaced by a FIFO: opened non-blocking, never read.
        os.mkfifo(tmp_path / "fifo")
        fst = os.lstat(tmp_path / "fifo")
        assert read_regular(d, "fifo", fst.st_dev, fst.st_ino, "sha256")[3] == "replaced while being scanned"
        # Replaced by a symlink: O_NOFOLLOW refuses it.
        os.symlink(f, tmp_path / "link")
        assert "symbolic link" in read_regular(d, "link", st.st_dev, st.st_ino, "sha256")[3]
        # Vanished.
        assert read_regular(d, "gone", 1, 1, "sha256")[3] == "vanished while being scanned"
    finally:
        os.close(d)
    # A file whose content never matches its size (procfs): changed while being hashed.
    p = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pst = os.stat("status", dir_fd=p)
        err = read_regular(p, "status", pst.st_dev, pst.st_ino, "sha256")[3]
        assert err is not None and err.startswith("changed while being hashed")
    finally:
        os.close(p)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to take the identity of nobody")
def test_unreadable_entries_are_errors_not_removals():
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fim-unreadable-"))
    try:
        base.chmod(0o755)
        root = base / "root"
        (root / "w" / "secret").mkdir(parents=True)
        (root / "w" / "secret" / "inner").write_text("x")
        (root / "w" / "locked").write_text("x")
        (root / "w" / "open").write_text("x")
        config = fim.config_from_dict({"paths": [{"path": "/w", "attrs": "R"}]})
        db = base / "db"
        fim.init_baseline(config, db, root, KEY)
        os.chmod(db, 0o644)
        os.chmod(root / "w" / "secret", 0o700)
        os.chmod(root / "w" / "locked", 0o600)  # its ctime moves: the check re-reads it
        os.setegid(65534)
        os.seteuid(65534)
        try:
            result = fim.check(config, db, root, KEY, record=False)
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert result.removed == ()  # /w/secret/inner could not be seen: not "removed"
        errors = {e.path: e.message for e in result.errors}
        assert set(errors) == {"/w/secret", "/w/locked"}
        assert errors["/w/secret"].startswith("cannot open directory")
        assert errors["/w/locked"].startswith("cannot open")
        assert changed_map(result) == {"/w/secret": {"p", "c"}, "/w/locked": {"p", "c"}}
        assert result.status == "changed"
    finally:
        shutil.rmtree(base)


def test_config_mismatch_and_root_mismatch_are_refused(tree, tmp_path: Path):
    config, root, db = tree
    fim.init_baseline(config, db, root, KEY)
    other = fim.config_from_dict({"name": "fixture", "paths": [{"path": "/etc", "attrs": "R"}]})
    with pytest.raises(IntegrityError, match="different configuration"):
        fim.check(other, db, root, KEY)
    other_root = tmp_path / "other"
    other_root.mkdir()
    with pytest.raises(IntegrityError, match="made for root"):
        fim.check(config, db, other_root, KEY)
    with pytest.raises(InputError, match="already exists"):
        fim.init_baseline(config, db, root, KEY)


def test_baseline_inside_watched_tree_does_not_report_itself(tmp_path: Path):
    root = tmp_path / "r"
    (root / "var").mkdir(parents=True)
    (root / "var" / "f").write_text("x")
    config = fim.config_from_dict({"paths": [{"path": "/var", "attrs": "R"}]})
    db = root / "var" / "fim.db"
    fim.init_baseline(config, db, root, KEY)
    fim.check(config, db, root, KEY)  # records itself into the db (and its journal)
    second = fim.check(config, db, root, KEY)
    assert second.entries == 2
    # The database files are never entries; the directory holding them does change.
    assert set(changed_map(second)) <= {"/var"}
    assert not second.added and not second.removed


def test_other_filesystems_are_not_entered(tmp_path: Path):
    subs = [m.split()[4] for m in Path("/proc/self/mountinfo").read_text().splitlines()]
    if "/dev/shm" not in subs and "/dev/pts" not in subs:
        pytest.skip("no filesystem mounted under /dev here")
    config = fim.config_from_dict({"paths": [{"path": "/dev", "attrs": "p+u+g+ftype"}]})
    db = tmp_path / "db"
    s = fim.init_baseline(config, db, "/", KEY)
    noted = {n.path for n in s.notes if "another filesystem" in n.message}
    assert noted & {"/dev/shm", "/dev/pts"}


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root (CAP_MKNOD)")
def test_a_device_swapped_for_another_at_the_same_path_is_reported(tmp_path: Path) -> None:
    """/dev/null (1:3) replaced by /dev/mem (1:1) at the same path was a clean `--full`
    check: the device number is now recorded and compared wherever ftype is (R, L, >), or when
    `rdev` is listed alone."""
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev" / "disk", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    for attrs in ("R", "L", ">", "p+ftype", "p+rdev"):
        config = fim.config_from_dict({"paths": [{"path": "/dev", "attrs": attrs}]})
        db = tmp_path / f"{attrs}.db"
        fim.init_baseline(config, db, root, KEY)
        (root / "dev" / "null").unlink()
        os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 1))
        (root / "dev" / "disk").unlink()
        os.mknod(root / "dev" / "disk", 0o660 | stat.S_IFBLK, os.makedev(7, 1))
        result = fim.check(config, db, root, KEY, full=True, record=False)
        changes = {e.path: {c.name: (c.old, c.new) for c in e.changes if c.name == "rdev"} for e in result.changed}
        assert changes["/dev/null"] == {"rdev": ("1:3", "1:1")}, attrs
        assert changes["/dev/disk"] == {"rdev": ("7:0", "7:1")}, attrs
        (root / "dev" / "null").unlink()
        os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        (root / "dev" / "disk").unlink()
        os.mknod(root / "dev" / "disk", 0o660 | stat.S_IFBLK, os.makedev(7, 0))


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root (CAP_MKNOD)")
def test_a_device_recorded_without_its_number_is_read_compatibly(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A record made before device numbers were kept (no F_RDEV) compares clean, and `update`
    then records the number, so a later swap is reported."""
    from secpolicy.fim import record as R

    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    config = fim.config_from_dict({"paths": [{"path": "/dev/null", "attrs": "R"}]})
    db = tmp_path / "base.db"
    real_pack = R.pack
    with monkeypatch.context() as m:  # a baseline as secpolicy made it before
        m.setattr(R, "pack", lambda *a: real_pack(*a[:8]))
        fim.init_baseline(config, db, root, KEY)
    assert not R.unpack(sqlite3.connect(db).execute("SELECT r FROM entries").fetchone()[0]).flags & R.F_RDEV
    assert fim.check(config, db, root, KEY, full=True).status == "clean"
    fim.update(config, db, root, KEY)
    (root / "dev" / "null").unlink()
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 1))
    result = fim.check(config, db, root, KEY, full=True)
    assert [(c.old, c.new) for c in result.changed[0].changes if c.name == "rdev"] == [("1:3", "1:1")]
