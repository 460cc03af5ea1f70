"""The expression language: literals, operators, types, errors with positions, evaluation."""

from __future__ import annotations

import ipaddress

import pytest

from secpolicy.dsl import Catalogue, Signature, ast, compile_expression, parse_expression
from secpolicy.dsl.types import BOOL, DURATION, INT, MODE, SIZE, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError, LocatedError
from secpolicy.events.fields import EVENT

THING = ObjectType(
    "thing",
    {"name": STR, "mode": MODE, "size": SIZE, "age": DURATION, "tags": ListType(STR), "n": INT},
    methods={"option": Method((STR,), STR)},
)


class Thing:
    def __init__(self, name="a", mode=0o640, size=2048, age=3600, tags=("x",), n=3, options=None):
        self.name, self.mode, self.size, self.age, self.tags, self.n = name, mode, size, age, list(tags), n
        self._options = options or {}

    def option(self, key):
        return self._options.get(key)

    def where(self, name, *args):
        return f"/etc/thing:{len(name)}"


class Env:
    def __init__(self, facts):
        self.facts = facts
        self.trace = None
        self.last_source = None
        self.last_operands = None

    def fact(self, name, args):
        v = self.facts[name]
        return v(*args) if callable(v) and not isinstance(v, Thing) else v


CAT = Catalogue(
    facts={
        "thing": Signature("thing", (STR,), THING),
        "things": Signature("things", (), ListType(THING)),
        "flag": Signature("flag", (), BOOL),
    }
)


def run(expr: str, **facts):
    env = Env({"thing": lambda name: facts.get("thing", Thing(name)), "things": facts.get("things", []), "flag": True})
    return compile_expression(expr, CAT).fn(env)


@pytest.mark.parametrize(
    "text, value",
    [
        ("0o640", 0o640),
        ("0x1F", 31),
        ("0b101", 5),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("60s", 60),
        ("5m", 300),
        ("1h", 3600),
        ("7d", 604800),
        ("10MB", 10_000_000),
        ("4KiB", 4096),
        ('"a\\"b"', 'a"b'),
        ("'single'", "single"),
        ("true", True),
        ("false", False),
    ],
)
def test_literals(text, value):
    node = parse_expression(text)
    assert isinstance(node, ast.Literal)
    assert node.value == value


def test_ip_and_cidr_literals():
    assert parse_expression("10.0.0.1").value == ipaddress.ip_address("10.0.0.1")
    assert parse_expression("10.0.0.0/8").value == ipaddress.ip_network("10.0.0.0/8")


def test_precedence_not_binds_looser_than_comparison():
    node = parse_expression('not a contains "x" and b')
    assert isinstance(node, ast.And)
    assert isinstance(node.items[0], ast.Not)
    assert isinstance(node.items[0].item, ast.Compare)


def test_bitand_binds_tighter_than_equality():
    node = parse_expression("a & 0o077 == 0")
    assert isinstance(node, ast.Compare) and isinstance(node.left, ast.BitAnd)


def test_keywords_are_not_prefixes_of_names():
    node = parse_expression("counter == 1 and order == 2 and inside == 3")
    assert [i.left.name for i in node.items] == ["counter", "order", "inside"]


@pytest.mark.parametrize(
    "expr, expected",
    [
        ('thing("x").mode & 0o077 == 0o040', True),
        ('thing("x").mode & 0o077 == 0', False),
        ('thing("x").mode <= 0o644', True),
        ('thing("x").size > 1KiB and thing("x").size < 1MB', True),
        ('thing("x").age >= 1h', True),
        ('thing("x").age > 2h', False),
        ('thing("x").name == "x"', True),
        ('thing("x").name in ["a", "x"]', True),
        ('thing("x").name not in ["a", "x"]', False),
        ('thing("x").tags contains "x"', True),
        ('thing("x").tags icontains "X"', True),
        ('thing("abc").name startswith "ab"', True),
        ('thing("abc").name endswith ["zz", "bc"]', True),
        ('thing("abc").name glob "a*c"', True),
        ('thing("abc").name matches "^a.c$"', True),
        ('thing("abc").name icontains "B"', True),
        ('"b" in thing("abc").name', True),
        ('thing("x").option("k") exists', False),
        ('len(thing("x").tags) == 1', True),
        ('upper(thing("x").name) == "X"', True),
        ("flag", True),
        ("not flag", False),
    ],
)
def test_evaluation(expr, expected):
    assert run(expr) is expected


def test_quantifiers():
    ts = [Thing("root", n=0), Thing("bob", n=1000), Thing("eve", n=0)]
    assert run('all(t in things: t.n != 0 or t.name == "root")', things=ts) is False
    assert run('any(t in things: t.name == "bob")', things=ts) is True
    assert run('none(t in things: t.name == "mallory")', things=ts) is True
    assert run("count(t in things: t.n == 0) == 2", things=ts) is True
    assert run("all(t in things: t.n >= 0)", things=[]) is True


def test_nested_quantifiers_use_separate_slots():
    ts = [Thing("a", tags=["a", "b"]), Thing("b", tags=["b"])]
    assert run("all(t in things: any(x in t.tags: x == t.name))", things=ts) is True


def test_ordering_with_absent_value_is_an_evaluation_error():
    with pytest.raises(EvaluationError, match="no value"):
        run('thing("x").option("missing") startswith "a"')


def test_equality_with_absent_value_is_false_not_error():
    assert run('thing("x").option("missing") == "yes"') is False
    assert run('thing("x").option("missing") != "yes"') is True


# type errors, located ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr, message, column",
    [
        ('thing("x").mod == 0o640', "unknown field 'mod' of thing", 12),
        ('thing("x").mode == "0640"', "cannot compare mode with string", 1),
        ('thing("x").age > 7', "cannot apply '>' to duration and int", 1),
        ('thing("x").name & 0o7 == 0', "'&' needs integers or modes", 1),
        ('nothing("x")', "unknown fact 'nothing'", 1),
        ("thing", "fact 'thing' takes 1 argument(s)", 1),
        ('thing("x").option(1) == "a"', "expected string, got int", 19),
        ('thing("x").name matches "("', "invalid regular expression", 25),
        ('thing("x").name', "must be a condition (bool)", 1),
        ('all(t in thing("x"): t.n == 1)', "all() needs a collection", 10),
        ('thing("x").mode == 1 and thing("x").name', "expected a condition (bool)", 26),
    ],
)
def test_type_errors_are_located(expr, message, column):
    with pytest.raises(LocatedError) as exc:
        compile_expression(expr, CAT)
    assert message in exc.value.message
    assert exc.value.column == column
    rendered = exc.value.render()
    assert rendered.splitlines()[0].startswith(f"<expression>:1:{column}: ")
    assert rendered.splitlines()[-1] == "    " + " " * (column - 1) + "^"


@pytest.mark.parametrize(
    "expr, column, message",
    [
        ("a ==", 5, "unexpected end of expression"),
        ("a === b", 5, "unexpected character '='"),
        ('file("x"', 9, "unexpected end of expression"),
        ("a and and b", 7, "unexpected 'and'"),
        ("a == 999.1.1.1", 6, "invalid literal"),
    ],
)
def test_syntax_errors_are_located(expr, column, message):
    with pytest.raises(LocatedError) as exc:
        parse_expression(expr)
    assert exc.value.line == 1 and exc.value.column == column
    assert message in exc.value.message


# event expressions --------------------------------------------------------------------------
EVCAT = Catalogue(event_root=EVENT)


def ev(expr: str):
    return compile_expression(expr, EVCAT, kind="event").fn


def test_event_fields_and_missing_values():
    f = ev('type == "exec" and proc.exe in ["/usr/bin/sudo"] and proc.uid != 0')
    assert f({"type": "exec", "proc": {"exe": "/usr/bin/sudo", "uid": 1000}}) is True
    assert f({"type": "exec", "proc": {"exe": "/usr/bin/sudo", "uid": 0}}) is False
    # a missing field never makes a comparison true, not even !=
    assert f({"type": "exec", "proc": {"exe": "/usr/bin/sudo"}}) is False
    assert f({"type": "exec"}) is False


def test_event_cidr_and_ip():
    f = ev("net.dst_ip in 10.0.0.0/8 and net.dst_ip != 10.0.0.1")
    assert f({"net": {"dst_ip": "10.2.3.4"}}) is True
    assert f({"net": {"dst_ip": "10.0.0.1"}}) is False
    assert f({"net": {"dst_ip": "192.168.1.1"}}) is False
    assert f({"net": {"dst_ip": "::1"}}) is False


def test_event_rules_cannot_call_facts():
    with pytest.raises(LocatedError, match="event rules read event fields"):
        compile_expression('file("/etc/x").exists', EVCAT, kind="event")


def test_unknown_event_field_is_located_at_the_field():
    with pytest.raises(LocatedError) as exc:
        compile_expression('type == "exec" and proc.exee == "x"', EVCAT, kind="event")
    assert exc.value.column == 25
    assert "unknown field 'exee' of event.proc" in exc.value.message


def test_operator_words_are_names_after_a_dot():
    node = parse_expression("sshd.matches == 1 and x.contains exists")
    assert node.items[0].left.name == "matches"


def test_plus_joins_strings_and_adds_numbers():
    assert run('thing("a" + "b").name == "ab"') is True
    assert run('thing("x").n + 1 == 4') is True
    assert run('thing("x").age + 1h == 2h') is True
    with pytest.raises(LocatedError, match="'\\+' joins strings or adds numbers"):
        compile_expression('thing("x").name + 1 == "a"', CAT)


def test_lists_compare_by_content():
    assert run('thing("x").tags == ["x"]') is True
    assert run('thing("x").tags != ["x", "y"]') is True
