"""The built-in vocabulary of policies, put together above the packages that provide it: the
facts of facts/, the fim() fact over fim/'s baselines and the event fields of events/.

The loader is handed these (policy/ imports none of those packages); the CLI and the
application layer take them from here: `builtin_registry()` for scans, `load_policies()`
for loading policies with them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import Signature
from secpolicy.events.fields import EVENT
from secpolicy.policy import loader
from secpolicy.policy.cache import ParseCache, toolchain_key

if TYPE_CHECKING:
    from secpolicy.facts.base import FactRegistry
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
    # Imported here: a load of event rules alone needs only the facts' signatures, kept in
    # the compile cache (see _fact_signatures), not the collectors.
    from secpolicy.facts import fim as fim_fact
    from secpolicy.facts.base import FactRegistry
    from secpolicy.facts.builtin import register_builtins

    reg = FactRegistry()
    register_builtins(reg)
    fim_fact.register(reg, _baseline_status)
    return reg


def load_policies(paths: Sequence[Path], registry: FactRegistry | None = None, *, cache_dir: Path | None = None,
                  only: str | None = None) -> PolicySet:
    """`secpolicy.policy.load_policies` in the built-in vocabulary: the facts of `registry`
    (the built-in ones by default) and the event fields of events/."""
    facts: loader.FactCatalogue
    if registry is not None:
        facts = registry
    elif only == "event" and cache_dir is not None:
        facts = _fact_signatures(ParseCache(cache_dir))
    else:
        facts = builtin_registry()
    return loader.load_policies(paths, facts, events=EVENT, cache_dir=cache_dir, only=only)


class _SignatureOnly:
    """A fact's signature without its collector: what a load of event rules reads of it."""

    __slots__ = ("signature",)
    twin = None  # inline tests of check rules read twins; event-rule loads build none

    def __init__(self, signature: Signature) -> None:
        self.signature = signature


class _Signatures:
    """The built-in facts as a load of event rules alone needs them: their names (a list,
    macro or var may not hide one) and signatures (every macro is type-checked)."""

    def __init__(self, signatures: dict[str, Signature]) -> None:
        self._specs = {n: _SignatureOnly(s) for n, s in signatures.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str) -> _SignatureOnly:
        return self._specs[name]

    def signatures(self) -> dict[str, Signature]:
        return {n: s.signature for n, s in self._specs.items()}


_PACKAGE = Path(__file__).resolve().parent


def _fact_signatures(cache: ParseCache) -> loader.FactCatalogue:
    """The built-in facts' signatures from the compile cache, so replay and monitor need not
    import every collector of facts/ (a fifth of replay's start-up). The entry is keyed by the
    code that declares them (facts/, this module, and the cache's own key: version, dsl/,
    policy/); without one the registry is built and its signatures kept."""
    h = hashlib.sha256(toolchain_key().encode())
    for p in [_PACKAGE / "vocabulary.py", *sorted((_PACKAGE / "facts").glob("*.py"))]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    name = f"facts-{h.hexdigest()[:16]}"
    kept = cache.get_named(name)
    if type(kept) is dict and all(type(k) is str and type(v) is Signature for k, v in kept.items()):
        return _Signatures(kept)
    registry = builtin_registry()
    cache.put_named(name, registry.signatures())
    return registry
