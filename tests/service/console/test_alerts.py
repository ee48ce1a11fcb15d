"""The overdue-queue alert of the daily pipeline: an item past its SLA alerts its owner once, through the
outbox; a re-run, even after a crash between sending and recording, sends nothing again; the queue shows it."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select

from flows.queue_alerts import alert_overdue
from stages.portfolio import load_portfolio
from store.console_tables import QueueAlert
from store.outbox_tables import OutboxMessage
from store.settings import Settings
from tests.service.conftest import DEMO_PORTFOLIO, Live
from tests.service.console.conftest import signed_in

ALERTS = QueueAlert.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


def _alerts(live: Live) -> list[tuple[str, str, str | None]]:
    stmt = select(ALERTS.c.qualification, ALERTS.c.status, ALERTS.c.to_address).order_by(ALERTS.c.journey_id)
    with live.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(stmt)]


def _outbox(live: Live) -> int:
    with live.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(OUTBOX).where(OUTBOX.c.kind == "sla_alert")).scalar_one()


def test_an_overdue_item_alerts_its_owner_once_even_after_a_crash_and_the_queue_shows_it(
    console: Live, tmp_path: Path
) -> None:
    settings = Settings(database_url=console.url, outbox_dir=tmp_path / "outbox", mail_from="leadscore@acme.example")
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    now = datetime.now(UTC)
    # Qualified a day ago: the SQLs (SLA 8 h) of Sam's two leads and Sue's one are overdue, the MQLs (48 h) not.
    assert alert_overdue(console.engine, portfolio, settings, now) == {"sent": 3}
    expected = [("SQL", "sent", "sam@acme.example"), ("SQL", "sent", "sam@acme.example"),
                ("SQL", "sent", "sue@acme.example")]  # fmt: skip
    assert _alerts(console) == expected
    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(files) == 3
    sent = [email.message_from_bytes(path.read_bytes()) for path in files]
    assert sorted(message["To"] for message in sent) == ["sam@acme.example", "sam@acme.example", "sue@acme.example"]
    assert all(message["Subject"].startswith("[leadscore] overdue: ") for message in sent)

    assert alert_overdue(console.engine, portfolio, settings, now) == {}  # once: nothing the next day
    with console.engine.begin() as conn:  # a crash after the outbox took them, before they were recorded
        conn.execute(delete(ALERTS))
    assert alert_overdue(console.engine, portfolio, settings, now) == {"duplicate": 3}
    assert _alerts(console) == [(q, "duplicate", to) for q, _, to in expected]
    assert _outbox(console) == 3 and len(list((tmp_path / "outbox").rglob("*.eml"))) == 3

    page = signed_in(console, "sam@acme.example").get("/console/queue").text
    assert page.count("owner alerted") == 2 and page.count("<strong>overdue</strong>") == 2
