"""``leadscore learn`` and ``leadscore backtest`` end to end through the CLI."""

import json
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from typer.testing import CliRunner

from flows.cli import app
from models.charts import PALETTE
from tests.models.learning.conftest import write_history

HAND = """kind: points
scale: {min: 0, max: 100}
bands: {cold: [0, 40], hot: [40, 100]}
fit:
  - {name: segment a, when: {segment: {eq: a}}, points: 40}
  - {name: big, when: {size: {ge: 500}}, points: 20}
"""


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})


def test_learn_prints_metrics_and_writes_a_model(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    out = tmp_path / "learned.yaml"
    result = run("learn", "--history", history, "--target", "won", "--id-column", "lead_id", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    document = yaml.safe_load(out.read_text())
    assert summary["version"] == document["version"]
    assert summary["kind"] == "points" and summary["artifact"] is None
    assert summary["rules"] == len(document["fit"]) + len(document["behaviour"])
    assert set(summary["metrics"]) == {"learned points", "logistic regression (baseline)"}
    assert summary["metrics"]["learned points"]["auc"] > 0.6
    human = run("learn", "--history", history, "--target", "won", "--id-column", "lead_id", "--out", out)
    assert human.exit_code == 0
    assert "cross-validated, same folds" in human.stdout
    assert f"points model {out} version {summary['version']}:" in human.stdout


def test_learn_refuses_bad_input_with_exit_code_2(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv", won=["yes", "maybe"] + ["no"] * 598)
    result = run(
        "learn", "--history", history, "--target", "won", "--id-column", "lead_id", "--out", tmp_path / "m.yaml"
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "cannot learn a model",
        f"{history}: column 'won': 1 value(s) are not an outcome (1/0, true/false, yes/no): line 3: 'maybe'",
    ]
    assert not (tmp_path / "m.yaml").exists()
    unknown = run("learn", "--history", history, "--target", "won", "--out", tmp_path / "m.yaml", "--kind", "neural")
    assert unknown.exit_code == 2 and "--kind must be points or probability" in unknown.stderr


def test_backtest_compares_models_and_writes_an_html_report(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    learned = tmp_path / "learned.yaml"
    assert (
        run("learn", "--history", history, "--target", "won", "--id-column", "lead_id", "--out", learned).exit_code == 0
    )
    hand = tmp_path / "hand.yaml"
    hand.write_text(HAND)
    report = tmp_path / "report.html"
    result = run("backtest", hand, learned, "--history", history, "--target", "won", "--id-column", "lead_id",
                 "--html", report, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert list(metrics) == ["logistic regression (baseline)", "hand.yaml", "learned.yaml"]
    assert metrics["learned.yaml"]["in_sample"] is True and metrics["hand.yaml"]["in_sample"] is False
    assert [b["band"] for b in metrics["hand.yaml"]["bands"]] == ["cold", "hot"]
    assert sum(b["leads"] for b in metrics["hand.yaml"]["bands"]) == 600
    html = report.read_text()
    assert html.count("<polyline") == 3 and "<script" not in html and "http" not in html.replace("http://www.w3", "")
    assert "hand.yaml" in html and "(in-sample: learned on this history)" in html
    # Drawn with the daily report's chart kit: the gains chart and a band chart per model, in its palette.
    assert html.count('<svg class="chart"') == 1 + len(metrics)
    assert [colour in html for colour in PALETTE] == [True, True, True, False, False, False]


def test_backtest_adds_the_active_model_of_a_portfolio_stage(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    (tmp_path / "hand.yaml").write_text(HAND)
    portfolio = tmp_path / "portfolio.yaml"
    portfolio.write_text("""product_lines:
  courses:
    bands: {cold: [0, 50], hot: [50, 100]}
    stages:
      discovery: {model: hand.yaml}
""")
    candidate = tmp_path / "candidate.yaml"
    assert (
        run("learn", "--history", history, "--target", "won", "--id-column", "lead_id", "--out", candidate).exit_code
        == 0
    )
    result = run("backtest", candidate, "--history", history, "--target", "won", "--id-column", "lead_id",
                 "--portfolio", portfolio, "--product-line", "courses", "--stage", "discovery", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert set(metrics) == {"logistic regression (baseline)", "active: courses/discovery", "candidate.yaml"}
    direct = run(
        "backtest", tmp_path / "hand.yaml", "--history", history, "--target", "won", "--id-column", "lead_id", "--json"
    )
    assert json.loads(direct.stdout)["metrics"]["hand.yaml"]["auc"] == metrics["active: courses/discovery"]["auc"]


def test_score_file_takes_a_learned_model(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    model = tmp_path / "learned.yaml"
    assert (
        run("learn", "--history", history, "--target", "won", "--id-column", "lead_id", "--out", model).exit_code == 0
    )
    out = tmp_path / "scored.csv"
    result = run("score-file", model, history, "--out", out)
    assert result.exit_code == 0, result.stderr
    scored = pl.read_csv(out)
    assert scored.columns == ["lead_id", "segment", "size", "won", "score", "top_rules"]
    assert scored.height == 600 and scored.get_column("top_rules").str.contains("segment: ").any()
