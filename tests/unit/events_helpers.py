"""Shared helpers for the events tests: rules loaded from YAML text through the real loader."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
# ../shared/data/auditd beside the checkout (or beside the directory holding several checkouts).
SHARED_AUDITD = next(
    (p / "shared" / "data" / "auditd" for p in REPO.parents if (p / "shared" / "data" / "auditd").is_dir()),
    REPO.parent / "shared" / "data" / "auditd",
)


def load_rules(tmp_path: Path, rules_yaml: str, extra: str = "") -> Any:
    """A PolicySet from a policy file holding `rules_yaml` (the items under `rules:`)."""
    text = "metadata: {id: t, title: T, version: '1'}\n" + extra + "rules:\n" + textwrap.indent(
        textwrap.dedent(rules_yaml), "  "
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return load_policies([path], builtin_registry())


def ev(type_: str, ts: str = "2024-01-01T00:00:00.000000000Z", **parts: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "ts": ts}
    out.update(parts)
    return out


def ts(seconds: float) -> str:
    """A canonical timestamp `seconds` after 2024-01-01T00:00:00Z."""
    from secpolicy.events.model import format_ts

    whole = int(seconds)
    return format_ts(1_704_067_200 + whole, round((seconds - whole) * 1e9))
