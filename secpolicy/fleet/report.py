"""The fleet roll-up: hosts x requirements matrix, the controls failing on most hosts, each
host's trend and the hosts not scanned recently, rendered to HTML or PDF from one template."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

from secpolicy.fleet.store import FleetStore, ScanRow
from secpolicy.reports.model import parse_time

__all__ = ["FleetReport", "build_fleet_report", "render_fleet_html", "render_fleet_pdf"]

_WORST = {"fail": 3, "error": 2, "pass": 1, "not_applicable": 0}


@dataclass(frozen=True)
class HostLine:
    scan: ScanRow
    trend: tuple[float | None, ...]  # score of each of the host's recent scans, oldest first
    stale_days: float
    cells: tuple[str, ...]  # status per requirement group, in FleetReport.groups order


@dataclass(frozen=True)
class FleetReport:
    generated_at: str
    framework: str
    groups: tuple[str, ...]
    hosts: tuple[HostLine, ...]
    worst: tuple[tuple[str, str, str, int, int], ...]
    stale: tuple[HostLine, ...]
    stale_after_days: float
    frameworks: tuple[str, ...]
    totals: Mapping[str, int]

    @property
    def score(self) -> float | None:
        scores = [h.scan.score for h in self.hosts if h.scan.score is not None]
        return sum(scores) / len(scores) if scores else None


def host_label(scan: ScanRow) -> str:
    """`web1 (machine-id 4f2a9c1e07b3)`, `web1 (no machine-id)`."""
    kind, _, ident = scan.host_id.partition(":")
    return f"{scan.hostname} (machine-id {ident[:12]})" if kind == "machine-id" else f"{scan.hostname} (no machine-id)"


def requirement_group(requirement: str) -> str:
    """`8.3.4` -> `8.3`, `164.312(b)` -> `164.312`, `CC6.8` -> `CC6.8`: a column per section."""
    base = requirement.split("(", 1)[0]
    parts = base.split(".")
    return ".".join(parts[:2])


def _group_key(group: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for part in group.replace("(", ".").split("."):
        out.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return tuple(out)


def build_fleet_report(store: FleetStore, *, framework: str | None = None, stale_after_days: float = 2.0,
                       now: dt.datetime | None = None, worst: int = 25, trend_points: int = 12) -> FleetReport:
    now = now or dt.datetime.now(dt.UTC)
    frameworks = tuple(store.frameworks())
    fw = framework or ("cis" if "cis" in frameworks else (frameworks[0] if frameworks else ""))
    matrix = store.requirement_matrix(fw) if fw else {}
    groups_by_host: dict[str, dict[str, str]] = {}
    for host_id, reqs in matrix.items():
        g: dict[str, str] = {}
        for req, status in reqs.items():
            key = requirement_group(req)
            cur = g.get(key)
            if cur is None or _WORST[status] > _WORST[cur]:
                g[key] = status
        groups_by_host[host_id] = g
    groups = tuple(sorted({k for g in groups_by_host.values() for k in g}, key=_group_key))
    lines = []
    latest = store.latest_scans()
    # Two hosts of one name (a clone, a host claiming another's name) are told apart by
    # their identity, never shown as two rows of the same name.
    names = Counter(s.hostname for s in latest)
    for scan in latest:
        if names[scan.hostname] > 1:
            scan = replace(scan, hostname=host_label(scan))
        trend = tuple(s.score for s in store.history(scan.host_id, trend_points))
        age = (now - parse_time(scan.started_at)).total_seconds() / 86400
        g = groups_by_host.get(scan.host_id, {})
        lines.append(HostLine(scan, trend, age, tuple(g.get(k, "") for k in groups)))
    stale = tuple(sorted((h for h in lines if h.stale_days > stale_after_days), key=lambda h: -h.stale_days))
    totals: Counter[str] = Counter()
    for h in lines:
        totals.update({"pass": h.scan.passed, "fail": h.scan.failed, "error": h.scan.errors,
                       "not_applicable": h.scan.not_applicable, "waived": h.scan.waived})
    return FleetReport(now.strftime("%Y-%m-%d %H:%M UTC"), fw, groups, tuple(lines),
                       tuple(store.worst_rules(worst)), stale, stale_after_days, frameworks, dict(totals))


def _sparkline(points: tuple[float | None, ...], width: int = 90, height: int = 18) -> str:
    """An inline SVG polyline of scores 0-100 (no script, no external resource)."""
    vals = [p for p in points if p is not None]
    if len(vals) < 2:
        return ""
    step = width / (len(vals) - 1)
    coords = " ".join(f"{i * step:.1f},{height - v / 100 * height:.1f}" for i, v in enumerate(vals))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="score trend"><polyline fill="none" stroke="#3465a4" stroke-width="1.5" '
            f'points="{coords}"/></svg>')


def _context(report: FleetReport, *, pdf: bool) -> dict[str, Any]:
    from markupsafe import Markup

    return {"f": report, "pdf": pdf, "spark": lambda pts: Markup(_sparkline(pts))}


def render_fleet_html(report: FleetReport, out: IO[str]) -> None:
    from secpolicy.reports.html import environment

    for chunk in environment().get_template("fleet.html.j2").generate(**_context(report, pdf=False)):
        out.write(chunk)


def render_fleet_pdf(report: FleetReport, out: IO[bytes]) -> None:
    from secpolicy.errors import RuntimeFailure
    from secpolicy.reports.html import environment
    from secpolicy.resources import templates_dir

    try:
        import weasyprint
    except (ImportError, OSError) as e:
        raise RuntimeFailure(f"PDF output needs WeasyPrint and pango: {e}") from None
    html = environment().get_template("fleet.html.j2").render(**_context(report, pdf=True))

    def no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ValueError(f"report refers to an external resource: {url}")

    weasyprint.HTML(string=html, base_url=str(templates_dir()), url_fetcher=no_fetch).write_pdf(out)
