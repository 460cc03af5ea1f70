"""Compliance reports from scan results: one report model (`build_report`) and one renderer
per format, all `render(report, out)`; `render_results` picks the format and the output."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, Any

from secpolicy.errors import InputError, RuntimeFailure
from secpolicy.reports import csv_, json_, junit, ocsf, sarif
from secpolicy.reports.html import render_html, render_pdf
from secpolicy.reports.model import Report, build_report

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


def _write_atomically(path: str, data: bytes) -> None:
    # A report that failed half-way must not replace a good one under the same name.
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".secpolicy-report-", dir=directory)
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise InputError(f"cannot write: {e.strerror}", path) from None


def render_results(
    results: dict[str, Any],
    fmt: str,
    output: str | None,
    *,
    history: Sequence[dict[str, Any]] = (),
    stdout: IO[str] | None = None,
    validate: bool = True,
) -> None:
    """Build the report from `results` (and earlier `history` scans for trends) and write it
    in `fmt` to the file `output`, or to standard output when `output` is None or `-`.
    PDF is refused on a terminal. `validate=False` skips schema validation for documents
    that `diff.load_results` has already validated."""
    if fmt not in RENDERERS:
        raise InputError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    report = build_report(results, history, validate=validate)
    render = RENDERERS[fmt]
    to_stdout = output in (None, "-")
    target = stdout if stdout is not None else sys.stdout
    if fmt in BINARY_FORMATS:
        if to_stdout and target.isatty():
            raise InputError("refusing to write a PDF to a terminal; give --output FILE or redirect")
        buf = io.BytesIO()
        render(report, buf)
        data = buf.getvalue()
    else:
        text = io.StringIO(newline="")
        render(report, text)
        if to_stdout:
            target.write(text.getvalue())
            target.flush()
            return
        data = text.getvalue().encode("utf-8")
    if to_stdout:
        binary = getattr(target, "buffer", None)
        if binary is None:
            raise RuntimeFailure("standard output cannot take binary data; give --output FILE")
        target.flush()
        binary.write(data)
        binary.flush()
        return
    assert output is not None
    _write_atomically(output, data)
