"""The report's "content seen by hot leads" section: which web content variants the service served, split
by the band and qualification each lead had when it saw them (a pure renderer, like ``sections.py``)."""

import polars as pl

from models.charts import Chart, bars_svg
from nurture.report.sections import ReportScope, Section

COLUMNS = ["slot", "variant", "product line", "band", "qualification", "views", "leads"]


def content_section(scope: ReportScope, frame: pl.DataFrame) -> Section:
    """Views and distinct leads per (slot, variant, product line, band, qualification), bands in the
    line's order, the top band first; a chart per slot of the views by leads in their line's top band."""
    window = scope.portfolio.spec.monitoring.window_days
    order = {(shape.name, band): -i for shape in scope.shapes for i, band in enumerate(shape.bands)}
    top = {shape.name: shape.bands[-1] for shape in scope.shapes if shape.bands}
    counts = (
        frame.with_columns(pl.col("qualification").fill_null("—"))
        .group_by("slot", "variant", "product_line", "band", "qualification")
        .agg(pl.len().alias("views"), pl.col("lead_key").n_unique().alias("leads"))
        .sort("qualification")
    )
    rows = sorted(
        counts.iter_rows(named=True),
        key=lambda r: (
            r["slot"],
            r["variant"],
            r["product_line"],
            order.get((r["product_line"], r["band"]), 1),
            r["qualification"],
        ),
    )
    charts = []
    for slot in sorted({row["slot"] for row in rows}):
        hot: dict[str, int] = {}
        for row in rows:
            if row["slot"] == slot and top.get(row["product_line"]) == row["band"]:
                hot[row["variant"]] = hot.get(row["variant"], 0) + row["views"]
        if hot:
            charts.append(Chart(f"{slot} · views by top-band leads", bars_svg(list(hot), list(hot.values()))))
    return Section(
        "content",
        "Content seen by hot leads",
        f"Web content variants served to known leads in the last {window} days (`content_served` events of the "
        "service), per slot and variant, split by the band and qualification the lead's journey in each product "
        "line had when it saw them; views count each serving, leads each lead once.",
        COLUMNS,
        [
            {
                "slot": row["slot"],
                "variant": row["variant"],
                "product line": row["product_line"],
                "band": row["band"],
                "qualification": row["qualification"],
                "views": row["views"],
                "leads": row["leads"],
            }
            for row in rows
        ],
        charts,
        None if rows else "No web content served to a known lead in the window: see `GET /v1/content/{slot}`.",
    )
