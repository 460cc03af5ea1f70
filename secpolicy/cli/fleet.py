"""`secpolicy fleet ingest|report`: results files of many hosts into a store (SQLite file or
PostgreSQL URL) and the roll-up across them as HTML or PDF."""

from __future__ import annotations

import math
import sys

import click

from secpolicy.errors import InputError

__all__ = ["fleet_group"]

_STORE_HELP = "SQLite file (created 0600 if absent) or postgresql://USER@HOST/DB."


@click.group(name="fleet")
def fleet_group() -> None:
    """Roll up the scans of many hosts: ingest results files, report across the fleet."""


@fleet_group.command(name="ingest")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--store", "store_target", required=True, metavar="DB|URL", help=_STORE_HELP)
def ingest_cmd(results: tuple[str, ...], store_target: str) -> None:
    """Add RESULTS files (`secpolicy scan --format json`, results.json of --report-dir) to the
    fleet store. Each scan is stored once; a file given again is counted, not duplicated."""
    from secpolicy.fleet import open_store, read_results

    with open_store(store_target) as store:
        done = store.ingest(read_results(results))
        hosts, scans, findings = store.counts()
    click.echo(f"ingested {done.scans} scans ({done.findings} findings), {done.duplicates} already present; "
               f"the store holds {hosts} hosts, {scans} scans, {findings} findings", err=True)


def _stale_days(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of days")
    return value


@fleet_group.command(name="report")
@click.option("--store", "store_target", required=True, metavar="DB|URL", help=_STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["html", "pdf"]), default="html", show_default=True)
@click.option("--output", "-o", required=True, metavar="FILE", help="Where to write the report.")
@click.option("--framework", metavar="NAME", help="Framework of the hosts x requirements matrix (default: cis).")
@click.option("--stale-days", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              callback=_stale_days,
              help="A host whose newest scan is older than this is listed as not scanned recently.")
def report_cmd(store_target: str, fmt: str, output: str, framework: str | None, stale_days: float) -> None:
    """The fleet roll-up: hosts x requirements matrix, controls failing on most hosts, each
    host's score trend, hosts not scanned recently."""
    from secpolicy import outfile
    from secpolicy.fleet import build_fleet_report, open_store, render_fleet_html, render_fleet_pdf

    outfile.check_given([("--store", store_target), ("--output", output)])
    if not store_target.startswith(("postgresql://", "postgres://")):
        outfile.check_not_input([("--output", output)], [("--store", store_target)])
    outfile.check_writable(output)
    if output == "-":
        outfile.check_stdout()
    if fmt == "pdf" and outfile.is_terminal(output):
        raise InputError("refusing to write a PDF to a terminal; give --output FILE or redirect")
    with open_store(store_target, create=False) as store:
        known = store.frameworks()
        if framework is not None and framework not in known:
            raise InputError(f"--framework {framework!r}: the store knows {', '.join(known) or 'no framework'}")
        report = build_fleet_report(store, framework=framework, stale_after_days=stale_days)
    if not report.hosts:
        raise InputError("the fleet store holds no scan: nothing to report (ingest results first)", store_target)
    with outfile.open_output(output, binary=fmt == "pdf") as out:
        if fmt == "pdf":
            render_fleet_pdf(report, out)
        else:
            render_fleet_html(report, out)
    click.echo(f"fleet report of {len(report.hosts)} hosts written to {output}", err=True)
    if report.stale:
        click.echo(f"{len(report.stale)} hosts not scanned for more than {stale_days:g} days", err=True)
    sys.exit(0)
