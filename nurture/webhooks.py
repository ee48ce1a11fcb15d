"""Webhook delivery for trigger firings: signed JSON POSTs, retried, never blocking the run.

Every try has a wall-clock deadline over connect and the whole answer, and a run's webhook step a
budget: a slow or silent endpoint costs a bounded time, and what is left over waits for the next run.

Each firing is POSTed once per attempt with ``X-Leadscore-Delivery`` (the firing id, stable across
retries, so a receiver can drop duplicates) and, when a secret is configured, ``X-Leadscore-Signature:
sha256=HEX``: the HMAC-SHA256 of ``"{timestamp}.{body}"`` with the timestamp sent in
``X-Leadscore-Timestamp`` (a receiver recomputes it and refuses old timestamps, so a captured request
cannot be replayed later).
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class WebhookCall:
    delivery_id: str
    url: str
    payload: dict[str, Any]
    secret: str | None = None


@dataclass(frozen=True)
class WebhookResult:
    delivery_id: str
    ok: bool
    attempts: int
    outcome: str  # "HTTP 200", "HTTP 503: …", "timeout: …"
    retryable: bool  # a later run may try again (network errors, 5xx, 429)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _headers(call: WebhookCall, body: bytes, now: Callable[[], float]) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "leadscore-webhook/1",
        "X-Leadscore-Delivery": call.delivery_id,
    }
    if call.secret:
        timestamp = int(now())
        headers["X-Leadscore-Timestamp"] = str(timestamp)
        headers["X-Leadscore-Signature"] = sign(call.secret, timestamp, body)
    return headers


async def post_one(
    client: httpx.AsyncClient,
    call: WebhookCall,
    *,
    attempts: int = 3,
    backoff_s: float = 0.5,
    deadline_s: float = 5.0,
    now: Callable[[], float] = time.time,
    tried: dict[str, int] | None = None,
) -> WebhookResult:
    """POST with up to ``attempts`` tries on network errors, timeouts, 429 and 5xx; any 2xx is success.

    Each try has ``deadline_s`` of wall-clock time for everything (connect, send, the whole answer):
    httpx's timeouts bound each socket operation only, so an endpoint trickling a byte every few
    seconds would hold the run forever. ``tried`` counts the tries made per delivery id (kept when the
    step's budget cancels the call)."""
    body = json.dumps(call.payload, sort_keys=True, default=str).encode()
    outcome, retryable = "not sent", True
    for attempt in range(1, attempts + 1):
        if tried is not None:
            tried[call.delivery_id] = attempt
        try:
            with anyio.fail_after(deadline_s):
                response = await client.post(call.url, content=body, headers=_headers(call, body, now))
        except TimeoutError:
            outcome, retryable = f"timeout: no complete answer within {deadline_s:g} s", True
        except httpx.HTTPError as exc:
            outcome, retryable = f"{type(exc).__name__}: {exc}"[:500], True
        else:
            if response.is_success:
                return WebhookResult(call.delivery_id, True, attempt, f"HTTP {response.status_code}", False)
            retryable = response.status_code in RETRYABLE_STATUS
            outcome = f"HTTP {response.status_code}: {response.text[:200]}"
        if not retryable:
            return WebhookResult(call.delivery_id, False, attempt, outcome, False)
        if attempt < attempts:
            await anyio.sleep(backoff_s * 2 ** (attempt - 1))
    return WebhookResult(call.delivery_id, False, attempts, outcome, True)


def post_all(
    calls: Sequence[WebhookCall],
    *,
    deadline_s: float = 5.0,
    budget_s: float = 30.0,
    attempts: int = 3,
    backoff_s: float = 0.5,
    workers: int = 8,
) -> list[WebhookResult]:
    """Deliver ``calls`` concurrently (a slow endpoint holds one worker, not the batch), in input order.

    The whole batch gets ``budget_s`` of wall-clock time; a call still unfinished then is cut off and
    reported retryable (a later run tries again; the receiver drops a duplicate by its delivery id)."""
    if not calls:
        return []
    return anyio.run(_post_all, calls, deadline_s, budget_s, attempts, backoff_s, workers)


async def _post_all(
    calls: Sequence[WebhookCall], deadline_s: float, budget_s: float, attempts: int, backoff_s: float, workers: int
) -> list[WebhookResult]:
    results: dict[str, WebhookResult] = {}
    tried: dict[str, int] = {}
    limiter = anyio.CapacityLimiter(workers)

    async def one(client: httpx.AsyncClient, call: WebhookCall) -> None:
        async with limiter:
            results[call.delivery_id] = await post_one(
                client, call, attempts=attempts, backoff_s=backoff_s, deadline_s=deadline_s, tried=tried
            )

    # httpx's own timeout is a backstop per socket operation; fail_after bounds each try as a whole.
    async with httpx.AsyncClient(timeout=deadline_s, follow_redirects=False) as client:
        with anyio.move_on_after(budget_s):
            async with anyio.create_task_group() as group:
                for call in calls:
                    group.start_soon(one, client, call)
    cut = f"not finished within the webhook step's budget of {budget_s:g} s: left for the next run"
    return [
        results.get(call.delivery_id)
        or WebhookResult(call.delivery_id, False, tried.get(call.delivery_id, 0), cut, True)
        for call in calls
    ]
