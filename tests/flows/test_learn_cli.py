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
    assert scored.columns == ["lead_id", "segment", "size", "won", "score", "band", "top_rules"]
    assert scored.height == 600 and scored.get_column("top_rules").str.contains("segment: ").any()


def test_learn_drops_a_leak_unless_kept_reads_semicolons_and_score_file_writes_bands(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    frame = pl.read_csv(history, infer_schema=False)
    status = frame.get_column("won").replace_strict({"yes": "won", "No": "open"}).alias("Lead Status")
    frame.with_columns(status).write_csv(tmp_path / "semi.csv", separator=";")  # a European spreadsheet export
    out = tmp_path / "m.yaml"
    args = ["learn", "--history", tmp_path / "semi.csv", "--target", "won", "--id-column", "lead_id", "--out", out]
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    [leak] = json.loads(result.stdout)["leaks"]
    assert (leak["column"], leak["dropped"]) == ("Lead Status", True)
    assert leak["evidence"][0] == "alone it separates the outcome (AUC 1.000 ≥ 0.9)"
    document = yaml.safe_load(out.read_text())
    assert document["metadata"]["learned"]["features"] == ["segment", "size"]
    assert document["bands"] == {"0-20": [0, 20], "20-40": [20, 40], "40-60": [40, 60], "60-80": [60, 80],
                                 "80-100": [80, 100]}  # fmt: skip
    human = run(*args)
    assert "leak: Lead Status: alone it separates the outcome (AUC 1.000 ≥ 0.9); its name describes" in human.stdout
    assert "dropped (--keep COLUMN keeps it)" in human.stdout
    kept = json.loads(run(*args, "--keep", "Lead Status", "--json").stdout)
    assert kept["leaks"][0]["dropped"] is False
    assert "Lead Status" in yaml.safe_load(out.read_text())["metadata"]["learned"]["features"]
    run(*args)  # the model without the leak again
    scored = tmp_path / "scored.csv"
    done = run("score-file", out, history, "--out", scored)
    assert done.exit_code == 0, done.stderr
    bands = pl.read_csv(scored).select("score", "band")
    assert bands.height == 600 and bands.get_column("band").null_count() == 0
    assert bands.filter(pl.col("score") >= 80).get_column("band").unique().to_list() in ([], ["80-100"])
