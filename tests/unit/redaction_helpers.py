"""Shared helpers for the redaction tests: an exec event, and the check that its arguments,
command line and an alert about it come out masked."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from secpolicy.events.model import canonical_line
from secpolicy.redaction import Redactor
from secpolicy.redaction.detectors import may_hold_secret


def exec_event(args: list[str]) -> dict[str, Any]:
    return {"type": "exec", "ts": "2026-11-21T05:00:00.000000000Z", "host": "h1",
            "proc": {"pid": 100, "exe": "/usr/bin/" + args[0], "args": args, "cmdline": " ".join(args)},
            "user": {"uid": 1000, "name": "alice"}}


def assert_exec_masked(args: list[str], masked: list[str], message_tail: str, masked_tail: str,
                       secrets: Iterable[str]) -> None:
    """An exec event of `args`: the prefilter does not clear it, its arguments and command line
    come out as `masked`, and so does an alert whose message quotes its command line followed by
    `message_tail` (`masked_tail` once redacted); no secret is left anywhere in the alert."""
    r = Redactor()
    ev = exec_event(args)
    assert not r.certainly_clean(ev, canonical_line(ev))
    out = r.event(ev)
    assert out["proc"]["args"] == masked
    assert out["proc"]["cmdline"] == " ".join(masked)
    assert out["redacted"] == ["proc.args", "proc.cmdline"]
    alert = {"rule_id": "r", "title": "t", "message": f"alice ran {ev['proc']['cmdline']}{message_tail}", "event": ev,
             "events": [ev], "context": {"kind": "match", "key": {}, "count": 1}}
    assert not r.certainly_clean(alert, canonical_line(alert))
    red = r.alert(alert)
    assert red["message"] == f"alice ran {' '.join(masked)}{masked_tail}"
    assert not [s for s in secrets if s in repr(red)]


def assert_shortcuts_agree(value: str) -> None:
    """The prefilter's shortcuts change nothing: `value` redacts as it does through every
    detector, and where that changes it, neither the prefilter nor an event's line clears it."""
    thorough = Redactor()
    thorough._prefilter = None  # every string through every detector
    expected = thorough.text(value)
    assert Redactor().text(value) == expected
    if expected != value:
        assert may_hold_secret(value) or "\\" in value, value  # escaped text: its views are searched
        ev = exec_event(["app", "x"])
        ev["proc"]["cmdline"] = value
        assert not Redactor().certainly_clean(ev, canonical_line(ev)), value
