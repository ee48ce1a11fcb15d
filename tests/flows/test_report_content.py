"""The report's "content seen by hot leads" section: content_served events (as the service records them) per
slot and variant, split by the band and qualification the lead had in each line; exact rows on SQLite and
PostgreSQL."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from flows.report import SECTIONS, build_sections
from nurture.report.content import content_section
from stages.portfolio import load_portfolio
from store.ingest import Records, ingest_events
from store.tables import Lead

PORTFOLIO = load_portfolio(Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CONTENT = [section for section in SECTIONS if section.render is content_section]


def _view(n: int, lead: str, variant: str, bands: dict[str, str], days: float = 1, **quals: str) -> dict[str, Any]:
    return {
        "event_id": f"content-{n}",
        "lead_id": lead,
        "type": "content_served",
        "occurred_at": (NOW - timedelta(days=days)).isoformat(),
        "slot": "homepage-hero",
        "variant": variant,
        "bands": bands,
        "qualifications": {line.replace("_", "-"): q for line, q in quals.items()},
    }


def test_content_served_split_by_band_and_qualification(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(Lead.__table__.insert(), [{"key": k, "lead_id": f"L{k}", "attributes": {}} for k in (1, 2, 3)])
    views = [
        _view(1, "L1", "crm-demo", {"crm-suite": "hot"}, crm_suite="MQL"),
        _view(2, "L1", "crm-demo", {"crm-suite": "hot"}, days=3, crm_suite="MQL"),
        _view(3, "L2", "crm-demo", {"crm-suite": "hot", "analytics-cloud": "cold"}),
        _view(4, "L3", "generic", {"crm-suite": "warm"}),
        _view(5, "L3", "generic", {"crm-suite": "hot"}, days=200),  # before the 90-day window
        _view(6, "L3", "generic", {"crm-suite": None}),  # an unscored journey has no band: not counted
    ]
    report = ingest_events(engine, Records("api:events", views), event_types=PORTFOLIO.event_types)
    assert (report.rejects, len(report.written)) == ([], 6)

    _, [section] = build_sections(PORTFOLIO, engine, sections=CONTENT, generated_at=NOW)
    assert (section.key, section.title) == ("content", "Content seen by hot leads")
    assert [tuple(row.values()) for row in section.rows] == [
        ("homepage-hero", "crm-demo", "analytics-cloud", "cold", "—", 1, 1),
        ("homepage-hero", "crm-demo", "crm-suite", "hot", "MQL", 2, 1),
        ("homepage-hero", "crm-demo", "crm-suite", "hot", "—", 1, 1),
        ("homepage-hero", "generic", "crm-suite", "warm", "—", 1, 1),
    ]
    assert [chart.title for chart in section.charts] == ["homepage-hero · views by top-band leads"]

    _, [one_line] = build_sections(PORTFOLIO, engine, "analytics-cloud", sections=CONTENT, generated_at=NOW)
    assert [row["product line"] for row in one_line.rows] == ["analytics-cloud"]


def test_no_content_served_says_so(engine: Engine) -> None:
    _, [section] = build_sections(PORTFOLIO, engine, sections=CONTENT, generated_at=NOW)
    assert section.rows == [] and section.charts == []
    assert section.note is not None and "GET /v1/content/{slot}" in section.note
