"""The console: server-rendered pages for marketers and sales on the service's app (same process, store and
portfolio), signed-cookie sessions and CSRF-checked forms. ``mount`` is the service's one line to include it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from nurture.context import Context, load_context
from nurture.mail import PROJECT_TEMPLATES
from nurture.report.page import cell
from service.console.config import MIN_SESSION_SECRET, ConsoleSettings
from service.console.sessions import Sessions, SignInRequired
from stages.portfolio import Portfolio
from stages.sales import SalesSpec

TEMPLATES = PROJECT_TEMPLATES / "console"
log = logging.getLogger("leadscore.console")


@dataclass
class Console:
    """What the console's pages need, made once at start-up."""

    sessions: Sessions
    pages: Environment
    page_size: int
    sales: SalesSpec
    tracks: dict[str, list[str]]  # product line → its nurture tracks
    nurture: Context  # tracks, templates and sender: what previews are composed with
    cache: dict[str, Any] = field(default_factory=dict)  # slow reads kept until the store changes (models page)


def build_console(portfolio: Portfolio, tracks: dict[str, list[str]], settings: ConsoleSettings) -> Console:
    """Check the session secret and the portfolio's ``sales`` section against its tracks."""
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    if len(secret) < MIN_SESSION_SECRET:
        raise ValueError(f"LEADSCORE_SESSION_SECRET must have at least {MIN_SESSION_SECRET} characters")
    sales = portfolio.spec.sales
    for line, track in sales.recycle_tracks.items():
        if track not in tracks.get(line, []):
            raise ValueError(f"sales.recycle_tracks.{line}: {track!r} is not a nurture track of that product line")
    pages = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    pages.filters["quote"] = lambda value: quote(str(value), safe="")
    pages.filters["cell"] = cell
    return Console(Sessions(secret, settings.session_hours * 3600), pages, settings.console_page_size, sales,
                   tracks, load_context(portfolio.path))  # fmt: skip


def mount(
    app: FastAPI, portfolio: Portfolio, tracks: dict[str, list[str]], settings: ConsoleSettings | None = None
) -> None:
    """Serve the console under ``/console`` when ``LEADSCORE_SESSION_SECRET`` is set (said in the log otherwise)."""
    settings = settings or ConsoleSettings()
    if settings.session_secret is None:
        log.warning("the console is off: set LEADSCORE_SESSION_SECRET (32+ characters) to serve it")
        return
    from service.console import lead, leads, models, nurture, queue, report, signin

    app.state.console = build_console(portfolio, tracks, settings)
    for pages in (signin, leads, lead, queue, nurture, models, report):
        app.include_router(pages.router)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _exc: Any) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)
