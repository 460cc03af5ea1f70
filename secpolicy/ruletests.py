"""Run the inline `tests:` of check rules: build a temporary root from the test's files (and
an optional fixture root), scan just that rule there, compare the status with `expect`.

Policies come from pull requests, so building the root is confined by construction: every
path is opened component by component from a descriptor of the temporary root, with
O_NOFOLLOW at each step, and modes and owners are set on the descriptor that was opened
(fchmod/fchown), never through a path. Nothing outside the root can be created or changed."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from secpolicy.dsl.limits import LIMITS
from secpolicy.engine import evaluate_rule
from secpolicy.errors import InputError
from secpolicy.facts.base import FactContext, FactRegistry
from secpolicy.policy.testfiles import TestFile, TestFileError, parse_test_files
from secpolicy.rules import Rule, RuleTest

__all__ = ["TestOutcome", "copy_fixture_root", "materialize_files", "run_check_tests"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a pytest class

    rule_id: str
    name: str
    passed: bool
    detail: str
    source: str = ""


class _Refused(Exception):
    """A test file that cannot be made without leaving the root or writing through a link."""


def _refuse(path: str, why: str) -> _Refused:
    return _Refused(f"test file {path!r}: {why}")


@contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir(parent: int, name: str, path: str, *, create: bool) -> int:
    """A child directory of `parent`, never through a symlink (O_NOFOLLOW)."""
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            pass
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            st = _existing(parent, name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise _refuse(path, f"{name!r} on its way is a symlink; test files are never written through links") from None
            raise _refuse(path, f"{name!r} on its way is not a directory") from None
        raise _refuse(path, e.strerror or str(e)) from None


def _parent(root: int, f: TestFile) -> int:
    """A descriptor of the directory that will hold `f`, made beneath `root` as needed."""
    fd = os.dup(root)
    try:
        for part in f.parts[:-1]:
            nxt = _open_dir(fd, part, f.path, create=True)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _set_owner_mode(fd: int, f: TestFile) -> None:
    if f.mode is not None:
        os.fchmod(fd, f.mode)
    if f.uid is not None or f.gid is not None:
        try:
            os.fchown(fd, -1 if f.uid is None else f.uid, -1 if f.gid is None else f.gid)
        except PermissionError:
            pass  # not root: the test will say so through a wrong status
        if f.mode is not None and f.mode & 0o6000:
            os.fchmod(fd, f.mode)  # chown clears set-id bits


def _existing(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _make(root: int, f: TestFile) -> None:
    name = f.parts[-1]
    with _opened(_parent(root, f)) as parent:
        st = _existing(parent, name)
        if f.kind == "symlink":
            if st is not None:
                raise _refuse(f.path, "exists already (an earlier entry or the fixture root made it)")
            os.symlink(f.target, name, dir_fd=parent)
            if f.uid is not None or f.gid is not None:
                try:
                    os.chown(name, -1 if f.uid is None else f.uid, -1 if f.gid is None else f.gid,
                             dir_fd=parent, follow_symlinks=False)
                except PermissionError:
                    pass
            return
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise _refuse(f.path, "is a symlink; test files are never written through links")
        if f.kind == "dir":
            with _opened(_open_dir(parent, name, f.path, create=True)) as fd:
                _set_owner_mode(fd, f)
            return
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _refuse(f.path, "exists and is not a regular file")
        try:
            fd = os.open(name, _WRITE_FLAGS, 0o644, dir_fd=parent)
        except OSError as e:
            raise _refuse(f.path, e.strerror or str(e)) from None
        with _opened(fd):
            now = os.fstat(fd)
            # Checked on the descriptor: a file swapped in since the stat, or one hard-linked
            # from elsewhere, is refused before a byte of it changes.
            if not stat.S_ISREG(now.st_mode) or now.st_nlink != 1:
                raise _refuse(f.path, "is not a plain file of the test's own")
            os.ftruncate(fd, 0)
            data = f.data if f.data is not None else f.content.encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            _set_owner_mode(fd, f)


def materialize_files(dest: str, files: dict, *, where: str = "") -> None:
    """Create `files` (path -> content, or {content|base64, mode, uid, gid, symlink, dir}) beneath
    the directory `dest` (made if absent: it is the caller's, never the policy's). Raises
    InputError for an entry that is malformed or would escape."""
    os.makedirs(dest, exist_ok=True)
    try:
        specs = parse_test_files(files)
    except TestFileError as e:
        raise InputError(f"test file {e.name!r}: {e.message}" if e.name is not None else e.message, where or None) from None
    with _opened(os.open(dest, _DIR_FLAGS)) as root:
        for f in specs:
            try:
                _make(root, f)
            except _Refused as e:
                raise InputError(str(e), where or None) from None


def copy_fixture_root(src: str, dest: str, *, where: str = "") -> None:
    """Copy a fixture tree into `dest` (files with their modes and times, directories, links
    as links, FIFOs as FIFOs), reading and writing only through descriptors, never following
    a link. Device nodes and sockets are refused: a fixture has no business holding them."""
    try:
        src_fd = os.open(src, _DIR_FLAGS)
    except OSError as e:
        raise InputError(f"fixture root: {e.strerror}", where or src) from None
    dst_fd = os.open(dest, _DIR_FLAGS)
    stack: list[tuple[int, int, str, int]] = [(src_fd, dst_fd, "", 0)]
    try:
        while stack:
            s, d, rel, depth = stack.pop()
            try:
                for entry in sorted(os.scandir(s), key=lambda e: e.name):
                    _copy_entry(entry, s, d, rel, depth, stack, where)
            finally:
                os.close(s)
                os.close(d)
    finally:
        for s, d, _, _ in stack:
            os.close(s)
            os.close(d)


def _copy_entry(
    entry: os.DirEntry, s: int, d: int, rel: str, depth: int, stack: list, where: str
) -> None:
    name = entry.name
    shown = f"{rel}/{name}"
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=s), name, dir_fd=d)
    elif stat.S_ISDIR(st.st_mode):
        if depth + 1 > LIMITS.walk_depth:
            raise InputError(f"fixture root nested more than {LIMITS.walk_depth} levels at {shown}", where or None)
        os.mkdir(name, 0o700, dir_fd=d)
        sub_s = os.open(name, _DIR_FLAGS, dir_fd=s)
        sub_d = os.open(name, _DIR_FLAGS, dir_fd=d)
        os.fchmod(sub_d, stat.S_IMODE(st.st_mode))
        stack.append((sub_s, sub_d, shown, depth + 1))
    elif stat.S_ISREG(st.st_mode):
        with _opened(os.open(name, _READ_FLAGS, dir_fd=s)) as rfd:
            if not stat.S_ISREG(os.fstat(rfd).st_mode):
                raise InputError(f"fixture root: {shown} changed while being copied", where or None)
            with _opened(os.open(name, _WRITE_FLAGS | os.O_EXCL, 0o600, dir_fd=d)) as wfd:
                while chunk := os.read(rfd, 1 << 16):
                    os.write(wfd, chunk)
                os.fchmod(wfd, stat.S_IMODE(st.st_mode))
                os.utime(wfd, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(name, stat.S_IMODE(st.st_mode), dir_fd=d)
    else:
        raise InputError(f"fixture root: {shown} is a device node or socket, which a fixture may not hold", where or None)


def _make_removable(top: str) -> None:
    """Give back permission on every directory (a test may make one 0o000), so the temporary
    root can be removed by any user. The root is ours and private (0o700): nothing swaps
    entries while this runs."""
    try:
        os.chmod(top, 0o700)
        stack = [os.open(top, _DIR_FLAGS)]
    except OSError:
        return
    while stack:
        fd = stack.pop()
        try:
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    try:
                        os.chmod(entry.name, 0o700, dir_fd=fd)
                        stack.append(os.open(entry.name, _DIR_FLAGS, dir_fd=fd))
                    except OSError:
                        pass
        except OSError:
            pass
        finally:
            os.close(fd)


def _run_one(rule: Rule, test: RuleTest, registry: FactRegistry) -> TestOutcome:
    tmp = tempfile.mkdtemp(prefix="secpolicy-test-")
    try:
        if test.root:
            copy_fixture_root(test.root, tmp, where=test.source)
        if test.files:
            materialize_files(tmp, test.files, where=test.source)
        ctx = FactContext(registry, tmp, options=test.options, preset=test.facts)
        finding = evaluate_rule(rule, ctx, values=test.vars)
    finally:
        _make_removable(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    ok = finding.status.value == test.expect
    detail = f"expected {test.expect}, got {finding.status.value}"
    if not ok:
        why = finding.reason or "; ".join(e.describe() for e in finding.evidence[:3])
        if why:
            detail += f" ({why})"
    return TestOutcome(rule.id, test.name, ok, detail, test.source)


def run_check_tests(rule: Rule, registry: FactRegistry) -> list[TestOutcome]:
    return [_run_one(rule, t, registry) for t in rule.tests]
