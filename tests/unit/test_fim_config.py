"""FIM configuration: attribute groups and expressions, schema validation with positions,
glob patterns; and the CLI's exit codes, JSON output and status."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from secpolicy import fim
from secpolicy.cli.fim import main as fim_main
from secpolicy.errors import InputError, LocatedError
from secpolicy.fim.config import glob_to_regex
from secpolicy.models import Status


def test_builtin_groups_mirror_aide():
    # AIDE 0.18: X = acl+selinux+xattrs+e2fsattrs+caps (aide.conf(5), "Default groups").
    x = {"acl", "xattrs", "selinux", "e2fsattrs", "caps"}
    assert fim.resolve_attrs("X") == x
    # (The device number, which AIDE lacks, is compared with ftype: the groups stay AIDE's.)
    assert fim.resolve_attrs("R") == {"p", "ftype", "i", "l", "n", "u", "g", "s", "m", "c", "sha256"} | x
    assert fim.resolve_attrs("L") == {"p", "ftype", "i", "l", "n", "u", "g"} | x
    assert fim.resolve_attrs(">") == {"p", "ftype", "l", "u", "g", "i", "n", "S", "sha256"} | x
    assert fim.resolve_attrs("E") == frozenset()
    assert fim.resolve_attrs("R-m-c+b", default_hash="blake3") >= {"b", "blake3"}
    assert "m" not in fim.resolve_attrs("R-m")
    assert fim.resolve_attrs(["p", "u"], growing=True) == {"p", "u", "S"}
    assert fim.resolve_attrs("p+s", growing=True) == {"p", "S"}
    assert fim.resolve_attrs("MINE", {"MINE": ["p", "OTHER"], "OTHER": "u+g"}) == {"p", "u", "g"}


@pytest.mark.parametrize("spec,message", [
    ("R+nonsense", "unknown attribute or group 'nonsense'"),
    ("sha256+blake3", "one content hash"),
    ("-p", "cannot start with '-'"),
    ("R++", "invalid attribute expression"),
])
def test_bad_attribute_expressions(spec, message):
    with pytest.raises(InputError, match=re.escape(message)):
        fim.resolve_attrs(spec)


def test_group_cycles_are_refused():
    with pytest.raises(InputError, match="refers to itself"):
        fim.resolve_attrs("A", {"A": "B", "B": "A"})


def test_schema_errors_point_at_the_line(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\npaths:\n  - path: /etc\n    attrs: R\n  - path: relative\n")
    with pytest.raises(LocatedError) as e:
        fim.load_config(p)
    assert e.value.line == 5 and "paths/1/path" in e.value.message
    p.write_text("paths:\n  - path: /etc\n    attrs: R+bogus\n")
    with pytest.raises(LocatedError) as e:
        fim.load_config(p)
    assert e.value.line == 2 and "bogus" in e.value.message
    p.write_text("paths: [\n")
    with pytest.raises(LocatedError, match="invalid YAML"):
        fim.load_config(p)
    p.write_text("paths:\n  - path: /etc\n  - path: /etc/\n")
    with pytest.raises(InputError, match="watched twice"):
        fim.load_config(p)
    with pytest.raises(InputError, match="not found"):
        fim.load_config(tmp_path / "missing.yaml")


def test_config_digest_ignores_cosmetics_not_semantics(tmp_path: Path):
    a = fim.config_from_dict({"name": "n", "paths": [{"path": "/etc", "attrs": "R"}, {"path": "/usr"}]})
    b = fim.config_from_dict({"name": "n", "paths": [{"path": "/usr/"}, {"path": "/etc", "attrs": ["R"]}]})
    c = fim.config_from_dict({"name": "n", "paths": [{"path": "/usr"}, {"path": "/etc", "attrs": "R-m"}]})
    assert a.digest == b.digest != c.digest


@pytest.mark.parametrize("pattern,path,matches", [
    ("*.log", "/var/log/a.log", True),
    ("*.log", "/var/log/a.log/x", False),
    ("/var/*/a.log", "/var/log/a.log", True),
    ("/var/*", "/var/log/a.log", False),
    ("/var/**", "/var/log/a.log", True),
    ("/var/**/a.log", "/var/a.log", True),
    ("cache/*.tmp", "/srv/cache/x.tmp", True),
    ("cache/*.tmp", "/srv/nocache/x.tmp", False),
    ("[!a]*", "/x/abc", False),
    ("[!a]*", "/x/bcd", True),
    ("?.c", "/src/a.c", True),
])
def test_glob_patterns(pattern, path, matches):
    assert bool(re.compile("(?:" + glob_to_regex(pattern) + r")\Z").match(path)) is matches


@pytest.fixture()
def cli_setup(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0\n")
    cfg = tmp_path / "fim.yaml"
    cfg.write_text("name: cli\ndatabase: base.db\npaths:\n  - path: /etc\n    attrs: R\n")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    common = ["--config", str(cfg), "--root", str(root), "--key-file", str(key), "--no-progress"]
    return root, tmp_path, common


def test_cli_exit_codes_and_json(cli_setup, capsys):
    root, tmp_path, common = cli_setup
    assert fim_main(["check", *common]) == 2  # no baseline yet: invalid input
    assert "fim init" in capsys.readouterr().err
    assert fim_main(["init", *common]) == 0
    assert (tmp_path / "base.db").exists()  # `database:` relative to the configuration
    assert fim_main(["init", *common]) == 2  # exists; needs --force
    capsys.readouterr()
    assert fim_main(["check", *common, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "clean"
    (root / "etc" / "passwd").write_text("evil:x:0:0\n")
    assert fim_main(["check", *common, "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["result"] == "changed"
    attrs = {c["attribute"] for c in out["changed"][0]["changes"]}
    assert out["changed"][0]["path"] == "/etc/passwd" and "sha256" in attrs
    assert fim_main(["check", *common]) == 1
    assert "/etc/passwd" in capsys.readouterr().out
    assert fim_main(["update", *common]) == 0
    assert fim_main(["check", *common]) == 0
    assert os.path.exists(tmp_path / "base.db.prev")


def test_cli_input_errors_exit_2(cli_setup, tmp_path, capsys):
    _root, _, common = cli_setup
    no_key = [a for a in common if a not in ("--key-file",)]
    no_key.remove(str(tmp_path / "key"))
    assert fim_main(["init", *no_key]) == 2
    assert "key is required" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths:\n  - path: /etc\n    colour: red\n")
    assert fim_main(["check", "--config", str(bad), "--db", "x.db", "--no-key"]) == 2
    assert "bad.yaml:2:5: paths/0: Additional properties" in capsys.readouterr().err
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    assert fim_main(["init", "--config", str(bad), "--db", "x.db", "--key-file", str(short)]) == 2
    assert fim_main(["check", *common, "--root", str(tmp_path / "nope")]) == 2


def test_cli_status_and_findings(cli_setup, capsys):
    root, tmp_path, common = cli_setup
    assert fim_main(["init", *common]) == 0
    (root / "etc" / "shadow").write_text("new")
    assert fim_main(["check", *common]) == 1
    capsys.readouterr()
    key = ["--key-file", str(tmp_path / "key")]
    assert fim_main(["status", "--db", str(tmp_path / "base.db"), *key, "--format", "json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["verified"] and st["last_result"] == "changed" and st["added"] == 1 and st["checks"] == 1
    assert st["baseline_age"] >= 0 and st["last_check_age"] >= 0
    assert fim_main(["status", "--db", str(tmp_path / "base.db"), "--no-key"]) == 5

    config = fim.load_config(tmp_path / "fim.yaml")
    k = fim.Key.from_file(str(tmp_path / "key"))
    result = fim.check(config, None, root, k, record=False)
    findings = fim.findings_from_check(result)
    by_id = {f.rule_id: f for f in findings}
    assert set(by_id) == {"fim.cli.added", "fim.cli.changed"}
    assert by_id["fim.cli.added"].status is Status.FAIL
    changed = by_id["fim.cli.changed"]
    assert changed.title == "directory changed: /etc"
    ev = {e.expression: (e.expected, e.observed, e.source) for e in changed.evidence}
    old_m, new_m, where = ev['fim("cli") m']
    assert where == "/etc" and old_m != new_m and old_m.endswith("Z")
    fim.update(config, None, root, k)
    ok = fim.findings_from_check(fim.check(config, None, root, k))
    assert [f.status for f in ok] == [Status.PASS]


def test_recheck_paths_sees_single_entries(cli_setup):
    root, tmp_path, common = cli_setup
    assert fim_main(["init", *common]) == 0
    config = fim.load_config(tmp_path / "fim.yaml")
    k = fim.Key.from_file(str(tmp_path / "key"))
    os.chmod(root / "etc" / "passwd", 0o600)
    (root / "etc" / "new").write_text("x")
    r = fim.recheck_paths(config, None, root, k, ["/etc/passwd", "/etc/new", "/etc/unwatched/../gone", "/tmp/x"])
    assert {e.path: {c.name for c in e.changes} for e in r.changed} == {"/etc/passwd": {"p", "c"}}
    assert [e.path for e in r.added] == ["/etc/new"]
    os.unlink(root / "etc" / "passwd")
    r = fim.recheck_paths(config, None, root, k, [b"/etc/passwd"])
    assert [e.path for e in r.removed] == ["/etc/passwd"]


@pytest.mark.parametrize("pattern,matches,misses", [
    ("[[:alpha:]]*.conf", ["/etc/a.conf", "/etc/Zz.conf"], ["/etc/1.conf", "/etc/_.conf"]),
    ("log[[:digit:]_]", ["/var/log1", "/var/log_"], ["/var/logx"]),
    ("[![:upper:]]", ["/a", "/1"], ["/A"]),
    ("[]a]", ["/]", "/a"], ["/b"]),
    ("[a-]", ["/a", "/-"], ["/b"]),
    ("[[]x", ["/[x"], ["/x"]),
    ("[a&&b]", ["/&", "/a"], ["/c"]),
])
def test_glob_brackets_read_posix_classes_and_literal_members(pattern: str, matches: list[str],
                                                              misses: list[str]) -> None:
    """`[[:alpha:]]` is the POSIX class (it was a regex set with a FutureWarning); `]` first,
    `-` last, `[` and `&&` are members, as in fnmatch(3)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rx = re.compile(glob_to_regex(pattern) + r"\Z")
    assert [p for p in matches if rx.match(p)] == matches
    assert [p for p in misses if rx.match(p)] == []


@pytest.mark.parametrize("pattern,message", [
    ("[abc", "unclosed '[' at character 1"),
    ("x[[:alpha:]", "unclosed '[' at character 2"),
    ("[[:word:]]", "unknown character class [:word:] at character 2"),
    ("[[=a=]]", "equivalence classes ([=) are not supported"),
])
def test_a_bad_bracket_in_a_glob_is_refused_at_its_rule(tmp_path: Path, pattern: str, message: str) -> None:
    path = tmp_path / "fim.yaml"
    path.write_text(f"paths:\n  - path: /etc\n    exclude: [{json.dumps(pattern)}]\n")
    with pytest.raises(LocatedError) as err:
        fim.load_config(path)
    text = err.value.render()
    assert text.startswith(f"{path}:2:5: paths[0]: invalid exclude pattern {pattern!r}: ") and message in text
