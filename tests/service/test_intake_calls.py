"""The service's intake calls in process (``service.intake.Intake``, what its writer runs): a few items take
the row model's path and a batch the columnar one, and both answer alike; what a process keeps between
calls (lead keys, the erased people) follows an erasure at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from nurture.audiences import hashed_line
from service.intake import Intake
from stages.portfolio import load_portfolio
from store.db import make_engine
from store.erasure import erase
from store.ingest.events import SMALL_RECORDS
from store.tables import Event
from store.tombstones import ERASED_REASON, TombstoneKey
from tests.service.conftest import DEMO_PORTFOLIO

AT = "2026-11-30T10:00:00Z"
SECRET = "intake-calls-erasure-key-0123456789abcdef"
EVENTS = Event.__table__  # type: ignore[attr-defined]


def _event(event_id: str, lead_id: str, **more: Any) -> dict[str, Any]:
    return {"event_id": event_id, "lead_id": lead_id, "type": "page_view", "occurred_at": AT, "url": "/p", **more}


@pytest.mark.parametrize("size", [8, SMALL_RECORDS + 50])
def test_a_batch_answers_alike_on_the_row_model_path_and_the_columnar_one(store_url: str, size: int) -> None:
    """A bad type, an id stored before (in a batch, one the columnar path's probe of 64 ids does not ask
    about), an id repeated in the batch, an unknown lead, and extra properties that are equal as Python keys
    but not as JSON (``True`` and ``1``): the same answers and rows either way; sent again, duplicates."""
    engine = make_engine(store_url)
    intake = Intake(engine, load_portfolio(DEMO_PORTFOLIO))
    tag = f"b{size}"
    try:
        intake.take("leads", [{"lead_id": f"{tag}-L"}])
        assert intake.take("events", [_event(f"{tag}-old", f"{tag}-L")])[0]["status"] == "stored"
        items = [_event(f"{tag}-{n}", f"{tag}-L") for n in range(size)]
        items[1]["type"] = "page_veiw"
        items[2]["event_id"] = f"{tag}-old"
        items[3]["event_id"] = f"{tag}-0"
        items[4]["lead_id"] = "NOBODY"
        items[5]["flag"], items[6]["flag"] = True, 1
        answers = intake.take("events", items)
        expected: list[tuple[int, str, str | None]] = [(n, "stored", None) for n in range(size)]
        expected[1:5] = [(1, "rejected", "type"), (2, "duplicate", None), (3, "duplicate", None),
                         (4, "rejected", "lead_id")]  # fmt: skip
        assert [(a["index"], a["status"], a.get("field")) for a in answers] == expected
        assert answers[4]["reason"] == "unknown lead_id 'NOBODY' (ingest leads first)"
        with engine.connect() as conn:
            stored = dict(conn.execute(select(EVENTS.c.event_id, EVENTS.c.properties).where(
                EVENTS.c.event_id.like(f"{tag}-%"))).all())  # fmt: skip
        assert len(stored) == size - 4 + 1  # the four refused or repeated items out, the old one in
        assert stored[f"{tag}-5"] == {"url": "/p", "flag": True}
        assert stored[f"{tag}-6"] == {"url": "/p", "flag": 1} and stored[f"{tag}-6"]["flag"] is not True
        assert stored[f"{tag}-7"] == {"url": "/p"}
        again = intake.take("events", items)  # a client's retry: every stored item a duplicate, nothing written
        assert [(a["index"], a["status"]) for a in again] == [
            (n, "rejected" if n in (1, 4) else "duplicate") for n in range(size)
        ]
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).where(EVENTS.c.event_id.like(f"{tag}-%"))).scalar() == len(stored)
    finally:
        engine.dispose()


def test_an_erasure_holds_at_once_in_a_process_that_kept_the_lead_key(store_url: str) -> None:
    """The process keeps lead keys between calls; an erasure (another process's, here the store's own
    function) deletes the lead and writes a tombstone, and the next call refuses the person's event."""
    engine = make_engine(store_url)
    intake = Intake(engine, load_portfolio(DEMO_PORTFOLIO), SECRET)
    try:
        intake.take("leads", [{"lead_id": "ER-1"}, {"lead_id": "ER-2"}])
        assert [a["status"] for a in intake.take("events", [_event("er-1", "ER-1"), _event("er-2", "ER-2")])] == [
            "stored",
            "stored",
        ]
        assert {"ER-1", "ER-2"} <= intake.lead_keys.keys.keys()
        at = datetime(2026, 12, 1, tzinfo=UTC)
        erase(engine, ["ER-1"], key=TombstoneKey(SECRET), actor="test", at=at, rewrite_line=hashed_line)
        answers = intake.take("events", [_event("er-3", "ER-1"), _event("er-4", "ER-2")])
        assert answers == [
            {"index": 0, "event_id": "er-3", "status": "rejected", "field": "lead_id", "reason": ERASED_REASON},
            {"index": 1, "event_id": "er-4", "status": "stored"},
        ]
        with engine.connect() as conn:
            ids = conn.execute(text("SELECT event_id FROM events WHERE event_id LIKE 'er-%' ORDER BY event_id"))
            assert list(ids.scalars()) == ["er-2", "er-4"]
    finally:
        engine.dispose()
