"""Rules that would silently mean something other than what they say: literals read in another
base, absent values that turn a negated condition into a pass, addresses ordered as text,
`exists` of a value that is present but false."""

from __future__ import annotations

import textwrap

import pytest

from secpolicy.dsl import PLAIN_ORIGIN, Catalogue, Signature, compile_expression, parse_expression
from secpolicy.dsl.checker import check_expression
from secpolicy.dsl.compiler import compile_event
from secpolicy.dsl.types import BOOL, INT, MODE, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError, LocatedError
from secpolicy.events.fields import EVENT

CONF = ObjectType(
    "conf",
    {"mode": MODE, "flag": BOOL, "n": INT, "name": STR, "items": ListType(STR)},
    methods={"bool": Method((STR,), BOOL)},
)


class Conf:
    """A fact whose booleans may be absent (None), as `journald.bool("X")` is when unset."""

    def __init__(self, mode=0o640, flag=None, n=3, name="a", items=(), bools=None):
        self.mode, self.flag, self.n, self.name, self.items = mode, flag, n, name, list(items)
        self.bools = bools or {}

    def bool(self, key):
        return self.bools.get(key)


class Env:
    def __init__(self, conf: Conf, confs: list[Conf] | None = None):
        self.conf, self.confs = conf, confs or []

    def fact(self, name, args):
        return self.conf if name == "conf" else self.confs

    def var(self, name):
        raise KeyError(name)


CAT = Catalogue(facts={"conf": Signature("conf", (), CONF), "confs": Signature("confs", (), ListType(CONF))})


def both(expr: str, conf: Conf, confs: list[Conf] | None = None):
    """The plain closure's and the traced closure's verdicts: they must agree."""
    c = compile_expression(expr, CAT)
    env = Env(conf, confs)
    out = []
    for f in (lambda: bool(c.fn(env)), lambda: c.traced(env, [])):  # type: ignore[misc]
        try:
            out.append(f())
        except EvaluationError:
            out.append("error")
    return out


# a decimal literal with a leading zero ------------------------------------------------------
@pytest.mark.parametrize("expr", ["conf.mode <= 0644", "conf.mode & 0022 == 0", "conf.n == -010", "conf.n == 00644"])
def test_decimal_literal_with_leading_zero_is_an_error_not_a_decimal_mode(expr):
    # `0644` read as decimal 644 is 0o1204: mode 0o777 (511) would pass `mode <= 0644`.
    with pytest.raises(LocatedError) as exc:
        compile_expression(expr, CAT)
    assert "is not octal: write 0o" in exc.value.message


def test_decimal_literal_with_leading_zero_error_points_at_the_literal():
    with pytest.raises(LocatedError) as exc:
        compile_expression("conf.mode <= 0644", CAT)
    assert (exc.value.line, exc.value.column) == (1, 14)
    assert "write 0o644 for a mode" in exc.value.message


@pytest.mark.parametrize("expr, value", [("0", 0), ("00", 0), ("10", 10), ("0o644", 0o644), ("0x1F", 31), ("-0", 0)])
def test_plain_zero_and_prefixed_literals_still_read(expr, value):
    c = compile_expression(f"conf.n == {expr}", CAT)
    assert c.fn(Env(Conf(n=value))) is True


# an absent boolean used as a condition ------------------------------------------------------
@pytest.mark.parametrize(
    "expr",
    [
        'not conf.bool("Storage")',
        "not conf.flag",
        "not (conf.flag or false)",
        "none(c in confs: c.flag)",
        "count(c in confs: c.flag) == 0",
        "all(c in confs: not c.flag)",
    ],
)
def test_absent_boolean_under_negation_is_an_error_not_a_pass(expr):
    assert both(expr, Conf(), [Conf()]) == ["error", "error"]


@pytest.mark.parametrize(
    "expr, conf, want",
    [
        ('not conf.bool("Storage")', Conf(bools={"Storage": False}), True),
        ('not conf.bool("Storage")', Conf(bools={"Storage": True}), False),
        ("none(c in confs: c.flag)", Conf(flag=False), True),
        # Where true is what the rule wants, absent counts as false: it can only fail.
        ('conf.bool("Storage")', Conf(), False),
        ('conf.bool("Storage") or conf.n == 3', Conf(), True),
        ('conf.bool("Storage") and conf.n == 3', Conf(), False),
        # `== null` / `exists` are how absence is tested on purpose.
        ('conf.bool("Storage") == null or conf.bool("Storage")', Conf(), True),
        ('not conf.bool("Storage") exists', Conf(), True),
    ],
)
def test_present_booleans_and_positive_absent_ones_are_unchanged(expr, conf, want):
    assert both(expr, conf, [conf]) == [want, want]


# `exists` of a present false ----------------------------------------------------------------
def test_exists_of_a_false_boolean_is_present():
    # `Seal=no`: the value is set, so "unset or yes" must fail, not pass through the guard.
    expr = 'not conf.bool("Seal") exists or conf.bool("Seal") == true'
    assert both(expr, Conf(bools={"Seal": False})) == [False, False]
    assert both(expr, Conf(bools={"Seal": True})) == [True, True]
    assert both(expr, Conf()) == [True, True]
    assert both("conf.flag exists", Conf(flag=False)) == [True, True]


def test_exists_of_a_false_event_field_is_present():
    proc = ObjectType("ev.proc", {"tty": BOOL}, dict_access=True)
    root = ObjectType("ev", {"type": STR, "proc": proc}, dict_access=True)
    text = "proc.tty exists"
    checked = check_expression(parse_expression(text), Catalogue(event_root=root), PLAIN_ORIGIN(text), text)
    for fast in (True, False):
        f = compile_event(checked, fast=fast)
        assert f({"proc": {"tty": False}}) is True
        assert f({"proc": {}}) is False


# addresses are not ordered as text ----------------------------------------------------------
@pytest.mark.parametrize(
    "expr",
    [
        "net.dst_ip < 10.0.0.10",
        "net.dst_ip >= 10.0.0.100",
        '"10.0.0.9" < 10.0.0.10',
        "net.src_ip > net.dst_ip",
    ],
)
def test_ordering_ip_addresses_is_a_type_error(expr):
    # As strings "10.0.0.9" > "10.0.0.10": a range written with < and > would be wrong.
    with pytest.raises(LocatedError) as exc:
        compile_expression(expr, Catalogue(event_root=EVENT), kind="event")
    assert "addresses" in exc.value.message


def test_ip_equality_and_cidr_membership_still_work():
    f = compile_expression("net.dst_ip == 10.0.0.9 or net.dst_ip in 10.1.0.0/16", Catalogue(event_root=EVENT), kind="event").fn
    assert f({"net": {"dst_ip": "10.0.0.9"}}) is True
    assert f({"net": {"dst_ip": "10.1.2.3"}}) is True
    assert f({"net": {"dst_ip": "10.0.0.10"}}) is False
    assert f({"net": {"dst_ip": "::ffff:10.1.2.3"}}) is True


# '&' and '+' on an absent value -------------------------------------------------------------
@pytest.mark.parametrize(
    "expr",
    [
        # "the binary is setuid": a missing file must not pass because absent != 0.
        "conf.mode & 0o4000 != 0",
        "not (conf.mode & 0o022 == 0)",
        'conf.name + ".bak" != "x.bak"',
        "conf.n + 1 != 4",
    ],
)
def test_bitand_and_plus_on_an_absent_value_are_errors(expr):
    assert both(expr, Conf(mode=None, name=None, n=None)) == ["error", "error"]


def test_bitand_and_plus_on_present_values_are_unchanged():
    assert both("conf.mode & 0o4000 != 0", Conf(mode=0o4755)) == [True, True]
    assert both("conf.mode & 0o022 == 0", Conf(mode=0o644)) == [True, True]
    assert both('conf.name + ".bak" == "a.bak"', Conf()) == [True, True]


def test_bitand_and_plus_on_a_missing_event_field_stay_false_in_event_rules():
    f = compile_expression('proc.exe + "x" != "x" or proc.uid & 1 != 1', Catalogue(event_root=EVENT), kind="event").fn
    assert f({"type": "exec", "proc": {}}) is False


# a named list of networks -------------------------------------------------------------------
def _load(tmp_path, body: str):
    from secpolicy.vocabulary import builtin_registry, load_policies

    p = tmp_path / "p.yaml"
    p.write_text("metadata: {id: t, title: T, version: '1'}\n" + textwrap.dedent(body))
    return load_policies([p], builtin_registry())


def test_named_list_of_networks_matches_addresses_inside_them(tmp_path):
    # As strings, "10.66.1.2" in ["10.66.0.0/16"] is false: the rule would never fire.
    ps = _load(tmp_path, """\
        lists:
          blocked_nets: [10.66.0.0/16, 192.0.2.7, "2001:db8::/32"]
        rules:
          - id: r1
            title: blocked
            severity: high
            when: type == "connect" and net.dst_ip in blocked_nets
          - id: r2
            title: allowed only
            severity: high
            when: type == "connect" and net.dst_ip not in blocked_nets
        """)
    blocked, allowed = ps.rules[0].when.fn, ps.rules[1].when.fn
    # An IPv4-mapped IPv6 address (a dual-stack socket's connect to an IPv4 host) is that host.
    for ip, inside in [("10.66.1.2", True), ("192.0.2.7", True), ("2001:db8::5", True), ("10.67.0.1", False),
                       ("192.0.2.8", False), ("::ffff:10.66.1.2", True), ("::ffff:192.0.2.7", True),
                       ("::ffff:10.67.0.1", False)]:
        ev = {"type": "connect", "net": {"dst_ip": ip}}
        assert (blocked(ev), allowed(ev)) == (inside, not inside), ip


def test_named_list_of_plain_strings_is_unchanged(tmp_path):
    ps = _load(tmp_path, """\
        lists:
          shells: [/bin/sh, /bin/bash]
          hosts: [10.0.0.1, 10.0.0.2]
        rules:
          - id: r1
            title: shells
            severity: low
            when: type == "exec" and proc.exe in shells and net.dst_ip in hosts
        """)
    f = ps.rules[0].when.fn
    assert f({"type": "exec", "proc": {"exe": "/bin/sh"}, "net": {"dst_ip": "10.0.0.2"}}) is True
    assert f({"type": "exec", "proc": {"exe": "/bin/zsh"}, "net": {"dst_ip": "10.0.0.2"}}) is False


# YAML 1.1 integers that are not what they look like -----------------------------------------
@pytest.mark.parametrize("written", ["010", "1:30", "1_0"])
def test_int_var_written_with_leading_zero_base_60_or_underscores_is_an_error(tmp_path, written):
    # YAML 1.1 reads these as 8, 90 and 10: `default: 010` would silently allow 8.
    from secpolicy.policy import PolicyErrors

    with pytest.raises(PolicyErrors) as exc:
        _load(tmp_path, f"""\
            vars:
              max_tries:
                type: int
                default: {written}
                description: at most this many
            rules:
              - id: r1
                title: tries
                severity: low
                check: int(sshd.option("MaxAuthTries")) <= max_tries
            """)
    err = exc.value.errors[0]  # (then the rule's unknown name, as for any rejected var)
    assert "expected an integer" in err.message and repr(written) in err.message
    assert (err.line, err.column) == (5, 14)


def test_plain_integers_and_octal_mode_strings_still_load(tmp_path):
    ps = _load(tmp_path, """\
        vars:
          max_tries: {type: int, default: 10, description: d, min: 0, max: 0x20}
        rules:
          - id: r1
            title: tries
            severity: low
            check: int(sshd.option("MaxAuthTries")) <= max_tries
            tests:
              - files: {/etc/ssh/sshd_config: {content: "MaxAuthTries 4\\n", mode: 0644}}
                vars: {max_tries: -0}
                expect: fail
        """)
    decl = ps.rules[0].params["max_tries"]
    assert (decl.default, decl.minimum, decl.maximum) == (10, 0, 32)
    assert ps.rules[0].tests[0].files["/etc/ssh/sshd_config"]["mode"] == "0644"
