"""Shared test setup: the `live` marker. Live tests load real eBPF programs; where this machine
cannot, they skip with the precise reason, or fail with it under SECPOLICY_REQUIRE_BPF=1 (CI)."""

from __future__ import annotations

import os
from functools import lru_cache

import pytest
from hypothesis import settings

# Property tests draw new examples on every run: under CI the examples are derived from each
# test itself (derandomize) and no example database is read, so a run of one commit is the run
# of that commit, never a chance find that fails one CI run and not the next. Locally they
# keep exploring.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live: loads real eBPF programs (needs root, bcc and tracefs; fails instead of skipping "
        "under SECPOLICY_REQUIRE_BPF=1)",
    )


@lru_cache(maxsize=1)
def _live_blocker() -> str | None:
    from secpolicy.doctor import live_blocker

    return live_blocker()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("live") is None:
        return
    reason = _live_blocker()
    if reason is None:
        return
    if os.environ.get("SECPOLICY_REQUIRE_BPF") == "1":
        pytest.fail(f"live eBPF test cannot run (SECPOLICY_REQUIRE_BPF=1): {reason}", pytrace=False)
    pytest.skip(f"live eBPF unavailable here: {reason}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Live tests share the kernel (tracepoints, ring buffers, loss counters): with xdist's
    # --dist loadgroup they all run on one worker, one after another, and each module's monitor
    # is started once. First: xdist's own hook reads the group marks to name the groups.
    for item in items:
        if item.get_closest_marker("live") is not None:
            item.add_marker(pytest.mark.xdist_group("live"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    # CI runs on the machine kind every skip reason is false for (root, bcc, the Debian tools
    # scripts/setup.sh installs): there, a skip means setup broke, so it fails instead.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may skip: {reason}"
    return None
