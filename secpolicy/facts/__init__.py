"""Point-in-time facts about a system (live or a mounted root), gathered lazily per scan."""

from secpolicy.facts.base import FactContext, FactRegistry, FactSpec
from secpolicy.facts.builtin import builtin_registry

__all__ = ["FactContext", "FactRegistry", "FactSpec", "builtin_registry"]
