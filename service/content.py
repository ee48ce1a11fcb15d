"""``GET /v1/content/{slot}``: the variant of a web content slot to show a lead, and why; every variant
served to a known lead is recorded as a ``content_served`` event (slot, variant, the journey state)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from nurture.content import choose
from service.auth import require
from store.api_keys import KeyInfo
from store.identity import linked_lead
from store.ingest import Records, ingest_events

router = APIRouter(prefix="/v1", tags=["content"])


@router.get("/content/{slot}", summary="The content variant for a lead (or an anonymous visitor), and why")
async def content(
    request: Request,
    slot: str,
    lead_id: str | None = None,
    anonymous_id: str | None = None,
    key: KeyInfo = require("scores:read"),
) -> dict[str, Any]:
    """First matching variant by the lead's product line, stage, band or qualification; the default
    otherwise. An ``anonymous_id`` is served as the lead it is linked to (``identify``), else the default."""
    service = request.app.state.service
    spec = service.content.get(slot)
    if spec is None:
        raise HTTPException(404, f"unknown content slot {slot!r}")
    if lead_id is None and anonymous_id is not None:
        lead_id = await run_in_threadpool(linked_lead, service.engine, anonymous_id)
    journeys = service.lookup.scores(lead_id) if lead_id else None
    variant, why = choose(spec, journeys or [])
    if lead_id and journeys is not None:
        served = {
            "event_id": f"content-{uuid.uuid4().hex}",
            "lead_id": lead_id,
            "type": "content_served",
            "occurred_at": datetime.now(UTC).isoformat(),
            "slot": slot,
            "variant": variant.name,
            "bands": {j["product_line"]: j["band"] for j in journeys},  # as the lead stood: the report splits by them
            "qualifications": {j["product_line"]: j["qualification"] for j in journeys},
        }
        records = Records("content", [served])
        types = service.portfolio.event_types
        await service.writer.call(lambda: ingest_events(service.engine, records, event_types=types))
    return {
        "slot": slot,
        "variant": variant.name,
        "content": variant.content,
        "why": why,
        "known": journeys is not None,
    }
