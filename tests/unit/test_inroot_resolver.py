"""Without openat2, inroot.py resolves a path inside a root itself, one component at a time
from descriptors. The kernel's openat2(RESOLVE_IN_ROOT) is the oracle: both must open the same
inode, or fail with the same errno, for every path and open flag, on a tree of awkward links."""

from __future__ import annotations

import errno
import os
import random
import stat
from pathlib import Path

import pytest

from secpolicy.facts import inroot

FLAGS = {
    "O_PATH": os.O_PATH,
    "O_PATH|O_NOFOLLOW": os.O_PATH | os.O_NOFOLLOW,
    "O_RDONLY": os.O_RDONLY | os.O_NONBLOCK,  # a FIFO opens without waiting for a writer
    "O_RDONLY|O_NOFOLLOW": os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW,
    "O_DIRECTORY": os.O_RDONLY | os.O_DIRECTORY,
    "O_DIRECTORY|O_NOFOLLOW": os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
}


def link_maze(tmp_path: Path) -> tuple[Path, list[str]]:
    """(a root, the names in it): directories, a file, a FIFO, and links of every kind:
    relative, absolute, `..` past the root, to a file, to a directory, dangling, with a
    trailing slash, to the scanning host's directory, a loop, and chains of 40 and 41 links
    (the kernel follows at most 40 in one lookup)."""
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    root = tmp_path / "root"
    for d in ("a/b/c", "usr/lib", "e"):
        (root / d).mkdir(parents=True)
    (root / "a" / "f").write_text("f\n")
    (root / "a" / "b" / "g").write_text("g\n")
    (root / os.fsdecode(b"a/n\xffx")).mkdir()  # a name that is not UTF-8
    os.symlink(os.fsdecode(b"n\xffx"), root / "a" / "latin1")
    os.mkfifo(root / "a" / "fifo")
    links = {
        "a/rel": "b", "a/abs": "/a/b", "a/up": "../../../../a", "a/tofile": "f", "a/dangling": "nowhere",
        "a/slash": "b/", "a/fslash": "f/", "a/dot": "b/.", "a/dotdot": "b/..", "a/host": str(outside),
        "a/loop1": "loop2", "a/loop2": "loop1", "lib": "usr/lib", "a/b/back": "../..", "a/b/c/top": "/",
        "a/tofifo": "fifo",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    for n, name in ((40, "chain40"), (41, "chain41")):
        os.symlink("/a/f", root / "e" / f"{name}-0")
        for i in range(1, n):
            os.symlink(f"{name}-{i - 1}", root / "e" / f"{name}-{i}")
    extra = {"b", "c", "f", "g", "fifo", "usr", "e", "latin1", "chain40-39", "chain41-40", "secret"}
    names = sorted({p for name in links for p in name.split("/")} | extra)
    return root, names


def outcome(root: Path, path: str, flags: int) -> tuple[object, ...]:
    """(dev, ino, file type) of what open_in_root opened, or the errno."""
    try:
        fd = inroot.open_in_root(str(root), path, flags)
    except OSError as e:
        return ("error", errno.errorcode[e.errno])
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode))
    finally:
        os.close(fd)


def both_ways(root: Path, path: str, flags: int, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    kernel = outcome(root, path, flags)
    with monkeypatch.context() as m:
        m.setattr(inroot, "available", lambda: False)
        here = outcome(root, path, flags)
    return kernel, here


FIXED = ["/", "/a", "/a/", "/a/f", "/a/f/", "/a/rel", "/a/rel/", "/a/rel/g", "/a/abs/g", "/a/up/f", "/a/up/b/../f",
         "/a/tofile", "/a/tofile/", "/a/dangling", "/a/dangling/", "/a/slash", "/a/slash/g", "/a/fslash",
         "/a/dot", "/a/dotdot/f", "/a/host", "/a/host/secret", "/a/loop1", "/a/loop1/x", "/lib", "/lib/..",
         "/lib/../lib", "/a/b/back/a/f", "/a/b/c/top/a", "/a/b/c/top/..", "/..", "/../..", "/a/..", "/a/.",
         "/a/./b//g", "/a/fifo", "/a/tofifo", "/e/chain40-39", "/e/chain41-40", "/e/chain40-39/", "/missing",
         "/missing/x", "/a/f/x", "/a/b/c/../../f", "/a/latin1", "/a/latin1/..", os.fsdecode(b"/a/n\xffx/")]


@pytest.mark.parametrize("flag_name", sorted(FLAGS))
def test_resolving_by_descriptors_opens_what_openat2_opens(tmp_path, monkeypatch, flag_name):
    assert inroot.available()  # this machine's kernel has openat2: the oracle is there
    root, _ = link_maze(tmp_path)
    flags = FLAGS[flag_name]
    differ = {p: pair for p in FIXED if (pair := both_ways(root, p, flags, monkeypatch))[0] != pair[1]}
    assert differ == {}
    # Not equal by both failing: what each path must give, from the kernel's answers.
    seen = {p: both_ways(root, p, flags, monkeypatch)[0] for p in FIXED}
    f = os.lstat(root / "a" / "f")
    assert seen["/a/up/f"][:2] == seen["/a/tofile"][:2] or flags & os.O_NOFOLLOW
    assert seen["/a/up/f"][:2] == (f.st_dev, f.st_ino) or flags & os.O_DIRECTORY
    assert seen["/a/host/secret"] == ("error", "ENOENT")  # the host's directory is not in the root
    assert seen["/e/chain41-40"] == ("error", "ELOOP") or flags & os.O_NOFOLLOW
    assert seen["/e/chain40-39"] == seen["/a/f"] or flags & os.O_NOFOLLOW


def test_random_paths_resolve_alike_both_ways(tmp_path, monkeypatch):
    """Seeded random paths over the maze's names, `.`, `..` and trailing slashes."""
    root, names = link_maze(tmp_path)
    vocab = [*names, ".", "..", "..", "a", "b"]
    rng = random.Random(20261203)
    differ = {}
    kinds = set()
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(1500):
        path = "/" + "/".join(rng.choice(vocab) for _ in range(rng.randint(1, 5))) + rng.choice(["", "", "/"])
        flags = FLAGS[rng.choice(sorted(FLAGS))]
        kernel, here = both_ways(root, path, flags, monkeypatch)
        kinds.add(kernel[0] if kernel[0] == "error" else "opened")
        if kernel != here:
            differ[(path, flags)] = (kernel, here)
    assert differ == {}
    assert kinds == {"error", "opened"}
    assert len(os.listdir("/proc/self/fd")) == fds  # every descriptor of the way was closed
