"""Webhook delivery for trigger firings: signed JSON POSTs, retried, never blocking the run.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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


def post_one(
    client: httpx.Client,
    call: WebhookCall,
    *,
    attempts: int = 3,
    backoff_s: float = 0.5,
    now: Callable[[], float] = time.time,
) -> WebhookResult:
    """POST with up to ``attempts`` tries on network errors, timeouts, 429 and 5xx; any 2xx is success."""
    body = json.dumps(call.payload, sort_keys=True, default=str).encode()
    outcome, retryable = "not sent", True
    for attempt in range(1, attempts + 1):
        try:
            response = client.post(call.url, content=body, headers=_headers(call, body, now))
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
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return WebhookResult(call.delivery_id, False, attempts, outcome, True)


def post_all(
    calls: Sequence[WebhookCall],
    *,
    timeout_s: float = 10.0,
    attempts: int = 3,
    backoff_s: float = 0.5,
    workers: int = 8,
) -> list[WebhookResult]:
    """Deliver ``calls`` concurrently (a slow endpoint holds one worker, not the batch), in input order."""
    if not calls:
        return []
    with (
        httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
        ThreadPoolExecutor(max_workers=min(workers, len(calls))) as pool,
    ):
        return list(pool.map(lambda call: post_one(client, call, attempts=attempts, backoff_s=backoff_s), calls))
