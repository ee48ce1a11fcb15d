"""``GET /v1/leads/{lead_id}/score`` (the latest run's, or ``fresh=true``: scored now by the batch's own
engine) and ``GET /v1/leads/{lead_id}`` (journeys and history for a CRM sidebar)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from service.auth import require
from stages.pipeline import run_line
from stages.portfolio import Portfolio
from store.api_keys import KeyInfo
from store.identity import attach, read_identity, visible_journeys
from store.live import current_scores, lead_key
from store.queries import lead_history
from store.reader import read_events
from store.scores import read_journeys, read_leads
from store.stages import read_pending_updates, read_reached, read_trigger_arms

router = APIRouter(prefix="/v1", tags=["scores"])
TOP_REASONS = 3


def top_reasons(breakdown: list[dict[str, Any]], n: int = TOP_REASONS) -> list[dict[str, Any]]:
    """The ``n`` rules that moved the score most (caps and the scale clamp are not reasons)."""
    rules = [entry for entry in breakdown if not str(entry["rule"]).startswith(("cap: ", "scale: "))]
    return [
        {"rule": entry["rule"], "points": entry["points"]}
        for entry in sorted(rules, key=lambda entry: -abs(entry["points"]))[:n]
    ]


def fresh_scores(
    engine: Engine, portfolio: Portfolio, lead_id: str, product_line: str | None, as_of: datetime
) -> list[dict[str, Any]] | None:
    """The lead's journeys scored now from its events: the frames a batch run reads for this one lead,
    through the same ``run_line`` (CRM updates, promotions and all), so the next run writes the same
    score. Nothing is written (the batch stays the source of truth)."""
    key = lead_key(engine, lead_id)
    if key is None:
        return None
    key_range = (key, key + 1)
    leads = read_leads(engine, key_range, portfolio.scored_attributes)
    types, properties = portfolio.scored_event_types, portfolio.scored_properties
    identity = read_identity(engine)  # a merged lead's and linked visitors' events count, as in a run
    events = attach(
        engine, read_events(engine, key_range, None, types, properties), key_range, identity, types, properties
    )
    found = []
    for name, line in sorted(portfolio.product_lines.items()):  # the order of the stored look-up
        if product_line not in (None, name):
            continue
        journeys = visible_journeys(read_journeys(engine, name, key_range), identity)
        if journeys.is_empty():
            continue
        outcome = run_line(
            line,
            journeys=journeys,
            leads=leads,
            events=events.filter(pl.col("product_line").is_null() | (pl.col("product_line") == name)),
            updates=read_pending_updates(engine, name, key_range),
            armed=read_trigger_arms(engine, name, key_range),
            reached=read_reached(engine, name, key_range),
            as_of=as_of,
            scale=portfolio.scale,
        )
        state = outcome.journeys.row(0, named=True)
        scored = outcome.scored.rows(named=True)
        row = scored[0] if scored else {"stage": state["stage"], "score": None, "band": None, "qualification": None}
        found.append(
            {
                "product_line": name,
                "stage": row["stage"],
                "status": state["status"],
                "score": row["score"],
                "band": row["band"],
                "qualification": row["qualification"],
                "stage_entered_at": state["stage_entered_at"],
                "scored_at": as_of,
                "run_id": None,
                "breakdown": row.get("breakdown") or [],
            }
        )
    return found


@router.get("/leads/{lead_id}/score", summary="A lead's score, band, qualification and top reasons")
async def get_score(
    request: Request,
    lead_id: str,
    product_line: str | None = None,
    fresh: Annotated[bool, Query(description="score now from the events, with the batch's engine")] = False,
    as_of: Annotated[datetime | None, Query(description="with fresh=true: score as of this time (default now)")] = None,
    key: KeyInfo = require("scores:read"),
) -> dict[str, Any]:
    """Per journey (or the one of ``product_line``): stage, score, band, qualification and the top three
    reasons of the latest run; with ``fresh=true`` computed now, exactly as the next run will write it."""
    service = request.app.state.service
    if product_line is not None and product_line not in service.portfolio.product_lines:
        raise HTTPException(404, f"unknown product line {product_line!r}")
    if fresh:
        when = (as_of or datetime.now(UTC)).astimezone(UTC)
        scores = await run_in_threadpool(fresh_scores, service.engine, service.portfolio, lead_id, product_line, when)
    else:
        scores = await run_in_threadpool(current_scores, service.engine, lead_id, product_line)
    if scores is None:
        raise HTTPException(404, "unknown lead")
    for score in scores:
        score["reasons"] = top_reasons(score.pop("breakdown"))
    return {"lead_id": lead_id, "fresh": fresh, "scores": scores}


@router.get("/leads/{lead_id}", summary="A lead's journeys, score history, transitions and tags")
async def get_lead(request: Request, lead_id: str, key: KeyInfo = require("scores:read")) -> dict[str, Any]:
    """What a CRM sidebar shows: each journey with its breakdown, snapshots, stage moves and milestones."""
    history = await run_in_threadpool(lead_history, request.app.state.service.engine, lead_id)
    if history is None:
        raise HTTPException(404, "unknown lead")
    history.pop("lead_key", None)
    return history
