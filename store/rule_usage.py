"""Which rules score the journeys now: per product line, stage and rule, how many current journeys its points
are in and their total, read from each journey's latest snapshot of its current stage (the console's models
page). One grouped read and a Polars explode: no Python loop over journeys."""

from __future__ import annotations

import polars as pl
from sqlalchemy import Engine, text

from store.reader import read_frame
from store.shapes import BREAKDOWN_TYPE

_LATEST = (
    "SELECT s.product_line, s.stage, CAST(s.breakdown AS TEXT) AS breakdown FROM score_snapshots s "
    "JOIN (SELECT journey_id, MAX(id) AS id FROM score_snapshots GROUP BY journey_id) l ON l.id = s.id "
    "JOIN journeys j ON j.id = s.journey_id AND j.stage = s.stage"
)
SCHEMA = {"product_line": pl.Utf8(), "stage": pl.Utf8(), "rule": pl.Utf8(), "journeys": pl.UInt32(),
          "points": pl.Float64()}  # fmt: skip


def latest_snapshot(engine: Engine) -> int | None:
    """The id of the newest snapshot: the usage changes only when a run writes one (a cache key)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT MAX(id) FROM score_snapshots")).scalar_one()


def rule_usage(engine: Engine) -> pl.DataFrame:
    """``product_line, stage, rule, journeys, points``: journeys whose current score has a non-zero entry of
    the rule, and the sum of those entries (caps and the scale clamp are entries of their own)."""
    frame = read_frame(engine, _LATEST, {}, {"product_line": pl.Utf8(), "stage": pl.Utf8(), "breakdown": pl.Utf8()})
    if frame.is_empty():
        return pl.DataFrame(schema=SCHEMA)
    return (
        frame.with_columns(pl.col("breakdown").str.json_decode(BREAKDOWN_TYPE))
        .explode("breakdown")
        .unnest("breakdown")
        .filter(pl.col("rule").is_not_null() & (pl.col("points") != 0))
        .group_by("product_line", "stage", "rule")
        .agg(journeys=pl.len(), points=pl.col("points").sum())
        .sort("product_line", "stage", "rule")
        .cast(SCHEMA)  # type: ignore[arg-type]
    )
