"""The `secpolicy log` commands run in-process, as the top-level command runs them."""

from __future__ import annotations

import click
from click.testing import CliRunner

from secpolicy.cli.auditlog import COMMANDS
from secpolicy.errors import SecpolicyError


@click.group()
def cli() -> None:
    pass


for _command in COMMANDS:
    cli.add_command(_command)


def run(*args: str) -> tuple[int, str]:
    """Exit code and output (stdout, then the error) as the top-level command gives them; any
    other exception (a crash) fails the test that runs it."""
    result = CliRunner().invoke(cli, list(args), standalone_mode=False)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.output + result.exception.render()
    if isinstance(result.exception, SystemExit):  # sys.exit(1): found something (anomaly detect)
        return result.exit_code, result.output
    if result.exception is not None:
        raise result.exception
    return 0, result.output
