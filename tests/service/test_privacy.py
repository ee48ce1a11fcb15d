"""``DELETE /v1/leads/{id}`` and ``GET /v1/leads/{id}/export`` on the live service, and ``POST /v1/leads``
refusing an erased person afterwards (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import text

from store.tombstones import ERASED_REASON
from tests.service.conftest import Live

AT = "2026-11-30T10:00:00Z"


def test_erase_and_export_over_http(live: Live) -> None:
    live.post("/v1/leads", [{"lead_id": "PV-1", "email": "Pia@Client.example", "phone": "+33 6 11 22 33 44"}])
    live.post("/v1/events", {"event_id": "pv-e1", "lead_id": "PV-1", "type": "page_view", "occurred_at": AT})

    assert live.client.get("/v1/leads/PV-1/export", headers=live.headers("events:write")).status_code == 403
    exported = live.client.get("/v1/leads/PV-1/export", headers=live.headers("admin"))
    assert exported.status_code == 200
    body = exported.json()
    assert body["lead"]["email"] == "pia@client.example"  # ingestion normalises emails
    assert [row["event_id"] for row in body["tables"]["events"]] == ["pv-e1"]

    assert live.client.delete("/v1/leads/PV-1", headers=live.headers("scores:read")).status_code == 403
    erased = live.client.delete("/v1/leads/PV-1", headers=live.headers("admin"))
    assert erased.status_code == 200
    assert (erased.json()["erased"], erased.json()["rows"]) == (["PV-1"], {"leads": 1, "events": 1, "console_audit": 1})
    again = live.client.delete("/v1/leads/PV-1", headers=live.headers("admin")).json()
    assert (again["erased"], again["already_erased"], again["rows"]) == ([], ["PV-1"], {})
    assert live.client.delete("/v1/leads/PV-404", headers=live.headers("admin")).status_code == 404
    assert live.client.get("/v1/leads/PV-1/export", headers=live.headers("admin")).status_code == 404

    back = live.post("/v1/leads", [{"lead_id": "PV-1"}, {"lead_id": "PV-9", "email": " pia@client.EXAMPLE"}]).json()
    assert [(r["status"], r.get("field"), r.get("reason")) for r in back["results"]] == [
        ("rejected", "lead_id", ERASED_REASON),
        ("rejected", "email", ERASED_REASON),
    ]
    event = {"event_id": "pv-e2", "lead_id": "PV-1", "type": "page_view", "occurred_at": AT}
    assert live.post("/v1/events", event).json()["results"][0]["reason"] == ERASED_REASON
    with live.engine.connect() as conn:
        actions = conn.execute(text("SELECT actor, action FROM console_audit ORDER BY id")).all()
        rows = [str(raw) for (raw,) in conn.execute(text("SELECT raw FROM ingest_rejects"))]
    assert [tuple(a) for a in actions] == [("api:test admin", "export"), ("api:test admin", "erase")]
    assert not any("pia" in raw.lower() or "PV-1" in raw for raw in rows)
