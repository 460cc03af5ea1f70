"""The policies a run evaluates: loaded through the compile cache, the bundled packs when no
path is given, with the registry of facts the policies may read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from secpolicy.policy.cache import ParseCache

if TYPE_CHECKING:
    from secpolicy.facts.base import FactRegistry
    from secpolicy.policy import PolicySet

__all__ = ["bundled_policies", "cache_dir", "fact_memo", "load_policy_set"]


def cache_dir(part: str = "policies") -> Path | None:
    """Compile cache: $XDG_CACHE_HOME/secpolicy (or ~/.cache/secpolicy); SECPOLICY_NO_CACHE=1 disables.
    `policies` holds the policy files' compile cache, `facts` what facts keep between scans."""
    if os.environ.get("SECPOLICY_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "secpolicy" / part


def fact_memo() -> ParseCache | None:
    """Where facts keep what they read between scans (the `memo` option of a scan): a
    private directory of the cache, as the policy files' compile cache is."""
    d = cache_dir("facts")
    return ParseCache(d) if d is not None else None


def bundled_policies(relative: bool = True) -> Path:
    """The bundled packs; with `relative`, named relative to the working directory when inside
    it, so rule sources read `policies/cis/5-access-control.yaml:120` (SARIF locations need that)."""
    from secpolicy.resources import policies_dir

    p = policies_dir()
    if not relative:
        return p
    try:
        return p.relative_to(Path.cwd())
    except ValueError:
        return p


def load_policy_set(policy_paths: Sequence[str], registry: FactRegistry | None = None, *,
                    only: str | None = None, relative: bool = True) -> PolicySet:
    """The policies at `policy_paths` (the bundled packs when empty); `only="event"` compiles
    just the event rules (replay and monitor need no others)."""
    from secpolicy.vocabulary import load_policies

    paths = [Path(p) for p in policy_paths] or [bundled_policies(relative)]
    return load_policies(paths, registry, cache_dir=cache_dir(), only=only)
