"""The daily pipeline and the live service on one PostgreSQL store at the same time: every event, from the
drop folder or posted to the service, is stored exactly once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from flows.daily import daily_pipeline
from tests.service.conftest import DEMO_PORTFOLIO, Live

AS_OF = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_pipeline_and_service_side_by_side_lose_and_double_nothing(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the side-by-side run is the PostgreSQL set-up (SQLite has one writer per store)")
    inbox = tmp_path / "inbox"
    (inbox / "leads").mkdir(parents=True)
    (inbox / "events").mkdir()
    leads = [
        {"lead_id": f"SB-{n}", "email": f"sb{n}@client.example", "product_interest": "crm-suite"} for n in range(200)
    ]
    (inbox / "leads" / "leads.jsonl").write_text("".join(json.dumps(row) + "\n" for row in leads))
    at = (AS_OF - timedelta(days=1)).isoformat()
    file_events = [
        {"event_id": f"file-{n}", "lead_id": f"SB-{n % 200}", "type": "page_view", "occurred_at": at, "url": "/pricing"}
        for n in range(3000)
    ]
    (inbox / "events" / "events.jsonl").write_text("".join(json.dumps(row) + "\n" for row in file_events))
    live = Live(database_url, tmp_path)
    try:
        assert live.post("/v1/leads", leads[:100]).json()["rejected"] == 0  # the service may see them first
        posted: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def post_while_the_pipeline_runs() -> None:
            n = 0
            while not stop.is_set() or n < 200:
                batch = [
                    {
                        "event_id": f"api-{n + i}",
                        "lead_id": f"SB-{(n + i) % 100}",
                        "type": "page_view",
                        "occurred_at": at,
                    }
                    for i in range(20)
                ]
                answer = live.post("/v1/events", batch)
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    posted.extend(r["event_id"] for r in answer.json()["results"] if r["status"] == "stored")
                n += 20

        poster = threading.Thread(target=post_while_the_pipeline_runs)
        poster.start()
        try:
            summary = daily_pipeline(
                str(DEMO_PORTFOLIO), database_url=database_url, as_of=AS_OF, inbox=str(inbox),
                audiences_dir=str(tmp_path / "audiences"), report_path=str(tmp_path / "report.html"),
            )  # fmt: skip
        finally:
            stop.set()
            poster.join(timeout=120)
        assert failures == []
        assert summary["failed"] == []
        assert [r["inserted"] for r in summary["ingested"]] == [100, 3000]  # 100 leads came through the service
        with live.engine.connect() as conn:
            by_source = text(
                "SELECT substr(event_id, 1, 4), count(*) FROM events "
                "WHERE event_id LIKE 'file-%' OR event_id LIKE 'api-%' GROUP BY 1"
            )
            stored = dict(conn.execute(by_source).all())
            distinct = conn.execute(text("SELECT count(DISTINCT event_id) = count(*) FROM events")).scalar_one()
        assert stored == {"file": 3000, "api-": len(posted)} and len(posted) == len(set(posted)) >= 200
        assert distinct
    finally:
        live.close()
