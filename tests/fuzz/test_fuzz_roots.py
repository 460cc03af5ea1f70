"""Fuzz root trees under `scan --root`: FIFOs, device nodes, links (loops, absolute, climbing
out), odd names and contents where the facts read. The scan finishes with exit 0/1 and writes
nothing; the same holds for the bundled packs run as a real process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from fuzz_helpers import FUZZ, check, fresh, run, snapshot
from hypothesis import given
from hypothesis import strategies as st
from strategies import HEADER

IS_ROOT = os.geteuid() == 0
TARGETS = ["/etc/passwd", "/etc/ssh/sshd_config", "/etc/login.defs", "/etc/group", "/etc/sysctl.conf",
           "/var/lib/dpkg/status", "/etc/ssh/sshd_config.d/x.conf", "/etc/shadow", "/etc/pam.d/common-auth"]
KINDS = ["file", "file", "dir", "symlink", "fifo", "device", "deep"]
LINKS = ["loop", ".", "..", "/", "/etc", "../../../../../../etc/shadow", "/etc/passwd", "/dev/zero", "x" * 300]
CONTENTS = [b"", b"\x00" * 64, b"PermitRootLogin yes\n", b"Include /etc/ssh/sshd_config\n", b"Include /etc/ssh/*\n",
            b"root:x:0:0::/root:/bin/sh\n" * 2, b"\xff\xfe garbage\n", b"a" * 70_000, b"UMASK 027\n",
            b"Package: x\nStatus: install ok installed\nVersion: 1\n\n"]

POLICY = HEADER + "rules:\n" + "".join(
    f"  - {{id: r{i}, title: t, severity: low, check: {json.dumps(c)}}}\n"
    for i, c in enumerate([
        'sshd.option("PermitRootLogin") == "no"',
        'all(u in users: u.uid != 0 or u.name == "root")',
        'login_defs.option("UMASK") == "027"',
        'sysctl("net.ipv4.ip_forward").persisted == 0',
        'count(f in tree("/etc"): f.type == "fifo") == 0',
        'none(f in files("/etc/*"): f.mode & 0o002 != 0)',
        'package("x").installed',
        'all(g in groups: g.gid >= 0)',
        *(f'file("{t}").has_line("(a+)+$") or file("{t}").exists' for t in TARGETS),
    ])
)


def make(root: Path, rel: str, kind: str, content: bytes, link: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        return
    if kind == "file":
        path.write_bytes(content)
    elif kind == "dir":
        path.mkdir()
    elif kind == "symlink":
        os.symlink("/" + rel.lstrip("/") if link == "loop" else link, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device" and IS_ROOT:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: endless if ever read
    elif kind == "deep":
        path.mkdir()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(200):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(fd)


ENTRIES = st.lists(
    st.tuples(st.sampled_from(TARGETS + ["/etc/x", "/etc/ssh/y"]), st.sampled_from(KINDS), st.sampled_from(CONTENTS), st.sampled_from(LINKS)),
    min_size=1, max_size=8,
)


@FUZZ
@given(entries=ENTRIES)
def test_scan_any_root_tree(tmp_path_factory, entries):
    work = fresh(tmp_path_factory.getbasetemp(), "roots-")
    root = work / "root"
    root.mkdir()
    for e in entries:
        make(root, *e)
    p = work / "p.yaml"
    p.write_text(POLICY)
    before = snapshot(work)
    check(run("scan", "-p", p, "--root", root, "--format", "json"), allowed=(0, 1))
    assert snapshot(work) == before


def test_the_bundled_packs_on_a_hostile_root_as_a_real_process(tmp_path):
    root = tmp_path / "root"
    for e in [("/etc/ssh/sshd_config", "fifo", b"", ""), ("/etc/passwd", "symlink", b"", "loop"),
              ("/etc/login.defs", "device", b"", ""), ("/etc/x", "deep", b"", ""), ("/etc/group", "symlink", b"", "../../../../etc/shadow"),
              ("/var/lib/dpkg/status", "file", b"\x00" * 64, ""), ("/etc/sysctl.conf", "file", b"a" * 70_000, "")]:
        make(root, *e)
    before = snapshot(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "secpolicy", "scan", "--root", str(root), "--format", "json"],
        check=False, capture_output=True, text=True, timeout=300, env=dict(os.environ, SECPOLICY_NO_CACHE="1"),
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
    results = {r["rule_id"]: r for r in json.loads(out.stdout)["results"]}
    sshd_errors = [r for r in results.values() if r["status"] == "error" and "sshd_config: is a FIFO" in (r.get("reason") or "")]
    assert sshd_errors, "the FIFO at sshd_config is named in the findings"
    assert snapshot(tmp_path) == before
