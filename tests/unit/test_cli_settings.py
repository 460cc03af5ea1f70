"""The CLI's process-wide settings (`--quiet`, `--follow-symlinks`) hold for one invocation: an
in-process caller (a test, or a tool driving the CLI through click) that runs the CLI again
without them gets the defaults back, never the last invocation's choice."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner

from secpolicy import outfile
from secpolicy.cli import progress
from secpolicy.cli.main import cli

POLICY = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "core.yaml"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _invoke(*args: str) -> None:
    r = CliRunner().invoke(cli, [*args, "lint", str(POLICY)], catch_exceptions=False)
    assert r.exit_code == 0, r.output


def test_quiet_and_follow_symlinks_last_one_invocation(monkeypatch) -> None:
    monkeypatch.delenv("TERM", raising=False)
    try:
        _invoke("--quiet", "--follow-symlinks")
        assert not progress.wanted(_Tty())
        assert outfile.follow_symlinks()
        _invoke()
        assert progress.wanted(_Tty())  # progress is back on for a terminal
        assert not outfile.follow_symlinks()
    finally:
        progress.set_quiet(False, invocation=True)
        outfile.set_follow_symlinks(False)


def test_a_commands_own_quiet_cannot_turn_progress_back_on() -> None:
    try:
        progress.set_quiet(True, invocation=True)  # `secpolicy -q scan`: the group's option
        progress.set_quiet(False)  # scan's own --quiet, not given
        assert not progress.wanted(_Tty())
    finally:
        progress.set_quiet(False, invocation=True)
