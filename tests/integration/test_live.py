"""Live eBPF events from real programs: each test triggers one kind of activity in a child
process and asserts the event the kernel probes produced, field by field."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_events import Collector, collecting

from secpolicy.events.bpf_plan import plan_from_keys
from secpolicy.events.matcher import IndexKeys

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

PAM_SERVICE = "secpolicy-test"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE


@pytest.fixture(scope="module")
def watched() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="secpolicy-live-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def live(watched: Path) -> Iterator[Collector]:
    keys = [
        IndexKeys(types=frozenset({"exec", "connect", "accept", "bpf", "auth", "setuid"})),
        IndexKeys(types=frozenset({"write", "chmod", "rename", "unlink"}), path_prefixes=(str(watched) + "/",)),
    ]
    yield from collecting(plan_from_keys(keys), join_timeout=10)


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, **kw, check=False)


def test_exec_with_arguments_parent_and_user(live: Collector) -> None:
    proc = run("/bin/sh", "-c", "exec /bin/echo secpolicy-exec-marker 'two words'")
    assert proc.returncode == 0
    ev = live.wait_for(lambda e: e["type"] == "exec" and "secpolicy-exec-marker" in e["proc"].get("args", []))
    p = ev["proc"]
    assert p["exe"] == os.path.realpath("/bin/echo")  # symlinks resolved, as auditd reports it
    assert p["args"] == ["/bin/echo", "secpolicy-exec-marker", "two words"]
    assert p["cmdline"] == "/bin/echo secpolicy-exec-marker two words"
    assert p["comm"] == "echo"
    assert p["ppid"] == os.getpid()
    assert p["pexe"] == os.path.realpath(sys.executable)
    assert p["ancestors"][0] == p["pexe"]
    assert (p["uid"], p["euid"]) == (os.getuid(), os.geteuid())
    assert p["cwd"] == os.getcwd()
    assert ev["user"] == {"uid": 0, "name": "root"}
    assert ev["outcome"] == {"result": "success"}
    assert ev["source"] == {"name": "ebpf", "probe": "tracepoint:syscalls:execve"}
    assert ev["ts"].endswith("Z") and len(ev["ts"]) == 30


def test_failed_exec_reports_errno(live: Collector, watched: Path) -> None:
    missing = watched / "no-such-program"
    run("/bin/sh", "-c", f"exec {missing}")
    ev = live.wait_for(lambda e: e["type"] == "exec" and e["proc"].get("args", [""])[0] == str(missing))
    assert ev["proc"]["exe"] == str(missing)
    assert ev["outcome"] == {"result": "failure", "errno": 2}


def test_write_under_watched_directory_relative_and_absolute(live: Collector, watched: Path) -> None:
    outside = Path(tempfile.mkdtemp(prefix="secpolicy-unwatched-"))
    try:
        run("/bin/sh", "-c", f"echo no > {outside}/f; echo yes > rel.txt; echo abs > {watched}/abs.txt",
            cwd=watched)
        rel = live.wait_for(lambda e: e["type"] == "write" and e["file"]["path"] == f"{watched}/rel.txt")
        ab = live.wait_for(lambda e: e["type"] == "write" and e["file"]["path"] == f"{watched}/abs.txt")
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    assert rel["file"]["flags"] == ["O_WRONLY", "O_CREAT", "O_TRUNC"]
    assert rel["file"]["mode"] == 0o666
    assert rel["proc"]["exe"] == os.path.realpath("/bin/sh") and rel["proc"]["cwd"] == str(watched)
    assert ab["outcome"] == {"result": "success"}
    # Filtered in the kernel: the write outside the watched directory never arrived, although
    # it happened before the two that did (events are delivered in time order).
    assert live.matching(lambda e: e.get("file", {}).get("path", "").startswith(str(outside))) == []


def test_chmod_rename_unlink_of_watched_file(live: Collector, watched: Path) -> None:
    f = watched / "perm.txt"
    f.write_text("x")
    run("/bin/sh", "-c", f"chmod 600 {f} && mv {f} {f}.2 && rm {f}.2")
    ch = live.wait_for(lambda e: e["type"] == "chmod" and e["file"].get("path") == str(f))
    mv = live.wait_for(lambda e: e["type"] == "rename" and e["file"]["path"] == str(f))
    rm = live.wait_for(lambda e: e["type"] == "unlink" and e["file"]["path"] == f"{f}.2")
    assert ch["file"]["mode"] == 0o600 and ch["proc"]["exe"] == os.path.realpath(shutil.which("chmod") or "")
    assert mv["file"]["target"] == f"{f}.2"
    assert rm["outcome"] == {"result": "success"}


CONNECT_SCRIPT = """
import socket
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
print(srv.getsockname()[1], cli.getsockname()[1])
"""


def test_connect_and_accept_on_loopback(live: Collector) -> None:
    proc = run(sys.executable, "-c", CONNECT_SCRIPT)
    port, cport = (int(x) for x in proc.stdout.split())
    c = live.wait_for(lambda e: e["type"] == "connect" and e["net"].get("dst_port") == port)
    a = live.wait_for(lambda e: e["type"] == "accept" and e["net"].get("dst_port") == port)
    assert c["net"] == {"family": "inet", "protocol": "tcp", "dst_ip": "127.0.0.1", "dst_port": port,
                        "src_ip": "127.0.0.1", "src_port": cport}
    assert a["net"] == {"family": "inet", "protocol": "tcp", "src_ip": "127.0.0.1", "src_port": cport,
                        "dst_ip": "127.0.0.1", "dst_port": port}
    assert c["proc"]["pid"] == a["proc"]["pid"]
    assert c["outcome"] == {"result": "success"}


# A two-instruction socket filter (r0 = 0; exit) loaded with bpf(BPF_PROG_LOAD) from ctypes.
BPF_LOAD_SCRIPT = r"""
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
insns = struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
buf = ctypes.create_string_buffer(insns)
lic = ctypes.create_string_buffer(b"GPL")
attr = bytearray(128)
struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(buf), ctypes.addressof(lic))
attr[48:48 + 12] = b"sp_test_prog"
a = (ctypes.c_char * 128).from_buffer(attr)
fd = libc.syscall(321, 5, a, 128)
print(fd)
"""


def test_bpf_program_load(live: Collector) -> None:
    proc = run(sys.executable, "-c", BPF_LOAD_SCRIPT)
    assert int(proc.stdout) >= 0, proc.stderr
    ev = live.wait_for(lambda e: e["type"] == "bpf" and e["bpf"].get("name") == "sp_test_prog")
    assert ev["bpf"] == {"cmd": "BPF_PROG_LOAD", "prog_type": "socket_filter", "name": "sp_test_prog"}
    assert ev["outcome"] == {"result": "success"}
    assert ev["proc"]["exe"] == os.path.realpath(sys.executable)


@pytest.fixture
def pam_service() -> Iterator[str]:
    if shutil.which("pamtester") is None:
        pytest.fail("pamtester is not installed (scripts/setup.sh --with-test-tools installs it)")
    created = not PAM_FILE.exists()
    shutil.copyfile(Path(__file__).parent / "pam" / PAM_SERVICE, PAM_FILE)
    yield PAM_SERVICE
    if created:
        PAM_FILE.unlink(missing_ok=True)


def test_failed_pam_authentication(live: Collector, pam_service: str) -> None:
    proc = run("pamtester", "-I", "rhost=203.0.113.9", "-I", "tty=pts/9", pam_service, "nobody", "authenticate")
    assert proc.returncode != 0
    ev = live.wait_for(lambda e: e["type"] == "auth" and e["auth"].get("service") == pam_service)
    assert ev["auth"] == {"service": pam_service, "user": "nobody", "rhost": "203.0.113.9",
                          "result": "failure", "method": "PAM:authentication"}
    assert ev["outcome"] == {"result": "failure"}
    assert ev["proc"]["tty"] == "pts/9"
    assert ev["source"]["probe"] == "uprobe:libpam:pam_authenticate"


def test_setuid_reports_new_credentials(live: Collector) -> None:
    done = run(sys.executable, "-c", "import os; print(os.getpid(), flush=True); "
               "os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)")
    pid = int(done.stdout.split()[0])
    # this test's own process: another test may switch to uid 65534 at the same time
    ev = live.wait_for(lambda e: e["type"] == "setuid" and e["proc"]["pid"] == pid
                       and e["source"]["probe"].endswith("setresuid"))
    assert ev["cred"] == {"uid": 65534, "euid": 65534, "gid": 65534, "egid": 65534}
    assert ev["proc"]["uid"] == 0  # before the call


def test_nothing_lost_and_counts_agree(live: Collector) -> None:
    run("/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done")
    live.wait_for(lambda e: e["type"] == "exec" and e["proc"].get("args") == ["/bin/true"])
    stats = live.source.stats()
    assert stats.lost() == {}
    assert stats.windows == ()
