"""Signing in and out, the console's home, and the users page (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from service.console.common import back, render, session_of
from service.console.sessions import read_form, require
from store import audit
from store.users import ROLES, add_user, check_password, list_users

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    session = await session_of(request)
    if session.user is None:
        return back("/console/login")
    return back("/console/queue" if session.user.role == "sales" else "/console/leads")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/console") -> HTMLResponse:
    return render(request, await session_of(request), "login.html.j2", next=next, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """A wrong email and a wrong password get the same answer, in the same time (store.users)."""
    session = await session_of(request)
    form = await read_form(request, session)
    service = request.app.state.service
    user = await run_in_threadpool(check_password, service.engine, form.get("email", ""), form.get("password", ""))
    target = form.get("next", "")
    if not target.startswith("/console") or target.startswith("//"):
        target = "/console"
    if user is None:
        return render(request, session, "login.html.j2", 401, next=target, error="Wrong email or password.")
    await service.writer.call(lambda: audit.log(service.engine, user.email, "sign_in"))
    signed_in = request.app.state.console.sessions.new(user)
    response = back(target)
    request.app.state.console.sessions.issue(response, signed_in, request)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await session_of(request)
    await read_form(request, session)
    response = back("/console/login")
    request.app.state.console.sessions.clear(response)
    return response


# ── users (admin) ──────────────────────────────────────────────────────────────────────────────


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request) -> HTMLResponse:
    session = await session_of(request)
    require(session, "users")
    found = await run_in_threadpool(list_users, request.app.state.service.engine)
    return render(request, session, "users.html.j2", users=found, roles=ROLES, error=None)


@router.post("/users")
async def create_user(request: Request) -> Response:
    session = await session_of(request)
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
        return render(request, session, "users.html.j2", 400, users=found, roles=ROLES, error=str(exc))
    return back("/console/users?done=user")
