"""JSON report: the results document itself (results.schema.json), so a saved report can be
re-rendered into any other format with `secpolicy report`."""

from __future__ import annotations

import json
from typing import IO

from secpolicy.reports.model import Report

__all__ = ["render"]


def render(report: Report, out: IO[str]) -> None:
    """The results bytes the report pins (a results file re-rendered is that file, byte for
    byte, so its SHA-256 is unchanged)."""
    if report.integrity is not None:
        out.write(report.integrity.results_json.decode("utf-8"))
        return
    json.dump(report.results, out, indent=2, ensure_ascii=False)
    out.write("\n")
