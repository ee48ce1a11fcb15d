"""Webhook delivery: what counts as success, what is retried, and the signature a receiver checks."""

import hashlib
import hmac
import json

import httpx

from nurture.webhooks import WebhookCall, post_one, sign

CALL = WebhookCall("42", "http://hooks.test/in", {"trigger": "hot", "score": 61.5}, secret="k")


def client(*statuses: int, seen: list[httpx.Request] | None = None) -> httpx.Client:
    replies = list(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        status = replies.pop(0)
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, text="nope" if status >= 400 else "ok")

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_a_temporary_failure_is_retried_until_success() -> None:
    seen: list[httpx.Request] = []
    result = post_one(client(503, 0, 204, seen=seen), CALL, attempts=3, backoff_s=0, now=lambda: 1_700_000_000)
    assert (result.ok, result.attempts, result.outcome, result.retryable) == (True, 3, "HTTP 204", False)
    assert {request.headers["X-Leadscore-Delivery"] for request in seen} == {"42"}


def test_a_client_error_is_not_retried() -> None:
    result = post_one(client(410), CALL, attempts=3, backoff_s=0)
    assert (result.ok, result.attempts, result.outcome, result.retryable) == (False, 1, "HTTP 410: nope", False)


def test_still_failing_after_the_attempts_stays_retryable_for_a_later_run() -> None:
    result = post_one(client(500, 429, 0), CALL, attempts=3, backoff_s=0)
    assert (result.ok, result.attempts, result.retryable) == (False, 3, True)
    assert result.outcome.startswith("ConnectError: refused")


def test_the_signature_covers_the_timestamp_and_the_exact_body() -> None:
    seen: list[httpx.Request] = []
    post_one(client(200, seen=seen), CALL, backoff_s=0, now=lambda: 1_700_000_000)
    (request,) = seen
    body = request.content
    assert json.loads(body) == {"score": 61.5, "trigger": "hot"}
    assert request.headers["X-Leadscore-Timestamp"] == "1700000000"
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert request.headers["X-Leadscore-Signature"] == f"sha256={expected}" == sign("k", 1_700_000_000, body)


def test_without_a_secret_nothing_is_signed() -> None:
    seen: list[httpx.Request] = []
    post_one(client(200, seen=seen), WebhookCall("1", "http://hooks.test/in", {}), backoff_s=0)
    assert "X-Leadscore-Signature" not in seen[0].headers
