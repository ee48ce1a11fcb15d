"""Webhook delivery: what counts as success, what is retried, the signature a receiver checks, and the
wall-clock bounds against real slow endpoints on 127.0.0.1."""

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from nurture.webhooks import WebhookCall, WebhookResult, post_all, sign
from nurture.webhooks import post_one as post_one_async

CALL = WebhookCall("42", "http://hooks.test/in", {"trigger": "hot", "score": 61.5}, secret="k")


def post_one(client: httpx.AsyncClient, call: WebhookCall, **options: Any) -> WebhookResult:
    async def post() -> WebhookResult:
        async with client:
            return await post_one_async(client, call, **options)

    return anyio.run(post)


def client(*statuses: int, seen: list[httpx.Request] | None = None) -> httpx.AsyncClient:
    replies = list(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        status = replies.pop(0)
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, text="nope" if status >= 400 else "ok")

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


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


class SlowEndpoint:
    """A loopback HTTP endpoint that reads the request, then answers one byte every ``every_s`` seconds
    (``head``: from the status line on; otherwise a prompt head and a trickling body), or never."""

    def __init__(self, mode: str, every_s: float = 0.3) -> None:
        self.mode, self.every_s = mode, every_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            if self.mode == "body":
                conn.sendall(head)
            trickle = head + b"x" * 1000 if self.mode == "head" else b"x" * 1000
            for byte in trickle if self.mode != "silent" else []:
                if self.stop.wait(self.every_s):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
            self.stop.wait()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture(params=["head", "body", "silent"])
def slow(request: pytest.FixtureRequest) -> Iterator[SlowEndpoint]:
    endpoint = SlowEndpoint(request.param)
    yield endpoint
    endpoint.close()


def test_a_trickling_or_silent_endpoint_is_cut_off_at_the_deadline(slow: SlowEndpoint) -> None:
    """Each byte comes well within httpx's per-read timeout; only a deadline over the whole try ends it."""
    started = time.monotonic()
    (result,) = post_all([WebhookCall("7", slow.url, {"a": 1})], deadline_s=1.0, attempts=2, backoff_s=0.1)
    elapsed = time.monotonic() - started
    assert (result.ok, result.attempts, result.retryable) == (False, 2, True)
    assert result.outcome == "timeout: no complete answer within 1 s"
    assert 2.0 <= elapsed < 4.0


def test_the_step_budget_leaves_unfinished_calls_for_the_next_run(slow: SlowEndpoint) -> None:
    calls = [WebhookCall(str(n), slow.url, {"n": n}) for n in range(3)]
    started = time.monotonic()
    results = post_all(calls, deadline_s=30, budget_s=1.5, workers=2)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 3.0
    budget = "not finished within the webhook step's budget of 1.5 s: left for the next run"
    assert [(r.delivery_id, r.ok, r.attempts, r.outcome, r.retryable) for r in results] == [
        ("0", False, 1, budget, True),
        ("1", False, 1, budget, True),
        ("2", False, 0, budget, True),  # never started: two workers were held by the slow endpoint
    ]
