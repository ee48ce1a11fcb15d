"""Funnel test helpers: a small product line written as real YAML files, and frames built by hand."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from stages.portfolio import ProductLine, load_portfolio
from store.shapes import UTC_US

T0 = datetime(2026, 10, 1, tzinfo=UTC)
VISITS = """\
kind: points
fit:
  - {name: vp, when: {job_title: {eq: vp}}, points: 20}
behaviour:
  - {name: visit, event: page_view, points: 10, per: occurrence}
"""


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def line_spec(**overrides: Any) -> dict[str, Any]:
    """A line ``w``: discovery → evaluation → purchase, then customer and lost (terminal)."""
    spec: dict[str, Any] = {
        "bands": {"cold": [0, 30], "warm": [30, 60], "hot": [60, 100]},
        "qualifications": {"MQL": 30, "SQL": 60},
        "opportunity_stage": "purchase",
        "stages": {
            "discovery": {"model": "visits.yaml", "promote_at": 30},
            "evaluation": {"model": "visits.yaml", "promote_at": 50, "entry": "reset"},
            "purchase": {"model": "visits.yaml", "entry": "carry"},
            "customer": {"terminal": True, "status": "customer"},
            "lost": {"terminal": True, "status": "lost"},
        },
    }
    spec.update(overrides)
    return spec


def write_portfolio(directory: Path, line: dict[str, Any], scale: dict[str, float] | None = None) -> Path:
    (directory / "visits.yaml").write_text(VISITS)
    path = directory / "portfolio.yaml"
    document = {"scale": scale or {"min": 0, "max": 100}, "product_lines": {"w": line}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def with_stage(name: str, **fields: Any) -> dict[str, Any]:
    """``line_spec()``'s stages with stage ``name`` replaced by ``fields``."""
    stages = dict(line_spec()["stages"])
    stages[name] = fields
    return stages


def journeys(*rows: tuple[int, str, datetime | None, datetime | None], **columns: list[Any]) -> pl.DataFrame:
    """Journeys ``(journey_id, stage, stage_entered_at, score_from)``; lead_key = journey_id."""
    return pl.DataFrame(
        {
            "journey_id": [r[0] for r in rows],
            "lead_key": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "stage_entered_at": [r[2] for r in rows],
            "score_from": [r[3] for r in rows],
            **columns,
        },
        schema_overrides={
            "journey_id": pl.Int64,
            "lead_key": pl.Int64,
            "stage_entered_at": UTC_US,
            "score_from": UTC_US,
        },
    )


def scored(*rows: tuple[int, str, float]) -> pl.DataFrame:
    """Scored journeys ``(journey_id, stage, score)``."""
    return pl.DataFrame(
        {
            "journey_id": [r[0] for r in rows],
            "lead_key": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "score": [r[2] for r in rows],
        },
        schema={"journey_id": pl.Int64, "lead_key": pl.Int64, "stage": pl.Utf8, "score": pl.Float64},
    )


def visits(*items: tuple[int, datetime]) -> pl.DataFrame:
    """Page views ``(lead_key, occurred_at)`` in the event schema the scorer reads."""
    return pl.DataFrame(
        {
            "lead_key": [lead for lead, _ in items],
            "occurred_at": [at for _, at in items],
            "type": ["page_view"] * len(items),
            "machine": [False] * len(items),
            "properties": [json.dumps({})] * len(items),
        },
        schema={
            "lead_key": pl.Int64,
            "occurred_at": UTC_US,
            "type": pl.Utf8,
            "machine": pl.Boolean,
            "properties": pl.Utf8,
        },
    )


def leads(*keys: int, vp: tuple[int, ...] = ()) -> pl.DataFrame:
    return pl.DataFrame(
        {"lead_key": list(keys), "job_title": ["vp" if key in vp else "engineer" for key in keys]},
        schema={"lead_key": pl.Int64, "job_title": pl.Utf8},
    )


def load_line(directory: Path, **overrides: Any) -> ProductLine:
    """The line ``w`` of ``line_spec(**overrides)``, loaded from files in ``directory``."""
    return load_portfolio(write_portfolio(directory, line_spec(**overrides))).line("w")
