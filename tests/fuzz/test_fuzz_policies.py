"""Fuzz the policy loader and the expression language through `lint` and `scan`: any policy
text ends in exit 0/1/2 with `file:line:col`, never a traceback or a hang."""

from __future__ import annotations

import copy
import datetime
import os
from pathlib import Path

import jsonschema
import pytest
import yaml
from fuzz_helpers import FUZZ, check, fresh, run, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import HEADER, expressions, mutate_json, policy_texts

from secpolicy.policy.loader import _accepted, schema_violation
from secpolicy.policy.yamlpos import Positioned
from secpolicy.resources import load_schema


@FUZZ
@given(text=policy_texts())
def test_lint_any_policy_text(tmp_path_factory, text):
    work = fresh(tmp_path_factory.getbasetemp(), "lint-")
    p = work / "p.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = snapshot(work)
    check(run("lint", p), located=[p])
    assert snapshot(work) == before


@FUZZ
@given(expr=expressions())
def test_scan_any_expression_on_a_small_root(tmp_path_factory, expr):
    work = fresh(tmp_path_factory.getbasetemp(), "scan-")
    root = work / "root"
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n" + "a" * 40 + "b\n")
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin no\n")
    os.mkfifo(root / "etc" / "fifo")
    os.symlink("loop", root / "etc" / "loop")
    p = work / "p.yaml"
    p.write_text(HEADER + f"rules:\n  - id: r\n    title: r\n    severity: low\n    check: {_yaml_str(expr)}\n")
    before = snapshot(work)
    check(run("scan", "-p", p, "--root", root, "--format", "json"), located=[p])
    assert snapshot(work) == before


def _yaml_str(s: str) -> str:
    import json

    return json.dumps(s)


def test_the_expression_strategy_reaches_the_evaluator(tmp_path):
    # Guard against a suite that only ever produces load errors: a sample must evaluate.
    p = Path(tmp_path) / "p.yaml"
    p.write_text(HEADER + 'rules:\n  - {id: r, title: r, severity: low, check: \'file("/etc/passwd").has_line("(a+)+$")\'}\n')
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("a" * 40 + "b\n")
    out = run("scan", "-p", p, "--root", tmp_path)
    check(out)
    assert out.code == 1  # evaluated: no line matches, the rule fails


# Every bundled policy file and a tailoring file, as YAML gives them to the schema check.
_REPO = Path(__file__).resolve().parents[2]
_POLICY_DOCS = [yaml.safe_load(p.read_text()) for p in sorted((_REPO / "policies").rglob("*.yaml"))]
_DOCS = [("policy", d) for d in _POLICY_DOCS if isinstance(d, dict) and "rules" in d]
_DOCS.append(("tailoring", {
    "metadata": {"id": "t", "title": "t", "version": "1"}, "profile": "level1-server",
    "vars": {"ssh_max_auth_tries": 3}, "rules": {"cis-1.1.1.1-cramfs": {"enabled": False, "reason": "r"}},
}))


def _reference_refuses(doc: object, name: str) -> bool:
    schema = load_schema(name)
    return next(iter(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc)), None) is not None


@settings(derandomize=True, max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_compiled_validator_accepts_no_policy_jsonschema_refuses(data):
    """Policy and tailoring files are checked by jsonschema-rs first and by jsonschema only
    when it refuses them: right only if jsonschema-rs never accepts what jsonschema refuses."""
    name, base = data.draw(st.sampled_from(_DOCS))
    doc = mutate_json(data.draw, copy.deepcopy(base))
    if _accepted(doc, name):
        assert not _reference_refuses(doc, name)


def _meta(**kw: object) -> dict:
    return {**_DOCS[0][1], "metadata": {**_DOCS[0][1]["metadata"], **kw}}


@pytest.mark.parametrize("name, doc", [
    ("policy", _meta(id=_DOCS[0][1]["metadata"]["id"] + "\n")),  # Python's `$` matches before a final newline
    ("policy", _meta(version=datetime.date(2026, 1, 1))),  # YAML's unquoted date
    ("policy", {**_DOCS[0][1], "\udcff": 1}),  # a key the compiled validator cannot take
    ("tailoring", {**_DOCS[-1][1], "vars": {"ssh_max_auth_tries": True}}),
], ids=["id-newline", "yaml-date", "surrogate-key", "bool-var"])
def test_a_policy_is_refused_exactly_when_jsonschema_refuses_it(name, doc):
    assert (schema_violation(Positioned(doc, {}, {}, "", "p.yaml"), name) is None) == (not _reference_refuses(doc, name))
    assert _accepted(_DOCS[0][1], "policy") and _accepted(_DOCS[-1][1], "tailoring")
