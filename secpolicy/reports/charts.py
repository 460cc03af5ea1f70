"""Geometry for the report's inline SVG charts (framework bars, status bar, compliance over
time), computed here so the HTML and PDF templates only place shapes; no chart library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from secpolicy.models import Status
from secpolicy.reports.model import FrameworkSummary, TrendPoint, parse_time

__all__ = ["SERIES_COLORS", "STATUS_COLOR", "Bar", "Segment", "Series", "TrendChart", "framework_bars", "status_segments", "trend_chart"]

STATUS_COLOR = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "error": "#6a1b9a",
    "waived": "#b26a00",
    "not_applicable": "#78909c",
    "skipped": "#b0bec5",
}
SERIES_COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457")


@dataclass(frozen=True)
class Bar:
    label: str
    pct: float | None
    y: float
    width: float  # of the filled part, in chart units
    color: str


@dataclass(frozen=True)
class Segment:
    status: str
    count: int
    x: float
    width: float
    color: str


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: tuple[tuple[float, float, float], ...]  # (x, y, pct)

    @property
    def path(self) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _) in enumerate(self.points))


@dataclass(frozen=True)
class TrendChart:
    width: float
    height: float
    left: float
    top: float
    plot_w: float
    plot_h: float
    series: tuple[Series, ...]
    x_labels: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, int], ...]
    # Scans of more than one host (`--allow-mixed-hosts`): each point's host, under its date.
    host_labels: tuple[tuple[float, str], ...] = ()
    hosts: tuple[str, ...] = ()


def _pct_color(pct: float | None) -> str:
    if pct is None:
        return "#b0bec5"
    if pct >= 90:
        return "#2e7d32"
    if pct >= 70:
        return "#f9a825"
    return "#c62828"


def framework_bars(frameworks: Sequence[FrameworkSummary], *, width: float = 360, row: float = 26) -> tuple[Bar, ...]:
    return tuple(
        Bar(fw.name, fw.compliance_pct, i * row, width * (fw.compliance_pct or 0) / 100, _pct_color(fw.compliance_pct))
        for i, fw in enumerate(frameworks)
    )


def status_segments(by_status: Mapping[str, int], *, width: float = 600) -> tuple[Segment, ...]:
    total = sum(by_status.values())
    out: list[Segment] = []
    x = 0.0
    for s in Status:
        n = int(by_status.get(s.value, 0))
        if not n or not total:
            continue
        w = width * n / total
        out.append(Segment(s.value, n, x, w, STATUS_COLOR[s.value]))
        x += w
    return tuple(out)


def trend_chart(points: Sequence[TrendPoint], *, width: float = 640, height: float = 240) -> TrendChart | None:
    """One line per framework (and `overall`), x spaced by scan time, y 0-100 %."""
    if len(points) < 2:
        return None
    left, top, right, bottom = 40.0, 12.0, 130.0, 34.0
    pw, ph = width - left - right, height - top - bottom
    times = [parse_time(p.at).timestamp() for p in points]
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0

    def xy(t: float, pct: float) -> tuple[float, float, float]:
        return (left + pw * (t - t0) / span, top + ph * (1 - pct / 100), pct)

    names = ["overall", *sorted({fw for p in points for fw in p.frameworks})]
    series = []
    for i, name in enumerate(names):
        pts = []
        for t, p in zip(times, points):
            v = p.overall_pct if name == "overall" else p.frameworks.get(name)
            if v is not None:
                pts.append(xy(t, float(v)))
        if pts:
            series.append(Series(name, SERIES_COLORS[i % len(SERIES_COLORS)], tuple(pts)))
    # Label at most ~6 dates so they never overlap.
    step = max(1, -(-len(points) // 6))
    labels = tuple(
        (left + pw * (t - t0) / span, parse_time(p.at).strftime("%Y-%m-%d"))
        for k, (t, p) in enumerate(zip(times, points))
        if k % step == 0 or k == len(points) - 1
    )
    ticks = tuple((top + ph * (1 - v / 100), v) for v in (0, 25, 50, 75, 100))
    hosts = tuple(dict.fromkeys(p.host for p in points))
    host_labels: tuple[tuple[float, str], ...] = ()
    if len(hosts) > 1:
        host_labels = tuple(
            (left + pw * (t - t0) / span, f"[{hosts.index(p.host) + 1}]") for t, p in zip(times, points)
        )
    return TrendChart(width, height, left, top, pw, ph, tuple(series), labels, ticks, host_labels, hosts)
