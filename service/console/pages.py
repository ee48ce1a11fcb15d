"""The console's pages and forms: sign-in, leads (list, CSV, lead page and its actions), the sales queue, users.

Reads run in the thread pool; writes go through the service's writer (one writer on SQLite). Every form is
CSRF-checked and every action audited; templates autoescape, so a lead's data always renders as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from service.console.charts import history_svg
from service.console.sessions import Session, context, read_form, require
from service.scores import top_reasons
from store import audit
from store import console as store
from store.live import lead_key
from store.queries import lead_history
from store.users import ROLES, add_user, check_password, list_users

router = APIRouter(prefix="/console", include_in_schema=False)
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
}


async def _session(request: Request) -> Session:
    return await request.app.state.console.sessions.load(request)


def _page(request: Request, session: Session, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    console = request.app.state.console
    notice = NOTICES.get(request.query_params.get("done", ""))
    html = console.pages.get_template(template).render(context(session, notice=notice, path=request.url.path, **values))
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if session.fresh:
        console.sessions.issue(response, session, request)
    return response


def _back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _lead_url(lead_id: str, done: str) -> str:
    return f"/console/leads/{quote(lead_id, safe='')}?done={done}"


# ── sign-in ────────────────────────────────────────────────────────────────────────────────────


@router.get("", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    session = await _session(request)
    if session.user is None:
        return _back("/console/login")
    return _back("/console/queue" if session.user.role == "sales" else "/console/leads")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/console") -> HTMLResponse:
    return _page(request, await _session(request), "login.html.j2", next=next, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """A wrong email and a wrong password get the same answer, in the same time (store.users)."""
    session = await _session(request)
    form = await read_form(request, session)
    service = request.app.state.service
    user = await run_in_threadpool(check_password, service.engine, form.get("email", ""), form.get("password", ""))
    target = form.get("next", "")
    if not target.startswith("/console") or target.startswith("//"):
        target = "/console"
    if user is None:
        return _page(request, session, "login.html.j2", 401, next=target, error="Wrong email or password.")
    await service.writer.call(lambda: audit.log(service.engine, user.email, "sign_in"))
    signed_in = request.app.state.console.sessions.new(user)
    response = _back(target)
    request.app.state.console.sessions.issue(response, signed_in, request)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await _session(request)
    await read_form(request, session)
    response = _back("/console/login")
    request.app.state.console.sessions.clear(response)
    return response


# ── leads ──────────────────────────────────────────────────────────────────────────────────────


def _filter(request: Request) -> store.LeadFilter:
    params = request.query_params
    since = params.get("mql_since") or None
    try:
        since_at = datetime.combine(date.fromisoformat(since), time(), UTC) if since else None
    except ValueError:
        raise HTTPException(400, f"mql_since: {since!r} is not a date (YYYY-MM-DD)") from None
    sort = params.get("sort") or "score_desc"
    if sort not in store.SORTS:
        raise HTTPException(400, f"sort: choose from {', '.join(store.SORTS)}")
    fields = ("q", "product_line", "stage", "band", "qualification", "owner")
    return store.LeadFilter(**{name: params.get(name) or None for name in fields}, mql_since=since_at, sort=sort)


def _choices(portfolio: Any) -> dict[str, list[str]]:
    lines = portfolio.product_lines.values()
    return {
        "product_lines": sorted(portfolio.product_lines),
        "stages": sorted({stage.name for line in lines for stage in line.stages}),
        "bands": sorted({band for line in lines for band in line.spec.bands.ranges}),
        "qualifications": sorted({name for line in lines for name in line.spec.qualifications}),
    }


@router.get("/leads", response_class=HTMLResponse)
async def leads(request: Request, page: int = 1) -> HTMLResponse:
    session = await _session(request)
    require(session, "leads")
    service, console = request.app.state.service, request.app.state.console
    flt = _filter(request)
    rows, more = await run_in_threadpool(store.list_leads, service.engine, flt, max(page, 1), console.page_size)
    query = {k: v for k, v in request.query_params.items() if k not in ("page", "done") and v}
    return _page(
        request,
        session,
        "leads.html.j2",
        rows=rows,
        page=max(page, 1),
        more=more,
        flt=flt,
        params=request.query_params,
        choices=_choices(service.portfolio),
        query=urlencode(query),
    )


CSV_COLUMNS = [column.name for column in store.LIST_COLUMNS]


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (= + - @) is prefixed with a quote."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in CSV_COLUMNS])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/leads.csv")
async def leads_csv(request: Request) -> StreamingResponse:
    """The current filter's every row (not only the page shown), streamed."""
    session = await _session(request)
    require(session, "leads")
    rows = store.export_leads(request.app.state.service.engine, _filter(request))
    headers = {"Content-Disposition": 'attachment; filename="leads.csv"', "Cache-Control": "no-store"}
    return StreamingResponse(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)


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
    session = await _session(request)
    require(session, "leads")
    service, console = request.app.state.service, request.app.state.console
    found = await run_in_threadpool(_lead_page, service, lead_id)
    if found is None:
        raise HTTPException(404, "unknown lead")
    return _page(request, session, "lead.html.j2", lead_id=lead_id, data=found, tracks=console.tracks)


async def _journey(request: Request, lead_id: str, product_line: str) -> dict[str, Any]:
    if product_line not in request.app.state.service.portfolio.product_lines:
        raise HTTPException(400, f"unknown product line {product_line!r}")
    found = await run_in_threadpool(store.journey_of, request.app.state.service.engine, lead_id, product_line)
    if found is None:
        raise HTTPException(404, "this lead has no journey in that product line")
    return found


@router.post("/leads/{lead_id}/adjust")
async def adjust(request: Request, lead_id: str) -> Response:
    """Points with a reason (required), recorded as a ``manual_adjustment`` event authored by the user."""
    session = await _session(request)
    user = require(session, "adjust")
    form = await read_form(request, session)
    journey = await _journey(request, lead_id, form.get("product_line", ""))
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
    return _back(_lead_url(lead_id, "adjusted"))


@router.post("/leads/{lead_id}/move")
async def move(request: Request, lead_id: str) -> Response:
    """An external stage update, as the CRM would send it."""
    session = await _session(request)
    user = require(session, "move")
    form = await read_form(request, session)
    journey = await _journey(request, lead_id, form.get("product_line", ""))
    line = request.app.state.service.portfolio.product_lines[form["product_line"]]
    stage = form.get("stage", "")
    if stage not in [s.name for s in line.stages]:
        raise HTTPException(400, f"unknown stage {stage!r} of {line.name}")
    engine = request.app.state.service.engine
    await request.app.state.service.writer.call(
        lambda: store.move_stage(engine, journey["key"], line.name, stage, user.email)
    )
    return _back(_lead_url(lead_id, "moved"))


@router.post("/leads/{lead_id}/track")
async def track(request: Request, lead_id: str) -> Response:
    """Ask the next nurture run to enrol the lead in a track, or take it out."""
    session = await _session(request)
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
    return _back(_lead_url(lead_id, action))


# ── the sales queue ────────────────────────────────────────────────────────────────────────────


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
    for item in items.values():
        item["overdue"] = item["due"] is not None and item["due"] < now
    return list(items.values())


@router.get("/queue", response_class=HTMLResponse)
async def queue(request: Request, owner: str | None = None) -> HTMLResponse:
    """Sales see their own leads only; marketing and admins see everyone's, or one owner's."""
    session = await _session(request)
    shown = (owner or None) if session.can("queue_all") else require(session, "queue_own").email
    service, console = request.app.state.service, request.app.state.console
    items = await run_in_threadpool(_queue_items, service, console.sales, shown, datetime.now(UTC))
    owners = await run_in_threadpool(store.owners, service.engine) if session.can("queue_all") else []
    return _page(
        request, session, "queue.html.j2", items=items, owner=shown, owners=owners, reasons=console.sales.reject_reasons
    )


@router.post("/queue/decide")
async def decide(request: Request) -> Response:
    """Accept (the journey moves to the next stage) or reject with a reason code (it goes back to the
    portfolio's recycle track). Sales answer for their own leads only."""
    session = await _session(request)
    user = require(session, "decide")
    form = await read_form(request, session)
    lead_id, line_name, decision = form.get("lead_id", ""), form.get("product_line", ""), form.get("decision")
    journey = await _journey(request, lead_id, line_name)
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
    return _back(f"/console/queue?done={answer['decision']}")


# ── users (admin) ──────────────────────────────────────────────────────────────────────────────


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request) -> HTMLResponse:
    session = await _session(request)
    require(session, "users")
    found = await run_in_threadpool(list_users, request.app.state.service.engine)
    return _page(request, session, "users.html.j2", users=found, roles=ROLES, error=None)


@router.post("/users")
async def create_user(request: Request) -> Response:
    session = await _session(request)
    admin = require(session, "users")
    form = await read_form(request, session)
    engine = request.app.state.service.engine
    email, role = form.get("email", ""), form.get("role", "")

    def add() -> None:
        add_user(engine, email, form.get("name", ""), role, form.get("password", ""))
        audit.log(engine, admin.email, "add_user", user=email.strip().lower(), role=role)

    try:
        await request.app.state.service.writer.call(add)
    except ValueError as exc:
        found = await run_in_threadpool(list_users, engine)
        return _page(request, session, "users.html.j2", 400, users=found, roles=ROLES, error=str(exc))
    return _back("/console/users?done=user")
