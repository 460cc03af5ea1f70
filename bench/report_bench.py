"""Report rendering time for a 5,000-finding results file, `secpolicy report` end to end
(start-up, reading and validating the results, rendering, the safe write), against the goals
(HTML < 2 s, PDF < 30 s); anchor: WeasyPrint laying out 40 pages of paragraphs in the same run."""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "reports"))

from gen_results import generate

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


def timed_cli(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "secpolicy", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def pages(pdf: Path) -> str:
    try:
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return next((line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")), "?")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--findings", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=1, help="PDF runs (HTML runs 3x as many)")
    ap.add_argument("--keep", metavar="DIR", help="Write the inputs and reports here instead of a temporary directory")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(a.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        results = generate(a.findings)
        (d / "results.json").write_text(json.dumps(results, indent=2))
        history = []
        for i, s in enumerate((1, 2, 3)):
            h = generate(a.findings, seed=s, fail_rate=0.25 - 0.03 * s)
            h["scan"]["started_at"] = f"2026-{8 + i:02d}-20T02:00:00+00:00"
            h["scan"]["finished_at"] = f"2026-{8 + i:02d}-20T02:00:40+00:00"
            (d / f"h{s}.json").write_text(json.dumps(h))
            history += ["--history", str(d / f"h{s}.json")]
        n_fail = results["summary"]["by_status"]["fail"] + results["summary"]["by_status"]["error"]
        print(f"results: {a.findings} findings ({n_fail} failing or erroring), 3 earlier scans for the trend")

        anchor = anchor_s()
        print(f"anchor: WeasyPrint, 40 pages of plain text: {anchor:.2f} s")
        base = ["report", str(d / "results.json"), *history, "--quiet"]
        t_html = statistics.median(timed_cli([*base, "-f", "html", "-o", str(d / "report.html")])
                                   for _ in range(3 * a.runs))
        t_pdf = statistics.median(timed_cli([*base, "-f", "pdf", "-o", str(d / "report.pdf")]) for _ in range(a.runs))
        ok = True
        for fmt, t in (("html", t_html), ("pdf", t_pdf)):
            goal = GOALS[fmt]
            verdict = "ok" if t < goal else "OVER GOAL"
            ok &= t < goal
            extra = f", {pages(d / 'report.pdf')} pages" if fmt == "pdf" else ""
            print(f"{fmt}: {t:.2f} s end to end{extra} (goal < {goal:.0f} s: {verdict}); {t / anchor:.1f}x the anchor")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
