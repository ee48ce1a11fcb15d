"""From rule columns to a score and its breakdown: group caps, the clamp to the scale, and the
non-zero entries of each lead in rule order (they sum to the score); ``top_rules`` shows the largest."""

import functools

import polars as pl

from models.frames import RuleColumn, collect
from models.spec import Caps, Scale
from store.shapes import BREAKDOWN_TYPE

MANUAL = "manual adjustments"
FIT_CAP, BEHAVIOUR_CAP = "cap: fit", "cap: behaviour"
SCALE_MAX, SCALE_MIN = "scale: maximum", "scale: minimum"
BASE_POINTS = "base points"


def settle(
    frame: pl.LazyFrame,
    *,
    fit: list[RuleColumn],
    behaviour: list[RuleColumn],
    manual: bool,
    caps: Caps,
    scale: Scale,
    base: float = 0,
) -> pl.DataFrame:
    """``lead_key, score, breakdown`` from ``frame`` (``lead_key`` and one column per rule, plus
    ``_manual`` when ``manual``): the fit and behaviour groups capped, the total clamped to the scale,
    and every cap or clamp an entry of its own so that the breakdown still sums to the score. ``base``
    points (a learned scorecard's offset) come first, outside the caps."""
    steps, entries = _settling(tuple(fit), tuple(behaviour), manual, caps, scale, float(base))
    for step in steps:
        frame = frame.with_columns(step)
    # Materialised once: the score and the breakdown both read it (a lazy frame read twice is planned twice).
    frame = collect(frame.with_row_index("_row")).lazy()
    result = frame.select(_SCORE)
    settled = result.join(_breakdown(frame, entries), on="_row", how="left", maintain_order="left").select(_SETTLED)
    return collect(settled)


# ``settle``'s fixed expressions, built once (Polars spends more Python building them than running them
# on one lead's row).
_SCORE = [
    pl.col("_row"),
    pl.col("lead_key"),
    (pl.col("_total") + pl.col("_max") + pl.col("_min")).round(2).alias("score"),
]
_SETTLED = [pl.col("lead_key"), pl.col("score"), pl.col("breakdown").fill_null(pl.lit([], dtype=BREAKDOWN_TYPE))]
_NONZERO = pl.col("points") != 0
_ENTRIES = pl.struct("rule", "points").alias("breakdown")


@functools.lru_cache(maxsize=256)
def _settling(
    fit: tuple[RuleColumn, ...],
    behaviour: tuple[RuleColumn, ...],
    manual: bool,
    caps: Caps,
    scale: Scale,
    base: float,
) -> tuple[list[list[pl.Expr]], tuple[RuleColumn, ...]]:
    """``settle``'s expressions, one list per ``with_columns`` step, and the breakdown's entries: built
    once per (rules, caps, scale), the same for every frame."""
    entries = [*fit, *behaviour]
    if manual:
        entries.append(RuleColumn("_manual", MANUAL))
    # A rule's points are finite or nothing: an infinite one would turn the clamped total into NaN.
    finite = [pl.when(pl.col(c.key).is_finite()).then(pl.col(c.key)).otherwise(0.0).round(2) for c in entries]
    fit_total = _sum([c.key for c in fit])
    behaviour_total = _sum([c.key for c in behaviour])
    capped = [
        _cap(fit_total, caps.fit).alias("_fit_cap"),
        _cap(behaviour_total, caps.behaviour).alias("_behaviour_cap"),
    ]
    total = pl.col("_base") + fit_total + pl.col("_fit_cap") + behaviour_total + pl.col("_behaviour_cap")
    if manual:
        total = total + pl.col("_manual")
    clamped = [
        pl.when(pl.col("_total") > scale.max).then(scale.max - pl.col("_total")).otherwise(0.0).round(2).alias("_max"),
        pl.when(pl.col("_total") < scale.min).then(scale.min - pl.col("_total")).otherwise(0.0).round(2).alias("_min"),
    ]
    steps = [[pl.lit(base).alias("_base")], finite, capped, [total.round(2).alias("_total")], clamped]
    shown = (
        RuleColumn("_base", BASE_POINTS),
        *entries,
        RuleColumn("_fit_cap", FIT_CAP),
        RuleColumn("_behaviour_cap", BEHAVIOUR_CAP),
        RuleColumn("_max", SCALE_MAX),
        RuleColumn("_min", SCALE_MIN),
    )
    return steps, shown


def _breakdown(frame: pl.LazyFrame, entries: tuple[RuleColumn, ...]) -> pl.LazyFrame:
    """``_row, breakdown``: the non-zero entries of each row, in ``entries`` order.

    Built long (unpivot, filter, group) rather than with ``concat_list`` of literal structs, which is
    an order of magnitude slower on large partitions. Rows without entries are absent.
    """
    keys, values, labels = _long_exprs(entries)
    long = frame.select("_row", *values).unpivot(index="_row", on=keys, variable_name="_key", value_name="points")
    long = long.filter(_NONZERO).with_columns(labels)
    return long.sort("_row", "_position").group_by("_row", maintain_order=True).agg(_ENTRIES)


@functools.lru_cache(maxsize=256)
def _long_exprs(entries: tuple[RuleColumn, ...]) -> tuple[list[str], list[pl.Expr], list[pl.Expr]]:
    """``_breakdown``'s columns, their values as floats, and each entry's rule name and position."""
    keys = [c.key for c in entries]
    position = {c.key: i for i, c in enumerate(entries)}
    labels = [
        pl.col("_key").replace_strict({c.key: c.rule for c in entries}, return_dtype=pl.Utf8).alias("rule"),
        pl.col("_key").replace_strict(position, return_dtype=pl.Int32).alias("_position"),
    ]
    return keys, [pl.col(k).cast(pl.Float64) for k in keys], labels


def _sum(columns: list[str]) -> pl.Expr:
    return pl.sum_horizontal(columns) if columns else pl.lit(0.0)


def _cap(total: pl.Expr, cap: float | None) -> pl.Expr:
    if cap is None:
        return pl.lit(0.0)
    return pl.when(total > cap).then(cap - total).otherwise(0.0).round(2)


def top_rules(breakdown: pl.Expr, n: int = 3) -> pl.Expr:
    """``"persona title:+15; student:-100"``: the ``n`` largest contributions by size."""
    points = pl.element().struct.field("points")
    shown = pl.when(points == points.round(0)).then(points.cast(pl.Int64).cast(pl.Utf8)).otherwise(points.cast(pl.Utf8))
    label = pl.format(
        "{}:{}{}", pl.element().struct.field("rule"), pl.when(points > 0).then(pl.lit("+")).otherwise(pl.lit("")), shown
    )
    rule = pl.element().struct.field("rule")
    reasons = pl.element().filter(~rule.str.starts_with("cap: ") & ~rule.str.starts_with("scale: "))
    top = label.sort_by(points.abs(), descending=True, maintain_order=True).head(n)
    return breakdown.list.eval(reasons).list.eval(top).list.join("; ")
