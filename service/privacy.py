"""``DELETE /v1/leads/{lead_id}`` and ``GET /v1/leads/{lead_id}/export``: erasure and access over HTTP.

The same store operations as ``leadscore leads erase|export`` (``store.erasure``, ``store.access``),
for an ``admin`` key only; the key's name is the actor in the audit. The erasure holds the portfolio's
run lock, like the command, so no run writes the person's rows meanwhile.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from nurture.audiences import hashed_line
from service.auth import require
from store.access import LeadNotFound, export_lead
from store.api_keys import KeyInfo
from store.erasure import ErasureOutcome, erase
from store.runlock import RunLocked, run_lock
from store.tombstones import ErasureKeyError, TombstoneKey

router = APIRouter(prefix="/v1", tags=["privacy"])


def _erase(service: Any, lead_id: str, actor: str) -> ErasureOutcome:
    secret = service.settings.erasure_key()
    if secret is None:
        raise ErasureKeyError("erasure needs LEADSCORE_ERASURE_SECRET (or LEADSCORE_UNSUBSCRIBE_SECRET)")
    key = TombstoneKey(secret.get_secret_value())
    with run_lock(service.engine, service.portfolio.spec.name):
        return erase(service.engine, [lead_id], key=key, actor=actor, at=datetime.now(UTC), rewrite_line=hashed_line)


@router.delete("/leads/{lead_id}", summary="Erase a lead (GDPR art. 17)")
async def delete_lead(request: Request, lead_id: str, key: KeyInfo = require("admin")) -> dict[str, Any]:
    """Delete the lead's personal data and events everywhere and keep its tombstone; 404 when no such lead
    was ever stored, 200 with ``already_erased`` when it was erased before (erasing twice is harmless)."""
    service = request.app.state.service
    try:
        outcome = await run_in_threadpool(_erase, service, lead_id, f"api:{key.name}")
    except RunLocked as exc:
        raise HTTPException(409, str(exc)) from None
    except ErasureKeyError as exc:
        raise HTTPException(503, str(exc)) from None
    if outcome.not_found:
        raise HTTPException(404, f"no lead {lead_id!r}")
    return asdict(outcome)


@router.get("/leads/{lead_id}/export", summary="Everything held about a lead (GDPR art. 15)")
async def export(request: Request, lead_id: str, key: KeyInfo = require("admin")) -> dict[str, Any]:
    """The lead's row and its rows of every table, as ``leadscore leads export`` writes them."""
    service = request.app.state.service
    try:
        return await run_in_threadpool(export_lead, service.engine, lead_id, actor=f"api:{key.name}")
    except LeadNotFound as exc:
        raise HTTPException(404, str(exc)) from None
