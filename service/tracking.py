"""``GET /t/o/{token}`` (open pixel) and ``GET /t/c/{token}`` (click redirect) of nurture email with
tracking on: signed per message and link (``nurture.tracking``), recorded as ``email_open`` and
``email_click`` events through ingestion, so privacy proxies and link scanners are flagged as machine
activity exactly as in files. Only a URL signed into the email is ever a redirect target."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from nurture.tracking import read_click, read_open
from stages.portfolio import Portfolio
from store.ingest import Records, ingest_events
from store.live import leads_by_message

router = APIRouter(tags=["tracking"])
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # a transparent 1×1 GIF
_NO_CACHE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def record(engine: Engine, portfolio: Portfolio, kind: str, message_id: str, properties: dict[str, Any]) -> bool:
    """Store one open or click of a message leadscore sent; False when the outbox does not know it."""
    lead = leads_by_message(engine, [message_id]).get(message_id)
    if lead is None:
        return False
    row = {
        "event_id": f"track-{uuid.uuid4().hex}",  # every open and click is its own fact
        "lead_id": lead[0],
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "message_id": message_id,
        **properties,
    }
    options: dict[str, Any] = {"machine_window_seconds": portfolio.spec.ingest.machine_window_seconds}
    if portfolio.spec.ingest.proxy_user_agents is not None:
        options["proxy_user_agents"] = tuple(portfolio.spec.ingest.proxy_user_agents)
    ingest_events(engine, Records("tracking", [row]), event_types=portfolio.event_types, **options)
    return True


def _agent(request: Request) -> dict[str, Any]:
    agent = request.headers.get("user-agent")
    return {"user_agent": agent[:500]} if agent else {}


@router.get("/t/o/{token}", summary="Open pixel", response_class=Response)
async def open_pixel(request: Request, token: str) -> Response:
    service = request.app.state.service
    message_id = read_open(token, service.secrets) if service.tracking else None
    if message_id is None:
        raise HTTPException(404, "not found")
    properties = _agent(request)
    await service.writer.call(lambda: record(service.engine, service.portfolio, "email_open", message_id, properties))
    return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)


@router.get("/t/c/{token}", summary="Click redirect (only to the URL signed into the email)")
async def click(request: Request, token: str) -> RedirectResponse:
    service = request.app.state.service
    found = read_click(token, service.secrets) if service.tracking else None
    if found is None:
        raise HTTPException(404, "not found")
    message_id, url = found
    properties = {"url": url, **_agent(request)}
    await service.writer.call(lambda: record(service.engine, service.portfolio, "email_click", message_id, properties))
    return RedirectResponse(url, status_code=302, headers=_NO_CACHE)
