"""Merging duplicates for real: scores after a merge equal a store where the events were written under
the survivor; an unmerge gives back the store that was never merged; replays before the merge keep the
two leads apart. SQLite and PostgreSQL, through ``score_portfolio`` and the ``leadscore leads`` CLI."""

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
from store.merges import Pair, merge, unmerge
from store.settings import get_settings
from tests.postgres import postgres_url, search_path_url, throwaway_schema

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
MERGED_AT = datetime(2026, 10, 20, tzinfo=UTC)
BEFORE = datetime(2026, 10, 15, tzinfo=UTC)

PORTFOLIO = """
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  widgets:
    bands: {cold: [0, 20], warm: [20, 50], hot: [50, 100]}
    qualifications: {MQL: 50}
    stages:
      discovery: {model: discovery.yaml}
  gadgets:
    bands: {cold: [0, 20], hot: [20, 100]}
    stages:
      discovery: {model: discovery.yaml}
"""
MODEL = """
kind: points
fit:
  - {name: persona, when: {job_title: {matches: "(?i)\\\\bvp\\\\b"}}, points: 20}
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 10, per: occurrence,
     max: 30, within_days: 45}
  - {name: white paper, event: asset_download, points: 15}
decay: {half_life_days: 30}
"""
LEADS = """lead_id,email,job_title,product_interest
L1,l1@example.com,VP Sales,widgets
L2,l2@example.com,Student,widgets
L1b, L1@Example.com ,Engineer,
"""
HEADER = "event_id,lead_id,type,occurred_at,product_line,properties\n"
PRICING = '"{""url"": ""/pricing""}"'
EVENTS = [
    f"e0,L1,page_view,2026-09-01T10:00:00Z,widgets,{PRICING}",
    f"e1,L1,page_view,2026-10-01T10:00:00Z,,{PRICING}",
    f"e2,L1b,page_view,2026-10-02T10:00:00Z,widgets,{PRICING}",
    "e3,L1b,asset_download,2026-10-03T10:00:00Z,,{}",
    f"e4,L2,page_view,2026-10-04T10:00:00Z,widgets,{PRICING}",
    f"e5,L1b,page_view,2026-10-05T10:00:00Z,gadgets,{PRICING}",
    "e6,L1b,manual_adjustment,2026-10-06T10:00:00Z,widgets,"
    '"{""points"": 7, ""reason"": ""met at fair"", ""author"": ""ann""}"',
]


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Three databases: ``merged`` (L1b's events as written, merged later), ``reference`` (L1b's events
    written under L1, no L1b) and ``apart`` (as written, never merged)."""
    names = ("merged", "reference", "apart")
    if request.param == "sqlite":
        yield {name: f"sqlite:///{tmp_path}/{name}.db" for name in names}
        return
    base = postgres_url()
    with throwaway_schema(base, "m1") as a, throwaway_schema(base, "m2") as b, throwaway_schema(base, "m3") as c:
        try:
            yield dict(zip(names, (search_path_url(base, s) for s in (a, b, c)), strict=True))
        finally:
            engine_for.cache_clear()


def _load(tmp_path: Path, url: str, *, under_survivor: bool) -> str:
    (tmp_path / "portfolio.yaml").write_text(PORTFOLIO)
    (tmp_path / "discovery.yaml").write_text(MODEL)
    leads = LEADS if not under_survivor else "\n".join(LEADS.splitlines()[:-1]) + "\n"
    events = HEADER + "\n".join(line.replace(",L1b,", ",L1,") if under_survivor else line for line in EVENTS) + "\n"
    (tmp_path / "leads.csv").write_text(leads)
    (tmp_path / "events.csv").write_text(events)
    portfolio = load_portfolio(tmp_path / "portfolio.yaml")
    ingest_file(portfolio, "leads", tmp_path / "leads.csv", url)
    ingest_file(portfolio, "events", tmp_path / "events.csv", url)
    return str(tmp_path / "portfolio.yaml")


def _journeys(url: str, leads: tuple[str, ...] = ("L1", "L2")) -> list[dict[str, Any]]:
    """Every journey row of ``leads`` with its latest snapshot and milestones, by lead id (keys differ)."""
    sql = (
        "SELECT l.lead_id, j.product_line, j.stage, j.status, j.opened_at, j.stage_entered_at, j.score_from, "
        "j.entered_by, j.score, j.band, j.qualification, "
        "(SELECT CAST(s.breakdown AS TEXT) FROM score_snapshots s WHERE s.journey_id = j.id "
        " ORDER BY s.as_of DESC, s.step DESC, s.id DESC LIMIT 1) AS breakdown, "
        "(SELECT MIN(m.reached_at) FROM qualification_milestones m WHERE m.journey_id = j.id) AS reached "
        "FROM journeys j JOIN leads l ON l.key = j.lead_key ORDER BY l.lead_id, j.product_line"
    )
    with engine_for(url).connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(text(sql))]
    for row in rows:
        row["breakdown"] = json.loads(row["breakdown"]) if row["breakdown"] else None
    return [row for row in rows if row["lead_id"] in leads]


def test_scores_after_a_merge_equal_a_store_written_under_the_survivor(tmp_path: Path, stores: dict[str, str]) -> None:
    portfolio = (
        _load(tmp_path / "m", stores["merged"], under_survivor=False) if (tmp_path / "m").mkdir() is None else ""
    )
    reference = (
        _load(tmp_path / "r", stores["reference"], under_survivor=True) if (tmp_path / "r").mkdir() is None else ""
    )
    engine = engine_for(stores["merged"])
    assert merge(engine, [Pair("L1", "L1b", "t:2")], at=MERGED_AT, source="test") == {"merged": 1, "already": 0}

    score_portfolio(portfolio, as_of=AS_OF, database_url=stores["merged"])
    score_portfolio(reference, as_of=AS_OF, database_url=stores["reference"])

    merged, expected = _journeys(stores["merged"]), _journeys(stores["reference"])
    assert merged == expected
    widgets = next(row for row in merged if row["lead_id"] == "L1" and row["product_line"] == "widgets")
    # persona 20 + 2 pricing visits within 45 days (Oct 1 under L1, Oct 2 under L1b; Sep 1 is outside the
    # window) decayed with a 30-day half-life, L1b's white paper (decayed) and its adjustment (never decayed).
    assert (widgets["score"], widgets["breakdown"]) == (
        44.73,
        [
            {"rule": "persona", "points": 20.0},
            {"rule": "pricing page", "points": 9.98},
            {"rule": "white paper", "points": 7.75},
            {"rule": "manual adjustments", "points": 7.0},
        ],
    )
    assert {row["product_line"]: row["score"] is not None for row in merged if row["lead_id"] == "L1"} == {
        "gadgets": True,
        "widgets": True,
    }
    aliased = _journeys(stores["merged"], ("L1b",))
    assert [(row["product_line"], row["status"], row["score"]) for row in aliased] == [
        ("gadgets", "aliased", None),
        ("widgets", "aliased", None),
    ]
    # A re-run changes nothing; merging again is a no-op.
    assert score_portfolio(portfolio, as_of=AS_OF, database_url=stores["merged"])["changed"] == 0
    assert merge(engine, [Pair("L1", "L1b", "t:2")], at=MERGED_AT, source="test") == {"merged": 0, "already": 1}


def test_unmerge_restores_both_and_replays_before_the_merge_show_them_apart(
    tmp_path: Path, stores: dict[str, str]
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "a").mkdir()
    portfolio = _load(tmp_path / "m", stores["merged"], under_survivor=False)
    apart = _load(tmp_path / "a", stores["apart"], under_survivor=False)
    engine = engine_for(stores["merged"])
    merge(engine, [Pair("L1", "L1b", "t:2")], at=MERGED_AT, source="test")
    score_portfolio(portfolio, as_of=AS_OF, database_url=stores["merged"])
    score_portfolio(apart, as_of=AS_OF, database_url=stores["apart"])
    loaded = load_portfolio(Path(portfolio))

    # Replays before the merge: the two leads apart, exactly as in the store never merged.
    for lead in ("L1", "L1b"):
        assert lead_as_of(loaded, lead, BEFORE, stores["merged"]) == lead_as_of(loaded, lead, BEFORE, stores["apart"])
    before = lead_as_of(loaded, "L1", BEFORE, stores["merged"])
    assert before is not None and [j["product_line"] for j in before["journeys"]] == ["widgets"]

    assert unmerge(engine, [Pair("", "L1b", "t:2")], at=datetime(2026, 10, 25, tzinfo=UTC)) == {
        "unmerged": 1,
        "not_merged": 0,
    }
    score_portfolio(portfolio, as_of=AS_OF, database_url=stores["merged"])
    everyone = ("L1", "L1b", "L2")
    assert _journeys(stores["merged"], everyone) == _journeys(stores["apart"], everyone)
    assert unmerge(engine, [Pair("", "L1b", "t:2")], at=AS_OF) == {"unmerged": 0, "not_merged": 1}
    # The alias row is kept: a replay of the merged period still counts L1b's events for L1's journey.
    during = lead_as_of(loaded, "L1", datetime(2026, 10, 22, tzinfo=UTC), stores["merged"])
    assert during is not None
    assert [item["rule"] for item in during["journeys"][0]["breakdown"]] == [
        "persona",
        "pricing page",
        "white paper",
        "manual adjustments",
    ]


@pytest.fixture
def cli(tmp_path: Path, stores: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", stores["merged"])
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    engine_for.cache_clear()
    _load(tmp_path, stores["merged"], under_survivor=False)
    yield tmp_path
    get_settings.cache_clear()


def _run(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_cli_refuses_bad_files_naming_line_and_field_then_merges_by_email(cli: Path) -> None:
    bad = cli / "pairs.csv"
    bad.write_text("survivor,merged\nL1,L1b\nL1,nobody\nL2,L2\n,L1\n")
    refused = _run("leads", "merge", bad, code=2)
    assert f"{bad}:3: field merged: unknown lead id 'nobody'" in refused.output
    assert f"{bad}:4: field merged: a lead cannot be merged into itself ('L2')" in refused.output
    assert f"{bad}:5: field survivor: empty lead id" in refused.output
    with engine_for(get_settings().database_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lead_aliases")).scalar_one() == 0  # all or nothing

    cycle = cli / "cycle.csv"
    cycle.write_text("survivor,merged\nL1,L1b\nL1b,L1\n")
    assert _run("leads", "merge", cycle, code=2).output.splitlines()[1:] == [
        f"{cycle}:2: field merged: merging 'L1b' into 'L1' closes a cycle (L1b → L1 → L1b)",
        f"{cycle}:3: field merged: merging 'L1' into 'L1b' closes a cycle (L1 → L1b → L1)",
    ]

    assert json.loads(_run("leads", "merge", "--auto", "--json").stdout) == {"merged": 1, "already": 0}
    assert json.loads(_run("leads", "merge", "--auto", "--json").stdout) == {"merged": 0, "already": 0}
    good = cli / "good.csv"
    good.write_text("survivor,merged\nL1,L1b\n")
    assert json.loads(_run("leads", "merge", good, "--json").stdout) == {"merged": 0, "already": 1}
    assert json.loads(_run("leads", "unmerge", good, "--json").stdout) == {"unmerged": 1, "not_merged": 0}
