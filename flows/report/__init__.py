"""The report: a self-contained HTML file (inline SVG charts, no scripts, no CDN) and Prefect table artifacts.

The sections, their queries and the page live in ``nurture/report`` (the console serves them live too);
here ``publish`` writes the file and the artifacts, and ``backtest`` is the backtest page.
"""

from flows.report.backtest import render_backtest
from flows.report.publish import publish_report_artifacts, report_counts, report_task, write_report
from nurture.report.build import SECTIONS, SectionRenderer, build_sections, line_shape
from nurture.report.page import render_html
from nurture.report.sections import ReportScope, Section

__all__ = [
    "SECTIONS",
    "ReportScope",
    "Section",
    "SectionRenderer",
    "build_sections",
    "line_shape",
    "publish_report_artifacts",
    "render_backtest",
    "render_html",
    "report_counts",
    "report_task",
    "write_report",
]
