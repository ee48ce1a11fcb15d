"""Behaviour, combo and manual points of a points model, over the events of a whole partition.

The events are filtered and marked per event type (JSON properties parsed only where a rule reads
them); every behaviour rule becomes a few aggregations of one ``group_by`` over the partition, combos
use forward fills over each lead's matching events. No per-lead Python.
"""

import math
from datetime import datetime

import polars as pl

from models.conditions import condition, number
from models.frames import DAY_US, RuleColumn, json_path, utc_occurred_at
from models.spec import BehaviourRule, ComboRule, Decay, PointsModel
from store.shapes import UTC_US


def relevant_events(model: PointsModel, events: pl.DataFrame, journeys: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Events of the model's types, within the journeys' stage and before ``as_of``, with property columns.

    Adds ``_age`` (days before ``as_of``), ``p:KEY`` for every property a rule reads, and ``m:I`` (behaviour
    rule ``I`` matches the event, its window aside). Rows are in no particular order.

    The work is done per event type: parsing JSON is the costly part of scoring, and a property or a
    rule only ever concerns events of the rule's types, so each type's rows parse only the keys its
    rules read and test only its rules (the other ``m:I`` are false, the other ``p:KEY`` null).
    """
    as_of_us = pl.lit(as_of).cast(UTC_US)
    types = sorted(model.event_types())
    readers: dict[str, set[str]] = {}
    for rule in model.behaviour:
        for key in [*rule.where, *(rule.total_at_least or {})]:
            readers.setdefault(key, set()).update(rule.event_types)
    if model.manual_adjustments:
        readers.setdefault("points", set()).add("manual_adjustment")
    available = [*events.columns, "_age"]
    promoted = [key for key in readers if key in available]
    parsed = sorted(key for key in readers if key not in available)
    json = bool(parsed) and "properties" in events.columns
    numeric = frozenset(key for key in promoted if key in events.columns and events.schema[key].is_numeric())
    # Only the columns scoring reads travel through the join (a partition carries every promoted property).
    wanted = {"lead_key", "occurred_at", "type", "machine", *promoted, *(["properties"] if json else [])}
    rows = (
        events.lazy()
        .select(column for column in events.columns if column in wanted)
        .with_columns(pl.col("lead_key").cast(pl.Int64), utc_occurred_at(events.schema["occurred_at"]))
        .filter(pl.col("type").is_in(types))
        .with_columns(pl.col("type").cast(pl.Enum(types)))  # rules test the type as a small integer
        .join(journeys.lazy(), on="lead_key", how="inner")
        .filter(pl.col("occurred_at") <= as_of_us)
        .filter(pl.col("score_from").is_null() | (pl.col("occurred_at") >= pl.col("score_from")))
        .with_columns(((as_of_us - pl.col("occurred_at")).dt.total_microseconds() / DAY_US).alias("_age"))
        .drop("score_from")
        .with_columns(
            # Number columns stay numbers: rules compare them as numbers (formatting them costs more).
            (pl.col(key) if key in numeric else pl.col(key).cast(pl.Utf8)).alias(f"p:{key}")
            for key in promoted
        )
    )
    if not json:  # no JSON to parse: mark every rule in the same pass (one materialisation)
        rows = rows.with_columns(pl.lit(None, pl.Utf8).alias(f"p:{key}") for key in parsed)
        return rows.with_columns(_marks(model, None, _numeric(rows))).collect()
    collected = rows.collect()
    if collected.is_empty():
        return _mark(model, collected, None, parsed, parsed)
    parts = [
        _mark(model, part, str(event_type), parsed, [key for key in parsed if event_type in readers[key]])
        for (event_type,), part in collected.partition_by("type", as_dict=True).items()
    ]
    return pl.concat(parts, how="vertical")


def _mark(
    model: PointsModel, rows: pl.DataFrame, event_type: str | None, parsed: list[str], keys: list[str]
) -> pl.DataFrame:
    """``rows`` (all of ``event_type``, or of any type when None) with ``p:`` columns (``keys`` parsed
    from the JSON, the rest of ``parsed`` null) and ``m:`` columns."""
    rows = _parse_json(rows, keys).with_columns(pl.lit(None, pl.Utf8).alias(f"p:{k}") for k in parsed if k not in keys)
    rows = rows.select(pl.exclude([f"p:{k}" for k in parsed]), *(pl.col(f"p:{k}") for k in parsed))
    marks = _marks(model, event_type, _numeric(rows))
    return rows.lazy().with_columns(marks).drop("properties", strict=False).collect()


def _marks(model: PointsModel, event_type: str | None, numeric: frozenset[str]) -> list[pl.Expr]:
    """``m:I`` for each behaviour rule: rows of ``event_type`` (or of any type when None) it matches."""
    return [
        (_match(rule, numeric) if event_type is None or event_type in rule.event_types else pl.lit(False)).alias(
            f"m:{i}"
        )
        for i, rule in enumerate(model.behaviour)
    ]


def _numeric(rows: pl.DataFrame | pl.LazyFrame) -> frozenset[str]:
    """The ``p:`` columns that hold numbers (promoted number properties)."""
    return frozenset(name for name, dtype in rows.collect_schema().items() if name[:2] == "p:" and dtype.is_numeric())


def _parse_json(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Add ``p:KEY`` from the ``properties`` JSON text; each distinct text is parsed once when texts repeat."""
    if not keys:
        return rows
    extract = [pl.col("properties").str.json_path_match(json_path(key)).alias(f"p:{key}") for key in keys]
    if rows.height >= 10_000:
        distinct = rows.select(pl.col("properties").unique())
        if distinct.height * 2 <= rows.height:
            parsed = distinct.with_columns(extract)
            return rows.with_columns(
                pl.col("properties")
                .replace_strict(parsed["properties"], parsed[f"p:{key}"], default=None, return_dtype=pl.Utf8)
                .alias(f"p:{key}")
                for key in keys
            )
    return rows.with_columns(extract)


def _match(rule: BehaviourRule, numeric: frozenset[str]) -> pl.Expr:
    """Which event rows a rule looks at (its window aside)."""
    match = pl.col("type").is_in(rule.event_types) & condition(rule.where, "p:", numeric)
    if not rule.include_machine:
        match = match & ~pl.col("machine").fill_null(False)
    return match.fill_null(False)


def _decay(model: PointsModel, age: pl.Expr, enabled: bool) -> pl.Expr:
    """The factor that points of age ``age`` (days) keep; always an expression (1.0 when no decay)."""
    decay: Decay | None = model.decay
    if decay is None or not enabled:
        return pl.lit(1.0)
    if decay.half_life_days is not None:
        return (age * (-math.log(2) / decay.half_life_days)).exp()
    factor: pl.Expr = pl.lit(1.0)
    for step in decay.steps or []:
        factor = pl.when(age >= step.after_days).then(step.keep).otherwise(factor)
    return factor


def behaviour_points(model: PointsModel, rows: pl.DataFrame) -> tuple[list[RuleColumn], pl.DataFrame | None]:
    """Row-wise columns per rule (matched points, matched age, matched amount), then one plain ``group_by``."""
    if not model.behaviour:
        return [], None
    columns = [RuleColumn(f"beh:{i}", rule.name) for i, rule in enumerate(model.behaviour)]
    numeric = _numeric(rows)
    decayed = _decay(model, pl.col("_age"), True)
    per_row: list[pl.Expr] = []
    aggs: list[pl.Expr] = []
    finals: list[pl.Expr] = []
    for i, (column, rule) in enumerate(zip(columns, model.behaviour, strict=True)):
        match = pl.col(f"m:{i}")
        if rule.within_days is not None:
            match = match & (pl.col("_age") <= rule.within_days)
        key = column.key
        if rule.per == "occurrence":
            factor = decayed if rule.decay else pl.lit(1.0)
            per_row.append(pl.when(match).then(rule.points * factor).otherwise(0.0).alias(key))
            aggs.append(pl.col(key).sum())
            finals.append(pl.col(key).clip(rule.min, rule.max).alias(key))
            continue
        per_row.append(pl.when(match).then(pl.col("_age")).alias(f"{key}:age"))
        aggs.append(pl.col(f"{key}:age").min())
        if rule.total_at_least is not None:
            ((prop, threshold),) = rule.total_at_least.items()
            amount = number(pl.col(f"p:{prop}"), f"p:{prop}" in numeric)
            per_row.append(pl.when(match).then(amount).alias(f"{key}:amount"))
            aggs.append((pl.col(f"{key}:amount").sum() >= threshold).alias(f"{key}:ok"))
        else:
            aggs.append((pl.col(f"{key}:age").count() >= (rule.count_at_least or 1)).alias(f"{key}:ok"))
        age = pl.col(f"{key}:age")
        finals.append(
            pl.when(pl.col(f"{key}:ok") & age.is_not_null())
            .then(rule.points * _decay(model, age, rule.decay))
            .otherwise(0.0)
            .alias(key)
        )
    grouped = rows.lazy().select("lead_key", *per_row).group_by("lead_key").agg(aggs)
    return columns, grouped.select("lead_key", *finals).collect()


def combo_points(model: PointsModel, rows: pl.DataFrame) -> tuple[list[RuleColumn], pl.DataFrame | None]:
    """One column per combo rule: its points (decayed from its latest holding) where it ever held."""
    if not model.combos:
        return [], None
    index = {rule.name: i for i, rule in enumerate(model.behaviour)}
    columns = [RuleColumn(f"combo:{i}", combo.name) for i, combo in enumerate(model.combos)]
    frame: pl.DataFrame | None = None
    for column, combo in zip(columns, model.combos, strict=True):
        part = _combo(model, combo, [index[n] for n in combo.all_of], rows).rename({"_points": column.key})
        frame = part if frame is None else frame.join(part, on="lead_key", how="full", coalesce=True)
    return columns, frame


def _combo(model: PointsModel, combo: ComboRule, parts: list[int], rows: pl.DataFrame) -> pl.DataFrame:
    """A combo holds at an event when every part matched in the ``within_days`` before it (or at it).

    Events matching a part, sorted by lead and time; for each part, the time of its latest match so
    far (a forward fill, valid while still on the same lead). Rows sharing a timestamp see each other
    through the last of them, so each time at which the combo holds is found.
    """
    flags = [f"m:{i}" for i in parts]
    window_us = int(combo.within_days * DAY_US)
    micros = pl.col("occurred_at").dt.epoch("us")
    holds = pl.all_horizontal(
        [
            (
                (pl.when(pl.col(flag)).then(pl.col("lead_key")).forward_fill() == pl.col("lead_key"))
                & (micros - pl.when(pl.col(flag)).then(micros).forward_fill() <= window_us)
            ).fill_null(False)
            for flag in flags
        ]
    )
    return (
        rows.lazy()
        .filter(pl.any_horizontal(flags))
        .select("lead_key", "occurred_at", "_age", *flags)
        .sort("lead_key", "occurred_at")
        .with_columns(holds.alias("_holds"))  # computed on the sorted rows, filtered after
        .filter(pl.col("_holds"))
        .group_by("lead_key")
        .agg(pl.col("_age").min())
        .select("lead_key", (combo.points * _decay(model, pl.col("_age"), combo.decay)).alias("_points"))
        .collect()
    )


def manual_points(model: PointsModel, rows: pl.DataFrame) -> pl.DataFrame | None:
    """``lead_key, _manual``: the sum of the leads' ``manual_adjustment`` points, when the model counts them."""
    if not model.manual_adjustments:
        return None
    adjustments = rows.lazy().filter(pl.col("type") == "manual_adjustment")
    return (
        adjustments.group_by("lead_key")
        .agg(number(pl.col("p:points"), "p:points" in _numeric(rows)).fill_null(0.0).sum().alias("_manual"))
        .collect()
    )
