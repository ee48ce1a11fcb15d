"""``review_models``: judge each stage's model on recent outcomes in the store, warn when it stops working."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.database import engine_for
from flows.startup import enter_flow
from models.learning.review import DECILES, lift_by_decile, review_qualified, review_stages
from stages.portfolio import load_portfolio
from stages.review import review_settings, stage_bands
from store.outcomes import qualified_journeys, scored_outcomes


@flow(name="review-models", log_prints=True)
def review_models(
    portfolio_path: str, as_of: datetime | None = None, database_url: str | None = None
) -> dict[str, Any]:
    """Conversion by band and AUC per (product line, stage) on the outcomes of the portfolio's
    ``monitoring.window_days`` before ``as_of``, and the MQL → opportunity rate against its target.

    Warnings (a higher band converting no better than a lower one, an AUC under the floor, a rate under
    the target) go to the run's log, a markdown artifact, and the monitoring webhook when one is set.
    """
    settings = enter_flow(database_url)
    logger = get_run_logger()
    as_of = as_of or datetime.now(UTC)
    portfolio = load_portfolio(Path(portfolio_path))
    monitoring = portfolio.spec.monitoring
    since = as_of - timedelta(days=monitoring.window_days)
    engine = engine_for(settings.database_url)
    review = review_settings(portfolio)
    outcomes = scored_outcomes(engine, since, as_of)
    stages, stage_warnings = review_stages(outcomes, stage_bands(portfolio), review)
    opportunity = {name: line.spec.opportunity_stage for name, line in portfolio.product_lines.items()}
    qualified = qualified_journeys(engine, monitoring.qualification, since, as_of)
    lines, line_warnings = review_qualified(qualified, opportunity, monitoring.qualification, review)
    report = {
        "as_of": as_of.isoformat(),
        "since": since.isoformat(),
        "stages": stages,
        "qualified": lines,
        "warnings": stage_warnings + line_warnings,
        "lift": lift_by_decile(outcomes).to_dicts(),
    }
    report["markdown"] = _markdown(report)
    for warning in report["warnings"]:
        logger.warning(warning)
    create_markdown_artifact(key="model-review", markdown=report["markdown"], description="Model review")
    if report["warnings"] and monitoring.notify_webhook:
        response = httpx.post(monitoring.notify_webhook, json={"kind": "model-review", **report}, timeout=10)
        report["notified"] = response.status_code
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Model review {report['since'][:10]} → {report['as_of'][:10]}", ""]
    lines += [f"- ⚠️ {w}" for w in report["warnings"]] or ["No warnings."]
    lines += ["", "| product line / stage | outcomes | converted | AUC | conversion by band (lowest first) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for s in report["stages"]:
        bands = "; ".join(
            f"{b['band']}: {b['converted']}/{b['leads']}" + (f" ({b['rate']:.0%})" if b["rate"] is not None else "")
            for b in s["bands"]
        )
        auc = "–" if s["auc"] is None else f"{s['auc']:.3f}"
        lines.append(f"| {s['product_line']}/{s['stage']} | {s['leads']} | {s['converted']} | {auc} | {bands} |")
    lines += ["", "| product line | qualified | opportunities | rate | target |", "|---|---|---|---|---|"]
    for q in report["qualified"]:
        rate = "–" if q["rate"] is None else f"{q['rate']:.0%}"
        lines.append(f"| {q['product_line']} | {q['qualified']} | {q['opportunities']} | {rate} | {q['target']:.0%} |")
    lines += ["", "Lift by score decile (conversion over the stage's rate; leads), lowest scores first:", "",
              "| product line / stage | " + " | ".join(f"D{d}" for d in range(1, DECILES + 1)) + " |",
              "|---" * (DECILES + 1) + "|"]  # fmt: skip
    cells: dict[str, list[str]] = {}
    for row in report["lift"]:
        stage = cells.setdefault(f"{row['product_line']}/{row['stage']}", [""] * DECILES)
        stage[row["decile"] - 1] = "–" if row["lift"] is None else f"{row['lift']:.2f} ({row['leads']})"
    lines += [f"| {stage} | " + " | ".join(values) + " |" for stage, values in cells.items()]
    return "\n".join(lines)
