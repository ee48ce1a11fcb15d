"""POST /v1/leads and /v1/events: per-item answers, the file ingestion's messages, idempotent by id,
concurrent batches (merged into shared commits) answered each with its own items, and on SQLite concurrent
posts through the one writer without "database is locked"."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from stages.portfolio import load_portfolio
from store.ingest import ingest_events
from tests.service.conftest import DEMO_PORTFOLIO, Live

AT = "2026-11-30T10:00:00Z"


def _count(live: Live, sql: str, **params: object) -> int:
    with live.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_leads_are_upserted_with_an_answer_per_item(live: Live) -> None:
    leads = [
        {"lead_id": "IN-1", "email": "ada@client.example", "job_title": "CTO", "product_interest": "crm-suite"},
        {"lead_id": "IN-2", "email": "not-an-email"},
        {"lead_id": "IN-3", "email": "bob@client.example"},
    ]
    first = live.post("/v1/leads", leads)
    assert first.status_code == 200
    assert first.json() == {
        "stored": 2,
        "duplicate": 0,
        "rejected": 1,
        "results": [
            {"index": 0, "lead_id": "IN-1", "status": "stored"},
            {"index": 1, "lead_id": "IN-2", "status": "rejected", "field": "email",
             "reason": "value is not a valid email address: 'not-an-email' (expected name@domain.tld)"},
            {"index": 2, "lead_id": "IN-3", "status": "stored"},
        ],
    }  # fmt: skip
    again = live.post("/v1/leads", leads).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "rejected", "duplicate"]
    changed = live.post("/v1/leads", {"lead_id": "IN-3", "company": "Bob & Co"}).json()
    assert changed["results"] == [{"index": 0, "lead_id": "IN-3", "status": "stored"}]
    assert _count(live, "SELECT count(*) FROM leads WHERE lead_id LIKE 'IN-%'") == 2
    # product_interest opened the journey, as a file would
    assert (
        _count(live, "SELECT count(*) FROM journeys j JOIN leads l ON l.key = j.lead_key WHERE l.lead_id = 'IN-1'") == 1
    )


def test_a_bad_event_is_rejected_with_the_file_message_and_the_rest_stored_once(live: Live, tmp_path: Path) -> None:
    live.post("/v1/leads", [{"lead_id": "EV-1"}, {"lead_id": "EV-2"}])
    batch = [
        {"event_id": "ev-1", "lead_id": "EV-1", "type": "page_view", "occurred_at": AT, "url": "/pricing"},
        {"event_id": "ev-2", "lead_id": "EV-1", "type": "page_veiw", "occurred_at": AT},
        {"event_id": "ev-3", "lead_id": "EV-2", "type": "demo_request", "occurred_at": AT, "product_line": "crm-suite"},
        {"event_id": "ev-4", "lead_id": "NOBODY", "type": "page_view", "occurred_at": AT},
        "not an object",
        {"event_id": "ev-1", "lead_id": "EV-1", "type": "page_view", "occurred_at": AT, "url": "/pricing"},
    ]
    first = live.post("/v1/events", batch).json()
    statuses = [(r["index"], r["status"], r.get("field")) for r in first["results"]]
    assert statuses == [
        (0, "stored", None), (1, "rejected", "type"), (2, "stored", None), (3, "rejected", "lead_id"),
        (4, "rejected", None), (5, "duplicate", None),
    ]  # fmt: skip
    assert first["results"][3]["reason"] == "unknown lead_id 'NOBODY' (ingest leads first)"
    assert first["results"][4]["reason"] == "expected a JSON object, got str"
    # The same row in a file gets the same reason.
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(batch[1]) + "\n")
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    from_file = ingest_events(
        live.engine, path, event_types=portfolio.event_types, product_lines=set(portfolio.product_lines)
    )
    assert first["results"][1]["reason"] == from_file.rejects[0].reason
    assert first["results"][1]["reason"].startswith("unknown event type 'page_veiw'; allowed: ")

    second = live.post("/v1/events", batch).json()
    assert (second["stored"], second["duplicate"], second["rejected"]) == (0, 3, 3)
    assert _count(live, "SELECT count(*) FROM events WHERE event_id IN ('ev-1', 'ev-2', 'ev-3', 'ev-4')") == 2
    assert _count(live, "SELECT count(*) FROM events WHERE event_id = 'ev-1' AND url = '/pricing'") == 1


def test_one_event_as_an_object_and_machine_activity_as_at_ingestion(live: Live) -> None:
    live.post("/v1/leads", {"lead_id": "MA-1"})
    delivered = {
        "event_id": "ma-d",
        "lead_id": "MA-1",
        "type": "email_delivered",
        "occurred_at": AT,
        "message_id": "m1@x",
    }
    assert live.post("/v1/events", delivered).json()["stored"] == 1
    opened = {"lead_id": "MA-1", "type": "email_open"}
    opens = [
        {**opened, "event_id": "ma-o1", "occurred_at": "2026-11-30T10:00:01Z", "message_id": "m1@x"},
        {**opened, "event_id": "ma-o2", "occurred_at": "2026-11-30T11:00:00Z", "message_id": "m1@x"},
        {
            **opened,
            "event_id": "ma-o3",
            "occurred_at": "2026-11-30T12:00:00Z",
            "user_agent": "x (via ggpht.com GoogleImageProxy)",
        },
    ]
    assert live.post("/v1/events", opens).json()["stored"] == 3
    with live.engine.connect() as conn:
        flags = dict(conn.execute(text("SELECT event_id, machine FROM events WHERE event_id LIKE 'ma-o%'")).all())
    assert {k: bool(v) for k, v in flags.items()} == {"ma-o1": True, "ma-o2": False, "ma-o3": True}


def test_a_large_batch_posted_again_answers_its_stored_ids_as_duplicates(live: Live) -> None:
    """A batch large enough for the columnar path (``SMALL_RECORDS``), posted again with new ids among the
    stored ones and an id repeated within it: each item is answered stored or duplicate, in its place, and
    every id is stored once."""
    live.post("/v1/leads", [{"lead_id": f"LB-{i}"} for i in range(20)])
    batch = [
        {"event_id": f"lb-{n}", "lead_id": f"LB-{n % 20}", "type": "page_view", "occurred_at": AT, "url": "/a"}
        for n in range(300)
    ]
    first = live.post("/v1/events", batch).json()
    assert (first["stored"], first["duplicate"], first["rejected"]) == (300, 0, 0)
    again = batch[:150] + [{**batch[0], "event_id": f"lb-new-{n}"} for n in range(100)] + [batch[0]]
    second = live.post("/v1/events", again).json()
    assert (second["stored"], second["duplicate"], second["rejected"]) == (100, 151, 0)
    assert [r["status"] for r in second["results"]] == ["duplicate"] * 150 + ["stored"] * 100 + ["duplicate"]
    new = [{**batch[0], "event_id": f"lb-more-{n}"} for n in range(250)]
    third = live.post("/v1/events", new + new[:1]).json()
    assert [r["status"] for r in third["results"]] == ["stored"] * 250 + ["duplicate"]
    assert _count(live, "SELECT count(*) FROM events WHERE event_id LIKE 'lb-%'") == 650


def test_concurrent_single_events_are_all_stored_exactly_once(live: Live) -> None:
    live.post("/v1/leads", [{"lead_id": f"CC-{i}"} for i in range(10)])
    events = [
        {"event_id": f"cc-{n}", "lead_id": f"CC-{n % 10}", "type": "page_view", "occurred_at": AT} for n in range(300)
    ]

    def post(event: dict[str, object]) -> str:
        answer = live.post("/v1/events", event)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["results"][0]["status"])

    with ThreadPoolExecutor(16) as pool:
        first = list(pool.map(post, events))
        again = list(pool.map(post, events[:50]))
    assert first == ["stored"] * 300 and again == ["duplicate"] * 50
    assert _count(live, "SELECT count(*) FROM events WHERE event_id LIKE 'cc-%'") == 300


def test_concurrent_batches_each_get_their_own_answers(live: Live) -> None:
    """Batches posted at once share commits (the writer merges what gathers): each answer still lists only
    its own items, indexed from 0, with its own bad item and its own duplicate; every event stored once."""
    live.post("/v1/leads", [{"lead_id": "CB-1"}])
    event = {"lead_id": "CB-1", "type": "page_view", "occurred_at": AT}
    assert live.post("/v1/events", {**event, "event_id": "cb-old"}).json()["stored"] == 1

    def batch(n: int) -> list[dict[str, object]]:
        return [{**event, "event_id": f"cb-{n}-a"}, {**event, "event_id": f"cb-{n}-bad", "occurred_at": "soon"},
                {**event, "event_id": "cb-old"}, {**event, "event_id": f"cb-{n}-b"}]  # fmt: skip

    def post(n: int) -> list[tuple[int, str, str, str | None]]:
        answer = live.post("/v1/events", batch(n))
        assert answer.status_code == 200, answer.text
        return [(r["index"], r["event_id"], r["status"], r.get("field")) for r in answer.json()["results"]]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(24)))
    for n, answer in enumerate(answers):
        assert answer == [
            (0, f"cb-{n}-a", "stored", None), (1, f"cb-{n}-bad", "rejected", "occurred_at"),
            (2, "cb-old", "duplicate", None), (3, f"cb-{n}-b", "stored", None),
        ]  # fmt: skip
    assert _count(live, "SELECT count(*) FROM events WHERE event_id LIKE 'cb-%'") == 49


def test_a_nul_in_a_json_string_is_a_rejected_item_not_a_server_error(live: Live) -> None:
    """PostgreSQL stores no NUL: the item is refused like in a file, and its neighbours are stored."""
    nul = "contains a NUL character (\\x00), which the database cannot store"
    leads = [{"lead_id": "NU-1", "company": "A\u0000"}, {"lead_id": "NU-2", "job": "x\u0000"}, {"lead_id": "N\u0000"}]
    answer = live.post("/v1/leads", leads)
    assert answer.status_code == 200
    assert [(r["status"], r.get("field"), r.get("reason")) for r in answer.json()["results"]] == [
        ("rejected", "company", nul),
        ("rejected", "job", nul),
        ("rejected", "lead_id", nul),
    ]
    live.post("/v1/leads", {"lead_id": "NU-3"})
    batch = [
        {"event_id": "nu-1", "lead_id": "NU-3", "type": "page_view", "occurred_at": AT, "url": "/p\u0000"},
        {"event_id": "nu-2\u0000", "lead_id": "NU-3", "type": "page_view", "occurred_at": AT},
        {"event_id": "nu-3", "lead_id": "NU-3", "type": "page_view", "occurred_at": AT, "properties": {"k": "\u0000"}},
        {"event_id": "nu-4", "lead_id": "NU-3", "type": "page_view", "occurred_at": AT},
    ]
    events = live.post("/v1/events", batch)
    assert events.status_code == 200
    assert [(r["status"], r.get("field"), r.get("reason")) for r in events.json()["results"]] == [
        ("rejected", "url", nul),
        ("rejected", "event_id", nul),
        ("rejected", "properties", nul),
        ("stored", None, None),
    ]
    assert _count(live, "SELECT count(*) FROM events WHERE event_id LIKE 'nu-%'") == 1
