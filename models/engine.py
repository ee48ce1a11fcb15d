"""Score a whole partition of leads at once, whatever the model's kind.

A score is a pure function of (lead attributes, event log, model, stage entry time, ``as_of``). A
points model is compiled into Polars expressions: fit (``models.fit``), behaviour, combos and manual
adjustments (``models.behaviour``), then caps, clamp and breakdown (``models.breakdown``); a
probability model is a learned estimator (``models.learning.probability``). No per-lead Python.
"""

from collections.abc import Callable
from datetime import datetime

import polars as pl

from models.behaviour import behaviour_points, combo_points, manual_points, relevant_events
from models.breakdown import settle
from models.fit import fit_plan
from models.frames import RESULT_SCHEMA, compiled
from models.spec import PointsModel, Scale
from store.shapes import UTC_US, empty_frame

Scorer = Callable[..., pl.DataFrame]  # (model, *, leads, events, as_of, scale, journeys) -> RESULT_SCHEMA


def score(
    model: PointsModel,
    *,
    leads: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    scale: Scale | None = None,
    journeys: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Score ``journeys`` (``lead_key``, ``score_from``) or, without them, every lead in ``leads``.

    ``leads`` has ``lead_key`` plus attribute columns (and optionally an ``attributes`` JSON text
    column for the rest); ``events`` has ``lead_key, occurred_at, type, machine, properties`` (JSON
    text). Events before a journey's ``score_from`` (a stage entered with ``reset``) or after
    ``as_of`` do not count. Returns ``lead_key, score, breakdown`` where the breakdown entries sum
    to the score: a row per journey, in their order (``stages.scoring`` lays them beside the journeys).
    """
    scale = scale or model.scale or Scale()
    if journeys is None:
        journeys = leads.select("lead_key").with_columns(pl.lit(None, UTC_US).alias("score_from"))
    journeys = journeys.select(_JOURNEY)
    if journeys.is_empty():
        return empty_frame(RESULT_SCHEMA)
    return _scorer(model.kind)(model, leads=leads, events=events, as_of=as_of, scale=scale, journeys=journeys)


def _zeros(columns: list[str]) -> list[pl.Expr]:
    """``lead_key`` and a 0.0 for each of ``columns`` (a model's event parts, when no event counts)."""
    return [pl.col("lead_key"), *(pl.lit(0.0).alias(key) for key in columns)]


_JOURNEY = [pl.col("lead_key").cast(pl.Int64), pl.col("score_from").cast(UTC_US)]


def _scorer(kind: str) -> Scorer:
    """The scorer of a model kind; a learned estimator's is imported only when one scores (scikit-learn
    is slow to load)."""
    if kind == "probability":
        from models.learning.probability import score_probability

        return score_probability
    return score_points


def score_points(
    model: PointsModel,
    *,
    leads: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    scale: Scale,
    journeys: pl.DataFrame,
) -> pl.DataFrame:
    """A points model over normalised ``journeys`` (``lead_key`` Int64, ``score_from`` UTC).

    The relevant events are materialised once (three parts read them); the rest is one lazy plan,
    collected once: on one lead's rows (a ``fresh=true`` look-up) the cost is per operation, not per
    row. Without relevant events the behaviour, combo and manual parts are all zero: not computed.
    """
    fit_cols, fit_frame = fit_plan(model, journeys, leads)
    event_rows = relevant_events(model, events, journeys, as_of)
    behaviour_cols, behaviour_frame = behaviour_points(model, event_rows)
    combo_cols, combo_frame = combo_points(model, event_rows)
    manual_frame = manual_points(model, event_rows)
    parts = [fit_frame]
    if event_rows.is_empty():
        zero = [column.key for column in (*behaviour_cols, *combo_cols)] + ["_manual"] * (manual_frame is not None)
        frame = journeys.lazy().select(compiled(model, ("zero", *zero), lambda: _zeros(zero)))
    else:
        frame = journeys.lazy().select("lead_key")
        parts += [behaviour_frame, combo_frame, manual_frame]
    for part in parts:
        if part is not None:
            frame = frame.join(part, on="lead_key", how="left", maintain_order="left")
    return settle(
        frame,
        fit=fit_cols,
        behaviour=[*behaviour_cols, *combo_cols],
        manual=manual_frame is not None,
        caps=model.caps,
        scale=scale,
        base=model.base_points,
    )
