"""The report's outputs: the HTML file, and the sections' key tables as Prefect table artifacts."""

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from flows.database import engine_for
from nurture.report.build import build_sections
from nurture.report.page import render_html
from nurture.report.sections import Section
from stages.portfolio import load_portfolio
from store.db import refresh_statistics


def write_report(
    portfolio_path: str | Path, out: str | Path, database_url: str, product_line: str | None = None
) -> list[Section]:
    """Write the HTML report of the store to ``out``; returns its sections (their key tables)."""
    engine = engine_for(database_url)
    refresh_statistics(engine)
    scope, sections = build_sections(load_portfolio(Path(portfolio_path)), engine, product_line)
    Path(out).write_text(render_html(scope, sections), encoding="utf-8")
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
def report_task(portfolio_path: str, out: str, database_url: str, product_line: str | None = None) -> dict[str, int]:
    """The report step of a pipeline: write the HTML file and publish the key tables as artifacts."""
    sections = write_report(portfolio_path, out, database_url, product_line)
    publish_report_artifacts(sections)
    return report_counts(sections)


def report_counts(sections: Sequence[Section]) -> dict[str, int]:
    """A report step's summary: rows per section."""
    return {section.key: len(section.rows) for section in sections}
