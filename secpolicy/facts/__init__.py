"""Point-in-time facts about a system (live or a mounted root), gathered lazily per scan."""

from typing import Any

from secpolicy.facts.base import FactContext, FactRegistry, FactSpec

__all__ = ["FactContext", "FactRegistry", "FactSpec", "register_builtins"]


def __getattr__(name: str) -> Any:
    # The collectors are imported when the registry is built, not with every module of
    # facts/ (a load of event rules reads only the facts' signatures).
    if name == "register_builtins":
        from secpolicy.facts.builtin import register_builtins

        return register_builtins
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
