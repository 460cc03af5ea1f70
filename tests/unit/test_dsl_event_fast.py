"""Specialised event predicates give exactly what the generic closures give: the same truth
and the same exception, for well-formed and malformed events, with and without the event
type folded in; the engine's index with type-specialised conditions picks exactly the rules
(and steps) whose generic condition holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secpolicy.dsl import ALWAYS, NEVER, Catalogue, compile_expression
from secpolicy.dsl.checker import Checked
from secpolicy.dsl.compiler import compile_event
from secpolicy.dsl.types import ObjectType
from secpolicy.events.engine import EventEngine, _compile_message
from secpolicy.events.fields import EVENT, EVENT_TYPES
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
EVCAT = Catalogue(event_root=EVENT)

# Every operator, field depth and shape of type test the compiler specialises, and some it
# leaves to the generic closures.
EXPRESSIONS = [
    'type == "exec"',
    'type != "exec"',
    'type in ["exec", "open"]',
    'type not in ["exec", "open"]',
    'type startswith "ex"',
    'type matches "^(exec|open)$"',
    'type == null',
    'type != null',
    'not (type == "exec")',
    'type == "exec" or proc.exe == "/bin/sh"',
    'proc.exe == "/bin/sh" and type == "open"',
    'proc.exe == "/bin/sh" or type == "open"',
    'proc.exe == "/bin/sh" or type == "open" or proc.uid == 0',
    'not (proc.exe in ["/a", "/bin/sh"]) and type in ["exec", "write"] and not (type == "write")',
    '(type == "exec" and proc.euid == 0) or (type == "setuid" and cred.uid == 0) or type == "bpf"',
    'type == "exec" and type == "open"',
    'type == "exec" or not (type == "exec")',
    'proc.uid == 0',
    'proc.uid != 0',
    'proc.uid < 1000',
    'proc.uid >= 1000',
    'proc.exe == null',
    'proc.exe != null',
    'proc.exe in ["/usr/bin/sudo", "/bin/sh"]',
    'proc.exe not in ["/usr/bin/sudo", "/bin/sh"]',
    'proc.uid in [0, 1000]',
    'proc.uid not in [0]',
    'file.path startswith "/etc/"',
    'file.path startswith ["/etc/", "/usr/"]',
    'file.path endswith ".conf"',
    'file.path glob "/etc/*"',
    'file.path matches "^/etc/(shadow|passwd)$"',
    'proc.cmdline contains "sudo"',
    'proc.cmdline icontains "SUDO"',
    'proc.args contains "sudo"',
    'proc.args icontains "SUDO"',
    '"O_CREAT" in file.flags',
    'file.flags == ["O_WRONLY"]',
    'file.flags != ["O_WRONLY"]',
    'net.dst_ip in 10.0.0.0/8',
    'net.dst_ip == "::1"',
    'not (net.dst_ip in 127.0.0.0/8) and not (net.dst_ip == "::1")',
    'login.uid exists',
    'not (auth.rhost exists)',
    'type exists',
    'proc exists',
    'proc.uid == login.uid',
    'any(a in proc.args: a in ["sudo", "wheel"] or a matches ",sudo")',
    'all(a in proc.args: a startswith "-")',
    'len(proc.args) > 1',
    'lower(proc.comm) == "sudo"',
    'int(proc.cmdline) == 1',
]

STRINGS = ["exec", "open", "write", "/bin/sh", "/usr/bin/sudo", "/a", "/etc/", "/etc/shadow", "/usr/lib/x.conf",
           "/tmp/x", "sudo", "SUDO", "-x", "wheel,sudo", "failure", "success", "O_CREAT", "O_WRONLY",
           "10.1.2.3", "127.0.0.1", "::1", "not-an-ip", "", "é", "1", "0x10", "\udcff"]
SCALARS = st.one_of(
    st.sampled_from(STRINGS), st.sampled_from([0, 1, 13, 1000, 65534, -1, 2**70, 4294967295]),
    st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False),
)
VALUES = st.one_of(SCALARS, SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(STRINGS), SCALARS, max_size=2))


def _object(t: ObjectType) -> st.SearchStrategy[Any]:
    shaped = st.fixed_dictionaries({}, optional={name: VALUES for name in t.fields})
    return st.one_of(shaped, shaped, shaped, VALUES)  # sometimes not an object at all


EVENTS = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(EVENT_TYPES), st.sampled_from(["nosuch", ""]))},
    optional={
        name: _object(t) if isinstance(t, ObjectType) else VALUES
        for name, t in EVENT.fields.items() if name != "type"
    },
)


def outcome(fn: Any, ev: dict[str, Any]) -> tuple[str, Any]:
    try:
        value = fn(ev)
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        return ("raises", type(exc))
    return ("value", value)


def _checked(text: str) -> Checked:
    e = compile_expression(text, EVCAT, kind="event")
    return Checked(e.node, e.nslots, e.facts_used, e.fields_used)


# Lists, macros and vars resolved by the loader: the bundled conditions come through it.
_RULES = load_policies([REPO / "policies"], builtin_registry(), only="event").event_rules
_BUNDLED = [x for r in _RULES for x in ([r.when] if r.when is not None else []) + list(r.sequence.steps if r.sequence else [])]
ALL = EXPRESSIONS + [x.text for x in _BUNDLED]
CHECKED = [_checked(t) for t in EXPRESSIONS] + [Checked(x.node, x.nslots, x.facts_used, x.fields_used) for x in _BUNDLED]
GENERIC = [compile_event(c, fast=False) for c in CHECKED]
FAST = [compile_event(c) for c in CHECKED]
BY_TYPE = [{t: compile_event(c, t) for t in EVENT_TYPES} for c in CHECKED]


def test_the_bundled_rules_are_covered() -> None:
    assert len(_BUNDLED) >= 15 and len(ALL) == len(CHECKED)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ev=EVENTS)
def test_specialised_predicates_agree_with_the_generic_ones(ev: dict[str, Any]) -> None:
    for text, generic, fast, by_type in zip(ALL, GENERIC, FAST, BY_TYPE):
        want = outcome(generic, ev)
        assert want[0] == "raises" or type(want[1]) is bool, text
        assert outcome(fast, ev) == want, text
        special = by_type.get(ev["type"])
        if special is not None:
            assert outcome(special, ev) == want, (text, ev["type"])


@pytest.mark.parametrize("text, event_type, constant", [
    ('type == "exec"', "exec", ALWAYS),
    ('type == "exec"', "open", NEVER),
    ('type in ["exec", "open"] and not (type == "open")', "open", NEVER),
    ('type == "config_change" or (type == "write" and file.path startswith "/etc/audit/")', "config_change", ALWAYS),
    ('proc.exe == "x" or type == "open"', "open", None),  # proc.exe still read: it may raise
])
def test_conditions_on_the_type_alone_fold_to_constants(text: str, event_type: str, constant: Any) -> None:
    fn = compile_event(_checked(text), event_type)
    if constant is None:
        assert fn not in (ALWAYS, NEVER)
        with pytest.raises(AttributeError):
            fn({"type": event_type, "proc": "not an object"})
        assert fn({"type": event_type}) is True
    else:
        assert fn is constant


ENGINE = EventEngine(_RULES)


def _generic(rule: Any, step: int, ev: dict[str, Any]) -> tuple[str, Any]:
    """What the generic closures say of a rule's condition (or of one step, under `when`)."""
    exprs = [rule.when] if step < 0 else [x for x in (rule.when, rule.sequence.steps[step]) if x is not None]
    for x in exprs:
        got = outcome(compile_event(Checked(x.node, x.nslots, x.facts_used, x.fields_used), fast=False), ev)
        if got[0] == "raises" or not got[1]:
            return got if got[0] == "raises" else ("value", False)
    return ("value", True)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ev=EVENTS)
def test_the_index_with_specialised_conditions_picks_what_the_generic_conditions_hold_for(ev: dict[str, Any]) -> None:
    hits = set()
    for rt, step, fn in ENGINE.matcher.candidates(ev):
        got = ("value", True) if fn is None else outcome(fn, ev)
        assert got == _generic(rt.rule, step, ev), (rt.id, step)
        if got == ("value", True):
            hits.add((rt.id, step))
    steps = [(r, -1) for r in _RULES if r.sequence is None] + [
        (r, i) for r in _RULES if r.sequence is not None for i in range(len(r.sequence.steps))
    ]
    assert hits == {(r.id, i) for r, i in steps if _generic(r, i, ev) == ("value", True)}


MESSAGES = [r.message for r in _RULES if r.message] + ["{type} {proc.exe}: {proc.args} {user.uid} {nosuch.x}", "plain"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ev=EVENTS)
def test_messages_render_as_the_generic_renderer_renders_them(ev: dict[str, Any]) -> None:
    for m in MESSAGES:
        assert _compile_message(m, "t")(ev) == _compile_message(m, "t", short=False)(ev), m
