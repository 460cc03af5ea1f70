"""The shortcuts redaction takes on every record written (one RE2 search over its strings, or
over its JSON line) never skip a record the detectors would change: checked on records built
from the fragments of every secret class, in every arrangement hypothesis finds."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secpolicy.events.model import canonical_line
from secpolicy.redaction import Redactor
from secpolicy.redaction.detectors import json_may_hold_secret, json_unescaped, may_hold_secret

FRAGMENTS = [
    "mysql", "/usr/bin/mysql", "-pS3cret", "-uroot", "--password", "--password=x1", "password", "=", ":", " ",
    "\t", "\n", '"', "'", "token=abc", "DB_PASSWORD", "secret", "key", "api_key", '"api_key": "v"', "requirepass",
    "requirepass foo", "bindpw", "Authorization:", "Bearer", "abc123", "https://u:pw@h/", "://", "@",
    "4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "AKIAIOSFODNN7EXAMPLE",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "$6$saltsalt$hashhashhash", "-----BEGIN PRIVATE KEY-----",
    "MIIEvQ", "-----END PRIVATE KEY-----", "sshpass", "-p", "curl", "-u", "user:pw", "redis-cli", "-a", "/etc/passwd",
    "cp", "x", "passwd", "PasswordAuthentication", "no", "on", "\\", "é", "sudo", "|", ";",
]
text = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8).map("".join)


def event(exe: str, args: list[str], cmdline: str, path: str, name: str) -> dict[str, Any]:
    return {"type": "exec", "ts": "2026-11-21T05:00:00.000000000Z",
            "proc": {"exe": exe, "args": args, "cmdline": cmdline, "cwd": "/tmp"},
            "file": {"path": path}, "user": {"uid": 1, "name": name}}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text)
def test_the_prefilter_passes_every_text_a_detector_changes(value: str) -> None:
    if Redactor(None).text(value) != value:
        assert may_hold_secret(value), value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text, st.lists(text, min_size=1, max_size=5), text, text, text)
def test_a_record_left_alone_by_the_shortcuts_needs_nothing(exe: str, args: list[str], cmdline: str, path: str,
                                                             name: str) -> None:
    r = Redactor()
    ev = event(exe, args, cmdline, path, name)
    red = r.event(ev)
    changed = red is not ev
    thorough = Redactor()
    thorough._prefilter = None  # every string through every detector: what the shortcuts must equal
    assert thorough.event(ev) == red
    line = canonical_line(ev)
    if changed:
        assert not r.certainly_clean(ev, line), ev
    alert = {"rule_id": "r", "title": "t", "message": cmdline, "event": ev, "events": [ev],
             "context": {"kind": "match", "key": {}, "count": 1}}
    if r.alert(alert) is not alert:
        assert not r.certainly_clean(alert, canonical_line(alert)), alert


def test_the_shortcuts_are_tried_on_records_that_do_change() -> None:
    # Not vacuous: records built from these fragments are changed, and the line says so.
    ev = event("/usr/bin/backup", ["backup", "--password", "x1"], "backup --password x1", "/etc/passwd", "a")
    assert Redactor().event(ev) is not ev and json_may_hold_secret(canonical_line(ev))
    quiet = event("/bin/cp", ["cp", "/etc/passwd", "/tmp/x"], "cp /etc/passwd /tmp/x", "/etc/passwd", "a")
    assert Redactor().event(quiet) is quiet and Redactor().certainly_clean(quiet, canonical_line(quiet))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(text, st.lists(text, min_size=1, max_size=4), text), min_size=1, max_size=12))
def test_a_batch_leaves_alone_only_records_that_need_nothing(parts: list[tuple[str, list[str], str]]) -> None:
    """The writer decides a batch of records with one search over all their lines."""
    r = Redactor()
    records = [event(exe, args, cmdline, "/x", "a") for exe, args, cmdline in parts]
    flags = r.certainly_clean_many(records, [canonical_line(e) for e in records])
    for ev, clean in zip(records, flags, strict=True):
        if r.event(ev) is not ev:
            assert not clean, ev


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_a_line_unescaped_is_its_text_exactly_or_undecided(value: str) -> None:
    """The prefilter reads a record's line as the text it holds: every escape orjson writes
    (quote, backslash, newline, tab, ...) undone once, or None (`\\u` escapes: undecided)."""
    line = orjson.dumps({"v": value})
    got = json_unescaped(line)
    if b"\\u" in line or b"\\/" in line:  # `\/`: an escaped backslash before a slash, a walk too
        assert got is None
    else:
        assert got == ('{"v":"' + value + '"}').encode()


def test_escapes_orjson_never_writes_leave_the_line_undecided() -> None:
    assert json_unescaped(b'{"v":"https:\\/\\/u:p@h"}') is None
    assert json_unescaped(b'{"v":"x\\\\/y"}') is None  # an escaped backslash before a slash: still a walk


def test_every_pattern_compiled_on_first_use_compiles() -> None:
    """The detectors' patterns (and the prefilter) are compiled when first used, not at start-up:
    a pattern Python's engine refuses would otherwise surface only in the run that needs it."""
    import re

    import re2

    from secpolicy.redaction import detectors, redactor
    from secpolicy.redaction.detectors import LazyPattern

    lazy = [v for m in (detectors, redactor) for v in vars(m).values() if isinstance(v, LazyPattern)]
    lazy += [p for d in detectors.builtin_detectors(credentials=True, payment_cards=True)
             if isinstance(p := getattr(d, "pattern", None), LazyPattern)]
    assert len(lazy) > 20
    for p in lazy:
        assert isinstance(p.compiled, re.Pattern), p
    assert re2.compile(detectors._PREFILTER, detectors._prefilter_options()) is not None
