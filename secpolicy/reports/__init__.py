"""Compliance reports from scan results: one report model (`build_report`) and one renderer
per format, all `render(report, out)`; `render_results` picks the format and the output."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import IO, Any

from secpolicy.errors import InputError
from secpolicy.outfile import is_terminal, write_bytes
from secpolicy.reports import csv_, json_, junit, ocsf, sarif
from secpolicy.reports.html import render_html, render_pdf
from secpolicy.reports.model import AuditRef, Report, build_report

__all__ = ["BINARY_FORMATS", "FORMATS", "RENDERERS", "Report", "build_report", "render_results"]

# Every renderer takes (report, out). `pdf` writes bytes and needs an IO[bytes]; every other
# format writes text and needs an IO[str].
RENDERERS: dict[str, Callable[[Report, Any], None]] = {
    "json": json_.render,
    "html": render_html,
    "pdf": render_pdf,
    "sarif": sarif.render,
    "junit": junit.render,
    "csv": csv_.render,
    "ocsf": ocsf.render,
}
BINARY_FORMATS = frozenset({"pdf"})
FORMATS = tuple(RENDERERS)


def render_results(
    results: dict[str, Any],
    fmt: str,
    output: str | None,
    *,
    history: Sequence[dict[str, Any]] = (),
    stdout: IO[str] | None = None,
    validate: bool = True,
    raw: bytes | None = None,
    audit: AuditRef | None = None,
) -> bytes:
    """Build the report from `results` (and earlier `history` scans for trends) and write it
    in `fmt` to the file `output`, or to standard output when `output` is None or `-`.
    PDF is refused on a terminal. `validate=False` skips schema validation for documents
    that `diff.load_results` has already validated. `raw` is the exact results bytes the
    report pins by SHA-256 (default: their canonical serialisation); `audit` the audit-log
    record holding that hash. Returns the bytes written."""
    if fmt not in RENDERERS:
        raise InputError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    report = build_report(results, history, validate=validate, raw=raw, audit=audit)
    render = RENDERERS[fmt]
    to_stdout = output in (None, "-")
    if fmt in BINARY_FORMATS:
        # `-o /dev/stdout`, `-o /dev/fd/1` or `-o /dev/pts/0` are a terminal as much as `-o -`.
        tty = stdout.isatty() if to_stdout and stdout is not None else is_terminal(output)
        if tty:
            raise InputError("refusing to write a PDF to a terminal; give --output FILE or redirect")
    if fmt in BINARY_FORMATS:
        buf = io.BytesIO()
        render(report, buf)
        data = buf.getvalue()
    else:
        text = io.StringIO(newline="")
        render(report, text)
        if to_stdout and stdout is not None:
            stdout.write(text.getvalue())
            stdout.flush()
            return text.getvalue().encode("utf-8", "backslashreplace")
        data = text.getvalue().encode("utf-8", "backslashreplace")
    # Rendered in memory first: a report that failed half-way never replaces a good one.
    write_bytes(None if to_stdout else output, data)
    return data
