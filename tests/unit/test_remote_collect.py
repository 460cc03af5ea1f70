"""The remote collection without SSH: the round script run by the local /bin/sh against a tree
of files (the same find and tar a target runs), its stream applied to a snapshot, the snapshot
read by the remote fact context, and hostile streams that must not escape the scratch tree."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError, InputError, RuntimeFailure
from secpolicy.remote import base_requests, with_parents
from secpolicy.remote.context import RemoteFacts
from secpolicy.remote.protocol import BULK_CAP, Request, read_round, round_script, script_head
from secpolicy.remote.snapshot import Snapshot
from secpolicy.remote.ssh import Channel, check_ssh_options, parse_target
from secpolicy.vocabulary import builtin_registry

PYTHON = shutil.which("python3")


def fetch(requests: list[Request], snap: Snapshot, python: str | None = PYTHON) -> dict[str, int]:
    return run_local(round_script(sorted(with_parents(snap, requests)), python), snap)


def run_local(script: bytes, snap: Snapshot, timeout: float = 60) -> dict[str, int]:
    """One round as a target runs it, with this machine's /bin/sh in place of the SSH session."""
    proc = subprocess.Popen(["/bin/sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(script)
    proc.stdin.close()
    ch = Channel(proc, budget=1 << 30, timeout=timeout)
    try:
        return read_round(ch, snap)
    finally:
        rc, _ = ch.finish()
        assert not ch.timed_out
        assert rc == 0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "etc" / "sub").mkdir(parents=True)
    (src / "etc" / "conf").write_text("a = 1\n")
    os.chmod(src / "etc" / "conf", 0o640)
    (src / "etc" / "noeol").write_bytes(b"no newline")
    (src / "etc" / "empty").write_bytes(b"")
    (src / "etc" / "sub" / "deep").write_text("d\n")
    with open(src / "etc" / "big", "wb") as f:  # above the bulk cap: its bytes only when asked for
        f.write(b"B" * (BULK_CAP + 10))
    os.symlink("conf", src / "etc" / "link")
    os.symlink("/etc/passwd", src / "etc" / "abs")
    os.mkfifo(src / "etc" / "fifo")
    os.chmod(src / "etc" / "sub", 0o2750)
    return src


@pytest.fixture
def snap(tmp_path: Path):
    root = tmp_path / "scratch"
    root.mkdir(mode=0o700)
    s = Snapshot(str(root))
    yield s
    s.close()


def test_a_round_copies_a_tree_with_its_metadata_links_as_data_and_nothing_of_a_fifo(tree, snap):
    etc = str(tree / "etc")
    counts = fetch([Request.of("T", etc), Request.of("E", str(tree / "missing"))], snap)
    k = snap.key
    conf = snap.entries[k(f"{etc}/conf")]
    assert (conf.kind, conf.mode, conf.uid, conf.size) == ("f", 0o640, os.getuid(), 6)
    assert snap.entries[k(f"{etc}/sub")].mode == 0o2750
    assert snap.entries[k(f"{etc}/link")].target == "conf"
    assert snap.entries[k(f"{etc}/abs")].target == "/etc/passwd"
    assert snap.entries[k(f"{etc}/fifo")].kind == "p"
    assert Path(snap.root + k(f"{etc}/conf")).read_text() == "a = 1\n"
    assert Path(snap.root + k(f"{etc}/noeol")).read_bytes() == b"no newline"
    assert k(f"{etc}/empty") in snap.content
    # The FIFO is an empty private regular file here: nothing can block on it.
    st = os.lstat(snap.root + k(f"{etc}/fifo"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert k(f"{etc}/big") not in snap.content and snap.entries[k(f"{etc}/big")].size == BULK_CAP + 10
    assert k(str(tree / "missing")) not in snap.seen  # absent: no entry in the stream
    assert etc in snap.trees and f"{etc}/sub" in snap.listed
    assert counts["files"] == 4  # conf, noeol, empty, deep; not big (above the cap), not the fifo
    fetch([Request.of("C", f"{etc}/big")], snap)
    assert Path(snap.root + k(f"{etc}/big")).read_bytes() == b"B" * (BULK_CAP + 10)


def _facts(snap: Snapshot) -> RemoteFacts:
    return RemoteFacts(builtin_registry(), snap, "ssh://test@host:22")


def test_facts_see_remote_owners_modes_and_types_and_say_what_they_miss(tree, snap):
    etc = str(tree / "etc")
    fetch([Request.of("T", etc)], snap)
    ctx = _facts(snap)
    st = ctx.stat(f"{etc}/link")  # followed inside the snapshot
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == os.getuid()
    assert ctx.read_text(f"{etc}/link") == "a = 1\n"
    with pytest.raises(EvaluationError, match="is a FIFO"):
        ctx.read_text(f"{etc}/fifo")
    assert ctx.listdir(f"{etc}/sub") == ["deep"]
    assert not ctx.wants
    # Above the bulk cap: not read yet, asked for; above the caller's limit: an error, as a
    # local read says, without fetching.
    assert ctx.read_text(f"{etc}/big") is None
    assert ctx.wants == {Request.of("C", f"{etc}/big")}
    with pytest.raises(EvaluationError, match="larger than 100 bytes"):
        ctx.read_bytes(f"{etc}/big", limit=100)
    ctx.wants.clear()
    assert ctx.lstat(str(tree / "elsewhere")) is None
    assert ctx.wants == {Request.of("E", str(tree / "elsewhere"))}


def test_owners_and_modes_come_from_the_host_not_from_the_local_copy(snap):
    from secpolicy.remote.snapshot import Entry

    snap.put_entry("/", Entry("d", 0o755, 0, 0, 4096, 0.0, True))
    snap.put_entry("/su", Entry("f", 0o4750, 4242, 4343, 12, 1.5, True))
    ctx = _facts(snap)
    st = ctx.lstat("/su")
    assert (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime) == (
        stat.S_IFREG, 0o4750, 4242, 4343, 12, 1.5)
    local = os.lstat(snap.root + "/su")  # the private copy: this user's, 0600, empty until read
    assert (local.st_uid, stat.S_IMODE(local.st_mode), local.st_size) == (os.getuid(), 0o600, 0)


def test_a_directory_the_remote_user_cannot_read_fails_as_on_the_host(snap):
    from secpolicy.remote.snapshot import Entry

    snap.put_entry("/", Entry("d", 0o755, 0, 0, 4096, 0.0, True))
    snap.put_entry("/home", Entry("d", 0o755, 0, 0, 4096, 0.0, True))
    snap.put_entry("/home/alice", Entry("d", 0o700, 1000, 1000, 4096, 0.0, False))
    snap.mark_listed("/home", tree=True)
    ctx = _facts(snap)
    with pytest.raises(EvaluationError, match="/home/alice: permission denied"):
        ctx.listdir("/home/alice")
    with pytest.raises(EvaluationError, match="tree\\('/home'\\): /home/alice: Permission denied"):
        ctx.fact("tree", ("/home",))
    assert not ctx.wants


def test_a_tree_walk_asks_for_the_whole_subtree_once(tree, snap):
    fetch([Request.of("L", str(tree))], snap)
    ctx = _facts(snap)
    ctx.fact("tree", (str(tree),))
    assert Request.of("M", str(tree)) in ctx.wants
    fetch(sorted(ctx.wants), snap)
    ctx = _facts(snap)
    names = sorted(f.path.removeprefix(str(tree)) for f in ctx.fact("tree", (str(tree),)))
    assert names == sorted(["/etc", "/etc/abs", "/etc/big", "/etc/conf", "/etc/empty", "/etc/fifo", "/etc/link",
                            "/etc/noeol", "/etc/sub", "/etc/sub/deep"])
    assert not ctx.wants


@pytest.mark.parametrize("python", [PYTHON, None], ids=["python3", "sh"])
def test_pseudo_file_readers_copy_bytes_exactly_and_never_block(tmp_path, python):
    """The readers of /proc and /sys files, on ordinary files standing in for them: a FIFO is
    refused, not opened for a blocking read; a file without a final newline keeps it so."""
    (tmp_path / "a").write_bytes(b"1\n")
    (tmp_path / "b").write_bytes(b"x y\n\nlast, no newline")
    (tmp_path / "empty").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo")
    paths = [tmp_path / n for n in ("a", "b", "empty", "fifo", "missing")]
    script = (script_head(python) + "{ " + "; ".join(f"q '{p}'" for p in paths) + "; } | pread\n"
              + "printf 'D\\000'\n").encode()
    root = tmp_path / "scratch"
    root.mkdir(mode=0o700)
    snap = Snapshot(str(root))
    for p in paths[:3]:
        snap.put_entry(str(p), _file_entry())
    run_local(script, snap, timeout=30)
    for p in paths[:3]:
        assert Path(snap.root + snap.key(str(p))).read_bytes() == p.read_bytes()
    assert snap.unread[str(tmp_path / "fifo")] == "not a regular file"
    assert snap.unread[str(tmp_path / "missing")] in ("No such file or directory", "not a regular file")
    snap.close()


def _file_entry():
    from secpolicy.remote.snapshot import Entry

    return Entry("f", 0o644, 0, 0, 0, 0.0, True)


def _records(*fields: bytes) -> bytes:
    return b"".join(f + b"\0" for f in fields)


def _m(kind: str, path: str, target: str = "") -> bytes:
    return _records(b"M", kind.encode(), b"644", b"0", b"0", b"1", b"1.0", b"r", path.encode(), target.encode())


def _tar(members: list[tuple[str, bytes, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = data.decode()
                data = b""
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def read1(self, n: int) -> bytes:
        return self.f.read(min(n, 7))  # small reads: records split anywhere


def test_a_hostile_stream_writes_nothing_outside_the_scratch_tree(tmp_path, snap):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    stream = (b"login banner junk\n" + b"SECPOLICY-COLLECT-1\0"
              + _m("d", "/x") + _m("l", "/x/out", str(outside)) + _m("f", "/x/out/victim")
              + _m("l", "/up", "../../../../../..") + _m("f", "/up/escape")
              + _m("f", "/../escape2") + _m("f", "rel/escape3") + _m("f", f"{outside}/victim2")
              + _records(b"A", b"/x/out")  # the link goes again: a later file must not follow it
              + _m("l", "/x/out", str(outside)) + b"D\0"
              + _tar([("x/out/victim", b"overwritten", tarfile.REGTYPE), ("../escape4", b"x", tarfile.REGTYPE),
                      ("up/escape", b"inside", tarfile.REGTYPE), ("x/evil", b"/", tarfile.SYMTYPE),
                      (f"{outside}/victim2".lstrip("/"), b"inside too", tarfile.REGTYPE)]))
    read_round(_Bytes(stream), snap)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"] and (outside / "victim").read_text() == "keep"
    assert not (tmp_path / "escape2").exists() and not (tmp_path / "escape4").exists()
    root = Path(snap.root)
    assert (root / "escape").read_text() == "inside"  # `..` stops at the root, as under chroot
    assert (root / str(outside).lstrip("/") / "victim").read_bytes() == b"overwritten"
    assert (root / str(outside).lstrip("/") / "victim2").read_text() == "inside too"
    assert not (root / "x" / "evil").exists()  # the tar stream carries bytes only
    assert {w for _, w in snap.skipped} >= {"refused: '..' in the path", "refused: not an absolute path",
                                           "unexpected tar member (not a regular file): ignored"}


@pytest.mark.parametrize("stream, message", [
    (b"no magic at all", "did not start"),
    (b"SECPOLICY-COLLECT-1\0Q\0", "unknown record"),
    (b"SECPOLICY-COLLECT-1\0M\0" + b"x" * 70000, "field too long"),
    (b"SECPOLICY-COLLECT-1\0C\0/proc/x\0" + b"99999999999\0", "malformed file record"),
    (b"SECPOLICY-COLLECT-1\0M\0f\0", "ended in the middle"),
    (b"SECPOLICY-COLLECT-1\0D\0" + b"not a tar" * 100, "not a valid tar"),
])
def test_a_malformed_stream_is_a_clear_failure(snap, stream, message):
    with pytest.raises(RuntimeFailure, match=message):
        read_round(_Bytes(stream), snap)


def test_a_channel_past_its_time_or_its_bytes_is_stopped(tmp_path):
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    ch = Channel(proc, budget=1000, timeout=0.5)
    with pytest.raises(RuntimeFailure, match="took more than 0.5 s"):
        ch.read1()
    ch.abort()
    assert ch.timed_out and proc.returncode is not None
    proc = subprocess.Popen(["/bin/sh", "-c", "head -c 100000 /dev/zero; sleep 30"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    ch = Channel(proc, budget=1000, timeout=30)
    with pytest.raises(RuntimeFailure, match="more than 1000 bytes"):
        while ch.read1():
            pass
    ch.abort()
    assert proc.returncode is not None


def test_the_first_round_follows_the_facts_the_rules_name():
    assert {r.path for r in base_requests([])} == {"/", "/etc", "/usr/lib/os-release"}
    sysctl = {r.path for r in base_requests(["sysctl"])}
    assert "/proc/sys" in sysctl and "/usr/lib/sysctl.d" in sysctl
    assert Request.of("C", "/var/lib/dpkg/status") in base_requests(["package_files"])


@pytest.mark.parametrize("url, user, host, port", [
    ("ssh://web1", None, "web1", None),
    ("ssh://root@10.0.0.5:2222", "root", "10.0.0.5", 2222),
    ("ssh://scan@[2001:db8::1]:22/", "scan", "2001:db8::1", 22),
])
def test_targets(url, user, host, port):
    t = parse_target(url)
    assert (t.user, t.host, t.port) == (user, host, port)


@pytest.mark.parametrize("url", ["web1", "ssh://", "ssh://-oProxyCommand=x", "ssh://a@b:99999", "ssh://a:pw@b",
                                 "ssh://a@b/path", "ssh://-l@b", "ssh://a b"])
def test_bad_targets_are_input_errors(url):
    with pytest.raises(InputError):
        parse_target(url)


@pytest.mark.parametrize("opt", ["StrictHostKeyChecking=no", "stricthostkeychecking no", "BatchMode=no",
                                 "ForwardAgent=yes", "ControlPath=/tmp/x", "LocalForward=1:a:2", "nokey",
                                 "VerifyHostKeyDNS=yes", "Include=/tmp/more.conf"])
def test_ssh_options_that_would_weaken_the_scan_are_refused(opt):
    with pytest.raises(InputError):
        check_ssh_options([opt])


@pytest.mark.parametrize(("opt", "key", "value"), [('"ControlMaster" yes', "controlmaster", "true"),
                                                   ('"SessionType" none', "sessiontype", "none")])
def test_a_quoted_keyword_is_the_keyword_to_openssh_and_refused_as_it(opt, key, value):
    # Asked of OpenSSH itself: `ssh -G` prints the configuration an option line gives.
    ssh = shutil.which("ssh")
    if ssh is not None:
        shown = subprocess.run([ssh, "-G", "-o", opt, "127.0.0.1"], capture_output=True, text=True, check=True).stdout
        assert f"{key} {value}" in shown.splitlines()
    with pytest.raises(InputError):
        check_ssh_options([opt])


def test_ordinary_ssh_options_pass():
    assert check_ssh_options(["IdentityFile=~/.ssh/scan", "Port 2222", "ProxyJump=bastion"]) == (
        "IdentityFile=~/.ssh/scan", "Port 2222", "ProxyJump=bastion")
