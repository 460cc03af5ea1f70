"""The compile cache: an unchanged file is loaded without YAML parsing, schema validation or
expression parsing, to the same rules; a mistake that shows up later (another file defines the
same name) is still located; a change to the code that shapes cached objects changes the key;
`only=` loads just the check rules or just the event rules."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.policy import PolicyErrors, testfiles
from secpolicy.policy import loader as loader_mod
from secpolicy.policy.cache import toolchain_key
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "policies" / "verdicts" / "ssh.yaml"


def summary(ps) -> list[tuple]:
    out = []
    for r in ps.rules:
        out.append((
            r.id, r.source, r.check.text if r.check else None,
            [(c.expr.text, c.reason, c.source, c.scope) for c in r.applicable],
            {n: (v.default, v.source, v.minimum, v.maximum) for n, v in r.params.items()},
            [(t.name, t.source, t.vars, t.root) for t in r.tests],
        ))
    return out


def refuse(*_a, **_k):
    raise AssertionError("parsed although the file is in the compile cache")


def test_a_cached_file_loads_without_yaml_schema_or_expression_parsing(tmp_path, monkeypatch):
    policy = tmp_path / "ssh.yaml"
    shutil.copy(FIXTURE, policy)
    shutil.copytree(FIXTURE.parent / "sshd-installed", tmp_path / "sshd-installed")
    cache = tmp_path / "cache"
    cold = load_policies([policy], builtin_registry(), cache_dir=cache)
    for name in ("load_yaml", "parse_expression", "_validator"):
        monkeypatch.setattr(loader_mod, name, refuse)
    monkeypatch.setattr(testfiles, "parse_test_file", refuse)  # its tests' files were checked when it was cached
    warm = load_policies([policy], builtin_registry(), cache_dir=cache)
    assert summary(warm) == summary(cold)
    assert warm.rule("v-ssh-max-auth-tries").tests[1].vars == {"ssh_max_auth_tries": 6}


def test_a_mistake_across_cached_files_is_still_located(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("metadata: {id: a, title: A, version: '1'}\nvars:\n  limit: {type: int, default: 1, description: d}\nrules: []\n")
    cache = tmp_path / "cache"
    load_policies([a], builtin_registry(), cache_dir=cache)
    b = tmp_path / "b.yaml"
    b.write_text("metadata: {id: b, title: B, version: '1'}\nlists:\n  limit: [1]\nrules: []\n")
    load_policies([b], builtin_registry(), cache_dir=cache)
    # Both files are now cached; together they clash, and the error still has its position.
    with pytest.raises(PolicyErrors) as exc:
        load_policies([b, a], builtin_registry(), cache_dir=cache)
    (err,) = [e.render() for e in exc.value.errors]
    assert err == f"{a}:3:3: 'limit' is already defined at {b}:3\n      limit: {{type: int, default: 1, description: d}}\n      ^"


def test_an_expression_error_in_a_cached_file_points_into_it(tmp_path):
    lib = tmp_path / "lib.yaml"
    lib.write_text("metadata: {id: l, title: L, version: '1'}\nmacros:\n  m: sshd.exists and helper\nrules: []\n")
    helper = tmp_path / "helper.yaml"
    helper.write_text("metadata: {id: h, title: H, version: '1'}\nmacros:\n  helper: 'true'\nrules: []\n")
    cache = tmp_path / "cache"
    load_policies([lib, helper], builtin_registry(), cache_dir=cache)
    # lib.yaml is cached; loaded without helper.yaml its macro names an unknown name.
    with pytest.raises(PolicyErrors) as exc:
        load_policies([lib], builtin_registry(), cache_dir=cache)
    (err,) = [e.render() for e in exc.value.errors]
    assert err.splitlines() == [
        f"{lib}:3:22: unknown name 'helper': not a fact, list, macro, var or variable",
        "      m: sshd.exists and helper",
        "                         ^",
    ]


def test_the_key_changes_with_the_code_that_shapes_cached_objects(tmp_path):
    pkg = tmp_path / "secpolicy"
    for sub in ("dsl", "policy", "schemas"):
        shutil.copytree(REPO / "secpolicy" / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__"))
    before = toolchain_key(pkg)
    assert before == toolchain_key(REPO / "secpolicy")
    with open(pkg / "dsl" / "ast.py", "a") as f:
        f.write("\n# a new field would change what a pickled node holds\n")
    toolchain_key.cache_clear()
    assert toolchain_key(pkg) != before
    toolchain_key.cache_clear()


def test_only_loads_the_check_rules_or_the_event_rules(tmp_path):
    reg = builtin_registry()
    everything = load_policies([REPO / "policies"], reg, cache_dir=tmp_path)
    checks = load_policies([REPO / "policies"], reg, only="check", cache_dir=tmp_path)
    events = load_policies([REPO / "policies"], reg, only="event", cache_dir=tmp_path)
    assert [r.id for r in checks.rules] == [r.id for r in everything.check_rules]
    assert [r.id for r in events.rules] == [r.id for r in everything.event_rules]
    assert events.event_rules and not events.check_rules


def test_a_filtered_load_writes_no_entry_a_full_load_would_read(tmp_path):
    cache = tmp_path / "cache"
    load_policies([FIXTURE], builtin_registry(), cache_dir=cache, only="check")
    assert not cache.exists() or not list(cache.glob("*.pickle"))
    load_policies([FIXTURE], builtin_registry(), cache_dir=cache, only="event")
    written = sorted(p.name for p in cache.glob("*.pickle"))
    assert written and all(n.endswith("-event.pickle") for n in written)


def _packs(tmp_path: Path) -> Path:
    """The bundled policies plus a file mixing check and event rules, one check of which
    does not compile (a load of event rules alone does not see it; a full load must)."""
    top = tmp_path / "policies"
    shutil.copytree(REPO / "policies", top)
    (top / "mixed.yaml").write_text(
        "metadata: {id: mixed, title: M, version: '1'}\n"
        "macros:\n  tool: 'proc.exe in [\"/usr/bin/tool\"]'\n"
        "rules:\n"
        "  - {id: m-check, title: c, severity: low, check: 'sysctl(\"kernel.x\") =='}\n"
        "  - {id: m-event, title: e, severity: low, when: 'type == \"exec\" and tool'}\n"
    )
    return top


def test_a_load_of_event_rules_alone_fills_its_own_cache_and_starts_warm(tmp_path, monkeypatch):
    top = _packs(tmp_path)
    reg = builtin_registry()
    cache = tmp_path / "cache"
    cold = load_policies([top], reg, cache_dir=cache, only="event")
    with monkeypatch.context() as m:
        for name in ("load_yaml", "parse_expression", "_validator"):
            m.setattr(loader_mod, name, refuse)
        warm = load_policies([top], reg, cache_dir=cache, only="event")
    assert [r.id for r in warm.rules] == [r.id for r in cold.rules] and "m-event" in [r.id for r in cold.rules]
    assert [(r.source, r.when and r.when.text, r.message) for r in warm.event_rules] == [
        (r.source, r.when and r.when.text, r.message) for r in cold.event_rules
    ]
    assert [p.sha256 for p in warm.policies] == [p.sha256 for p in cold.policies]
    # A full load trusts none of those entries: it parses, finds the broken check and
    # writes nothing for the files it could not load.
    with pytest.raises(PolicyErrors) as exc:
        load_policies([top], reg, cache_dir=cache)
    assert "mixed.yaml:5" in exc.value.render()
    assert not [p for p in cache.glob("*.pickle") if not p.name.endswith("-event.pickle")]


def test_after_a_load_of_event_rules_a_full_load_gets_every_rule(tmp_path):
    reg = builtin_registry()
    cache = tmp_path / "cache"
    events = load_policies([REPO / "policies"], reg, cache_dir=cache, only="event")
    full = load_policies([REPO / "policies"], reg, cache_dir=cache)
    fresh = load_policies([REPO / "policies"], reg)
    assert summary(full) == summary(fresh)
    assert len(full.check_rules) > 300 and [r.id for r in events.rules] == [r.id for r in full.event_rules]
    # ... and a load of event rules after the full load takes the full entries, then its own.
    own = sorted(cache.glob("*-event.pickle"))
    for p in own:
        p.unlink()
    again = load_policies([REPO / "policies"], reg, cache_dir=cache, only="event")
    assert [r.id for r in again.rules] == [r.id for r in events.rules]
    assert sorted(cache.glob("*-event.pickle")) == own


def test_a_cached_file_with_event_macros_loads_without_parsing(tmp_path, monkeypatch):
    p = tmp_path / "events.yaml"
    p.write_text(
        "metadata: {id: e, title: E, version: '1'}\n"
        "macros:\n  shell_exec: 'type == \"exec\" and file.path in [\"/bin/sh\"]'\n"
        "rules:\n  - {id: e1, title: shell, severity: low, when: shell_exec}\n"
    )
    cache = tmp_path / "cache"
    load_policies([p], builtin_registry(), cache_dir=cache)
    for name in ("load_yaml", "parse_expression", "_validator"):
        monkeypatch.setattr(loader_mod, name, refuse)
    (rule,) = load_policies([p], builtin_registry(), cache_dir=cache).rules
    assert rule.when is not None and rule.when.fn({"type": "exec", "file": {"path": "/bin/sh"}})


def test_a_load_of_event_rules_alone_takes_the_facts_signatures_from_the_cache(tmp_path, monkeypatch):
    from secpolicy import vocabulary

    cache = tmp_path / "cache"
    reference = load_policies([REPO / "policies"], builtin_registry(), only="event")
    cold = load_policies([REPO / "policies"], cache_dir=cache, only="event")
    (kept,) = cache.glob("facts-*.pickle")
    with monkeypatch.context() as m:
        m.setattr(vocabulary, "builtin_registry", refuse)
        warm = load_policies([REPO / "policies"], cache_dir=cache, only="event")
    assert summary(warm) == summary(cold) == summary(reference)
    # The signatures alone still keep a list from hiding a fact.
    hides = tmp_path / "hides.yaml"
    hides.write_text(
        "metadata: {id: h, title: H, version: '1'}\nlists:\n  sysctl: [a]\n"
        "rules:\n  - {id: h1, title: h, severity: low, when: 'type == \"exec\"'}\n"
    )
    with monkeypatch.context() as m, pytest.raises(PolicyErrors) as exc:
        m.setattr(vocabulary, "builtin_registry", refuse)
        load_policies([hides], cache_dir=cache, only="event")
    assert "would hide the fact or event field" in exc.value.render()
    # An entry that is not a table of signatures is rebuilt, never trusted.
    kept.write_bytes(pickle.dumps({"file": "not a signature"}))
    kept.chmod(0o600)
    again = load_policies([REPO / "policies"], cache_dir=cache, only="event")
    assert summary(again) == summary(reference)
    assert set(pickle.loads(kept.read_bytes())) == set(builtin_registry().signatures())


def test_replay_starts_without_importing_the_fact_collectors(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"type":"open","ts":"2024-01-01T00:00:00.000000000Z"}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-X", "importtime", "-m", "secpolicy", "replay", str(one)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=REPO)
    warm = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=REPO)
    assert "secpolicy.facts.builtin" in first.stderr  # an empty cache: the registry is built once
    assert "secpolicy.facts" not in warm.stderr


def test_lint_warnings_of_a_cached_file_are_kept_with_it_and_say_where_the_file_is_now(tmp_path, monkeypatch):
    """The warnings about a file's expressions depend on its text alone: a full load of a
    cached file takes them from the cache, located as before (no YAML read to find the line),
    under the name the file has in this load."""
    text = ("metadata: {id: w, title: W, version: '1'}\nrules:\n  - id: w-1\n    title: t\n"
            "    severity: low\n    check: 'file(\"/etc/a\").exists or file(\"/etc/b\").exists and file(\"/etc/c\").exists'\n")
    (tmp_path / "one").mkdir()
    policy = tmp_path / "one" / "w.yaml"
    policy.write_text(text)
    cache = tmp_path / "cache"
    cold = load_policies([policy], builtin_registry(), cache_dir=cache).warnings
    assert [(w.path, w.line, w.column) for w in cold] == [(str(policy), 6, 38)]
    (tmp_path / "two").mkdir()
    moved = tmp_path / "two" / "w.yaml"
    shutil.copy(policy, moved)
    for name in ("load_yaml", "parse_expression"):
        monkeypatch.setattr(loader_mod, name, refuse)
    monkeypatch.setattr(loader_mod, "mixed_and_or", refuse)
    warm = load_policies([moved], builtin_registry(), cache_dir=cache).warnings
    assert [w.render() for w in warm] == [w.render().replace(str(policy), str(moved)) for w in cold]
