"""Many hosts' scan results in one store (SQLite or PostgreSQL) and the fleet roll-up report."""

from __future__ import annotations

from secpolicy.fleet.report import (
           FleetReport,
           build_fleet_report,
           render_fleet_html,
           render_fleet_pdf,
)
from secpolicy.fleet.store import FleetStore, IngestResult, open_store, read_results

__all__ = ["FleetReport", "FleetStore", "IngestResult", "build_fleet_report", "open_store", "read_results",
           "render_fleet_html", "render_fleet_pdf"]
