"""Compile a points model into Polars expressions and score a whole partition of leads at once.

A score is a pure function of (lead attributes, event log, model, stage entry time, ``as_of``): the
events are filtered and marked per event type (JSON properties parsed only where a rule reads them),
every behaviour rule becomes a few aggregations of one ``group_by`` over the partition, combos use
forward fills over each lead's matching events, and the breakdown is built from one long frame.
No per-lead Python.
"""

import math
import re
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from models.spec import BehaviourRule, ComboRule, Condition, Decay, FieldTest, PointsModel, Scale
from store.shapes import BREAKDOWN_TYPE, UTC_US

DAY_US = 86_400_000_000
MANUAL = "manual adjustments"
FIT_CAP, BEHAVIOUR_CAP = "cap: fit", "cap: behaviour"
SCALE_MAX, SCALE_MIN = "scale: maximum", "scale: minimum"
RESULT_SCHEMA = {"lead_key": pl.Int64, "score": pl.Float64, "breakdown": BREAKDOWN_TYPE}


@dataclass(frozen=True)
class _Column:
    """One breakdown entry computed as a column named ``key``."""

    key: str
    rule: str


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
    to the score.
    """
    scale = scale or model.scale or Scale()
    if journeys is None:
        journeys = leads.select("lead_key").with_columns(pl.lit(None, UTC_US).alias("score_from"))
    journeys = journeys.select(pl.col("lead_key").cast(pl.Int64), pl.col("score_from").cast(UTC_US))
    if journeys.is_empty():
        return pl.DataFrame(schema=RESULT_SCHEMA)
    if model.kind == "probability":  # a learned estimator: imported only when one scores (scikit-learn is slow to load)
        from models.learning.probability import score_probability

        return score_probability(model, leads=leads, events=events, as_of=as_of, scale=scale, journeys=journeys)

    fit_cols, fit_frame = _fit(model, journeys, leads)
    event_rows = _relevant_events(model, events, journeys, as_of)
    behaviour_cols, behaviour_frame = _behaviour(model, event_rows)
    combo_cols, combo_frame = _combos(model, event_rows)
    manual_frame = _manual(model, event_rows)

    frame = journeys.select("lead_key")
    for part in (fit_frame, behaviour_frame, combo_frame, manual_frame):
        if part is not None:
            frame = frame.join(part, on="lead_key", how="left", maintain_order="left")
    entries = [*fit_cols, *behaviour_cols, *combo_cols]
    if manual_frame is not None:
        entries.append(_Column("_manual", MANUAL))
    frame = frame.with_columns(pl.col(c.key).fill_null(0.0).round(2) for c in entries)

    fit_total = _sum([c.key for c in fit_cols])
    behaviour_total = _sum([c.key for c in [*behaviour_cols, *combo_cols]])
    frame = frame.with_columns(
        _cap(fit_total, model.caps.fit).alias("_fit_cap"),
        _cap(behaviour_total, model.caps.behaviour).alias("_behaviour_cap"),
    )
    total = fit_total + pl.col("_fit_cap") + behaviour_total + pl.col("_behaviour_cap")
    if manual_frame is not None:
        total = total + pl.col("_manual")
    frame = frame.with_columns(total.round(2).alias("_total"))
    frame = frame.with_columns(
        pl.when(pl.col("_total") > scale.max).then(scale.max - pl.col("_total")).otherwise(0.0).round(2).alias("_max"),
        pl.when(pl.col("_total") < scale.min).then(scale.min - pl.col("_total")).otherwise(0.0).round(2).alias("_min"),
    )
    entries += [
        _Column("_fit_cap", FIT_CAP),
        _Column("_behaviour_cap", BEHAVIOUR_CAP),
        _Column("_max", SCALE_MAX),
        _Column("_min", SCALE_MIN),
    ]
    frame = frame.with_row_index("_row")
    result = frame.select(
        "_row",
        pl.col("lead_key"),
        (pl.col("_total") + pl.col("_max") + pl.col("_min")).round(2).alias("score"),
    )
    return result.join(_breakdown(frame, entries), on="_row", how="left", maintain_order="left").select(
        "lead_key", "score", pl.col("breakdown").fill_null(pl.lit([], dtype=BREAKDOWN_TYPE))
    )


def _breakdown(frame: pl.DataFrame, entries: list[_Column]) -> pl.DataFrame:
    """``_row, breakdown``: the non-zero entries of each row, in ``entries`` order.

    Built long (unpivot, filter, group) rather than with ``concat_list`` of literal structs, which is
    an order of magnitude slower on large partitions. Rows without entries are absent.
    """
    keys = [c.key for c in entries]
    long = frame.select("_row", *(pl.col(k).cast(pl.Float64) for k in keys)).unpivot(
        index="_row", on=keys, variable_name="_key", value_name="points"
    )
    position = {c.key: i for i, c in enumerate(entries)}
    long = long.filter(pl.col("points") != 0).with_columns(
        pl.col("_key").replace_strict({c.key: c.rule for c in entries}, return_dtype=pl.Utf8).alias("rule"),
        pl.col("_key").replace_strict(position, return_dtype=pl.Int32).alias("_position"),
    )
    return (
        long.sort("_row", "_position")
        .group_by("_row", maintain_order=True)
        .agg(pl.struct("rule", "points").alias("breakdown"))
    )


def _sum(columns: list[str]) -> pl.Expr:
    return pl.sum_horizontal(columns) if columns else pl.lit(0.0)


def _cap(total: pl.Expr, cap: float | None) -> pl.Expr:
    if cap is None:
        return pl.lit(0.0)
    return pl.when(total > cap).then(cap - total).otherwise(0.0).round(2)


# --- fit -----------------------------------------------------------------------------------------


def _fit(model: PointsModel, journeys: pl.DataFrame, leads: pl.DataFrame) -> tuple[list[_Column], pl.DataFrame | None]:
    if not model.fit:
        return [], None
    names = {name for rule in model.fit for cond in [rule.when, *(rule.any_of or [])] for name in cond}
    base = journeys.select("lead_key").join(
        leads.with_columns(pl.col("lead_key").cast(pl.Int64)), on="lead_key", how="left"
    )
    base = base.with_columns(_extract(base, name, "attributes").alias(f"a:{name}") for name in sorted(names))
    columns = [_Column(f"fit:{i}", rule.name) for i, rule in enumerate(model.fit)]
    exprs = []
    for column, rule in zip(columns, model.fit, strict=True):
        condition = _condition(rule.when, "a:")
        if rule.any_of:
            condition = condition & pl.any_horizontal([_condition(c, "a:") for c in rule.any_of])
        exprs.append(pl.when(condition).then(float(rule.points)).otherwise(0.0).alias(column.key))
    return columns, base.select("lead_key", *exprs)


def _extract(frame: pl.DataFrame | pl.LazyFrame, name: str, json_column: str) -> pl.Expr:
    """A named value as text: a column of the frame, else a key of its JSON column, else null."""
    columns = frame.collect_schema().names()
    if name in columns:
        return pl.col(name).cast(pl.Utf8)
    if json_column in columns:
        return pl.col(json_column).str.json_path_match(_json_path(name))
    return pl.lit(None, pl.Utf8)


def _json_path(name: str) -> str:
    """``$.name`` (a dotted name reads nested objects); bracket form for names a dotted path cannot spell."""
    if re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", name):
        return f"$.{name}"
    return "$['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _condition(condition: Condition, prefix: str, numeric: frozenset[str] = frozenset()) -> pl.Expr:
    """All tests of ``condition`` on the ``prefix``-named columns (``numeric`` ones hold numbers, not text)."""
    exprs = [
        _field_test(pl.col(f"{prefix}{name}"), test, f"{prefix}{name}" in numeric) for name, test in condition.items()
    ]
    return pl.all_horizontal(exprs) if exprs else pl.lit(True)


def _field_test(value: pl.Expr, test: FieldTest, numeric: bool = False) -> pl.Expr:
    """``test`` on a text column, or on a number column as if it were its text (read back, a number is itself)."""
    number = _number(value, numeric)
    if numeric:
        value = value.cast(pl.Utf8)
    text = value.str.strip_chars().str.to_lowercase()
    checks: list[pl.Expr] = []
    if test.eq is not None:
        checks.append(_equals(text, number, test.eq).fill_null(False))
    if test.ne is not None:
        checks.append(~_equals(text, number, test.ne).fill_null(False))
    if test.in_ is not None:
        checks.append(_one_of(text, number, test.in_))
    if test.not_in is not None:
        checks.append(~_one_of(text, number, test.not_in))
    for op, bound in (("lt", test.lt), ("le", test.le), ("gt", test.gt), ("ge", test.ge)):
        if bound is not None:
            checks.append(getattr(number, op)(bound).fill_null(False))
    if test.between is not None:
        checks.append(number.is_between(test.between[0], test.between[1]).fill_null(False))
    if test.matches is not None:
        checks.append(value.str.contains(test.matches).fill_null(False))
    if test.contains is not None:
        checks.append(text.str.contains(test.contains.lower(), literal=True).fill_null(False))
    if test.present is not None:
        known = value.is_not_null() & (value.str.strip_chars() != "")
        checks.append(known.fill_null(False) if test.present else ~known.fill_null(False))
    return pl.all_horizontal(checks)


def _number(value: pl.Expr, numeric: bool) -> pl.Expr:
    """A property as a number: promoted number columns as they are, text parsed (null when it is not one)."""
    return value.cast(pl.Float64) if numeric else value.str.strip_chars().cast(pl.Float64, strict=False)


def _one_of(text: pl.Expr, number: pl.Expr, options: list[str | float]) -> pl.Expr:
    """``in``: text options compare as trimmed lower-case text, numeric ones as numbers (``50`` matches "50.0")."""
    words = [v.strip().lower() for v in options if isinstance(v, str)]
    numbers = [float(v) for v in options if not isinstance(v, str)]
    hit = text.is_in(words)
    if numbers:
        hit = hit | number.is_in(numbers)
    return hit.fill_null(False)


def _equals(text: pl.Expr, number: pl.Expr, expected: str | float | bool) -> pl.Expr:
    if isinstance(expected, bool):
        return text.is_in(["true", "1", "yes"] if expected else ["false", "0", "no"])
    if isinstance(expected, int | float):
        return number == float(expected)
    return text == expected.strip().lower()


# --- behaviour -----------------------------------------------------------------------------------


def _relevant_events(model: PointsModel, events: pl.DataFrame, journeys: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
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
        .with_columns(pl.col("lead_key").cast(pl.Int64), _utc(events.schema["occurred_at"]))
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


def _utc(dtype: pl.DataType) -> pl.Expr:
    """``occurred_at`` as UTC microseconds (naive times are taken as UTC)."""
    column = pl.col("occurred_at")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone != "UTC":
        column = column.dt.convert_time_zone("UTC")
    return column.cast(UTC_US)


def _parse_json(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Add ``p:KEY`` from the ``properties`` JSON text; each distinct text is parsed once when texts repeat."""
    if not keys:
        return rows
    extract = [pl.col("properties").str.json_path_match(_json_path(key)).alias(f"p:{key}") for key in keys]
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
    match = pl.col("type").is_in(rule.event_types) & _condition(rule.where, "p:", numeric)
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


def _behaviour(model: PointsModel, rows: pl.DataFrame) -> tuple[list[_Column], pl.DataFrame | None]:
    """Row-wise columns per rule (matched points, matched age, matched amount), then one plain ``group_by``."""
    if not model.behaviour:
        return [], None
    columns = [_Column(f"beh:{i}", rule.name) for i, rule in enumerate(model.behaviour)]
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
            amount = _number(pl.col(f"p:{prop}"), f"p:{prop}" in numeric)
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


def _combos(model: PointsModel, rows: pl.DataFrame) -> tuple[list[_Column], pl.DataFrame | None]:
    if not model.combos:
        return [], None
    index = {rule.name: i for i, rule in enumerate(model.behaviour)}
    columns = [_Column(f"combo:{i}", combo.name) for i, combo in enumerate(model.combos)]
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


def _manual(model: PointsModel, rows: pl.DataFrame) -> pl.DataFrame | None:
    if not model.manual_adjustments:
        return None
    adjustments = rows.lazy().filter(pl.col("type") == "manual_adjustment")
    return (
        adjustments.group_by("lead_key")
        .agg(_number(pl.col("p:points"), "p:points" in _numeric(rows)).fill_null(0.0).sum().alias("_manual"))
        .collect()
    )


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
