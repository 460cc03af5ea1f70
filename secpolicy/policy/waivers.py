"""Waivers: accepted exceptions for failing rules, with justification, approver and expiry.
An expired waiver counts as absent and is reported as expired."""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from secpolicy.models import Waiver
from secpolicy.policy.loader import read_text_file
from secpolicy.policy.yamlpos import load_yaml

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

    def for_rule(self, rule_id: str, host: str, today: dt.date) -> tuple[Waiver | None, Waiver | None]:
        """(active waiver, expired waiver) for `rule_id` on `host`."""
        active = expired = None
        for w in self.waivers:
            if w.rule_id != rule_id:
                continue
            if w.hosts and not any(fnmatch.fnmatchcase(host, h) for h in w.hosts):
                continue
            if w.expires and dt.date.fromisoformat(w.expires) < today:
                expired = expired or w
            else:
                active = active or w
        return active, expired

    def unknown_rules(self, known: Iterable[str]) -> list[Waiver]:
        ids = set(known)
        return [w for w in self.waivers if w.rule_id not in ids]


def load_waivers(path: Path) -> WaiverSet:
    shown = str(path)
    text, _ = read_text_file(path)
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
    for i, e in enumerate(entries):
        at = base + (i,)
        if not isinstance(e, dict):
            raise doc.error(at, "a waiver is a mapping with rule_id, justification, approver, expires")
        for k in e:
            if k not in _FIELDS:
                raise doc.error(at + (k,), f"unknown field {k!r} (allowed: {', '.join(sorted(_FIELDS))})", key=True)
        for req in ("rule_id", "justification"):
            if not isinstance(e.get(req), str) or not e[req].strip():
                raise doc.error(at, f"missing required field: {req}")
        expires = e.get("expires")
        if expires is not None:
            if isinstance(expires, dt.date):
                expires = expires.isoformat()
            try:
                dt.date.fromisoformat(str(expires))
            except ValueError:
                raise doc.error(at + ("expires",), f"expires must be a date (YYYY-MM-DD), not {expires!r}") from None
        raw_hosts = e.get("hosts") or ()
        hosts: tuple[str, ...] = (raw_hosts,) if isinstance(raw_hosts, str) else tuple(raw_hosts)
        sp = doc.spans.get(at)
        out.append(
            Waiver(
                rule_id=e["rule_id"],
                justification=e["justification"].strip(),
                approver=e.get("approver"),
                expires=str(expires) if expires is not None else None,
                hosts=tuple(str(h) for h in hosts),
                source=f"{shown}:{sp.line if sp else 1}",
            )
        )
    return WaiverSet(tuple(out), shown)

