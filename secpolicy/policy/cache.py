"""A compile cache for policy files, like Python's .pyc: a file whose bytes, grammar, schema
and secpolicy version are unchanged skips schema validation and Lark parsing on later loads.
Type checking and compiling to closures still run every time (they depend on the facts)."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from secpolicy import __version__
from secpolicy.resources import schema_path

__all__ = ["ParseCache"]


@lru_cache(maxsize=1)
def _toolchain_key() -> str:
    h = hashlib.sha256(__version__.encode())
    for p in (Path(__file__).resolve().parents[1] / "dsl" / "grammar.lark", schema_path("policy")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


class ParseCache:
    """Parsed expressions per policy file, keyed by the file's sha256. The directory must be
    ours and private (0700): a cache others can write to would let them inject rules."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _usable(self) -> bool:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(self.dir)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not (st.st_mode & 0o077)

    def _file(self, sha256: str) -> Path:
        return self.dir / f"{sha256}-{_toolchain_key()}.pickle"

    def get(self, sha256: str) -> dict[tuple, Any] | None:
        path = self._file(sha256)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
                return None
            with open(path, "rb") as f:
                data = pickle.load(f)
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, ValueError, TypeError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, sha256: str, parsed: dict[tuple, Any]) -> None:
        if not self._usable():
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                pickle.dump(parsed, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self._file(sha256))
        except (OSError, pickle.PickleError, RecursionError):
            pass  # a cache that cannot be written only costs time
