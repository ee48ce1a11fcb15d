"""``score_portfolio`` for real under Prefect's test harness, on SQLite and PostgreSQL."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.scoring import score_portfolio
from stages.portfolio import load_portfolio
from store.queries import add_manual_adjustment, lead_history
from store.tables import Journey, Lead, Run, ScoreSnapshot

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)

PORTFOLIO = """
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  widgets:
    bands: {cold: [0, 20], warm: [20, 50], hot: [50, 100]}
    qualifications: {MQL: 50}
    stages:
      discovery: {model: discovery.yaml, promote_at: 90}
      evaluation: {model: discovery.yaml, entry: reset}
"""
MODEL = """
kind: points
fit:
  - {name: persona, when: {job_title: {matches: "(?i)\\\\bvp\\\\b"}}, points: 20}
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 10, per: occurrence, max: 30}
  - {name: white paper, event: asset_download, points: 15}
"""
LEADS = """lead_id,email,job_title,product_interest
L1,l1@example.com,VP Sales,widgets
L2,l2@example.com,Student,widgets
L3,l3@example.com,Engineer,
"""
EVENTS = """event_id,lead_id,type,occurred_at,product_line,properties
e1,L1,page_view,2026-10-01T10:00:00Z,,"{""url"": ""/pricing""}"
e2,L1,page_view,2026-10-02T10:00:00Z,widgets,"{""url"": ""/pricing""}"
e3,L1,asset_download,2026-10-03T10:00:00Z,,{}
e4,L2,page_view,2026-10-04T10:00:00Z,widgets,"{""url"": ""/pricing/enterprise""}"
e5,L3,page_view,2026-10-05T10:00:00Z,widgets,"{""url"": ""/pricing""}"
e6,L3,page_view,2026-11-05T10:00:00Z,widgets,"{""url"": ""/pricing""}"
"""


@pytest.fixture
def loaded(tmp_path: Path, database_url: str) -> str:
    (tmp_path / "portfolio.yaml").write_text(PORTFOLIO)
    (tmp_path / "discovery.yaml").write_text(MODEL)
    (tmp_path / "leads.csv").write_text(LEADS)
    (tmp_path / "events.csv").write_text(EVENTS)
    portfolio = load_portfolio(tmp_path / "portfolio.yaml")
    assert ingest_file(portfolio, "leads", tmp_path / "leads.csv", database_url).journeys_opened == 2
    assert ingest_file(portfolio, "events", tmp_path / "events.csv", database_url).journeys_opened == 1
    return str(tmp_path / "portfolio.yaml")


def _scores(url: str) -> dict[str, tuple[float | None, str | None, str | None]]:
    with Session(engine_for(url)) as session:
        rows = session.exec(
            select(Lead.lead_id, Journey.score, Journey.band, Journey.qualification).join(
                Journey, Journey.lead_key == Lead.key
            )
        )  # type: ignore[call-overload]
        return {lead: (score, band, qual) for lead, score, band, qual in rows}


def _count(url: str, table: type) -> int:
    with Session(engine_for(url)) as session:
        return session.exec(select(func.count()).select_from(table)).scalar_one()  # type: ignore[call-overload]


def test_scores_write_snapshots_only_on_change(loaded: str, database_url: str) -> None:
    summary = score_portfolio(loaded, as_of=AS_OF, database_url=database_url)

    assert (summary["scored"], summary["changed"]) == (3, 3)
    # L1: persona 20 + pricing 2 x 10 + white paper 15; L3's November visit is after as_of.
    assert _scores(database_url) == {
        "L1": (55.0, "hot", "MQL"),
        "L2": (10.0, "cold", None),
        "L3": (10.0, "cold", None),
    }
    assert summary["bands"] == {"widgets": {"discovery/cold": 2, "discovery/hot": 1}}
    assert summary["top"]["widgets/discovery"][0] == {
        "lead_id": "L1",
        "stage": "discovery",
        "score": 55.0,
        "band": "hot",
        "reasons": "persona:+20; pricing page:+20; white paper:+15",
    }
    history = lead_history(engine_for(database_url), "L1")
    assert history is not None
    assert history["journeys"][0]["breakdown"] == [
        {"rule": "persona", "points": 20.0},
        {"rule": "pricing page", "points": 20.0},
        {"rule": "white paper", "points": 15.0},
    ]

    again = score_portfolio(loaded, as_of=AS_OF, database_url=database_url)
    assert (again["scored"], again["changed"]) == (3, 0)
    assert _count(database_url, ScoreSnapshot) == 3
    assert _count(database_url, Run) == 2


def test_replay_as_of_is_read_only(loaded: str, database_url: str) -> None:
    score_portfolio(loaded, as_of=AS_OF, database_url=database_url)
    before = _scores(database_url)

    replay = score_portfolio(
        loaded, as_of=datetime(2026, 10, 2, 12, tzinfo=UTC), write=False, database_url=database_url
    )

    assert replay["run_id"] is None
    # Only L1's journey was open by then (its first widgets event, 2 October 10:00); nothing is written.
    assert (replay["scored"], replay["changed"], replay["would_change"]) == (1, 0, 1)
    assert replay["top"]["widgets/discovery"][0]["score"] == 40.0  # 20 persona + 2 pricing visits
    assert _scores(database_url) == before
    assert _count(database_url, ScoreSnapshot) == 3


def test_manual_adjustment_counts_at_next_run(loaded: str, database_url: str) -> None:
    score_portfolio(loaded, as_of=AS_OF, database_url=database_url)
    engine = engine_for(database_url)
    assert add_manual_adjustment(engine, "L2", "widgets", 12.5, "met at trade show", "ana", "adj-1")
    assert not add_manual_adjustment(engine, "nobody", "widgets", 1, "x", "ana", "adj-2")

    summary = score_portfolio(loaded, database_url=database_url)  # as of now: the adjustment is in the past

    assert summary["changed"] >= 1
    history = lead_history(engine, "L2")
    assert history is not None
    journey = history["journeys"][0]
    assert journey["score"] == 22.5 and journey["band"] == "warm"
    assert {"rule": "manual adjustments", "points": 12.5} in journey["breakdown"]
    assert [snap["score"] for snap in journey["history"]] == [10.0, 22.5]


def test_crashed_run_leaves_the_store_consistent_and_a_rerun_finishes(
    loaded: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import store.stages

    def crash(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk full")

    # Mid-transaction: the snapshots and journey scores are already written when the crash comes.
    monkeypatch.setattr(store.stages, "_upsert_arms", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        score_portfolio(loaded, as_of=AS_OF, database_url=database_url)
    assert _count(database_url, ScoreSnapshot) == 0
    assert set(_scores(database_url).values()) == {(None, None, None)}
    with Session(engine_for(database_url)) as session:
        assert session.exec(select(Run.status)).scalars().all() == ["failed"]  # type: ignore[call-overload]

    monkeypatch.undo()
    summary = score_portfolio(loaded, as_of=AS_OF, database_url=database_url)

    assert summary["changed"] == 3
    assert _scores(database_url)["L1"] == (55.0, "hot", "MQL")
    assert _count(database_url, ScoreSnapshot) == 3


def test_transient_database_error_is_retried(loaded: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    import flows.scoring

    real = flows.scoring.write_partition
    calls: list[int] = []

    def locked_once(*args: object, **kwargs: object) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE journeys", {}, Exception("database is locked"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(flows.scoring, "write_partition", locked_once)
    summary = score_portfolio(loaded, as_of=AS_OF, database_url=database_url)

    assert len(calls) == 2
    assert summary["changed"] == 3
    assert _count(database_url, ScoreSnapshot) == 3
