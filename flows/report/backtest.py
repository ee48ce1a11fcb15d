"""The backtest page: models judged on the same folds, drawn with the report's chart kit."""

from typing import Any

from markupsafe import Markup

from models.charts import Axes, Chart, colour, columns_svg, lines_svg
from nurture.report.page import render_page

Metrics = dict[str, dict[str, Any]]


def gains_chart(metrics: Metrics) -> Markup:
    """Each model's cumulative gains (share of leads, best scores first → share of converters) against the
    diagonal of a random order."""
    series = {
        label: [(k / (len(m["gains"]) - 1), share) for k, share in enumerate(m["gains"])]
        for label, m in metrics.items()
    }
    axes = Axes(
        1.0,
        ("0 %", "100 %"),
        ("0 %", "100 %"),
        titles=("share of leads, highest scores first", "share of converters"),
        diagonal=True,
    )
    return lines_svg(series, axes, title="cumulative gains", size=(760, 320), legend=240)


def band_charts(metrics: Metrics) -> list[Chart]:
    """Per model, the conversion rate of each band (lowest first), with its counts; in the model's colour."""
    charts = []
    for i, (label, m) in enumerate(metrics.items()):
        bands = m["bands"]
        svg = columns_svg(
            [band["rate"] or 0.0 for band in bands],
            [band["band"] for band in bands],
            [f"{band['rate'] or 0.0:.0%} of {band['leads']}" for band in bands],
            [f"{band['band']}: {band['converted']} of {band['leads']} converted" for band in bands],
            title=f"conversion by band for {label}",
            peak=1.0,
            fill=colour(i),
            size=(520, 260),
        )
        charts.append(Chart(label, svg))
    return charts


def render_backtest(metrics: Metrics, *, history: str, target: str) -> str:
    """A self-contained HTML page (inline SVG, no scripts, no CDN)."""
    return render_page(
        "backtest/report.html.j2",
        metrics=metrics,
        gains=gains_chart(metrics),
        charts=band_charts(metrics),
        history=history,
        target=target,
    )
