"""Safe output files for every writer: a regular file is replaced atomically (temporary file in
the same directory, fsync, rename) and created private (0600, directories 0700) whatever the
umask; character devices, FIFOs and standard output are written through; a final-component
symbolic link is refused unless following links was asked for (`secpolicy --follow-symlinks`).
Live records that are followed while they grow (`stream=True`) are written in place.

A write that fails (full disk, quota, I/O error) raises `OutputError` (exit 2, `cannot write
PATH (no space left on device)`) and leaves the previous file as it was."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import sys
import tempfile
from collections.abc import Iterable
from typing import IO, Any, Self, cast

from secpolicy.errors import InputError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "OutputError",
    "OutputFile",
    "check_directory",
    "check_given",
    "check_input",
    "check_not_input",
    "check_readable",
    "check_sqlite_companions",
    "check_stdout",
    "check_writable",
    "close_after_failure",
    "create_private",
    "describe",
    "follow_symlinks",
    "is_terminal",
    "make_private_dir",
    "open_output",
    "reader_gone",
    "same_file",
    "set_follow_symlinks",
    "stdout_closed",
    "stdout_reader_gone",
    "write_bytes",
    "write_text",
]

FILE_MODE = 0o600  # results, reports, alerts and stores describe the host's weaknesses
DIR_MODE = 0o700

# Names that mean "a descriptor this process already holds": written through, never replaced.
_STD_ALIASES = {"-": 1, "/dev/stdout": 1, "/dev/stderr": 2}
_FD_PREFIXES = ("/dev/fd/", "/proc/self/fd/")

_settings = {"follow_symlinks": False}
_state = {"stdout_closed": False}


class OutputError(InputError):
    """An output that cannot be written: `cannot write PATH (reason)`, exit 2."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write {path} ({reason})")
        self.target = path
        self.reason = reason


def set_follow_symlinks(value: bool) -> None:
    """Let writers follow a final-component symbolic link and replace the file it points to
    (the CLI's `--follow-symlinks`). Off by default: a link is refused."""
    _settings["follow_symlinks"] = bool(value)


def follow_symlinks() -> bool:
    return _settings["follow_symlinks"]


def stdout_closed() -> bool:
    """True once a write to standard output found the reader gone (`| head`)."""
    return _state["stdout_closed"]


def describe(exc: OSError) -> str:
    """`no space left on device`, `permission denied`, ...: an OSError as a message says it."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    text = exc.strerror or type(exc).__name__
    return text[:1].lower() + text[1:]


def _std_fd(path: str) -> int | None:
    if path in _STD_ALIASES:
        return _STD_ALIASES[path]
    for prefix in _FD_PREFIXES:
        if path.startswith(prefix) and path[len(prefix):].isdigit():
            return int(path[len(prefix):])
    return None


def _classify(path: str, follow: bool) -> tuple[str, str, os.stat_result | None]:
    """(kind, the path to write, its stat): kind is new, regular or special (character device
    or FIFO). Raises OutputError for what must not be written to."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "new", path, None
    except OSError as exc:
        raise OutputError(path, describe(exc)) from None
    if stat.S_ISLNK(st.st_mode):
        if not follow:
            raise OutputError(
                path, "it is a symbolic link; give the file it points to, or secpolicy --follow-symlinks"
            )
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return "new", real, None
        except OSError as exc:
            raise OutputError(path, describe(exc)) from None
        path = real
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "regular", path, st
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "special", path, st
    what = (
        "a directory" if stat.S_ISDIR(mode)
        else "a block device" if stat.S_ISBLK(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise OutputError(path, f"it is {what}")


def _parent(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) or "/"


def check_writable(path: str | None, *, follow: bool | None = None) -> None:
    """Refuse, before any work is done, an output that could not be written: a missing or
    unwritable directory, a directory or block device in its place, a symbolic link."""
    if path is None:
        return
    fd = _std_fd(path)
    if fd is not None:
        _check_fd(path, fd)
        return
    kind, real, _ = _classify(path, follow_symlinks() if follow is None else follow)
    if kind == "special":
        if not os.access(real, os.W_OK):
            raise OutputError(path, "permission denied")
        return
    if kind == "regular" and not os.access(real, os.W_OK):
        raise OutputError(path, "permission denied (the file is read-only)")
    parent = _parent(real)
    if not os.path.isdir(parent):
        raise OutputError(path, "no such directory" if not os.path.exists(parent) else "not a directory")
    _probe(parent, path)


def check_stdout() -> None:
    """Refuse, before any work, to write to a standard output that is closed (`>&-`)."""
    _check_fd("standard output", 1)


def _check_fd(path: str, fd: int) -> None:
    # With standard output closed at start, Python has no sys.stdout and the next file
    # opened may take descriptor 1: /dev/stdout would then name that file.
    if fd == 1 and sys.stdout is None or fd == 2 and sys.stderr is None:
        raise OutputError(path, "it is closed")
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        raise OutputError(path, "it is closed" if fd in (1, 2) else f"file descriptor {fd} is not open") from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise OutputError(path, f"file descriptor {fd} is open for reading only")


def is_terminal(path: str | None) -> bool:
    """Whether writing to `path` (None and `-` are standard output) would write to a terminal:
    `/dev/stdout`, `/dev/fd/N` or a terminal device named by its path."""
    if path is None or path == "-":
        return sys.stdout is not None and sys.stdout.isatty()
    fd = _std_fd(path)
    if fd is not None:
        return os.isatty(fd)
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return False
        tfd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.isatty(tfd)
    finally:
        os.close(tfd)


def _probe(directory: str, path: str) -> None:
    # Permission bits do not tell root about read-only mounts, /proc or a full inode table:
    # creating (and removing) the kind of temporary file the write will need does.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".secpolicy-probe-", dir=directory)
    except OSError as exc:
        raise OutputError(path, describe(exc)) from None
    os.close(fd)
    os.unlink(tmp)


def check_directory(path: str) -> None:
    """Refuse an output directory that could not be created or written to: it is created
    (0700, with missing parents) now, before the work, and a file is tried in it."""
    make_private_dir(path)
    _probe(path, path)


def check_given(options: Iterable[tuple[str, str | None]]) -> None:
    """Refuse a path option given as an empty string (exit 2), as an empty `--rule` is: `''`
    names nothing, and taken as given it would mean the current directory or no option."""
    for option, value in options:
        if value is not None and not value:
            raise InputError(f"{option} is empty: give a path, or leave the option out")


def _identity(path: str) -> tuple[os.stat_result | None, str]:
    try:
        st: os.stat_result | None = os.stat(path)
    except (OSError, ValueError):
        st = None
    return st, os.path.realpath(path)


def _same(st: os.stat_result | None, real: str, other_st: os.stat_result | None, other_real: str) -> bool:
    if st is not None and other_st is not None and (st.st_dev, st.st_ino) == (other_st.st_dev, other_st.st_ino):
        return True
    return real == other_real


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same device and inode, or the same resolved path."""
    return _same(*_identity(a), *_identity(b))


def check_not_input(outputs: Iterable[tuple[str, str | None]], inputs: Iterable[tuple[str, str | None]],
                    *, directories: Iterable[tuple[str, str | None]] = ()) -> None:
    """Refuse (exit 2), before any work, an output that is one of the command's inputs: the
    same file by device and inode (a hard link, a link followed) or by resolved path. Every
    existing file under one of `directories` (an audit log) counts as an input. Standard
    output, devices and FIFOs are written through, never replaced, and are not compared."""
    ins = [(label, path, *_identity(path)) for label, path in inputs if path]
    dirs = [(label, path, os.path.realpath(path)) for label, path in directories if path]
    for out_label, out in outputs:
        if not out or _std_fd(out) is not None:
            continue
        st, real = _identity(out)
        if st is not None and not stat.S_ISREG(st.st_mode):
            continue
        for label, path, in_st, in_real in ins:
            if _same(st, real, in_st, in_real):
                raise InputError(f"{out_label} {out} is the same file as the input {label} {path}: "
                                 "refusing to overwrite an input")
        for label, path, in_real in dirs:
            if st is not None and real.startswith(in_real.rstrip(os.sep) + os.sep):
                raise InputError(f"{out_label} {out} is a file of the input {label} {path}: "
                                 "refusing to overwrite an input")


def check_readable(path: str, what: str = "") -> None:
    """InputError `cannot read PATH (reason)` for an input that cannot be opened."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        label = f"{what} " if what else ""
        raise InputError(f"cannot read {label}{path} ({describe(exc)})") from None
    if os.path.isdir(path):
        raise InputError(f"cannot read {path} (it is a directory)")


def check_input(path: str, what: str = "") -> None:
    """InputError (exit 2), before anything is read, for an input that is not a file to read
    to its end: a device (`/dev/zero` and `/dev/full` never end: the reader would fill memory),
    a socket or a directory. A FIFO is read as `cat` reads one, waiting for its writer; a
    missing or unreadable file is left to the reader, which names it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return
    kind = ("a directory" if stat.S_ISDIR(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    label = f"{what} " if what else ""
    raise InputError(f"cannot read {label}{path} (it is {kind})")


def make_private_dir(path: str) -> None:
    """Create `path` and any missing parents as 0700 (whatever the umask); an existing
    directory keeps its mode."""
    missing = []
    here = os.path.abspath(path)
    while not os.path.isdir(here):
        missing.append(here)
        up = os.path.dirname(here)
        if up == here:
            break
        here = up
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(d):
                raise OutputError(path, f"{d} is not a directory") from None
            continue
        except OSError as exc:
            raise OutputError(path, describe(exc)) from None
        os.chmod(d, DIR_MODE)


def create_private(path: str) -> None:
    """Create an empty file 0600 if it does not exist yet (a database about to be opened by a
    library that would create it with the umask's mode). Never follows a symbolic link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise OutputError(path, describe(exc)) from None
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


def check_sqlite_companions(path: str) -> None:
    """Refuse (InputError, exit 2) a database whose `-journal`, `-wal` or `-shm` name beside it
    is taken by anything but a regular file: SQLite opens them by name, so a FIFO there hangs
    the run, a directory fails every read with a bare "disk I/O error" (taken for a damaged
    database), and a symbolic link would point SQLite's journal at another file."""
    for suffix in SQLITE_COMPANIONS:
        try:
            st = os.lstat(path + suffix)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}{suffix} beside the database is not a regular file (SQLite keeps its "
                             "journal under that name); move it away", path)


class OutputFile:
    """A file being written. `close()` commits it (regular files: flush, fsync, rename over
    the target), `discard()` drops it and leaves the previous file; a `with` block commits
    on success and discards on an exception. Write errors raise OutputError."""

    def __init__(self, path: str, raw: IO[Any], *, tmp: str | None, target: str, mode: int,
                 owner: tuple[int, int] | None, binary: bool, closes: bool = True, sync: bool = False,
                 truncate_on_write: bool = False) -> None:
        self.name = path
        self._raw = raw
        self._tmp = tmp
        self._target = target
        self._mode = mode
        self._owner = owner
        self._closes = closes
        self._sync = sync or tmp is not None
        self._done = False
        self._written = False
        # A stream written in place keeps what an earlier run left in it until this run writes
        # (or ends well): a run that fails first has lost nothing (see `_open_stream`).
        self._truncate_pending = truncate_on_write
        self.binary = binary

    # file protocol ------------------------------------------------------------------------
    def write(self, data: Any) -> int:
        try:
            if self._truncate_pending:
                self._truncate()
            self._written = True
            n: int = self._raw.write(data)
            return n
        except OSError as exc:
            raise self._failure(exc) from None

    def _truncate(self) -> None:
        self._truncate_pending = False
        os.ftruncate(self._raw.fileno(), 0)

    @property
    def written(self) -> bool:
        """Whether anything was written to it (an empty write counts)."""
        return self._written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as exc:
            raise self._failure(exc) from None

    def isatty(self) -> bool:
        return self._raw.isatty()

    def fileno(self) -> int:
        return self._raw.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._done

    @property
    def encoding(self) -> str:
        return "utf-8"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    # commit / discard ---------------------------------------------------------------------
    def _failure(self, exc: OSError) -> OutputError:
        self.discard()
        return OutputError(self.name, describe(exc))

    def close(self) -> None:
        if self._done:
            return
        try:
            if self._truncate_pending:
                self._truncate()  # a run that ended well and wrote nothing: its output is empty
            self._raw.flush()
            if self._tmp is not None:
                fd = self._raw.fileno()
                os.fchmod(fd, self._mode)
                if self._owner is not None:
                    try:
                        os.fchown(fd, *self._owner)
                    except OSError:
                        pass  # keep our own ownership when we may not give it away
            if self._sync:
                os.fsync(self._raw.fileno())
            if self._closes:
                self._raw.close()
            if self._tmp is not None:
                os.replace(self._tmp, self._target)
                self._tmp = None
                _fsync_dir(_parent(self._target))
        except OSError as exc:
            raise self._failure(exc) from None
        self._done = True

    def discard(self) -> None:
        if self._done:
            return
        self._done = True
        if self._closes:
            try:
                self._raw.close()
            except OSError:
                pass  # the data is being thrown away; a failing flush says nothing new
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is done
    finally:
        os.close(fd)


class _Stdout(OutputFile):
    """Standard output: written through; a reader that went away (`| head`) is not an error,
    the rest of the output is dropped and the command keeps its exit code."""

    def __init__(self, name: str, stream: IO[Any], binary: bool) -> None:
        super().__init__(name, stream, tmp=None, target=name, mode=FILE_MODE, owner=None,
                         binary=binary, closes=False)

    def write(self, data: Any) -> int:
        if _state["stdout_closed"]:
            return len(data)
        try:
            try:
                n: int = self._raw.write(data)
            except UnicodeEncodeError:
                # Lone surrogates (undecodable host bytes) as their escapes, as in files.
                n = self._raw.write(data.encode("utf-8", "backslashreplace").decode("utf-8"))
            return n
        except BrokenPipeError:
            reader_gone()
            return len(data)
        except OSError as exc:
            raise OutputError("standard output", describe(exc)) from None

    def flush(self) -> None:
        if _state["stdout_closed"]:
            return
        try:
            self._raw.flush()
        except BrokenPipeError:
            reader_gone()
        except OSError as exc:
            raise OutputError("standard output", describe(exc)) from None

    def close(self) -> None:
        self.flush()
        self._done = True

    def discard(self) -> None:
        try:
            self.flush()
        except OutputError:
            pass
        self._done = True


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (a broken pipe elsewhere, to
    a program we started, is not that)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True  # no standard output to write to: nothing more can be said there


def reader_gone() -> None:
    """Standard output's reader went away (`| head`): send the rest to /dev/null."""
    # Later writes (and the interpreter's own flush at exit) go to /dev/null instead of
    # raising again; the command finishes and exits with its own code.
    _state["stdout_closed"] = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _stdout(binary: bool) -> OutputFile:
    if sys.stdout is None:
        raise OutputError("standard output", "it is closed")
    stream: IO[Any] = sys.stdout
    if binary:
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:
            raise OutputError("standard output", "it cannot take binary data; give --output FILE")
        sys.stdout.flush()
        stream = buffer
    return _Stdout("standard output", stream, binary)


def open_output(path: str | None, *, binary: bool = False, follow: bool | None = None,
                stream: bool = False) -> IO[Any]:
    """Open an output for writing: `None`, `-` and `/dev/stdout` are standard output.

    `stream=True` is for a live record that others follow while it grows (a monitor's
    alerts and events): a regular file is then written in place, from the start, instead of
    through a temporary file; it is still created 0600 and a symbolic link still refused."""
    fd = 1 if path is None else _std_fd(path)
    if fd == 1:
        return _io(_stdout(binary))
    assert path is not None
    if fd is not None:
        try:
            raw = _open_fd(os.dup(fd), binary)
        except OSError as exc:
            raise OutputError(path, describe(exc)) from None
        return _io(OutputFile(path, raw, tmp=None, target=path, mode=FILE_MODE, owner=None, binary=binary))
    kind, real, st = _classify(path, follow_symlinks() if follow is None else follow)
    if kind == "special":
        try:
            raw = _open_fd(os.open(real, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC), binary)
        except OSError as exc:
            raise OutputError(path, describe(exc)) from None
        return _io(OutputFile(path, raw, tmp=None, target=real, mode=FILE_MODE, owner=None, binary=binary))
    if stream:
        return _io(_open_stream(path, real, st, binary))
    parent = _parent(real)
    name = os.path.basename(real)
    try:
        tfd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(path, describe(exc)) from None
    mode, owner = FILE_MODE, None
    if st is not None:
        # Replacing a file keeps the mode and owner someone gave it on purpose.
        mode = stat.S_IMODE(st.st_mode)
        if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
            owner = (st.st_uid, st.st_gid)
    return _io(OutputFile(path, _open_fd(tfd, binary), tmp=tmp, target=real, mode=mode, owner=owner, binary=binary))


def _open_stream(path: str, real: str, st: os.stat_result | None, binary: bool) -> OutputFile:
    # Not truncated here: an existing file is emptied by the first write, or by `close` when the
    # run ends well having written nothing. A run that fails before writing (another output
    # refused, the ready file) `discard`s it and leaves the last run's alerts as they were.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(real, flags, FILE_MODE)
        if st is None:
            os.fchmod(fd, FILE_MODE)  # new: 0600 whatever the umask; an existing file keeps its mode
    except OSError as exc:
        raise OutputError(path, describe(exc)) from None
    return OutputFile(path, _open_fd(fd, binary), tmp=None, target=real, mode=FILE_MODE, owner=None,
                      binary=binary, sync=True, truncate_on_write=st is not None)


def _open_fd(fd: int, binary: bool) -> IO[Any]:
    # Text exactly as given (no newline translation); a lone surrogate (undecodable bytes
    # read from the host) is written as its `\udcXX` escape rather than failing the write.
    if binary:
        return os.fdopen(fd, "wb")
    return os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="")


def _io(f: OutputFile) -> IO[Any]:
    # OutputFile speaks the part of the file protocol writers use (write, flush, close,
    # isatty, fileno, `with`); it is handed out typed as the file it stands for.
    return cast(IO[Any], f)


def close_after_failure(f: IO[Any]) -> None:
    """Close an output of a run that failed: what the run wrote to it is kept (committed); an
    output it never wrote to is discarded, which leaves the file as it was before the run."""
    if isinstance(f, OutputFile) and not f.written:
        f.discard()
    else:
        f.close()


def write_bytes(path: str | None, data: bytes) -> None:
    with open_output(path, binary=True) as out:
        out.write(data)


def write_text(path: str | None, text: str) -> None:
    with open_output(path) as out:
        out.write(text)
