"""Fuzz inline tests through `secpolicy test`: whatever paths, links, modes and owners a test
names, nothing outside its temporary root is created, modified, chmodded or chowned."""

from __future__ import annotations

import json
import os

from fuzz_helpers import FUZZ, check, fresh, private_tmp, run, snapshot
from hypothesis import given
from hypothesis import strategies as st
from strategies import HEADER, inline_file_names, inline_file_specs

# Names and links aim at the victims through placeholders, filled in per example.
VDIR, VICTIM = "@VDIR@", "@VDIR@/victim"


@FUZZ
@given(files=st.lists(st.tuples(inline_file_names(VDIR), inline_file_specs(VICTIM, VDIR)), min_size=1, max_size=6))
def test_inline_test_files_stay_inside_their_root(tmp_path_factory, files):
    work = fresh(tmp_path_factory.getbasetemp(), "inline-")
    victims = work / "victims"
    victims.mkdir()
    (victims / "victim").write_text("precious\n")
    os.chmod(victims / "victim", 0o600)
    entries = "".join(f"          {json.dumps(name)}: {json.dumps(spec)}\n" for name, spec in files)
    p = work / "p.yaml"
    p.write_text(
        HEADER + "rules:\n  - id: r\n    title: r\n    severity: low\n    check: 'file(\"/etc/v\").exists'\n"
        "    tests:\n      - name: t\n        files:\n" + entries.replace(VDIR, str(victims)) + "        expect: pass\n"
    )
    before = snapshot(work)
    with private_tmp(work / "tmp") as tmp:
        out = run("test", p)
        check(out, located=[p])
        assert os.listdir(tmp) == [], "a temporary root was left behind"
    after = snapshot(work)
    after.pop("tmp", None)
    assert after == before, out.describe()
