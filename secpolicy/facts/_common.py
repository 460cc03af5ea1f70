"""Small helpers shared by the host fact collectors: evidence locations, value coercion,
config-file line reading and the ordering rules of `*.d` drop-in directories."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from secpolicy.errors import EvaluationError

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext

__all__ = [
    "Located",
    "as_value",
    "at",
    "dropin_files",
    "logical_lines",
    "parse_int",
    "proc_available",
    "version_key",
]

_INT = re.compile(r"-?\d+\Z")


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


def logical_lines(
    text: str, *, continuation: bool = False, comment: str = "#"
) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of the meaningful lines: blank and comment lines skipped;
    with `continuation`, a trailing backslash joins the next line (numbered by its first)."""
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or (comment and line.startswith(comment))):
            continue
        if continuation and line.endswith("\\"):
            if not pending:
                start = n
            pending.append(line[:-1].strip())
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
    `dirs`, a name in an earlier dir masking the same name in a later one, sorted by name."""
    chosen: dict[str, str | None] = {}
    for d in dirs:
        for name in ctx.listdir(d):
            if not name.endswith(suffix) or name in chosen:
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
        return os.readlink(ctx.host_path(path, follow=False)) == "/dev/null"
    except OSError:
        return False


_VERSION_PART = re.compile(r"(\d+)|(\D+)")


def version_key(name: str) -> tuple:
    """`ls -v` order: digit runs compare as numbers (10-x after 9-x)."""
    return tuple((0, int(d), "") if d else (1, 0, s) for d, s in _VERSION_PART.findall(name))


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
    """Text of a /proc or /sys file (or its copy under the root), None if absent. Read in
    small chunks: a single huge read() makes some sysctl handlers fail with ENOMEM."""
    host = ctx.host_path(path)
    chunks: list[bytes] = []
    size = 0
    try:
        with open(host, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise EvaluationError(f"{path}: larger than {limit} bytes, not read")
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
        return None
    except PermissionError:
        raise EvaluationError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise EvaluationError(f"{path}: is a directory") from None
    except OSError as e:
        raise EvaluationError(f"{path}: {e.strerror or e}") from None
    return b"".join(chunks).decode("utf-8", errors="surrogateescape")
