"""The built-in fact collectors, registered explicitly in one place."""

from __future__ import annotations

from secpolicy.facts import files
from secpolicy.facts.base import FactRegistry

__all__ = ["builtin_registry"]


def builtin_registry() -> FactRegistry:
    reg = FactRegistry()
    files.register(reg)
    return reg
