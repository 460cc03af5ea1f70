"""`fs_scan(paths)`: one walk of directory trees for what CIS 7.1.11 and 7.1.12 look for
(world-writable entries, entries whose owner or group is unknown), answered as path lists."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import INT, STR, ListType, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import symlink_loop

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["FS_SCAN", "FsScan", "register"]

FS_SCAN = ObjectType(
    "fs_scan",
    {
        "paths": ListType(STR),
        "entries": INT,
        "world_writable": ListType(STR),
        "unowned": ListType(STR),
    },
    doc="a walk of directory trees (links not followed, other file systems not entered)",
    field_docs={
        "entries": "how many entries were looked at",
        "world_writable": "world-writable regular files, and world-writable directories without the sticky"
        " bit",
        "unowned": 'entries whose uid or gid the passwd or group file does not know, as "path (uid 4242)"',
    },
)

MAX_ENTRIES = 2_000_000
MAX_DEPTH = 256
_SUBDIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FsScan:
    def __init__(self, ctx: FactContext, paths: tuple[str, ...]) -> None:
        self.paths = tuple(paths)
        self.entries = 0
        walked: list[str] = []  # the roots that are directories in the tree
        ww: list[str] = []
        unowned: list[str] = []
        users: dict[int, str] = ctx.fact("_idmap", ("/etc/passwd",))
        groups: dict[int, str] = ctx.fact("_idmap", ("/etc/group",))
        for top in self.paths:
            try:
                fd = ctx.open_dir(top)  # inside the root, links to the top resolved there
            except (FileNotFoundError, NotADirectoryError):
                continue  # named in the evidence as absent
            except PermissionError:
                raise EvaluationError(f"{top}: permission denied") from None
            except OSError as e:
                raise (symlink_loop(top) if e.errno == errno.ELOOP else EvaluationError(f"{top}: {e.strerror}")) from None
            walked.append(top)
            try:
                self._walk(fd, top.rstrip("/") or "/", os.fstat(fd).st_dev, 0, ww, unowned, users, groups)
            finally:
                os.close(fd)
        self.walked = tuple(walked)
        self.world_writable = tuple(ww)
        self.unowned = tuple(unowned)

    def _walk(
        self,
        fd: int,
        shown: str,
        dev: int,
        depth: int,
        ww: list[str],
        unowned: list[str],
        users: dict[int, str],
        groups: dict[int, str],
    ) -> None:
        """Walk the directory open as `fd` (the caller closes it); each subdirectory is opened
        relative to it and never through a symlink, so a directory swapped for a link while
        the walk runs cannot lead it elsewhere."""
        if depth > MAX_DEPTH:
            raise EvaluationError(f"{shown}: directories nested more than {MAX_DEPTH} deep")
        try:
            it = os.scandir(fd)
        except OSError as e:
            raise EvaluationError(f"{shown}: {e.strerror}") from None
        with it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                raise EvaluationError(
                    f"more than {MAX_ENTRIES} entries under {', '.join(self.paths)}"
                )
            path = f"{shown.rstrip('/')}/{entry.name}"
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            mode = st.st_mode
            if st.st_uid not in users or st.st_gid not in groups:
                missing = f"uid {st.st_uid}" if st.st_uid not in users else f"gid {st.st_gid}"
                unowned.append(f"{path} ({missing})")
            if stat.S_ISLNK(mode):
                continue
            is_dir = stat.S_ISDIR(mode)
            # CIS 7.1.11 looks at regular files and directories (`find \( -type f -o -type d \)
            # -perm -0002`): sockets and FIFOs (postfix's public/ ones) and device nodes are
            # world-writable by design and not listed
            if (
                mode & stat.S_IWOTH
                and (is_dir or stat.S_ISREG(mode))
                and not (is_dir and mode & stat.S_ISVTX)
            ):
                ww.append(path)
            if is_dir and st.st_dev == dev:  # another file system mounted here is not entered
                try:
                    sub = os.open(entry.name, _SUBDIR_FLAGS, dir_fd=fd)
                except PermissionError:
                    raise EvaluationError(f"{path}: permission denied") from None
                except OSError as e:
                    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # gone, or no longer a directory, since it was listed
                    raise EvaluationError(f"{path}: {e.strerror}") from None
                try:
                    self._walk(sub, path, dev, depth + 1, ww, unowned, users, groups)
                finally:
                    os.close(sub)

    def describe(self) -> str:
        return f"fs_scan({', '.join(self.paths)})"

    def where(self, name: str, *args: Any) -> str | None:
        found = {"world_writable": self.world_writable, "unowned": self.unowned}.get(name)
        if found:
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            return ", ".join(found[:5]) + more
        # only the roots that were walked: /srv listed as a source where the tree has none
        # would name a place nothing was read from
        absent = [p for p in self.paths if p not in self.walked]
        out = f"{', '.join(self.walked) or 'nothing'} ({self.entries} entries walked)"
        return out + (f"; absent: {', '.join(absent)}" if absent else "")


def register(reg: FactRegistry) -> None:
    reg.register(
        "fs_scan",
        lambda ctx, paths: FsScan(ctx, tuple(paths)),
        params=(ListType(STR),),
        returns=FS_SCAN,
        doc="world-writable and unowned entries under directory trees (one walk)",
    )
