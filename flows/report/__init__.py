"""The report: a self-contained HTML file (inline SVG charts, no scripts, no CDN) and Prefect table artifacts.

``charts`` is the one chart kit (the daily report and the backtest page draw with it); ``sections`` the
pure renderers from the store's report frames to sections; ``build`` reads each section's frame and runs
its renderer (:data:`SECTIONS`); ``page`` puts sections into the Jinja templates; ``publish`` writes the
file and the artifacts; ``backtest`` is the backtest page.
"""

from flows.report.backtest import render_backtest
from flows.report.build import SECTIONS, SectionRenderer, build_sections, line_shape
from flows.report.page import render_html
from flows.report.publish import publish_report_artifacts, report_counts, report_task, write_report
from flows.report.sections import ReportScope, Section

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
