"""Score one product line's journeys, each under the model of the stage it is in, with band and qualification."""

from datetime import datetime

import polars as pl

from models.bands import band_expr
from models.frames import collect, compiled
from models.spec import Scale
from stages.portfolio import ProductLine, Stage
from stages.transitions import score_in_stage
from store.shapes import BREAKDOWN_TYPE, empty_frame

SCORED_SCHEMA = {
    "journey_id": pl.Int64,
    "lead_key": pl.Int64,
    "stage": pl.Utf8,
    "score": pl.Float64,
    "band": pl.Utf8,
    "qualification": pl.Utf8,
}


def qualification_expr(line: ProductLine, score: pl.Expr) -> pl.Expr:
    """The highest qualification whose threshold the score reaches (None below all of them)."""
    expr: pl.Expr = pl.lit(None, pl.Utf8)
    for name, threshold in line.qualifications:
        expr = pl.when(score >= threshold).then(pl.lit(name)).otherwise(expr)
    return expr


def score_line(
    line: ProductLine,
    *,
    journeys: pl.DataFrame,
    leads: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    scale: Scale,
) -> pl.DataFrame:
    """Score every journey of ``journeys`` (``journey_id, lead_key, stage, score_from, stage_entered_at``) of
    one product line under its stage's model; journeys in terminal stages (customer, lost) are not scored.

    ``events`` must already be restricted to this product line (or to events without one).
    Returns ``SCORED_SCHEMA`` plus ``breakdown``.
    """
    parts = []
    present = set(journeys["stage"].unique().to_list())  # one pass, not one filter per stage of the line
    for stage in line.stages:
        if stage.name not in present or stage.terminal:
            continue
        in_stage = journeys if len(present) == 1 else journeys.filter(pl.col("stage") == stage.name)
        scored = score_in_stage(stage, leads=leads, events=events, as_of=as_of, scale=scale, journeys=in_stage)
        # A scorer answers a row per journey, in their order: side by side, no join. On one lead (a
        # ``fresh=true`` look-up) a join handed its work to Polars' threads and back ≈ 10 times.
        part = pl.concat([in_stage.lazy().select(_KEYS), scored.lazy().drop("lead_key")], how="horizontal")
        parts.append(part.with_columns(_labels(line, stage)))
    if not parts:
        return empty_frame({**SCORED_SCHEMA, "breakdown": BREAKDOWN_TYPE})
    return collect(pl.concat(parts).select(_SCORED))


_KEYS = [pl.col("journey_id"), pl.col("lead_key"), pl.col("stage")]
_SCORED = [pl.col(name) for name in (*SCORED_SCHEMA, "breakdown")]


def _labels(line: ProductLine, stage: Stage) -> list[pl.Expr]:
    """A stage's band and the line's qualification of a score, built once per stage (not per look-up)."""
    return compiled(
        line,
        ("labels", stage.name),
        lambda: [
            band_expr(stage.bands, pl.col("score")).alias("band"),
            qualification_expr(line, pl.col("score")).alias("qualification"),
        ],
    )
