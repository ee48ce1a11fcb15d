"""The leads list: search and filters over journeys, sorted by score, paged, and its CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse

from service.console.common import render, session_of
from service.console.sessions import require
from store import console as store

router = APIRouter(prefix="/console", include_in_schema=False)


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
    session = await session_of(request)
    require(session, "leads")
    service, console = request.app.state.service, request.app.state.console
    flt = _filter(request)
    rows, more = await run_in_threadpool(store.list_leads, service.engine, flt, max(page, 1), console.page_size)
    query = {k: v for k, v in request.query_params.items() if k not in ("page", "done") and v}
    return render(
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
    session = await session_of(request)
    require(session, "leads")
    rows = store.export_leads(request.app.state.service.engine, _filter(request))
    headers = {"Content-Disposition": 'attachment; filename="leads.csv"', "Cache-Control": "no-store"}
    return StreamingResponse(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
