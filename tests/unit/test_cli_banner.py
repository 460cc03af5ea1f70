"""The non-root banner of `scan` counts the rules a missing privilege cost, and is not printed
when none was: "run as root for a complete scan" would be untrue of a complete one."""

from __future__ import annotations

import pytest

from secpolicy.cli import core


def results(*reasons: str | None) -> dict:
    return {"results": [{"rule_id": f"r{i}", "status": "error" if r else "pass", "reason": r}
                        for i, r in enumerate(reasons)]}


def test_a_non_root_scan_that_lost_nothing_prints_no_banner(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(core.os, "geteuid", lambda: 1000)
    core._non_root_banner(results(None, "/etc/x: no such file"))
    assert capsys.readouterr().err == ""


def test_a_non_root_scan_that_lost_rules_counts_them(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(core.os, "geteuid", lambda: 1000)
    core._non_root_banner(results(None, "/etc/shadow: permission denied", "/etc/gshadow: Permission denied"))
    assert "NON-PRIVILEGED SCAN MODE (uid 1000): 2 rule(s) could not be evaluated" in capsys.readouterr().err


def test_root_gets_no_banner(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(core.os, "geteuid", lambda: 0)
    core._non_root_banner(results("/etc/shadow: permission denied"))
    assert capsys.readouterr().err == ""
