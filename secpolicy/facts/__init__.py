"""Point-in-time facts about a system (live or a mounted root), gathered lazily per scan."""

from secpolicy.facts.base import FactContext, FactRegistry, FactSpec
from secpolicy.facts.builtin import register_builtins

__all__ = ["FactContext", "FactRegistry", "FactSpec", "register_builtins"]
