"""HTML and PDF reports from the autoescaped Jinja2 templates in templates/: a single
self-contained HTML file (inline CSS, SVG and script) and a paginated PDF via WeasyPrint."""

from __future__ import annotations

import datetime as dt
import gc
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from html import unescape
from typing import IO, Any

import jinja2
from markupsafe import Markup, escape

from secpolicy.errors import InputError, RuntimeFailure
from secpolicy.models import Finding, Severity, Status
from secpolicy.reports import charts
from secpolicy.reports._text import SEVERITY_TITLE, evidence_line, references_text
from secpolicy.reports.model import STATUS_LABEL, Report, parse_time
from secpolicy.resources import templates_dir
from secpolicy.terminal import inert

__all__ = ["PDF_VARIANT", "environment", "render_html", "render_pdf", "template_context"]

PDF_VARIANT = "pdf/a-3b"  # archival PDF that may carry attachments (ISO 19005-3, level B)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        t = parse_time(iso)
    except InputError:
        return str(iso)  # free-form data (events, FIM) may carry any string
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _epoch(value: Any) -> str:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _when(value) if isinstance(value, str) else ""


_BACKTICKS = re.compile(r"`([^`\n]+)`")


def _inline_code(text: str | None) -> Markup:
    """Policy prose marks commands and settings with backticks: show them as code. The text
    is escaped first, so only our own <code> tags are markup."""
    return Markup(_BACKTICKS.sub(r"<code>\1</code>", str(escape(text or ""))))


def _lines(text: str | None) -> Markup:
    """Escaped text with its line breaks kept (observed file contents span lines) without
    `white-space: pre-wrap`, which slows WeasyPrint's line breaking for every paragraph."""
    return Markup("<br>".join(str(escape(part)) for part in (text or "").split("\n")))


# WeasyPrint lays out a paragraph with `overflow-wrap` set markedly slower (a seventh of a full
# report's time), and most paragraphs have no word that could overflow a line. So only those
# that have one get the class `wrap` (report_pdf.css breaks their words anywhere). A word's
# width is counted in units of an ASCII character at most 1.05 em wide; any other character
# counts 4 (wide CJK forms and ligatures), and a line of the narrowest such paragraph (9 pt, 501
# pt wide) holds 53 units: a word of more than 44 may not fit.
_PARAGRAPH = re.compile(r'<p(?: class="([^"]*)")?>(.*?)</p>', re.DOTALL)
_TAG = re.compile(r"<br>|<[^>]*>")
_WORD_UNITS = 44


def _fits(word: str) -> bool:
    return len(word) * 4 <= _WORD_UNITS or sum(1 if c < "\x80" else 4 for c in word) <= _WORD_UNITS


def _mark_long_words(html: str) -> str:
    """`html` with `wrap` added to the class of each paragraph holding a word that may not fit
    on a line (tags count as nothing but <br>, entities as the character they stand for)."""

    def mark(m: re.Match[str]) -> str:
        text = unescape(_TAG.sub(lambda t: " " if t.group(0) == "<br>" else "", m.group(2)))
        if all(_fits(w) for w in text.split()):
            return m.group(0)
        return f'<p class="{m.group(1) + " " if m.group(1) else ""}wrap">{m.group(2)}</p>'

    return _PARAGRAPH.sub(mark, html)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _label(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, Mapping) for x in value)


def _columns(rows: Iterable[Mapping[str, Any]], limit: int = 8) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, None)
    return list(cols)[:limit]


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value)
    return str(value)


def _visible(value: Any) -> Any:
    """Every value a template prints, as a terminal shows it (`secpolicy.terminal.inert`):
    bidi overrides and isolates, other format and control characters, and undecodable bytes
    are written as their `\\xNN` escapes. A host name or file name read from a scanned host
    cannot reorder the text around it (U+202E) or hide, on the cover, in the running header
    or in the evidence, what an auditor reads. Newlines and tabs are kept."""
    if isinstance(value, str):
        shown = inert(value)
        if shown is not value:
            return Markup(shown) if isinstance(value, Markup) else shown  # escapes add no markup
    return value


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        finalize=_visible,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when,
        epoch=_epoch,
        pct=_pct,
        label=_label,
        scalar=_scalar,
        evidence_line=evidence_line,
        refs=references_text,
        code=_inline_code,
        lines=_lines,
    )
    env.tests.update(mapping_like=_is_mapping, table=_is_table)
    env.globals.update(columns=_columns, STATUS_COLOR=charts.STATUS_COLOR)
    return env


def _fw_names(f: Finding) -> str:
    return " ".join(sorted(f.references))


def template_context(report: Report) -> dict[str, Any]:
    statuses = [s.value for s in Status]
    severities = [s.value for s in reversed(Severity)]
    return {
        "r": report,
        "scan": report.scan,
        "Status": Status,
        "statuses": statuses,
        "severities": severities,
        "status_label": {s.value: STATUS_LABEL[s] for s in Status},
        "severity_title": {s.value: SEVERITY_TITLE[s] for s in Severity},
        "fw_bars": charts.framework_bars(report.frameworks),
        "status_segments": charts.status_segments(report.by_status),
        "trend": charts.trend_chart(report.trend),
        "action": report.with_status(Status.ERROR, Status.FAIL),
        "waived": report.with_status(Status.WAIVED),
        "others": report.with_status(Status.PASS, Status.NOT_APPLICABLE, Status.SKIPPED),
        "fw_names": _fw_names,
        "framework_names": [fw.name for fw in report.frameworks],
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_html(report: Report, out: IO[str]) -> None:
    """One self-contained file: no fetch of fonts, scripts or images."""
    template = environment().get_template("report.html.j2")
    for chunk in template.generate(**template_context(report)):
        out.write(chunk)


def render_pdf(report: Report, out: IO[bytes]) -> None:
    """Writes PDF bytes to a binary stream."""
    try:
        import weasyprint
    except ImportError as e:  # pango missing at import time surfaces as OSError too
        raise RuntimeFailure(f"PDF output needs WeasyPrint: {e}") from None
    except OSError as e:
        raise RuntimeFailure(f"PDF output needs WeasyPrint's system libraries (pango): {e}") from None
    html = environment().get_template("report_pdf.html.j2").render(**template_context(report))
    # The templates print undecodable bytes read from the host as `\xNN` (`_visible`); a lone
    # surrogate left anywhere else cannot reach Pango either: its `\udcXX` escape does.
    html = _mark_long_words(html.encode("utf-8", "backslashreplace").decode("utf-8"))

    def no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # The report is self-contained; refuse anything that would leave the machine.
        raise ValueError(f"report refers to an external resource: {url}")

    # Layout allocates millions of small objects and keeps them all alive until the end:
    # cyclic garbage collection passes over them find nothing and cost a third of the time.
    was_enabled = gc.isenabled()
    gc.disable()
    attachments = []
    if report.integrity is not None:
        # PDF/A-3 allows embedded files: the exact results bytes travel inside the report,
        # so the one file is the whole deliverable and its SHA-256 can be checked.
        attachments.append(weasyprint.Attachment(
            string=report.integrity.results_json, name="results.json", relationship="Source",
            description=f"secpolicy results rendered by this report, SHA-256 {report.integrity.results_sha256}",
        ))
    try:
        doc = weasyprint.HTML(string=html, base_url=str(templates_dir()), url_fetcher=no_fetch)
        doc.write_pdf(out, pdf_variant=PDF_VARIANT, attachments=attachments)
    finally:
        if was_enabled:
            gc.enable()
