"""Backtests: given model files (hand-written or learned) scored by the engine on a history, side by side
with a plain logistic-regression baseline on the same cross-validation folds."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from models.engine import score
from models.learning.history import ROW
from models.learning.learn import Dataset, LearnParams, cross_validate
from models.learning.metrics import calibration
from models.spec import Bands, PointsModel, Scale
from store.shapes import UTC_US


def engine_scores(model: PointsModel, ds: Dataset, scale: Scale) -> np.ndarray:
    """Each history lead scored by the engine as of its own cutoff (events after it never count).

    The engine scores everyone at one ``as_of``; each lead's events are moved forward by the time between
    its cutoff and that moment, so ages (and so windows and decay) are the ones at the lead's cutoff.
    """
    leads = ds.history.frame.rename({ROW: "lead_key"})
    if ds.history.ids is not None:
        leads = leads.with_columns(ds.history.ids.alias("lead_id"))
    cutoff = ds.history.cutoff
    events = ds.events
    if events is None:
        events = pl.DataFrame(
            schema={
                ROW: pl.Int64,
                "type": pl.Utf8,
                "occurred_at": UTC_US,
                "machine": pl.Boolean,
                "properties": pl.Utf8,
            }
        )
    as_of = cutoff.max() if cutoff is not None else events.get_column("occurred_at").max()
    as_of = as_of if isinstance(as_of, datetime) else datetime.now(UTC)
    if cutoff is not None:
        shift = pl.DataFrame({ROW: ds.history.frame.get_column(ROW), "_cut": cutoff}).select(
            ROW, (pl.lit(as_of, UTC_US) - pl.col("_cut")).alias("_shift")
        )
        events = events.join(shift, on=ROW, how="left").with_columns(pl.col("occurred_at") + pl.col("_shift"))
    if "properties" not in events.columns:
        events = events.with_columns(pl.lit("{}").alias("properties"))
    result = score(model, leads=leads, events=events.rename({ROW: "lead_key"}), as_of=as_of, scale=scale)
    return result.sort("lead_key").get_column("score").to_numpy()


def backtest(
    models: dict[str, PointsModel],
    ds: Dataset,
    scale: Scale,
    params: LearnParams,
    *,
    learners: tuple[Any, ...] = (),
    bands: Bands | None = None,
    progress: Any = lambda _: None,
) -> dict[str, dict[str, Any]]:
    """Metrics per model: each file as it is, optional ``learners`` (kinds) refitted per fold, the baseline.

    A learned model judged on the very history it was learned from is marked ``in_sample`` (its numbers
    flatter it; learn's cross-validated figures are the honest ones)."""
    fixed = {}
    for label, model in models.items():
        progress(f"scoring {label}")
        fixed[label] = (engine_scores(model, ds, model.scale or scale), model.bands)
    results = cross_validate(ds, scale, params, kinds=learners, fixed=fixed, bands=bands, progress=progress)
    for label, model in models.items():
        if model.kind == "probability":  # its score is the calibrated probability on the scale
            own = model.scale or scale
            results[label]["calibration"] = calibration((fixed[label][0] - own.min) / (own.max - own.min), ds.y)
        learned = model.metadata.get("learned", {})
        results[label]["in_sample"] = learned.get("history_sha256") == ds.history_sha256
        results[label]["version"] = model.version
    return results


def label_of(path: Path, taken: set[str]) -> str:
    """A model's column title: its file name (with the folder when two files share a name)."""
    label = path.name if path.name not in taken else str(path)
    taken.add(label)
    return label
