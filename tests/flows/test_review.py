"""``review_models`` as a real Prefect flow run on a real store (SQLite, and PostgreSQL when configured)."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.database import engine_for
from flows.review import review_models
from store.tables import QualificationMilestone, ScoreSnapshot, StageTransition

T0 = datetime(2026, 6, 1, tzinfo=UTC)
MODEL = "kind: points\nfit:\n  - {name: any, when: {x: {present: true}}, points: 10}\n"


def portfolio(folder: Path, webhook: str) -> Path:
    (folder / "m.yaml").write_text(MODEL)
    path = folder / "portfolio.yaml"
    path.write_text(f"""monitoring:
  auc_floor: 0.7
  mql_to_opportunity_target: 0.3
  min_leads_per_band: 5
  notify_webhook: "{webhook}"
product_lines:
  crm:
    bands: {{cold: [0, 40], warm: [40, 70], hot: [70, 100]}}
    qualifications: {{MQL: 40}}
    opportunity_stage: opportunity
    stages:
      discovery: {{model: m.yaml, promote_at: 95}}
      evaluation: {{model: m.yaml, promote_at: 95}}
      opportunity: {{model: m.yaml}}
      customer: {{terminal: true, status: customer}}
      lost: {{terminal: true, status: lost}}
""")
    return path


def snapshot(journey: int, stage: str, score: float, days_before: float) -> dict[str, Any]:
    band = "cold" if score < 40 else "warm" if score < 70 else "hot"
    return {"journey_id": journey, "lead_key": journey, "product_line": "crm", "stage": stage,
            "run_id": f"run-{days_before}",
            "as_of": T0 - timedelta(days=days_before), "score": score, "band": band, "qualification": None,
            "breakdown": []}  # fmt: skip


def transition(journey: int, to: str, days_before: float, status: str = "active") -> dict[str, Any]:
    return {"journey_id": journey, "lead_key": journey, "product_line": "crm", "from_stage": None, "to_stage": to,
            "at": T0 - timedelta(days=days_before), "reason": "external", "source": "crm", "score_before": None,
            "score_after": None, "score_from": None, "status": status, "run_id": "r"}  # fmt: skip


def seed(url: str) -> None:
    snapshots, transitions, milestones = [], [], []
    # discovery: cold converts 10/20, hot only 4/20 — the model ranks backwards.
    for j in range(1, 41):
        hot = j > 20
        won = (j <= 10) if not hot else (j <= 24)
        snapshots += [snapshot(j, "discovery", 99, 60), snapshot(j, "discovery", 80 if hot else 10, 30)]
        snapshots.append(snapshot(j, "discovery", 0, 1))  # after the outcome: does not count
        transitions.append(transition(j, "customer" if won else "lost", 10, "customer" if won else "lost"))
    # evaluation: cold 1/10, hot 9/10 — a model that works.
    for j in range(41, 61):
        hot = j > 50
        won = j in (41, *range(51, 60))
        snapshots.append(snapshot(j, "evaluation", 90 if hot else 10, 30))
        transitions.append(transition(j, "customer" if won else "lost", 10, "customer" if won else "lost"))
    snapshots.append(snapshot(61, "evaluation", 90, 300))  # an outcome long ago: outside the window
    transitions.append(transition(61, "lost", 200, "lost"))
    # MQLs: 10 reached it 20 days ago; 41 and 42 then became opportunities, 43 was one before, 44 went elsewhere.
    for j in range(41, 51):
        milestones.append({"journey_id": j, "lead_key": j, "product_line": "crm", "qualification": "MQL",
                           "threshold": 40, "reached_at": T0 - timedelta(days=20), "stage": "discovery", "score": 45,
                           "run_id": "r", "breakdown": []})  # fmt: skip
    transitions += [transition(41, "opportunity", 15), transition(42, "opportunity", 15)]
    transitions += [transition(43, "opportunity", 25), transition(44, "evaluation", 15)]
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(ScoreSnapshot.__table__.insert(), snapshots)
        conn.execute(StageTransition.__table__.insert(), transitions)
        conn.execute(QualificationMilestone.__table__.insert(), milestones)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_review_warns_when_bands_invert_auc_drops_and_mqls_stall(database_url: str, tmp_path: Path, webhook) -> None:
    url, received = webhook
    seed(database_url)
    report = review_models(str(portfolio(tmp_path, url)), as_of=T0, database_url=database_url)
    assert report["warnings"] == [
        "crm/discovery: AUC 0.335 on 40 recent outcomes is below the floor 0.7",
        "ALERT crm/discovery: the top band 'hot' converts 20.0% (4/20), no better than the next band 'cold' at "
        "50.0% (10/20): top scores stopped converting better, revise the model",
        "crm: MQL → opportunity 20.0% (2/10) is below the target 30%",
    ]
    discovery, evaluation = report["stages"]
    assert (discovery["stage"], discovery["leads"], discovery["converted"], discovery["auc"]) == (
        "discovery",
        40,
        14,
        0.3352,
    )
    assert (evaluation["stage"], evaluation["leads"], evaluation["converted"], evaluation["auc"]) == (
        "evaluation",
        20,
        10,
        0.9,
    )
    assert [(b["band"], b["leads"], b["converted"]) for b in evaluation["bands"]] == [
        ("cold", 10, 1), ("warm", 0, 0), ("hot", 10, 9),
    ]  # fmt: skip
    assert report["qualified"] == [
        {"product_line": "crm", "qualification": "MQL", "opportunity_stage": "opportunity", "qualified": 10,
         "opportunities": 2, "rate": 0.2, "target": 0.3},
    ]  # fmt: skip
    # the lift chart on the same outcomes: discovery's top scores convert at 0.57 times its average rate
    assert [(r["stage"], r["decile"], r["leads"], r["converted"], r["lift"]) for r in report["lift"]] == [
        ("discovery", 1, 20, 10, 1.429), ("discovery", 6, 20, 4, 0.571),
        ("evaluation", 1, 10, 1, 0.2), ("evaluation", 6, 10, 9, 1.8),
    ]  # fmt: skip
    assert "| crm/discovery | 1.43 (20) |  |  |  |  | 0.57 (20) |  |  |  |  |" in received[0]["markdown"]
    assert report["notified"] == 204
    assert len(received) == 1 and received[0]["kind"] == "model-review"
    assert received[0]["warnings"] == report["warnings"]


def test_review_without_outcomes_is_quiet(database_url: str, tmp_path: Path, webhook) -> None:
    url, received = webhook
    engine_for(database_url)  # creates the schema
    report = review_models(str(portfolio(tmp_path, url)), as_of=T0, database_url=database_url)
    assert report["stages"] == [] and report["warnings"] == []
    assert report["qualified"][0]["qualified"] == 0 and report["qualified"][0]["rate"] is None
    assert received == [] and "notified" not in report


def test_serve_runs_the_review_weekly_beside_the_daily_run_unless_its_schedule_is_null(tmp_path: Path) -> None:
    from flows.deploy import portfolio_deployments

    path = portfolio(tmp_path, "http://127.0.0.1:9/hook")
    daily, review = portfolio_deployments(path)
    assert (daily.flow_name, daily.schedules) == ("daily-pipeline", [])  # the portfolio names no daily schedule
    assert (review.flow_name, review.name, review.entrypoint) == (
        "review-models",
        "portfolio",
        "flows.review.review_models",
    )
    [weekly] = review.schedules or []
    assert (weekly.schedule.cron, weekly.schedule.timezone) == ("0 7 * * 1", "UTC")
    assert review.parameters == {"portfolio_path": str(path.resolve())}
    path.write_text(path.read_text().replace("monitoring:\n", "monitoring:\n  schedule: null\n"))
    assert [d.flow_name for d in portfolio_deployments(path)] == ["daily-pipeline"]


def test_leadscore_review_prints_the_alert_and_the_lift(
    database_url: str, tmp_path: Path, webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from store.settings import get_settings

    url, _ = webhook
    seed(database_url)
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    engine_for.cache_clear()
    path = portfolio(tmp_path, url)
    args = ["review", "--portfolio", str(path), "--as-of", T0.isoformat()]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert "ALERT crm/discovery: the top band 'hot' converts 20.0% (4/20)" in result.stdout
    assert "crm/evaluation" in result.stdout and "D1 0.20 D6 1.80" in result.stdout
    assert "crm: MQL → opportunity 20% (2/10), target 30%" in result.stdout
    as_json = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert as_json["warnings"][1].startswith("ALERT crm/discovery")
    assert [(r["stage"], r["decile"]) for r in as_json["lift"]][:2] == [("discovery", 1), ("discovery", 6)]
    get_settings.cache_clear()
    engine_for.cache_clear()


def test_the_daily_report_shows_the_lift_chart_and_the_alert(database_url: str, tmp_path: Path) -> None:
    from nurture.report.build import build_sections
    from nurture.report.page import render_html
    from stages.portfolio import load_portfolio

    seed(database_url)
    book = load_portfolio(portfolio(tmp_path, "http://127.0.0.1:9/hook"))
    scope, sections = build_sections(book, engine_for(database_url), generated_at=T0)
    review = next(section for section in sections if section.key == "model-review")
    assert review.note is not None and review.note.startswith("ALERT crm/discovery: the top band 'hot' converts")
    assert [(r["stage"], r["decile"], r["outcomes"], r["converted"], r["rate"], r["lift"]) for r in review.rows] == [
        ("discovery", 1, 20, 10, "50.0%", "1.43"), ("discovery", 6, 20, 4, "20.0%", "0.57"),
        ("evaluation", 1, 10, 1, "10.0%", "0.20"), ("evaluation", 6, 10, 9, "90.0%", "1.80"),
    ]  # fmt: skip
    assert [chart.title for chart in review.charts] == [
        "crm/discovery: conversion by score decile (lowest scores first)",
        "crm/evaluation: conversion by score decile (lowest scores first)",
    ]
    assert "decile 6: 9/10 converted, lift 1.8" in render_html(scope, sections)
    _, later = build_sections(book, engine_for(database_url), generated_at=T0 + timedelta(days=365))
    review_later = next(section for section in later if section.key == "model-review")
    assert review_later.rows == [] and review_later.note == "n/a: no outcome in the last 90 days"
