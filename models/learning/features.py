"""Columns a model learns from: attributes (numeric or categorical) and behaviour counts per event type.

The same functions build the columns for training (each lead at its own cutoff) and for scoring (every
lead at ``as_of``), so a learned model sees at scoring time exactly what it saw in training. Text is
compared trimmed and lower-case and numbers are read the way the points engine reads them, so a
learned points table scores identically in the engine.
"""

from dataclasses import dataclass
from typing import Literal

import polars as pl

from models.learning.history import ROW

DAY_US = 86_400_000_000
DEFAULT_WINDOWS: tuple[float | None, ...] = (7, 30, None)
"""Behaviour windows in days before the cutoff (None: every earlier event)."""
NUMERIC_MIN_DISTINCT = 8  # fewer distinct numbers read better as categories ("1", "2", "3")

Kind = Literal["numeric", "categorical", "count"]


@dataclass(frozen=True)
class Feature:
    """One model input: an attribute, or the count of one event type within a window."""

    name: str
    kind: Kind
    event: str | None = None
    window: float | None = None

    @property
    def label(self) -> str:
        if self.kind != "count":
            return self.name
        return f"{self.event} in {self.window:g} days" if self.window is not None else f"{self.event} ever"


def count_feature(event: str, window: float | None) -> Feature:
    return Feature(f"{event}|{'ever' if window is None else f'{window:g}'}", "count", event, window)


def text(name: str, missing: tuple[str, ...]) -> pl.Expr:
    """The value trimmed and lower-cased; null when empty or one of the ``missing`` words."""
    value = pl.col(name).cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    return pl.when(value.is_in(list(missing))).then(None).otherwise(value)


def number(name: str, missing: tuple[str, ...]) -> pl.Expr:
    return text(name, missing).cast(pl.Float64, strict=False)


def attribute_features(frame: pl.DataFrame, names: list[str], missing: tuple[str, ...]) -> list[Feature]:
    """Numeric when every given value is a number and there are enough distinct ones; else categorical.
    Columns without any value, or with a single one, carry nothing and are left out."""
    features = []
    stats = frame.select(
        *(text(n, missing).drop_nulls().n_unique().alias(f"u:{n}") for n in names),
        *(text(n, missing).is_not_null().sum().alias(f"g:{n}") for n in names),
        *(number(n, missing).is_not_null().sum().alias(f"n:{n}") for n in names),
    ).row(0, named=True)
    for name in names:
        distinct, given, numeric = stats[f"u:{name}"], stats[f"g:{name}"], stats[f"n:{name}"]
        if distinct < 2:
            continue
        kind: Kind = "numeric" if numeric == given and distinct >= NUMERIC_MIN_DISTINCT else "categorical"
        features.append(Feature(name, kind))
    return features


def attribute_frame(frame: pl.DataFrame, features: list[Feature], missing: tuple[str, ...]) -> pl.DataFrame:
    """``ROW`` + one column per attribute feature: numbers as Float64, categories as normalised text."""
    columns = [
        (number(f.name, missing) if f.kind == "numeric" else text(f.name, missing)).alias(f.name)
        for f in features
        if f.kind != "count"
    ]
    return frame.select(ROW, *columns)


def event_counts(events: pl.DataFrame, moments: pl.DataFrame, features: list[Feature]) -> pl.DataFrame:
    """``ROW`` + one count column per count feature, for every row of ``moments``.

    ``events``: ``ROW, type, occurred_at, machine``; ``moments``: ``ROW, as_of`` and optionally
    ``score_from``. An event counts when it is not machine activity, happened at or before the row's
    ``as_of`` (never after: the cutoff is what keeps the outcome from leaking in), not before its
    ``score_from``, and at most the window's days before ``as_of`` — the points engine's rule exactly.
    """
    counts = [f for f in features if f.kind == "count"]
    if not counts:
        return moments.select(ROW)
    has_from = "score_from" in moments.columns
    age = (pl.col("as_of") - pl.col("occurred_at")).dt.total_microseconds() / DAY_US
    relevant = (
        events.lazy()
        .filter(~pl.col("machine") & pl.col("type").is_in(sorted({f.event for f in counts if f.event})))
        .join(moments.lazy(), on=ROW, how="inner")
        .filter(pl.col("occurred_at") <= pl.col("as_of"))
    )
    if has_from:
        relevant = relevant.filter(pl.col("score_from").is_null() | (pl.col("occurred_at") >= pl.col("score_from")))
    # One pass: per (lead, type), the count within each window; then one column per (type, window).
    windows = sorted({f.window for f in counts}, key=lambda w: (w is None, w or 0))
    per_type = (
        relevant.with_columns(age.alias("_age"))
        .group_by(ROW, "type")
        .agg(
            (pl.len() if w is None else (pl.col("_age") <= w).sum()).cast(pl.Int32).alias(_window_key(w))
            for w in windows
        )
    )
    columns = [pl.col(_window_key(f.window)).filter(pl.col("type") == f.event).first().alias(f.name) for f in counts]
    wide = per_type.group_by(ROW).agg(columns)
    return (
        moments.lazy()
        .select(ROW)
        .join(wide, on=ROW, how="left", maintain_order="left")
        .with_columns(pl.col(f.name).fill_null(0).cast(pl.Int32) for f in counts)
        .collect()
    )


def _window_key(window: float | None) -> str:
    return "_ever" if window is None else f"_w{window:g}"


def behaviour_features(
    events: pl.DataFrame, windows: tuple[float | None, ...] = DEFAULT_WINDOWS, min_leads: int = 30
) -> list[Feature]:
    """A count per (event type, window) for the event types at least ``min_leads`` leads have (machine
    activity aside); ``manual_adjustment`` is not behaviour."""
    types = (
        events.filter(~pl.col("machine") & (pl.col("type") != "manual_adjustment"))
        .group_by("type")
        .agg(pl.col(ROW).n_unique().alias("leads"))
        .filter(pl.col("leads") >= min_leads)
        .sort("type")
        .get_column("type")
        .to_list()
    )
    return [count_feature(t, w) for t in types for w in windows]
