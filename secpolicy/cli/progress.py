"""Progress of long work on one stderr line, only when stderr is a terminal and not --quiet:
scan rules done of total, PDF pages laid out, replay bytes of input read."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    import logging

__all__ = ["Progress", "file_read_progress", "pdf_progress", "plain_output", "set_quiet", "wanted"]

_settings = {"quiet": False}


def set_quiet(value: bool, *, invocation: bool = False) -> None:
    """`--quiet`. The group's option sets it for the whole invocation (`invocation=True`: an
    earlier invocation in the same process, as a test's, leaves nothing behind); a command's
    own `--quiet` can only turn progress off, never back on."""
    if invocation or value:
        _settings["quiet"] = bool(value)


def wanted(stream: IO[str] | None = None) -> bool:
    """Progress goes to a terminal only: never to a pipe, a file, or with --quiet."""
    s = stream if stream is not None else sys.stderr
    if _settings["quiet"] or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(s.isatty())
    except (ValueError, OSError):
        return False


def plain_output(stream: IO[str]) -> bool:
    """Plain text (no colour, no box drawing) for a pipe, a file, or NO_COLOR (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return True
    try:
        return not stream.isatty()
    except (ValueError, OSError):
        return True


class Progress:
    """One self-overwriting status line; at most ten updates a second; erased at the end."""

    def __init__(self, label: str, *, enabled: bool | None = None, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = wanted(self.stream) if enabled is None else enabled
        self.label = label
        self._last = 0.0
        self._shown = False
        self._lock = threading.Lock()

    def show(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < 0.1:
                return
            self._last = now
            try:
                self.stream.write(f"\r\x1b[2K{self.label}: {text}")
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False
                return
            self._shown = True

    def count(self, done: int, total: int, unit: str) -> None:
        pct = f" ({100 * done // total}%)" if total else ""
        self.show(f"{done}/{total} {unit}{pct}", force=done == total)

    def close(self) -> None:
        with self._lock:
            if self._shown:
                try:
                    self.stream.write("\r\x1b[2K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            self._shown = False
            self.enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PAGE = re.compile(r"Page (\d+)")


def _weasy_handler(progress: Progress) -> logging.Handler:
    # logging (5 ms to import) only for a PDF: every other command starts without it.
    import logging

    class _WeasyHandler(logging.Handler):
        """WeasyPrint logs each layout step on `weasyprint.progress`; pages are counted there."""

        def __init__(self, progress: Progress) -> None:
            super().__init__(logging.INFO)
            self.progress = progress
            self.passes = 0

        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            if "Repagination" in msg:
                self.passes += 1
            m = _PAGE.search(msg)
            if m:
                again = f", pass {self.passes + 1} (page numbers)" if self.passes else ""
                self.progress.show(f"laying out page {m.group(1)}{again}")
            elif "Creating PDF" in msg:
                self.progress.show("writing PDF", force=True)

    return _WeasyHandler(progress)


@contextmanager
def pdf_progress(label: str = "PDF") -> Iterator[None]:
    progress = Progress(label)
    if not progress.enabled:
        yield
        return
    import logging

    logger = logging.getLogger("weasyprint.progress")
    handler = _weasy_handler(progress)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
        progress.close()


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _open_positions(keys: dict[tuple[int, int], int]) -> dict[int, int]:
    """Read offsets of this process's open descriptors on the input files (by device and
    inode), from /proc/self/fdinfo: the reader needs no hook."""
    out: dict[int, int] = {}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
            i = keys.get((st.st_dev, st.st_ino))
            if i is None:
                continue
            with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
                for line in f:
                    if line.startswith("pos:"):
                        out[i] = max(out.get(i, 0), int(line.split()[1]))
                        break
        except (OSError, ValueError):
            continue
    return out


@contextmanager
def file_read_progress(paths: Sequence[str], label: str = "replay") -> Iterator[None]:
    """Bytes of `paths` read so far, polled from a side thread while the body reads them."""
    progress = Progress(label)
    if not progress.enabled:
        yield
        return
    sizes: list[int] = []
    keys: dict[tuple[int, int], int] = {}
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            sizes.append(0)
            continue
        sizes.append(st.st_size)
        keys[(st.st_dev, st.st_ino)] = i
    total = sum(sizes)
    stop = threading.Event()

    def poll() -> None:
        seen: dict[int, int] = {}
        while not stop.wait(0.2):
            now = _open_positions(keys)
            for i in list(seen):
                if i not in now:
                    seen[i] = sizes[i]  # opened earlier, closed since: read to the end
            for i, pos in now.items():
                seen[i] = max(seen.get(i, 0), min(pos, sizes[i]))
            done = sum(seen.values())
            pct = f" ({100 * done // total}%)" if total else ""
            progress.show(f"{_human(done)} of {_human(total)} read{pct}")

    thread = threading.Thread(target=poll, name="secpolicy-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(1.0)
        progress.close()
