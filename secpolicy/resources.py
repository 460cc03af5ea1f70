"""Locate data shipped with secpolicy (policies, templates, BPF sources, JSON schemas),
both in a source checkout and in an installed wheel (where they live in `_data/`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["bpf_dir", "data_dir", "load_schema", "policies_dir", "schema_path", "templates_dir"]

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The top-level data folder `name` (policies, templates, bpf)."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name


def policies_dir() -> Path:
    return data_dir("policies")


def templates_dir() -> Path:
    return data_dir("templates")


def bpf_dir() -> Path:
    return data_dir("bpf")


def schema_path(name: str) -> Path:
    """JSON Schemas ship inside the package: `secpolicy/schemas/<name>.schema.json`."""
    return _PACKAGE / "schemas" / f"{name}.schema.json"


@cache
def load_schema(name: str) -> dict[str, Any]:
    with open(schema_path(name), encoding="utf-8") as f:
        return json.load(f)
