"""The lead page and its audited actions: adjust points, move stage, add to or remove from a track."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from service.console.charts import history_svg
from service.console.common import back, journey_or_404, lead_url, render, session_of
from service.console.sessions import read_form, require
from store import audit
from store import console as store
from store.live import lead_key
from store.queries import lead_history

router = APIRouter(prefix="/console", include_in_schema=False)


def _lead_page(service: Any, lead_id: str) -> dict[str, Any] | None:
    history = lead_history(service.engine, lead_id)
    if history is None:
        return None
    portfolio = service.portfolio
    for journey in history["journeys"]:
        line = portfolio.product_lines.get(journey["product_line"])
        journey["chart"] = history_svg(journey["history"], journey["transitions"], portfolio.scale.max)
        journey["stages"] = [stage.name for stage in line.stages] if line else []
    return (
        history
        | store.lead_profile(service.engine, history["lead_key"])
        | {"audit": audit.for_lead(service.engine, history["lead_key"])}
    )


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
async def lead(request: Request, lead_id: str) -> HTMLResponse:
    session = await session_of(request)
    require(session, "leads")
    service, console = request.app.state.service, request.app.state.console
    found = await run_in_threadpool(_lead_page, service, lead_id)
    if found is None:
        raise HTTPException(404, "unknown lead")
    return render(request, session, "lead.html.j2", lead_id=lead_id, data=found, tracks=console.tracks)


@router.post("/leads/{lead_id}/adjust")
async def adjust(request: Request, lead_id: str) -> Response:
    """Points with a reason (required), recorded as a ``manual_adjustment`` event authored by the user."""
    session = await session_of(request)
    user = require(session, "adjust")
    form = await read_form(request, session)
    journey = await journey_or_404(request, lead_id, form.get("product_line", ""))
    reason = form.get("reason", "").strip()
    try:
        points = float(form.get("points", ""))
    except ValueError:
        raise HTTPException(400, "points: a number is required") from None
    if not reason or points == 0 or abs(points) > 1_000 or len(reason) > 500:
        raise HTTPException(400, "an adjustment needs non-zero points (at most 1000) and a reason (500 characters)")
    engine, line = request.app.state.service.engine, form["product_line"]
    await request.app.state.service.writer.call(
        lambda: store.adjust(engine, journey["key"], line, points, reason, user.email)
    )
    return back(lead_url(lead_id, "adjusted"))


@router.post("/leads/{lead_id}/move")
async def move(request: Request, lead_id: str) -> Response:
    """An external stage update, as the CRM would send it."""
    session = await session_of(request)
    user = require(session, "move")
    form = await read_form(request, session)
    journey = await journey_or_404(request, lead_id, form.get("product_line", ""))
    line = request.app.state.service.portfolio.product_lines[form["product_line"]]
    stage = form.get("stage", "")
    if stage not in [s.name for s in line.stages]:
        raise HTTPException(400, f"unknown stage {stage!r} of {line.name}")
    engine = request.app.state.service.engine
    await request.app.state.service.writer.call(
        lambda: store.move_stage(engine, journey["key"], line.name, stage, user.email)
    )
    return back(lead_url(lead_id, "moved"))


@router.post("/leads/{lead_id}/track")
async def track(request: Request, lead_id: str) -> Response:
    """Ask the next nurture run to enrol the lead in a track, or take it out."""
    session = await session_of(request)
    user = require(session, "tracks")
    form = await read_form(request, session)
    name, action = form.get("track", ""), form.get("action", "")
    if action not in ("enrol", "exit") or not any(name in names for names in request.app.state.console.tracks.values()):
        raise HTTPException(400, "choose a nurture track and enrol or exit")
    service = request.app.state.service
    key = await run_in_threadpool(lead_key, service.engine, lead_id)
    if key is None:
        raise HTTPException(404, "unknown lead")
    reason = f"console: {user.email}"
    await service.writer.call(lambda: store.request_track(service.engine, key, name, action, user.email, reason))
    return back(lead_url(lead_id, action))
