"""Report rendering time for a 5,000-finding results file against the goals (PDF < 30 s,
HTML < 2 s); anchor: WeasyPrint laying out a plain 40-page text document in the same run."""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "reports"))

from gen_results import generate

from secpolicy.reports import RENDERERS, build_report, render_results

GOALS = {"pdf": 30.0, "html": 2.0}


def anchor_s() -> float:
    """A fixed amount of WeasyPrint work (40 pages of plain paragraphs): what this machine's
    WeasyPrint costs, so the report figure can be read as a ratio on any machine."""
    import weasyprint

    para = "<p>" + " ".join(f"word{i}" for i in range(120)) + "</p>"
    html = "<html><body style='font: 9pt DejaVu Sans'>" + para * 400 + "</body></html>"
    gc.disable()
    try:
        t = time.perf_counter()
        weasyprint.HTML(string=html).write_pdf(io.BytesIO())
        return time.perf_counter() - t
    finally:
        gc.enable()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--findings", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=1, help="PDF runs (HTML runs 3x as many)")
    ap.add_argument("--keep", metavar="DIR", help="Also leave report.pdf and report.html here")
    a = ap.parse_args(argv)

    results = generate(a.findings)
    history = [generate(a.findings, seed=s, fail_rate=0.25 - 0.03 * s) for s in (1, 2, 3)]
    for i, h in enumerate(history):
        h["scan"]["started_at"] = f"2026-{8 + i:02d}-20T02:00:00+00:00"
        h["scan"]["finished_at"] = f"2026-{8 + i:02d}-20T02:00:40+00:00"
    n_fail = results["summary"]["by_status"]["fail"] + results["summary"]["by_status"]["error"]
    print(f"results: {a.findings} findings ({n_fail} failing or erroring), 3 earlier scans for the trend")

    anchor = anchor_s()
    print(f"anchor: WeasyPrint, 40 pages of plain text: {anchor:.2f} s")

    build = statistics.median(timed(lambda: build_report(results, history)) for _ in range(3))
    print(f"build_report (schema validation, model, 4 scans): {build:.2f} s")

    out_dir = Path(a.keep) if a.keep else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    def html() -> None:
        if out_dir:
            render_results(results, "html", str(out_dir / "report.html"), history=history)
        else:
            RENDERERS["html"](build_report(results, history), io.StringIO())

    def pdf() -> None:
        if out_dir:
            render_results(results, "pdf", str(out_dir / "report.pdf"), history=history)
        else:
            RENDERERS["pdf"](build_report(results, history), io.BytesIO())

    t_html = statistics.median(timed(html) for _ in range(3 * a.runs))
    t_pdf = statistics.median(timed(pdf) for _ in range(a.runs))
    ok = True
    for fmt, t in (("html", t_html), ("pdf", t_pdf)):
        goal = GOALS[fmt]
        verdict = "ok" if t < goal else "OVER GOAL"
        ok &= t < goal
        print(f"{fmt}: {t:.2f} s end to end (goal < {goal:.0f} s: {verdict}); {t / anchor:.1f}x the anchor")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
