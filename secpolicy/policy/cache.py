"""A compile cache for policy files, like Python's .pyc: a file whose bytes are unchanged
skips YAML parsing, schema validation and Lark parsing on later loads. The key also holds the
secpolicy version and a hash of the grammar, the schema and the code that shapes what is
cached (dsl/ and policy/), so a code change can never load stale objects. Type checking and
compiling to closures still run every time (they depend on the facts and the other files)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from secpolicy import __version__

__all__ = ["ParseCache", "toolchain_key"]


_PACKAGE = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=4)
def toolchain_key(package: Path = _PACKAGE) -> str:
    """What the cached objects depend on besides the policy file: the version, the grammar,
    the policy schema and the source of every module of dsl/ and policy/."""
    h = hashlib.sha256(__version__.encode())
    shaping = sorted((package / "dsl").glob("*.py")) + sorted((package / "policy").glob("*.py"))
    for p in [package / "dsl" / "grammar.lark", package / "schemas" / "policy.schema.json", *shaping]:
        h.update(str(p.relative_to(package)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


class ParseCache:
    """Per policy file, keyed by the file's sha256: its data, the lines the loader reads and
    its parsed expressions. The directory must be ours and private (0700): a cache others
    can write to would let them inject rules.

    An entry has a scope: a full load's (None) holds everything a load of the file reads; an
    `event` entry holds what a load of the event rules alone reads (check rules left out), is
    written and read only by such loads, and has a name of its own, so a full load can never
    take it for a complete one."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _usable(self) -> bool:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(self.dir)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not (st.st_mode & 0o077)

    def _file(self, sha256: str, scope: str | None = None) -> Path:
        tail = "" if scope is None else f"-{scope}"
        return self.dir / f"{sha256}-{toolchain_key()}{tail}.pickle"

    def get(self, sha256: str, scope: str | None = None) -> dict[str, Any] | None:
        data = self._load(self._file(sha256, scope))
        if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("data", "lines", "parsed")):
            return None
        return data

    def put(self, sha256: str, entry: dict[str, Any], scope: str | None = None) -> None:
        self._store(self._file(sha256, scope), entry)

    def get_named(self, name: str) -> Any:
        """An object kept under `name` (a key the caller derives from what the object depends
        on) by `put_named`; None when there is none. The caller checks its shape."""
        return self._load(self.dir / f"{name}.pickle")

    def put_named(self, name: str, obj: Any) -> None:
        self._store(self.dir / f"{name}.pickle", obj)

    def _load(self, path: Path) -> Any:
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
                return None
            with open(path, "rb") as f:
                return pickle.load(f)
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, ValueError, TypeError):
            return None

    def _store(self, path: Path, obj: Any) -> None:
        if not self._usable():
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        except OSError:
            return  # a cache that cannot be written only costs time
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except (OSError, pickle.PickleError, RecursionError):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
