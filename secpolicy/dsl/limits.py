"""Every bound secpolicy puts on untrusted policy, waiver and root-tree input, in one place.
Crossing one is a located error (or an ERROR finding for a tree walk), never a hang or a crash."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["LIMITS", "Limits", "describe_limits"]


def _limit(default: int, doc: str) -> int:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Limits:
    """Defaults sit far above anything the bundled packs need (docs/policy-format.md)."""

    yaml_bytes: int = _limit(16 * 1024 * 1024, "size of one policy or waiver file, in characters")
    yaml_depth: int = _limit(64, "nesting of mappings and lists in one YAML file")
    yaml_nodes: int = _limit(
        500_000, "values (scalars, lists, mappings, aliases) written in one YAML file: bounds the reader's memory"
    )
    yaml_alias_nodes: int = _limit(
        100_000, "values reached through aliases (`*name`) in one YAML file: bounds alias expansion"
    )
    expression_chars: int = _limit(65_536, "length of one expression, in characters")
    literal_chars: int = _limit(16_384, "length of one string literal in an expression, in characters")
    expression_depth: int = _limit(
        64, "nesting of one expression (parentheses, `not`, calls, fields, methods), macros expanded"
    )
    macro_nodes: int = _limit(20_000, "size of one expression once its macros are expanded, in syntax nodes")
    macro_depth: int = _limit(32, "macros naming macros naming macros ..., within one expression")
    regex_program: int = _limit(10_000, "compiled size of one regular expression (RE2 program instructions)")
    regex_repeat: int = _limit(1_000, "the count of a repetition `x{n}` or `x{n,m}` in a regular expression")
    walk_depth: int = _limit(64, "directory levels `tree()` descends below its top directory")


LIMITS = Limits()


def describe_limits(limits: Limits = LIMITS) -> list[tuple[str, int, str]]:
    """(name, value, meaning) of every limit, in declaration order."""
    return [(f.name, getattr(limits, f.name), f.metadata["doc"]) for f in fields(limits)]
