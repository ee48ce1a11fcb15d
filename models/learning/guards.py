"""Refusals: what would make a silently bad model is stopped, or reported and dropped, before learning."""

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from models.learning.features import Feature
from models.learning.history import LearnError

MIN_POSITIVES = 30
ID_UNIQUE_SHARE = 0.95  # a column with (nearly) one distinct value per lead identifies leads


@dataclass(frozen=True)
class Leak:
    column: str
    auc: float

    @property
    def reason(self) -> str:
        return f"{self.column!r} alone separates the outcome (AUC {self.auc:.3f}): it likely leaks it"


def check_target(y: np.ndarray, column: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise LearnError(
            f"target {column!r} has one class only ({'all 1' if positives else 'all 0'}): nothing to learn"
        )
    if positives < MIN_POSITIVES:
        raise LearnError(
            f"target {column!r} has {positives} positive(s); "
            f"at least {MIN_POSITIVES} are needed for a model worth using"
        )


def check_identifiers(features: list[Feature], frame: pl.DataFrame) -> None:
    """A column with one distinct text or whole number per lead identifies leads: as a feature it memorises them."""
    for f in features:
        if f.kind == "count":
            continue
        col = frame.get_column(f.name).drop_nulls()
        if col.len() < MIN_POSITIVES or col.n_unique() < ID_UNIQUE_SHARE * frame.height:
            continue
        if f.kind == "numeric" and not (col == col.floor()).all():
            continue  # continuous measurements (amounts, durations) are unique without being ids
        raise LearnError(
            f"column {f.name!r} looks like an identifier ({col.n_unique()} distinct values in {frame.height} rows): "
            f"name it with --id-column or leave it out with --drop"
        )


def single_column_auc(values: pl.Series, kind: str, y: np.ndarray) -> float:
    """How well one column alone orders the outcome, either way round: categories by their conversion rate,
    numbers by value (missing as its own extreme, whichever side separates better)."""
    if kind == "categorical":
        frame = pl.DataFrame({"v": values.fill_null("\x00missing"), "y": y})
        score = frame.with_columns(pl.col("y").mean().over("v").alias("s")).get_column("s").to_numpy()
        candidates = [score]
    else:
        v = values.cast(pl.Float64).to_numpy()
        low, high = np.nanmin(v) - 1 if np.isfinite(v).any() else 0, np.nanmax(v) + 1 if np.isfinite(v).any() else 0
        candidates = [np.where(np.isnan(v), low, v), np.where(np.isnan(v), high, v)]
    auc = max(float(roc_auc_score(y, s)) for s in candidates)
    return max(auc, 1 - auc)


def find_leaks(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, threshold: float) -> list[Leak]:
    leaks = []
    for f in features:
        auc = single_column_auc(frame.get_column(f.name), f.kind, y)
        if auc >= threshold:
            leaks.append(Leak(f.label, round(auc, 4)))
    return leaks
