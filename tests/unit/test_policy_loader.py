"""Loading policies: every malformed input is one located error, never a traceback."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from secpolicy.errors import InputError
from secpolicy.policy import PolicyErrors
from secpolicy.vocabulary import builtin_registry, load_policies

HEADER = "metadata: {id: t, title: T, version: '1'}\n"


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def errors_of(*paths: Path) -> list[str]:
    with pytest.raises(PolicyErrors) as exc:
        load_policies(list(paths), builtin_registry())
    return [e.render() for e in exc.value.errors]


def test_valid_policy_loads_and_compiles(tmp_path):
    p = write(
        tmp_path,
        HEADER
        + textwrap.dedent(
            """\
        lists:
          shells: [/bin/sh, /bin/bash]
        macros:
          shadow_private: file("/etc/shadow").mode & 0o077 == 0
        rules:
          - id: r1
            title: shadow
            severity: high
            references: {cis: ["7.1.5"], nist-800-53: ["AC-3"]}
            check: shadow_private
          - id: r2
            title: shells
            severity: low
            when: type == "exec" and proc.exe in shells
        """
        ),
    )
    ps = load_policies([p], builtin_registry())
    assert [r.id for r in ps.rules] == ["r1", "r2"]
    assert ps.rules[0].check is not None and ps.rules[0].references["cis"] == ("7.1.5",)
    assert ps.rules[1].when.fn({"type": "exec", "proc": {"exe": "/bin/sh"}})
    assert len(ps.policies[0].sha256) == 64


def test_yaml_syntax_error_is_located(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - id: r1\n    title: [unclosed\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:4:")
    assert "invalid YAML" in err.splitlines()[0]


def test_unknown_field_points_at_the_key(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - id: r1\n    title: t\n    severity: low\n    chekc: 'true'\n")
    (err,) = errors_of(p)
    first, src, caret = err.splitlines()
    assert first.startswith(f"{p}:6:5: unknown field 'chekc'")
    assert src.strip() == "chekc: 'true'"
    assert caret == "    " + " " * 4 + "^"


def test_bad_severity_enum(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: urgent, check: 'true'}\n")
    (err,) = errors_of(p)
    assert ":3:" in err.splitlines()[0] and "'urgent' is not one of info, low, medium, high, critical" in err


def test_rule_needs_exactly_one_of_check_or_when(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'true', when: 'true'}\n")
    (err,) = errors_of(p)
    assert "exactly one of check:, when: or sequence:" in err


def test_duplicate_yaml_key_is_rejected(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - id: r1\n    id: r2\n    title: t\n    severity: low\n    check: 'true'\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:4:5: duplicate key 'id'")


def test_duplicate_rule_id_across_files(tmp_path):
    a = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'true'}\n", "a.yaml")
    b = write(tmp_path, "metadata: {id: u, title: U, version: '1'}\nrules:\n  - {id: r1, title: t, severity: low, check: 'true'}\n", "b.yaml")
    (err,) = errors_of(a, b)
    assert f"{b}:3:" in err and "duplicate rule id 'r1'" in err and f"{a}:3" in err


def test_expression_error_in_block_scalar_maps_to_file_line_and_column(tmp_path):
    p = write(
        tmp_path,
        HEADER
        + textwrap.dedent(
            """\
        rules:
          - id: r1
            title: t
            severity: low
            check: |
              file("/etc/passwd").exists and
                file("/etc/passwd").mod == 0o644
        """
        ),
    )
    (err,) = errors_of(p)
    first, src, caret = err.splitlines()
    assert first.startswith(f"{p}:8:29: unknown field 'mod' of file")
    assert src == '            file("/etc/passwd").mod == 0o644'
    assert caret.index("^") == 32 and src[32:35] == "mod"  # both carry a 4-space indent


def test_expression_error_in_quoted_scalar(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'file(\"/x\").mode == \"644\"'}\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:3:47: cannot compare mode with string")


def test_type_error_in_event_rule(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - id: r1\n    title: t\n    severity: low\n    when: proc.uid == \"root\"\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:6:11: cannot compare int with string")


def test_macro_cycle_is_rejected(tmp_path):
    p = write(tmp_path, HEADER + "macros:\n  a: b and true\n  b: a\nrules: []\n")
    errs = errors_of(p)
    assert any("macro cycle: a -> b -> a" in e or "macro cycle: b -> a -> b" in e for e in errs)


def test_unknown_list_or_macro_name(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, when: 'proc.exe in shellz'}\n")
    (err,) = errors_of(p)
    assert "unknown name 'shellz'" in err


def test_list_or_macro_may_not_hide_a_fact(tmp_path):
    p = write(tmp_path, HEADER + "lists:\n  file: [a]\nrules: []\n")
    (err,) = errors_of(p)
    assert "'file' would hide the fact" in err


def test_unknown_message_placeholder(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, when: 'type == \"exec\"', message: 'ran {proc.exee}'}\n")
    (err,) = errors_of(p)
    assert "unknown event field {proc.exee} in message" in err


def test_all_errors_are_reported_not_just_the_first(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'x =='}\n  - {id: r2, title: t, severity: low, check: 'y'}\n")
    errs = errors_of(p)
    assert len(errs) == 2


def test_non_utf8_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_bytes(HEADER.encode() + b"rules: []\n# caf\xe9\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:3:6: not valid UTF-8")


def test_non_utf8_file_name_is_shown_escaped(tmp_path):
    name = os.fsdecode(b"caf\xe9.yaml")
    p = tmp_path / name
    p.write_text(HEADER + "rules: [oops\n")
    (err,) = errors_of(tmp_path)
    assert "caf\\udce9.yaml" in err or "caf\\xe9.yaml" in err


def test_missing_path_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_policies([tmp_path / "nope.yaml"], builtin_registry())


def test_directory_symlink_loop_is_not_followed(tmp_path):
    d = tmp_path / "pols"
    d.mkdir()
    write(d, HEADER + "rules: []\n")
    os.symlink(d, d / "loop")
    ps = load_policies([d], builtin_registry())
    assert len(ps.policies) == 1


def test_dangling_symlink_policy_is_an_input_error(tmp_path):
    os.symlink(tmp_path / "gone.yaml", tmp_path / "p.yaml")
    (err,) = errors_of(tmp_path / "p.yaml")
    assert "no such file" in err


def test_test_root_must_exist(tmp_path):
    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'true', tests: [{root: nothere, expect: pass}]}\n")
    (err,) = errors_of(p)
    assert "fixture root 'nothere' is not a directory" in err


def test_named_lists_are_typed(tmp_path):
    p = write(
        tmp_path,
        HEADER + "lists:\n  ports: [22, 2222]\n  names: [a, b]\nrules:\n"
        "  - {id: r1, title: t, severity: low, when: 'net.dst_port in ports and ports[0] == 22'}\n"
        "  - {id: r2, title: t, severity: low, when: 'net.dst_port in names'}\n",
    )
    (err,) = errors_of(p)
    assert "cannot look for int in list[string]" in err and ":7:46:" in err


def test_compile_cache_skips_parsing_unchanged_files_and_notices_changes(tmp_path, monkeypatch):
    from secpolicy.policy import loader as loader_mod

    p = write(tmp_path, HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'file(\"/etc/x\").exists'}\n")
    cache = tmp_path / "cache"
    first = load_policies([p], builtin_registry(), cache_dir=cache)
    assert list(cache.glob("*.pickle")) and oct(cache.stat().st_mode & 0o777) == "0o700"
    calls = []
    real = loader_mod.parse_expression
    monkeypatch.setattr(loader_mod, "parse_expression", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = load_policies([p], builtin_registry(), cache_dir=cache)
    assert calls == [] and again.rules[0].check.text == first.rules[0].check.text
    p.write_text(HEADER + "rules:\n  - {id: r1, title: t, severity: low, check: 'file(\"/etc/x\").mode == \"1\"'}\n")
    (err,) = errors_of_cached(p, cache)
    assert "cannot compare mode with string" in err and len(calls) == 1


def errors_of_cached(p: Path, cache: Path) -> list[str]:
    with pytest.raises(PolicyErrors) as exc:
        load_policies([p], builtin_registry(), cache_dir=cache)
    return [e.render() for e in exc.value.errors]


def test_recursive_yaml_alias_is_a_located_error(tmp_path):
    p = write(tmp_path, HEADER + "lists:\n  a: &x [*x]\nrules: []\n")
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:3:6: recursive YAML alias")


def test_a_numeric_version_is_accepted(tmp_path):
    p = write(tmp_path, "metadata: {id: t, title: T, version: 1.0}\nrules: []\n")
    assert load_policies([p], builtin_registry()).policies[0].version == "1.0"


def test_test_root_stays_in_the_policy_directory(tmp_path):
    """Policies come from pull requests: a fixture root outside the policy's directory would
    copy the host's files (/etc/shadow) into the test and print them in its failure message."""
    (tmp_path / "fx").mkdir()
    (tmp_path / "fx" / "in").mkdir()
    os.symlink("/etc", tmp_path / "fx" / "out")
    rule = "  - {{id: r{0}, title: t, severity: low, check: 'true', tests: [{{root: '{1}', expect: pass}}]}}\n"
    roots = ["/etc", "../../../../../../../etc", "out", "in/../out", "in"]
    p = write(tmp_path / "fx", HEADER + "rules:\n" + "".join(rule.format(i, r) for i, r in enumerate(roots)))
    errs = errors_of(p)
    assert errs[0].startswith(f"{p}:3:69: fixture root '/etc' is absolute")
    assert [e.split("\n")[0].split(": ", 1)[1] for e in errs[1:]] == [
        f"fixture root {r!r} leads outside the policy's directory (through '..' or a symlink)" for r in roots[1:4]
    ]


def test_errors_in_quoted_expressions_point_through_escapes_and_folded_lines(tmp_path):
    rule = "  - id: r{0}\n    title: t\n    severity: low\n    check: {1}\n"
    checks = [
        r'"file(\"/etc/x\").exists and file(\"/y\").mode == \"a\""',
        '"file(\\"/etc/x\\").exists and\n      file(\\"/y\\").exists and\n\n      file(\\"/z\\").mode == \\"a\\""',
        "'file(\"/etc/x\").exists and file(''/y'').exists and\n      file(''/z'').mode == ''a'''",
        '"file(\\"/\\u00e9\\").exists and \\\n      file(\\"/z\\").mode == \\"a\\""',
        r'"file(\"/etc/x\").exists and (file(\"/y\").exists"',
    ]
    p = write(tmp_path, HEADER + "rules:\n" + "".join(rule.format(i, c) for i, c in enumerate(checks)))
    errs = [e.splitlines() for e in errors_of(p)]
    assert [e[0].split(": ")[0] for e in errs] == [f"{p}:6:41", f"{p}:13:7", f"{p}:18:7", f"{p}:23:7", f"{p}:27:61"]
    assert errs[0][2].index("^") == errs[0][1].index("file(\\\"/y")
    assert errs[1][1].strip().startswith('file(\\"/z\\")') and errs[1][2].strip() == "^"
