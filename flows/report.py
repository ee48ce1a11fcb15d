"""The report: a self-contained HTML file (inline SVG charts, no scripts, no CDN) and Prefect table artifacts.

A report is a list of sections; each section renderer reads what it needs (``store/reports.py``) and
returns a :class:`Section`: a title, a few charts and one key table. The HTML shows every section; the
key tables are also published as Prefect artifacts. Adding a section is writing one renderer and
appending it to :data:`SECTIONS`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from prefect import task
from prefect.artifacts import create_table_artifact
from sqlalchemy import Engine

from flows.engine import engine_for
from stages.portfolio import Portfolio, ProductLine, load_portfolio
from store import reports
from store.db import refresh_statistics
from store.reports import LineShape

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "report"
HISTOGRAM_BINS = 10
TOP_MOVERS = 20
PALETTE = ("#2f6fb0", "#e07b39", "#3a9d5d", "#b54a78", "#7a62b8", "#8c6d31")


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup


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
class ReportInput:
    portfolio: Portfolio
    engine: Engine
    shapes: list[LineShape]
    generated_at: datetime
    product_line: str | None = None


SectionRenderer = Callable[[ReportInput], Section]


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


# --- sections ------------------------------------------------------------------------------------


def distribution_section(data: ReportInput) -> Section:
    scale = data.portfolio.scale
    counts = reports.score_histogram(data.engine, scale.min, scale.max, HISTOGRAM_BINS, data.product_line)
    width = (scale.max - scale.min) / HISTOGRAM_BINS
    charts = []
    for (line, stage), group in counts.group_by("product_line", "stage", maintain_order=True):
        per_bin = dict(zip(group["bin"], group["journeys"], strict=True))
        values = [per_bin.get(i, 0) for i in range(HISTOGRAM_BINS)]
        charts.append(Chart(f"{line} · {stage}", histogram_svg(values, scale.min, width)))
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


def funnel_section(data: ReportInput) -> Section:
    frame = reports.funnel(data.engine, data.shapes)
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


def qualifications_section(data: ReportInput) -> Section:
    frame = reports.qualifications_per_day(data.engine, data.portfolio.spec.timezone, data.product_line)
    charts = []
    for (line,), group in frame.group_by("product_line", maintain_order=True):
        series = {
            qualification: list(zip(g["day"], g["reached"], strict=True))
            for (qualification,), g in group.group_by("qualification", maintain_order=True)
        }
        charts.append(Chart(f"{line}: qualifications per day", lines_svg(series)))
    rows = [
        {"product line": line, "qualification": qualification, "day": day.isoformat(), "reached": n}
        for line, qualification, day, n in frame.iter_rows()
    ]
    return Section(
        "qualifications",
        "Qualifications over time",
        f"Journeys reaching each qualification for the first time, per day ({data.portfolio.spec.timezone}).",
        ["product line", "qualification", "day", "reached"],
        rows,
        charts,
        None if rows else "No qualification reached yet.",
    )


def conversion_section(data: ReportInput) -> Section:
    shapes = [shape for shape in data.shapes if data.product_line in (None, shape.name)]
    frame = reports.conversion_by_band(data.engine, shapes)
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
    without = [shape.name for shape in shapes if not shape.outcome_stages]
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


def movers_section(data: ReportInput) -> Section:
    frame = reports.top_movers(data.engine, TOP_MOVERS, data.product_line)
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


def nurture_section(data: ReportInput) -> Section:
    frame = reports.nurture_performance(data.engine)
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


SECTIONS: list[SectionRenderer] = [
    distribution_section,
    funnel_section,
    qualifications_section,
    conversion_section,
    movers_section,
    nurture_section,
]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


# --- charts (inline SVG) -------------------------------------------------------------------------


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def histogram_svg(counts: Sequence[int], lo: float, width: float) -> Markup:
    """Vertical bars, one per score range, with the range under each bar."""
    w, h, top, bottom = 360, 170, 16, 28
    peak = max(max(counts), 1)
    step = w / len(counts)
    body = [f'<line x1="0" y1="{h - bottom}" x2="{w}" y2="{h - bottom}" stroke="#999"/>']
    for i, n in enumerate(counts):
        bar = (h - top - bottom) * n / peak
        x = i * step + 2
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{h - bottom - bar:.1f}" width="{step - 4:.1f}" height="{bar:.1f}" '
            f'fill="{PALETTE[0]}"><title>{lo + i * width:g}–{lo + (i + 1) * width:g}: {n:,}</title></rect>'
        )
        if n:
            body.append(_text(x + (step - 4) / 2, h - bottom - bar - 3, f"{n:,}", anchor="middle", size=9))
        body.append(_text(x + (step - 4) / 2, h - bottom + 12, f"{lo + i * width:g}", anchor="middle", size=9))
    return _svg(w, h, "score histogram", body)


def bars_svg(labels: Sequence[str], values: Sequence[float]) -> Markup:
    """Horizontal bars with their label: funnels and rates."""
    w, row = 520, 26
    peak = max(max(values, default=0), 1e-9)
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        length = max(w * 0.55 * value / peak, 1)
        body.append(
            f'<rect class="bar" x="0" y="{i * row + 3}" width="{length:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        body.append(_text(length + 6, i * row + row / 2 + 3, label))
    return _svg(w, max(len(labels), 1) * row, "bar chart", body)


def change_bars_svg(labels: Sequence[str], changes: Sequence[float]) -> Markup:
    """Bars left (down) or right (up) of a centre line."""
    w, row = 620, 20
    centre, half = w / 2, w * 0.2
    peak = max((abs(c) for c in changes), default=0) or 1
    body = [f'<line x1="{centre}" y1="0" x2="{centre}" y2="{len(changes) * row}" stroke="#999"/>']
    for i, (label, change) in enumerate(zip(labels, changes, strict=True)):
        length = max(half * abs(change) / peak, 1)
        x = centre if change >= 0 else centre - length
        colour = PALETTE[2] if change >= 0 else PALETTE[1]
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{i * row + 3}" width="{length:.1f}" height="{row - 6}" fill="{colour}"/>'
        )
        if change >= 0:
            body.append(_text(centre + length + 4, i * row + row / 2 + 4, label, size=10))
        else:
            body.append(_text(centre - length - 4, i * row + row / 2 + 4, label, anchor="end", size=10))
    return _svg(w, max(len(changes), 1) * row, "score changes", body)


def lines_svg(series: dict[str, list[tuple[date, int]]]) -> Markup:
    """One line per series over the days, with a legend; a single day shows as dots."""
    w, h, left, bottom, top = 560, 200, 36, 30, 12
    days = sorted({day for points in series.values() for day, _ in points})
    peak = max((n for points in series.values() for _, n in points), default=1) or 1
    span = max((days[-1] - days[0]).days, 1) if days else 1

    def xy(day: date, n: int) -> tuple[float, float]:
        x = left + (w - left - 110) * ((day - days[0]).days / span if len(days) > 1 else 0.5)
        return x, h - bottom - (h - bottom - top) * n / peak

    body = [
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - 110}" y2="{h - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#999"/>',
        _text(left - 4, top + 8, f"{peak:,}", anchor="end", size=9),
        _text(left - 4, h - bottom, "0", anchor="end", size=9),
    ]
    if days:
        body.append(_text(left, h - bottom + 14, days[0].isoformat(), size=9))
        body.append(_text(w - 110, h - bottom + 14, days[-1].isoformat(), anchor="end", size=9))
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords = [xy(day, n) for day, n in sorted(points)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(f'<polyline class="series" points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in coords]
        body.append(f'<rect x="{w - 100}" y="{top + i * 18}" width="12" height="12" fill="{colour}"/>')
        body.append(_text(w - 84, top + i * 18 + 10, name, size=11))
    return _svg(w, h, "qualifications per day", body)


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">{escape(text)}</text>'


# --- assembling, writing, publishing -------------------------------------------------------------


def build_sections(
    portfolio: Portfolio,
    engine: Engine,
    product_line: str | None = None,
    sections: Sequence[SectionRenderer] = SECTIONS,
    generated_at: datetime | None = None,
) -> tuple[ReportInput, list[Section]]:
    """Run every section renderer over the store (for one product line, or all)."""
    if product_line is not None and product_line not in portfolio.product_lines:
        known = ", ".join(sorted(portfolio.product_lines))
        raise KeyError(f"unknown product line {product_line!r}; known: {known}")
    lines = [line for name, line in portfolio.product_lines.items() if product_line in (None, name)]
    data = ReportInput(
        portfolio, engine, [line_shape(line) for line in lines], generated_at or datetime.now(UTC), product_line
    )
    return data, [render(data) for render in sections]


def render_html(data: ReportInput, sections: Sequence[Section]) -> str:
    """The HTML page (autoescaped Jinja; the charts are SVG built above, with every text escaped)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
    )
    env.filters["cell"] = _cell
    return env.get_template("report.html.j2").render(
        portfolio=data.portfolio.spec.name,
        product_line=data.product_line,
        generated_at=data.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        sections=sections,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_report(
    portfolio_path: str | Path, out: str | Path, database_url: str | None = None, product_line: str | None = None
) -> list[Section]:
    """Write the HTML report of the store to ``out``; returns its sections (their key tables)."""
    engine = engine_for(database_url)
    refresh_statistics(engine)
    data, sections = build_sections(load_portfolio(Path(portfolio_path)), engine, product_line)
    Path(out).write_text(render_html(data, sections), encoding="utf-8")
    return sections


def publish_report_artifacts(sections: Sequence[Section]) -> None:
    """Each section's key table as a Prefect table artifact ``report-<key>`` (inside a flow or task run)."""
    for section in sections:
        if section.rows:
            create_table_artifact(
                key=f"report-{section.key}", table=[_json_row(row) for row in section.rows], description=section.title
            )


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date | datetime) else v for k, v in row.items()}


@task(name="report")
def report_task(
    portfolio_path: str, out: str, database_url: str | None = None, product_line: str | None = None
) -> dict[str, int]:
    """The report step of a pipeline: write the HTML file and publish the key tables as artifacts."""
    sections = write_report(portfolio_path, out, database_url, product_line)
    publish_report_artifacts(sections)
    return {section.key: len(section.rows) for section in sections}
