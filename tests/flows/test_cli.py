"""The ``leadscore`` CLI end to end: a tiny portfolio, a SQLite store in tmp_path, real Prefect flow runs."""

import gzip
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from typer.testing import CliRunner

# Importing the Prefect SDK configures its log handlers on the current sys.stderr. Do it now, not inside the
# first CliRunner.invoke: the handler would keep writing to that invocation's stream after it is closed.
import flows.scoring  # noqa: F401
from flows.cli import app
from flows.database import engine_for
from stages.portfolio import load_portfolio
from store.ingest import ingest_events
from store.ingest.event_stage import EventStage
from store.settings import get_settings
from store.tables import Event, Run, ScoreSnapshot

NOW = datetime.now(UTC).replace(microsecond=0)


def test_help_lists_the_commands_in_their_usual_order() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    listed = [name for name in re.findall(r"^│ (\S+) ", result.stdout, re.MULTILINE) if not name.startswith("-")]
    assert listed == [
        "init", "ingest", "score", "explain", "adjust", "score-file", "demo", "daily", "learn", "backtest", "review",
        "nurture", "suppress", "serve", "report", "stages", "audiences", "accounts", "leads", "api", "users",
    ]  # fmt: skip


def ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


PORTFOLIO = """name: tiny
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  crm:
    bands: {cold: [0, 20], warm: [20, 50], hot: [50, 100]}
    qualifications: {MQL: 20}
    stages:
      discovery: {model: models/discovery.yaml, promote_at: 90, entry: carry}
      evaluation: {model: models/evaluation.yaml, entry: reset}
"""
DISCOVERY = """kind: points
fit:
  - {name: persona title, when: {job_title: {matches: "(?i)head of|director"}}, points: 15}
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 5, per: occurrence, max: 20}
"""
EVALUATION = """kind: points
behaviour:
  - {name: demo request, event: demo_request, points: 30}
"""
LEADS = """lead_id,email,job_title,product_interest
L1,l1@example.com,Head of Sales,crm
L2,l2@example.com,Engineer,crm
L3,not-an-email,Director,crm
L4,l4@example.com,Director,
L5,l5@example.com,Director,widgets
,l6@example.com,Director,crm
L7,l7@example.com,Director,
"""
EVENTS = f"""event_id,lead_id,type,occurred_at,product_line,url
e1,L1,page_view,{ago(30)},crm,/pricing
e2,L1,page_view,{ago(29)},,/pricing
e3,L2,page_view,{ago(28)},crm,/pricing/team
e4,L9,page_view,{ago(28)},crm,/pricing
e5,L2,page_view,2026-10-04T10:00:00,crm,/pricing
e6,L4,page_view,{ago(27)},crm,/pricing
e7,L1,page_view,{ago(5)},crm,/pricing
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh store for each test; the settings and the engine are cached per process, so reset both."""
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.delenv("LEADSCORE_PORTFOLIO", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    engine_for.cache_clear()
    (tmp_path / "models").mkdir()
    (tmp_path / "portfolio.yaml").write_text(PORTFOLIO)
    (tmp_path / "models" / "discovery.yaml").write_text(DISCOVERY)
    (tmp_path / "models" / "evaluation.yaml").write_text(EVALUATION)
    (tmp_path / "leads.csv").write_text(LEADS)
    (tmp_path / "events.csv").write_text(EVENTS)
    yield tmp_path
    engine_for(get_settings().database_url).dispose()
    get_settings.cache_clear()
    engine_for.cache_clear()


def run(*args: str | Path, code: int = 0) -> Any:
    # A wide terminal: rich would otherwise wrap usage errors that name long temporary paths.
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exit_code == code, (result.output, result.exception)
    return result


def run_json(*args: str | Path) -> Any:
    return json.loads(run(*args, "--json").stdout)


def counts() -> tuple[int, int]:
    with Session(engine_for(get_settings().database_url)) as session:
        snapshots = session.exec(select(func.count()).select_from(ScoreSnapshot)).one()[0]
        runs = session.exec(select(func.count()).select_from(Run)).one()[0]
    return snapshots, runs


def ingest_both(tmp_path: Path) -> None:
    portfolio = tmp_path / "portfolio.yaml"
    run("ingest", "leads", tmp_path / "leads.csv", "--portfolio", portfolio, "--json")
    run("ingest", "events", tmp_path / "events.csv", "--portfolio", portfolio, "--json")


def test_init_writes_a_loadable_portfolio_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "starter"
    result = run("init", target)
    assert "Starter portfolio written" in result.stdout

    portfolio = load_portfolio(target / "portfolio.yaml")
    assert set(portfolio.product_lines) == {"crm-suite", "analytics-cloud"}
    assert (target / "models" / "crm-suite" / "discovery.yaml").is_file()

    (target / "portfolio.yaml").write_text("# my edits\n" + (target / "portfolio.yaml").read_text())
    refused = run("init", target, code=1)
    assert "exists; not overwriting" in refused.output.replace("\n", " ")
    assert (target / "portfolio.yaml").read_text().startswith("# my edits\n")


def test_ingest_leads_counts_rejects_and_reingest_is_a_no_op(cli: Path) -> None:
    args = ("ingest", "leads", cli / "leads.csv", "--portfolio", cli / "portfolio.yaml")
    first = run_json(*args)

    assert {k: first[k] for k in ("kind", "read", "accepted", "inserted", "updated", "rejected")} == {
        "kind": "leads",
        "read": 7,
        "accepted": 4,
        "inserted": 4,
        "updated": 0,
        "rejected": 3,
    }
    assert first["journeys_opened"] == 2  # L1 and L2: L4 and L7 show no interest yet
    rejects = sorted((r["line"], r["field"], r["reason"]) for r in first["rejects"])
    assert [(line, field) for line, field, _ in rejects] == [(4, "email"), (6, "product_interest"), (7, "lead_id")]
    assert "not-an-email" in rejects[0][2]
    assert "widgets" in rejects[1][2]
    assert all(reason for _, _, reason in rejects)
    sidecar = (cli / "leads.csv.rejects.csv").read_text().splitlines()
    assert sidecar[0] == "source,line,field,reason,raw"
    assert [row.split(",")[1:3] for row in sidecar[1:]] == [["4", "email"], ["6", "product_interest"], ["7", "lead_id"]]

    again = run_json(*args)
    assert (again["read"], again["inserted"], again["updated"], again["rejected"], again["journeys_opened"]) == (
        7,
        0,
        0,
        3,
        0,
    )

    human = run(*args)
    assert "read 7, inserted 0, updated 0, rejected 3, journeys opened 0" in human.stdout.replace("\n", " ")


def test_ingest_events_counts_and_rejects(cli: Path) -> None:
    run("ingest", "leads", cli / "leads.csv", "--portfolio", cli / "portfolio.yaml")
    args = ("ingest", "events", cli / "events.csv", "--portfolio", cli / "portfolio.yaml")
    first = run_json(*args)

    assert {k: first[k] for k in ("kind", "read", "inserted", "rejected", "journeys_opened")} == {
        "kind": "events",
        "read": 7,
        "inserted": 5,
        "rejected": 2,
        "journeys_opened": 1,  # L4's crm event opens its journey
    }
    rejects = sorted((r["line"], r["field"], r["reason"]) for r in first["rejects"])
    assert [(line, field) for line, field, _ in rejects] == [(5, "lead_id"), (6, "occurred_at")]
    assert "L9" in rejects[0][2]
    assert "2026-10-04T10:00:00" in rejects[1][2]

    again = run_json(*args)
    assert (again["read"], again["inserted"], again["rejected"], again["journeys_opened"]) == (7, 0, 2, 0)


def test_ingest_backfill_loads_compressed_files_as_one_load(cli: Path) -> None:
    run("ingest", "leads", cli / "leads.csv", "--portfolio", cli / "portfolio.yaml")
    header, *rows = EVENTS.splitlines(keepends=True)
    first, second = cli / "a.csv.gz", cli / "b.csv.gz"
    first.write_bytes(gzip.compress("".join([header, *rows[:4]]).encode()))
    second.write_bytes(gzip.compress("".join([header, *rows[4:]]).encode()))
    refused = run("ingest", "events", first, second, "--portfolio", cli / "portfolio.yaml", code=2)
    assert "add --backfill" in refused.output

    args = ("ingest", "events", first, second, "--backfill", "--portfolio", cli / "portfolio.yaml")
    loaded = run_json(*args)
    assert {k: loaded[k] for k in ("source", "read", "inserted", "rejected", "journeys_opened")} == {
        "source": "2 files",
        "read": 7,
        "inserted": 5,
        "rejected": 2,
        "journeys_opened": 1,
    }
    # Each file's rejects beside it, by its own line numbers: e4 (unknown lead) and e5 (no time zone).
    assert (cli / "a.csv.gz.rejects.csv").read_text().splitlines()[1].split(",")[1:3] == ["5", "lead_id"]
    assert (cli / "b.csv.gz.rejects.csv").read_text().splitlines()[1].split(",")[1:3] == ["2", "occurred_at"]
    assert run_json(*args)["inserted"] == 0


def test_events_a_killed_backfill_staged_are_reported_then_merged_and_counted_by_the_next(cli: Path) -> None:
    """A back-fill killed after staging its first file leaves those events outside the store: a plain
    ingest meanwhile says so, and the next back-fill merges them and counts them as inserted."""
    portfolio = cli / "portfolio.yaml"
    run("ingest", "leads", cli / "leads.csv", "--portfolio", portfolio)
    header, *rows = EVENTS.splitlines(keepends=True)
    first, second = cli / "a.csv", cli / "b.csv"
    first.write_text("".join([header, *rows[:4]]))  # e1-e3 (e4: unknown lead)
    second.write_text("".join([header, *rows[4:]]))  # e6, e7 (e5: no time zone)
    stage = EventStage.open(get_settings().database_url)  # what the kill leaves: the first file staged
    staged = ingest_events(stage.engine, first, event_types={"page_view"}, product_lines={"crm"}, stage=stage.table)
    stage.close(delete=False)
    assert staged.inserted == 3 and (cli / "x.db.backfill").exists()

    plain = run_json("ingest", "events", second, "--portfolio", portfolio)
    assert plain["inserted"] == 2
    assert plain["notes"] == [
        f"a killed back-fill left events staged in {cli / 'x.db.backfill'}: run it again with --backfill"
    ]

    again = run_json("ingest", "events", first, second, "--backfill", "--portfolio", portfolio)
    assert (again["read"], again["inserted"], again["rejected"], again["notes"]) == (7, 3, 2, [])
    assert not (cli / "x.db.backfill").exists()
    with engine_for(get_settings().database_url).connect() as conn:
        assert sorted(conn.execute(select(Event.event_id)).scalars()) == ["e1", "e2", "e3", "e6", "e7"]


def test_ingest_refuses_a_missing_file_and_an_unknown_kind(cli: Path) -> None:
    missing = run("ingest", "leads", cli / "nope.csv", code=2)
    assert "does not exist" in missing.output
    kind = run("ingest", "people", cli / "leads.csv", "--portfolio", cli / "portfolio.yaml", code=2)
    assert "leads, events or accounts" in kind.output


def test_score_twice_then_replay_a_past_date_read_only(cli: Path) -> None:
    ingest_both(cli)
    portfolio = cli / "portfolio.yaml"

    first = run_json("score", "--portfolio", portfolio)
    assert first["run_id"]
    assert (first["scored"], first["changed"]) == (3, 3)
    assert first["bands"] == {"crm": {"discovery/warm": 2, "discovery/cold": 1}}
    assert [(r["lead_id"], r["score"], r["band"], r["reasons"]) for r in first["top"]["crm/discovery"]] == [
        ("L1", 30.0, "warm", "persona title:+15; pricing page:+15"),
        ("L4", 20.0, "warm", "persona title:+15; pricing page:+5"),
        ("L2", 5.0, "cold", "pricing page:+5"),
    ]
    assert counts() == (3, 1)

    second = run_json("score", "--portfolio", portfolio)
    assert (second["scored"], second["changed"]) == (3, 0)
    assert second["run_id"] != first["run_id"]
    assert counts() == (3, 2)

    # ten days ago, L1's latest pricing view (5 days ago) had not happened: 25, not 30
    as_of = ago(10)
    replay = run_json("score", "--portfolio", portfolio, "--as-of", as_of)
    assert replay["run_id"] is None
    assert replay["as_of"] == (NOW - timedelta(days=10)).isoformat()
    # Nothing is written; the run it replays (ten days ago, before any run) would have scored all three.
    assert (replay["scored"], replay["changed"], replay["would_change"]) == (3, 0, 3)
    assert replay["top"]["crm/discovery"][0]["score"] == 25.0
    assert counts() == (3, 2)  # no snapshot, no run
    current = run_json("explain", "L1")["journeys"][0]
    assert (current["score"], len(current["history"])) == (30.0, 1)

    bad = run("score", "--portfolio", portfolio, "--as-of", "2026-10-01T00:00:00", code=2)
    assert "has no time zone" in bad.output
    garbage = run("score", "--portfolio", portfolio, "--as-of", "last week", code=2)
    assert "not an ISO-8601 time" in garbage.output


def test_explain_then_adjust_then_explain(cli: Path) -> None:
    ingest_both(cli)
    portfolio = cli / "portfolio.yaml"
    run("score", "--portfolio", portfolio, "--json")

    before = run_json("explain", "L1")
    assert before["lead_id"] == "L1"
    [journey] = before["journeys"]
    assert (journey["product_line"], journey["stage"], journey["score"], journey["band"]) == (
        "crm",
        "discovery",
        30.0,
        "warm",
    )
    assert journey["qualification"] == "MQL"
    assert journey["breakdown"] == [
        {"rule": "persona title", "points": 15.0},
        {"rule": "pricing page", "points": 15.0},
    ]
    assert len(journey["history"]) == 1
    assert datetime.fromisoformat(journey["history"][0]["as_of"]) >= NOW  # ISO-8601 in JSON

    reason = "[vip] met at trade show"
    adjusted = run("adjust", "L1", "--product-line", "crm", "--points", "10", "--reason", reason, "-p", portfolio)
    assert "L1: +10 ([vip] met at trade show)" in adjusted.stdout  # shown as written, not read as markup
    assert "crm score now 40.0" in adjusted.stdout.replace("\n", " ")

    after = run_json("explain", "L1", "--product-line", "crm")
    [journey] = after["journeys"]
    assert (journey["score"], journey["band"]) == (40.0, "warm")
    assert journey["breakdown"] == [
        {"rule": "persona title", "points": 15.0},
        {"rule": "pricing page", "points": 15.0},
        {"rule": "manual adjustments", "points": 10.0},
    ]
    assert [h["score"] for h in journey["history"]] == [30.0, 40.0]

    human = run("explain", "L1")
    assert "L1 · crm · stage discovery: score 40.0 (warm); current level MQL, milestones reached MQL" in human.stdout
    assert "manual adjustments" in human.stdout
    assert "[vip] met at trade show" in human.stdout and "cli" in human.stdout  # the reason and the author
    [adjustment] = journey["adjustments"]
    assert (adjustment["points"], adjustment["reason"], adjustment["author"]) == (10.0, reason, "cli")

    assert "unknown lead 'L404'" in run("explain", "L404", code=1).output
    assert (
        "unknown lead 'L404'"
        in run(
            "adjust", "L404", "--product-line", "crm", "--points", "1", "--reason", "x", "-p", portfolio, code=1
        ).output
    )
    wrong_line = run("adjust", "L1", "--product-line", "erp", "--points", "1", "--reason", "x", "-p", portfolio, code=2)
    assert "unknown product line 'erp'; known: crm" in wrong_line.output
    for hostile in ("inf", "-inf", "nan", "1e400"):
        refused = run(
            "adjust", "L1", "--product-line", "crm", "--points", hostile, "--reason", "x", "-p", portfolio, code=2
        )
        assert "must be a finite number" in refused.output
    assert "crm score now 40.0" in run(
        "adjust", "L1", "--product-line", "crm", "--points", "0", "--reason", "still finite", "-p", portfolio
    ).stdout.replace("\n", " ")


def test_adjust_opens_the_journey_of_a_lead_without_one(cli: Path) -> None:
    ingest_both(cli)
    portfolio = cli / "portfolio.yaml"
    assert run_json("explain", "L7")["journeys"] == []
    assert "L7 has no journey yet" in run("explain", "L7").stdout
    assert "L2 · crm · stage discovery: not scored yet" in run("explain", "L2").stdout

    adjusted = run(
        "adjust", "L7", "--product-line", "crm", "--points", "-5", "--reason", "tire kicker", "--portfolio", portfolio
    )
    assert "crm score now 10.0" in adjusted.stdout.replace("\n", " ")  # Director +15, then -5
    [journey] = run_json("explain", "L7")["journeys"]
    assert (journey["product_line"], journey["stage"], journey["score"]) == ("crm", "discovery", 10.0)
    assert journey["breakdown"] == [
        {"rule": "persona title", "points": 15.0},
        {"rule": "manual adjustments", "points": -5.0},
    ]


def test_adjust_at_a_time_list_the_adjustments_and_explain_a_past_date(cli: Path) -> None:
    ingest_both(cli)
    portfolio = cli / "portfolio.yaml"
    run("score", "--portfolio", portfolio, "--json")
    when = ago(20)
    added = run_json(
        "adjust", "L2", "--product-line", "crm", "--points", "7", "--reason", "called", "--author", "ana",
        "--at", when, "-p", portfolio,
    )  # fmt: skip
    assert (added["at"], added["score"]) == ((NOW - timedelta(days=20)).isoformat(), 12.0)  # 5 + 7
    run("adjust", "L1", "--product-line", "crm", "--points", "-3", "--reason", "typo", "-p", portfolio)

    listed = run_json("adjust", "--list")
    assert [(r["lead_id"], r["points"], r["reason"], r["author"]) for r in listed] == [
        ("L2", 7.0, "called", "ana"),
        ("L1", -3.0, "typo", "cli"),
    ]
    assert [r["lead_id"] for r in run_json("adjust", "--list", "--author", "ana")] == ["L2"]
    assert [r["lead_id"] for r in run_json("adjust", "L1", "--list")] == ["L1"]
    assert run_json("adjust", "--list", "--until", ago(25)) == []
    assert "called" in run("adjust", "--list").stdout

    # 25 days ago L1 had two pricing views (30 and 29 days ago) besides its title (+15), and no adjustment.
    [past] = run_json("explain", "L1", "--as-of", ago(25), "-p", portfolio)["journeys"]
    assert (past["stage"], past["score"], past["band"], past["qualification"]) == ("discovery", 25.0, "warm", "MQL")
    assert past["breakdown"] == [{"rule": "persona title", "points": 15.0}, {"rule": "pricing page", "points": 10.0}]
    assert run_json("explain", "L2", "--as-of", ago(29), "-p", portfolio)["journeys"] == []  # opened 28 days ago
    assert "read-only replay" in run("explain", "L1", "--as-of", ago(25), "-p", portfolio).stdout


SCORE_MODEL = """kind: points
bands: {low: [0, 20], high: [20, 100]}
fit:
  - {name: persona title, when: {job_title: {matches: "(?i)head of|director"}}, points: 15}
  - {name: mid-size, when: {company_size: {between: [50, 1000]}}, points: 10}
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 5, per: occurrence}
"""
PLAIN_LEADS = """lead_id,job_title,company_size
A,Head of Sales,200
B,Engineer,lots
C,Director,
"""
PLAIN_EVENTS = """lead_id,type,occurred_at,url
A,page_view,2026-10-01T10:00:00Z,/pricing
C,page_view,2026-10-01T10:00:00Z,/pricing
C,page_view,2026-10-20T10:00:00Z,/pricing
B,page_view,2026-10-01T10:00:00Z,/pricing
"""


def test_score_file_writes_the_scored_csv_and_its_rejects(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(SCORE_MODEL)
    (tmp_path / "leads.csv").write_text(PLAIN_LEADS)
    (tmp_path / "events.csv").write_text(PLAIN_EVENTS)
    out = tmp_path / "scored.csv"
    args = ("score-file", tmp_path / "model.yaml", tmp_path / "leads.csv", "--out", out)
    summary = run_json(*args, "--events", tmp_path / "events.csv", "--as-of", "2026-10-10T00:00:00Z")

    rejects = tmp_path / "scored.rejects.csv"
    assert summary == {"scored": 2, "rejected": 2, "out": str(out), "rejects": str(rejects)}
    assert pl.read_csv(out, infer_schema=False).rows() == [
        ("A", "Head of Sales", "200", "30.0", "high", "persona title:+15; mid-size:+10; pricing page:+5"),
        ("C", "Director", None, "20.0", "high", "persona title:+15; pricing page:+5"),
    ]
    assert pl.read_csv(out, infer_schema=False).columns == [
        "lead_id",
        "job_title",
        "company_size",
        "score",
        "band",
        "top_rules",
    ]
    assert pl.read_csv(rejects, infer_schema=False).rows() == [
        (str(tmp_path / "leads.csv"), "3", "company_size", "not a number: 'lots'"),
        (
            str(tmp_path / "events.csv"),
            "5",
            "lead_id",
            "unknown lead_id 'B': not in the leads file, or rejected there",
        ),
    ]

    # without events nothing is rejected but B: a stale rejects file of an earlier run must not linger
    (tmp_path / "leads.csv").write_text(PLAIN_LEADS.replace("lots", "5000"))
    human = run(*args)
    assert "scored 3 rows" in human.stdout and "rejected 0" in human.stdout
    assert not rejects.exists()
    assert pl.read_csv(out, infer_schema=False).get_column("score").to_list() == ["25.0", "0.0", "15.0"]

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(SCORE_MODEL.replace("per: occurrence", "per: sometimes"))
    bad = run("score-file", invalid, tmp_path / "leads.csv", "--out", out, code=2)
    assert f"{invalid}:7: behaviour[0].per: Input should be 'once' or 'occurrence'" in bad.stderr
    missing = run("score-file", tmp_path / "model.yaml", tmp_path / "nope.csv", "--out", out, code=2)
    assert "does not exist" in missing.output


def test_an_invalid_portfolio_exits_2_naming_the_file_the_line_and_the_path(cli: Path) -> None:
    portfolio = cli / "portfolio.yaml"
    portfolio.write_text(PORTFOLIO.replace("models/evaluation.yaml", "models/missing.yaml"))
    result = run("score", "--portfolio", portfolio, "--json", code=2)
    assert result.stdout == ""  # nothing a script would try to parse
    assert result.stderr.splitlines() == [
        "invalid portfolio",
        f"{portfolio}:10: product_lines.crm.stages.evaluation.model: model file 'models/missing.yaml' not found "
        f"({cli / 'models' / 'missing.yaml'})",
    ]

    portfolio.write_text(PORTFOLIO)
    (cli / "models" / "discovery.yaml").write_text(
        DISCOVERY.replace("(?i)head of|director", "(?<!vice )[a-z]+ president")
    )
    result = run("ingest", "leads", cli / "leads.csv", "--portfolio", portfolio, code=2)
    model = cli / "models" / "discovery.yaml"
    title, problem = result.stderr.splitlines()
    assert title == "invalid portfolio"
    # the pattern is printed as written: '[a-z]' is not swallowed as console markup
    assert problem.startswith(
        f"{model}:3: fit[0].when.job_title.matches: invalid regular expression '(?<!vice )[a-z]+ president': look-"
    )

    assert "portfolio file" in run("score", "--portfolio", cli / "nope.yaml", code=2).output


def test_a_store_held_by_another_writer_is_one_clear_line(cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from tests.store.test_runlock import hold

    portfolio = cli / "portfolio.yaml"
    run("ingest", "leads", cli / "leads.csv", "--portfolio", portfolio, "--json")
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", f"sqlite:///{cli}/x.db?timeout=0.5")  # SQLite waits 0.5 s
    get_settings.cache_clear()
    engine_for.cache_clear()
    shell = sqlite3.connect(cli / "x.db", isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")  # like a sqlite3 shell left inside a write transaction
    try:
        busy = run("ingest", "events", cli / "events.csv", "--portfolio", portfolio, code=3)
    finally:
        shell.execute("ROLLBACK")
        shell.close()
    message = busy.output.replace("\n", " ").strip()
    assert message == (
        f"the store sqlite:///{cli}/x.db?timeout=0.5 is locked by another program (an open sqlite3 shell or a stuck "
        "process?); waited 0.5 s. Let it finish or close it, then run again."
    )

    process, run_id = hold(f"sqlite:///{cli}/x.db", "", "tiny")
    try:
        locked = run("score", "--portfolio", portfolio, code=3).output.replace("\n", " ")
    finally:
        process.kill()
        process.wait()
    assert f"another leadscore run is writing portfolio 'tiny' to this store (run {run_id}, pid {process.pid}" in locked
    assert "Traceback" not in locked
