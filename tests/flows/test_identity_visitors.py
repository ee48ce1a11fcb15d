"""Anonymous visitors: identified, their earlier events count for the lead with their original times
(decay and windows exactly as if the lead had been known); unlinked ones expire. SQLite and PostgreSQL."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

import flows.scoring  # noqa: F401  (Prefect sets its log handlers on its first import, not inside CliRunner)
from flows.cli import app
from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.one_lead import lead_as_of
from flows.scoring import score_portfolio
from stages.portfolio import load_portfolio
from store.settings import get_settings
from tests.flows.test_identity_merge import _journeys

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PORTFOLIO = """
scoring: {partition_size: 1000}
identity: {anonymous_retention_days: 90}
product_lines:
  widgets:
    bands: {cold: [0, 20], hot: [20, 100]}
    stages:
      discovery: {model: discovery.yaml}
"""
# A time-window rule (pricing visits of the last 30 days) and a decayed one (10-day half-life for all).
MODEL = """
kind: points
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 10, within_days: 30,
     per: occurrence}
  - {name: white paper, event: asset_download, points: 20}
decay: {half_life_days: 10}
"""
LEADS = "lead_id,email\nV1,v1@example.com\nV3,v3@example.com\n"
HEADER = "event_id,lead_id,anonymous_id,type,occurred_at,product_line,url\n"
OWN = "o1,V1,,page_view,2026-08-01T00:00:00Z,widgets,/home\no3,V3,,page_view,2026-08-01T00:00:00Z,widgets,/home\n"
VISITS = [  # (event_id, visitor, type, time, url)
    ("a1", "anon-1", "page_view", "2026-10-22T00:00:00Z", "/pricing"),  # 10 days before as_of: 10 → 5
    ("a2", "anon-1", "page_view", "2026-09-01T00:00:00Z", "/pricing"),  # outside the 30-day window
    ("a3", "anon-1", "asset_download", "2026-10-27T00:00:00Z", ""),  # 5 days: 20 × 0.5^0.5 = 14.14
    ("b1", "anon-2", "page_view", "2026-06-01T00:00:00Z", "/pricing"),  # never claimed, expired
    ("b2", "anon-2", "page_view", "2026-10-30T00:00:00Z", "/pricing"),  # never claimed, recent
    ("c1", "anon-3", "page_view", "2026-06-01T00:00:00Z", "/pricing"),  # claimed by V3's lead row
]
IDENTIFY = "id1,V1,anon-1,identify,2026-10-30T00:00:00Z,,\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    from tests.postgres import postgres_url, search_path_url, throwaway_schema

    if request.param == "sqlite":
        yield {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("visitors", "known")}
        return
    base = postgres_url()
    with throwaway_schema(base, "v1") as a, throwaway_schema(base, "v2") as b:
        try:
            yield {"visitors": search_path_url(base, a), "known": search_path_url(base, b)}
        finally:
            engine_for.cache_clear()


def _files(folder: Path, rows: str, leads: str = LEADS) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "portfolio.yaml").write_text(PORTFOLIO)
    (folder / "discovery.yaml").write_text(MODEL)
    (folder / "leads.csv").write_text(leads)
    (folder / "events.csv").write_text(HEADER + rows)
    return str(folder / "portfolio.yaml")


def _ingest(path: str, url: str, *kinds: str) -> None:
    portfolio = load_portfolio(Path(path))
    for kind in kinds:
        ingest_file(portfolio, kind, Path(path).parent / f"{kind}.csv", url)


def _points(url: str, lead: str) -> tuple[Any, ...]:
    [row] = _journeys(url, (lead,))
    return row["score"], row["breakdown"]


def test_identified_visits_count_with_their_original_times(tmp_path: Path, urls: dict[str, str]) -> None:
    anonymous = "".join(f"{e},,{v},{k},{t},,{u}\n" for e, v, k, t, u in VISITS)
    path = _files(tmp_path / "v", OWN + anonymous)
    _ingest(path, urls["visitors"], "leads", "events")
    score_portfolio(path, as_of=AS_OF, database_url=urls["visitors"])
    assert _points(urls["visitors"], "V1") == (0.0, [])  # the visitor is nobody yet

    (tmp_path / "v" / "events.csv").write_text(HEADER + IDENTIFY)
    _ingest(path, urls["visitors"], "events")
    score_portfolio(path, as_of=AS_OF, database_url=urls["visitors"])
    assert _points(urls["visitors"], "V1") == (
        19.14,
        [{"rule": "pricing page", "points": 5.0}, {"rule": "white paper", "points": 14.14}],
    )
    # Exactly what a store where V1 was known from the start holds.
    known = "".join(f"{e},V1,,{k},{t},,{u}\n" for e, v, k, t, u in VISITS if v == "anon-1")
    reference = _files(tmp_path / "k", OWN + known + IDENTIFY.replace("anon-1", ""))
    _ingest(reference, urls["known"], "leads", "events")
    score_portfolio(reference, as_of=AS_OF, database_url=urls["known"])
    assert _journeys(urls["visitors"], ("V1",)) == _journeys(urls["known"], ("V1",))

    # A replay before the identify event: the visitor was not known to be V1 then.
    before = lead_as_of(load_portfolio(Path(path)), "V1", datetime(2026, 10, 29, tzinfo=UTC), urls["visitors"])
    assert before is not None and before["journeys"][0]["breakdown"] == []


@pytest.fixture
def cli(tmp_path: Path, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", urls["visitors"])
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    engine_for.cache_clear()
    anonymous = "".join(f"{e},,{v},{k},{t},,{u}\n" for e, v, k, t, u in VISITS)
    path = _files(
        tmp_path / "v", OWN + anonymous + IDENTIFY, "lead_id,email,anonymous_ids\nV1,v1@x.com,\nV3,v3@x.com,anon-3\n"
    )
    _ingest(path, urls["visitors"], "leads", "events")
    yield path
    get_settings.cache_clear()


def test_retention_deletes_only_unlinked_expired_anonymous_events(cli: str, urls: dict[str, str]) -> None:
    def remaining() -> list[str]:
        with engine_for(urls["visitors"]).connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT event_id FROM anonymous_events ORDER BY event_id"))]

    with engine_for(urls["visitors"]).connect() as conn:
        links = conn.execute(text("SELECT anonymous_id, source FROM visitor_links ORDER BY anonymous_id")).all()
    assert [tuple(link) for link in links] == [("anon-1", "identify"), ("anon-3", "lead row")]
    args = ["leads", "purge-anonymous", "--portfolio", cli, "--as-of", "2026-11-01T00:00:00Z", "--json"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"anonymous_deleted": 1}
    assert remaining() == ["a1", "a2", "a3", "b2", "c1"]  # b1 only: anon-2 is nobody and June is > 90 days
    again = CliRunner().invoke(app, args, env={"COLUMNS": "1000"})
    assert json.loads(again.stdout) == {"anonymous_deleted": 0}
