"""Root trees come from images nobody here built: FIFOs, device nodes, symlink loops and very
deep trees must neither block nor crash a scan, and the findings say what was there."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from facts_helpers import context, write

from secpolicy.dsl.limits import LIMITS
from secpolicy.errors import EvaluationError
from secpolicy.facts import inroot

IS_ROOT = os.geteuid() == 0


def deep_tree(top: Path, levels: int) -> None:
    """`levels` nested directories named d, made by descriptor (the path outgrows PATH_MAX)."""
    top.mkdir(parents=True, exist_ok=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def remove_deep_tree(top: Path) -> None:
    """Undo deep_tree without recursion (pytest's own clean-up recurses once per level and
    would fail on it): lift each level's child up, then remove the emptied level."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                break
            try:
                os.rename("d", "lifted", src_dir_fd=sub, dst_dir_fd=fd)
                lifted = True
            except FileNotFoundError:
                lifted = False
            finally:
                os.close(sub)
            os.rmdir("d", dir_fd=fd)
            if not lifted:
                break
            os.rename("lifted", "d", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


@pytest.fixture
def hostile_root(tmp_path):
    root = tmp_path / "root"
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "ssh").mkdir(parents=True)
    os.mkfifo(root / "etc" / "ssh" / "sshd_config")
    os.mkfifo(root / "etc" / "fifo")
    os.symlink("loop2", root / "etc" / "loop1")
    os.symlink("loop1", root / "etc" / "loop2")
    os.symlink("/etc/self", root / "etc" / "self")
    if IS_ROOT:
        os.mknod(root / "etc" / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
        os.mknod(root / "etc" / "disk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    deep_tree(root / "srv" / "deep", 1400)
    yield root
    remove_deep_tree(root / "srv" / "deep")


def test_a_fifo_is_reported_never_opened(hostile_root):
    ctx = context(hostile_root)
    with pytest.raises(EvaluationError, match=r"/etc/ssh/sshd_config: is a FIFO \(named pipe\), not a regular file"):
        ctx.read_text("/etc/ssh/sshd_config")


@pytest.mark.skipif(not IS_ROOT, reason="device nodes need root to create")
def test_device_nodes_are_reported_never_opened(hostile_root):
    ctx = context(hostile_root)
    with pytest.raises(EvaluationError, match="is a character device"):
        ctx.read_text("/etc/console")
    with pytest.raises(EvaluationError, match="is a block device"):
        ctx.read_text("/etc/disk")


def test_symlink_loops_are_errors(hostile_root):
    ctx = context(hostile_root)
    with pytest.raises(EvaluationError, match="symbolic links"):
        ctx.read_text("/etc/loop1")
    with pytest.raises(EvaluationError, match="symbolic links"):
        ctx.read_text("/etc/self")


def test_tree_lists_fifos_devices_and_links_with_their_types(hostile_root):
    ctx = context(hostile_root)
    entries = {f.path: f.type for f in ctx.fact("tree", ("/etc",))}
    expected = {
        "/etc/passwd": "file",
        "/etc/ssh": "dir",
        "/etc/ssh/sshd_config": "fifo",
        "/etc/fifo": "fifo",
        "/etc/loop1": "symlink",
        "/etc/loop2": "symlink",
        "/etc/self": "symlink",
    }
    if IS_ROOT:
        expected |= {"/etc/console": "char", "/etc/disk": "block"}
    assert entries == expected


def test_tree_over_a_1400_deep_directory_is_an_error_naming_where(hostile_root):
    ctx = context(hostile_root)
    with pytest.raises(EvaluationError) as exc:
        ctx.fact("tree", ("/srv",))
    msg = str(exc.value)
    assert msg.startswith(f"tree('/srv'): more than {LIMITS.walk_depth} directory levels below it at /srv/deep/d/")
    where = msg.split(" at ", 1)[1].removesuffix(": not walked")
    assert where.count("/") == 1 + LIMITS.walk_depth + 1  # /srv, then the first level too deep


def test_tree_within_the_limit_walks_to_the_bottom(tmp_path):
    deep_tree(tmp_path / "srv", LIMITS.walk_depth)
    ctx = context(tmp_path)
    try:
        entries = ctx.fact("tree", ("/srv",))
    finally:
        remove_deep_tree(tmp_path / "srv")
    assert len(entries) == LIMITS.walk_depth
    assert entries[-1].path == "/srv" + "/d" * LIMITS.walk_depth


POLICY = """\
metadata: {id: t, title: T, version: '1'}
rules:
  - {id: sshd, title: t, severity: low, check: 'sshd.option("PermitRootLogin") == "no"'}
  - {id: fifo-listed, title: t, severity: low, check: 'none(f in tree("/etc"): f.type == "fifo")'}
  - {id: deep, title: t, severity: low, check: 'count(f in tree("/srv"): true) > 0'}
  - {id: loop, title: t, severity: low, check: 'file("/etc/loop1").content == ""'}
  - {id: regex, title: t, severity: low, check: 'file("/etc/passwd").has_line("^(a+)+$") or true'}
"""


def test_scanning_a_hostile_root_finishes_and_reports_each_entry(hostile_root, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(POLICY)
    out = subprocess.run(
        [sys.executable, "-m", "secpolicy", "scan", "-p", str(p), "--root", str(hostile_root), "--format", "json"],
        check=False, capture_output=True, text=True, timeout=120, env=dict(os.environ, SECPOLICY_NO_CACHE="1"),
    )
    assert out.returncode == 1, out.stderr
    results = {r["rule_id"]: r for r in json.loads(out.stdout)["results"]}
    assert results["sshd"]["status"] == "error"
    assert "/etc/ssh/sshd_config: is a FIFO (named pipe), not a regular file" in results["sshd"]["reason"]
    assert results["fifo-listed"]["status"] == "fail"
    assert results["deep"]["status"] == "error"
    assert f"more than {LIMITS.walk_depth} directory levels below it at /srv/deep/d" in results["deep"]["reason"]
    assert results["loop"]["status"] == "error" and "symbolic links" in results["loop"]["reason"]
    assert results["regex"]["status"] == "pass"


# A directory of the image swapped for a symlink while it is scanned (a running container's
# root, say) must not lead a read out of the root: paths are resolved inside it from
# descriptors, by the kernel (openat2) or, where it has no openat2, component by component.
_SWAPPER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
etc = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    # RENAME_EXCHANGE: "conf" is the directory, then the symlink, then ... (with pauses: a
    # rename storm would slow every lookup in the directory to a crawl)
    if libc.renameat2(etc, b"conf", etc, b"conf.swap", 2) != 0:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
    time.sleep(0.00005)
"""


def swap_pair(tmp_path: Path) -> tuple[Path, Path]:
    """(a host directory, a root): the root's /etc/conf holds `file` ("inside"), and beside it
    /etc/conf.swap links to the host directory, holding `file` too ("host secret")."""
    outside = tmp_path / "outside"
    write(outside, "/file", "host secret\n")
    root = tmp_path / "root"
    write(root, "/etc/conf/file", "inside\n")
    os.symlink(outside, root / "etc" / "conf.swap")  # inside the root: <root><outside>
    return outside, root


@pytest.fixture(params=["openat2", "descriptors"])
def resolution(request, monkeypatch):
    """Each swap test runs as on this kernel (openat2) and as where there is none."""
    assert inroot.available()  # this machine's kernel has openat2
    if request.param == "descriptors":
        monkeypatch.setattr(inroot, "available", lambda: False)
    return request.param


@contextmanager
def swapping(etc: Path, seconds: int) -> Iterator[None]:
    """`etc/conf` and `etc/conf.swap` exchanged by another process while the block runs."""
    swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(etc), str(seconds)])
    try:
        yield
        assert swapper.poll() is None, "the swapper stopped early"
    finally:
        swapper.kill()
        swapper.wait()


def test_a_directory_swapped_for_a_symlink_mid_scan_never_leads_out_of_the_root(tmp_path, resolution):
    outside, root = swap_pair(tmp_path)
    host = (outside / "file").stat()
    ctx = context(root)
    with swapping(root / "etc", 30):
        seen = {b"inside\n": 0, None: 0}
        for _ in range(3000):
            data = ctx.read_bytes("/etc/conf/file")
            assert data in seen, data  # the host's file, read through the swapped-in link
            seen[data] += 1
            for st in (ctx.stat("/etc/conf/file"), ctx.lstat("/etc/conf/file")):
                assert st is None or (st.st_dev, st.st_ino) != (host.st_dev, host.st_ino)
    assert seen[b"inside\n"] and seen[None]  # both states were read: the swap really raced the reads


def test_listings_links_and_walks_never_lead_out_of_the_root_through_a_swapped_directory(tmp_path, resolution):
    """The same swap, against what names entries rather than reads them: a listing, a link
    target, tree(), fs_scan() and dpkg's verification of a file. Each sees the image or
    nothing, never the host's directory (its names end in `-host`)."""
    import hashlib

    from secpolicy.facts.files import FileInfo, collect_tree
    from secpolicy.facts.fs_scan import FsScan
    from secpolicy.facts.packages import _verify

    outside, root = swap_pair(tmp_path)
    write(outside, "/dir-host/f", "x\n")
    os.chmod(outside / "file", 0o666)  # what fs_scan would report, were it walked
    os.symlink("/target-host", outside / "lnk")
    write(root, "/etc/conf/dir/f", "x\n")
    os.symlink("/target-image", root / "etc" / "conf" / "lnk")
    host_md5 = hashlib.md5(b"host secret\n", usedforsecurity=False).hexdigest()
    ctx = context(root)
    with swapping(root / "etc", 60):
        states = {"image": 0, "absent": 0}
        for _ in range(1500):
            names = ctx.listdir("/etc/conf")
            assert names in (["dir", "file", "lnk"], []), names
            states["image" if names else "absent"] += 1
            try:
                assert FileInfo(ctx, "/etc/conf/lnk", follow=False).target in ("/target-image", None)
            except FileNotFoundError:
                pass  # a link when lstat looked, gone when its target was read
            for top in ("/etc", "/etc/conf"):
                try:
                    walked = [f.path for f in collect_tree(ctx, top)]
                except EvaluationError:
                    walked = []  # /etc/conf turned into a link between listing and opening it
                assert not any("host" in p for p in walked), walked
                scan = FsScan(ctx, (top,))
                assert not any("host" in p for p in scan.world_writable + scan.unowned)
                assert scan.world_writable == ()
            assert _verify(ctx, "/etc/conf/file", host_md5) in ("modified", "missing")
    assert states["image"] and states["absent"], states  # the swap really raced the reads
