"""Reports of a run directory, and the statistics behind them.

- :mod:`~delbench.reports.stats`: each statistic, once (hand-checked in the tests);
- :mod:`~delbench.reports.summary`: the rows aggregated into ``summary.json``;
- :mod:`~delbench.reports.validity`: does the benchmark separate selectors (maths and section);
- :mod:`~delbench.reports.text`: how numbers read in every output;
- :mod:`~delbench.reports.markdown`: the Markdown report (``report.md``);
- :mod:`~delbench.reports.html`: the same as one self-contained page (``report.html``);
- :mod:`~delbench.reports.plots`: the figures (matplotlib);
- :mod:`~delbench.reports.write`: writing them beside the run (:func:`write_report`).
"""
from delbench.reports.html import markdown_to_html
from delbench.reports.markdown import render_markdown
from delbench.reports.summary import aggregate_selectors, summarize
from delbench.reports.text import interval_text, statistics_note
from delbench.reports.validity import validity_verdict
from delbench.reports.write import FORMATS, ReportFiles, parse_formats, write_report

__all__ = ["FORMATS", "ReportFiles", "aggregate_selectors", "interval_text", "markdown_to_html", "parse_formats",
           "render_markdown", "statistics_note", "summarize", "validity_verdict", "write_report"]
