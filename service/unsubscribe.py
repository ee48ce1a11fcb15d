"""``POST /u/{token}``: RFC 8058 one-click unsubscribe; ``GET /u/{token}``: confirmation and preference centre.

Every change is written as an event (``unsubscribe``, with a product line when only that line's email
stops; ``resubscribe``), so scores, replays and audits see it, and applied to the lead at once: an
unsubscribe suppresses now and ends the tracks, it does not wait for the next run. A token that does
not verify (or names no lead) gets 404 and nothing else. A GET never changes anything: mail scanners
fetch links.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from nurture.mail import PROJECT_TEMPLATES
from nurture.tokens import unsubscribe_lead
from stages.portfolio import Portfolio
from store.ingest import Records, ingest_events
from store.live import end_track_enrolments, lead_key, preferences, resubscribe
from store.nurture import suppress

router = APIRouter(tags=["unsubscribe"])
TEMPLATES = PROJECT_TEMPLATES / "service"
_PAGES = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
ACTIONS = ("everything", "line", "resubscribe")
RUN_ID = "service"  # recorded on the enrolments the service ends


@dataclass(frozen=True)
class Change:
    action: str  # everything | line | resubscribe
    product_line: str | None
    channel: str  # one-click | preference-centre


def apply(
    engine: Any, portfolio: Portfolio, tracks: dict[str, list[str]], lead_id: str, key: int, change: Change
) -> None:
    """Write the change as an event (the same ingestion as any event) and apply it to the lead now."""
    at = datetime.now(UTC)
    event = {
        "event_id": f"pref-{uuid.uuid4().hex}",
        "lead_id": lead_id,
        "type": "resubscribe" if change.action == "resubscribe" else "unsubscribe",
        "occurred_at": at.isoformat(),
        "product_line": change.product_line,
        "channel": change.channel,
    }
    report = ingest_events(
        engine, Records("api:preferences", [event]), event_types=portfolio.event_types, product_lines=None
    )
    if report.rejected:  # cannot happen with a known lead: keep it loud rather than silently lose an unsubscribe
        raise RuntimeError(f"preference event refused: {report.rejects[0]}")
    if change.action == "everything":
        suppress(engine, [key], at=at, run_id=RUN_ID)
    elif change.action == "line":
        end_track_enrolments(engine, key, tracks.get(change.product_line or "", []), at=at, run_id=RUN_ID)
    else:
        resubscribe(engine, key, at)


async def _lead(request: Request, token: str) -> tuple[Any, str, int]:
    service = request.app.state.service
    lead_id = unsubscribe_lead(token, service.secrets)
    key = await service.writer.call(lambda: lead_key(service.engine, lead_id)) if lead_id else None
    if key is None or lead_id is None:
        raise HTTPException(404, "not found")
    return service, lead_id, key


def _page(service: Any, key: int, message: str | None) -> HTMLResponse:
    unsubscribed_at, stopped = preferences(service.engine, key)
    lines = [
        {"name": name, "title": line.spec.title or name, "stopped": name in stopped}
        for name, line in service.portfolio.product_lines.items()
    ]
    titles = [entry["title"] for entry in lines if entry["stopped"]]
    html = _PAGES.get_template("preferences.html.j2").render(
        message=message, unsubscribed=unsubscribed_at is not None, stopped=titles, lines=lines
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@router.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe confirmation and preference centre")
async def preference_centre(request: Request, token: str) -> HTMLResponse:
    """The lead's current preferences with buttons to stop one product line, everything, or resubscribe."""
    service, _lead_id, key = await _lead(request, token)
    return _page(service, key, None)


@router.post("/u/{token}", summary="One-click unsubscribe (RFC 8058) and preference changes")
async def change_preferences(request: Request, token: str) -> Any:
    """A POST without ``action`` (a mail provider's ``List-Unsubscribe=One-Click``) unsubscribes from
    everything and answers 200; the preference centre's forms send ``action`` (``everything``, ``line``
    with ``product_line``, ``resubscribe``) and get the page back."""
    service, lead_id, key = await _lead(request, token)
    form = parse_qs((await request.body()).decode("utf-8", "replace")) if _is_form(request) else {}
    action = (form.get("action") or [None])[0]
    if action is None:
        change = Change("everything", None, "one-click")
    elif action not in ACTIONS:
        raise HTTPException(400, f"unknown action {action!r}")
    else:
        line = (form.get("product_line") or [None])[0] if action == "line" else None
        if action == "line" and line not in service.portfolio.product_lines:
            raise HTTPException(400, "unknown product line")
        change = Change(action, line, "preference-centre")
    await service.writer.call(lambda: apply(service.engine, service.portfolio, service.tracks, lead_id, key, change))
    service.metrics.items.labels("preferences", change.action).inc()
    if change.channel == "one-click":
        return PlainTextResponse("unsubscribed\n")
    messages = {
        "everything": "You are unsubscribed from all our email.",
        "line": "Done: no more email about that product.",
        "resubscribe": "Welcome back: you are subscribed again.",
    }
    return _page(service, key, messages[change.action])


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded"
