"""Red-team probes of the live monitor against what auditd records for the same syscalls: the
program of an exec through a descriptor (a memfd, execveat from a working directory deeper
than the kernel walk), the file of a connect to a unix socket (relative, abstract), and the
calls an audit watch (`-w PATH -p wa`) records and the auditd reader makes `write` events of
(truncate(2), mkdir, mknod). Each case runs real syscalls under real probes and is told apart
by its own pid and temporary directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_events import Collector, collecting

from secpolicy.events.bpf_plan import Clause, KernelPlan, TypeFilter

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

PYTHON = os.path.realpath(sys.executable)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sp-live-probe-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def live(base: Path) -> Iterator[Collector]:
    under = Clause((f"{base}/",), None, None)
    plan = KernelPlan(
        frozenset({"exec", "write", "connect", "chmod"}),
        {"write": TypeFilter(path_prefixes=(f"{base}/",), clauses=(under,)),
         "chmod": TypeFilter(path_prefixes=(f"{base}/",), clauses=(under,))},
    )
    yield from collecting(plan)


def run(code: str, *, cwd: Path | None = None) -> list[int]:
    """Run `code` in a new Python process; the numbers it prints (its pid first)."""
    proc = subprocess.run([PYTHON, "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [int(x) for x in proc.stdout.split()]


def marked(live: Collector, pid: int, marker: Path) -> list[dict]:
    """The events of `pid` once its last act, a write of `marker`, is seen: the records of one
    thread reach the ring buffer in the order of its calls, so every earlier one is in."""
    live.wait_for(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid
                  and e["file"].get("path") == str(marker))
    return [e for e in live.of(pid) if not (e["type"] == "write" and e["file"].get("path") == str(marker))]


def test_a_program_run_from_a_memfd_is_named_as_auditd_names_it(live: Collector) -> None:
    """fexecve of a memfd (execveat(fd, "", AT_EMPTY_PATH)): auditd's exe= is
    "/memfd:NAME (deleted)"; the kernel's name of the file, never "/dev/fd/N" resolved in the
    monitor (which named one of the monitor's own descriptors, a BPF map)."""
    (child,) = run("""
import os
m = os.memfd_create("sp-probe-payload")
with open("/bin/true", "rb") as f:
    os.write(m, f.read())
pid = os.fork()
if pid == 0:
    os.execve(m, ["innocent", "arg"], {})
os.waitpid(pid, 0)
print(pid, flush=True)
""")
    ev = live.wait_for(lambda e: e["type"] == "exec" and e["proc"]["pid"] == child)
    assert ev["outcome"] == {"result": "success"}
    assert ev["proc"]["args"] == ["innocent", "arg"]
    assert ev["proc"]["exe"] == "/memfd:sp-probe-payload (deleted)"


def test_execveat_from_a_working_directory_deeper_than_the_walk_names_the_program(
        live: Collector, base: Path) -> None:
    """A working directory 40 levels deep (beyond the kernel's walk) must not cost the
    executable its name: execveat(dirfd of /usr/bin, "true") runs /usr/bin/true, as auditd's
    exe= says; the name the kernel copied ("/dev/fd/N/true") is the caller's descriptor, which
    resolved in the monitor named whatever the monitor's own descriptor N is."""
    deep = base / "deep"
    deep.mkdir()
    true = os.path.realpath("/bin/true")
    (child,) = run(f"""
import ctypes, os
os.chdir({str(deep)!r})
for _ in range(40):
    os.mkdir("d")
    os.chdir("d")
libc = ctypes.CDLL(None, use_errno=True)
d = os.open({os.path.dirname(true)!r}, os.O_RDONLY | os.O_DIRECTORY)
os.dup2(d, 5)
pid = os.fork()
if pid == 0:
    argv = (ctypes.c_char_p * 3)(b"true", b"deep-arg", None)
    envp = (ctypes.c_char_p * 1)(None)
    libc.syscall(322, 5, {os.path.basename(true).encode()!r}, argv, envp, 0)  # execveat
    os._exit(99)
_, status = os.waitpid(pid, 0)
assert status == 0, status
print(pid, flush=True)
""")
    ev = live.wait_for(lambda e: e["type"] == "exec" and e["proc"]["pid"] == child)
    assert ev["outcome"] == {"result": "success"}
    assert ev["proc"]["args"] == ["true", "deep-arg"]
    assert ev["proc"]["exe"] == true


def test_a_connect_to_a_unix_socket_names_its_file_or_its_abstract_name(live: Collector, base: Path) -> None:
    """connect(2) to "sock" relative to the working directory is the socket file there (auditd:
    path=sock, in CWD), not an abstract name "@sock"; an abstract name ("\\0name") is "@name",
    not lost to the NUL it starts with."""
    d = base / "unix"
    d.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(d / "sock"))
    server.listen(4)
    abstract = socket.socket(socket.AF_UNIX)
    name = f"sp-probe-{os.getpid()}"
    abstract.bind("\0" + name)
    abstract.listen(4)
    try:
        (pid,) = run(f"""
import os, socket
for where in ("sock", "\\0" + {name!r}):
    c = socket.socket(socket.AF_UNIX)
    c.connect(where)
    c.close()
print(os.getpid(), flush=True)
""", cwd=d)
        evs = live.wait(lambda e: e["type"] == "connect" and e["proc"]["pid"] == pid, count=2)
    finally:
        server.close()
        abstract.close()
    assert [e["net"] for e in evs] == [{"family": "unix"}] * 2
    assert [e.get("file") for e in evs] == [{"path": str(d / "sock")}, {"path": "@" + name}]


def test_truncate_mkdir_and_mknod_are_writes_as_the_auditd_reader_makes_them(live: Collector, base: Path) -> None:
    """What an audit watch `-w DIR -p wa` records and the auditd reader makes `write` events of:
    truncate(2) (O_WRONLY|O_TRUNC: what the overwritten-config rule looks for), mkdir, mkdirat,
    mknod (a FIFO) as O_CREAT|O_DIRECTORY without a mode. A failed truncate is a failed write."""
    d = base / "made"
    d.mkdir()
    conf = d / "conf"
    conf.write_text("old\n")
    marker = d / "marker"
    (pid,) = run(f"""
import os
d = {str(d)!r}
os.truncate(d + "/conf", 0)
os.mkdir(d + "/newdir", 0o700)
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
os.mkdir("subdir", dir_fd=fd)
os.mkfifo("fifo", dir_fd=fd)
try:
    os.truncate(d + "/absent", 0)
except FileNotFoundError:
    pass
os.close(os.open({str(marker)!r}, os.O_WRONLY | os.O_CREAT, 0o600))
print(os.getpid(), flush=True)
""")
    evs = [e for e in marked(live, pid, marker) if e["type"] == "write"]
    made = ["O_RDONLY", "O_CREAT", "O_DIRECTORY"]
    assert [(e["file"], e["outcome"], e["source"]["probe"]) for e in evs] == [
        ({"path": str(conf), "flags": ["O_WRONLY", "O_TRUNC"]}, {"result": "success"},
         "tracepoint:syscalls:truncate"),
        ({"path": f"{d}/newdir", "flags": made}, {"result": "success"}, "tracepoint:syscalls:mkdir"),
        ({"path": f"{d}/subdir", "flags": made}, {"result": "success"}, "tracepoint:syscalls:mkdirat"),
        ({"path": f"{d}/fifo", "flags": made}, {"result": "success"}, "tracepoint:syscalls:mknodat"),
        ({"path": f"{d}/absent", "flags": ["O_WRONLY", "O_TRUNC"]}, {"result": "failure", "errno": 2},
         "tracepoint:syscalls:truncate"),
    ]


def test_link_and_symlink_are_writes_naming_the_new_name_as_the_auditd_reader_makes_them(live: Collector,
                                                                                        base: Path) -> None:
    """A hard link into a program directory or a symlink into /etc/cron.d makes a new name
    there: a `write` with O_WRONLY|O_CREAT and no mode naming it (what the system-object rule
    looks for), from link, linkat, symlink and symlinkat alike."""
    d = base / "links"
    d.mkdir()
    (d / "orig").write_text("x\n")
    marker = d / "marker"
    (pid,) = run(f"""
import os
d = {str(d)!r}
os.link(d + "/orig", d + "/hard")
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
os.link(d + "/orig", "hard2", dst_dir_fd=fd)
os.symlink("/tmp", d + "/soft")
os.symlink("orig", "soft2", dir_fd=fd)
try:
    os.link(d + "/absent", d + "/hard3")
except FileNotFoundError:
    pass
os.close(os.open({str(marker)!r}, os.O_WRONLY | os.O_CREAT, 0o600))
print(os.getpid(), flush=True)
""")
    evs = [e for e in marked(live, pid, marker) if e["type"] == "write"]
    made = ["O_WRONLY", "O_CREAT"]
    assert [(e["file"], e["outcome"], e["source"]["probe"]) for e in evs] == [
        ({"path": f"{d}/hard", "flags": made}, {"result": "success"}, "tracepoint:syscalls:link"),
        ({"path": f"{d}/hard2", "flags": made}, {"result": "success"}, "tracepoint:syscalls:linkat"),
        ({"path": f"{d}/soft", "flags": made}, {"result": "success"}, "tracepoint:syscalls:symlink"),
        ({"path": f"{d}/soft2", "flags": made}, {"result": "success"}, "tracepoint:syscalls:symlinkat"),
        ({"path": f"{d}/hard3", "flags": made}, {"result": "failure", "errno": 2}, "tracepoint:syscalls:link"),
    ]


def test_a_path_through_proc_self_is_resolved_in_the_caller_not_in_the_monitor(live: Collector, base: Path) -> None:
    """chmod("/proc/self/cwd/../f"): the `..` is resolved through the caller's working
    directory (its /proc/PID/cwd), not the monitor's, which /proc/self is where it decodes."""
    d = base / "self"
    (d / "cwd").mkdir(parents=True)
    (d / "f").write_text("x")
    proc = subprocess.Popen([PYTHON, "-I", "-c", """
import os, sys
os.chmod("/proc/self/cwd/../f", 0o600)
print(os.getpid(), flush=True)
sys.stdin.read()
"""], cwd=d / "cwd", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        ev = live.wait_for(lambda e: e["type"] == "chmod" and e["proc"]["pid"] == pid)
    finally:
        proc.communicate("", timeout=60)
    assert ev["file"] == {"path": str(d / "f"), "mode": 0o600}
