"""Health, readiness, metrics, API keys with scopes, body-size and rate limits: over HTTP on a real service."""

from __future__ import annotations

from pathlib import Path

from store.api_keys import check_key, create_key, list_keys, revoke_key
from tests.service.conftest import Live


def test_health_readiness_and_the_openapi_schema(live: Live) -> None:
    assert live.client.get("/healthz").json() == {"status": "ok"}
    assert live.client.get("/readyz").json() == {"status": "ready", "store": live.engine.dialect.name}
    schema = live.client.get("/openapi.json").json()
    assert {"/v1/events", "/v1/leads", "/v1/leads/{lead_id}/score", "/v1/leads/{lead_id}", "/u/{token}"} <= set(
        schema["paths"]
    )
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    event = body["oneOf"][0]
    assert event["required"] == ["event_id", "type", "occurred_at"]  # and lead_id, or anonymous_id for a visitor
    assert {"lead_id", "anonymous_id"} <= set(event["properties"])


def test_keys_are_stored_hashed_and_scoped(live: Live) -> None:
    events_key = live.keys["events:write"]
    assert events_key.startswith("lsk_")
    with live.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_hash FROM api_keys").scalars().all()
    assert all(events_key.split("_", 2)[2] not in value for value in stored)  # only hashes are kept
    assert live.client.get("/v1/leads/L1/score").status_code == 401
    assert live.client.get("/v1/leads/L1/score", headers={"Authorization": "Bearer lsk_nope_nope"}).status_code == 401
    denied = live.get("/v1/leads/L1/score", scope="events:write")
    assert (denied.status_code, denied.json()) == (403, {"detail": "this key lacks the scope 'scores:read'"})
    assert live.get("/v1/leads/L1/score").status_code == 404  # allowed: the lead is unknown
    assert live.client.get("/v1/leads/L1/score", headers={"X-API-Key": live.keys["admin"]}).status_code == 404


def test_a_revoked_key_is_refused(live: Live) -> None:
    key, info = create_key(live.engine, "crm sync", ["scores:read"])
    headers = {"Authorization": f"Bearer {key}"}
    assert live.client.get("/v1/leads/L1/score", headers=headers).status_code == 404
    assert revoke_key(live.engine, info.key_id) and not revoke_key(live.engine, info.key_id)
    assert live.client.get("/v1/leads/L1/score", headers=headers).status_code == 401
    assert check_key(live.engine, key) is None
    assert [k.revoked_at is not None for k in list_keys(live.engine) if k.key_id == info.key_id] == [True]


def _sample(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_and_items_by_outcome(live: Live) -> None:
    lookups = 'leadscore_http_requests_total{method="GET",route="/v1/leads/{lead_id}/score",status="404"}'
    rejected = 'leadscore_items_total{kind="events",outcome="rejected"}'
    before = live.client.get("/metrics").text
    live.get("/v1/leads/L-secret-id/score")
    live.get("/v1/leads/L-secret-id/score")
    live.post("/v1/events", [{"event_id": "e1", "lead_id": "nobody", "type": "page_view", "occurred_at": "x"}])
    after = live.client.get("/metrics").text
    assert _sample(after, lookups) - _sample(before, lookups) == 2
    assert _sample(after, rejected) - _sample(before, rejected) == 1
    assert "L-secret-id" not in after  # ids never become label values
    assert 'leadscore_http_request_seconds_bucket{le="0.025",route="/v1/leads/{lead_id}/score"}' in after


def test_body_size_and_rate_limits(tmp_path: Path) -> None:
    live = Live(f"sqlite:///{tmp_path}/limits.db", tmp_path, api_max_body_bytes=2000, api_rate_per_second=0.01,
                api_rate_burst=3, api_max_batch=5, api_cors_origins='["https://www.acme.example"]')  # fmt: skip
    try:
        big = [{"event_id": f"e{i}", "lead_id": "L1", "type": "page_view", "occurred_at": "x" * 100} for i in range(20)]
        too_big = live.post("/v1/events", big)
        assert (too_big.status_code, too_big.json()) == (413, {"detail": "request body larger than 2000 bytes"})
        chunked = live.client.post(
            "/v1/events",
            content=iter([b"[" + b" " * 1500, b" " * 1500 + b"]"]),  # no Content-Length: counted while read
            headers={**live.headers("events:write"), "Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
        many = live.post("/v1/events", big[:6])
        assert (many.status_code, many.json()) == (413, {"detail": "6 items; at most 5 per request"})
        lead = {"lead_id": "LIM-1", "product_interest": "crm-suite"}
        assert live.post("/v1/leads", lead).json()["stored"] == 1  # the key's last token
        assert live.post("/v1/leads", lead).status_code == 429
        assert [live.get("/v1/leads/L1/score").status_code for _ in range(3)] == [404, 404, 404]  # the burst
        limited = live.get("/v1/leads/L1/score")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert live.get("/v1/leads/L1/score", scope="admin").status_code == 404  # another key, its own bucket
        preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        allowed = live.client.options("/v1/leads/L1/score", headers={"Origin": "https://www.acme.example", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "https://www.acme.example"
        other = live.client.options("/v1/leads/L1/score", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        # A browser's look-up (Origin) takes the framework's route and its CORS answer; a server's takes the
        # hot path (service.hot): the same answer either way.
        origin = {"Origin": "https://www.acme.example", **live.headers("admin")}
        browser = live.client.get("/v1/leads/LIM-1/score", headers=origin)
        server = live.get("/v1/leads/LIM-1/score", scope="admin")
        assert browser.headers["access-control-allow-origin"] == "https://www.acme.example"
        assert "access-control-allow-origin" not in server.headers
        assert (browser.status_code, browser.json()) == (server.status_code, server.json())
        assert server.json()["scores"][0]["product_line"] == "crm-suite"
    finally:
        live.close()


def test_the_rate_limit_holds_in_total_across_service_processes(tmp_path: Path) -> None:
    """Two services on one store (as two uvicorn workers are): a key's burst is spent once, not per process."""
    url = f"sqlite:///{tmp_path}/shared.db"
    first = Live(url, tmp_path, api_rate_per_second=0.01, api_rate_burst=6)
    second = Live(url, tmp_path, keys=first.keys, api_rate_per_second=0.01, api_rate_burst=6)
    try:
        pids = {first.process.pid, second.process.pid}
        assert len(pids) == 2
        answers = [(first if n % 2 else second).get("/v1/leads/L1/score").status_code for n in range(10)]
        assert answers == [404] * 6 + [429] * 4  # 3 + 3 taken through each process, then both refuse
        assert first.get("/v1/leads/L1/score", scope="admin").status_code == 404  # another key, its own bucket
    finally:
        second.close()
        first.close()
