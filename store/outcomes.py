"""Reads for model monitoring: the scores journeys had before their outcome, and MQLs with their later stages."""

from datetime import datetime

import polars as pl
from sqlalchemy import Engine, and_, select

from store.shapes import UTC_US
from store.tables import QualificationMilestone, ScoreSnapshot, StageTransition

OUTCOME_SCHEMA = {
    "journey_id": pl.Int64,
    "product_line": pl.Utf8,
    "stage": pl.Utf8,
    "score": pl.Float64,
    "band": pl.Utf8,
    "converted": pl.Int8,
    "outcome_at": UTC_US,
}
QUALIFIED_JOURNEY_SCHEMA = {
    "journey_id": pl.Int64,
    "product_line": pl.Utf8,
    "reached_at": UTC_US,
    "to_stage": pl.Utf8,
    "moved_at": UTC_US,
}


def scored_outcomes(engine: Engine, since: datetime, until: datetime) -> pl.DataFrame:
    """One row per (journey that became customer or lost in ``(since, until]``, stage it was scored in before):
    the last score and band it had in that stage before the outcome (for a stage it was promoted out of,
    the state that crossed), and ``converted`` (customer = 1)."""
    outcome = (
        select(
            StageTransition.journey_id,
            StageTransition.status,
            StageTransition.at.label("outcome_at"),  # type: ignore[attr-defined]
        )
        .where(StageTransition.status.in_(("customer", "lost")))  # type: ignore[attr-defined]
        .where(and_(StageTransition.at > since, StageTransition.at <= until))  # type: ignore[arg-type]
        .subquery()
    )
    query = select(
        ScoreSnapshot.journey_id,
        ScoreSnapshot.product_line,
        ScoreSnapshot.stage,
        ScoreSnapshot.score,
        ScoreSnapshot.band,
        ScoreSnapshot.as_of,
        ScoreSnapshot.step,
        ScoreSnapshot.id,
        outcome.c.status,
        outcome.c.outcome_at,
    ).join(
        outcome,
        and_(ScoreSnapshot.journey_id == outcome.c.journey_id, ScoreSnapshot.as_of <= outcome.c.outcome_at),  # type: ignore[arg-type]
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return pl.DataFrame(schema=OUTCOME_SCHEMA)
    frame = pl.DataFrame(
        [tuple(r) for r in rows],
        schema=["journey_id", "product_line", "stage", "score", "band", "as_of", "step", "id", "status", "outcome_at"],
        orient="row",
    )
    # A journey can end twice (lost, then won back): each outcome judges the scores before it.
    return (
        frame.sort("as_of", "step", "id")  # a promoting run's states in order: the crossing one first
        .group_by("journey_id", "outcome_at", "stage", maintain_order=True)
        .last()
        .select(
            pl.col("journey_id").cast(pl.Int64),
            "product_line",
            "stage",
            pl.col("score").cast(pl.Float64),
            "band",
            (pl.col("status") == "customer").cast(pl.Int8).alias("converted"),
            pl.col("outcome_at").cast(UTC_US),
        )
        .sort("journey_id", "outcome_at", "stage")
    )


def qualified_journeys(engine: Engine, qualification: str, since: datetime, until: datetime) -> pl.DataFrame:
    """Journeys that first reached ``qualification`` in ``(since, until]``, each with every later stage move
    (``to_stage``/``moved_at`` null when none)."""
    reached = (
        select(
            QualificationMilestone.journey_id, QualificationMilestone.product_line, QualificationMilestone.reached_at
        )
        .where(QualificationMilestone.qualification == qualification)
        .where(and_(QualificationMilestone.reached_at > since, QualificationMilestone.reached_at <= until))  # type: ignore[arg-type]
        .subquery()
    )
    query = select(
        reached.c.journey_id, reached.c.product_line, reached.c.reached_at, StageTransition.to_stage, StageTransition.at
    ).outerjoin(
        StageTransition,
        and_(StageTransition.journey_id == reached.c.journey_id, StageTransition.at >= reached.c.reached_at),  # type: ignore[arg-type]
    )
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query).all()]
    return pl.DataFrame(rows, schema=QUALIFIED_JOURNEY_SCHEMA, orient="row").sort(
        "journey_id", "moved_at", nulls_last=True
    )
