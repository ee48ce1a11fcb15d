"""Building the report: each section's frame read from the store, then drawn by its pure renderer.

The report is the list :data:`SECTIONS`; adding a section is writing its renderer in
``nurture/report/sections.py`` and appending it here with the query of its frame.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import polars as pl
from sqlalchemy import Engine

from nurture.report.accounts import account_lines, hot_accounts_section, read_hot_accounts
from nurture.report.content import content_section
from nurture.report.experiments import emails_section, uplift_section
from nurture.report.sections import (
    HISTOGRAM_BINS,
    TOP_MOVERS,
    ReportScope,
    Section,
    audiences_section,
    conversion_section,
    distribution_section,
    funnel_section,
    movers_section,
    nurture_section,
    qualifications_section,
    review_section,
)
from stages.portfolio import Portfolio, ProductLine
from store import outcomes, reports
from store.funnel import funnel
from store.reader import read_concurrently
from store.reports import LineShape


@dataclass(frozen=True)
class SectionRenderer:
    """One section of the report: the query of its frame, and the pure renderer that draws it."""

    read: Callable[[Engine, ReportScope], pl.DataFrame]
    render: Callable[[ReportScope, pl.DataFrame], Section]
    applies: Callable[[ReportScope], bool] = lambda _: True
    """Whether the report has this section (the accounts section: only with an account model)."""


def _histogram(engine: Engine, scope: ReportScope) -> pl.DataFrame:
    scale = scope.portfolio.scale
    return reports.score_histogram(engine, scale.min, scale.max, HISTOGRAM_BINS, scope.product_line)


def _outcomes(engine: Engine, scope: ReportScope) -> pl.DataFrame:
    """Live outcomes of the monitoring window before the report, with the scores they had (the review's frame)."""
    since = scope.generated_at - timedelta(days=scope.portfolio.spec.monitoring.window_days)
    frame = outcomes.scored_outcomes(engine, since, scope.generated_at)
    return frame if scope.product_line is None else frame.filter(pl.col("product_line") == scope.product_line)


def _content(engine: Engine, scope: ReportScope) -> pl.DataFrame:
    """Content served in the monitoring window, per product line reported on."""
    since = scope.generated_at - timedelta(days=scope.portfolio.spec.monitoring.window_days)
    return reports.content_served(engine, [shape.name for shape in scope.shapes], since)


def _qualifications(engine: Engine, scope: ReportScope) -> pl.DataFrame:
    return reports.qualifications_per_day(engine, scope.portfolio.spec.timezone, scope.product_line)


SECTIONS: list[SectionRenderer] = [
    SectionRenderer(_histogram, distribution_section),
    SectionRenderer(lambda engine, scope: funnel(engine, scope.shapes), funnel_section),
    SectionRenderer(_qualifications, qualifications_section),
    SectionRenderer(lambda engine, scope: reports.conversion_by_band(engine, scope.shapes), conversion_section),
    SectionRenderer(lambda engine, scope: reports.top_movers(engine, TOP_MOVERS, scope.product_line), movers_section),
    SectionRenderer(lambda engine, _: reports.nurture_performance(engine), nurture_section),
    SectionRenderer(lambda engine, _: reports.nurture_emails(engine), emails_section),
    SectionRenderer(lambda engine, _: reports.nurture_arms(engine), uplift_section),
    SectionRenderer(
        lambda engine, scope: reports.audience_changes(engine, scope.portfolio.spec.timezone), audiences_section
    ),
    SectionRenderer(_outcomes, review_section),
    SectionRenderer(read_hot_accounts, hot_accounts_section, lambda scope: bool(account_lines(scope))),
    SectionRenderer(_content, content_section),
]


def line_shape(line: ProductLine) -> LineShape:
    """Stage order, outcome stages (the opportunity stage and those after it, customer stages) and band order."""
    opportunity = line.spec.opportunity_stage
    positions = {stage.name: i for i, stage in enumerate(line.stages)}
    start = positions.get(opportunity) if opportunity else None
    outcomes = [
        stage.name
        for i, stage in enumerate(line.stages)
        if stage.spec.status == "customer" or (start is not None and i >= start and stage.spec.status != "lost")
    ]
    bands = [name for name, _, _ in line.spec.bands.ordered]
    for stage in line.stages:
        bands += [name for name, _, _ in (stage.spec.bands.ordered if stage.spec.bands else []) if name not in bands]
    return LineShape(line.name, [stage.name for stage in line.stages], outcomes, bands)


def build_sections(
    portfolio: Portfolio,
    engine: Engine,
    product_line: str | None = None,
    sections: Sequence[SectionRenderer] = SECTIONS,
    generated_at: datetime | None = None,
) -> tuple[ReportScope, list[Section]]:
    """Read every section's frame (their queries run concurrently: ``read_concurrently``), then draw them in order."""
    if product_line is not None and product_line not in portfolio.product_lines:
        known = ", ".join(sorted(portfolio.product_lines))
        raise KeyError(f"unknown product line {product_line!r}; known: {known}")
    lines = [line for name, line in portfolio.product_lines.items() if product_line in (None, name)]
    scope = ReportScope(
        portfolio, [line_shape(line) for line in lines], generated_at or datetime.now(UTC), product_line
    )
    applied = [section for section in sections if section.applies(scope)]
    frames = read_concurrently([partial(section.read, engine, scope) for section in applied])
    return scope, [section.render(scope, frame) for section, frame in zip(applied, frames, strict=True)]
