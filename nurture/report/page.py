"""Page assembly: the Jinja templates (``templates/report``, ``templates/backtest``) around the sections'
charts and tables, autoescaped (the charts are SVG from the chart kit, every text in them escaped)."""

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from nurture.mail import PROJECT_TEMPLATES as TEMPLATES
from nurture.report.sections import ReportScope, Section


def render_page(template: str, **context: Any) -> str:
    """A template under ``templates/`` (e.g. ``report/report.html.j2``) rendered with ``context``."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
    )
    env.filters["cell"] = cell
    return env.get_template(template).render(**context)


def render_html(scope: ReportScope, sections: Sequence[Section]) -> str:
    """The daily report's page: every section's charts and key table."""
    return render_page(
        "report/report.html.j2",
        portfolio=scope.portfolio.spec.name,
        product_line=scope.product_line,
        generated_at=scope.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        sections=sections,
    )


def cell(value: Any) -> str:
    """A table cell as the report shows it: numbers with thousands separators, floats to one decimal."""
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
