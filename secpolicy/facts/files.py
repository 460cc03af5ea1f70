"""File facts: `file(path)` (stat, owner names, mode, content, lines) and `files(pattern)`.
Every value knows where it was read, so evidence can name the file and line."""

from __future__ import annotations

import os
import re
import stat
from functools import cached_property
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.limits import LIMITS
from secpolicy.dsl.regex import compile_regex
from secpolicy.dsl.types import (
    BOOL,
    DURATION,
    INT,
    MODE,
    REGEX,
    SIZE,
    STR,
    ListType,
    Method,
    ObjectType,
)
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import text_lines

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["FILE", "FileInfo", "register"]

FILE = ObjectType(
    "file",
    {
        "path": STR,
        "exists": BOOL,
        "type": STR,
        "mode": MODE,
        "uid": INT,
        "gid": INT,
        "owner": STR,
        "group": STR,
        "size": SIZE,
        "mtime": INT,
        "age": DURATION,
        "content": STR,
        "lines": ListType(STR),
        "target": STR,
        "is_file": BOOL,
        "is_dir": BOOL,
        "is_link": BOOL,
    },
    methods={
        "first": Method((REGEX,), STR, "the first line matching a regex (stripped), or null"),
        "grep": Method((REGEX,), ListType(STR), "all lines matching a regex"),
        "has_line": Method((REGEX,), BOOL, "whether some line matches a regex"),
    },
    doc="a file, directory or link inside the scanned root (not followed if a link)",
    field_docs={"age": "time since the last modification; an error when that lies more than five minutes"
                       " in the future (the clock or the file's time is wrong)"},
)

_CLOCK_SKEW = 300.0  # seconds a modification time may lie ahead of this clock (another host's image)

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}


class FileInfo:
    """A path inside the scanned root. Attributes are read lazily; content only if asked."""

    def __init__(self, ctx: FactContext, path: str, follow: bool = True) -> None:
        self._ctx = ctx
        self.path = os.path.normpath(path)  # as evidence names it
        self._given = path  # as it is opened: the kernel (or the root's resolver) reads `..` and a trailing /
        self._st = ctx.stat(path) if follow else ctx.lstat(path)
        self._lst = ctx.lstat(path) if follow else self._st
        self._line_of: dict[str, int] = {}

    def describe(self) -> str:
        return f"file({self.path!r})"

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("first", "has_line") and args:
            lineno = self._match_line(str(args[0]))
            return f"{self.path}:{lineno}" if lineno else self.path
        return self.path

    @property
    def exists(self) -> bool:
        return self._lst is not None

    @property
    def type(self) -> str | None:
        st = self._lst
        return None if st is None else _TYPES.get(stat.S_IFMT(st.st_mode), "unknown")

    @property
    def mode(self) -> int | None:
        return None if self._st is None else stat.S_IMODE(self._st.st_mode)

    @property
    def uid(self) -> int | None:
        return None if self._st is None else self._st.st_uid

    @property
    def gid(self) -> int | None:
        return None if self._st is None else self._st.st_gid

    @property
    def owner(self) -> str | None:
        return None if self._st is None else _name_of(self._ctx, "/etc/passwd", self._st.st_uid)

    @property
    def group(self) -> str | None:
        return None if self._st is None else _name_of(self._ctx, "/etc/group", self._st.st_gid)

    @property
    def size(self) -> int | None:
        return None if self._st is None else self._st.st_size

    @property
    def mtime(self) -> int | None:
        return None if self._st is None else int(self._st.st_mtime)

    @property
    def age(self) -> float | None:
        """Seconds since the last modification. A time in the future beyond clock skew says
        the clock or the file's time is wrong (or was set): its age cannot be told, and a
        rule on freshness must not count it as new."""
        import time

        if self._st is None:
            return None
        age = time.time() - self._st.st_mtime
        if age < -_CLOCK_SKEW:
            raise EvaluationError(f"{self.path}: modified {-age:.0f} s in the future (mtime {int(self._st.st_mtime)}):"
                                  " the clock or the file's time is wrong, its age cannot be told")
        return max(0.0, age)

    @property
    def is_file(self) -> bool:
        return self._st is not None and stat.S_ISREG(self._st.st_mode)

    @property
    def is_dir(self) -> bool:
        return self._st is not None and stat.S_ISDIR(self._st.st_mode)

    @property
    def is_link(self) -> bool:
        return self._lst is not None and stat.S_ISLNK(self._lst.st_mode)

    @property
    def target(self) -> str | None:
        if not self.is_link:
            return None
        return self._ctx.readlink(self._given)

    @cached_property
    def content(self) -> str | None:
        """The file's text; None when nothing is there, or a directory. A FIFO, a device or a
        socket is an evaluation error saying what is there, never read."""
        if self._st is None or stat.S_ISDIR(self._st.st_mode):
            return None
        return self._ctx.read_text(self._given)

    @cached_property
    def lines(self) -> list[str] | None:
        c = self.content
        return None if c is None else text_lines(c)

    def _match_line(self, regex: str) -> int | None:
        if regex not in self._line_of:
            rx = compile_regex(regex)
            self._line_of[regex] = 0
            for i, line in enumerate(self.lines or (), 1):
                if rx.search(line):
                    self._line_of[regex] = i
                    break
        return self._line_of[regex] or None

    def first(self, regex: str) -> str | None:
        n = self._match_line(regex)
        return None if n is None else (self.lines or [])[n - 1].strip()

    def grep(self, regex: str) -> list[str] | None:
        if self.lines is None:
            return None
        rx = compile_regex(regex)
        return [ln for ln in self.lines if rx.search(ln)]

    def has_line(self, regex: str) -> bool:
        return self._match_line(regex) is not None


def _name_of(ctx: FactContext, db: str, ident: int) -> str | None:
    """uid/gid -> name from the root's own passwd/group (not the scanning host's)."""
    table = ctx.fact("_idmap", (db,))
    return table.get(ident)


def _idmap(ctx: FactContext, db: str) -> dict[int, str]:
    """The name getpwuid()/getgrgid() give for each id: the first entry nss_files reads."""
    from secpolicy.facts.accounts import id_names

    return id_names(ctx.read_text(db) or "", group=db.endswith("group"))


_PATH_SHELLS = "/etc/shells"
_DEFAULT_SHELLS = ("/bin/sh", "/bin/csh")  # glibc's okshells when /etc/shells cannot be opened


def collect_shells(ctx: FactContext) -> tuple[str, ...]:
    """The shells getusershell(3) lists, as glibc's initshells() reads /etc/shells: per
    fgets() line (a NUL ends it early), skip to the first `/` (a `#` first, or no `/`, skips
    the line, and so does a `/` that ends the string, newline-less), then the shell runs up
    to the first C blank or `#`: `/bin/bash -l` lists `/bin/bash`, `/\n` lists `/`."""
    text = ctx.read_text(_PATH_SHELLS)
    if text is None:
        return _DEFAULT_SHELLS
    pieces = text.split("\n")
    out = []
    for i, piece in enumerate(pieces):
        line = (piece if i == len(pieces) - 1 else piece + "\n").split("\0", 1)[0]
        m = _SHELL.match(line)
        if m is not None and m.start(1) + 1 < len(line):
            out.append(m.group(1))
    return tuple(out)


_SHELL = re.compile(r"[^#/]*(/[^ \t\n\v\f\r#]*)")  # the `/` found, then up to a blank or `#`


def collect_file(ctx: FactContext, path: str) -> FileInfo:
    return FileInfo(ctx, path)


def collect_link(ctx: FactContext, path: str) -> FileInfo:
    return FileInfo(ctx, path, follow=False)


def collect_files(ctx: FactContext, pattern: str) -> list[FileInfo]:
    return [FileInfo(ctx, p, follow=False) for p in ctx.glob(pattern)]


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PSEUDO = ("/proc", "/sys")  # listed, never descended into: they are the kernel's, and endless


def collect_tree(ctx: FactContext, top: str) -> list[FileInfo]:
    """Every entry below `top`: a directory's entries in name order, then its subdirectories'
    the same way, depth first (a, b, a/x, a/y, b/z). Links are listed, never followed;
    directories are opened one below the other by descriptor (no path grows past PATH_MAX),
    and a tree deeper than LIMITS.walk_depth is an error naming where, not a hang or a crash."""
    base = ctx.host_path(top)  # only to name entries: the walk starts from open_dir
    rel = os.path.relpath(base, ctx.root)
    inside = "/" + ("" if rel == "." else rel) if ctx.root != "/" else os.path.normpath(base)
    try:
        fd = ctx.open_dir(top)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise EvaluationError(f"tree({top!r}): {e.strerror or e}") from None
    out: list[FileInfo] = []
    # One frame per open directory: (descriptor, its path inside the root, depth, subdirs left)
    stack: list[tuple[int, str, int, list[str]]] = []
    try:
        stack.append((fd, inside, 0, []))
        stack[-1] = (fd, inside, 0, _list(ctx, fd, inside, out))
        while stack:
            fd, here, depth, subdirs = stack[-1]
            if not subdirs:
                os.close(fd)
                stack.pop()
                continue
            name = subdirs.pop()
            path = os.path.join(here, name)
            if path in _PSEUDO:
                continue
            if depth + 1 > LIMITS.walk_depth:
                raise EvaluationError(
                    f"tree({top!r}): more than {LIMITS.walk_depth} directory levels below it at {path}: not walked"
                )
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:  # vanished, or unreadable: say so rather than skip it
                raise EvaluationError(f"tree({top!r}): {path}: {e.strerror or e}") from None
            stack.append((child, path, depth + 1, []))  # held before listing: closed on error
            stack[-1] = (child, path, depth + 1, _list(ctx, child, path, out))
    finally:
        for frame in stack:
            os.close(frame[0])
    return out


def _list(ctx: FactContext, fd: int, here: str, out: list[FileInfo]) -> list[str]:
    """Add the entries of directory `fd` to `out`; return its subdirectories, last first."""
    subdirs = []
    with os.scandir(fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        out.append(FileInfo(ctx, os.path.join(here, entry.name), follow=False))
        if entry.is_dir(follow_symlinks=False):
            subdirs.append(entry.name)
    subdirs.reverse()
    return subdirs


def register(reg: FactRegistry) -> None:
    from secpolicy.dsl.types import ANY

    reg.register("file", collect_file, params=(STR,), returns=FILE, doc="a path, links followed inside the root")
    reg.register("link", collect_link, params=(STR,), returns=FILE, doc="a path, not following a final link")
    reg.register("files", collect_files, params=(STR,), returns=ListType(FILE), doc="paths matching a shell pattern")
    reg.register("tree", collect_tree, params=(STR,), returns=ListType(FILE), doc="every entry below a directory")
    reg.register("login_shells", collect_shells, returns=ListType(STR), doc="the login shells getusershell(3) lists")
    reg.register("_idmap", _idmap, params=(STR,), returns=ANY, doc="internal: id -> name table")
