"""Small helpers shared by the host fact collectors: evidence locations, value coercion,
config-file line reading and the ordering rules of `*.d` drop-in directories."""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from secpolicy.errors import EvaluationError
from secpolicy.facts.inroot import open_in_root

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext

__all__ = [
    "C_SPACE",
    "FNM_PERIOD",
    "SYSTEMD_CONF_PATHS",
    "Assignment",
    "Located",
    "as_value",
    "ascii_lower",
    "at",
    "c_lines",
    "config_parse",
    "config_parse_files",
    "dropin_files",
    "fgets_lines",
    "fgets_pieces",
    "fnmatch_c",
    "logical_lines",
    "mount_flag",
    "parse_int",
    "proc_available",
    "read_regular",
    "read_regular_in_root",
    "run_tool",
    "sbin_tool",
    "split_mount_options",
    "symlink_loop",
    "systemd_conf_files",
    "systemd_lines",
    "text_lines",
]

# isspace() in the C locale: what C parsers call blank (Python's str.strip() and str.split()
# also take \x1c-\x1f, \x85 and Unicode spaces, which none of them do)
C_SPACE = " \t\n\v\f\r"

_INT = re.compile(r"-?\d+\Z")


FNM_PERIOD = 4  # <fnmatch.h>: a leading `.` only matches a `.` in the pattern


@functools.cache
def _libc_fnmatch() -> Callable[[bytes, bytes, int], int] | None:
    import ctypes

    try:
        fn = ctypes.CDLL(None).fnmatch
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast("Callable[[bytes, bytes, int], int]", fn)


def fnmatch_c(pattern: str, name: str, flags: int = 0) -> bool:
    """fnmatch(3) of the C library, as the C tools whose configuration we read call it (a
    backslash quotes, `[!...]`, `[[:alpha:]]`, FNM_PERIOD). Where there is none to call,
    Python's fnmatchcase, which has no quoting or classes."""
    fn = _libc_fnmatch()
    if fn is None:
        if flags & FNM_PERIOD and name.startswith(".") and not pattern.startswith("."):
            return False
        return fnmatch.fnmatchcase(name, pattern)
    return fn(pattern.encode("utf-8", "surrogateescape"), name.encode("utf-8", "surrogateescape"), flags) == 0


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """C's tolower()/strcasecmp() folding: ASCII letters only (`str.lower` folds others too)."""
    return text.translate(_ASCII_LOWER)


# mount(8) (libmount 2.38) applies a mount's options in order: a later `dev` undoes an earlier
# `nodev`, and `user`, `users`, `owner`, `group` set flags of their own; a comma inside double
# quotes (`context="a,b"`) does not split options.
_FLAG_UNDONE_BY = {"dev": "nodev", "suid": "nosuid", "exec": "noexec"}
_FLAGS_IMPLIED = {
    "user": ("nodev", "nosuid", "noexec"),
    "users": ("nodev", "nosuid", "noexec"),
    "owner": ("nodev", "nosuid"),
    "group": ("nodev", "nosuid"),
}
_MOUNT_OPTION = re.compile(r'(?:[^,"]|"[^"]*"?)+')


def split_mount_options(text: str) -> tuple[str, ...]:
    return tuple(_MOUNT_OPTION.findall(text))


def mount_flag(options: Iterable[str], opt: str) -> bool:
    """Whether mount options give `opt`: for nodev, nosuid and noexec as mount(8) applies them
    in order; any other option looked up as written."""
    if opt not in _FLAG_UNDONE_BY.values():
        return opt in options
    state = False
    for o in options:
        if o == opt or opt in _FLAGS_IMPLIED.get(o, ()):
            state = True
        elif _FLAG_UNDONE_BY.get(o) == opt:
            state = False
    return state


def at(path: str, line: int | None = None) -> str:
    """Evidence location `path:line` (or just `path`)."""
    return f"{path}:{line}" if line else path


def as_value(text: str | None) -> int | str | None:
    """A config or /proc value as the policy sees it: an int if it is one, else the string
    with runs of blanks collapsed (so `32768\\t60999` reads `"32768 60999"`)."""
    if text is None:
        return None
    s = " ".join(text.split())
    return int(s) if _INT.match(s) else s


def parse_int(text: str | None, base: int = 10) -> int | None:
    """An integer or None (never an exception): empty shadow fields, "yes", typos."""
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


class Located:
    """Mixin for fact objects: `where(name, *args)` answers from a field -> location map,
    falling back to the object's own source (`_origin`)."""

    _origin: str | None = None
    _sources: Mapping[str, str] = {}

    def where(self, name: str, *args: Any) -> str | None:
        return self._sources.get(name, self._origin)


def c_lines(text: str) -> list[str]:
    """The lines a C reader using fgets() or getline() sees: only `\n` ends a line (never `\r`,
    `\v`, `\f`, `\x1c`-`\x1e`, `\x85`, U+2028 or U+2029, as str.splitlines() has it), and a
    NUL ends the string, hiding the rest of its line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline ending the last line starts no new one
    return [line.split("\0", 1)[0] for line in lines]


def fgets_pieces(text: str, size: int) -> list[tuple[int, bytes]]:
    """(line number, bytes) of each fgets(buf, size) call over the file: a line longer than
    size - 1 bytes comes in pieces (a piece after the first one keeps the line number of the
    line it is part of); a piece holds its `\n` when it reached one."""
    out = []
    data = text.encode("utf-8", "surrogateescape")
    pos, n, room = 0, 1, size - 1
    while pos < len(data):
        cut = data.find(b"\n", pos, pos + room)
        end = cut + 1 if cut != -1 else min(pos + room, len(data))
        out.append((n, data[pos:end]))
        n += cut != -1
        pos = end
    return out


def fgets_lines(text: str, size: int) -> list[tuple[int, str]]:
    """fgets_pieces() as the C strings a reader sees: each piece read as a line of its own,
    its newline dropped, a NUL ending it."""
    return [(n, piece.split(b"\0", 1)[0].rstrip(b"\n").decode("utf-8", "surrogateescape"))
            for n, piece in fgets_pieces(text, size)]


def text_lines(text: str) -> list[str]:
    """The lines of a file as grep, sed or a shell `read` loop see them: only `\n` ends a line
    (a `\r` before it stays, as do `\v`, `\f`, `\x1c`-`\x1e`, `\x85`, U+2028 and U+2029,
    which str.splitlines() would break at), and a final newline starts no new line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def systemd_lines(text: str) -> list[str]:
    """The lines systemd's read_line() sees (fileio.c, read_line_full): `\n`, `\r` and NUL
    each end a line; `\r\n`, `\n\r` and any other run of distinct end markers end just one,
    and nothing joins a NUL."""
    out: list[str] = []
    pos, size = 0, len(text)
    while pos < size:
        start = pos
        while pos < size and text[pos] not in "\n\r\0":
            pos += 1
        out.append(text[start:pos])
        seen = ""
        while pos < size and text[pos] in "\n\r\0" and text[pos] not in seen:
            seen += text[pos]
            pos += 1
            if text[pos - 1] == "\0":
                break
    return out


SYSTEMD_WS = " \t\n\r"  # systemd's WHITESPACE
# What systemd's utf8_is_valid() refuses beyond what Python's decoder does: noncharacters.
# Invalid bytes come here as the surrogates of surrogateescape, and are refused too.
_NOT_UTF8 = re.compile("[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff\U0001fffe\U0001ffff\U0002fffe\U0002ffff"
                       "\U0003fffe\U0003ffff\U0004fffe\U0004ffff\U0005fffe\U0005ffff\U0006fffe\U0006ffff"
                       "\U0007fffe\U0007ffff\U0008fffe\U0008ffff\U0009fffe\U0009ffff\U000afffe\U000affff"
                       "\U000bfffe\U000bffff\U000cfffe\U000cffff\U000dfffe\U000dffff\U000efffe\U000effff"
                       "\U000ffffe\U000fffff\U0010fffe\U0010ffff]")


class Assignment(NamedTuple):
    """One `key=value` systemd's config parser hands on: the physical line it starts on, its
    section (None where the caller takes no sections), key and value."""

    line: int
    section: str | None
    key: str
    value: str


def config_parse(text: str, sections: Container[str] | None) -> tuple[list[Assignment], tuple[int, str] | None]:
    """The assignments of one file as systemd 252's config_parse() (conf-parser.c) reads them,
    and where and why it stopped reading, if it did (line, message; the rest of the file and,
    for the services that read drop-ins, the files after it are then not read).

    Lines end as read_line() ends them; a line whose first non-blank is `#` or `;` is a
    comment, even inside a continuation; a first UTF-8 byte order mark is dropped; an odd
    trailing backslash becomes a blank and joins the next line. Then per logical line: one
    that is not valid UTF-8 or a `[` header without its `]` at the end stops the reading; a
    header names a section kept as written (`[ Journal ]` is not `Journal`), one not in
    `sections` is skipped with its assignments (None: every section is taken); a line without
    `=` or without a key, or outside any section, is skipped. Key and value are stripped of
    systemd's blanks (space, tab, CR, LF: not \v or \f)."""
    out: list[Assignment] = []
    section: str | None = None
    pending: str | None = None  # a line continued by its trailing backslash
    start = n = 0
    bom = False

    def parse_line(p: str) -> str | None:
        nonlocal section
        if _NOT_UTF8.search(p):
            return f"String is not UTF-8 clean, ignoring assignment: {p.strip(SYSTEMD_WS)}"
        line = p.strip(SYSTEMD_WS)
        if not line or line[0] in "#;":
            return None
        if line[0] == "[":
            if line[-1] != "]":
                return f"Invalid section header '{line}'"
            name = line[1:-1]
            section = name if sections is None or name in sections else None
            return None
        key, eq, value = line.partition("=")
        key = key.strip(SYSTEMD_WS)
        if section is not None and eq and key:
            out.append(Assignment(start, section, key, value.strip(SYSTEMD_WS)))
        return None

    for raw in systemd_lines(text):
        n += 1
        first = raw.lstrip(SYSTEMD_WS)[:1]
        if first and first in "#;":
            continue
        if not bom and raw.startswith("\ufeff"):
            raw, bom = raw[1:], True
        if pending is None:
            start = n
        p = raw if pending is None else pending + raw
        if (len(p) - len(p.rstrip("\\"))) % 2:
            pending = p[:-1] + " "
            continue
        pending = None
        why = parse_line(p)
        if why is not None:
            return out, (n, why)
    if pending is not None:
        why = parse_line(pending)
        if why is not None:
            return out, (n + 1, why)
    return out, None


def config_parse_files(
    ctx: FactContext, paths: Iterable[str], sections: Container[str] | None
) -> tuple[list[tuple[str, Assignment]], list[str], tuple[str, str] | None]:
    """config_parse() over a main file and its drop-ins, in the order given, as systemd 252's
    config_parse_many() reads them: a file it stops reading stops the files after it too.
    Returns each assignment with its file, the files read, and where (`file:line`) and why
    systemd stopped, if it did."""
    out: list[tuple[str, Assignment]] = []
    read: list[str] = []
    for path in paths:
        text = ctx.read_text(path)
        if text is None:
            continue
        read.append(path)
        assignments, stopped = config_parse(text, sections)
        out += [(path, a) for a in assignments]
        if stopped is not None:
            return out, read, (at(path, stopped[0]), stopped[1])
    return out, read, None


def logical_lines(
    lines: Iterable[str], *, continuation: bool = False, comment: str = "#", blank: str = C_SPACE
) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of the meaningful lines (as read by c_lines() or
    systemd_lines()): blank and comment lines skipped; with `continuation`, a trailing
    backslash joins the next line (numbered by its first). `blank` is what the reader strips."""
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(lines, 1):
        line = raw.strip(blank)
        if not pending and (not line or (comment and line.startswith(comment))):
            continue
        if continuation and line.endswith("\\"):
            if not pending:
                start = n
            pending.append(line[:-1].strip(blank))
            continue
        if pending:
            pending.append(line)
            joined = " ".join(p for p in pending if p)
            pending = []
            if joined:
                yield start, joined
            continue
        yield n, line
    if pending:
        joined = " ".join(p for p in pending if p)
        if joined:
            yield start, joined


def dropin_files(ctx: FactContext, dirs: Iterable[str], suffix: str) -> list[str]:
    """The systemd/udev/modprobe rule for `*.d` directories: files named `*suffix` from all
    `dirs`, a name in an earlier dir masking the same name in a later one, sorted by name.
    Hidden files (a name starting with `.`) are not read: systemd's conf_files_list() and
    libkmod skip them."""
    chosen: dict[str, str | None] = {}
    for d in dirs:
        for name in ctx.listdir(d):
            if not name.endswith(suffix) or name in chosen or name.startswith("."):
                continue
            path = os.path.join(d, name)
            if is_devnull(ctx, path):  # systemd: a link to /dev/null masks the name
                chosen[name] = None
                continue
            st = ctx.stat(path)
            if st is None or stat.S_ISDIR(st.st_mode):
                continue
            chosen[name] = path
    return [p for n in sorted(chosen) if (p := chosen[n]) is not None]


# systemd 252's CONF_PATHS: where its daemons' configuration files and their drop-ins live,
# highest priority first (a merged-/usr build: no /lib)
SYSTEMD_CONF_PATHS = ("/etc", "/run", "/usr/local/lib", "/usr/lib")


def systemd_conf_files(ctx: FactContext, name: str) -> list[str]:
    """The files of a systemd daemon's configuration `name` (`systemd/journald.conf`) in the
    order systemd 252's daemons read them (config_parse_many_nulstr()): the main file in /etc
    only, then the `name.d/*.conf` drop-ins of all the SYSTEMD_CONF_PATHS, sorted by file name.
    `systemd-analyze cat-config` also shows a main file under /run or /usr/lib where /etc has
    none, but journald, timesyncd and journal-upload 252 never open it."""
    return [f"/etc/{name}"] + dropin_files(ctx, (f"{d}/{name}.d" for d in SYSTEMD_CONF_PATHS), ".conf")


def sbin_tool(name: str) -> str | None:
    """A system tool a fact asks on the live host: on PATH, or in /usr/sbin and /sbin (which a
    user's PATH may lack)."""
    return shutil.which(name, path=os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin")))


def run_tool(command: list[str], what: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    """Run a system tool a fact asks (`nft list ruleset`, `chronyd -p`): its output as text,
    bytes that are not UTF-8 replaced. A tool that cannot be run or does not finish in time
    is an EvaluationError naming `what`; its exit status is the caller's to judge."""
    try:
        return subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EvaluationError(f"{what}: {e}") from None


def real_path(ctx: FactContext, path: str) -> str:
    """Where `path` really lives inside the root (links resolved), as the host would name it."""
    if ctx.root == "/":
        return os.path.realpath(path)
    host = ctx.host_path(path)
    rel = os.path.relpath(host, ctx.root)
    return "/" if rel == "." else "/" + rel


def is_devnull(ctx: FactContext, path: str) -> bool:
    st = ctx.lstat(path)
    if st is None:
        return False
    try:
        return ctx.readlink(path) == "/dev/null"
    except OSError:
        return False


def proc_available(ctx: FactContext, path: str) -> bool:
    """Whether a /proc or /sys path can be read for this scan: always on the live host, and
    under `--root` only where the root carries its own copy (a captured image or fixture)."""
    return ctx.live or ctx.exists(path)


def require_proc(ctx: FactContext, path: str, what: str) -> None:
    if not proc_available(ctx, path):
        ctx.require_live(what)


def read_required(ctx: FactContext, path: str) -> str:
    text = ctx.read_text(path)
    if text is None:
        raise EvaluationError(f"{path}: not found")
    return text


def read_proc(ctx: FactContext, path: str, limit: int = 4 * 1024 * 1024) -> str | None:
    """Text of a /proc or /sys file (or its copy under the root), None if absent."""
    data = ctx.read_bytes(path, limit)
    return None if data is None else data.decode("utf-8", errors="surrogateescape")


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symbolic link",
}
_CHUNK = 65536


def _not_regular(shown: str, st: os.stat_result) -> EvaluationError:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
    return EvaluationError(f"{shown}: is {kind}, not a regular file: not read")


def read_regular(host: str, shown: str, *, limit: int, follow: bool = False) -> bytes | None:
    """The bytes of the regular file at `host` (None if absent), for every fact that reads
    files. A scanned image is hostile: a FIFO would block the read forever and opening a
    device node can act on the device, so the path is first opened with O_PATH (which opens
    nothing), checked with fstat, and only a regular file is then opened for reading, through
    that same descriptor. `follow=False` refuses a final symlink (under --root every link was
    already resolved inside the root, so one appearing now is a swap). Read in chunks: some
    /proc handlers fail a single huge read with ENOMEM."""
    nofollow = 0 if follow else os.O_NOFOLLOW
    try:
        pfd = os.open(host, os.O_PATH | os.O_CLOEXEC | nofollow)
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
        return None
    except OSError as e:
        raise _read_error(shown, e) from None
    return _read_opened(pfd, shown, limit, lambda: os.open(host, _READ_FLAGS | nofollow))


def read_regular_in_root(root: str, path: str, *, limit: int) -> bytes | None:
    """`read_regular` of `path` inside the scanned `root`, resolved as under a chroot, from
    descriptors (inroot.py): no component swapped meanwhile can lead the read out of the root."""
    try:
        pfd = open_in_root(root, path, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _read_error(path, e) from None
    return _read_opened(pfd, path, limit, lambda: open_in_root(root, path, _READ_FLAGS))


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _read_opened(pfd: int, shown: str, limit: int, reopen: Callable[[], int]) -> bytes:
    """Read the regular file an O_PATH descriptor (closed here) names; `reopen()` opens it
    again for reading where there is no /proc (checked again, after)."""
    try:
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(shown, st)
        try:
            fd = os.open(f"/proc/self/fd/{pfd}", _READ_FLAGS)
        except FileNotFoundError:  # no /proc: open the path again, checked again below
            fd = reopen()
    except OSError as e:
        raise _read_error(shown, e) from None
    finally:
        os.close(pfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(shown, st)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise _read_error(shown, e) from None
    finally:
        os.close(fd)
    if size > limit:
        raise EvaluationError(f"{shown}: larger than {limit} bytes, not read")
    return b"".join(chunks)


def symlink_loop(shown: str) -> EvaluationError:
    """ELOOP, said the same way whoever resolved the path (the kernel, or host_path)."""
    return EvaluationError(f"{shown}: too many levels of symbolic links (a symlink loop)")


def _read_error(shown: str, e: OSError) -> EvaluationError:
    if e.errno in (errno.EACCES, errno.EPERM):
        return EvaluationError(f"{shown}: permission denied")
    if e.errno == errno.ELOOP:
        return symlink_loop(shown)
    if e.errno == errno.EISDIR:
        return EvaluationError(f"{shown}: is a directory")
    return EvaluationError(f"{shown}: {e.strerror or e}")
