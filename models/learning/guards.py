"""Refusals: what would make a silently bad model is stopped, or reported and dropped, before learning."""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from models.learning.features import Feature
from models.learning.history import LearnError

MIN_POSITIVES = 30
ID_UNIQUE_SHARE = 0.95  # a column with (nearly) one distinct value per lead identifies leads
LEAK_AUC = 0.9
"""A column that alone orders the outcome this well (single-column ROC AUC) is almost always written after it."""
LEAK_NAME = re.compile(
    r"\b(status|stage|quality|profile|tags?|scores?|duration|asymmetrique\w*|outcome|result|disposition"
    r"|won|lost|closed|converted)\b|\blast\W+\w+\W+activity\b",
    re.IGNORECASE,
)
"""Names of columns that describe an outcome or the sales team's work on a lead (a status, a stage, a quality or
profile judged by sales, tags, a call's duration, a CRM score, "Last Notable Activity"): in a CRM export they
are filled in during or after contact, so at scoring time they are empty or already tell the answer. "Last
Activity" alone (the lead's own last action) is not matched."""
LATE_SHARE = 0.05  # a time column with this share of values after the lead's cutoff was recorded after the outcome


@dataclass(frozen=True)
class Leak:
    """A column dropped (or kept with ``--keep``) as a likely leak, with the signals that flagged it."""

    column: str
    auc: float  # the column's single-column AUC
    evidence: tuple[str, ...]

    @property
    def reason(self) -> str:
        return f"{self.column!r} likely leaks the outcome: {'; '.join(self.evidence)}"


def check_target(path: Path, y: np.ndarray, column: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise LearnError(
            f"{path}: target {column!r} has one class only ({'all 1' if positives else 'all 0'}): nothing to learn"
        )
    if positives < MIN_POSITIVES:
        raise LearnError(
            f"{path}: target {column!r} has {positives} positive(s); "
            f"at least {MIN_POSITIVES} are needed for a model worth using"
        )


def check_identifiers(path: Path, features: list[Feature], frame: pl.DataFrame) -> None:
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
            f"{path}: column {f.name!r} looks like an identifier "
            f"({col.n_unique()} distinct values in {frame.height} rows): "
            "name it with --id-column or leave it out with --drop"
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


def recorded_late(raw: pl.Series, cutoff: pl.Series) -> int:
    """How many of a column's values are times later than their lead's cutoff (0 when it holds no times)."""
    given = raw.cast(pl.Utf8).str.strip_chars()
    # Each distinct value parsed once (in order of appearance, so the format Polars infers from the first
    # value is the same): a column of words fails the parse per row, 0.5 s for 100,000 leads.
    distinct = given.unique(maintain_order=True)
    parsed = pl.DataFrame({"v": distinct, "t": distinct.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")})
    times = given.to_frame("v").join(parsed, on="v", how="left", maintain_order="left").get_column("t")
    if times.null_count() - given.null_count() > 0.1 * given.len() or given.null_count() == given.len():
        return 0  # not (mostly) times
    return int((times > cutoff).fill_null(False).sum())


def find_leaks(
    features: list[Feature],
    frame: pl.DataFrame,
    y: np.ndarray,
    threshold: float,
    *,
    raw: pl.DataFrame | None = None,
    cutoff: pl.Series | None = None,
) -> list[Leak]:
    """Columns flagged by any signal: single-column AUC at or above ``threshold``, a name in ``LEAK_NAME``,
    or (with a per-lead ``cutoff`` and the history's ``raw`` columns) times recorded after the cutoff."""
    leaks = []
    for f in features:
        auc = round(single_column_auc(frame.get_column(f.name), f.kind, y), 4)
        evidence = []
        if auc >= threshold:
            evidence.append(f"alone it separates the outcome (AUC {auc:.3f} ≥ {threshold:g})")
        if f.kind != "count" and LEAK_NAME.search(f.name):
            evidence.append(f"its name describes an outcome or sales activity (AUC {auc:.3f})")
        if f.kind != "count" and raw is not None and cutoff is not None:
            late = recorded_late(raw.get_column(f.name), cutoff)
            if late >= max(1, LATE_SHARE * len(y)):
                evidence.append(f"{late} of its times are after the lead's cutoff (recorded after the outcome)")
        if evidence:
            leaks.append(Leak(f.label, auc, tuple(evidence)))
    return leaks
