"""The `report`, `diff` and `verify-report` commands: re-render a saved results file in any
report format (optionally signed), compare two scans with CI exit codes, check a signature."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

import click

from secpolicy import outfile
from secpolicy.cli import progress
from secpolicy.cli.choices import StrictChoice
from secpolicy.errors import EXIT_NONCOMPLIANT, InputError, IntegrityError
from secpolicy.reports import BINARY_FORMATS, FORMATS, render_results
from secpolicy.reports.diff import (
    DIFF_FORMATS,
    diff_results,
    load_results,
    read_results,
    render_diff,
)
from secpolicy.reports.model import AuditRef, check_same_host, parse_time
from secpolicy.resultsfile import read_input, sha256_hex
from secpolicy.terminal import inert_line

__all__ = ["COMMANDS", "diff", "find_audit_record", "report", "verify_report_cmd"]

_mixed_option = click.option(
    "--allow-mixed-hosts", is_flag=True,
    help="Accept results of different hosts (by machine-id, else hostname); each scan is then labelled with its host.",
)


def find_audit_record(log_dir: str, scan_id: str, results_sha256: str) -> AuditRef:
    """The scan's end record in the audit log and the results SHA-256 it holds: exit 5 when
    it holds another hash (the results file is not the one the scan wrote), exit 2 when the
    log has no record of the scan. The log's own chain is checked by `secpolicy log verify`."""
    from secpolicy.auditlog.verify import log_files, read_lines

    found: tuple[int, Any] | None = None
    for _, _, line, _, _ in read_lines(log_files([log_dir])):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        body = entry.get("body") if isinstance(entry, dict) else None
        details = body.get("details") if isinstance(body, dict) else None
        if (isinstance(body, dict) and isinstance(details, dict) and body.get("event_type") == "scan_stop"
                and details.get("scan_id") == scan_id and isinstance(entry.get("seq"), int)):
            found = (entry["seq"], details.get("results_sha256"))
    if found is None:
        raise InputError(f"audit log {log_dir} has no record of the end of scan {scan_id}")
    seq, recorded = found
    if recorded != results_sha256:
        raise IntegrityError(
            f"the results file is not what scan {scan_id} wrote: its SHA-256 is {results_sha256}, "
            f"the audit log {log_dir} (record seq {seq}) holds {recorded}"
        )
    return AuditRef(scan_id=scan_id, seq=seq, log=log_dir, looked_up=True)


def _signing_key(path: str) -> Any:
    from secpolicy.auditlog.checkpoint import load_private_key

    return load_private_key(path)


@click.command()
@click.argument("results_file", metavar="RESULTS.json", type=click.Path(dir_okay=False))
@click.option(
    "--history",
    "history",
    multiple=True,
    metavar="OLD.json",
    type=click.Path(dir_okay=False),
    help="Results of earlier scans of the same host (repeatable): adds compliance over time to HTML and PDF.",
)
@click.option("--format", "-f", "fmt", required=True, type=StrictChoice(FORMATS), help="Report format.")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of standard output (PDF needs a file or a pipe).")
@click.option("--sign", "sign_key", metavar="KEY.pem", type=click.Path(dir_okay=False),
              help="Ed25519 private key (as `secpolicy log keygen` makes): also write the detached signature FILE.sig.")
@click.option("--audit-log", "audit_log", type=click.Path(file_okay=False),
              help="The audit log the scan was recorded in: the report names the record holding the results' SHA-256 (exit 5 if it holds another).")
@_mixed_option
@click.option("-q", "--quiet", is_flag=True, help="No progress and no notes on stderr.")
def report(results_file: str, history: tuple[str, ...], fmt: str, output: str | None, sign_key: str | None,
           audit_log: str | None, allow_mixed_hosts: bool, quiet: bool) -> None:
    """Render a saved scan (the JSON of `secpolicy scan --format json`) as a report.

    The HTML and PDF reports state the SHA-256 of RESULTS.json; the PDF (PDF/A-3b) carries
    the file itself as the attachment results.json."""
    progress.set_quiet(quiet)
    outfile.check_given([("--output", output), *(("--history", h) for h in history), ("--sign", sign_key),
                         ("--audit-log", audit_log)])
    outputs = [("--output", output)] + ([("the signature", output + ".sig")] if sign_key and output else [])
    outfile.check_not_input(outputs, [("RESULTS.json", results_file), *(("--history", h) for h in history),
                                      ("--sign", sign_key)], directories=[("--audit-log", audit_log)])
    outfile.check_writable(output)
    if output in (None, "-"):
        outfile.check_stdout()
    if fmt in BINARY_FORMATS and outfile.is_terminal(output):
        raise InputError("refusing to write a PDF to a terminal; give --output FILE or redirect")
    if sign_key:
        if output in (None, "-") or os.path.exists(output) and not os.path.isfile(os.path.realpath(output)):
            raise InputError("--sign needs --output FILE (a regular file, the one the signature covers)")
        outfile.check_writable(output + ".sig")
        key = _signing_key(sign_key)
    results, raw = read_results(results_file)
    older = [(p, load_results(p, summary_only=True)) for p in history]
    check_same_host([(results_file, results), *older], allow_mixed_hosts)
    audit = find_audit_record(audit_log, results["scan"]["id"], sha256_hex(raw)) if audit_log else None
    with progress.pdf_progress("PDF report") if fmt == "pdf" else contextlib.nullcontext():
        data = render_results(results, fmt, output, history=[d for _, d in older], validate=False, raw=raw, audit=audit)
    if sign_key and output:
        from secpolicy.reports.signature import sign_report

        outfile.write_bytes(output + ".sig", sign_report(data, os.path.basename(output), sha256_hex(raw), key))
    if output not in (None, "-") and not quiet:
        click.echo(f"{fmt} report written to {output}" + (f", signature {output}.sig" if sign_key else ""), err=True)


@click.command(name="verify-report")
@click.argument("report_file", metavar="REPORT", type=click.Path(dir_okay=False))
@click.option("--key", "public_key", required=True, type=click.Path(dir_okay=False), metavar="KEY.pub",
              help="Ed25519 public key of the signer (PEM).")
@click.option("--signature", metavar="REPORT.sig", type=click.Path(dir_okay=False),
              help="The detached signature (default: REPORT.sig).")
@click.option("--results", "results_file", metavar="RESULTS.json", type=click.Path(dir_okay=False),
              help="Also check that the report renders this results file (its SHA-256 is the one signed).")
def verify_report_cmd(report_file: str, public_key: str, signature: str | None, results_file: str | None) -> None:
    """Check a report's detached signature: exit 0 when it verifies, 5 when the report (or
    the results file given) is not what was signed."""
    from secpolicy.auditlog.checkpoint import load_public_key
    from secpolicy.reports.signature import verify_report

    sig_path = signature or report_file + ".sig"
    data = _read(report_file)
    verified = verify_report(data, _read(sig_path, _MAX_SIGNATURE_BYTES), load_public_key(public_key), sig_path)
    if results_file is not None:
        actual = sha256_hex(_read(results_file))
        if verified.results_sha256 != actual:
            raise IntegrityError(
                f"{results_file} is not the results the report renders: SHA-256 {actual}, signed {verified.results_sha256}"
            )
    # A file name is shown inert (control characters escaped), as every path we print.
    click.echo(inert_line(f"ok: {report_file} (SHA-256 {verified.sha256}) signed {verified.signed_at} by key "
                          f"sha256:{verified.public_key_sha256[:16]}...; it renders results SHA-256 {verified.results_sha256}"))


# A signature document is a few hundred bytes; anything much larger is not one.
_MAX_SIGNATURE_BYTES = 64 * 1024


def _read(path: str, limit: int | None = None) -> bytes:
    # A device such as /dev/zero would be read without end: refused (exit 2), as is a directory.
    return read_input(path, limit=limit)


@click.command()
@click.argument("old_file", metavar="OLD.json", type=click.Path(dir_okay=False))
@click.argument("new_file", metavar="NEW.json", type=click.Path(dir_okay=False))
@click.option("--format", "-f", "fmt", default="table", show_default=True, type=StrictChoice(DIFF_FORMATS), help="Output format; markdown suits a pull-request comment.")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of standard output.")
@click.option("--fail-on-new", is_flag=True, help="Exit 1 when NEW has failures that OLD did not have.")
@_mixed_option
def diff(old_file: str, new_file: str, fmt: str, output: str | None, fail_on_new: bool, allow_mixed_hosts: bool) -> None:
    """Compare two scans of one host: new failures, fixed rules, other status changes,
    added and removed rules."""
    outfile.check_given([("--output", output)])
    outfile.check_not_input([("--output", output)], [("OLD.json", old_file), ("NEW.json", new_file)])
    outfile.check_writable(output)
    if output in (None, "-"):
        outfile.check_stdout()
    old, new = load_results(old_file), load_results(new_file)
    check_same_host([(old_file, old), (new_file, new)], allow_mixed_hosts)
    _check_order(old_file, old, new_file, new)
    d = diff_results(old, new)
    with outfile.open_output(output) as out:
        render_diff(d, fmt, out)
    if fail_on_new and d.new_failures:
        sys.exit(EXIT_NONCOMPLIANT)


def _check_order(old_file: str, old: dict[str, Any], new_file: str, new: dict[str, Any]) -> None:
    """Refuse OLD scanned after NEW: read the wrong way round, every regression would be listed
    as fixed and `--fail-on-new` would pass the gate."""
    started_old, started_new = parse_time(old["scan"]["started_at"]), parse_time(new["scan"]["started_at"])
    if started_old > started_new:
        raise InputError(
            f"OLD.json {old_file} is the later scan (started {old['scan']['started_at']}), NEW.json {new_file} "
            f"the earlier (started {new['scan']['started_at']}): give the baseline first"
        )


COMMANDS = [report, diff, verify_report_cmd]
