"""``GET /v1/leads/{lead_id}/score`` (the latest run's, or ``fresh=true``: scored now by the batch's own
engine) and ``GET /v1/leads/{lead_id}`` (journeys and history for a CRM sidebar)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from models.frames import one_lead
from service.auth import SECURITY, authorize, presented_key, require
from stages.pipeline import score_and_advance
from stages.portfolio import Portfolio
from store.api_keys import KeyInfo
from store.identity import attach, visible_journeys
from store.live import lead_identity
from store.queries import lead_history
from store.reader import read_events
from store.scores import read_journeys, read_leads
from store.stages import read_pending_updates

if TYPE_CHECKING:
    from service.state import Service

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
    through the scoring half of the run's own ``run_line`` (``score_and_advance``: CRM updates, promotions
    and all), so the next run writes the same score. Nothing is written (the batch stays the source of
    truth)."""
    leads = read_leads(engine, None, portfolio.scored_attributes, lead_id=lead_id)
    if leads.is_empty():
        return None
    key = int(leads["lead_key"][0])
    key_range = (key, key + 1)
    types, properties = portfolio.scored_event_types, portfolio.scored_properties
    identity = lead_identity(engine, key)  # a merged lead's and linked visitors' events count, as in a run
    # With ``product_line``, only its events and those without a line are read: the filter below then has
    # nothing to drop unless ``attach`` brought a merged lead's or a visitor's events (read for every line).
    read = read_events(engine, key_range, product_line, types, properties)
    events = attach(engine, read, key_range, identity, types, properties)
    filtered = product_line is not None and identity.empty
    found = []
    for name, line in sorted(portfolio.product_lines.items()):  # the order of the stored look-up
        if product_line not in (None, name):
            continue
        journeys = visible_journeys(read_journeys(engine, name, key_range), identity)
        if journeys.is_empty():
            continue
        updates = read_pending_updates(engine, name, key_range)
        in_line = pl.col("product_line").is_null() | (pl.col("product_line") == name)
        with one_lead():  # the batch's engine, its plans run without the optimizer passes one lead does not need
            _, advanced = score_and_advance(
                line,
                journeys=journeys,
                leads=leads,
                events=events if filtered else events.filter(in_line),
                updates=updates,
                as_of=as_of,
                scale=portfolio.scale,
            )
        state = advanced.journeys.row(0, named=True)
        scored = advanced.scored.rows(named=True)
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


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
_SCORE = {
    "type": "object",
    "properties": {
        "product_line": {"type": "string"},
        "stage": {"type": "string"},
        "status": {"type": "string"},
        "score": {"type": ["number", "null"]},
        "band": {"type": ["string", "null"]},
        "qualification": {"type": ["string", "null"]},
        "stage_entered_at": {"type": ["string", "null"], "format": "date-time"},
        "scored_at": {"type": ["string", "null"], "format": "date-time"},
        "run_id": {"type": ["string", "null"]},
        "reasons": {"type": "array", "items": {"type": "object"}, "description": "the top three rules"},
    },
}
_ANSWER = {
    "type": "object",
    "properties": {
        "lead_id": {"type": "string"},
        "fresh": {"type": "boolean"},
        "scores": {"type": "array", "items": _SCORE},
    },
}
_PARAMETERS = [
    {"name": "lead_id", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "product_line", "in": "query", "schema": {"type": "string"}, "description": "only this journey"},
    {"name": "fresh", "in": "query", "schema": {"type": "boolean", "default": False},
     "description": "score now from the events, with the batch's engine"},
    {"name": "as_of", "in": "query", "schema": {"type": "string", "format": "date-time"},
     "description": "with fresh=true: score as of this time (default now)"},
]  # fmt: skip


def _flag(value: str | None) -> bool:
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise HTTPException(422, f"fresh: {value!r} is not a boolean")


def _instant(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"as_of: {value!r} is not an ISO 8601 date-time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


@router.get(
    "/leads/{lead_id}/score",
    summary="A lead's score, band, qualification and top reasons",
    responses={200: {"content": {"application/json": {"schema": _ANSWER}}}, 404: {"description": "unknown lead"}},
    openapi_extra={"parameters": _PARAMETERS, "security": SECURITY},
)
async def get_score(request: Request) -> Response:
    """Per journey (or the one of ``product_line``): stage, score, band, qualification and the top three
    reasons of the latest run; with ``fresh=true`` computed now, exactly as the next run will write it.

    The hottest route: served by ``service.hot`` ahead of the framework; this route documents it and
    answers the requests that take the full stack (a browser's, with CORS)."""
    service = request.app.state.service
    answer = await answer_score(
        service, request.path_params["lead_id"], presented_key(request.headers), request.query_params
    )
    return Response(answer, media_type="application/json")


async def answer_score(service: Service, lead_id: str, presented: str | None, query: Mapping[str, str]) -> bytes:
    """The JSON answer of a score look-up (``HTTPException`` for the 4xx ones); the stored scores come from
    the per-process ``ScoreLookup``, read in the loop."""
    await authorize(service, "scores:read", presented)
    product_line = query.get("product_line")
    if product_line is not None and product_line not in service.portfolio.product_lines:
        raise HTTPException(404, f"unknown product line {product_line!r}")
    fresh = _flag(query.get("fresh"))
    if fresh:
        when = _instant(query.get("as_of"))
        scores = await run_in_threadpool(
            fresh_scores, service.fresh_engine, service.portfolio, lead_id, product_line, when
        )
    else:
        scores = service.lookup.scores(lead_id, product_line)
    if scores is None:
        raise HTTPException(404, "unknown lead")
    for score in scores:
        score["reasons"] = top_reasons(score.pop("breakdown"))
    body = {"lead_id": lead_id, "fresh": fresh, "scores": scores}
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


@router.get("/leads/{lead_id}", summary="A lead's journeys, score history, transitions and tags")
async def get_lead(request: Request, lead_id: str, key: KeyInfo = require("scores:read")) -> dict[str, Any]:
    """What a CRM sidebar shows: each journey with its breakdown, snapshots, stage moves and milestones."""
    history = await run_in_threadpool(lead_history, request.app.state.service.engine, lead_id)
    if history is None:
        raise HTTPException(404, "unknown lead")
    history.pop("lead_key", None)
    return history
