"""What every console page shares: the session of a request, a page rendered with the console's headers (no
caching, a strict content security policy), redirects after a form, and the notices they show."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from service.console.sessions import Session, context
from store import console as store

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
NOTICES = {
    "adjusted": "Adjustment recorded: the next run scores it.",
    "moved": "Stage change recorded: the next run applies it.",
    "enrol": "Enrolment requested: the next nurture run applies it.",
    "exit": "Exit requested: the next nurture run applies it.",
    "accepted": "Accepted.",
    "rejected": "Rejected and sent back to nurture.",
    "user": "User added.",
    "testsent": "Test-sent (not recorded as a send).",
}


async def session_of(request: Request) -> Session:
    return await request.app.state.console.sessions.load(request)


def render(request: Request, session: Session, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    console = request.app.state.console
    notice = NOTICES.get(request.query_params.get("done", ""))
    html = console.pages.get_template(template).render(context(session, notice=notice, path=request.url.path, **values))
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if session.fresh:
        console.sessions.issue(response, session, request)
    return response


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def lead_url(lead_id: str, done: str) -> str:
    return f"/console/leads/{quote(lead_id, safe='')}?done={done}"


async def journey_or_404(request: Request, lead_id: str, product_line: str) -> dict[str, Any]:
    """The lead's journey in a product line of the portfolio (400 for an unknown line, 404 without one)."""
    if product_line not in request.app.state.service.portfolio.product_lines:
        raise HTTPException(400, f"unknown product line {product_line!r}")
    found = await run_in_threadpool(store.journey_of, request.app.state.service.engine, lead_id, product_line)
    if found is None:
        raise HTTPException(404, "this lead has no journey in that product line")
    return found
