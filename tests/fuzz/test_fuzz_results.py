"""Fuzz results documents through `report` and `diff`: a hand-edited or hostile results file
is exit 2 with its path, never a traceback."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest
from fuzz_helpers import FUZZ, check, fresh, run, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import mutate_json

from secpolicy.reports.model import _fast_validator, _schema, _schema_error

RESULTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports" / "web1_results.json"
BASE = json.loads(RESULTS.read_text())
sys.path.insert(0, str(RESULTS.parent))
from gen_results import agree, generate


@st.composite
def results_texts(draw):
    doc = mutate_json(draw, copy.deepcopy(BASE))
    text = json.dumps(doc)
    if draw(st.integers(0, 4)) == 0:
        # Truncated JSON. (Numbers past Python's int-from-text limit and 5,000-deep arrays
        # still break `report`/`diff`: test_known_defects.py.)
        text = text[: draw(st.integers(0, len(text)))]
    return text


@FUZZ
@given(text=results_texts(), fmt=st.sampled_from(["json", "html", "sarif", "junit", "csv", "ocsf"]))
def test_report_any_results(tmp_path_factory, text, fmt):
    work = fresh(tmp_path_factory.getbasetemp(), "report-")
    r = work / "results.json"
    r.write_text(text)
    out = work / "out"
    before = snapshot(work)
    check(run("report", r, "-f", fmt, "-o", out), located=[r], position=False)
    after = snapshot(work)
    after.pop("out", None)
    assert after == before


@FUZZ
@given(old=results_texts(), new=results_texts())
def test_diff_any_results(tmp_path_factory, old, new):
    work = fresh(tmp_path_factory.getbasetemp(), "diff-")
    a, b = work / "old.json", work / "new.json"
    a.write_text(old)
    b.write_text(new)
    before = snapshot(work)
    check(run("diff", a, b, "-f", "json"), located=[a, b], position=False)
    assert snapshot(work) == before


# A generated document with requirement rows (every referenced requirement, as a scan writes).
WITH_ROWS = agree(generate(30) | {"requirements": {}})


@settings(derandomize=True, max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), summary_only=st.booleans())
def test_the_compiled_validator_accepts_nothing_jsonschema_refuses(data, summary_only):
    """Results files are checked by jsonschema-rs first and by jsonschema only when it refuses:
    the pair is right only if jsonschema-rs never accepts a document jsonschema refuses."""
    doc = mutate_json(data.draw, copy.deepcopy(data.draw(st.sampled_from([BASE, WITH_ROWS]))))
    reference = jsonschema.validators.validator_for(_schema(summary_only))
    refused = next(iter(reference(_schema(summary_only), format_checker=reference.FORMAT_CHECKER).iter_errors(doc)), None)
    try:
        accepted = _fast_validator(summary_only).is_valid(doc)
    except UnicodeEncodeError:  # a lone surrogate in a key: validate_results asks jsonschema alone
        accepted = False
    if accepted:
        assert refused is None, refused.message


def test_the_compiled_validator_accepts_real_results():
    assert _fast_validator(False).is_valid(BASE) and _fast_validator(False).is_valid(WITH_ROWS)


def _with(path: tuple, value: object) -> dict:
    doc = copy.deepcopy(BASE)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("doc", [
    _with(("scan", "policies", 0, "sha256"), "a" * 64 + "\n"),  # Python's `$` matches before a final newline
    _with(("scan", "started_at"), "yesterday"),  # a date-time only the compiled validator asserts
    _with(("results", 0, "duration_ms"), 2**70),
    _with(("summary", "total"), 14.0),
    _with(("scan", "\udcff"), 1),  # a key the compiled validator cannot take
], ids=["sha256-newline", "date-time", "huge-number", "integral-float", "surrogate-key"])
def test_a_results_file_is_refused_exactly_when_jsonschema_refuses_its_shape(doc):
    reference = jsonschema.validators.validator_for(_schema(False))
    refused = next(iter(reference(_schema(False), format_checker=reference.FORMAT_CHECKER).iter_errors(doc)), None)
    got = _schema_error(doc, False)
    assert (got is None) == (refused is None)
    assert got is None or refused is None or got.message == refused.message
