"""Evidence that reads right: the host value is the observed side whichever side of the
operator it stands on, provenance travels with each value, and a failure's evidence leads with
the comparisons that decided it, the guards it got past kept after them, marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from secpolicy.dsl import Catalogue, Signature, TraceRecord, compile_expression
from secpolicy.dsl.types import INT, STR, ListType, Method, ObjectType
from secpolicy.engine import evaluate_rule
from secpolicy.facts import FactContext
from secpolicy.models import Evidence, Status
from secpolicy.ruletests import materialize_files
from secpolicy.vocabulary import builtin_registry, load_policies

ENTRY = ObjectType("entry", {"module": STR, "args": ListType(STR), "n": INT}, methods={"arg": Method((STR,), STR)})
CONF = ObjectType("conf", {"exists": INT}, methods={"option": Method((STR,), STR)})


class Entry:
    def __init__(self, module: str, args: list[str], line: int) -> None:
        self.module, self.args, self.n, self.line = module, args, len(args), line

    def arg(self, name: str) -> str | None:
        return next((a.partition("=")[2] for a in self.args if a.startswith(name + "=")), None)

    def where(self, name: str, *args: object) -> str:
        return f"/etc/pam.d/common-password:{self.line}"


class Env:
    def __init__(self, **facts: object) -> None:
        self.facts = facts
        self.values = {"min_args": 2}

    def fact(self, name: str, args: tuple) -> object:
        return self.facts[name]

    def var(self, name: str) -> object:
        return self.values[name]


CAT = Catalogue(
    facts={"entries": Signature("entries", (), ListType(ENTRY)), "tries": Signature("tries", (), INT)},
    vars={"min_args": INT},
)
ENTRIES = [Entry("pam_unix.so", ["obscure", "use_authtok", "yescrypt"], 25)]


def trace_of(expr: str, env: Env) -> tuple[bool, list[TraceRecord]]:
    compiled = compile_expression(expr, CAT)
    assert compiled.traced is not None
    records: list[TraceRecord] = []
    return compiled.traced(env, records), records


def test_literal_in_host_list_shows_the_host_list_as_observed():
    ok, (rec,) = trace_of('none(e in entries: "use_authtok" in e.args)', Env(entries=ENTRIES))
    assert not ok
    assert (rec.op, rec.observed, rec.expected, rec.source) == (
        "contains",
        '["obscure", "use_authtok", "yescrypt"]',
        '"use_authtok"',
        "/etc/pam.d/common-password:25",
    )


def test_host_value_in_literal_list_keeps_the_list_as_expected():
    ok, (rec,) = trace_of('all(e in entries: e.module in ["pam_pwquality.so"])', Env(entries=ENTRIES))
    assert not ok
    assert (rec.op, rec.observed, rec.expected) == ("in", '"pam_unix.so"', '["pam_pwquality.so"]')


@pytest.mark.parametrize(
    "expr, op, expected",
    [
        ("4 >= tries", "<=", "4"),
        ("4 < tries", ">", "4"),
        ("tries == 4", "==", "4"),
        ("tries >= min_args", ">=", "2 (min_args)"),
        ("min_args <= tries", ">=", "2 (min_args)"),
    ],
)
def test_literals_and_vars_on_the_left_read_from_the_host_side(expr, op, expected):
    _, (rec,) = trace_of(expr, Env(tries=3))
    assert (rec.op, rec.observed, rec.expected) == (op, "3", expected)


GUARDED = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "evidence" / "guarded.yaml"


@pytest.fixture
def findings(tmp_path: Path) -> dict:
    root = tmp_path / "root"
    root.mkdir()
    materialize_files(str(root), {
        "/etc/ssh/sshd_config": "PermitRootLogin yes\nX11Forwarding yes\n",
        "/etc/pam.d/common-password": "# here\npassword [success=1 default=ignore] pam_unix.so obscure nullok yescrypt\n",
    })
    reg = builtin_registry()
    ctx = FactContext(reg, str(root))
    return {r.id: evaluate_rule(r, ctx) for r in load_policies([GUARDED], reg).rules}


def test_a_failed_guarded_rule_leads_with_the_deciding_comparison(findings):
    f = findings["guarded"]
    assert f.status == Status.FAIL
    assert f.evidence == (
        Evidence(
            expression='sshd.option("PermitRootLogin") == "no"',
            expected='"no"',
            observed='"yes"',
            source="/etc/ssh/sshd_config:1",
        ),
        Evidence(expression="sshd.exists", expected="false", observed="true", source="/etc/ssh/sshd_config", decisive=False),
    )


def test_pam_argument_evidence_reads_host_list_observed(findings):
    f = findings["nullok"]
    assert [(e.expression, e.expected, e.observed, e.source) for e in f.evidence] == [
        ('e.module == "pam_unix.so"', '!= "pam_unix.so"', '"pam_unix.so"', "/etc/pam.d/common-password:2"),
        ('"nullok" in e.args', 'not contains "nullok"', '["obscure", "nullok", "yescrypt"]', "/etc/pam.d/common-password:2"),
    ]


def test_an_and_shows_the_comparison_that_failed_not_those_never_evaluated(findings):
    assert [(e.expression, e.observed) for e in findings["first-false"].evidence] == [
        ('sshd.option("PermitRootLogin") == "no"', '"yes"'),
    ]


def test_every_offender_of_an_all_is_deciding(findings):
    assert [(e.observed, e.source, e.decisive) for e in findings["offenders"].evidence] == [
        ('"yes"', "/etc/ssh/sshd_config:1", True),
        ('"yes"', "/etc/ssh/sshd_config:2", True),
    ]


def test_a_comparison_without_sources_names_the_item_under_examination():
    twins = [Entry("pam_unix.so", [], 25), Entry("pam_unix.so", [], 31)]
    ok, records = trace_of("all(e in entries: count(x in entries: x.module == e.module) == 1)", Env(entries=twins))
    assert not ok
    assert [(r.observed, r.expected, r.source) for r in records if r.want is not None] == [
        ("2", "1", "/etc/pam.d/common-password:25"),
        ("2", "1", "/etc/pam.d/common-password:31"),
    ]
