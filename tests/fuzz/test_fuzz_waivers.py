"""Fuzz waiver files through `lint --waivers` and `scan --waivers`: the same located errors at
both, never a crash later in the scan."""

from __future__ import annotations

from fuzz_helpers import FUZZ, check, fresh, run
from hypothesis import given
from strategies import HEADER, waiver_texts

POLICY = HEADER + "rules:\n  - {id: core-ssh-root-login, title: r, severity: low, check: 'false'}\n"


@FUZZ
@given(text=waiver_texts())
def test_any_waiver_file(tmp_path_factory, text):
    work = fresh(tmp_path_factory.getbasetemp(), "waivers-")
    p = work / "p.yaml"
    p.write_text(POLICY)
    w = work / "w.yaml"
    w.write_text(text, encoding="utf-8", errors="surrogatepass")
    lint = run("lint", p, "--waivers", w)
    check(lint, located=[w])
    scan = run("scan", "-p", p, "--waivers", w, "--root", work)
    check(scan, allowed=(1, 2, 4), located=[w])
    # What lint accepts, scan accepts: a waiver never passes lint and then breaks the scan.
    assert (lint.code == 2) == (scan.code == 2), lint.describe() + "\n" + scan.describe()
