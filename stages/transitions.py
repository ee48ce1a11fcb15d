"""Journeys moving through a product line's funnel: promotion by threshold and external (CRM) stage updates.

Pure functions over Polars frames; the flow reads the frames, calls these, and stores what they return.
A transition never touches a score: it changes the journey's stage, ``stage_entered_at`` and
``score_from`` (the entry policy), and the next scoring derives the new stage's score from the event
log. That keeps "scores are derived" true across stages.

Frames used here:

- journeys: ``journey_id, lead_key, stage, stage_entered_at, score_from`` and optionally ``status``
  (default ``active``), ``score`` (the current score, recorded as ``score_before`` of an external move),
  ``entered_by`` (``opened``, ``threshold`` or ``external``: how it entered its stage) and
  ``last_activity`` (its latest scored event: what lets a journey a CRM move put back earn promotion);
- scored: what ``stages.scoring.score_line`` returns (``journey_id, stage, score, …``);
- transitions: ``TRANSITION_SCHEMA``, in the order they happened; ``stage_entered_at`` of the journey
  afterwards is ``at``, its ``score_from`` and ``status`` are the columns of the same names.
"""

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from models.engine import score
from models.frames import collect, collect_all, compiled
from models.spec import Scale
from stages.portfolio import ProductLine, Stage
from store.shapes import BREAKDOWN_TYPE, STAGE_UPDATE_SCHEMA, TRANSITION_SCHEMA, UTC_US, empty_frame, utc_instant

DAY_US = 86_400_000_000


def _stage_table(line: ProductLine) -> pl.DataFrame:
    """One row per stage: its promotion rule, the stage it leads to, and what entering it does; built
    once per line (each run and each ``fresh=true`` look-up promotes with it)."""
    return compiled(line, "stage table", lambda: _build_stage_table(line))


def _build_stage_table(line: ProductLine) -> pl.DataFrame:
    rows = []
    for stage in line.stages:
        target = line.next_stage(stage.name)
        dwell = stage.spec.min_dwell_days
        rows.append(
            {
                "stage": stage.name,
                "promote_at": stage.spec.promote_at if target is not None else None,
                "dwell_us": None if dwell is None else round(dwell * DAY_US),
                "next_stage": target.name if target is not None else None,
                "next_resets": target is not None and target.resets,
                "resets": stage.resets,
                "terminal_status": stage.spec.status,
                "holds": stage.spec.after_crm_move == "hold",
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "stage": pl.Utf8,
            "promote_at": pl.Float64,
            "dwell_us": pl.Int64,
            "next_stage": pl.Utf8,
            "next_resets": pl.Boolean,
            "resets": pl.Boolean,
            "terminal_status": pl.Utf8,
            "holds": pl.Boolean,
        },
    )


def _status(columns: Collection[str]) -> pl.Expr:
    """A journey's ``status``: the column when the frame has one (``columns``), else ``active``."""
    return pl.col("status") if "status" in columns else pl.lit("active")


def promote(line: ProductLine, journeys: pl.DataFrame, scored: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """One transition per journey whose current-stage score reaches its stage's ``promote_at``.

    The journey moves one step, to the next funnel stage, entering it at ``as_of`` (the run's time:
    the moment the crossing was observed); with ``reset`` the new stage counts events from ``as_of``
    on, with ``carry`` ``score_from`` is kept. ``min_dwell_days`` holds a journey back until it has
    spent that long in its stage (a journey without ``stage_entered_at`` is taken to have). A journey
    that sales moved into its stage (``entered_by == "external"``) stays there, under the stage's default
    ``after_crm_move: hold``, until it shows activity after the move: a CRM move is a person's decision
    that the same run must not undo. A score computed under another stage than the journey's current
    one is ignored (stale).
    """
    table = compiled(line, "promotions", lambda: _stage_table(line).filter(pl.col("promote_at").is_not_null()))
    if table.is_empty() or journeys.is_empty():
        return empty_frame(TRANSITION_SCHEMA)
    present = frozenset(journeys.columns) & {"status", "entered_by", "last_activity"}
    state, promotes, moved = _promotion_exprs(present)
    # One plan, collected once: on one journey (a ``fresh=true`` look-up) each eager step costs more than its rows.
    plan = (
        journeys.lazy()
        .select(*state, utc_instant(as_of).alias("_at"))
        .join(scored.lazy().select("journey_id", "stage", "score"), on=["journey_id", "stage"], how="inner")
        .join(table.lazy(), on="stage", how="inner")
        .filter(promotes)
        .select(moved)
        .cast(TRANSITION_SCHEMA)  # type: ignore[arg-type]
    )
    return collect(plan)


@functools.lru_cache(maxsize=8)
def _promotion_exprs(present: frozenset[str]) -> tuple[list[pl.Expr], pl.Expr, list[pl.Expr]]:
    """``promote``'s expressions for journeys with the optional columns ``present``: the journey state it
    reads, which rows promote and the transitions they make. The run's time is column ``_at``, so they
    are built once, not on every look-up (≈ 150 Polars calls, 1 ms of Python)."""
    entered_by = pl.col("entered_by") if "entered_by" in present else pl.lit(None, pl.Utf8)
    activity = pl.col("last_activity") if "last_activity" in present else pl.lit(None, UTC_US)
    state = [
        pl.col("journey_id", "lead_key", "stage"),
        pl.col("stage_entered_at").cast(UTC_US),
        pl.col("score_from").cast(UTC_US),
        _status(present).alias("status"),
        entered_by.alias("entered_by"),
        activity.cast(UTC_US).alias("last_activity"),
    ]
    held = (
        pl.col("holds")
        & (pl.col("entered_by") == "external")
        & (pl.col("last_activity").is_null() | (pl.col("last_activity") <= pl.col("stage_entered_at")))
    ).fill_null(False)
    at = pl.col("_at")
    promotes = (
        (pl.col("score") >= pl.col("promote_at"))
        & (
            pl.col("dwell_us").is_null()
            | pl.col("stage_entered_at").is_null()
            | ((at - pl.col("stage_entered_at")).dt.total_microseconds() >= pl.col("dwell_us"))
        )
        & ~held
    )
    moved = [
        pl.col("journey_id", "lead_key"),
        pl.col("stage").alias("from_stage"),
        pl.col("next_stage").alias("to_stage"),
        at.alias("at"),
        pl.lit("threshold").alias("reason"),
        pl.lit(None, pl.Utf8).alias("source"),
        pl.col("score").alias("score_before"),
        pl.lit(None, pl.Float64).alias("score_after"),
        pl.when(pl.col("next_resets")).then(at).otherwise(pl.col("score_from")).alias("score_from"),
        pl.col("status"),
    ]
    return state, promotes, moved


def apply_external(
    line: ProductLine, journeys: pl.DataFrame, updates: pl.DataFrame, *, as_of: datetime | None = None
) -> pl.DataFrame:
    """Transitions for CRM stage updates (``lead_key, stage, changed_at, source``), reason ``external``.

    Any stage is accepted, backwards and terminal included; the target stage's entry policy applies
    at ``changed_at`` (``reset``: ``score_from = changed_at``). A terminal stage gives its ``status``;
    leaving one makes the journey ``active`` again. Per journey, updates apply in ``changed_at`` order
    and each becomes a transition; an update to the stage the journey is already in is a no-op (so
    re-ingesting a file changes nothing), one older than the journey's ``stage_entered_at`` is stale
    and ignored (unless the journey never moved since ``opened_at``, when that column is given), one
    after ``as_of`` waits for a later run, one for a lead without a journey in this line is ignored.
    Unknown stage names are a bug of the caller (ingestion rejects them): ValueError.
    """
    if updates.is_empty() or journeys.is_empty():
        return empty_frame(TRANSITION_SCHEMA)
    updates = updates.select(list(STAGE_UPDATE_SCHEMA)).cast(STAGE_UPDATE_SCHEMA)  # type: ignore[arg-type]
    unknown = set(updates["stage"].unique().to_list()) - {stage.name for stage in line.stages}
    if unknown:
        raise ValueError(f"product line {line.name!r} has no stage {sorted(map(str, unknown))}")
    if as_of is not None:
        updates = updates.filter(pl.col("changed_at") <= utc_instant(as_of))
    table = _stage_table(line).select("stage", "resets", "terminal_status")
    current = journeys.select(
        "journey_id",
        "lead_key",
        pl.col("stage").alias("current_stage"),
        pl.col("stage_entered_at").cast(UTC_US),
        pl.col("score_from").cast(UTC_US).alias("current_score_from"),
        _status(journeys.columns).alias("current_status"),
        (pl.col("score") if "score" in journeys.columns else pl.lit(None)).cast(pl.Float64).alias("current_score"),
        (pl.col("opened_at") if "opened_at" in journeys.columns else pl.lit(None)).cast(UTC_US).alias("opened_at"),
    )
    # A journey that never moved since it opened takes any update: the CRM may know the lead from before
    # leadscore opened its journey (a lead imported today with last month's deals).
    moved = pl.col("opened_at").is_null() | (pl.col("stage_entered_at") > pl.col("opened_at"))
    moves = (
        updates.with_row_index("_order")
        .join(current, on="lead_key", how="inner")
        .filter(pl.col("stage_entered_at").is_null() | (pl.col("changed_at") >= pl.col("stage_entered_at")) | ~moved)
        .sort("journey_id", "changed_at", "_order")
        .with_columns(
            pl.col("stage").shift(1).over("journey_id").fill_null(pl.col("current_stage")).alias("from_stage")
        )
        # Dropping no-ops keeps the chain consistent: a no-op's stage is also the previous move's target.
        .filter(pl.col("from_stage") != pl.col("stage"))
        .join(table, on="stage", how="left")
        .join(
            table.select(pl.col("stage").alias("from_stage"), pl.col("terminal_status").alias("from_status")),
            on="from_stage",
            how="left",
        )
    )
    first = pl.int_range(pl.len()).over("journey_id") == 0
    return (
        moves.with_columns(
            # Within a chain of moves, score_from and status follow the latest move that set them.
            pl.when(pl.col("resets"))
            .then(pl.col("changed_at"))
            .otherwise(None)
            .forward_fill()
            .over("journey_id")
            .fill_null(pl.col("current_score_from"))
            .alias("score_from"),
            pl.when(pl.col("terminal_status").is_not_null())
            .then(pl.col("terminal_status"))
            .when(pl.col("from_status").is_not_null())
            .then(pl.lit("active"))
            .otherwise(None)
            .forward_fill()
            .over("journey_id")
            .fill_null(pl.col("current_status"))
            .alias("status"),
            pl.when(first).then(pl.col("current_score")).otherwise(None).alias("score_before"),
        )
        .select(
            "journey_id",
            "lead_key",
            "from_stage",
            pl.col("stage").alias("to_stage"),
            pl.col("changed_at").alias("at"),
            pl.lit("external").alias("reason"),
            "source",
            "score_before",
            pl.lit(None, pl.Float64).alias("score_after"),
            "score_from",
            "status",
        )
        .cast(TRANSITION_SCHEMA)  # type: ignore[arg-type]
    )


def apply_transitions(journeys: pl.DataFrame, transitions: pl.DataFrame) -> pl.DataFrame:
    """``journeys`` with the state after ``transitions`` (the last one per journey wins): stage,
    ``stage_entered_at``, ``score_from``, ``status`` and ``entered_by`` (the last move's reason; the
    last two added when absent); other columns unchanged."""
    if transitions.is_empty():
        return journeys
    last, updated = _transition_exprs()
    frame = journeys.lazy()  # one plan, collected once (see ``promote``)
    if "status" not in journeys.columns:
        frame = frame.with_columns(pl.lit("active").alias("status"))
    if "entered_by" not in journeys.columns:
        frame = frame.with_columns(pl.lit(None, pl.Utf8).alias("entered_by"))
    moves = transitions.lazy().group_by("journey_id", maintain_order=True).last().select(last)
    return collect(
        frame.join(moves, on="journey_id", how="left", maintain_order="left")
        .with_columns(updated)
        .drop("_stage", "_entered", "_from", "_status", "_reason")
    )


@functools.cache
def _transition_exprs() -> tuple[list[pl.Expr], list[pl.Expr]]:
    """``apply_transitions``' expressions (each journey's last move, the columns it updates), built once."""
    renamed = {"to_stage": "_stage", "at": "_entered", "score_from": "_from", "status": "_status", "reason": "_reason"}
    last = [pl.col("journey_id"), *(pl.col(name).alias(alias) for name, alias in renamed.items())]
    moved = pl.col("_stage").is_not_null()
    updated = [
        pl.when(moved).then(pl.col("_stage")).otherwise(pl.col("stage")).alias("stage"),
        pl.when(moved).then(pl.col("_entered")).otherwise(pl.col("stage_entered_at").cast(UTC_US))
        .alias("stage_entered_at"),
        pl.when(moved).then(pl.col("_from")).otherwise(pl.col("score_from").cast(UTC_US)).alias("score_from"),
        pl.when(moved).then(pl.col("_status")).otherwise(pl.col("status")).alias("status"),
        pl.when(moved).then(pl.col("_reason")).otherwise(pl.col("entered_by")).alias("entered_by"),
    ]  # fmt: skip
    return last, updated


@dataclass(frozen=True)
class Advanced:
    """The outcome of ``advance``.

    ``steps`` is every scored state of the run, ``scored``'s columns plus ``step``: step 0 is the
    scoring the run started from, step k the rescoring after the k-th promotion hop (moved journeys
    only). Triggers and qualification milestones read it, so a journey that crosses a threshold in
    one stage and is promoted in the same run still counts as having crossed it.
    """

    journeys: pl.DataFrame
    scored: pl.DataFrame
    transitions: pl.DataFrame
    steps: pl.DataFrame


def advance(
    line: ProductLine,
    journeys: pl.DataFrame,
    scored: pl.DataFrame,
    rescore: Callable[[pl.DataFrame], pl.DataFrame],
    as_of: datetime,
) -> Advanced:
    """Promote, rescore the moved journeys under their new stage, and promote again, until none moves.

    ``rescore(journeys)`` scores a subset of journeys (the flow passes ``score_line`` bound to the
    partition's leads and events). Promotion only goes forward, one stage per hop, so there are at
    most ``len(line.stages) - 1`` hops; the loop stops there whatever ``rescore`` returns.
    Transitions come back in hop order with ``score_after`` filled in.
    """
    steps = [scored.lazy().with_columns(_step(0))]
    moves: list[pl.LazyFrame] = []
    for hop in range(1, len(line.stages)):
        moved = promote(line, journeys, scored, as_of)
        if moved.is_empty():
            break
        journeys = apply_transitions(journeys, moved)
        ids = moved["journey_id"].implode()
        rescored = rescore(journeys.filter(pl.col("journey_id").is_in(ids))).select(scored.columns)
        scored = pl.concat([scored.filter(~pl.col("journey_id").is_in(ids)), rescored])
        after = rescored.lazy().select(_SCORE_AFTER)
        moves.append(moved.lazy().drop("score_after").join(after, on="journey_id", how="left").select(_TRANSITION))
        steps.append(rescored.lazy().with_columns(_step(hop)))
    made = pl.concat(moves) if moves else empty_frame(TRANSITION_SCHEMA).lazy()
    transitions, all_steps = collect_all([made, pl.concat(steps)])
    return Advanced(journeys=journeys, scored=scored, transitions=transitions, steps=all_steps)


_SCORE_AFTER = [pl.col("journey_id"), pl.col("score").alias("score_after")]
_TRANSITION = pl.col(*TRANSITION_SCHEMA)


@functools.lru_cache(maxsize=16)
def _step(hop: int) -> pl.Expr:
    """``step`` = ``hop`` (built once: a look-up's few ``pl.lit`` cost more than its rows)."""
    return pl.lit(hop, pl.Int32).alias("step")


def score_in_stage(
    stage: Stage,
    *,
    journeys: pl.DataFrame,
    leads: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    scale: Scale,
) -> pl.DataFrame:
    """``models.engine.score`` with the stage's ``carry_fraction`` applied (``lead_key, score, breakdown``).

    ``journeys`` has ``lead_key, score_from, stage_entered_at``. Without a fraction this is plain
    ``score``. With one, the carried score (from ``score_from``) and the reset score (from
    ``stage_entered_at``) are blended rule by rule: ``f × carried + (1 − f) × reset``; the blended
    breakdown still sums to the score, and a convex blend of two scores on the scale stays on it.
    """
    fraction = stage.spec.carry_fraction
    carried = score(stage.model, leads=leads, events=events, as_of=as_of, scale=scale, journeys=journeys)
    if fraction is None or fraction == 1 or journeys.is_empty():
        return carried
    reset_journeys = journeys.select(
        "lead_key",
        pl.max_horizontal(pl.col("score_from").cast(UTC_US), pl.col("stage_entered_at").cast(UTC_US)).alias(
            "score_from"
        ),
    )
    fresh = score(stage.model, leads=leads, events=events, as_of=as_of, scale=scale, journeys=reset_journeys)

    def entries(frame: pl.DataFrame, weight: float, offset: int) -> pl.DataFrame:
        return (
            frame.select("lead_key", "breakdown")
            .explode("breakdown")
            .unnest("breakdown")
            .drop_nulls("rule")
            .with_row_index("_order", offset)
            .with_columns(pl.col("points") * weight)
        )

    carried_entries = entries(carried, fraction, 0)
    long = pl.concat([carried_entries, entries(fresh, 1 - fraction, carried_entries.height)])
    # Entries keep the carried breakdown's order, then the reset-only ones.
    blended = (
        long.group_by("lead_key", "rule")
        .agg(pl.col("points").sum().round(2), pl.col("_order").min())
        .filter(pl.col("points") != 0)
        .sort("lead_key", "_order")
        .group_by("lead_key", maintain_order=True)
        .agg(pl.struct("rule", "points").alias("breakdown"), pl.col("points").sum().round(2).alias("score"))
    )
    return (
        carried.select("lead_key")
        .join(blended, on="lead_key", how="left", maintain_order="left")
        .select(
            "lead_key",
            pl.col("score").fill_null(0.0),
            pl.col("breakdown").fill_null(pl.lit([], dtype=BREAKDOWN_TYPE)),
        )
    )
