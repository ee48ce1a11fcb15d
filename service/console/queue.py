"""The sales queue: qualified journeys awaiting an answer, oldest first; accept or reject with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from service.console.common import back, journey_or_404, render, session_of
from service.console.sessions import read_form, require
from service.scores import top_reasons
from store import console_queue as store

router = APIRouter(prefix="/console", include_in_schema=False)


def _queue_items(service: Any, sales: Any, owner: str | None, now: datetime) -> list[dict[str, Any]]:
    """One item per journey still in a scored stage: its qualifications awaiting an answer, since the first."""
    portfolio = service.portfolio
    names = sorted({name for line in portfolio.product_lines.values() for name in line.spec.qualifications})
    items: dict[int, dict[str, Any]] = {}
    for row in store.queue(service.engine, names, owner):
        line = portfolio.product_lines.get(row["product_line"])
        stage = next((s for s in line.stages if s.name == row["stage"]), None) if line else None
        if stage is None or stage.terminal:  # a customer or a lost deal is not sales' to answer any more
            continue
        item = items.setdefault(row["journey_id"], row | {"qualifications": [], "due": None})
        item["qualifications"].append(row["qualification"])
        due = sales.due(row["qualification"], row["reached_at"])
        if due is not None and (item["due"] is None or due < item["due"]):
            item["due"] = due
        item["reasons"] = top_reasons(row["breakdown"])  # the latest milestone's breakdown
        if row["alerted_at"] is not None:
            item["alerted_at"] = min(item["alerted_at"] or row["alerted_at"], row["alerted_at"])
    for item in items.values():
        item["overdue"] = item["due"] is not None and item["due"] < now
    return list(items.values())


@router.get("/queue", response_class=HTMLResponse)
async def queue(request: Request, owner: str | None = None) -> HTMLResponse:
    """Sales see their own leads only; marketing and admins see everyone's, or one owner's."""
    session = await session_of(request)
    shown = (owner or None) if session.can("queue_all") else require(session, "queue_own").email
    service, console = request.app.state.service, request.app.state.console
    items = await run_in_threadpool(_queue_items, service, console.sales, shown, datetime.now(UTC))
    owners = await run_in_threadpool(store.owners, service.engine) if session.can("queue_all") else []
    return render(
        request, session, "queue.html.j2", items=items, owner=shown, owners=owners, reasons=console.sales.reject_reasons
    )


@router.post("/queue/decide")
async def decide(request: Request) -> Response:
    """Accept (the journey moves to the next stage) or reject with a reason code (it goes back to the
    portfolio's recycle track). Sales answer for their own leads only."""
    session = await session_of(request)
    user = require(session, "decide")
    form = await read_form(request, session)
    lead_id, line_name, decision = form.get("lead_id", ""), form.get("product_line", ""), form.get("decision")
    journey = await journey_or_404(request, lead_id, line_name)
    if not session.can("queue_all") and journey["owner_email"] != user.email:
        raise HTTPException(403, "this lead belongs to another owner")
    service, sales = request.app.state.service, request.app.state.console.sales
    line = service.portfolio.product_lines[line_name]
    if decision == "accept":
        following = line.next_stage(journey["stage"])
        answer = {"decision": "accepted", "next_stage": following.name if following else None}
    elif decision == "reject":
        code = form.get("reason_code", "")
        if code not in sales.reject_reasons:
            raise HTTPException(400, f"reason_code: choose from {', '.join(sales.reject_reasons)}")
        answer = {"decision": "rejected", "reason_code": code, "recycle_track": sales.recycle_tracks.get(line_name)}
    else:
        raise HTTPException(400, "decision: accept or reject")
    answered = await service.writer.call(
        lambda: store.decide(service.engine, journey, line_name, actor=user.email, **answer)
    )
    if not answered:
        raise HTTPException(409, "this journey has nothing awaiting an answer")
    return back(f"/console/queue?done={answer['decision']}")
