"""Model monitoring on recent outcomes: does a higher band still convert better, is the AUC above its floor,
and how many MQLs become opportunities (against the portfolio's target)."""

import itertools
from dataclasses import dataclass
from typing import Any

import polars as pl
from sklearn.metrics import roc_auc_score

from models.learning.metrics import bands_table
from models.spec import Bands


@dataclass(frozen=True)
class ReviewSettings:
    auc_floor: float = 0.7
    mql_to_opportunity_target: float = 0.3
    min_leads_per_band: int = 30


def review_stages(
    outcomes: pl.DataFrame, bands: dict[tuple[str, str], Bands], settings: ReviewSettings
) -> tuple[list[dict[str, Any]], list[str]]:
    """Conversion by band and AUC per (product line, stage) from ``store.outcomes.scored_outcomes`` rows."""
    stages, warnings = [], []
    for (line, stage), part in sorted(outcomes.group_by("product_line", "stage"), key=lambda item: item[0]):
        key = (str(line), str(stage))
        if key not in bands:
            continue  # a stage the portfolio no longer has
        y, scores = part.get_column("converted").to_numpy(), part.get_column("score").to_numpy()
        auc = float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None
        table = bands_table(scores, y, bands[key])
        entry = {"product_line": key[0], "stage": key[1], "leads": len(y), "converted": int(y.sum()),
                 "auc": None if auc is None else round(auc, 4), "bands": table}  # fmt: skip
        stages.append(entry)
        where = f"{key[0]}/{key[1]}"
        if auc is not None and auc < settings.auc_floor:
            warnings.append(
                f"{where}: AUC {auc:.3f} on {len(y)} recent outcomes is below the floor {settings.auc_floor}"
            )
        judged = [b for b in table if b["leads"] >= settings.min_leads_per_band]
        for low, high in itertools.pairwise(judged):
            if high is judged[-1] and high["band"] == table[-1]["band"] and high["rate"] <= low["rate"]:
                warnings.append(
                    f"ALERT {where}: the top band {high['band']!r} converts {high['rate']:.1%} "
                    f"({high['converted']}/{high['leads']}), no better than the next band {low['band']!r} at "
                    f"{low['rate']:.1%} ({low['converted']}/{low['leads']}): top scores stopped converting better, "
                    "revise the model"
                )
            elif high["rate"] <= low["rate"]:
                warnings.append(
                    f"{where}: band {high['band']!r} converts {high['rate']:.1%} "
                    f"({high['converted']}/{high['leads']}), "
                    f"no better than lower band {low['band']!r} at {low['rate']:.1%} "
                    f"({low['converted']}/{low['leads']}): time to revise the model"
                )
    return stages, warnings


def review_qualified(
    qualified: pl.DataFrame, opportunity_stage: dict[str, str | None], qualification: str, settings: ReviewSettings
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per product line: journeys that reached ``qualification`` and how many moved on to its opportunity stage."""
    lines, warnings = [], []
    for line, stage in sorted(opportunity_stage.items()):
        if stage is None:
            continue
        part = qualified.filter(pl.col("product_line") == line)
        total = part.get_column("journey_id").n_unique()
        moved = part.filter(pl.col("to_stage") == stage).get_column("journey_id").n_unique()
        rate = moved / total if total else None
        lines.append({"product_line": line, "qualification": qualification, "opportunity_stage": stage,
                      "qualified": total, "opportunities": moved, "rate": None if rate is None else round(rate, 4),
                      "target": settings.mql_to_opportunity_target})  # fmt: skip
        if rate is not None and rate < settings.mql_to_opportunity_target:
            warnings.append(
                f"{line}: {qualification} → {stage} {rate:.1%} ({moved}/{total}) is below the target "
                f"{settings.mql_to_opportunity_target:.0%}"
            )
    return lines, warnings


def qualified_per_week(
    qualified: pl.DataFrame, opportunity_stage: dict[str, str | None], target: float
) -> pl.DataFrame:
    """``review_qualified`` week by week: per product line with an opportunity stage and week (its Monday, UTC)
    of reaching the qualification, the journeys that reached it, those that moved on to the opportunity stage
    since, their ``rate`` and the ``target``."""
    stages = pl.DataFrame(
        [(line, stage) for line, stage in opportunity_stage.items() if stage is not None],
        schema={"product_line": pl.Utf8, "opportunity_stage": pl.Utf8},
        orient="row",
    )
    per_journey = (
        qualified.join(stages, on="product_line")
        .group_by("journey_id", "product_line")
        .agg(pl.col("reached_at").min(), (pl.col("to_stage") == pl.col("opportunity_stage")).any().alias("moved"))
    )
    return (
        per_journey.with_columns(pl.col("reached_at").dt.truncate("1w").dt.date().alias("week"))
        .group_by("product_line", "week")
        .agg(pl.len().alias("qualified"), pl.col("moved").fill_null(False).sum().alias("opportunities"))
        .with_columns(
            (pl.col("opportunities") / pl.col("qualified")).alias("rate"), pl.lit(target, pl.Float64).alias("target")
        )
        .sort("product_line", "week")
    )


DECILES = 10


def lift_by_decile(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Conversion per score decile of live outcomes, per (product line, stage): the lift chart of the model
    as it scores today. ``outcomes``: ``store.outcomes.scored_outcomes`` rows (``product_line, stage, score,
    converted``). Decile 10 holds the highest scores; tied scores share the decile of their first rank, so a
    points scale's many ties never split arbitrarily. ``lift`` is the decile's rate over the stage's rate."""
    schema = {"product_line": pl.Utf8, "stage": pl.Utf8, "decile": pl.Int32, "leads": pl.UInt32,
              "converted": pl.Int64, "rate": pl.Float64, "lift": pl.Float64}  # fmt: skip
    if outcomes.is_empty():
        return pl.DataFrame(schema=schema)
    key = ["product_line", "stage"]
    rank = pl.col("score").rank("min").over(key) - 1
    return (
        outcomes.with_columns(
            (rank * DECILES // pl.len().over(key) + 1).cast(pl.Int32).alias("decile"),
            pl.col("converted").cast(pl.Int64).mean().over(key).alias("_base"),
        )
        .group_by(*key, "decile")
        .agg(pl.len().alias("leads"), pl.col("converted").cast(pl.Int64).sum(), pl.col("_base").first())
        .with_columns((pl.col("converted") / pl.col("leads")).alias("rate"))
        .with_columns(
            pl.when(pl.col("_base") > 0).then((pl.col("rate") / pl.col("_base")).round(3)).alias("lift"),
            pl.col("rate").round(4),
        )
        .sort(*key, "decile")
        .select(list(schema))
        .cast(schema)
    )
