"""`fim(name)`: the state of a named FIM baseline (exists, verified, ages, last check's
counts), so policies can require a baseline that is checked often and shows no changes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import BOOL, DURATION, INT, STR, ObjectType
from secpolicy.errors import EvaluationError, InputError

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["DEFAULT_DB_DIR", "FIM", "register"]

# Where `secpolicy fim init --db` puts baselines by convention; scan --fim NAME=DB overrides.
DEFAULT_DB_DIR = "/var/lib/secpolicy/fim"

FIM = ObjectType(
    "fim",
    {
        "name": STR,
        "db": STR,
        "exists": BOOL,
        "verified": BOOL,
        "reason": STR,
        "entries": INT,
        "baseline_age": DURATION,
        "last_check_age": DURATION,
        "last_result": STR,
        "checks": INT,
        "changed": INT,
        "added": INT,
        "removed": INT,
        "errors": INT,
    },
    doc="a FIM baseline: numbers are absent unless the baseline verified with its key",
)


class FimFact:
    def __init__(self, name: str, db: str, status: Any) -> None:
        self.name = name
        self.db = db
        self._s = status

    def __getattr__(self, field: str) -> Any:
        if field.startswith("_"):
            raise AttributeError(field)
        return getattr(self._s, field, None)

    def describe(self) -> str:
        return f"fim({self.name!r})"

    def where(self, name: str, *args: Any) -> str:
        return f"{self.db} (FIM baseline {self.name!r})"


def collect_fim(ctx: FactContext, name: str) -> FimFact:
    from secpolicy.fim import fim_status
    from secpolicy.fim.store import Key

    options = ctx.options.get("fim") or {}
    conf = options.get(name) or {}
    default = options.get("*") or {}
    db = conf.get("db") or os.path.join(default.get("dir") or DEFAULT_DB_DIR, f"{name}.db")
    key = conf.get("key") or default.get("key")
    if key is None:
        key_file = conf.get("key_file")
        key_env = conf.get("key_env")
        try:
            key = Key.from_file(key_file) if key_file else Key.from_env(key_env) if key_env else None
        except InputError as e:
            raise EvaluationError(f"fim({name!r}): {e.render()}") from None
    # deep: every entry is verified, so a baseline edited anywhere never reports healthy.
    status = fim_status(db, key, deep=True)
    return FimFact(name, db, status)


def register(reg: FactRegistry) -> None:
    reg.register("fim", collect_fim, params=(STR,), returns=FIM, doc="a named FIM baseline's state")
