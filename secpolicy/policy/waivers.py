"""Waivers: accepted exceptions for failing rules, with justification, approver and expiry.
An expired waiver counts as absent and is reported as expired."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy.errors import LocatedError
from secpolicy.models import Waiver, waiver_host_matches
from secpolicy.policy.loader import read_text_file

if TYPE_CHECKING:
    from secpolicy.policy.yamlpos import Positioned

__all__ = ["WaiverSet", "load_waivers"]

_FIELDS = {"rule_id", "justification", "approver", "expires", "hosts"}


@dataclass(frozen=True)
class WaiverState:
    waiver: Waiver
    status: str  # active | expired | other-host


@dataclass(frozen=True)
class WaiverSet:
    waivers: tuple[Waiver, ...] = ()
    path: str | None = None
    # where each waiver's rule_id stands (same order as `waivers`), for located errors
    rule_id_at: tuple[tuple[int | None, int | None, str | None], ...] = field(default=(), compare=False, repr=False)

    def for_rule(self, rule_id: str, host: str, today: dt.date) -> tuple[Waiver | None, tuple[Waiver, ...]]:
        """(the first active waiver, every expired waiver) for `rule_id` on `host`: each
        expired waiver that matched is reported, not only the first, so an auditor sees
        every lapsed exception."""
        active = None
        expired: list[Waiver] = []
        for w in self.waivers:
            if w.rule_id != rule_id:
                continue
            if not waiver_host_matches(host, w.hosts):
                continue
            if w.expires and dt.date.fromisoformat(w.expires) < today:
                expired.append(w)
            else:
                active = active or w
        return active, tuple(expired)

    def unknown_rules(self, known: Iterable[str]) -> list[Waiver]:
        ids = set(known)
        return [w for w in self.waivers if w.rule_id not in ids]

    def unknown_rule_errors(self, known: Iterable[str]) -> list[LocatedError]:
        """`file:line:col: waiver for unknown rule id 'x'` (caret under the id) for each."""
        ids = set(known)
        out = []
        for i, w in enumerate(self.waivers):
            if w.rule_id in ids:
                continue
            msg = f"waiver for unknown rule id {w.rule_id!r}"
            if i < len(self.rule_id_at) and self.path is not None:
                line, col, src = self.rule_id_at[i]
                out.append(LocatedError(msg, self.path, line, col, src))
            else:
                out.append(LocatedError(msg, w.source or self.path or "<waivers>"))
        return out


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _text(doc: Positioned, at: tuple, value: Any, name: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if isinstance(value, str) and not value.strip():
        raise doc.error(at, f"{name} is empty: it must be a non-empty string")
    if not isinstance(value, str):
        got = "nothing" if value is None else f"a {_kind(value)}"
        raise doc.error(at, f"{name} must be a non-empty string, not {got}")
    return value


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def _hosts(doc: Positioned, at: tuple, raw: Any) -> tuple[str, ...]:
    """The host patterns; () (every host) only when `hosts` is left out. An empty or null
    list is a mistake, never "all hosts": a waiver would silently cover the whole fleet."""
    if raw is None or raw == []:
        shown = "null" if raw is None else "[]"
        raise doc.error(at, f"hosts is empty ({shown}): list host patterns, or leave hosts out to waive on every host")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise doc.error(at, f"hosts must be a host pattern or a list of them, not a {_kind(raw)}")
    for k, h in enumerate(items):
        where = at if isinstance(raw, str) else at + (k,)
        if not isinstance(h, str) or not h.strip():
            raise doc.error(where, f"a host pattern must be a non-empty string, not {_kind(h) if h else repr(h)}")
    return tuple(items)


def _expires(doc: Positioned, at: tuple, raw: Any) -> str | None:
    if raw is None:
        # `expires:` with its date forgotten would waive the rule for ever.
        raise doc.error(at, "expires is empty (null): give a date (YYYY-MM-DD), or leave expires out for a waiver that never expires")
    text = raw.isoformat() if isinstance(raw, dt.date) else raw
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise doc.error(at, f"expires must be a date (YYYY-MM-DD), not {raw!r}")
    try:
        dt.date.fromisoformat(text)
    except ValueError as e:
        raise doc.error(at, f"expires must be a date (YYYY-MM-DD), not {raw!r} ({e})") from None
    return text


def load_waivers(path: Path) -> WaiverSet:
    """Read and validate a waiver file: every field has its type, every error its place, so
    nothing malformed passes `lint` and then breaks `scan`."""
    shown = str(path)
    text, _ = read_text_file(path)
    from secpolicy.policy.yamlpos import load_yaml  # PyYAML, only where a file is read

    doc = load_yaml(text, shown)
    data = doc.data
    base: tuple = ()
    if isinstance(data, dict) and set(data) == {"waivers"}:
        entries, base = data["waivers"], ("waivers",)
    else:
        entries = data
    if not isinstance(entries, list):
        raise doc.error(base, "a waiver file is a list of waivers (or a mapping with waivers:)")
    out: list[Waiver] = []
    where: list[tuple[int | None, int | None, str | None]] = []
    for i, e in enumerate(entries):
        at = base + (i,)
        if not isinstance(e, dict):
            raise doc.error(at, "a waiver is a mapping with rule_id, justification, approver, expires")
        for k in e:
            if k not in _FIELDS:
                shown_key = k if isinstance(k, str) else repr(k)
                raise doc.error(at + (k,), f"unknown field {shown_key!r} (allowed: {', '.join(sorted(_FIELDS))})", key=True)
        for req in ("rule_id", "justification"):
            if req not in e:
                raise doc.error(at, f"missing required field: {req}")
        rule_id = _text(doc, at + ("rule_id",), e["rule_id"], "rule_id", required=True)
        justification = _text(doc, at + ("justification",), e["justification"], "justification", required=True)
        approver = _text(doc, at + ("approver",), e.get("approver"), "approver", required=False)
        expires = _expires(doc, at + ("expires",), e["expires"]) if "expires" in e else None
        hosts = _hosts(doc, at + ("hosts",), e["hosts"]) if "hosts" in e else ()
        assert rule_id is not None and justification is not None
        sp = doc.spans.get(at)
        out.append(
            Waiver(
                rule_id=rule_id,
                justification=justification.strip(),
                approver=approver,
                expires=expires,
                hosts=hosts,
                source=f"{shown}:{sp.line if sp else 1}",
            )
        )
        loc = doc.error(at + ("rule_id",), "")
        where.append((loc.line, loc.column, loc.source_line))
    return WaiverSet(tuple(out), shown, tuple(where))
