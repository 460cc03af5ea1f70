"""Paths the kernel resolves at the time of the call: a descriptor reused for another file right
after the call, a process gone right after it, directory descriptors and the working directory,
the executable of a script, and file capabilities set with setcap (setxattr)."""

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

from secpolicy.events.bpf_plan import Clause, KernelPlan, TypeFilter

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="secpolicy-paths-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def live(base: Path) -> Iterator[Collector]:
    under = Clause((f"{base}/",), None, None)
    plan = KernelPlan(
        frozenset({"exec", "open", "write", "unlink", "rename", "chmod", "chown", "setxattr"}),
        {
            # descriptor calls: every one (they are rare), so a wrong path would show up too
            "chmod": TypeFilter(),
            "chown": TypeFilter(),
            "setxattr": TypeFilter(),
            "open": TypeFilter(path_prefixes=(f"{base}/",), clauses=(under,)),
            "write": TypeFilter(path_prefixes=(f"{base}/",), clauses=(under,)),
            "unlink": TypeFilter(path_prefixes=(f"{base}/",), clauses=(under,)),
            "rename": TypeFilter(path_prefixes=(f"{base}/",), clauses=(under,)),
        },
    )
    yield from collecting(plan)


def child(code: str, *, cwd: Path | None = None) -> int:
    """Run `code` in a new Python process; its pid."""
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[0])


def test_fchmod_names_the_file_although_the_descriptor_is_reused_at_once(live: Collector, base: Path) -> None:
    """The race of the issue: fchmod of a scratch file, then the same descriptor number opened
    on /etc/shadow and kept open (a late /proc/PID/fd lookup would name /etc/shadow)."""
    scratch = base / "scratch"
    pid = child(f"""
import os, time
fd = os.open({str(scratch)!r}, os.O_CREAT | os.O_WRONLY, 0o600)
os.fchmod(fd, 0o640)
os.fchown(fd, 0, 0)
os.close(fd)
again = os.open("/etc/shadow", os.O_RDONLY)
assert again == fd, (again, fd)
print(os.getpid(), flush=True)
time.sleep(1.5)
""")
    (ch,) = live.wait(lambda e: e["type"] == "chmod" and e["proc"]["pid"] == pid)
    (co,) = live.wait(lambda e: e["type"] == "chown" and e["proc"]["pid"] == pid)
    assert ch["file"] == {"path": str(scratch), "mode": 0o640}
    assert co["file"] == {"path": str(scratch), "uid": 0, "gid": 0}
    assert ch["source"]["probe"] == "tracepoint:syscalls:fchmod"
    assert not [e for e in live.of(pid) if "shadow" in (e.get("file") or {}).get("path", "")]


def test_a_process_that_exits_right_after_the_call_is_named_with_its_file(live: Collector, base: Path) -> None:
    quick = base / "quick"
    quick.write_text("x")
    pid = child(f"""
import os
fd = os.open({str(quick)!r}, os.O_RDONLY)
print(os.getpid(), flush=True)
os.fchmod(fd, 0o604)
os.setxattr(fd, "trusted.secpolicy-test", b"1")
os._exit(0)
""")
    (ch,) = live.wait(lambda e: e["type"] == "chmod" and e["proc"]["pid"] == pid)
    (xa,) = live.wait(lambda e: e["type"] == "setxattr" and e["proc"]["pid"] == pid)
    assert ch["file"] == {"path": str(quick), "mode": 0o604}
    assert xa["file"] == {"path": str(quick), "xattr": "trusted.secpolicy-test"}
    assert xa["source"]["probe"] == "tracepoint:syscalls:fsetxattr"
    assert ch["outcome"] == xa["outcome"] == {"result": "success"}


def test_directory_descriptors_name_the_directory_at_call_time(live: Collector, base: Path) -> None:
    """unlinkat/renameat/fchmodat/openat relative to a directory descriptor that is closed and
    reused for /etc/passwd right after (userdel's `unlink /etc/passwd-/.bashrc`)."""
    home = base / "home"
    home.mkdir()
    (home / ".bashrc").write_text("x")
    (home / "a").write_text("x")
    pid = child(f"""
import os, time
d = os.open({str(home)!r}, os.O_RDONLY | os.O_DIRECTORY)
os.chmod("a", 0o600, dir_fd=d)
os.rename("a", "b", src_dir_fd=d, dst_dir_fd=d)
os.close(os.open("new", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=d))
os.unlink(".bashrc", dir_fd=d)
os.close(d)
again = os.open("/etc/passwd", os.O_RDONLY)
assert again == d
print(os.getpid(), flush=True)
time.sleep(1.5)
""")
    live.wait(lambda e: e["type"] == "unlink" and e["proc"]["pid"] == pid)
    mine = {e["type"]: e for e in live.of(pid) if e["type"] in ("chmod", "rename", "write", "unlink")}
    assert mine["chmod"]["file"] == {"path": f"{home}/a", "mode": 0o600}
    assert mine["rename"]["file"] == {"path": f"{home}/a", "target": f"{home}/b"}
    assert mine["write"]["file"]["path"] == f"{home}/new"
    assert mine["unlink"]["file"] == {"path": f"{home}/.bashrc"}
    assert not [e for e in live.of(pid) if "/etc/passwd" in (e.get("file") or {}).get("path", "")]


def test_relative_paths_of_a_process_gone_at_once_use_its_cwd_then(live: Collector, base: Path) -> None:
    work = base / "work"
    work.mkdir()
    pid = child("""
import os
print(os.getpid(), flush=True)
open("rel.txt", "w").close()
os.chmod("rel.txt", 0o600)
os._exit(0)
""", cwd=work)
    (wr,) = live.wait(lambda e: e["type"] == "write" and e["proc"]["pid"] == pid)
    (ch,) = live.wait(lambda e: e["type"] == "chmod" and e["proc"]["pid"] == pid)
    assert wr["file"]["path"] == ch["file"]["path"] == f"{work}/rel.txt"
    assert wr["proc"]["cwd"] == str(work)


def test_a_script_runs_its_interpreter_as_auditd_names_it(live: Collector, base: Path) -> None:
    script = base / "script.sh"
    script.write_text("#!/bin/sh\necho $$\nexec sleep 0\n")
    script.chmod(0o755)
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=30, check=True)
    pid = int(proc.stdout.split()[0])
    (ev,) = live.wait(lambda e: e["type"] == "exec" and e["proc"]["pid"] == pid
                      and e["proc"].get("args", [""])[-1] == str(script))
    assert ev["proc"]["exe"] == os.path.realpath("/bin/sh")  # mm->exe_file, as auditd's exe=
    assert ev["proc"]["args"] == ["/bin/sh", str(script)]  # argv as the kernel made it (auditd's EXECVE)


def test_setcap_is_seen_as_a_setxattr_of_security_capability(live: Collector, base: Path) -> None:
    setcap = shutil.which("setcap") or "/usr/sbin/setcap"
    if not os.path.exists(setcap):
        pytest.fail("setcap is not installed (libcap2-bin; scripts/setup.sh --with-test-tools installs it)")
    target = base / "capped"
    shutil.copy("/bin/true", target)
    subprocess.run([setcap, "cap_net_raw+ep", str(target)], check=True, timeout=30)
    pid = child(f"""
import os
fd = os.open({str(target)!r}, os.O_RDONLY)
os.removexattr(fd, "security.capability")
print(os.getpid(), flush=True)
""")
    (set_,) = live.wait(lambda e: e["type"] == "setxattr" and e["file"].get("path") == str(target)
                        and e["proc"].get("exe") == os.path.realpath(setcap))
    assert set_["file"] == {"path": str(target), "xattr": "security.capability"}
    assert set_["source"]["probe"] == "tracepoint:syscalls:setxattr"
    assert set_["outcome"] == {"result": "success"}
    (rm,) = live.wait(lambda e: e["type"] == "setxattr" and e["proc"]["pid"] == pid)
    assert rm["file"] == {"path": str(target), "xattr": "security.capability"}
    assert rm["source"]["probe"] == "tracepoint:syscalls:fremovexattr"
