"""Shared machinery of the hostile-input fuzz suite: run the CLI in-process (click's runner, the
same `_Group` error handling as the real binary) under a per-case alarm, and check the one
invariant: exit 0/1/2 (4 for waived scans) with a located message, never an internal error,
a traceback or a hang, and nothing written outside the places the case named."""

from __future__ import annotations

import os
import re
import signal
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, event, settings
from hypothesis.errors import InvalidArgument

from secpolicy.cli.main import cli

# Seeded and bounded: the same examples on every run, a few dozen per property.
FUZZ = settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
CASE_SECONDS = 20  # a case still running after this is a hang


class Hang(BaseException):
    """Raised by the alarm; a BaseException so the CLI's last-resort handler cannot eat it."""


@contextmanager
def alarm(seconds: int = CASE_SECONDS) -> Iterator[None]:
    def ring(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    args: tuple[str, ...]

    def describe(self) -> str:
        return f"secpolicy {' '.join(self.args)} -> exit {self.code}\nstdout: {self.stdout[-800:]}\nstderr: {self.stderr[-1500:]}"


# The compile cache of the session (set by conftest.py): outside every case's directory, so the
# policies a case does not fuzz compile once, not once per case. Unset, the cache is off.
CACHE_HOME: str | None = None


def run(*args: str | Path, cwd: Path | None = None) -> Outcome:
    """One CLI run, in-process, with the session's compile cache (never in a case's directory)."""
    argv = tuple(str(a) for a in args)
    runner = CliRunner()
    env: dict[str, str | None] = {"SECPOLICY_DEBUG": None, "COLUMNS": "160"}
    if CACHE_HOME is None:
        env["SECPOLICY_NO_CACHE"] = "1"
    else:
        env["XDG_CACHE_HOME"], env["SECPOLICY_NO_CACHE"] = CACHE_HOME, None
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with alarm():
            result = runner.invoke(cli, list(argv), env=env, catch_exceptions=True)
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"secpolicy {' '.join(argv)} raised {result.exception!r}") from result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr, argv)


def check(
    out: Outcome, *, allowed: Iterable[int] = (0, 1, 2), located: Iterable[Path | str] = (), position: bool = True
) -> None:
    """The invariant. With `located`, an exit 2 must name one of those files first, with a
    line and column (`path:line:col: message`; without `position`, at least `path: message`)."""
    try:
        event(f"{out.args[0]}: exit {out.code}")  # shown by --hypothesis-show-statistics
    except InvalidArgument:  # outside a @given test
        pass
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "internal error" not in text, out.describe()
    assert out.code in set(allowed), out.describe()
    names = [str(p) for p in located]
    if out.code == 2 and names:
        first = out.stderr.splitlines()[0] if out.stderr else ""
        pattern = "|".join(re.escape(n) for n in names)
        where = r":\d+:\d+" if position else r"(:\d+)?(:\d+)?"
        assert re.match(rf"(secpolicy: )?({pattern}){where}: \S", first), out.describe()


def snapshot(top: Path, *, skip: Iterable[Path] = ()) -> dict[str, tuple]:
    """Type, mode, owner, size, mtime and content of everything below `top`, links not followed."""
    skipped = {os.path.abspath(p) for p in skip}
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if p in skipped:
                continue
            st = os.lstat(p)
            data = b""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p).encode()
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, data)
    return out


@contextmanager
def private_tmp(directory: Path) -> Iterator[Path]:
    """Point the temporary directory (inline-test roots) at `directory` for the duration."""
    directory.mkdir(parents=True, exist_ok=True)
    old, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(directory)
    os.environ["TMPDIR"] = str(directory)
    try:
        yield directory
    finally:
        tempfile.tempdir = old
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


def fresh(parent: Path, prefix: str) -> Path:
    """A new empty directory under `parent` for one example (hypothesis reuses the fixture)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
