"""The hot routes served ahead of the framework: ``POST /v1/events``, ``POST /v1/leads`` and
``GET /v1/leads/{lead_id}/score`` (stored or ``fresh=true``).

These are the requests a website and a CRM send by the thousand a second. Through FastAPI each one
crossed six middlewares, the router's matching and the request objects' set-up before doing its work,
which cost about as much CPU as the work itself. ``HotRoutes`` is the outermost ASGI layer: it
recognises these three paths from the raw scope, reads the key, the query and the body itself, runs
the same answer functions as the routes (``intake.answer_intake``, ``scores.answer_score``) and sends
the bytes; it counts them in the same metrics, under the same route templates, and applies the same
body limit. The routes stay in the app, documented in the OpenAPI schema; a request with an ``Origin``
header (a browser's, when CORS is on) goes through them so the CORS middleware answers it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException

from service.auth import presented_key
from service.intake import answer_intake
from service.limits import ASGIApp, BodyTooLarge, RawHeaders, Receive, Scope, Send, send_answer, too_large
from service.scores import answer_score

if TYPE_CHECKING:
    from service.state import Service

_INTAKE = {"/v1/events": "events", "/v1/leads": "leads"}
_LEADS, _SCORE = "/v1/leads/", "/score"
SCORE_ROUTE = "/v1/leads/{lead_id}/score"
_JSON = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected before its body arrived: nobody to answer."""


class HotRoutes:
    """Serves the hot routes itself and passes every other request to ``app``."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service
        self.max_body = service.settings.api_max_body_bytes
        self.cors = bool(service.settings.api_cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        try:
            status, body, headers = await self._answer(route, scope, receive)
        except ClientGone:
            status = 499  # nginx's "client closed request": counted, nothing sent
            return
        except Exception:
            await send_answer(send, 500, b"Internal Server Error", [(b"content-type", b"text/plain; charset=utf-8")])
            raise  # uvicorn logs it, as it does for the routes
        finally:
            self.service.metrics.observe(scope["method"], route, status, time.perf_counter() - started)
        await send_answer(send, status, body, headers)

    def _route(self, scope: Scope) -> str | None:
        """The route template of a hot request, None for any other (or one the full stack must answer)."""
        path, method = scope["path"], scope["method"]
        if scope.get("root_path"):
            return None
        if method == "POST" and path in _INTAKE:
            route = path
        elif method == "GET" and path.startswith(_LEADS) and path.endswith(_SCORE):
            lead_id = path[len(_LEADS) : -len(_SCORE)]
            if not lead_id or "/" in lead_id:
                return None
            route = SCORE_ROUTE
        else:
            return None
        if self.cors and any(name == b"origin" for name, _ in scope["headers"]):
            return None
        return route

    async def _answer(self, route: str, scope: Scope, receive: Receive) -> tuple[int, bytes, RawHeaders]:
        headers = Headers(scope=scope)
        presented = presented_key(headers)
        try:
            if route == SCORE_ROUTE:
                lead_id = scope["path"][len(_LEADS) : -len(_SCORE)]
                query = QueryParams(scope["query_string"])
                return 200, await answer_score(self.service, lead_id, presented, query), _JSON
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                return too_large(self.max_body)

            async def body() -> bytes:
                return await _read_body(receive, self.max_body)

            return 200, await answer_intake(self.service, _INTAKE[route], presented, body), _JSON
        except BodyTooLarge:
            return too_large(self.max_body)
        except HTTPException as exc:  # as FastAPI's handler answers it
            named = (exc.headers or {}).items()
            extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in named]
            return exc.status_code, orjson.dumps({"detail": exc.detail}), [*_JSON, *extra]


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or ``BodyTooLarge`` as soon as it passes ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
