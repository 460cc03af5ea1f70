"""The `secpolicy` command group: wires the subcommands and turns errors into exit codes.
Only this package prints or exits; everything below raises `secpolicy.errors` exceptions."""

from __future__ import annotations

import errno
import importlib
import os
import signal
from typing import Any, NoReturn

import click

from secpolicy import __version__
from secpolicy.errors import EXIT_INVALID_INPUT, EXIT_RUNTIME, InputError, SecpolicyError
from secpolicy.outfile import describe, reader_gone, stdout_reader_gone
from secpolicy.terminal import inert, inert_line

__all__ = ["EXIT_INTERRUPTED", "cli", "main"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


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
    "verify-report": "secpolicy.cli.reports:verify_report_cmd",
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
        _refuse_empty_values(command)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            from secpolicy.cli.choices import suggest

            hint = suggest(name, COMMANDS)
            ctx.fail(f"No such command {name!r} (commands: {', '.join(sorted(COMMANDS))})."
                     + (f" Did you mean {hint!r}?" if hint else ""))
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecpolicyError as e:
            # Messages quote host names, file names and lines read from scanned hosts: inert,
            # and one line unless the error is located (its excerpt and caret take lines).
            click.echo(inert(e.render()) if _located(e) else f"secpolicy: {inert_line(e.render())}", err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _interrupted()
        except BrokenPipeError as e:
            if not stdout_reader_gone():
                # A pipe to another program (ssh, a hash worker) broke: not `| head`.
                return _internal(ctx, e)
            # `secpolicy explain X | head`: the reader went away; not an error of ours.
            # (Commands whose exit code matters write through secpolicy.outfile, which keeps it.)
            reader_gone()
            ctx.exit(0)
        except OSError as e:
            if e.errno not in _DISK_ERRORS or os.environ.get("SECPOLICY_DEBUG"):
                return _internal(ctx, e)
            where = f" {inert_line(str(e.filename))}" if e.filename else ""
            # EIO comes from reads too (a failing disk, /proc/self/mem): not said to be a write.
            verb = "cannot read or write" if e.errno == errno.EIO else "cannot write"
            click.echo(f"secpolicy: {verb}{where} ({describe(e)})", err=True)
            ctx.exit(EXIT_RUNTIME)
        except Exception as e:  # noqa: BLE001 - last line of defence: say what broke, without a traceback
            return _internal(ctx, e)


def _refuse_empty_values(command: click.Command) -> None:
    """Every option and argument of `command` (and of its subcommands) refuses an empty
    string, exit 2: `--audit-log "$LOG"`, `--pubkey "$KEY"` or `--output "$OUT"` with the
    variable unset must not run without the audit log, the signature check or the file."""
    if getattr(command, "_secpolicy_empty_refused", False):
        return
    command._secpolicy_empty_refused = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _refuse_empty_values(sub)
    for param in command.params:
        if isinstance(param, click.Option) and (param.is_flag or param.count):
            continue
        param.callback = _not_empty(param.callback)


def _not_empty(then: Any) -> Any:
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value == "" or isinstance(value, tuple) and "" in value:
            raise InputError(f"{_shown_name(param)} is empty: give {'a path' if _path_like(param) else 'a value'}"
                             + (", or leave the option out" if isinstance(param, click.Option) else ""))
        return then(ctx, param, value) if then is not None else value
    return check


def _shown_name(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


_PATH_METAVARS = ("PATH", "FILE", "DIR", "DB", "PEM", ".JSON", "CONFIG", "URI")


def _path_like(param: click.Parameter) -> bool:
    if isinstance(param.type, click.Path):
        return True
    shown = (param.metavar or (param.name if isinstance(param, click.Argument) else "") or "").upper()
    return any(w in shown for w in _PATH_METAVARS)


_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def _internal(ctx: click.Context, e: Exception) -> None:
    if os.environ.get("SECPOLICY_DEBUG"):
        raise e
    click.echo(
        f"secpolicy: internal error: {type(e).__name__}: {inert_line(str(e))} (set SECPOLICY_DEBUG=1 for a traceback)",
        err=True,
    )
    ctx.exit(EXIT_RUNTIME)


def _interrupted() -> NoReturn:
    # A second Ctrl-C while this is printed must not show a traceback either.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        click.echo("\nsecpolicy: interrupted", err=True)
    except OSError:
        pass
    raise SystemExit(EXIT_INTERRUPTED)


def _located(e: SecpolicyError) -> bool:
    # Located errors already start with `path:line:col:`; a prefix would hide that.
    return getattr(e, "path", None) is not None or hasattr(e, "errors")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="secpolicy")
@click.option("--follow-symlinks", is_flag=True,
              help="Let an output path that is a symbolic link be followed (the file it points to is replaced); refused by default.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr, for any command.")
def cli(follow_symlinks: bool, quiet: bool) -> None:
    """secpolicy: policy-as-code compliance scanning and auditing for Linux.

    \b
    Exit codes (all commands):
      0  compliant / intact / no changes
      1  non-compliant: failing findings, FIM changes, alerts (where asked)
      2  invalid input: policy, waiver, config, options or data files
      3  runtime failure: the work could not be done
      4  compliant only because failures are waived (scan)
      5  integrity failure: a baseline, audit log or report signature does not verify
    130  interrupted (Ctrl-C)

    \b
    Output files are written to a temporary file, fsynced and renamed: a failed write leaves
    the previous file. New files are created 0600, directories 0700. A symbolic link as an
    output path is refused unless --follow-symlinks; devices and FIFOs are written through.
    """
    from secpolicy import outfile
    from secpolicy.cli import progress

    outfile.set_follow_symlinks(follow_symlinks)
    progress.set_quiet(quiet, invocation=True)


def main() -> None:
    try:
        try:
            rv = cli.main(prog_name="secpolicy", standalone_mode=False)
            # Not standalone: `ctx.exit(n)` (and --help, --version) come back as a return value.
            raise SystemExit(rv if isinstance(rv, int) else 0)
        except click.exceptions.Abort:
            _interrupted()  # Ctrl-C while click parsed the options or prompted
        except click.ClickException as e:
            # click uses exit 2 for usage errors, which is our "invalid input" too.
            e.show()
            raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_INVALID_INPUT)
        raise SystemExit(code) from None
