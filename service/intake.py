"""``POST /v1/events`` and ``POST /v1/leads``: the file ingestion's row models, messages and idempotent
writes (``store.ingest`` with ``Records``), answered item by item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import Engine

from service.auth import SECURITY, authorize, presented_key
from stages.journeys import new_journeys
from stages.portfolio import Portfolio
from store.db import GrowingTable
from store.ingest import EventRow, IngestReport, LeadRow, Records, ingest_events, ingest_leads
from store.ingest.lookup import LeadKeys
from store.live import tombstone_mark
from store.scores import open_journeys
from store.tombstones import Erased, load_erased

if TYPE_CHECKING:
    from service.state import Service

router = APIRouter(prefix="/v1", tags=["intake"])
ID_FIELD = {"events": "event_id", "leads": "lead_id"}


LEAD_KEYS_KEPT = 500_000  # lead_id → key entries a process keeps between calls (≈ 100 bytes each)


class Intake:
    """The intake of one service process: ``take`` validates and stores items in one ingestion call.

    What each call would otherwise look up again is kept between calls: the lead keys (a lead row only
    ever goes away in an erasure, which also writes tombstones: the keys are dropped whenever the
    tombstones change), the erased people (read again only then) and the events table's statistics upkeep
    (``GrowingTable``). An erasure made while the service runs holds from the next call on, as when the
    tombstones were read on every call.
    """

    def __init__(self, engine: Engine, portfolio: Portfolio, erasure_secret: str | None = None) -> None:
        self.engine, self.portfolio, self.erasure_secret = engine, portfolio, erasure_secret
        self.lead_keys = LeadKeys(LEAD_KEYS_KEPT)
        self.growth = GrowingTable(engine, "events")
        self.tombstones: tuple[Any, ...] | None = None  # the tombstones' mark when ``erased`` was read
        self.erased: Erased | None = None
        spec = portfolio.spec.ingest
        self.options: dict[str, Any] = {"machine_window_seconds": spec.machine_window_seconds}
        if spec.proxy_user_agents is not None:
            self.options["proxy_user_agents"] = tuple(spec.proxy_user_agents)

    def _erased(self) -> Erased | None:
        mark = tombstone_mark(self.engine)
        if mark != self.tombstones:
            self.lead_keys.forget()  # before the new mark is kept: a failed read tries again
            self.erased = load_erased(self.engine, self.erasure_secret, self.portfolio.spec.privacy.after_erasure)
            self.tombstones = mark
        return self.erased

    def take(self, kind: str, items: list[Any]) -> list[dict[str, Any]]:
        """Validate and store ``items``; open the journeys they show interest in. An erased person is
        refused (or stored suppressed) as in a file.

        Each item gets ``stored`` (new, or a lead whose content changed), ``duplicate`` (its id was stored
        already, as it is: nothing written) or ``rejected`` with the field and the reason a file row gets.
        """
        records = Records(f"api:{kind}", items)
        erased = self._erased()
        lines = set(self.portfolio.product_lines)
        if kind == "events":
            report = ingest_events(
                self.engine, records, event_types=self.portfolio.event_types, product_lines=lines, erased=erased,
                lead_keys=self.lead_keys, growth=self.growth, **self.options,
            )  # fmt: skip
        else:
            report = ingest_leads(self.engine, records, product_lines=lines, erased=erased)
        open_journeys(self.engine, new_journeys(self.portfolio, report.interests))
        return answers(kind, items, report)


def answers(kind: str, items: list[Any], report: IngestReport) -> list[dict[str, Any]]:
    """One answer per item, in order; an id repeated within the items is stored once (the first).
    (Inline, without a call per item: a merged group answers thousands of items at a time.)"""
    rejected = {reject.line - 1: reject for reject in report.rejects}
    name = ID_FIELD[kind]
    written = report.written or set()
    seen: set[str | None] = set()
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        value = item.get(name) if isinstance(item, dict) else None
        identifier = None if value is None else str(value).strip()
        reject = rejected.get(index) if rejected else None
        if reject is not None:
            out.append(
                {"index": index, name: identifier, "status": "rejected", "field": reject.field, "reason": reject.reason}
            )
            continue
        fresh = identifier in written and identifier not in seen
        seen.add(identifier)
        out.append({"index": index, name: identifier, "status": "stored" if fresh else "duplicate"})
    return out


_RESULT = {
    "type": "object",
    "properties": {
        "stored": {"type": "integer"},
        "duplicate": {"type": "integer"},
        "rejected": {"type": "integer"},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "status": {"enum": ["stored", "duplicate", "rejected"]},
                    "field": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


def _schema(model: type[Any]) -> dict[str, Any]:
    one = model.model_json_schema()
    return {
        "security": SECURITY,
        "responses": {
            "200": {"description": "one result per item", "content": {"application/json": {"schema": _RESULT}}}
        },
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [one, {"type": "array", "items": one}],
                        "description": "one object or an array of up to LEADSCORE_API_MAX_BATCH items (1,000)",
                    }
                }
            },
        },
    }


async def answer_intake(
    service: Service, kind: str, presented: str | None, body: Callable[[], Awaitable[bytes]]
) -> bytes:
    """The JSON answer of an intake post (``HTTPException`` for the 4xx ones): the key is checked before
    ``body`` is read. Shared by the route and ``service.hot`` (the same request, without the framework)."""
    await authorize(service, "events:write", presented)
    try:
        parsed = orjson.loads(await body())
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if len(items) > service.settings.api_max_batch:
        raise HTTPException(413, f"{len(items)} items; at most {service.settings.api_max_batch} per request")
    results = await service.writer.take(kind, items) if items else []
    counts = {status: 0 for status in ("stored", "duplicate", "rejected")}
    for result in results:
        counts[result["status"]] += 1
    for status, count in counts.items():
        if count:
            service.metrics.items.labels(kind, status).inc(count)
    return orjson.dumps({**counts, "results": results})


async def _post(request: Request, kind: str) -> Response:
    """The route of the requests ``service.hot`` leaves to the framework (a browser's, with CORS on); it
    documents intake in the OpenAPI schema and answers the same JSON bytes."""
    answer = await answer_intake(request.app.state.service, kind, presented_key(request.headers), request.body)
    return Response(answer, media_type="application/json")


@router.post("/events", summary="Post events (one or an array)", openapi_extra=_schema(EventRow))
async def post_events(request: Request) -> Response:
    """Store events as ingestion does (same validation, machine-activity rules, insert-or-ignore on
    ``event_id``); the answer lists each item as stored, duplicate or rejected (field and reason)."""
    return await _post(request, "events")


@router.post("/leads", summary="Upsert leads (one or an array)", openapi_extra=_schema(LeadRow))
async def post_leads(request: Request) -> Response:
    """Upsert leads on ``lead_id`` as ingestion does; ``duplicate`` means already stored as given."""
    return await _post(request, "leads")
