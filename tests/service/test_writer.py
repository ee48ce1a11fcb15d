"""The group writer: while intake is busy, a commit lingers so that the requests answered by the last one
join the next; an idle service commits a lone request at once; requests merged into one ingestion call
each get their own items' answers; on PostgreSQL two lanes commit at once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from service import intake
from service.app import build_service
from service.config import ServiceSettings
from service.writer import GroupWriter
from stages.portfolio import load_portfolio
from store.db import make_engine
from tests.service.conftest import DEMO_PORTFOLIO, SECRET

AT = "2026-11-30T10:00:00Z"
UNKNOWN_TYPE = (
    "unknown event type 'page_veiw'; allowed: asset_download, chat_started, content_served, demo_request, "
    "email_bounce, email_click, email_delivered, email_open, email_reply, email_sent, form_submit, identify, "
    "manual_adjustment, meeting_booked, page_view, resubscribe, spam_complaint, trial_start, unsubscribe, "
    "webinar_attend, webinar_register (declare custom types under event_types: in the portfolio)"
)


def _scenario(linger: float) -> tuple[list[int], float]:
    """Two requests at once, a third during their commit, a fourth 50 ms after it; then two lone ones.
    Returns the items per commit and how long the last lone request waited."""
    groups: list[int] = []

    def take(kind: str, items: list[Any]) -> list[dict[str, Any]]:
        groups.append(len(items))
        time.sleep(0.05)  # the commit
        return [{"index": n, "status": "stored"} for n in range(len(items))]

    async def run() -> float:
        writer = GroupWriter(take, 100, serialize_calls=False, linger=linger)
        await writer.start()
        first = [asyncio.create_task(writer.take("events", [n])) for n in range(2)]
        await asyncio.sleep(0.02)
        third = asyncio.create_task(writer.take("events", [3]))
        await asyncio.gather(*first)
        await asyncio.sleep(0.05)
        assert await asyncio.gather(third, writer.take("events", [4])) == [[{"index": 0, "status": "stored"}]] * 2
        await writer.take("events", [5])  # after a busy commit: it lingers, alone
        began = time.monotonic()
        await writer.take("events", [6])  # after a lone commit: at once
        waited = time.monotonic() - began
        await writer.stop()
        return waited

    waited = asyncio.run(run())
    return groups, waited


def test_a_busy_writer_lingers_and_merges_the_next_requests() -> None:
    groups, waited = _scenario(linger=0.5)
    assert groups == [2, 2, 1, 1]
    assert waited < 0.4  # the commit (0.05 s), no linger


def test_without_linger_each_commit_takes_what_has_arrived() -> None:
    groups, _ = _scenario(linger=0.0)
    assert groups == [2, 1, 1, 1, 1]


def _event(event_id: str, lead_id: str, kind: str = "page_view") -> dict[str, str]:
    return {"event_id": event_id, "lead_id": lead_id, "type": kind, "occurred_at": AT}


def test_requests_merged_into_one_ingestion_call_each_get_their_own_answers(store_url: str) -> None:
    """Two requests that gather while a commit runs go in one ingestion call (one chunk); the first holds a
    bad item and an event stored before, the second repeats the first's new event: each request hears
    exactly its own items, indexed from 0, and every event is stored once."""
    engine = make_engine(store_url)
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    service_intake = intake.Intake(engine, portfolio)
    service_intake.take("leads", [{"lead_id": "GW-1"}, {"lead_id": "GW-2"}])
    service_intake.take("events", [_event("gw-old", "GW-1")])
    calls: list[list[str]] = []
    committing, release = threading.Event(), threading.Event()

    def take(kind: str, items: list[Any]) -> list[dict[str, Any]]:
        calls.append([item["event_id"] for item in items])
        committing.set()
        release.wait(10)  # the first commit runs until both requests have queued behind it
        return service_intake.take(kind, items)

    async def run() -> list[list[dict[str, Any]]]:
        writer = GroupWriter(take, 100, serialize_calls=engine.dialect.name == "sqlite", lanes=1)
        await writer.start()
        running = asyncio.create_task(writer.take("events", [_event("gw-0", "GW-2")]))
        await asyncio.to_thread(committing.wait, 10)
        first = asyncio.create_task(
            writer.take(
                "events", [_event("gw-1", "GW-1"), _event("gw-bad", "GW-1", "page_veiw"), _event("gw-old", "GW-1")]
            )
        )
        second = asyncio.create_task(writer.take("events", [_event("gw-2", "GW-2"), _event("gw-1", "GW-2")]))
        await asyncio.sleep(0.1)
        release.set()
        answers = await asyncio.gather(running, first, second)
        await writer.stop()
        return answers

    try:
        _, first, second = asyncio.run(run())
        assert calls == [["gw-0"], ["gw-1", "gw-bad", "gw-old", "gw-2", "gw-1"]]
        assert first == [
            {"index": 0, "event_id": "gw-1", "status": "stored"},
            {"index": 1, "event_id": "gw-bad", "status": "rejected", "field": "type", "reason": UNKNOWN_TYPE},
            {"index": 2, "event_id": "gw-old", "status": "duplicate"},
        ]
        assert second == [
            {"index": 0, "event_id": "gw-2", "status": "stored"},
            {"index": 1, "event_id": "gw-1", "status": "duplicate"},
        ]
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT e.event_id, l.lead_id FROM events e JOIN leads l ON l.key = e.lead_key "
                     "WHERE e.event_id LIKE 'gw-%' ORDER BY e.event_id")
            ).all()  # fmt: skip
        assert [tuple(row) for row in stored] == [
            ("gw-0", "GW-2"), ("gw-1", "GW-1"), ("gw-2", "GW-2"), ("gw-old", "GW-1")
        ]  # fmt: skip
    finally:
        engine.dispose()


def test_two_lanes_commit_at_once_and_sqlite_keeps_one() -> None:
    """With two lanes a second group starts while the first commits; SQLite's writer never does."""

    def overlapping(serialize_calls: bool) -> int:
        inside, most = 0, 0
        lock = threading.Lock()

        def take(kind: str, items: list[Any]) -> list[dict[str, Any]]:
            nonlocal inside, most
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with lock:
                inside -= 1
            return [{"index": n, "status": "stored"} for n in range(len(items))]

        async def run() -> None:
            writer = GroupWriter(take, 1, serialize_calls=serialize_calls, lanes=2)
            await writer.start()
            await asyncio.gather(*(writer.take("events", [n]) for n in range(4)))
            await writer.stop()

        asyncio.run(run())
        return most

    assert overlapping(serialize_calls=False) == 2
    assert overlapping(serialize_calls=True) == 1


def test_the_services_sqlite_log_is_checkpointed_at_8192_pages(tmp_path: Path) -> None:
    """The writer's commits each pass SQLite's default 1,000 pages: the service's engine checkpoints later."""
    url = f"sqlite:///{tmp_path}/store.db"
    settings = ServiceSettings(database_url=url, portfolio=DEMO_PORTFOLIO, unsubscribe_secret=SECRET)
    service = build_service(settings)
    plain = make_engine(url)
    try:
        for engine, pages in ((service.engine, 8192), (plain, 1000)):
            with engine.connect() as conn:
                assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == pages
    finally:
        service.limiter.close()
        service.engine.dispose()
        plain.dispose()
