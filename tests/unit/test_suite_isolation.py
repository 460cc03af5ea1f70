"""The suite's own isolation: under xdist's --dist loadgroup (scripts/test), the tests of the
`live` group (every test marked `live`, tests/conftest.py, and those that load audit rules or
start auditd) must reach xdist as one group, so that they run on one worker one after another.
A pytest that xdist cannot tell the group through (pytest 9.2 with xdist 3.8) spreads them over
both workers without a word."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("live")
def test_the_live_group_reaches_xdist(request: pytest.FixtureRequest) -> None:
    if not hasattr(request.config, "workerinput") or not request.config.getoption("loadgroup", False):
        pytest.skip("not run by xdist with --dist loadgroup (scripts/test runs it so)")
    # xdist names the group by a suffix of the test's node id; the scheduler reads it from there
    assert request.node.nodeid.endswith("@live"), request.node.nodeid
