"""Shared helpers for the fact collector tests: fixture roots materialised with their modes,
and a fact context over them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from secpolicy.facts import FactContext, builtin_registry

ROOTS = Path(__file__).resolve().parents[1] / "fixtures" / "roots"


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
