"""A back-fill of events into an empty PostgreSQL store leaves the events' primary key out while all its
files load, and builds it once after them, also when the load fails; a load into a store with events keeps
it. SQLite's events are clustered on that key: nothing is dropped there."""

from pathlib import Path

import pytest
from sqlalchemy import inspect

import store.bulk_indexes
from flows.database import engine_for
from flows.ingestion import backfill, ingest_file
from stages.portfolio import load_portfolio
from store.bulk_indexes import missing_deferred_indexes

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
KEY = ["lead_key", "occurred_at", "event_id"]


def _events(tmp_path: Path, name: str, first: int, rows: int) -> Path:
    path = tmp_path / name
    lines = [
        f"E{n},L{n % 50},page_view,2026-03-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z\n"
        for n in range(first, first + rows)
    ]
    path.write_text("event_id,lead_id,type,occurred_at\n" + "".join(lines))
    return path


@pytest.fixture
def loaded(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store with 50 leads and no events; a file of 1 kB or more is a bulk load."""
    monkeypatch.setattr(store.bulk_indexes, "BULK_BYTES", 1_000)
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id\n" + "".join(f"L{n}\n" for n in range(50)))
    ingest_file(load_portfolio(DEMO), "leads", leads, database_url)
    return database_url


def test_the_first_bulk_load_of_events_builds_the_primary_key_once_after_all_its_files(
    loaded: str, tmp_path: Path
) -> None:
    engine, portfolio = engine_for(loaded), load_portfolio(DEMO)
    seen: list[list[str]] = []
    files = [_events(tmp_path, "a.csv", 0, 300), _events(tmp_path, "b.csv", 300, 300)]
    outcome, _ = backfill(
        portfolio, "events", files, loaded, progress=lambda _: seen.append(missing_deferred_indexes(engine, "events"))
    )
    assert outcome.report.inserted == 600
    dropped = ["events_pkey"] if engine.dialect.name == "postgresql" else []
    assert seen == [dropped] * len(seen) and len(seen) >= 2  # after each chunk of both files
    assert missing_deferred_indexes(engine, "events") == []
    assert inspect(engine).get_pk_constraint("events")["constrained_columns"] == KEY

    seen.clear()  # events are stored: not a first load, the key stays
    more = backfill(
        portfolio,
        "events",
        [_events(tmp_path, "c.csv", 600, 300)],
        loaded,
        progress=lambda _: seen.append(missing_deferred_indexes(engine, "events")),
    )
    assert more[0].report.inserted == 300 and seen == [[]] * len(seen) and seen


def test_a_failed_first_bulk_load_builds_the_primary_key_all_the_same(loaded: str, tmp_path: Path) -> None:
    engine = engine_for(loaded)
    seen: list[list[str]] = []

    def fail(_: int) -> None:
        seen.append(missing_deferred_indexes(engine, "events"))
        raise RuntimeError("the load failed")

    with pytest.raises(RuntimeError, match="the load failed"):
        backfill(load_portfolio(DEMO), "events", [_events(tmp_path, "a.csv", 0, 300)], loaded, progress=fail)
    assert seen == [["events_pkey"] if engine.dialect.name == "postgresql" else []]  # out while it ran
    assert missing_deferred_indexes(engine, "events") == []
    assert inspect(engine).get_pk_constraint("events")["constrained_columns"] == KEY
