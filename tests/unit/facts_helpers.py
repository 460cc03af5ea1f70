"""Shared helpers for the fact collector tests: fixture roots materialised with their modes,
and a fact context over them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

ROOTS = Path(__file__).resolve().parents[1] / "fixtures" / "roots"
# What str.splitlines() breaks at besides "\n" (and "\r\n"): a setting hidden behind one of
# these inside a comment line is a line only for a parser that splits the way Python does.
HOSTILE_LINE_BREAKS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def _build() -> Any:
    name = "secpolicy_fixture_roots_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOTS / "build.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def materialize(name: str, dest: Path) -> Path:
    return _build().materialize(name, dest)


def context(root: Path | str) -> FactContext:
    return FactContext(builtin_registry(), str(root))


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def as_nobody(fn: Any) -> tuple[str, Any]:
    """Run `fn()` in a child process with uid/gid 65534, returning ("ok", value) or
    ("error", "<ExceptionType>: message"): permission errors need a user who lacks them."""
    import os
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out: tuple[str, Any] = ("ok", fn())
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            out = ("error", f"{type(e).__name__}: {e}")
        with os.fdopen(w, "wb") as f:
            pickle.dump(out, f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def public_tmpdir() -> Path:
    """A directory every user may traverse (pytest's tmp_path is 0700, owned by root)."""
    import os
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="secpolicy-facts-"))
    os.chmod(d, 0o755)
    return d
