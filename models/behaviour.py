"""Behaviour, combo and manual points of a points model, over the events of a whole partition.

The events are filtered and marked per event type (JSON properties parsed only where a rule reads
them); every behaviour rule becomes a few aggregations of one ``group_by`` over the partition, combos
use forward fills over each lead's matching events. No per-lead Python.
"""

import math
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from models.conditions import condition, number
from models.frames import DAY_US, RuleColumn, collect, compiled, json_path, utc_occurred_at
from models.spec import BehaviourRule, ComboRule, Decay, PointsModel
from store.shapes import UTC_US, utc_instant


def relevant_events(model: PointsModel, events: pl.DataFrame, journeys: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Events of the model's types, within the journeys' stage and before ``as_of``, with property columns.

    Adds ``_age`` (days before ``as_of``), ``p:KEY`` for every property a rule reads, and ``m:I`` (behaviour
    rule ``I`` matches the event, its window aside). Rows are in no particular order.

    The work is done per event type: parsing JSON is the costly part of scoring, and a property or a
    rule only ever concerns events of the rule's types, so each type's rows parse only the keys its
    rules read and test only its rules (the other ``m:I`` are false, the other ``p:KEY`` null).
    """
    shape = compiled(model, ("events", tuple(events.schema.items())), lambda: _EventShape.of(model, events.schema))
    if _none_counts(events, journeys, shape):
        # Its columns depend only on the model and the schemas: planned once, not on every journey that
        # has just entered a ``reset`` stage (a promoted lead's rescoring in a ``fresh=true`` look-up).
        key = ("no events", tuple(events.schema.items()), tuple(journeys.schema.items()))
        return compiled(model, key, lambda: _relevant(model, shape, events.clear(), journeys.clear(), as_of))
    return _relevant(model, shape, events, journeys, as_of)


def _none_counts(events: pl.DataFrame, journeys: pl.DataFrame, shape: "_EventShape") -> bool:
    """No event can count: there are none, or all are older than every journey's ``score_from``."""
    if events.is_empty():
        return True
    starts = journeys["score_from"]
    if starts.dtype != UTC_US or starts.null_count() or starts.is_empty():
        return False
    latest = events.select(shape.occurred_at.max()).item()
    return latest is None or latest < starts.min()


def _relevant(
    model: PointsModel, shape: "_EventShape", events: pl.DataFrame, journeys: pl.DataFrame, as_of: datetime
) -> pl.DataFrame:
    """``relevant_events`` of events that may count."""
    as_of_us = utc_instant(as_of)
    rows = (
        events.lazy()
        .select(shape.wanted)
        .with_columns(shape.keyed)
        .filter(shape.typed)
        .with_columns(shape.as_enum)  # rules test the type as a small integer
        .join(journeys.lazy(), on="lead_key", how="inner")
        .filter(pl.col("occurred_at") <= as_of_us)
        .filter(shape.in_stage)
        .with_columns(((as_of_us - pl.col("occurred_at")).dt.total_microseconds() / DAY_US).alias("_age"))
        .drop("score_from")
        .with_columns(shape.promoted)
    )
    if not shape.json:  # no JSON to parse: mark every rule in the same pass (one materialisation)
        rows = rows.with_columns(pl.lit(None, pl.Utf8).alias(f"p:{key}") for key in shape.parsed)
        return collect(rows.with_columns(_marks(model, None, shape.numeric)))
    collected = collect(rows)
    if collected.is_empty():
        return collect(_mark(model, collected, None, shape, shape.parsed))
    parts = [
        _mark(model, part, str(event_type), shape, shape.readers_of(str(event_type)))
        for (event_type,), part in collected.partition_by("type", as_dict=True).items()
    ]
    return collect(pl.concat(parts, how="vertical"))


@dataclass(frozen=True)
class _EventShape:
    """What ``relevant_events`` makes of a model and an events schema: the columns it keeps, the
    properties read from columns (``promoted``, as ``p:`` expressions) or parsed from the JSON, and which
    event types read which parsed keys."""

    types: list[str]
    wanted: list[str]
    occurred_at: pl.Expr
    keyed: list[pl.Expr]  # ``lead_key`` and ``occurred_at`` in the engine's types
    typed: pl.Expr  # the event is of a type the model reads
    as_enum: pl.Expr  # ``type`` as an enum of those
    in_stage: pl.Expr  # not before the journey's ``score_from``
    promoted: list[pl.Expr]
    parsed: list[str]
    readers: dict[str, set[str]]
    json: bool
    numeric: frozenset[str]  # the ``p:`` columns that hold numbers

    @classmethod
    def of(cls, model: PointsModel, schema: pl.Schema) -> "_EventShape":
        readers: dict[str, set[str]] = {}
        for rule in model.behaviour:
            for key in [*rule.where, *(rule.total_at_least or {})]:
                readers.setdefault(key, set()).update(rule.event_types)
        if model.manual_adjustments:
            readers.setdefault("points", set()).add("manual_adjustment")
        available = [*schema.names(), "_age"]
        promoted = [key for key in readers if key in available]
        parsed = sorted(key for key in readers if key not in available)
        json = bool(parsed) and "properties" in schema
        numeric = frozenset(key for key in promoted if key in schema and schema[key].is_numeric())
        # Only the columns scoring reads travel through the join (a partition carries every promoted property).
        wanted = {"lead_key", "occurred_at", "type", "machine", *promoted, *(["properties"] if json else [])}
        types = sorted(model.event_types())
        occurred_at = utc_occurred_at(schema["occurred_at"])
        return cls(
            types=types,
            wanted=[column for column in schema.names() if column in wanted],
            occurred_at=occurred_at,
            keyed=[pl.col("lead_key").cast(pl.Int64), occurred_at],
            typed=pl.col("type").is_in(types),
            as_enum=pl.col("type").cast(pl.Enum(types)),
            in_stage=pl.col("score_from").is_null() | (pl.col("occurred_at") >= pl.col("score_from")),
            # Number columns stay numbers: rules compare them as numbers (formatting them costs more).
            promoted=[
                (pl.col(key) if key in numeric else pl.col(key).cast(pl.Utf8)).alias(f"p:{key}") for key in promoted
            ],
            parsed=parsed,
            readers=readers,
            json=json,
            numeric=frozenset(f"p:{key}" for key in numeric),
        )

    def readers_of(self, event_type: str) -> list[str]:
        """The parsed keys a rule of ``event_type`` reads."""
        return [key for key in self.parsed if event_type in self.readers[key]]


def _mark(
    model: PointsModel, rows: pl.DataFrame, event_type: str | None, shape: _EventShape, keys: list[str]
) -> pl.LazyFrame:
    """``rows`` (all of ``event_type``, or of any type when None) with ``p:`` columns (``keys`` parsed
    from the JSON, the rest of ``shape.parsed`` null) and ``m:`` columns."""
    parsed = shape.parsed
    return (
        _parse_json(rows, keys)
        .with_columns(pl.lit(None, pl.Utf8).alias(f"p:{k}") for k in parsed if k not in keys)
        .select(pl.exclude([f"p:{k}" for k in parsed]), *(pl.col(f"p:{k}") for k in parsed))
        .with_columns(_marks(model, event_type, shape.numeric))
        .drop("properties", strict=False)
    )


def _marks(model: PointsModel, event_type: str | None, numeric: frozenset[str]) -> list[pl.Expr]:
    """``m:I`` for each behaviour rule: rows of ``event_type`` (or of any type when None) it matches."""

    def build() -> list[pl.Expr]:
        return [
            (_match(rule, numeric) if event_type is None or event_type in rule.event_types else pl.lit(False)).alias(
                f"m:{i}"
            )
            for i, rule in enumerate(model.behaviour)
        ]

    return compiled(model, ("marks", event_type, numeric), build)


def _numeric(rows: pl.DataFrame | pl.LazyFrame) -> frozenset[str]:
    """The ``p:`` columns that hold numbers (promoted number properties)."""
    return frozenset(name for name, dtype in rows.collect_schema().items() if name[:2] == "p:" and dtype.is_numeric())


def _parse_json(rows: pl.DataFrame, keys: list[str]) -> pl.LazyFrame:
    """Add ``p:KEY`` from the ``properties`` JSON text; each distinct text is parsed once when texts repeat."""
    if not keys:
        return rows.lazy()
    extract = [pl.col("properties").str.json_path_match(json_path(key)).alias(f"p:{key}") for key in keys]
    if rows.height >= 10_000:
        distinct = rows.select(pl.col("properties").unique())
        if distinct.height * 2 <= rows.height:
            parsed = distinct.with_columns(extract)
            return rows.lazy().with_columns(
                pl.col("properties")
                .replace_strict(parsed["properties"], parsed[f"p:{key}"], default=None, return_dtype=pl.Utf8)
                .alias(f"p:{key}")
                for key in keys
            )
    return rows.lazy().with_columns(extract)


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


def behaviour_points(model: PointsModel, rows: pl.DataFrame) -> tuple[list[RuleColumn], pl.LazyFrame | None]:
    """Row-wise columns per rule (matched points, matched age, matched amount), then one plain ``group_by``."""
    if not model.behaviour:
        return [], None
    columns, per_row, aggs, finals = compiled(
        model, ("behaviour", _numeric(rows)), lambda: _behaviour_exprs(model, _numeric(rows))
    )
    return columns, rows.lazy().select("lead_key", *per_row).group_by("lead_key").agg(aggs).select("lead_key", *finals)


def _behaviour_exprs(
    model: PointsModel, numeric: frozenset[str]
) -> tuple[list[RuleColumn], list[pl.Expr], list[pl.Expr], list[pl.Expr]]:
    """The rules' columns, and the row-wise, aggregation and final expressions of ``behaviour_points``."""
    columns = [RuleColumn(f"beh:{i}", rule.name) for i, rule in enumerate(model.behaviour)]
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
    return columns, per_row, aggs, finals


def combo_points(model: PointsModel, rows: pl.DataFrame) -> tuple[list[RuleColumn], pl.LazyFrame | None]:
    """One column per combo rule: its points (decayed from its latest holding) where it ever held."""
    if not model.combos:
        return [], None
    columns, plans = compiled(model, "combos", lambda: _combo_plans(model))
    frame: pl.LazyFrame | None = None
    for column, plan in zip(columns, plans, strict=True):
        part = plan(rows.lazy()).rename({"_points": column.key})
        frame = part if frame is None else frame.join(part, on="lead_key", how="full", coalesce=True)
    return columns, frame


def _combo_plans(model: PointsModel) -> tuple[list[RuleColumn], list["_Combo"]]:
    index = {rule.name: i for i, rule in enumerate(model.behaviour)}
    columns = [RuleColumn(f"combo:{i}", combo.name) for i, combo in enumerate(model.combos)]
    return columns, [_Combo.of(model, combo, [index[n] for n in combo.all_of]) for combo in model.combos]


@dataclass(frozen=True)
class _Combo:
    """A combo holds at an event when every part matched in the ``within_days`` before it (or at it).

    Events matching a part, sorted by lead and time; for each part, the time of its latest match so
    far (a forward fill, valid while still on the same lead). Rows sharing a timestamp see each other
    through the last of them, so each time at which the combo holds is found.
    """

    flags: list[str]
    holds: pl.Expr
    points: pl.Expr

    @classmethod
    def of(cls, model: PointsModel, combo: ComboRule, parts: list[int]) -> "_Combo":
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
        return cls(flags, holds, (combo.points * _decay(model, pl.col("_age"), combo.decay)).alias("_points"))

    def __call__(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """``lead_key, _points`` of the leads whose ``rows`` hold the combo."""
        return (
            rows.filter(pl.any_horizontal(self.flags))
            .select("lead_key", "occurred_at", "_age", *self.flags)
            .sort("lead_key", "occurred_at")
            .with_columns(self.holds.alias("_holds"))  # computed on the sorted rows, filtered after
            .filter(pl.col("_holds"))
            .group_by("lead_key")
            .agg(pl.col("_age").min())
            .select("lead_key", self.points)
        )


def manual_points(model: PointsModel, rows: pl.DataFrame) -> pl.LazyFrame | None:
    """``lead_key, _manual``: the sum of the leads' ``manual_adjustment`` points, when the model counts them."""
    if not model.manual_adjustments:
        return None
    adjustments = rows.lazy().filter(pl.col("type") == "manual_adjustment")
    return adjustments.group_by("lead_key").agg(
        number(pl.col("p:points"), "p:points" in _numeric(rows)).fill_null(0.0).sum().alias("_manual")
    )
