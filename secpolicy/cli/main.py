"""The `secpolicy` command group: wires the subcommands and turns errors into exit codes.
Only this package prints or exits; everything below raises `secpolicy.errors` exceptions."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from secpolicy import __version__
from secpolicy.errors import EXIT_INVALID_INPUT, EXIT_RUNTIME, SecpolicyError

__all__ = ["cli", "main"]


# Every command, explicitly, in one place: name -> "module:attribute". A command's module is
# imported only when that command runs (or for --help), so `secpolicy scan` does not pay
# for WeasyPrint, bcc or the audit-log stack.
COMMANDS: dict[str, str] = {
    "scan": "secpolicy.cli.core:scan",
    "lint": "secpolicy.cli.core:lint",
    "test": "secpolicy.cli.core:test_cmd",
    "explain": "secpolicy.cli.core:explain",
    "schema": "secpolicy.cli.core:schema",
    "coverage": "secpolicy.cli.core:coverage",
    "report": "secpolicy.cli.reports:report",
    "diff": "secpolicy.cli.reports:diff",
    "fim": "secpolicy.cli.fim:fim",
    "fleet": "secpolicy.cli.fleet:fleet_group",
    "replay": "secpolicy.cli.events:replay_cmd",
    "monitor": "secpolicy.cli.live:monitor_cmd",
    "doctor": "secpolicy.cli.live:doctor_cmd",
    "log": "secpolicy.cli.auditlog:log_group",
    "timeline": "secpolicy.cli.auditlog:timeline_cmd",
    "dashboard": "secpolicy.cli.auditlog:dashboard_cmd",
    "anomaly": "secpolicy.cli.auditlog:anomaly_group",
    "store": "secpolicy.cli.auditlog:store_group",
}


class _Group(click.Group):
    """Runs a subcommand and renders SecpolicyError as one located message, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecpolicyError as e:
            click.echo(f"secpolicy: {e.render()}" if not _located(e) else e.render(), err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("secpolicy: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # `secpolicy scan | head`: the reader went away; not an error of ours.
            sys.stderr.close()
            ctx.exit(0)
        except Exception as e:  # last line of defence: say what broke, without a traceback
            if os.environ.get("SECPOLICY_DEBUG"):
                raise
            click.echo(
                f"secpolicy: internal error: {type(e).__name__}: {e} (set SECPOLICY_DEBUG=1 for a traceback)",
                err=True,
            )
            ctx.exit(EXIT_RUNTIME)


def _located(e: SecpolicyError) -> bool:
    # Located errors already start with `path:line:col:`; a prefix would hide that.
    return getattr(e, "path", None) is not None or hasattr(e, "errors")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="secpolicy")
def cli() -> None:
    """secpolicy: policy-as-code compliance scanning and auditing for Linux.

    \b
    Exit codes (all commands):
      0  compliant / intact / no changes
      1  non-compliant: failing findings, FIM changes, alerts (where asked)
      2  invalid input: policy, waiver, config, options or data files
      3  runtime failure: the work could not be done
      4  compliant only because failures are waived (scan)
      5  integrity failure: a baseline or audit log does not verify
    """


def main() -> None:
    try:
        cli.main(prog_name="secpolicy", standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_INVALID_INPUT)
        # click uses exit 2 for usage errors, which is our "invalid input" too.
        raise SystemExit(code) from None
