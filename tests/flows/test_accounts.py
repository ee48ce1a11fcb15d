"""Accounts through real runs on SQLite and PostgreSQL: leads scored by ``score_portfolio``, then
``score_all_accounts`` rolls them up; the expected values are computed by hand in the comments.

Acme (account file row, domain acme.com) has four members: Ann (VP, by domain), Bob (Director, by
domain), Cid (Engineer, by domain) and Dee (Analyst, a gmail address but ``account_id: A-ACME``).
Eve is at gmail.com without an account id: free mail, no account. Fay is at beta.io, which is in no
accounts file: an implicit account named after the domain. A-EMPTY has no member. Nothing decays.
"""

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlmodel import Session, select

from flows.account_alerts import execute_account_actions
from flows.accounts import score_all_accounts
from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.scoring import score_portfolio
from models.files import SpecError
from nurture.audiences import load_audiences
from stages.portfolio import load_portfolio
from store.account_tables import AccountFiring, AccountMember, AccountScore
from store.accounts import read_last_account_scores
from store.audiences import read_audience_leads
from store.settings import Settings

T1 = datetime(2026, 11, 10, 12, tzinfo=UTC)
T2 = T1 + timedelta(days=10)  # nobody engaged any more (7-day window)
T3 = T2 + timedelta(days=1)  # Ann, Bob and Cid are back

PORTFOLIO = """
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  w:
    bands: {cold: [0, 30], warm: [30, 60], hot: [60, 100]}
    stages:
      only: {model: m.yaml}
    account_model:
      fit:
        - {name: software, when: {industry: {eq: software}}, points: 20}
        - {name: big, when: {employees: {ge: 200}}, points: 10}
      engaged: {within_days: 7, events: [page_view]}
      seniority:
        attribute: job_title
        levels: {executive: "(?i)^(vp|chief)", director: "(?i)director|head of", staff: "(?i)engineer|analyst"}
      rollups:
        - {name: best member, metric: max_score, points: 0.5}
        - {name: team, metric: sum_score, points: 0.1, max: 10}
        - {name: engaged members, metric: engaged_members, points: 5, max: 15}
        - {name: seniorities, metric: seniorities, points: 2}
      qualifications:
        buying group engaged: {engaged_members: 3, seniorities_any: [executive, director]}
      triggers:
        - name: hot account
          when: {score: {crosses_up: 60}}
          actions: [{notify_owner: {}}]
        - name: buying group
          when: {qualification_reached: buying group engaged}
          actions: [{notify_owner: {}}]
nurture:
  audiences:
    hot-accounts:
      platforms: [meta]
      accounts: {product_line: w, bands: [hot]}
"""
MODEL = """
kind: points
fit:
  - {name: vp, when: {job_title: {eq: vp}}, points: 20}
behaviour:
  - {name: visit, event: page_view, points: 10, per: occurrence}
"""
LEADS = """lead_id,email,first_name,last_name,job_title,account_id,product_interest,ads_opt_in
ann,ann@acme.com,Ann,A,vp,,w,yes
bob,bob@Acme.com,Bob,B,Director IT,,w,yes
cid,cid@acme.com,Cid,C,Engineer,,w,yes
dee,dee@gmail.com,Dee,D,Analyst,A-ACME,w,yes
eve,eve@gmail.com,Eve,E,vp,,w,yes
fay,fay@beta.io,Fay,F,Head of Ops,,w,yes
"""
ACCOUNTS = """account_id,name,domain,industry,employees,region,owner,tier
A-ACME,Acme,www.acme.com,software,250,EMEA,owner@seller.io,gold
A-EMPTY,Empty,empty.io,retail,5,NA,,
"""


class World:
    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.url = folder, url
        (folder / "m.yaml").write_text(MODEL)
        (folder / "portfolio.yaml").write_text(PORTFOLIO)
        self.portfolio = load_portfolio(folder / "portfolio.yaml")
        self.engine = engine_for(url)
        self.settings = Settings(database_url=url, outbox_dir=folder / "outbox")
        self.events = 0
        self.ingest("leads", LEADS)
        self.ingest("accounts", ACCOUNTS)

    def ingest(self, kind: str, text: str) -> None:
        path = self.folder / f"{kind}-{self.events}.csv"
        path.write_text(text)
        outcome = ingest_file(self.portfolio, kind, path, self.url)
        assert outcome.report.rejected == 0, outcome.report.rejects

    def views(self, lead: str, *at: datetime) -> None:
        rows = ["event_id,lead_id,type,occurred_at,product_line"]
        for when in at:
            self.events += 1
            rows.append(f"e{self.events},{lead},page_view,{when.isoformat()},w")
        self.ingest("events", "\n".join(rows) + "\n")

    def run(self, as_of: datetime) -> dict[str, Any]:
        score_portfolio(str(self.folder / "portfolio.yaml"), as_of=as_of, database_url=self.url)
        summary = score_all_accounts(self.engine, self.portfolio, as_of, write=True)
        summary["actions"] = execute_account_actions(self.engine, self.portfolio, self.settings)
        return summary

    def rows(self, table: type) -> list[Any]:
        with Session(self.engine) as session:
            return list(session.exec(select(table)))


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> World:
    world = World(tmp_path, database_url)
    hour = timedelta(hours=1)
    world.views("ann", T1 - 3 * hour, T1 - 2 * hour, T1 - hour)  # 20 (vp) + 30 = 50
    world.views("bob", T1 - 2 * hour, T1 - hour)  # 20
    world.views("cid", T1 - hour)  # 10
    world.views("eve", T1 - hour)  # 30, but no account
    world.views("fay", T1 - timedelta(days=10))  # 10, outside the 7-day window
    return world


def _state(world: World, as_of: datetime) -> dict[str, dict[str, Any]]:
    frame = read_last_account_scores(world.engine, "w", as_of)
    return {
        row["account_id"]: {
            "score": row["score"],
            "band": row["band"],
            "qualifications": row["qualifications"],
            "members": row["members"],
            "metrics": json.loads(row["metrics"]),
            "breakdown": {entry["rule"]: entry["points"] for entry in json.loads(row["breakdown"])},
        }
        for row in frame.to_dicts()
    }


def test_roll_ups_fit_bands_and_qualifications_exact(world: World) -> None:
    world.run(T1)
    state = _state(world, T1)
    assert set(state) == {"A-ACME", "A-EMPTY", "beta.io"}  # gmail.com forms no account
    acme = state["A-ACME"]
    # members 4; max 50; sum 50+20+10+0 = 80; engaged ann, bob, cid; levels executive, director, staff.
    assert acme["metrics"] == {
        "members": 4,
        "max_score": 50.0,
        "sum_score": 80.0,
        "engaged_members": 3,
        "seniorities": 3,
    }
    assert acme["breakdown"] == {
        "software": 20.0,
        "big": 10.0,
        "best member": 25.0,
        "team": 8.0,
        "engaged members": 15.0,
        "seniorities": 6.0,
    }
    assert (acme["score"], acme["band"], acme["qualifications"]) == (84.0, "hot", ["buying group engaged"])
    # Fay (Head of Ops, 10 points) is not engaged: best 5 + team 1.
    assert state["beta.io"] | {"metrics": None} == {
        "score": 6.0,
        "band": "cold",
        "qualifications": [],
        "members": 1,
        "metrics": None,
        "breakdown": {"best member": 5.0, "team": 1.0},
    }
    assert state["A-EMPTY"]["score"] == 0.0 and state["A-EMPTY"]["breakdown"] == {}
    members = {(m.lead_key, m.account_id, m.source) for m in world.rows(AccountMember)}
    keys = _keys(world)
    assert members == {
        (keys["ann"], "A-ACME", "domain"),
        (keys["bob"], "A-ACME", "domain"),
        (keys["cid"], "A-ACME", "domain"),
        (keys["dee"], "A-ACME", "account_id"),
        (keys["fay"], "beta.io", "domain"),
    }


def _keys(world: World) -> dict[str, int]:
    with world.engine.connect() as conn:  # closed: an open transaction's locks held the schema's DROP for 10–28 s
        return dict(pl.read_database("SELECT lead_id, key FROM leads", conn).iter_rows())


def test_triggers_fire_once_name_the_members_and_re_arm(world: World) -> None:
    first = world.run(T1)
    assert first["lines"]["w"]["firings"] == 2 and first["actions"] == {"notify_owner": {"done": 2}}
    firings = sorted(world.rows(AccountFiring), key=lambda f: f.trigger)
    assert [(f.account_id, f.trigger, f.direction, f.score, f.status) for f in firings] == [
        ("A-ACME", "buying group", "reached", 84.0, "done"),
        ("A-ACME", "hot account", "up", 84.0, "done"),
    ]
    assert firings[0].members == [
        {"lead_id": "ann", "name": "Ann A", "email": "ann@acme.com", "score": 50.0, "engaged": True,
         "seniority": "executive", "reasons": "visit:+30; vp:+20"},
        {"lead_id": "bob", "name": "Bob B", "email": "bob@acme.com", "score": 20.0, "engaged": True,
         "seniority": "director", "reasons": "visit:+20"},
        {"lead_id": "cid", "name": "Cid C", "email": "cid@acme.com", "score": 10.0, "engaged": True,
         "seniority": "staff", "reasons": "visit:+10"},
        {"lead_id": "dee", "name": "Dee D", "email": "dee@gmail.com", "score": 0.0, "engaged": False,
         "seniority": "staff", "reasons": ""},
    ]  # fmt: skip
    emails = sorted((world.folder / "outbox").rglob("*.eml"))
    assert len(emails) == 2
    texts = [message_from_bytes(path.read_bytes(), policy=policy.default) for path in emails]
    assert {m["To"] for m in texts} == {"owner@seller.io"}
    body = texts[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Ann A <ann@acme.com>, executive, engaged: 50.0 (visit:+30; vp:+20)" in body
    assert "Bob B <bob@acme.com>, director, engaged: 20.0 (visit:+20)" in body

    again = world.run(T1)  # the same run again: nothing new is written or sent
    assert again["lines"]["w"] == first["lines"]["w"] | {"snapshots": 0, "firings": 0}
    assert len(world.rows(AccountFiring)) == 2

    # T2: nobody engaged: 20+10+25+8 = 63, still hot; the buying group is no longer engaged (re-arms).
    second = world.run(T2)
    assert _state(world, T2)["A-ACME"]["score"] == 63.0
    assert _state(world, T2)["A-ACME"]["qualifications"] == []
    assert second["lines"]["w"]["firings"] == 0

    # T3: back: ann 60, bob 30, cid 20 → 20+10+30+10+15+6 = 91; the buying group fires a second time.
    world.views("ann", T3 - timedelta(hours=1))
    world.views("bob", T3 - timedelta(hours=1))
    world.views("cid", T3 - timedelta(hours=1))
    third = world.run(T3)
    assert _state(world, T3)["A-ACME"]["score"] == 91.0
    assert third["lines"]["w"]["firings"] == 1
    buying = [f for f in world.rows(AccountFiring) if f.trigger == "buying group"]
    assert [(f.score, f.score_before) for f in sorted(buying, key=lambda f: f.id)] == [(84.0, None), (91.0, 63.0)]


def test_replay_as_of_a_past_run_equals_its_snapshot(world: World) -> None:
    world.run(T1)
    world.views("dee", T2 - timedelta(hours=1))
    world.run(T2)
    replay = score_all_accounts(world.engine, world.portfolio, T1, write=False)
    assert "run_id" not in replay
    snapshots = len(world.rows(AccountScore))
    from flows.accounts import compute_accounts

    _, (scored,) = compute_accounts(world.engine, world.portfolio, T1)
    stored = _state(world, T1)
    for row in scored.result.to_dicts():
        assert stored[row["account_id"]]["score"] == row["score"]
        assert stored[row["account_id"]]["band"] == row["band"]
        assert stored[row["account_id"]]["qualifications"] == row["qualifications"]
        assert stored[row["account_id"]]["breakdown"] == {e["rule"]: e["points"] for e in row["breakdown"]}
    assert len(world.rows(AccountScore)) == snapshots  # a replay writes nothing
    assert _state(world, T2)["A-ACME"]["score"] != stored["A-ACME"]["score"]  # T2 differs: the replay is real


def test_account_audience_is_exactly_the_members_of_hot_accounts(world: World) -> None:
    world.run(T1)
    audiences = load_audiences(world.portfolio)
    spec = audiences["hot-accounts"].accounts
    assert spec is not None
    leads = read_audience_leads(world.engine, "hot-accounts", T1, None, spec.model_dump())
    keys = _keys(world)
    assert sorted(leads["lead_key"].to_list()) == sorted(keys[name] for name in ("ann", "bob", "cid", "dee"))


def test_the_daily_pipeline_scores_accounts_after_the_leads(world: World) -> None:
    from flows.daily import daily_pipeline

    summary = daily_pipeline(
        str(world.folder / "portfolio.yaml"),
        database_url=world.url,
        as_of=T1,
        audiences_dir=str(world.folder / "audiences"),
        report_path=None,
        outbox_dir=str(world.folder / "outbox"),
    )
    assert list(summary["timings"]) == ["score", "accounts", "overdue", "nurture", "audiences", "retention"]
    assert summary["accounts"]["lines"]["w"]["firings"] == 2
    assert summary["accounts"]["actions"] == {"notify_owner": {"done": 2}}
    (export,) = summary["audiences"]
    assert (export["audience"], export["members"], export["full"]) == ("hot-accounts", 4, 4)


def test_the_report_lists_the_hot_accounts(world: World) -> None:
    from flows.report import build_sections

    world.run(T1)
    _, sections = build_sections(world.portfolio, world.engine, generated_at=T1)
    (hot,) = [section for section in sections if section.key == "hot-accounts"]
    assert [{k: v for k, v in row.items() if k != "since run"} for row in hot.rows] == [
        {
            "product line": "w",
            "account": "A-ACME",
            "score": 84.0,
            "qualifications": "buying group engaged",
            "members": 4,
        }
    ]


def test_an_invalid_account_model_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MODEL)
    broken = PORTFOLIO.replace("seniorities_any: [executive, director]", "seniorities_any: [boss]").replace(
        "when: {score: {crosses_up: 60}}", "when: {stage_entered: only}"
    )
    (tmp_path / "portfolio.yaml").write_text(broken)
    with pytest.raises(SpecError) as caught:
        load_portfolio(tmp_path / "portfolio.yaml")
    text = str(caught.value)
    assert (
        "portfolio.yaml:23: product_lines.w.account_model.qualifications.buying group engaged.seniorities_any:" in text
    )
    assert "unknown levels ['boss']" in text
    assert "portfolio.yaml:26: product_lines.w.account_model.triggers[0].when: an account has no stage" in text


def test_cli_ingests_accounts_scores_shows_and_lists_them(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from store.settings import get_settings

    def run(*args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "1000"})
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.stdout) if "--json" in args else result.stdout

    monkeypatch.setenv("LEADSCORE_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.delenv("LEADSCORE_PORTFOLIO", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    engine_for.cache_clear()
    try:
        world = World(tmp_path, database_url)
        world.views("ann", T1 - timedelta(hours=1))  # ann 30
        (tmp_path / "more.csv").write_text("account_id,name,domain\nA-NEW,New,new.example\n")
        assert run("ingest", "accounts", "more.csv", "--json")["inserted"] == 1
        score_portfolio(str(tmp_path / "portfolio.yaml"), as_of=T1, database_url=database_url)
        when = T1.isoformat()
        replay = run("accounts", "score", "--as-of", when, "--json")
        assert "run_id" not in replay and replay["lines"]["w"]["accounts"] == 4
        written = run("accounts", "score", "--as-of", when, "--write", "--json")
        # Acme: 20 + 10 + best 15 + team 3 + one engaged 5 + one level 2 = 55 (warm): nothing fires.
        assert written["lines"]["w"]["snapshots"] == 4 and written["lines"]["w"]["firings"] == 0
        shown = run("accounts", "show", "A-ACME", "--as-of", when, "--json")["lines"]["w"]
        assert (shown["score"], shown["band"], shown["stored"]["score"]) == (55.0, "warm", 55.0)
        assert [m["score"] for m in shown["member_list"]] == [30.0, 0.0, 0.0, 0.0]
        top = run("accounts", "top", "-n", "2", "--json")["w"]
        assert [(row["account_id"], row["score"]) for row in top] == [("A-ACME", 55.0), ("A-EMPTY", 0.0)]
        assert "A-ACME" in run("accounts", "top")
    finally:
        get_settings.cache_clear()
        engine_for.cache_clear()
