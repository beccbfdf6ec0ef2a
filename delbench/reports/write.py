"""Writing a run's report: ``summary.json``, ``report.md`` and ``report.html`` (and the figures
the last two show) beside the run, every file atomically."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from delbench.errors import ConfigError
from delbench.reports.html import render_html
from delbench.reports.markdown import render_markdown
from delbench.reports.plots import draw_figures
from delbench.reports.summary import summarize
from delbench.sdk.files import atomic_write_json, atomic_write_text
from delbench.store import HTML_FILE, REPORT_FILE, SUMMARY_FILE, read_header, read_rows

#: the report's formats: ``md`` (report.md), ``json`` (summary.json), ``html`` (report.html)
FORMATS = ("md", "json", "html")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote: the summary it computed and the file of each format."""

    summary: dict[str, Any]
    files: dict[str, Path]
    #: rows of results.jsonl left out or unusable (a cut-off last line, an ok row without a
    #: finite metric), one line each naming file and line; also ``summary["row_problems"]``
    problems: tuple[str, ...] = ()


def parse_formats(text: str) -> tuple[str, ...]:
    """``"md,json,html"`` → ``("md", "json", "html")``; an unknown format is one line naming it."""
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format: unknown format {unknown[0]!r}" if unknown else "--format: no format given"
                          f"; choose from {', '.join(FORMATS)} (comma-separated)")
    return formats


def write_report(run_dir: str | Path, formats: Iterable[str] = FORMATS) -> ReportFiles:
    """Write the report of ``run_dir`` in ``formats`` (:data:`FORMATS`): ``summary.json``,
    ``report.md`` and ``report.html``, and for the last two the figures of
    :mod:`delbench.reports.plots`; every file atomically. Rows left out or unusable are
    reported, not dropped in silence (:attr:`ReportFiles.problems`, and a section of the
    report)."""
    run_dir = Path(run_dir)
    formats = tuple(formats)
    problems: list[str] = []
    summary = summarize(read_header(run_dir), read_rows(run_dir, problems))
    summary["row_problems"] = problems
    files: dict[str, Path] = {}
    if "json" in formats:
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
        files["json"] = run_dir / SUMMARY_FILE
    if "md" in formats or "html" in formats:
        figures = [(path.name, caption) for path, caption in draw_figures(summary, run_dir)]
        if "md" in formats:
            atomic_write_text(run_dir / REPORT_FILE, render_markdown(summary, figures))
            files["md"] = run_dir / REPORT_FILE
        if "html" in formats:
            atomic_write_text(run_dir / HTML_FILE, render_html(summary, figures, run_dir))
            files["html"] = run_dir / HTML_FILE
    return ReportFiles(summary, files, tuple(problems))
