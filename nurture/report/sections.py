"""The report's sections: pure renderers from one report frame of the store to a :class:`Section`.

A renderer reads nothing: ``nurture/report/build.py`` queries the frame (``store/reports.py``) and hands it
over with the :class:`ReportScope`, so a section can be drawn from any frame of the right columns.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl
from markupsafe import Markup

from models.charts import Axes, Chart, bars_svg, change_bars_svg, columns_svg, lines_svg
from models.learning.review import lift_by_decile, review_stages
from stages.portfolio import Portfolio
from stages.review import review_settings, stage_bands
from store.reports import LineShape

HISTOGRAM_BINS = 10
TOP_MOVERS = 20


@dataclass
class Section:
    """One part of the report: ``key`` names its anchor and its artifact (``report-<key>``)."""

    key: str
    title: str
    intro: str
    columns: list[str]
    rows: list[dict[str, Any]]
    charts: list[Chart] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class ReportScope:
    """What a section knows besides its frame: the portfolio (scale, time zone), the shapes of the lines
    reported on, when, and the one product line asked for (``None``: all)."""

    portfolio: Portfolio
    shapes: list[LineShape]
    generated_at: datetime
    product_line: str | None = None


def distribution_section(scope: ReportScope, counts: pl.DataFrame) -> Section:
    """Journeys per score range (``product_line, stage, bin, journeys``), a histogram per line and stage."""
    scale = scope.portfolio.scale
    width = (scale.max - scale.min) / HISTOGRAM_BINS
    charts = []
    for (line, stage), group in counts.group_by("product_line", "stage", maintain_order=True):
        per_bin = dict(zip(group["bin"], group["journeys"], strict=True))
        values = [per_bin.get(i, 0) for i in range(HISTOGRAM_BINS)]
        charts.append(Chart(f"{line} · {stage}", _histogram(values, scale.min, width)))
    rows = [
        {
            "product line": line,
            "stage": stage,
            "score from": scale.min + b * width,
            "score to": scale.min + (b + 1) * width,
            "journeys": n,
        }
        for line, stage, b, n in counts.iter_rows()
    ]
    return Section(
        "score-distribution",
        "Score distribution",
        f"Journeys per score range ({HISTOGRAM_BINS} equal ranges of the {scale.min:g}–{scale.max:g} scale), "
        "per product line and stage.",
        ["product line", "stage", "score from", "score to", "journeys"],
        rows,
        charts,
        None if rows else "No scored journeys yet: run `leadscore score`.",
    )


def funnel_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Journeys now in and having reached each stage, with the conversion from the previous one."""
    charts = []
    for (line,), group in frame.group_by("product_line", maintain_order=True):
        labels = [
            f"{stage}: {reached:,}" + ("" if conversion is None else f" ({conversion:.0%} of previous)")
            for stage, reached, conversion in group.select("stage", "reached", "conversion").iter_rows()
        ]
        charts.append(Chart(f"{line} funnel", bars_svg(labels, group["reached"].to_list())))
    rows = [
        {"product line": line, "stage": stage, "now": now, "reached": reached, "conversion": _percent(conversion)}
        for line, stage, _, now, reached, conversion in frame.iter_rows()
    ]
    return Section(
        "funnel",
        "Funnel",
        "Journeys in each stage now, journeys that reached it (are or have been there or further), and the "
        "conversion from the previous stage.",
        ["product line", "stage", "now", "reached", "conversion"],
        rows,
        charts,
    )


def qualifications_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """First-time qualifications per day (in the portfolio's time zone), a line per qualification."""
    charts = []
    for (line,), group in frame.group_by("product_line", maintain_order=True):
        series = {
            qualification: list(zip(g["day"], g["reached"], strict=True))
            for (qualification,), g in group.group_by("qualification", maintain_order=True)
        }
        charts.append(Chart(f"{line}: qualifications per day", _per_day(series, "qualifications per day")))
    rows = [
        {"product line": line, "qualification": qualification, "day": day.isoformat(), "reached": n}
        for line, qualification, day, n in frame.iter_rows()
    ]
    return Section(
        "qualifications",
        "Qualifications over time",
        f"Milestones: journeys reaching each qualification for the first time, per day "
        f"({scope.portfolio.spec.timezone}). A milestone is kept for good; a journey's current level (its "
        "current stage's score against the thresholds) may be lower after a reset promotion.",
        ["product line", "qualification", "day", "reached"],
        rows,
        charts,
        None if rows else "No qualification reached yet.",
    )


def conversion_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Conversion rate by the band a journey was in before its outcome; n/a while a line has none."""
    charts = []
    for (line,), group in frame.group_by("product_line", maintain_order=True):
        if group["rate"].null_count() < group.height:
            rates = group.select("band", "journeys", "rate").iter_rows()
            labels = [f"{band}: {_percent(rate)} of {n:,}" for band, n, rate in rates]
            charts.append(Chart(f"{line}: conversion by band", bars_svg(labels, group["rate"].fill_null(0).to_list())))
    rows = [
        {"product line": line, "band": band, "journeys": n, "converted": c, "rate": _percent(rate)}
        for line, band, n, c, rate in frame.iter_rows()
    ]
    without = [shape.name for shape in scope.shapes if not shape.outcome_stages]
    return Section(
        "conversion-by-band",
        "Conversion rate by band",
        "Share of journeys that went on to the product line's opportunity stage (or beyond) or became customers, "
        "by the band they were in just before; journeys that have not converted count in their current band.",
        ["product line", "band", "journeys", "converted", "rate"],
        rows,
        charts,
        "n/a: no outcomes yet"
        + (f"; {', '.join(without)} name no opportunity_stage or customer stage" if without else "")
        if not charts
        else None,
    )


def movers_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """The journeys whose score changed most between their two latest snapshots, largest first."""
    rows = [
        {
            "lead": lead,
            "product line": line,
            "stage": stage if stage == before else f"{before} → {stage}",
            "previous": previous,
            "score": score,
            "change": change,
            "as of": as_of.isoformat(),
        }
        for lead, line, before, stage, previous, score, change, as_of in frame.iter_rows()
    ]
    labels = [f"{row['lead']} ({row['product line']}): {row['change']:+.1f}" for row in rows]
    charts = [Chart("Largest score changes", change_bars_svg(labels, frame["change"].to_list()))] if rows else []
    return Section(
        "top-movers",
        "Top movers",
        f"The {TOP_MOVERS} journeys whose score changed most between their two latest snapshots.",
        ["lead", "product line", "stage", "previous", "score", "change", "as of"],
        rows,
        charts,
        None if rows else "No journey has two snapshots yet.",
    )


def nurture_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Per nurture track: enrolments by outcome, exits by reason, emails sent, opened and clicked."""
    rows = [
        {
            "track": row["track"],
            "enrolled": row["enrolled"],
            "active": row["active"],
            "completed": row["completed"],
            "exited": row["exited"],
            "exits by reason": row["exits by reason"],
            "emails sent": row["sent"],
            "opened": _percent(row["opened"] / row["sent"] if row["sent"] else None),
            "clicked": _percent(row["clicked"] / row["sent"] if row["sent"] else None),
        }
        for row in frame.iter_rows(named=True)
    ]
    charts = (
        [Chart("Emails sent per track", bars_svg(frame["track"].to_list(), frame["sent"].to_list()))] if rows else []
    )
    return Section(
        "nurture",
        "Nurture performance",
        "Per track (all product lines): enrolments by outcome, exits by reason, emails sent, and the share of "
        "them a person opened or clicked (from email_open/email_click events; machine activity excluded).",
        ["track", "enrolled", "active", "completed", "exited", "exits by reason", "emails sent", "opened", "clicked"],
        rows,
        charts,
        None if rows else "No lead has been enrolled in a nurture track yet.",
    )


def audiences_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Ad audiences over time: per audience, the members its daily exports added and removed (a chart of its
    first platform), and the days with a change per platform."""
    charts = []
    for (audience,), group in frame.group_by("audience", maintain_order=True):
        if group["added"].sum() + group["removed"].sum() == 0:
            continue  # never changed (e.g. filled only by track steps that did not run): no empty chart
        first = group.filter(pl.col("platform") == group["platform"].min())
        series = {
            f"added ({first['platform'][0]})": list(zip(first["day"], first["added"], strict=True)),
            "removed": list(zip(first["day"], first["removed"], strict=True)),
        }
        charts.append(Chart(f"{audience}: adds and removes per day", _per_day(series, "adds and removes per day")))
    changed = frame.filter((pl.col("added") > 0) | (pl.col("removed") > 0))
    rows = [
        {"audience": a, "platform": p, "day": day.isoformat(), "members": n, "added": add, "removed": rem}
        for a, p, day, n, add, rem in changed.select("audience", "platform", "day", "members", "added", "removed")
        .iter_rows()
    ]  # fmt: skip
    return Section(
        "audiences",
        "Audiences over time",
        "Per ad audience and platform, on each day its export changed: the members after the day's export and "
        "those it added and removed (leads entering or leaving the audience's criteria, or losing ads consent).",
        ["audience", "platform", "day", "members", "added", "removed"],
        rows,
        charts,
        None if rows else "No audience export has changed yet.",
    )


def review_section(scope: ReportScope, outcomes: pl.DataFrame) -> Section:
    """The model review on live outcomes (``store.outcomes.scored_outcomes`` of the monitoring window): the
    lift chart per (product line, stage) and the review's warnings, the top-band ALERT first."""
    portfolio = scope.portfolio
    _, warnings = review_stages(outcomes, stage_bands(portfolio), review_settings(portfolio))
    lift = lift_by_decile(outcomes)
    charts, rows = [], []
    for (line, stage), group in lift.group_by("product_line", "stage", maintain_order=True):
        deciles = group.select("decile", "leads", "converted", "rate", "lift").rows()
        charts.append(
            Chart(
                f"{line}/{stage}: conversion by score decile (lowest scores first)",
                columns_svg(
                    [rate for _, _, _, rate, _ in deciles],
                    [f"D{d}" for d, *_ in deciles],
                    [_percent(rate) for _, _, _, rate, _ in deciles],
                    [f"decile {d}: {c}/{n} converted, lift {lift}" for d, n, c, _, lift in deciles],
                    title=f"{line}/{stage} lift chart",
                    peak=1.0,
                ),
            )
        )
        rows += [
            {"product line": line, "stage": stage, "decile": d, "outcomes": n, "converted": c, "rate": _percent(rate),
             "lift": "n/a" if lift is None else f"{lift:.2f}"}
            for d, n, c, rate, lift in deciles
        ]  # fmt: skip
    days = portfolio.spec.monitoring.window_days
    alerts = sorted(warnings, key=lambda warning: not warning.startswith("ALERT"))
    note = " · ".join(alerts) if alerts else None
    if outcomes.is_empty():
        note = f"n/a: no outcome in the last {days:g} days"
    return Section(
        "model-review",
        "Model review on live outcomes",
        f"Journeys that became customer or lost in the last {days:g} days, by the last score they had in each "
        "stage before: conversion per score decile (D10: the highest scores; lift: the decile's rate over the "
        "stage's). A model works while the rate climbs with the decile; `leadscore review` gives the full review.",
        ["product line", "stage", "decile", "outcomes", "converted", "rate", "lift"],
        rows,
        charts,
        note,
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _histogram(counts: list[int], lo: float, width: float) -> Markup:
    """Vertical bars, one per score range, with the range's start under each bar."""
    return columns_svg(
        counts,
        [f"{lo + i * width:g}" for i in range(len(counts))],
        [f"{n:,}" if n else "" for n in counts],
        [f"{lo + i * width:g}–{lo + (i + 1) * width:g}: {n:,}" for i, n in enumerate(counts)],
        title="score histogram",
    )


def _per_day(series: dict[str, list[tuple[date, int]]], title: str) -> Markup:
    """A line per series over the days (day numbers from the first day on the x axis)."""
    days = sorted({day for points in series.values() for day, _ in points})
    peak = max((n for points in series.values() for _, n in points), default=1) or 1
    axes = Axes(peak, (days[0].isoformat(), days[-1].isoformat()) if days else None, ("0", f"{peak:,}"))
    numbered = {name: [((day - days[0]).days, n) for day, n in points] for name, points in series.items()}
    return lines_svg(numbered, axes, title=title)
