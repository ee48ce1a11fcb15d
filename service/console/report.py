"""The report page (marketing, admins): the daily report's sections built live from the store by the report's
own queries and renderers (``nurture.report``), plus the MQL → opportunity rate per week against the target.
The model review section is the lift chart on real outcomes (conversion per score decile)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from nurture.report.build import SECTIONS, build_sections
from nurture.report.weekly import WEEKLY
from service.console.common import render, session_of
from service.console.sessions import require

router = APIRouter(prefix="/console", include_in_schema=False)


def _sections(service: Any, product_line: str | None) -> dict[str, Any]:
    scope, sections = build_sections(service.portfolio, service.engine, product_line, [*SECTIONS, WEEKLY])
    return {"sections": sections, "generated_at": scope.generated_at}


@router.get("/report", response_class=HTMLResponse)
async def report(request: Request, product_line: str = "") -> HTMLResponse:
    session = await session_of(request)
    require(session, "report")
    service = request.app.state.service
    if product_line and product_line not in service.portfolio.product_lines:
        raise HTTPException(400, f"unknown product line {product_line!r}")
    found = await run_in_threadpool(_sections, service, product_line or None)
    lines = sorted(service.portfolio.product_lines)
    return render(request, session, "report.html.j2", product_line=product_line, lines=lines, **found)
