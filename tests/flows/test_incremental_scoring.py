"""Incremental scoring (the event cache and the database's change log) changes nothing but the time.

The same history of writes and runs is applied to three stores: PostgreSQL read through the event
cache, PostgreSQL read whole on every run (the reference), and SQLite through its cache. After every
run the three hold identical journeys, snapshots, transitions, milestones and firings; and the cached
PostgreSQL run re-reads exactly the leads whose events changed.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from flows import scoring
from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.scoring import score_portfolio
from stages.portfolio import load_portfolio
from store import event_cache, partitions
from store.merges import Pair, merge
from store.queries import add_manual_adjustment
from tests.postgres import postgres_url, search_path_url, throwaway_schema

T1 = datetime(2026, 11, 1, tzinfo=UTC)
PORTFOLIO = """
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  widgets:
    bands: {cold: [0, 20], warm: [20, 50], hot: [50, 100]}
    qualifications: {MQL: 40}
    triggers:
      - {name: hot lead, when: {score: {crosses_up: 50}}, actions: [{tag: hot}]}
    stages:
      discovery: {model: discovery.yaml, promote_at: 60}
      evaluation: {model: discovery.yaml, entry: reset}
"""
# A 30-day window and decay steps at 20 and 45 days: moving as_of changes scores with no new event.
MODEL = """
kind: points
fit:
  - {name: persona, when: {job_title: {matches: "(?i)\\\\bvp\\\\b"}}, points: 20}
behaviour:
  - name: pricing page
    event: page_view
    where: {url: {contains: /pricing}}
    points: 10
    per: occurrence
    max: 40
    within_days: 30
  - {name: white paper, event: asset_download, points: 15}
decay:
  steps:
    - {after_days: 20, keep: 0.5}
    - {after_days: 45, keep: 0.25}
"""
LEADS = "lead_id,email,job_title,product_interest\n" + "".join(
    f"L{i},l{i}@example.com,{'VP Sales' if i % 2 else 'Engineer'},widgets\n" for i in range(1, 9)
)


def _events(rows: list[tuple[str, str, str, str, str]]) -> str:
    """``(event_id, lead_id, type, occurred_at, url)`` rows as an events CSV."""
    lines = ["event_id,lead_id,type,occurred_at,url"] + [",".join(row) for row in rows]
    return "\n".join(lines) + "\n"


INITIAL = [
    (
        f"e{i}-{j}",
        f"L{i}",
        "page_view" if j < 3 else "asset_download",
        f"2026-10-{10 + i + j:02d}T10:00:00Z",
        "/pricing",
    )
    for i in range(1, 9)
    for j in range(4)
]


@dataclass
class Stores:
    tmp: Path
    portfolio: str
    urls: dict[str, str]  # "pg cached", "pg direct", "sqlite cached"
    monkeypatch: pytest.MonkeyPatch

    def each(self, write: Any) -> None:
        """Apply the same write to every store: ``write(url)``."""
        for url in self.urls.values():
            write(url)

    def ingest(self, kind: str, name: str, content: str) -> None:
        path = self.tmp / name
        path.write_text(content)
        portfolio = load_portfolio(Path(self.portfolio))
        self.each(lambda url: ingest_file(portfolio, kind, path, url))

    def sql(self, statement: str, **params: Any) -> None:
        def run(url: str) -> None:
            with engine_for(url).begin() as conn:
                conn.execute(text(statement), params)

        self.each(run)

    def run(self, as_of: datetime) -> dict[str, dict[str, Any]]:
        """Score every store at ``as_of``; return each store's summary."""
        summaries = {}
        for name, url in self.urls.items():
            cached = "cached" in name
            self.monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 1 if cached else 10**9)
            summaries[name] = score_portfolio(self.portfolio, as_of=as_of, database_url=url)
        return summaries

    def assert_identical(self) -> None:
        states = {name: _state(url) for name, url in self.urls.items()}
        reference = states.pop("pg direct")
        assert reference["journeys"], "the reference store scored nothing"
        for name, state in states.items():
            for table, rows in state.items():
                assert rows == reference[table], f"{name}: {table} differs from a full read"


_STATE_QUERIES = {
    # stage_entered_at is left out: a journey opened by an ingest enters at that ingest's wall-clock time.
    "journeys": "SELECT l.lead_id, j.stage, j.score, j.band, j.qualification, j.status "
    "FROM journeys j JOIN leads l ON l.key = j.lead_key ORDER BY l.lead_id",
    "snapshots": "SELECT l.lead_id, s.as_of, s.stage, s.score, s.band, s.qualification, s.step "
    "FROM score_snapshots s JOIN leads l ON l.key = s.lead_key ORDER BY l.lead_id, s.as_of, s.step, s.id",
    "transitions": "SELECT l.lead_id, t.from_stage, t.to_stage, t.reason, t.score_after FROM stage_transitions t "
    "JOIN journeys j ON j.id = t.journey_id JOIN leads l ON l.key = j.lead_key ORDER BY l.lead_id, t.id",
    "milestones": "SELECT l.lead_id, m.qualification, m.score FROM qualification_milestones m "
    "JOIN journeys j ON j.id = m.journey_id JOIN leads l ON l.key = j.lead_key ORDER BY l.lead_id, m.qualification",
    "firings": "SELECT l.lead_id, f.trigger, f.direction, f.action, f.band, f.fired_at FROM trigger_firings f "
    "JOIN journeys j ON j.id = f.journey_id JOIN leads l ON l.key = j.lead_key ORDER BY l.lead_id, f.id",
}


def _state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with engine_for(url).connect() as conn:
        return {name: [tuple(row) for row in conn.execute(text(sql))] for name, sql in _STATE_QUERIES.items()}


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    monkeypatch.setattr(event_cache, "CHUNK_KEYS", 4)  # eight leads span three chunk files
    monkeypatch.setattr(event_cache, "_cache_root", tmp_path / "cache")
    (tmp_path / "portfolio.yaml").write_text(PORTFOLIO)
    (tmp_path / "discovery.yaml").write_text(MODEL)
    base = postgres_url()
    with throwaway_schema(base, "ic") as cached, throwaway_schema(base, "id") as direct:
        urls = {
            "pg cached": search_path_url(base, cached),
            "pg direct": search_path_url(base, direct),
            "sqlite cached": f"sqlite:///{tmp_path}/cached.db",
        }
        loaded = Stores(tmp_path, str(tmp_path / "portfolio.yaml"), urls, monkeypatch)
        loaded.ingest("leads", "leads.csv", LEADS)
        loaded.ingest("events", "events.csv", _events(INITIAL))
        try:
            yield loaded
        finally:
            engine_for.cache_clear()


def _lead_score(url: str, lead_id: str) -> float:
    with engine_for(url).connect() as conn:
        query = "SELECT j.score FROM journeys j JOIN leads l ON l.key = j.lead_key WHERE l.lead_id = :l"
        return float(conn.execute(text(query), {"l": lead_id}).scalar_one())


def _key(url: str, lead_id: str) -> int:
    with engine_for(url).connect() as conn:
        return int(conn.execute(text("SELECT key FROM leads WHERE lead_id = :l"), {"l": lead_id}).scalar_one())


def test_incremental_runs_equal_full_reads_through_every_kind_of_change(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[list[int] | None] = []
    original = event_cache.read_events

    def spy(engine: Any, *args: Any, **kwargs: Any) -> pl.DataFrame:
        if engine.dialect.name == "postgresql":
            reads.append(kwargs.get("lead_keys"))
        return original(engine, *args, **kwargs)

    monkeypatch.setattr(event_cache, "read_events", spy)
    pg = stores.urls["pg cached"]

    first = stores.run(T1)
    assert first["pg cached"]["changed"] == first["pg direct"]["changed"] == 8
    assert reads and all(keys is None for keys in reads)  # the first run fills the cache: whole chunks
    stores.assert_identical()

    reads.clear()
    assert stores.run(T1)["pg cached"]["changed"] == 0
    assert reads == []  # nothing changed: no event is read from the database
    stores.assert_identical()

    # New events for L2, and a late one for L3 dated before all its others.
    new = [
        ("n1", "L2", "page_view", "2026-10-31T09:00:00Z", "/pricing"),
        ("n2", "L3", "asset_download", "2026-09-01T00:00:00Z", "/"),
    ]
    stores.ingest("events", "new.csv", _events(new))
    reads.clear()
    stores.run(T1)
    assert sorted(keys for batch in reads if batch for keys in batch) == sorted([_key(pg, "L2"), _key(pg, "L3")])
    stores.assert_identical()

    # A deletion (an erased lead's events) and an update of one event (flagged as machine activity).
    stores.sql("DELETE FROM events WHERE event_id IN ('e4-0', 'e4-1')")
    stores.sql("UPDATE events SET machine = true WHERE event_id = 'e5-3'")
    reads.clear()
    stores.run(T1)
    assert sorted(keys for batch in reads if batch for keys in batch) == sorted([_key(pg, "L4"), _key(pg, "L5")])
    stores.assert_identical()

    # A CRM stage update and a manual adjustment.
    stores.ingest(
        "stage_updates",
        "crm.csv",
        "lead_id,product_line,stage,changed_at,source\nL6,widgets,evaluation,2026-10-30T00:00:00Z,crm\n",
    )
    stores.each(lambda url: add_manual_adjustment(engine_for(url), "L7", "widgets", 25, "trade show", "ana", "adj-1"))
    stores.run(T1 + timedelta(hours=1))
    stores.assert_identical()

    # as_of moves on with no new event: past the 30-day window edge, then past each decay step.
    reads.clear()
    for days in (12, 25, 50):
        summaries = stores.run(T1 + timedelta(days=days))
        assert summaries["pg cached"]["changed"] == summaries["pg direct"]["changed"] > 0
        stores.assert_identical()
    assert reads == []  # scores moved, yet no event was read again


def test_a_write_during_a_run_is_picked_up_by_the_next_run(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    pg = stores.urls["pg cached"]
    portfolio = load_portfolio(Path(stores.portfolio))
    late = stores.tmp / "late.csv"
    late.write_text(_events([("w1", "L2", "page_view", "2026-10-20T00:00:00Z", "/pricing")]))
    original = event_cache.read_events
    written: list[bool] = []

    def write_after_the_read(engine: Any, *args: Any, **kwargs: Any) -> pl.DataFrame:
        frame = original(engine, *args, **kwargs)
        if engine.dialect.name == "postgresql" and not written:  # committed while the run holds its read
            written.append(ingest_file(portfolio, "events", late, pg).report.inserted == 1)
        return frame

    monkeypatch.setattr(event_cache, "read_events", write_after_the_read)
    monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 1)
    score_portfolio(stores.portfolio, as_of=T1, database_url=pg)
    assert written == [True]
    assert _lead_score(pg, "L2") == 45.0  # the run read L2's events before the write
    monkeypatch.setattr(event_cache, "read_events", original)
    cached = score_portfolio(stores.portfolio, as_of=T1, database_url=pg)
    assert cached["changed"] == 1
    assert _lead_score(pg, "L2") == 55.0  # its fourth pricing visit, written during the first run, counts now

    monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 10**9)
    assert score_portfolio(stores.portfolio, as_of=T1, database_url=pg)["changed"] == 0  # a full read agrees


def test_a_rerun_scores_only_the_partitions_whose_inputs_changed(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two partitions of four leads. The cached stores skip a partition whose reads are those its last run
    left (store.settled); the direct store scores everything every time. After each change the stores
    hold the same rows and the runs report the same totals."""
    cut = partitions.lead_key_partitions
    monkeypatch.setattr(partitions, "lead_key_partitions", lambda engine, size: cut(engine, 4))
    scored: list[int] = []
    original = scoring.run_line

    def counting(*args: Any, **kwargs: Any) -> Any:
        scored.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(scoring, "run_line", counting)

    def run(as_of: datetime) -> dict[str, int]:
        """Score every store; the partitions each cached store scored (the direct store scores all)."""
        counts, summaries = {}, {}
        for name, url in stores.urls.items():
            monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 1 if "cached" in name else 10**9)
            scored.clear()
            summaries[name] = score_portfolio(stores.portfolio, as_of=as_of, database_url=url)
            counts[name] = len(scored)
        stores.assert_identical()
        reference = summaries.pop("pg direct")
        every = partitions.lead_key_partitions(engine_for(stores.urls["pg direct"]), 1000)
        assert counts.pop("pg direct") == len(every)
        for summary in summaries.values():
            for name in ("scored", "changed", "bands", "top", "transitions", "milestones", "firings"):
                assert summary[name] == reference[name], name
        assert counts["pg cached"] == counts["sqlite cached"]
        return counts["pg cached"]

    assert run(T1) == 2
    assert run(T1) == 0  # nothing changed: no journey is scored again
    stores.ingest("leads", "vp.csv", "lead_id,email,job_title,product_interest\nL2,l2@example.com,VP IT,widgets\n")
    assert run(T1) == 1  # L2's attributes changed: its partition only
    assert run(T1) == 0
    stores.sql(
        "UPDATE journeys SET stage = 'evaluation', score_from = NULL WHERE lead_key = :k",
        k=_key(stores.urls["pg direct"], "L7"),
    )
    assert run(T1) == 1  # a journey moved by hand (keys are the same in every store)
    (stores.tmp / "discovery.yaml").write_text(MODEL.replace("points: 15", "points: 16"))
    assert run(T1) == 2  # a model changed
    later = T1 + timedelta(days=12)
    assert run(later) == 2  # as_of moved: windows and decay move with it
    assert run(later) == 0
    stores.each(lambda url: merge(engine_for(url), [Pair("L6", "L3", "t:1")], at=later, source="test"))
    assert run(later) == 2  # L3's partition lost a journey; L6's gets L3's events
    assert run(later) == 1  # events from outside a partition: L6's partition is always scored
    settled = stores.tmp / "cached.db.mirror" / "settled"
    assert len(list(settled.glob("*.json"))) == 2
    monkeypatch.setattr(partitions, "lead_key_partitions", lambda engine, size: cut(engine, 8))
    assert run(later) == 1  # one partition, new bounds (with L6: always scored)
    assert list(settled.glob("*.json")) == []  # the digests of the old bounds are gone
