"""The `report` and `diff` commands: re-render a saved results file in any report format, and
compare two scans (table, JSON or Markdown for a pull-request comment) with CI exit codes."""

from __future__ import annotations

import sys

import click

from secpolicy.errors import EXIT_NONCOMPLIANT, InputError
from secpolicy.reports import FORMATS, render_results
from secpolicy.reports.diff import DIFF_FORMATS, diff_results, load_results, render_diff

__all__ = ["COMMANDS", "diff", "report"]


@click.command()
@click.argument("results_file", metavar="RESULTS.json", type=click.Path(dir_okay=False))
@click.option(
    "--history",
    "history",
    multiple=True,
    metavar="OLD.json",
    type=click.Path(dir_okay=False),
    help="Results of earlier scans (repeatable): adds compliance over time to HTML and PDF.",
)
@click.option("--format", "-f", "fmt", required=True, type=click.Choice(FORMATS), help="Report format.")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of standard output (PDF needs a file or a pipe).")
def report(results_file: str, history: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Render a saved scan (the JSON of `secpolicy scan --format json`) as a report."""
    results = load_results(results_file)
    older = [load_results(p, summary_only=True) for p in history]
    render_results(results, fmt, output, history=older, validate=False)
    if output not in (None, "-"):
        click.echo(f"{fmt} report written to {output}", err=True)


@click.command()
@click.argument("old_file", metavar="OLD.json", type=click.Path(dir_okay=False))
@click.argument("new_file", metavar="NEW.json", type=click.Path(dir_okay=False))
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=click.Choice(DIFF_FORMATS), help="Output format; markdown suits a pull-request comment.")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of standard output.")
@click.option("--fail-on-new", is_flag=True, help="Exit 1 when NEW has failures that OLD did not have.")
def diff(old_file: str, new_file: str, fmt: str, output: str | None, fail_on_new: bool) -> None:
    """Compare two scans: new failures, fixed rules, other status changes, added and removed rules."""
    d = diff_results(load_results(old_file), load_results(new_file))
    if output in (None, "-"):
        render_diff(d, fmt, sys.stdout)
    else:
        try:
            with open(output, "w", encoding="utf-8") as out:
                render_diff(d, fmt, out)
        except OSError as e:
            raise InputError(f"cannot write: {e.strerror}", output) from None
    if fail_on_new and d.new_failures:
        sys.exit(EXIT_NONCOMPLIANT)


COMMANDS = [report, diff]
