"""Differential test of secpolicy FIM against AIDE on randomly mutated trees (fixed seeds).

A tree of about 300 entries (files of several sizes, empty and sparse ones, directories,
dangling/looping/directory symlinks, hard links, FIFOs, setuid/setgid/sticky bits, ACLs,
user xattrs, file capabilities, immutable and append-only flags, other owners, names with
spaces, a newline, non-UTF-8 bytes, 250-byte names) is baselined by both tools with the same
attributes, mutated several ways at once, then checked by both. Added, removed and changed
entries must agree attribute by attribute, except where docs/fim.md documents a difference:

- AIDE's `perm` is `ls -l`'s string (the file type letter included) and its `ACL` shows the
  entries derived from the mode: both also change with `ftype` or `p` alone;
- AIDE's `XAttrs` includes the ACL, capability and SELinux xattrs secpolicy splits out;
- AIDE does not print `Lname` when an entry becomes a symlink (secpolicy shows `l` as new);
- AIDE does not watch names that are not valid UTF-8 (its PCRE2 rules do not match them:
  `aide -L debug` says "does not match regex"): secpolicy does, so those are held to the
  ground truth of the mutations only.

Every mutation must also show in secpolicy's report as the attribute it changes (ground
truth), so an agreement of two tools that both missed something fails too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from secpolicy import fim

AIDE = shutil.which("aide")
TOOLS = [shutil.which(t) for t in ("setfacl", "setfattr", "chattr")]
pytestmark = [
    pytest.mark.skipif(AIDE is None, reason="the aide binary is not installed (apt-get install aide)"),
    pytest.mark.skipif(None in TOOLS, reason="setfacl, setfattr and chattr are needed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="chown, chattr and security.capability need root"),
]

SEEDS = (11, 23, 37, 41)
MUTATIONS_PER_SEED = 30
AIDE_ATTRS = "p+ftype+i+l+n+u+g+s+m+c+sha256+acl+selinux+xattrs+e2fsattrs+caps"  # what R is here
CONFIG = "version: 1\nname: probe\nhash: sha256\npaths:\n  - path: /w\n    attrs: R\n"
# vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE
CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)

# AIDE's JSON report keys -> the secpolicy attributes that cover them.
AIDE_TO_OURS: dict[str, set[str]] = {
    "file_type": {"ftype"},
    "link_name": {"l"},
    "size": {"s"},
    "perm": {"p", "ftype"},
    "uid": {"u"},
    "gid": {"g"},
    "inode": {"i"},
    "link_count": {"n"},
    "modify_time": {"m"},
    "change_time": {"c"},
    "sha256": {"sha256"},
    "acl": {"acl", "p", "ftype"},
    "xattrs": {"xattrs", "caps", "acl", "selinux"},
    "e2fsattrs": {"e2fsattrs"},
    "caps": {"caps"},
    "selinux": {"selinux"},
}

# mutation -> the secpolicy attributes it must show (at least)
EXPECTED: dict[str, set[str]] = {
    "content_keep_mtime": {"sha256", "c"}, "mtime_only": {"m", "c"}, "ctime_only": {"c"},
    "mode": {"p", "c"}, "owner": {"u", "c"}, "group": {"g", "c"}, "symlink_owner": {"u", "g"},
    "acl": {"acl", "c"}, "acl_rm": {"acl", "c"}, "default_acl": {"acl", "c"},
    "xattr": {"xattrs", "c"}, "xattr_value": {"xattrs", "c"}, "xattr_rm": {"xattrs", "c"},
    "caps": {"caps", "c"}, "caps_rm": {"caps", "c"},
    "flag_i": {"e2fsattrs", "c"}, "flag_a": {"e2fsattrs", "c"}, "dir_flag": {"e2fsattrs", "c"},
    "rename_replace": {"i", "c"}, "link_add": {"n", "c"}, "link_rm": {"n", "c"},
    "file_to_symlink": {"ftype", "l"}, "dir_to_file": {"ftype"}, "fifo_to_file": {"ftype"},
    "symlink_target": {"l"}, "truncate": {"s", "sha256"}, "sparse_extend": {"s", "sha256"},
    "fill_hole": {"m", "c"},
}
KINDS = sorted([*EXPECTED, "delete", "add"])


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def build(w: Path, rng: random.Random) -> None:
    w.mkdir(parents=True)
    for d in range(6):
        dd = w / f"d{d}"
        dd.mkdir()
        for i in range(30):
            p = dd / f"f{i}"
            kind = rng.choice(["empty", "small", "mid", "big", "sparse"])
            if kind == "sparse":
                with open(p, "wb") as f:
                    f.write(b"head")
                    f.seek(1 << 20)
                    f.write(b"tail")
            else:
                size = {"empty": (0, 0), "small": (1, 100), "mid": (5000, 70000), "big": (70000, 200000)}[kind]
                p.write_bytes(rng.randbytes(rng.randint(*size)))
        (dd / "sub").mkdir()
        for i in range(5):
            (dd / "sub" / f"s{i}").write_text(f"s{i}\n")
        os.symlink("f0", dd / "lnk")
        os.symlink("nowhere", dd / "dangling")
        os.symlink("sub", dd / "dirlnk")
        os.symlink("loop", dd / "loop")
        os.mkfifo(dd / "fifo")
        os.link(dd / "f1", dd / "hard1")
    (w / "with space").write_text("space\n")
    (w / "new\nline").write_text("newline\n")
    with open(os.path.join(os.fsencode(w), b"bad\xffname"), "wb") as f:
        f.write(b"not utf-8 named\n")
    (w / ("L" * 250)).write_text("long\n")
    for name, mode in (("suid", 0o4755), ("sgid", 0o2755), ("sticky", 0o1777)):
        (w / name).write_text(name)
        os.chmod(w / name, mode)
    (w / "owned").write_text("o")
    os.chown(w / "owned", 1234, 5678)
    (w / "acl").write_text("a")
    _run("setfacl", "-m", "u:1234:r", str(w / "acl"))
    (w / "dacl").mkdir()
    _run("setfacl", "-d", "-m", "u:1234:rx", str(w / "dacl"))
    (w / "xa").write_text("x")
    os.setxattr(w / "xa", "user.k", b"v1")
    (w / "cap").write_text("c")
    os.setxattr(w / "cap", "security.capability", CAP)
    for name, flag in (("imm", "+i"), ("app", "+a")):
        (w / name).write_text(name)
        _run("chattr", flag, str(w / name))


def _entries(w: Path) -> list[Path]:
    out = []
    for dp, dn, fn in os.walk(w):
        out.extend(Path(dp) / n for n in fn + dn)
    return sorted(out)


def _fits(m: str, p: Path, st: os.stat_result) -> bool:
    reg, dirp, lnk = stat.S_ISREG(st.st_mode), stat.S_ISDIR(st.st_mode), stat.S_ISLNK(st.st_mode)
    special = {
        "dir_to_file": dirp, "add": dirp, "dir_flag": dirp, "default_acl": dirp,
        "symlink_target": lnk, "symlink_owner": lnk, "fifo_to_file": stat.S_ISFIFO(st.st_mode),
        "delete": not dirp, "link_rm": reg and st.st_nlink > 1,
        "mode": not lnk, "ctime_only": not lnk, "owner": not lnk, "group": not lnk, "mtime_only": not lnk,
        "acl": reg or dirp, "xattr": reg or dirp,
        "xattr_value": p.name == "xa", "xattr_rm": p.name == "xa", "acl_rm": p.name in ("acl", "dacl"),
        "caps_rm": p.name == "cap",
        "content_keep_mtime": reg and st.st_nlink == 1 and st.st_size > 0,
        "truncate": reg and st.st_nlink == 1 and st.st_size > 1,
        "fill_hole": reg and st.st_size > 1 << 20 and st.st_blocks * 512 < st.st_size,
    }
    return special.get(m, reg and st.st_nlink == 1)


def _keep_mtime(p: Path, st: os.stat_result) -> None:
    """Same size, mtime put back (`touch -r`): only ctime and the content tell."""
    data = p.read_bytes()
    p.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _rename_replace(p: Path) -> None:
    """A new inode with the same content and times."""
    tmp = p.with_name(p.name + ".tmp")
    shutil.copy2(p, tmp)
    os.rename(tmp, p)


def _retype(p: Path, to: str) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()
    if to == "file":
        p.write_text("now a file")
    else:
        os.symlink(to, p)


def _fill_hole(p: Path) -> None:
    """Zeros written into the hole: same content, more blocks."""
    with open(p, "r+b") as f:
        f.seek(4096)
        f.write(bytes(8192))


def _link_rm(p: Path, st: os.stat_result) -> None:
    next(q for q in _entries(p.parent) if q != p and q.lstat().st_ino == st.st_ino).unlink()


_ACTIONS: dict[str, Callable[[Path, os.stat_result, random.Random], object]] = {
    "content_keep_mtime": lambda p, st, r: _keep_mtime(p, st),
    "mtime_only": lambda p, st, r: os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - 86400 * 10**9)),
    "ctime_only": lambda p, st, r: os.chmod(p, stat.S_IMODE(st.st_mode)),
    "mode": lambda p, st, r: os.chmod(p, stat.S_IMODE(st.st_mode) ^ 0o020),
    "owner": lambda p, st, r: os.chown(p, 4321, -1),
    "group": lambda p, st, r: os.chown(p, -1, 8765),
    "symlink_owner": lambda p, st, r: os.lchown(p, 4321, 8765),
    "acl": lambda p, st, r: _run("setfacl", "-m", "u:777:r", str(p)),
    "acl_rm": lambda p, st, r: _run("setfacl", "-b", "-k", str(p)),
    "default_acl": lambda p, st, r: _run("setfacl", "-d", "-m", "g:55:rx", str(p)),
    "xattr": lambda p, st, r: os.setxattr(p, "user.probe", b"x"),
    "xattr_value": lambda p, st, r: os.setxattr(p, "user.k", b"v2"),
    "xattr_rm": lambda p, st, r: os.removexattr(p, "user.k"),
    "caps": lambda p, st, r: os.setxattr(p, "security.capability", CAP),
    "caps_rm": lambda p, st, r: os.removexattr(p, "security.capability"),
    "flag_i": lambda p, st, r: _run("chattr", "+i", str(p)),
    "flag_a": lambda p, st, r: _run("chattr", "+a", str(p)),
    "dir_flag": lambda p, st, r: _run("chattr", "+a", str(p)),
    "rename_replace": lambda p, st, r: _rename_replace(p),
    "link_add": lambda p, st, r: os.link(p, p.with_name(p.name + ".hl")),
    "link_rm": lambda p, st, r: _link_rm(p, st),
    "file_to_symlink": lambda p, st, r: _retype(p, "target"),
    "dir_to_file": lambda p, st, r: _retype(p, "file"),
    "fifo_to_file": lambda p, st, r: _retype(p, "file"),
    "symlink_target": lambda p, st, r: _retype(p, "other"),
    "truncate": lambda p, st, r: os.truncate(p, st.st_size // 2),
    "sparse_extend": lambda p, st, r: os.truncate(p, st.st_size + (1 << 21)),
    "fill_hole": lambda p, st, r: _fill_hole(p),
    "delete": lambda p, st, r: p.unlink(),
    "add": lambda p, st, r: (p / f"added{r.randint(0, 999)}").write_text("new"),
}


def mutate(w: Path, rng: random.Random, n: int) -> list[tuple[str, Path]]:
    """Apply `n` random mutations, each to its own entry (none nested in another's)."""
    cands = [p for p in _entries(w) if p.name not in ("imm", "app")]
    rng.shuffle(cands)
    used: list[Path] = []
    done: list[tuple[str, Path]] = []
    for _ in range(n):
        m = rng.choice(KINDS)
        for p in cands:
            if any(p == u or u in p.parents or p in u.parents for u in used) or not os.path.lexists(p):
                continue
            st = p.lstat()
            if _fits(m, p, st):
                if m == "link_rm":  # removes the other name: one not mutated already
                    names = [q for q in _entries(p.parent) if q.lstat().st_ino == st.st_ino]
                    if any(q in used for q in names):
                        continue
                    used.extend(names)
                used.append(p)
                _ACTIONS[m](p, st, rng)
                done.append((m, p))
                break
    return done


@pytest.fixture
def work(tmp_path: Path):
    yield tmp_path
    subprocess.run(["chattr", "-R", "-i", "-a", str(tmp_path)], capture_output=True, check=False)


def _aide(conf: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert AIDE is not None
    return subprocess.run([AIDE, "-c", str(conf), *args], capture_output=True, timeout=60, check=False)


def _utf8(path: str) -> bool:
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_fim_agrees_with_aide_on_random_mutations(work: Path):
    probe = work / "flagprobe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode:
        pytest.skip("the temporary directory's filesystem has no chattr flags")
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
    problems: list[str] = []
    seen: set[str] = set()
    for seed in SEEDS:
        rng = random.Random(seed)
        t = work / f"seed{seed}"
        root = t / "r"
        build(root / "w", rng)
        conf = t / "aide.conf"
        conf.write_text(
            f"database_in=file:{t}/aide.db\ndatabase_out=file:{t}/aide.db.new\ngzip_dbout=no\n"
            f"report_format=json\nreport_url=file:{t}/aide.json\nroot_prefix={root}\n/w {AIDE_ATTRS}\n"
        )
        (t / "fim.yaml").write_text(CONFIG)
        config = fim.load_config(t / "fim.yaml")
        key = fim.Key(b"k" * 32, "test")
        assert _aide(conf, "--init").returncode == 0
        os.replace(t / "aide.db.new", t / "aide.db")
        fim.init_baseline(config, t / "fim.db", root, key)
        time.sleep(1.02 - time.time() % 1)  # AIDE keeps whole seconds: change in a later one
        done = mutate(root / "w", rng, MUTATIONS_PER_SEED)
        seen.update(m for m, _ in done)
        assert _aide(conf, "--check").returncode != 0
        rep = json.loads((t / "aide.json").read_text("utf-8", "surrogateescape"))
        ours = fim.check(config, t / "fim.db", root, key, record=False)
        assert not ours.errors, ours.errors

        def tell(what: str, tag: str = str(seed)) -> None:
            problems.append(f"seed {tag}: {what}")

        ours_added = {e.path for e in ours.added if _utf8(e.path)}
        ours_removed = {e.path for e in ours.removed if _utf8(e.path)}
        if set(rep.get("added", {})) != ours_added:
            tell(f"added: AIDE {sorted(rep.get('added', {}))}, secpolicy {sorted(ours_added)}")
        if set(rep.get("removed", {})) != ours_removed:
            tell(f"removed: AIDE {sorted(rep.get('removed', {}))}, secpolicy {sorted(ours_removed)}")
        changed = {e.path: {c.name for c in e.changes} for e in ours.changed}
        details = rep.get("details", {})
        for path in sorted(set(changed) | set(details)):
            if not _utf8(path):
                continue
            theirs, mine = details.get(path, {}), changed.get(path, set())
            for a in theirs:
                if not AIDE_TO_OURS.get(a, {a}) & mine:
                    tell(f"{path!r}: AIDE reports {a} {theirs[a]}, secpolicy {sorted(mine)}")
            for a in mine:
                if a == "l" and "file_type" in theirs:
                    continue
                if not any(a in AIDE_TO_OURS.get(x, {x}) for x in theirs):
                    tell(f"{path!r}: secpolicy reports {a}, AIDE {sorted(theirs)}")
        # Ground truth: each mutation shows as what it changed.
        for m, p in done:
            rel = "/" + os.path.relpath(p, root)
            if m == "delete":
                if rel not in {e.path for e in ours.removed}:
                    tell(f"{rel!r} deleted, not reported removed")
            elif m != "add" and not EXPECTED[m] <= changed.get(rel, set()):
                tell(f"{rel!r} {m}: expected {sorted(EXPECTED[m])}, secpolicy {sorted(changed.get(rel, set()))}")
    assert not problems, "\n".join(problems)
    # The seeds cover most kinds of mutation (a guard against a generator that does nothing).
    assert len(seen) >= len(KINDS) * 3 // 4, sorted(set(KINDS) - seen)
