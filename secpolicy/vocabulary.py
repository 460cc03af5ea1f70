"""The built-in vocabulary of policies, put together above the packages that provide it: the
facts of facts/, the fim() fact over fim/'s baselines and the event fields of events/.

The loader is handed these (policy/ imports none of those packages); the CLI and the
application layer take them from here: `builtin_registry()` for scans, `load_policies()`
for loading policies with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.events.fields import EVENT
from secpolicy.facts import fim as fim_fact
from secpolicy.facts.base import FactRegistry
from secpolicy.facts.builtin import register_builtins
from secpolicy.policy import loader

if TYPE_CHECKING:
    from secpolicy.fim.status import FimStatus
    from secpolicy.rules import PolicySet

__all__ = ["EVENT", "builtin_registry", "load_policies"]


def _baseline_status(db: str, *, key: Any = None, key_file: str | None = None,
                     key_env: str | None = None) -> FimStatus:
    # fim/ is imported when a policy reads fim(), not by every scan.
    from secpolicy.fim.status import policy_status

    return policy_status(db, key=key, key_file=key_file, key_env=key_env)


def builtin_registry() -> FactRegistry:
    """Every built-in fact: the collectors of facts/ and fim(name)."""
    reg = FactRegistry()
    register_builtins(reg)
    fim_fact.register(reg, _baseline_status)
    return reg


def load_policies(paths: Sequence[Path], registry: FactRegistry | None = None, *, cache_dir: Path | None = None,
                  only: str | None = None) -> PolicySet:
    """`secpolicy.policy.load_policies` in the built-in vocabulary: the facts of `registry`
    (the built-in ones by default) and the event fields of events/."""
    return loader.load_policies(paths, registry or builtin_registry(), events=EVENT, cache_dir=cache_dir, only=only)
