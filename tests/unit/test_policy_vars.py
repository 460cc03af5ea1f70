"""`vars:` and `applicable:` in policy files: every mistake is one located error, and what
loads carries exactly the declarations, conditions and vars a rule reads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from secpolicy.policy import PolicyErrors
from secpolicy.vocabulary import builtin_registry, load_policies

HEADER = "metadata: {id: t, title: T, version: '1'}\n"
RULE = """\
rules:
  - id: r1
    title: r1
    severity: low
    check: {check}
"""


def write(tmp_path: Path, body: str, name: str = "p.yaml", header: str = HEADER) -> Path:
    p = tmp_path / name
    p.write_text(header + textwrap.dedent(body))
    return p


def errors_of(*paths: Path) -> list[str]:
    with pytest.raises(PolicyErrors) as exc:
        load_policies(list(paths), builtin_registry())
    return [e.render() for e in exc.value.errors]


def one_error(tmp_path: Path, body: str) -> str:
    (err,) = errors_of(write(tmp_path, body))
    return err


VARS = """\
vars:
  max_tries:
    type: int
    default: 4
    min: 1
    max: 10
    description: Highest MaxAuthTries allowed.
"""


def test_declared_var_is_read_by_bare_name_and_listed_with_the_rule(tmp_path):
    p = write(tmp_path, VARS + RULE.format(check='int(sshd.option("MaxAuthTries")) <= max_tries'))
    ps = load_policies([p], builtin_registry())
    (rule,) = ps.rules
    decl = ps.vars["max_tries"]
    assert (decl.type_name, decl.default, decl.minimum, decl.maximum, decl.source) == ("int", 4, 1, 10, f"{p}:3")
    assert rule.params == {"max_tries": decl}
    assert rule.check is not None and rule.check.vars_used == frozenset({"max_tries"})
    assert ps.policies[0].vars == (decl,)


@pytest.mark.parametrize(
    "tname, default, value",
    [
        ("string", "/var/log/sudo.log", "/var/log/sudo.log"),
        ("float", 2, 2.0),
        ("bool", True, True),
        ("mode", "0o640", 0o640),
        ("duration", "15m", 900),
        ("size", "8MiB", 8 * 1024 * 1024),
        ("list[string]", ["a", "b"], ("a", "b")),
        ("list[int]", [1, 2], (1, 2)),
    ],
)
def test_each_var_type_converts_its_default(tmp_path, tname, default, value):
    p = tmp_path / "p.yaml"
    import yaml

    doc = {
        "metadata": {"id": "t", "title": "T", "version": "1"},
        "vars": {"v": {"type": tname, "default": default, "description": "d"}},
        "rules": [],
    }
    p.write_text(yaml.safe_dump(doc))
    assert load_policies([p], builtin_registry()).vars["v"].default == value


@pytest.mark.parametrize(
    "spec, message",
    [
        ("{type: int, default: '4', description: d}", "default: expected an integer, got the string '4'"),
        ("{type: int, default: 0, min: 1, description: d}", "default: 0 is below the minimum 1 of v"),
        ("{type: int, default: 20, max: 10, description: d}", "default: 20 is above the maximum 10 of v"),
        ("{type: mode, default: 416, description: d}", "default: expected a mode written in octal like 0o640, got the number 416"),
        ("{type: duration, default: 15, description: d}", "default: expected a duration with its unit like 15m or 90d, got the number 15"),
        ("{type: string, default: x, min: 1, description: d}", "min: applies to numbers, modes, durations and sizes, not string"),
        ("{type: string, default: x, choices: [a, b], description: d}", 'default: "x" is not one of the choices of v: "a", "b"'),
        ("{type: int, default: 3, min: 5, max: 1, description: d}", "min is above max"),
        ("{type: 'list[int]', default: [1, x], description: d}", "default: item 2: expected an integer, got the string 'x'"),
        # Every comparison with NaN is false: a NaN would pass min/max and make checks pass.
        ("{type: float, default: .nan, min: 1.0, max: 10.0, description: d}", "default: expected a finite number, got nan"),
        ("{type: float, default: .NaN, description: d}", "default: expected a finite number, got nan"),
        ("{type: float, default: 2.0, min: .nan, description: d}", "min: expected a finite number, got nan"),
        ("{type: float, default: 2.0, max: .nan, description: d}", "max: expected a finite number, got nan"),
        ("{type: float, default: .inf, description: d}", "default: expected a finite number, got inf"),
        ("{type: float, default: 0.0, min: -.inf, description: d}", "min: expected a finite number, got -inf"),
        ("{type: float, default: 1.0, choices: [1.0, .nan], description: d}", "choice: expected a finite number, got nan"),
    ],
)
def test_bad_declarations_are_located(tmp_path, spec, message):
    err = one_error(tmp_path, f"vars:\n  v: {spec}\nrules: []\n")
    assert err.splitlines()[0].endswith(message)
    assert err.startswith(f"{tmp_path / 'p.yaml'}:3:")


def test_a_var_without_description_is_a_schema_error(tmp_path):
    err = one_error(tmp_path, "vars:\n  v: {type: int, default: 1}\nrules: []\n")
    assert err.splitlines()[0] == f"{tmp_path / 'p.yaml'}:3:6: missing required field: 'description'"


def test_var_names_share_one_namespace_with_lists_and_macros_across_files(tmp_path):
    a = write(tmp_path, VARS + "rules: []\n", "a.yaml")
    b = write(tmp_path, "lists:\n  max_tries: [1]\nrules: []\n", "b.yaml", "metadata: {id: u, title: U, version: '1'}\n")
    (err,) = errors_of(a, b)
    assert err.splitlines()[0] == f"{b}:3:3: 'max_tries' is already defined at {a}:3"


@pytest.mark.parametrize(
    "name, message",
    [
        ("scan", "'scan' is reserved for the scan context (scan.kind, scan.live, scan.root)"),
        ("file", "'file' would hide the fact or event field of that name"),
    ],
)
def test_reserved_and_hiding_names_are_refused(tmp_path, name, message):
    err = one_error(tmp_path, f"vars:\n  {name}: {{type: int, default: 1, description: d}}\nrules: []\n")
    assert err.splitlines()[0] == f"{tmp_path / 'p.yaml'}:3:3: {message}"


def test_var_of_the_wrong_type_in_a_comparison_is_a_type_error(tmp_path):
    err = one_error(tmp_path, VARS + RULE.format(check='sshd.option("MaxAuthTries") == max_tries'))
    assert err.splitlines()[0] == (
        f"{tmp_path / 'p.yaml'}:13:12: cannot compare string with int: sshd.option(\"MaxAuthTries\") == max_tries"
    )


def test_event_rules_cannot_read_vars(tmp_path):
    body = VARS + "rules:\n  - {id: e1, title: e, severity: low, when: 'type == \"exec\" and proc.uid > max_tries'}\n"
    err = one_error(tmp_path, body)
    assert err.splitlines()[0].endswith(
        "'max_tries' is a var: vars are read by checks and applicability conditions, not by event rules"
    )


def test_applicability_as_expression_and_as_list_in_order_file_first(tmp_path):
    body = """\
    applicable:
      - if: package("openssh-server").installed
        reason: openssh-server is not installed
    rules:
      - id: r1
        title: r1
        severity: low
        applicable: scan.live
        check: sshd.option("PermitRootLogin") == "no"
      - id: r2
        title: r2
        severity: low
        applicable:
          - if: scan.kind != "image"
            reason: no sshd runs inside an image
          - {if: 'sshd.exists', reason: no sshd_config}
        check: sshd.option("X11Forwarding") == "no"
    """
    p = write(tmp_path, body)
    r1, r2 = load_policies([p], builtin_registry()).rules
    assert [(c.expr.text, c.reason, c.scope, c.source) for c in r1.applicable] == [
        ('package("openssh-server").installed', "openssh-server is not installed", "policy", f"{p}:3"),
        ("scan.live", "the condition scan.live does not hold", "rule", f"{p}:9"),
    ]
    assert [(c.expr.text, c.reason, c.scope) for c in r2.applicable][1:] == [
        ('scan.kind != "image"', "no sshd runs inside an image", "rule"),
        ("sshd.exists", "no sshd_config", "rule"),
    ]
    assert r1.params == {} and r1.applicable[1].expr.vars_used == frozenset({"scan"})


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "rules:\n  - {id: r1, title: r, severity: low, applicable: 'sshd.option(\"X\")', check: 'true'}\n",
            ':3:52: a rule condition must be a condition (bool), this is string: sshd.option("X")',
        ),
        (
            "rules:\n  - {id: r1, title: r, severity: low, applicable: [{if: 'true'}], check: 'true'}\n",
            ":3:52: missing required field: 'reason'",
        ),
        (
            "rules:\n  - {id: e1, title: e, severity: low, applicable: 'true', when: 'type == \"exec\"'}\n",
            ":3:39: applicable: goes with check: (event rules are not evaluated against facts)",
        ),
        (
            "applicable: 'true'\nrules:\n  - {id: e1, title: e, severity: low, when: 'type == \"exec\"'}\n",
            (
                ":2:1: applicable: at the top of a file applies to check rules; rule 'e1' is an event rule "
                "(keep event rules in a file of their own)"
            ),
        ),
    ],
)
def test_applicability_mistakes_are_located(tmp_path, body, message):
    err = one_error(tmp_path, body)
    assert err.splitlines()[0] == f"{tmp_path / 'p.yaml'}{message}"


def test_inline_test_vars_are_checked_against_the_declarations(tmp_path):
    body = VARS + textwrap.dedent("""\
    rules:
      - id: r1
        title: r1
        severity: low
        check: int(sshd.option("MaxAuthTries")) <= max_tries
        tests:
          - {name: a, vars: {max_trie: 5}, expect: pass}
          - {name: b, vars: {max_tries: 11}, expect: pass}
          - {name: c, vars: {max_tries: 6}, expect: fail}
    """)
    errs = errors_of(write(tmp_path, body))
    assert [e.splitlines()[0] for e in errs] == [
        f"{tmp_path / 'p.yaml'}:15:26: unknown var 'max_trie' (did you mean 'max_tries'?)",
        f"{tmp_path / 'p.yaml'}:16:37: max_tries: 11 is above the maximum 10 of max_tries",
    ]


def test_inline_test_values_are_converted(tmp_path):
    body = VARS + RULE.format(check='int(sshd.option("MaxAuthTries")) <= max_tries') + "    tests: [{vars: {max_tries: 6}, expect: pass}]\n"
    (rule,) = load_policies([write(tmp_path, body)], builtin_registry()).rules
    assert rule.tests[0].vars == {"max_tries": 6}


def test_inline_test_vars_must_be_finite(tmp_path):
    body = "vars:\n  fv: {type: float, default: 2.0, min: 1.0, max: 10.0, description: d}\n" + RULE.format(
        check="fv > 1.0") + "    tests: [{vars: {fv: .nan}, expect: pass}]\n"
    (err,) = errors_of(write(tmp_path, body))
    assert err.splitlines()[0] == f"{tmp_path / 'p.yaml'}:9:25: fv: expected a finite number, got nan"
