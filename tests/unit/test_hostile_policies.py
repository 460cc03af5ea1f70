"""Policies and waivers from pull requests: every bound of `secpolicy.dsl.limits` is a located
error, regexes run in linear time, and lint names file:line:col for what is easy to misread."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from secpolicy.dsl import compile_regex
from secpolicy.dsl.limits import LIMITS, describe_limits
from secpolicy.dsl.regex import RegexError
from secpolicy.errors import LocatedError
from secpolicy.policy import PolicyErrors
from secpolicy.policy.waivers import load_waivers
from secpolicy.vocabulary import builtin_registry, load_policies

ROOT = Path(__file__).resolve().parents[2]
HEADER = "metadata: {id: t, title: T, version: '1'}\n"


def policy(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + textwrap.dedent(body))
    return p


def rule(check: str, extra: str = "") -> str:
    return f"rules:\n  - id: r\n    title: r\n    severity: low\n    check: {check}\n{extra}"


def first_error(p: Path) -> str:
    with pytest.raises(PolicyErrors) as exc:
        load_policies([p], builtin_registry())
    return exc.value.errors[0].render()


def test_billion_laughs_in_a_policy_is_a_located_error(tmp_path):
    laughs = "l0: &l0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
    )
    p = tmp_path / "p.yaml"
    p.write_text(HEADER + "rules: []\n" + laughs)
    err = first_error(p)
    assert err.startswith(f"{p}:3:") and f"aliases expand to more than {LIMITS.yaml_alias_nodes:,} values" in err


def test_deep_yaml_nul_bytes_and_recursive_aliases_are_located(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("a: " + "[" * 200 + "]" * 200 + "\n")
    assert first_error(p).startswith(f"{p}:1:{4 + LIMITS.yaml_depth}: YAML nested more than {LIMITS.yaml_depth} levels deep")
    p = tmp_path / "nul.yaml"
    p.write_text(HEADER + 'rules: []\nx: "a\x00b"\n')
    assert first_error(p).startswith(f"{p}:3:6: invalid YAML: character '\\x00' is not allowed")
    p = tmp_path / "rec.yaml"
    p.write_text("a: &x [1, *x]\n")
    assert first_error(p).startswith(f"{p}:1:4: recursive YAML alias")


def test_an_expression_nested_500_deep_is_located(tmp_path):
    p = policy(tmp_path, rule('"' + "(" * 500 + "true" + ")" * 500 + '"'))
    assert f"expression nested more than {LIMITS.expression_depth} levels deep" in first_error(p)
    p = policy(tmp_path, rule("'" + "not " * 500 + "true'"))
    err = first_error(p)
    assert err.startswith(f"{p}:6:") and "nested more than" in err


def test_a_300_macro_cycle_and_a_300_macro_chain_are_located(tmp_path):
    macros = "macros:\n" + "".join(f"  m{i}: m{(i + 1) % 300}\n" for i in range(300))
    p = policy(tmp_path, macros + rule("m0"))
    err = first_error(p)
    assert "macro cycle: m" in err and "more)" in err and "RecursionError" not in err
    chain = "macros:\n" + "".join(f"  m{i}: m{i + 1}\n" for i in range(299)) + "  m299: 'true'\n"
    p = policy(tmp_path, chain + rule("m0"))
    assert f"macros nested more than {LIMITS.macro_depth} deep" in first_error(p)


def test_exponentially_growing_macros_are_bounded(tmp_path):
    macros = "macros:\n" + "".join(f"  m{i}: m{i + 1} or m{i + 1}\n" for i in range(60)) + "  m60: 'true'\n"
    p = policy(tmp_path, macros + rule("m0"))
    err = first_error(p)
    assert f"expands to more than {LIMITS.macro_nodes:,} syntax nodes" in err


def test_a_10mb_literal_is_bounded_and_located(tmp_path):
    p = policy(tmp_path, rule("'file(\"/x\").content == \"" + "x" * 10_000_000 + "\"'"))
    err = first_error(p)
    assert err.startswith(f"{p}:6:") and f"the limit is {LIMITS.expression_chars:,}" in err
    assert len(err) < 2000  # the offending line is excerpted, not printed whole
    p = policy(tmp_path, rule("'file(\"/x\").content == \"" + "x" * (LIMITS.literal_chars + 1) + "\"'"))
    assert f"string literal of {LIMITS.literal_chars + 1:,} characters" in first_error(p)


@pytest.mark.parametrize("method", ["has_line", "grep", "first"])
def test_regexes_of_file_methods_are_validated_at_load(tmp_path, method):
    p = policy(tmp_path, rule(f"'file(\"/etc/x\").{method}(\"a{{99999999999}}\") != null'"))
    err = first_error(p)
    assert err.startswith(f"{p}:6:") and "repetition count 99,999,999,999 is above the limit" in err
    p = policy(tmp_path, rule(f"'file(\"/etc/x\").{method}(\"(?!x)\") != null'"))
    assert "lookahead and lookbehind are not supported" in first_error(p)


def test_matches_rejects_bad_regexes_with_the_column_of_the_pattern(tmp_path):
    p = policy(tmp_path, rule("'file(\"/x\").content matches \"([a-\"'"))
    err = first_error(p)
    assert err.startswith(f"{p}:6:40: invalid regular expression: missing ]")


def test_catastrophic_patterns_run_in_linear_time():
    # (a+)+$ against a's and a b: exponential for a backtracking engine, instant for RE2.
    rx = compile_regex("(a+)+$")
    assert not rx.search("a" * 100_000 + "b")
    assert compile_regex("^(a|aa)+$").search("a" * 50_000)
    assert not compile_regex("(x+x+)+y").search("x" * 50_000)


def test_regex_engine_edges():
    with pytest.raises(RegexError, match="above the limit"):
        compile_regex("a{1001}")
    with pytest.raises(RegexError, match="backreferences"):
        compile_regex(r"(a)\1")
    assert compile_regex(r"\{99999999999\}").search("{99999999999}")  # an escaped brace is literal
    assert compile_regex("[{]9{2}").search("{99")
    assert compile_regex("x").search("bad \udcff utf-8 x")  # surrogateescape text never crashes
    assert compile_regex(r"\d+").sub("N", "a 12 b \udcff 3") == "a N b \udcff N"


def test_every_limit_is_documented_with_its_default():
    docs = (ROOT / "docs" / "policy-format.md").read_text()
    for name, value, meaning in describe_limits():
        assert f"| `{name}` | {value:,} |" in docs, name
        assert meaning


WAIVER_CASES = {
    "- {rule_id: r, justification: j, hosts: 5}\n": ("hosts must be a host pattern or a list of them, not a number", 41),
    "- {rule_id: r, justification: j, approver: {a: b}}\n": ("approver must be a non-empty string, not a mapping", 44),
    "- {rule_id: r, justification: j, hosts: [web1, {a: 1}]}\n": ("a host pattern must be a non-empty string", 48),
    "- {rule_id: r, justification: [j]}\n": ("justification must be a non-empty string, not a list", 31),
    "- {rule_id: 5, justification: j}\n": ("rule_id must be a non-empty string, not a number", 13),
    "- {rule_id: r, justification: j, expires: 2024-02-30}\n": ("expires must be a date (YYYY-MM-DD)", 43),
    "- {rule_id: r, justification: j, expires: 20240101}\n": ("expires must be a date (YYYY-MM-DD)", 43),
    # An empty host list or a forgotten date would waive the rule on every host, for ever.
    "- {rule_id: r, justification: j, hosts: null}\n": ("hosts is empty (null): list host patterns, or leave hosts out", 41),
    "- {rule_id: r, justification: j, hosts: []}\n": ("hosts is empty ([]): list host patterns", 41),
    "- {rule_id: r, justification: j, expires: null}\n": ("expires is empty (null): give a date (YYYY-MM-DD)", 43),
    "- {rule_id: r, justification: ''}\n": ("justification is empty: it must be a non-empty string", 31),
    "- {rule_id: r, justification: '  '}\n": ("justification is empty: it must be a non-empty string", 31),
}


@pytest.mark.parametrize("text", list(WAIVER_CASES))
def test_malformed_waivers_are_located_at_lint_and_scan(tmp_path, text):
    message, column = WAIVER_CASES[text]
    p = policy(tmp_path, rule("'true'"))
    w = tmp_path / "w.yaml"
    w.write_text(text)
    with pytest.raises(LocatedError) as exc:
        load_waivers(w)
    assert exc.value.render().startswith(f"{w}:1:{column}: {message}"), exc.value.render()
    for args in (["lint", str(p), "--waivers", str(w)], ["scan", "-p", str(p), "--waivers", str(w), "--root", str(tmp_path)]):
        out = subprocess.run([sys.executable, "-m", "secpolicy", *args], check=False, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.startswith(f"{w}:1:{column}: {message}"), out.stderr


def test_waiver_for_an_unknown_rule_has_line_and_column(tmp_path):
    p = policy(tmp_path, rule("'true'"))
    w = tmp_path / "w.yaml"
    w.write_text("waivers:\n  - rule_id: r\n    justification: j\n  - justification: j\n    rule_id: nope\n")
    for args in (["lint", str(p), "--waivers", str(w)], ["scan", "-p", str(p), "--waivers", str(w), "--root", str(tmp_path)]):
        out = subprocess.run([sys.executable, "-m", "secpolicy", *args], check=False, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2
        assert out.stderr.startswith(f"{w}:5:14: waiver for unknown rule id 'nope'\n        rule_id: nope\n"), out.stderr


def test_lint_warns_on_and_inside_or_and_on_unused_macros(tmp_path):
    p = policy(
        tmp_path,
        """\
        macros:
          used: file("/a").exists
          unused: file("/b").exists
          mixed: file("/c").exists and file("/d").exists or file("/e").exists
        rules:
          - id: r1
            title: r
            severity: low
            check: used or file("/x").exists and file("/y").exists
          - id: r2
            title: r
            severity: low
            check: used or (file("/x").exists and file("/y").exists) or mixed
          - id: r3
            title: r
            severity: low
            check: (used or file("/x").exists) and file("/y").exists
        """,
    )
    out = subprocess.run([sys.executable, "-m", "secpolicy", "lint", str(p)], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if ": warning: " in line]
    assert warnings == [
        (f"{p}:5:10: warning: 'and' inside 'or' without parentheses: write "
        '(file("/c").exists and file("/d").exists) to say it is meant'),
        (f"{p}:10:20: warning: 'and' inside 'or' without parentheses: write "
        '(file("/x").exists and file("/y").exists) to say it is meant'),
        f"{p}:4:11: warning: macro 'unused' is never used",
    ]
    assert "3 warning(s)" in out.stdout


def test_billion_laughs_in_a_waiver_file_is_a_located_error(tmp_path):
    w = tmp_path / "w.yaml"
    w.write_text(
        "l0: &l0 [a, a, a, a, a, a, a, a, a]\n"
        + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    )
    with pytest.raises(LocatedError) as exc:
        load_waivers(w)
    assert exc.value.render().startswith(f"{w}:1:") and "aliases expand to more than" in exc.value.render()


def aliased_checks(tmp_path: Path, copies: int) -> tuple[Path, str]:
    expr = "".join(f'file("/etc/f{i}").exists or ' for i in range(2500))[: LIMITS.expression_chars - 10] + "true"
    expr = expr[: expr.rfind(" or ") + 4] + "true"
    rules = [f"  - {{id: r0, title: t, severity: low, check: &c '{expr}'}}\n"]
    rules += [f"  - {{id: r{k}, title: t, severity: low, check: *c}}\n" for k in range(1, copies)]
    p = tmp_path / "p.yaml"
    p.write_text(HEADER + "rules:\n" + "".join(rules))
    return p, expr


def test_an_expression_repeated_through_aliases_is_parsed_and_compiled_once(tmp_path, monkeypatch):
    from secpolicy.policy import loader

    p, expr = aliased_checks(tmp_path, 16)
    calls = {"parse": 0, "compile": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(loader, "parse_expression", counted("parse", loader.parse_expression))
    monkeypatch.setattr(loader, "compile_expression", counted("compile", loader.compile_expression))
    ps = load_policies([p], builtin_registry())
    assert len(ps.rules) == 16 and {r.check.text for r in ps.rules} == {expr}
    assert calls == {"parse": 1, "compile": 1}


def test_alias_copies_of_an_expression_are_bounded_in_total(tmp_path):
    # 40 copies of a 64 KiB check took 22 s and 377 MB to lint, 200 over a minute.
    p, _ = aliased_checks(tmp_path, 200)
    err = first_error(p)
    assert err.startswith(f"{p}:19:40: the expressions of this file add up to more than 1,048,576 characters"), err
    assert "      - {id: r16, title: t, severity: low, check: *c}\n" in err


def test_a_refused_long_expression_is_not_mapped_or_shown_character_by_character(tmp_path, monkeypatch):
    # Without a clock: the work a 10 MB line costs is counted. Its error is at its start,
    # so the character-by-character map of the quoted scalar (a list as long as the line)
    # is never built, and only the excerpt shown is looked at for control characters.
    import secpolicy.errors as errors_module
    from secpolicy.policy import yamlpos

    mapped: list[int] = []
    real_map = yamlpos._quoted_source
    monkeypatch.setattr(yamlpos, "_quoted_source", lambda text, sp, expr: mapped.append(len(expr)) or real_map(text, sp, expr))
    looked: list[str] = []
    real_shown = errors_module._shown_char
    monkeypatch.setattr(errors_module, "_shown_char", lambda c: looked.append(c) or real_shown(c))
    p = policy(tmp_path, rule("'file(\"/x\").content == \"" + "x" * 1_000_000 + "\"'"))
    err = first_error(p)
    assert err.startswith(f"{p}:6:") and f"the limit is {LIMITS.expression_chars:,}" in err
    assert mapped == []
    # Rendered twice (once to say each error once, once here), an excerpt and "..." each.
    assert 0 < len(looked) <= 2 * (errors_module._EXCERPT + 3)


def test_a_file_of_more_values_than_the_limit_is_refused_before_its_tree_is_built(tmp_path, monkeypatch):
    # `[a,a,a,...]` of 16 MB is 8 million values: libyaml would build every node (gigabytes)
    # before the walk could count them. The values are counted first, by events.
    from secpolicy.policy import yamlpos

    built: list[int] = []
    monkeypatch.setattr(yamlpos._Loader, "get_single_node", lambda self: built.append(1))
    n = LIMITS.yaml_nodes + 10
    p = policy(tmp_path, rule("'true'", "    tags: [" + ",".join(["a"] * n) + "]\n"))
    err = first_error(p)
    # The value past the limit is named. 22 values come before the list's first element: the
    # document (1), `metadata` and its mapping of three pairs (8), `rules` and its list (2),
    # the rule's mapping and its four pairs (9), `tags` and its list (2).
    column = len("    tags: [") + 2 * (LIMITS.yaml_nodes - 22) + 1
    assert err.startswith(f"{p}:7:{column}: more than {LIMITS.yaml_nodes:,} values in one YAML file (the limit)"), err[:200]
    assert built == []
    # The bundled packs are far below it, and a file that short is not counted at all.
    assert first_error(policy(tmp_path, rule("'true'", "    tags: [" + ",".join(["a"] * 1000) + "]\n    bad: 1\n"), "q.yaml"))
