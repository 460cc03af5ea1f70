"""Directory walk for FIM: yields watched entries in baseline key order (path bytes with '/'
as NUL), never following symlinks, staying on one filesystem, and surviving loops and races."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from secpolicy.fim.config import CompiledRule, FimConfig

__all__ = ["UNLISTED", "WalkItem", "fs_path", "key_path", "path_key", "walk"]

# The directory's own entry was read but its children could not be: the caller must not
# take the absence of its children as removals.
UNLISTED = 1

_NOATIME = getattr(os, "O_NOATIME", 0)
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_stat = os.stat
S_ISDIR = stat.S_ISDIR
S_ISLNK = stat.S_ISLNK
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | _NOATIME

# (key, path, lstat, rule, flags, link target)
WalkItem = tuple[bytes, str, os.stat_result, CompiledRule, int, bytes]


def path_key(path: str) -> bytes:
    """Sort key whose byte order is the walk order: a directory sorts right before its
    descendants because NUL is smaller than any byte a file name can hold."""
    return os.fsencode(path).replace(b"/", b"\0")


def key_path(key: bytes) -> str:
    return os.fsdecode(key.replace(b"\0", b"/"))


def fs_path(root_prefix: str, path: str) -> str:
    return root_prefix + path if root_prefix else path


@dataclass
class _State:
    root_prefix: str
    rules: dict[str, CompiledRule]
    below: frozenset[str]
    error: Callable[[str, str], None]
    note: Callable[[str, str], None]
    visited: set[tuple[int, int]]
    ignore: frozenset[str]
    ignore_prefix: str | None


def _rule_below(config: FimConfig) -> frozenset[str]:
    """Every strict ancestor of a watched path: directories the walk must enter even when
    no rule covers them."""
    out: set[str] = set()
    for r in config.rules:
        p = r.path
        while p != "/":
            p = os.path.dirname(p)
            out.add(p)
    return frozenset(out)


def walk(
    config: FimConfig,
    root_prefix: str,
    error: Callable[[str, str], None],
    note: Callable[[str, str], None],
    rules: dict[str, CompiledRule] | None = None,
    ignore: frozenset[str] = frozenset(),
    ignore_prefix: str | None = None,
) -> Iterator[WalkItem]:
    """Yield every watched entry in key order. `error(path, message)` receives entries that
    could not be read; `note(path, message)` receives entries deliberately not entered.
    Paths in `ignore` or starting with `ignore_prefix` (the baseline's own files) are skipped."""
    rules = rules if rules is not None else config.compiled()
    st_ = _State(root_prefix, rules, _rule_below(config), error, note, set(), ignore, ignore_prefix)
    paths = sorted(rules)
    roots = [p for p in paths if not any(q != p and (p.startswith(q.rstrip("/") + "/")) for q in paths)]
    for root in sorted(roots, key=path_key):
        yield from _walk_root(st_, root)


def _walk_root(s: _State, path: str) -> Iterator[WalkItem]:
    fspath = fs_path(s.root_prefix, path) or "/"
    try:
        st = os.lstat(fspath)
    except FileNotFoundError:
        s.note(path, "watched path does not exist")
        return
    except OSError as e:
        s.error(path, f"cannot stat: {e.strerror}")
        return
    crule = s.rules[path]
    key = path_key(path)
    record = crule.selects(path)
    if not stat.S_ISDIR(st.st_mode):
        if record:
            link = b""
            if stat.S_ISLNK(st.st_mode):
                try:
                    link = os.fsencode(os.readlink(fspath))
                except OSError as e:
                    s.error(path, f"cannot read link: {e.strerror}")
            yield (key, path, st, crule, 0, link)
        return
    opened = _open_dir(s, fspath, None, path, st)
    if opened is None:
        if record:
            yield (key, path, st, crule, UNLISTED, b"")
        return
    fd, names = opened
    try:
        if record:
            yield (key, path, st, crule, 0, b"")
        cover = crule if crule.rule.recurse and not crule.excluded(path) else None
        s.visited.add((st.st_dev, st.st_ino))
        yield from _walk_dir(s, fd, names, path, b"" if path == "/" else key, cover, st.st_dev)
    finally:
        os.close(fd)


def _open_dir(
    s: _State, name: str, dfd: int | None, path: str, st: os.stat_result
) -> tuple[int, list[str]] | None:
    """Open and list a directory without following a symlink put in its place; None (and
    an error reported) when that cannot be done."""
    try:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
            fd = os.open(name, _DIR_FLAGS & ~_NOATIME, dir_fd=dfd)
    except FileNotFoundError:
        s.error(path, "vanished while being scanned")
        return None
    except OSError as e:
        s.error(path, f"cannot open directory: {e.strerror}")
        return None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            s.error(path, "directory was replaced while being scanned")
            os.close(fd)
            return None
        return fd, os.listdir(fd)
    except OSError as e:
        os.close(fd)
        s.error(path, f"cannot list directory: {e.strerror}")
        return None


def _walk_dir(
    s: _State,
    dfd: int,
    names: list[str],
    dpath: str,
    dkey: bytes,
    cover: CompiledRule | None,
    dev: int,
) -> Iterator[WalkItem]:
    prefix = dpath if dpath != "/" else ""
    rules = s.rules
    below = s.below
    ignore = s.ignore
    ignore_prefix = s.ignore_prefix
    items = sorted([(n.encode(_FS_ENCODING, _FS_ERRORS), n) for n in names])
    for bname, name in items:
        path = prefix + "/" + name
        crule = rules.get(path, cover)
        if crule is None and path not in below:
            continue
        if path in ignore or (ignore_prefix is not None and path.startswith(ignore_prefix)):
            continue
        try:
            st = _stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            s.error(path, "vanished while being scanned")
            continue
        except OSError as e:
            s.error(path, f"cannot stat: {e.strerror}")
            continue
        key = dkey + b"\0" + bname
        mode = st.st_mode
        record = crule is not None and (crule.selects_all or crule.selects(path))
        if not S_ISDIR(mode):
            if record:
                link = b""
                if S_ISLNK(mode):
                    try:
                        link = os.fsencode(os.readlink(name, dir_fd=dfd))
                    except OSError as e:
                        s.error(path, f"cannot read link: {e.strerror}")
                yield (key, path, st, crule, 0, link)  # type: ignore[misc]
            continue
        # A directory: are its children watched, and may the walk enter it?
        child_cover = None
        if crule is not None and crule.rule.recurse and not crule.excluded(path):
            child_cover = crule
        enter = child_cover is not None or path in below
        crosses = crule is not None and crule.rule.cross_filesystems
        if enter and st.st_dev != dev and path not in rules and not crosses:
            s.note(path, "not entered: another filesystem is mounted here")
            # Still walk through it towards a watched path configured beyond it.
            child_cover = None
            enter = path in below
        ident = (st.st_dev, st.st_ino)
        if enter and ident in s.visited:
            s.note(path, "not entered: directory already visited (bind mount or loop)")
            enter = False
        if not enter:
            if record:
                yield (key, path, st, crule, 0, b"")  # type: ignore[misc]
            continue
        opened = _open_dir(s, name, dfd, path, st)
        if opened is None:
            if record:
                yield (key, path, st, crule, UNLISTED, b"")  # type: ignore[misc]
            continue
        fd, sub = opened
        try:
            if record:
                yield (key, path, st, crule, 0, b"")  # type: ignore[misc]
            s.visited.add(ident)
            yield from _walk_dir(s, fd, sub, path, key, child_cover, st.st_dev)
        finally:
            os.close(fd)
