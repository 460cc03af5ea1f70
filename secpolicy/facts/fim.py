"""`fim(name)`: the state of a named FIM baseline (exists, verified, ages, last check's
counts), so policies can require a baseline that is checked often and shows no changes."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Protocol

from secpolicy.dsl.types import BOOL, DURATION, INT, STR, ObjectType
from secpolicy.errors import EvaluationError, InputError

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["DEFAULT_DB_DIR", "FIM", "BaselineReader", "register"]

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


class BaselineReader(Protocol):
    """How a baseline's state is read (`secpolicy.fim.status.policy_status`): handed in by the
    composition root (secpolicy.vocabulary), so facts/ does not import fim/. Returns an object
    with the FIM fields; raises InputError when the key cannot be read."""

    def __call__(self, db: str, *, key: Any = None, key_file: str | None = None,
                 key_env: str | None = None) -> Any: ...


def collect_fim(ctx: FactContext, name: str, *, read: BaselineReader) -> FimFact:
    options = ctx.options.get("fim") or {}
    conf = options.get(name) or {}
    default = options.get("*") or {}
    db = conf.get("db") or os.path.join(default.get("dir") or DEFAULT_DB_DIR, f"{name}.db")
    try:
        status = read(db, key=conf.get("key") or default.get("key"), key_file=conf.get("key_file"),
                      key_env=conf.get("key_env"))
    except InputError as e:
        raise EvaluationError(f"fim({name!r}): {e.render()}") from None
    return FimFact(name, db, status)


def register(reg: FactRegistry, read: BaselineReader) -> None:
    reg.register("fim", functools.partial(collect_fim, read=read), params=(STR,), returns=FIM,
                 doc="a named FIM baseline's state")
