"""Directory walk for FIM: yields watched entries in baseline key order (path bytes with '/'
as NUL), reaching every entry through its parent directory's descriptor, never a path."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from secpolicy.fim.config import CompiledRule, FimConfig
from secpolicy.fim.hasher import open_dir_at

__all__ = [
    "MAX_DEPTH",
    "UNLISTED",
    "WalkItem",
    "is_own_file",
    "key_path",
    "open_parent",
    "open_root",
    "path_key",
    "walk",
]

# The directory's own entry was read but its children could not be: the caller must not
# take the absence of its children as removals.
UNLISTED = 1
# Directory levels below a watched path the walk enters (each holds a descriptor open).
MAX_DEPTH = 4096

_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_stat = os.stat
S_ISDIR = stat.S_ISDIR
S_ISREG = stat.S_ISREG

# (key, path, lstat, rule, flags, parent directory fd, name in it, own fd or -1, parent's
# serial). Both descriptors are valid only until the walk is resumed; the parent's serial
# tells directories apart where descriptor numbers are reused.
WalkItem = tuple[bytes, str, os.stat_result, CompiledRule, int, int, str, int, int]


def path_key(path: str) -> bytes:
    """Sort key whose byte order is the walk order: a directory sorts right before its
    descendants because NUL is smaller than any byte a file name can hold."""
    return os.fsencode(path).replace(b"/", b"\0")


def key_path(key: bytes) -> str:
    return os.fsdecode(key.replace(b"\0", b"/"))


def is_own_file(st: os.stat_result) -> bool:
    """What the baseline's own files look like: regular, no setuid/setgid/execute bits. A
    directory or program wearing one of their names is scanned like anything else."""
    return S_ISREG(st.st_mode) and not st.st_mode & 0o7111


def open_root(root_prefix: str) -> int:
    """The directory watched paths are resolved from (the scanned root, trusted as given)."""
    return os.open(root_prefix or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class Unreachable(Exception):
    """A watched path's parent cannot be reached; `missing` when it simply does not exist."""

    def __init__(self, message: str, missing: bool) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


def open_parent(rootfd: int, path: str) -> tuple[int, str]:
    """(descriptor of `path`'s parent directory, last component), every component opened
    relative to the previous one with O_NOFOLLOW: a symlink anywhere on the way is refused,
    so the walk never leaves the root and no path length limit applies. The caller closes
    the descriptor unless it is `rootfd`."""
    parts = path.strip("/").split("/")
    fd = rootfd
    walked = ""
    try:
        for comp in parts[:-1]:
            walked += "/" + comp
            try:
                nfd = open_dir_at(fd, comp)
            except FileNotFoundError:
                raise Unreachable("watched path does not exist", True) from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    try:
                        lst = _stat(comp, dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        lst = None
                    if lst is not None and stat.S_ISLNK(lst.st_mode):
                        raise Unreachable(f"cannot reach: {walked} is a symbolic link (never followed)", False) from None
                    raise Unreachable(f"cannot reach: {walked} is not a directory", False) from None
                raise Unreachable(f"cannot open directory {walked}: {e.strerror}", False) from None
            if fd != rootfd:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != rootfd:
            os.close(fd)
        raise
    return fd, parts[-1]


@dataclass
class _State:
    rules: dict[str, CompiledRule]
    below: frozenset[str]
    error: Callable[[str, str], None]
    note: Callable[[str, str], None]
    ignore: frozenset[str]
    release: Callable[[int], None] = os.close
    visited: set[tuple[int, int]] = field(default_factory=set)
    serial: int = 0

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial


class _Frame:
    """One open directory on the walk's stack."""

    __slots__ = ("cover", "dev", "fd", "it", "kprefix", "prefix", "serial")

    def __init__(self, fd: int, names: list[str], dpath: str, dkey: bytes,
                 cover: CompiledRule | None, dev: int, serial: int) -> None:
        self.fd = fd
        self.it = iter(sorted([(n.encode(_FS_ENCODING, _FS_ERRORS), n) for n in names]))
        self.prefix = dpath if dpath != "/" else ""
        self.kprefix = dkey + b"\0"  # a child's key is this and its name
        self.cover = cover
        self.dev = dev
        self.serial = serial


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
    rootfd: int,
    error: Callable[[str, str], None],
    note: Callable[[str, str], None],
    rules: dict[str, CompiledRule] | None = None,
    ignore: frozenset[str] = frozenset(),
    release: Callable[[int], None] = os.close,
) -> Iterator[WalkItem]:
    """Yield every watched entry in key order, reached from `rootfd`. `error(path, message)`
    receives entries that could not be read; `note(path, message)` entries deliberately not
    entered. Paths in `ignore` (the baseline's own files) are skipped when they look like
    them (`is_own_file`). Every descriptor a yielded item carried is given to `release` when
    the walk is done with it (the caller may keep it open until it has used it, then close it)."""
    rules = rules if rules is not None else config.compiled()
    s = _State(rules, _rule_below(config), error, note, ignore, release)
    paths = sorted(rules)
    roots = [p for p in paths if not any(q != p and (p.startswith(q.rstrip("/") + "/")) for q in paths)]
    for root in sorted(roots, key=path_key):
        yield from _walk_root(s, rootfd, root)


def _walk_root(s: _State, rootfd: int, path: str) -> Iterator[WalkItem]:
    crule = s.rules[path]
    record = crule.selects(path)
    key = path_key(path)
    if path == "/":
        st = os.fstat(rootfd)
        if record:
            yield (key, path, st, crule, 0, -1, "", rootfd, 0)
        cover = crule if crule.rule.recurse and not crule.excluded(path) else None
        try:
            names = os.listdir(rootfd)
        except OSError as e:
            s.error(path, f"cannot list directory: {e.strerror}")
            return
        s.visited.add((st.st_dev, st.st_ino))
        yield from _descend(s, _Frame(rootfd, names, path, b"", cover, st.st_dev, s.next_serial()), own=False)
        return
    try:
        parent, name = open_parent(rootfd, path)
    except Unreachable as e:
        (s.note if e.missing else s.error)(path, e.message)
        return
    serial = s.next_serial()
    try:
        try:
            st = _stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            s.note(path, "watched path does not exist")
            return
        except OSError as e:
            s.error(path, f"cannot stat: {e.strerror}")
            return
        if not S_ISDIR(st.st_mode):
            if record:
                yield (key, path, st, crule, 0, parent, name, -1, serial)
            return
        opened = _open_dir(s, name, parent, path, st)
        if opened is None:
            if record:
                yield (key, path, st, crule, UNLISTED, parent, name, -1, serial)
            return
        fd, names = opened
        frame = _Frame(fd, names, path, key, crule if crule.rule.recurse and not crule.excluded(path) else None,
                       st.st_dev, s.next_serial())
        try:
            if record:
                yield (key, path, st, crule, 0, parent, name, fd, serial)
            s.visited.add((st.st_dev, st.st_ino))
        except BaseException:
            s.release(fd)
            raise
        yield from _descend(s, frame, own=True)
    finally:
        if parent != rootfd:
            s.release(parent)


def _open_dir(s: _State, name: str, dfd: int, path: str, st: os.stat_result) -> tuple[int, list[str]] | None:
    """Open and list a directory without following a symlink put in its place; None (and
    an error reported) when that cannot be done."""
    try:
        fd = open_dir_at(dfd, name)
    except FileNotFoundError:
        s.error(path, "vanished while being scanned")
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            s.error(path, "directory was replaced while being scanned")
        else:
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


def _entering(s: _State, path: str, st: os.stat_result, crule: CompiledRule | None, dev: int,
              depth: int) -> tuple[bool | None, CompiledRule | None]:
    """May the walk enter this directory, and which rule covers its children? None (not
    False) when it must be entered but cannot be: its children are then unknown."""
    child_cover = None
    if crule is not None and crule.rule.recurse and not crule.excluded(path):
        child_cover = crule
    enter = child_cover is not None or path in s.below
    crosses = crule is not None and crule.rule.cross_filesystems
    if enter and st.st_dev != dev and path not in s.rules and not crosses:
        s.note(path, "not entered: another filesystem is mounted here")
        # Still walk through it towards a watched path configured beyond it.
        child_cover = None
        enter = path in s.below
    ident = (st.st_dev, st.st_ino)
    if enter and ident in s.visited:
        s.note(path, "not entered: directory already visited (bind mount or loop)")
        return False, None
    if enter and depth >= MAX_DEPTH:
        s.error(path, f"not entered: directories nested deeper than {MAX_DEPTH} levels")
        return None, None
    return enter, child_cover


def _descend(s: _State, top: _Frame, own: bool) -> Iterator[WalkItem]:
    """Walk below `top` with an explicit stack (no recursion limit; one descriptor per
    level). `own`: the top frame's descriptor is ours to close."""
    rules = s.rules
    below = s.below
    ignore = s.ignore
    release = s.release
    stack = [top]
    try:
        while stack:
            f = stack[-1]
            dfd, prefix, kprefix, cover, dev, serial = f.fd, f.prefix, f.kprefix, f.cover, f.dev, f.serial
            for bname, name in f.it:
                path = prefix + "/" + name
                crule = rules.get(path, cover)
                if crule is None and path not in below:
                    continue
                try:
                    st = _stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    s.error(path, "vanished while being scanned")
                    continue
                except OSError as e:
                    s.error(path, f"cannot stat: {e.strerror}")
                    continue
                if path in ignore and is_own_file(st):
                    continue
                key = kprefix + bname
                mode = st.st_mode
                record = crule is not None and (crule.selects_all or crule.selects(path))
                if not S_ISDIR(mode):
                    if record:
                        yield (key, path, st, crule, 0, dfd, name, -1, serial)  # type: ignore[misc]
                    continue
                enter, child_cover = _entering(s, path, st, crule, dev, len(stack))
                if not enter:
                    if record:
                        flags = UNLISTED if enter is None else 0
                        yield (key, path, st, crule, flags, dfd, name, -1, serial)  # type: ignore[misc]
                    continue
                opened = _open_dir(s, name, dfd, path, st)
                if opened is None:
                    if record:
                        yield (key, path, st, crule, UNLISTED, dfd, name, -1, serial)  # type: ignore[misc]
                    continue
                cfd, sub = opened
                stack.append(_Frame(cfd, sub, path, key, child_cover, st.st_dev, s.next_serial()))
                if record:
                    yield (key, path, st, crule, 0, dfd, name, cfd, serial)  # type: ignore[misc]
                s.visited.add((st.st_dev, st.st_ino))
                break
            else:
                stack.pop()
                if own or stack:
                    release(f.fd)
    finally:
        for f in stack:
            if own or f is not top:
                release(f.fd)
