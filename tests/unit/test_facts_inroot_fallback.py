"""Where the kernel has no openat2 (before Linux 5.6, or a seccomp filter refusing it), facts
under --root resolve paths themselves, from descriptors (inroot.py). Both ways must read a root
alike: the same bytes, entries, link targets, walks and errors, on a tree of awkward links."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from facts_helpers import context, write

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext, inroot
from secpolicy.facts.files import FileInfo, collect_tree
from secpolicy.facts.fs_scan import FsScan
from secpolicy.facts.packages import _verify

PATHS = ["/etc/a.conf", "/etc/link-abs", "/etc/link-rel", "/etc/link-up", "/etc/out", "/etc/out/secret",
         "/etc/loop1", "/etc/loop1/x", "/etc/fifo", "/etc/d", "/etc/dlink", "/etc/dlink/x", "/etc/a.conf/x",
         "/lib/m", "/lib/../etc/a.conf", "/missing", "/etc", "/", "/etc/dlink/", "/etc/a.conf/", "/etc/d/sub/.."]


def awkward_root(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    write(outside, "/secret", "host\n")
    root = tmp_path / "root"
    write(root, "/etc/a.conf", "a\n")
    write(root, "/etc/d/x", "x\n")
    write(root, "/etc/d/sub/z", "z\n")
    os.chmod(write(root, "/etc/d/y", "y\n"), 0o666)
    write(root, "/usr/lib/m", "m\n")
    etc = root / "etc"
    os.symlink("/etc/a.conf", etc / "link-abs")
    os.symlink("../etc/a.conf", etc / "link-rel")
    os.symlink("../../../../etc/a.conf", etc / "link-up")  # `..` stops at the root
    os.symlink(outside, etc / "out")  # the host's directory by name: absent inside the root
    os.symlink("loop2", etc / "loop1")
    os.symlink("loop1", etc / "loop2")
    os.symlink("d", etc / "dlink")
    os.symlink("usr/lib", root / "lib")
    os.mkfifo(etc / "fifo")
    return root


def _ino(st: os.stat_result | None) -> int | None:
    return None if st is None else st.st_ino


# What facts do with a path under the root, each as (context, path) -> something comparable.
OPS: dict[str, Callable[[FactContext, str], Any]] = {
    "read": lambda ctx, p: ctx.read_bytes(p),
    "stat": lambda ctx, p: _ino(ctx.stat(p)),
    "lstat": lambda ctx, p: _ino(ctx.lstat(p)),
    "listdir": lambda ctx, p: ctx.listdir(p),
    "readlink": lambda ctx, p: ctx.readlink(p),
    "target": lambda ctx, p: FileInfo(ctx, p, follow=False).target,
    "tree": lambda ctx, p: [f.path for f in collect_tree(ctx, p)],
    "fs_scan": lambda ctx, p: FsScan(ctx, (p,)).world_writable,
    "verify": lambda ctx, p: _verify(ctx, p, "60b725f10c9c85c70d97880dfe8191b3"),  # the md5 of "a\n"
}


def what_facts_see(root: Path) -> dict[str, Any]:
    ctx = context(root)
    seen: dict[str, Any] = {}
    for p in PATHS:
        for op, fn in OPS.items():
            try:
                seen[f"{op} {p}"] = fn(ctx, p)
            except (EvaluationError, OSError) as e:
                shown = str(e).replace(str(e.filename), "<path>") if isinstance(e, OSError) else str(e)
                seen[f"{op} {p}"] = f"{type(e).__name__}: {shown}"
    return seen


def test_without_openat2_facts_read_a_root_as_with_it(tmp_path, monkeypatch):
    root = awkward_root(tmp_path)
    assert inroot.available()  # this machine's kernel has openat2 (Linux 5.6 and later)
    kernel = what_facts_see(root)
    monkeypatch.setattr(inroot, "available", lambda: False)
    resolved_here = what_facts_see(root)
    assert resolved_here == kernel
    # Not equal by being empty: the links resolve inside the root, the host is never reached.
    assert kernel["read /etc/link-up"] == b"a\n"
    assert kernel["read /lib/../etc/a.conf"] is None  # `..` leaves the link's target, /usr/lib
    assert kernel["read /etc/out/secret"] is None and kernel["listdir /etc/out"] == []
    assert sorted(kernel["tree /etc/dlink"]) == ["/etc/d/sub", "/etc/d/sub/z", "/etc/d/x", "/etc/d/y"]
    assert kernel["fs_scan /etc"] == ("/etc/d/y",)
    assert kernel["readlink /etc/link-rel"] == "../etc/a.conf"
    assert kernel["verify /etc/link-abs"] == "modified" and kernel["verify /etc/a.conf"] is None
    assert "symbolic links" in kernel["read /etc/loop1"]


@pytest.mark.parametrize("errno_name", ["ENOSYS", "EPERM"])
def test_a_kernel_or_filter_refusing_openat2_makes_it_unavailable(monkeypatch, errno_name):
    def refuse(*_: Any) -> int:
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))

    inroot.available.cache_clear()
    monkeypatch.setattr(inroot, "_call", refuse)
    try:
        assert inroot.available() is False
    finally:
        inroot.available.cache_clear()
