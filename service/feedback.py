"""``POST /v1/email-events/{provider}``: delivery providers' webhooks, verified by each provider's own
signature (no API key), stored as events by Message-ID through the same ingestion as any event.

Unsubscribes and spam complaints suppress the lead at once, hard bounces mark it bounced; opens and
clicks get the machine-activity rules of ingestion (delivery window, proxy user agents). A delivery
whose receipt (token, signature) was already taken is answered 200 and ignored: a replay stores nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import Engine

from nurture.feedback import PROVIDERS, Feedback, SignatureError
from stages.portfolio import Portfolio
from store.ingest import Records, ingest_events
from store.live import leads_by_message, receipt_seen, record_receipt
from store.nurture import suppress
from store.outbox import mark_bounced

router = APIRouter(prefix="/v1", tags=["email feedback"])
SUPPRESSING = frozenset({"unsubscribe", "spam_complaint"})


def store_feedback(
    engine: Engine, portfolio: Portfolio, provider: str, receipt: str, found: list[Feedback]
) -> dict[str, Any]:
    """Store one verified delivery's events; ``replayed`` when its receipt was taken before."""
    if receipt_seen(engine, provider, receipt):
        return {"replayed": True, "stored": 0, "duplicate": 0, "unmatched": 0}
    leads = leads_by_message(engine, [item.message_id for item in found])
    matched = [item for item in found if item.message_id in leads]
    rows = [
        {
            "event_id": item.event_id,
            "lead_id": leads[item.message_id][0],
            "type": item.type,
            "occurred_at": item.occurred_at.isoformat(),
            "message_id": item.message_id,
            "provider": provider,
            **item.properties,
        }
        for item in matched
    ]
    options: dict[str, Any] = {"machine_window_seconds": portfolio.spec.ingest.machine_window_seconds}
    if portfolio.spec.ingest.proxy_user_agents is not None:
        options["proxy_user_agents"] = tuple(portfolio.spec.ingest.proxy_user_agents)
    report = ingest_events(engine, Records(f"webhook:{provider}", rows), event_types=portfolio.event_types, **options)
    now = datetime.now(UTC)
    suppress(engine, [leads[i.message_id][1] for i in matched if i.type in SUPPRESSING], at=now, run_id="service")
    hard = [
        leads[i.message_id][1] for i in matched if i.type == "email_bounce" and i.properties.get("bounce") == "hard"
    ]
    with engine.begin() as conn:
        mark_bounced(conn, hard, now)
    record_receipt(engine, provider, receipt, now)
    stored = len(report.written)
    return {"replayed": False, "stored": stored, "duplicate": len(rows) - stored, "unmatched": len(found) - len(rows)}


@router.post("/email-events/{provider}", summary="Delivery provider webhooks: generic, mailgun, sendgrid")
async def email_events(request: Request, provider: str) -> dict[str, Any]:
    """Verified by the provider's signature; events matched to leads by the Message-ID leadscore sent."""
    service = request.app.state.service
    key = service.feedback_keys.get(provider)
    if provider not in PROVIDERS or key is None:
        raise HTTPException(404, "unknown or unconfigured provider")
    verify, parse = PROVIDERS[provider]
    body = await request.body()
    try:
        receipt = verify(key, request.headers, body, time.time())
        found = parse(body)
    except SignatureError as exc:
        raise HTTPException(401, f"signature refused: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise HTTPException(400, f"payload not understood: {exc}") from None
    answer = await service.writer.call(
        lambda: store_feedback(service.engine, service.portfolio, provider, receipt, found)
    )
    service.metrics.items.labels(f"email-events:{provider}", "stored").inc(answer["stored"])
    return answer
