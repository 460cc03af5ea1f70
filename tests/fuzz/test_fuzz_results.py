"""Fuzz results documents through `report` and `diff`: a hand-edited or hostile results file
is exit 2 with its path, never a traceback."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from fuzz_helpers import FUZZ, check, fresh, run, snapshot
from hypothesis import given
from hypothesis import strategies as st
from strategies import mutate_json

RESULTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports" / "web1_results.json"
BASE = json.loads(RESULTS.read_text())


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
