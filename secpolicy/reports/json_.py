"""JSON report: the results document itself (results.schema.json), so a saved report can be
re-rendered into any other format with `secpolicy report`."""

from __future__ import annotations

import json
from typing import IO

from secpolicy.reports.model import Report

__all__ = ["render"]


def render(report: Report, out: IO[str]) -> None:
    json.dump(report.results, out, indent=2, ensure_ascii=False)
    out.write("\n")
