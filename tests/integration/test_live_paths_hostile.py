"""Paths and programs a hostile or unusual process must not be able to misname: a directory
descriptor for "/", names that are not UTF-8, a fork that runs on after its parent exec'd
another program, `..` after a symlink, a path longer than the kernel reads, openat2's
RESOLVE_IN_ROOT and a chroot. Each case runs real syscalls under real probes and is told apart
by its own pid and temporary directory; what touches /etc does so in a private mount namespace
with a tmpfs over /etc, never the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_events import Collector, collecting

from secpolicy.events.auditd import decode_value
from secpolicy.events.bpf_plan import Clause, KernelPlan, TypeFilter

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

PYTHON = os.path.realpath(sys.executable)
CUT_MARK = "...(truncated)"  # what follows a path the kernel cut short


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sp-fix-live-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def live(base: Path) -> Iterator[Collector]:
    prefixes = (f"{base}/", "/etc/")
    under = Clause(prefixes, None, None)
    plan = KernelPlan(
        frozenset({"exec", "open", "write", "unlink", "chmod"}),
        {
            "open": TypeFilter(path_prefixes=prefixes, clauses=(under,)),
            "write": TypeFilter(path_prefixes=prefixes, clauses=(under,)),
            "unlink": TypeFilter(path_prefixes=prefixes, clauses=(under,)),
            "chmod": TypeFilter(path_prefixes=prefixes, clauses=(under,)),
        },
    )
    yield from collecting(plan)


def run(code: str, *, cwd: Path | None = None, private_etc: bool = False) -> list[int]:
    """Run `code` in a new Python process (in a private mount namespace with a tmpfs over /etc
    if asked); the numbers it prints (its pid first)."""
    argv = [PYTHON, "-I", "-c", code]
    if private_etc:
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs tmpfs /etc && exec "$0" "$@"', *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr
    return [int(x) for x in proc.stdout.split()]


def paths(live: Collector, pid: int, etype: str) -> list[str]:
    return [e["file"].get("path", "") for e in live.of(pid) if e["type"] == etype]


def test_a_directory_descriptor_for_the_root_names_absolute_paths(live: Collector) -> None:
    """openat/fchmodat/unlinkat relative to a descriptor of "/": /etc/passwd, not etc/passwd
    (nor /etc/etc/passwd once the descriptor number names /etc)."""
    (pid,) = run("""
import os
r = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("etc/passwd", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=r))
os.chmod("etc/passwd", 0o600, dir_fd=r)
os.unlink("etc/passwd", dir_fd=r)
os.close(r)
again = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
assert again == r
print(os.getpid(), flush=True)
""", private_etc=True)
    (unlink,) = live.wait(lambda e: e["type"] == "unlink" and e["proc"]["pid"] == pid)
    (write,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid)
    (chmod,) = live.wait(lambda e: e["type"] == "chmod" and e["proc"]["pid"] == pid)
    assert write["file"]["path"] == "/etc/passwd"
    assert chmod["file"] == {"path": "/etc/passwd", "mode": 0o600}
    assert unlink["file"] == {"path": "/etc/passwd"}


def test_names_that_are_not_utf8_stay_apart_as_auditd_renders_them(live: Collector, base: Path) -> None:
    d = base / "bytes"
    d.mkdir()
    (pid,) = run(f"""
import os
for name in (b"c\\xff", b"c\\xfe"):
    os.close(os.open(os.fsencode({str(d)!r}) + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o600))
print(os.getpid(), flush=True)
""")
    live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid, count=2)
    want = [f"{d}/" + decode_value(n.hex()) for n in (b"c\xff", b"c\xfe")]
    assert want == [f"{d}/c\\xff", f"{d}/c\\xfe"]  # the auditd reader's rendering
    assert paths(live, pid, "write") == want


def test_a_forked_child_keeps_the_program_it_was_forked_from(live: Collector, base: Path) -> None:
    """The parent, named like a package manager, forks and execs "apt" at once; the child
    writes later. The write is the child's program's (python), not the parent's later exec."""
    (base / "apt").symlink_to("/bin/sleep")  # an exec whose comm is "apt"
    target = base / "fork-target"
    target.write_text("old")
    pid, child = run(f"""
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(15, b"apt", 0, 0, 0)  # PR_SET_NAME
pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    fd = os.open({str(target)!r}, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"new")
    os._exit(0)
print(os.getpid(), pid, flush=True)
os.execv({str(base / "apt")!r}, ["apt", "0.6"])
""")
    (ev,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == child)
    assert ev["file"]["path"] == str(target)
    assert ev["proc"]["comm"] == "apt"
    assert ev["proc"]["exe"] == PYTHON
    assert ev["proc"]["args"][:2] == [PYTHON, "-I"]
    assert ev["proc"]["ppid"] == pid
    # the parent did exec the other program, before the child wrote
    parent_exec = live.wait_for(lambda e: e["type"] == "exec" and e["proc"]["pid"] == pid
                                and e["proc"]["comm"] == "apt")
    assert parent_exec["proc"]["exe"] == os.path.realpath("/bin/sleep")
    assert parent_exec["ts"] < ev["ts"]


def test_a_short_lived_child_with_its_own_name_keeps_its_program(live: Collector, base: Path) -> None:
    """A child that renames itself, writes and exits at once (no /proc left to read) while its
    parent has exec'd another program: still the program it was forked from."""
    target = base / "short-target"
    target.write_text("old")
    pid, child = run(f"""
import ctypes, os, time
pid = os.fork()
if pid == 0:
    ctypes.CDLL(None).prctl(15, b"zz-child", 0, 0, 0)
    time.sleep(0.3)
    os.close(os.open({str(target)!r}, os.O_WRONLY | os.O_TRUNC))
    os._exit(0)
print(os.getpid(), pid, flush=True)
os.execv("/bin/sleep", ["sleep", "0.6"])
""")
    (ev,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == child)
    assert ev["proc"]["comm"] == "zz-child"
    assert ev["proc"]["exe"] == PYTHON
    assert ev["proc"]["ppid"] == pid  # the parent, sleeping in its new program meanwhile


def test_dotdot_after_a_symlink_names_the_file_the_kernel_reached(live: Collector, base: Path) -> None:
    """lnk2 -> a/b: lnk2/../via_dotdot is a/via_dotdot, not via_dotdot (lexically)."""
    work = base / "dotdot"
    (work / "a" / "b").mkdir(parents=True)
    (work / "lnk2").symlink_to("a/b")
    (pid,) = run("""
import os
os.close(os.open("lnk2/../via_dotdot", os.O_WRONLY | os.O_CREAT, 0o600))
os.chmod("lnk2/../via_dotdot", 0o640)
print(os.getpid(), flush=True)
""", cwd=work)
    truth = f"{work}/a/via_dotdot"
    assert os.path.exists(truth)
    (write,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid)
    (chmod,) = live.wait(lambda e: e["type"] == "chmod" and e["proc"]["pid"] == pid)
    assert write["file"]["path"] == truth
    assert chmod["file"]["path"] == truth


def test_a_path_longer_than_the_kernel_reads_is_never_a_real_looking_other_path(live: Collector, base: Path) -> None:
    """base/./././...(300 times) then a name: the kernel reads 511 bytes of it. A successful open
    is named by the file opened; a failed one by what was read, marked as cut short (never
    normalised into base itself)."""
    work = base / "long"
    work.mkdir()
    pad = "./" * 300
    (pid,) = run(f"""
import os
os.close(os.open({str(work)!r} + "/" + {pad!r} + "long_target", os.O_WRONLY | os.O_CREAT, 0o600))
try:
    os.open({str(work)!r} + "/" + {pad!r} + "missing/x", os.O_WRONLY)
except FileNotFoundError:
    pass
print(os.getpid(), flush=True)
""")
    evs = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid, count=2)
    ok = [e for e in evs if e["outcome"]["result"] == "success"]
    failed = [e for e in evs if e["outcome"]["result"] == "failure"]
    assert [e["file"]["path"] for e in ok] == [f"{work}/long_target"]
    (cut,) = [e["file"]["path"] for e in failed]
    assert cut.endswith(CUT_MARK) and cut.startswith(f"{work}/./././")
    assert str(work) not in (e["file"]["path"] for e in evs)


def test_openat2_resolve_in_root_names_the_file_beneath_the_directory(live: Collector, base: Path) -> None:
    root = base / "inroot"
    root.mkdir()
    (pid,) = run(f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
d = os.open({str(root)!r}, os.O_RDONLY | os.O_DIRECTORY)
how = How(os.O_WRONLY | os.O_CREAT, 0o600, 0x10)  # RESOLVE_IN_ROOT
fd = libc.syscall(437, d, b"/inner", ctypes.byref(how), ctypes.sizeof(how))
assert fd >= 0, ctypes.get_errno()
os.close(fd)
print(os.getpid(), flush=True)
""")
    assert (root / "inner").exists()
    (ev,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid)
    assert ev["file"]["path"] == f"{root}/inner"
    assert ev["source"]["probe"] == "tracepoint:syscalls:openat2"


def test_inside_a_chroot_an_absolute_path_is_named_as_the_host_sees_it(live: Collector, base: Path) -> None:
    jail = base / "jail"
    (jail / "etc").mkdir(parents=True)
    (pid,) = run(f"""
import os
os.chroot({str(jail)!r})
os.chdir("/")
os.close(os.open("/etc/passwd", os.O_WRONLY | os.O_CREAT, 0o644))
print(os.getpid(), flush=True)
""")
    (ev,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid)
    assert ev["file"]["path"] == f"{jail}/etc/passwd"
    assert "/etc/passwd" not in paths(live, pid, "write")
