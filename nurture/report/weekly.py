"""The console's live report adds to the daily report's sections the MQL → opportunity rate week by week
against the portfolio's target (``monitoring.mql_to_opportunity_target``), on the review's own definitions."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from sqlalchemy import Engine

from models.charts import Axes, Chart, lines_svg
from models.learning.review import qualified_per_week
from nurture.report.build import SectionRenderer
from nurture.report.sections import ReportScope, Section
from store.outcomes import qualified_journeys

WEEKS = 12


def read_weekly(engine: Engine, scope: ReportScope) -> pl.DataFrame:
    """The last ``WEEKS`` weeks' qualified journeys of the monitored qualification, per line and week."""
    portfolio = scope.portfolio
    monitoring = portfolio.spec.monitoring
    since = scope.generated_at - timedelta(weeks=WEEKS)
    qualified = qualified_journeys(engine, monitoring.qualification, since, scope.generated_at)
    lines = {name: line.spec.opportunity_stage for name, line in portfolio.product_lines.items()}
    if scope.product_line is not None:
        lines = {scope.product_line: lines[scope.product_line]}
    return qualified_per_week(qualified, lines, monitoring.mql_to_opportunity_target)


def weekly_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """A line per product line (its weekly rate) and the target as a line of its own."""
    monitoring = scope.portfolio.spec.monitoring
    target = monitoring.mql_to_opportunity_target
    charts = []
    if not frame.is_empty():
        weeks = sorted(set(frame["week"].to_list()))
        start = weeks[0]
        series = {
            line: [((week - start).days / 7, rate) for week, rate in zip(group["week"], group["rate"], strict=True)]
            for (line,), group in frame.group_by("product_line", maintain_order=True)
        }
        series["target"] = [(0.0, target), ((weeks[-1] - start).days / 7, target)]
        peak = max(1e-9, target, *frame["rate"].to_list())
        axes = Axes(peak, (f"week of {weeks[0]}", f"week of {weeks[-1]}"), ("0 %", f"{peak:.0%}"))
        title = f"{monitoring.qualification} → opportunity per week"
        charts.append(Chart(title, lines_svg(series, axes, title=title)))
    rows = [
        {"product line": line, "week of": week.isoformat(), monitoring.qualification: n, "opportunities": moved,
         "rate": f"{rate:.1%}", "target": f"{goal:.0%}"}
        for line, week, n, moved, rate, goal in frame.iter_rows()
    ]  # fmt: skip
    return Section(
        "mql-to-opportunity",
        f"{monitoring.qualification} → opportunity per week",
        f"Journeys that first reached {monitoring.qualification} in each of the last {WEEKS} weeks (by the week "
        "they reached it), and the share of them that moved on to their line's opportunity stage since, against "
        f"the portfolio's target of {target:.0%}. Recent weeks have had less time to convert.",
        ["product line", "week of", monitoring.qualification, "opportunities", "rate", "target"],
        rows,
        charts,
        None if rows else f"No journey reached {monitoring.qualification} in the last {WEEKS} weeks.",
    )


WEEKLY = SectionRenderer(read_weekly, weekly_section)
