"""What fires after a run: trigger firings with their arm state, and qualification milestones.

Pure functions over Polars frames; ``stages/`` decides *what* fires, ``flows/`` executes the actions.

Every trigger is a condition on a journey's state (score at or above X, score below X, score at or
above a qualification's threshold, stage is S) with an arm flag per (journey, trigger). A trigger fires
when it is armed and its condition holds; it then disarms, and re-arms once the condition stops holding
(the score went back across). ``qualification_reached`` is sticky: once fired it never re-arms. A
(journey, trigger) without a stored arm row is armed as its previous state implies (so a new trigger
does not fire for everyone already past its threshold); with no previous score at all the journey is
new and the score counts as coming from the scale minimum: ``crosses_up`` and ``qualification_reached``
are armed, ``crosses_down`` is not (it was never above). ``stage_entered`` is armed unless the previous
stage was already that one (a journey absent from ``before`` enters its stage). A score trigger
restricted to a ``stage`` treats entering that stage as such a fresh start.

Frames:

- before: the journeys' state read at the start of the run (``journey_id, stage, score``; ``score``
  null for a journey never scored);
- after: the run's scored states (``journey_id, lead_key, stage, score`` and optionally ``step``,
  ``band``, ``qualification`` and ``breakdown``, which the firings copy: they carry the state that
  crossed): ``Advanced.steps``, plus a row with a null score for each journey moved to a terminal
  stage so that ``stage_entered`` sees it;
- armed: ``ARM_SCHEMA``, the stored arm state. ``as_of`` is when a row was last written: a pair
  written at or after the run's ``as_of`` is not evaluated again, so re-running a run fires nothing twice.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import polars as pl

from stages.portfolio import ProductLine
from stages.spec import TriggerSpec
from store.shapes import ARM_SCHEMA, FIRING_SCHEMA, FIRING_STATE_COLUMNS, MILESTONE_SCHEMA, UTC_US, utc_instant

DIRECTION = {"crosses_up": "up", "crosses_down": "down", "qualification_reached": "reached", "stage_entered": "entered"}


@dataclass(frozen=True)
class Fired:
    """``firings``: one row per action of each firing (``FIRING_SCHEMA``); ``armed``: the arm rows to
    upsert (``ARM_SCHEMA``), stamped with the run's ``as_of``: those that fired, changed, or differ from
    what the journey's new state implies (a sticky trigger that stays disarmed). A pair without a row
    is armed as its state implies, so most pairs never need one."""

    firings: pl.DataFrame
    armed: pl.DataFrame


class Watched(Protocol):
    """What ``fire`` watches: a product line's journeys, or an account model's accounts (``stages.accounts``)."""

    @property
    def triggers(self) -> list[TriggerSpec]: ...

    @property
    def qualifications(self) -> list[tuple[str, float]]: ...


def _condition(line: Watched, trigger: TriggerSpec, stage: pl.Expr, score: pl.Expr) -> pl.Expr:
    kind = trigger.kind
    if kind == "crosses_up":
        return score >= trigger.threshold
    if kind == "crosses_down":
        return score < trigger.threshold
    if kind == "qualification_reached":
        return score >= dict(line.qualifications)[str(trigger.when.qualification_reached)]
    return stage == trigger.when.stage_entered


def _evaluate(
    line: Watched,
    trigger: TriggerSpec,
    current: pl.DataFrame,
    previous: pl.DataFrame,
    armed: pl.DataFrame,
    reached: pl.DataFrame | None,
) -> pl.DataFrame:
    """``current`` with ``armed_old``, ``armed_new``, ``fired`` for one trigger (rows it watches only)."""
    kind = trigger.kind
    rows = current
    if trigger.stage is not None:
        rows = rows.filter(pl.col("stage") == trigger.stage)
    if kind != "stage_entered":
        rows = rows.filter(pl.col("score").is_not_null())
    rows = rows.join(previous, on="journey_id", how="left").join(
        armed.filter(pl.col("trigger") == trigger.name).select("journey_id", pl.col("armed").alias("stored")),
        on="journey_id",
        how="left",
    )
    initial = kind != "crosses_down"
    # A stage is always known (terminal journeys have none but a stage); a score only once scored.
    fresh = pl.col("prev_stage" if kind == "stage_entered" else "prev_score").is_null()
    if trigger.stage is not None:
        fresh = fresh | (pl.col("prev_stage") != trigger.stage)
    was = _condition(line, trigger, pl.col("prev_stage"), pl.col("prev_score"))
    default = pl.when(fresh).then(pl.lit(initial)).otherwise(~was)
    sticky = kind == "qualification_reached"
    if sticky and reached is not None:
        done = reached.filter(pl.col("qualification") == trigger.when.qualification_reached).select(
            "journey_id", pl.lit(True).alias("_reached")
        )
        rows = rows.join(done.unique("journey_id"), on="journey_id", how="left")
        default = default & pl.col("_reached").is_null()
    armed_old = pl.col("stored").fill_null(default)
    if trigger.stage is not None and not sticky:
        armed_old = pl.when(fresh).then(pl.lit(initial)).otherwise(armed_old)
    holds = _condition(line, trigger, pl.col("stage"), pl.col("score"))
    rows = rows.with_columns(armed_old.alias("armed_old"), holds.fill_null(False).alias("_holds"))
    armed_new = pl.col("armed_old") & ~pl.col("_holds") if sticky else ~pl.col("_holds")
    return rows.with_columns(
        (pl.col("armed_old") & pl.col("_holds")).alias("fired"),
        armed_new.alias("armed_new"),
    )


def _actions(trigger: TriggerSpec) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "action_index": list(range(len(trigger.actions))),
            "action": [action.kind for action in trigger.actions],
            "params": [json.dumps(action.params, sort_keys=True) for action in trigger.actions],
        },
        schema={"action_index": pl.Int32, "action": pl.Utf8, "params": pl.Utf8},
    )


def fire(
    line: Watched,
    before: pl.DataFrame,
    after: pl.DataFrame,
    armed: pl.DataFrame,
    *,
    as_of: datetime,
    reached: pl.DataFrame | None = None,
) -> Fired:
    """The firings of ``line``'s triggers between ``before`` and the steps of ``after``, and the new arm rows.

    Steps are taken in order, each compared with the journey's state at the previous step, so a
    journey that crossed in one stage and was promoted in the same run has fired. ``reached``
    (``journey_id, qualification``: milestones recorded before this run) makes ``qualification_reached``
    exact for journeys without an arm row. A pure function: the same inputs give the same output.
    The caller stores ``Fired.armed``, the firings and the journeys' new state in one transaction:
    a pair without an arm row is derived from that state next time.
    """
    empty = Fired(pl.DataFrame(schema=FIRING_SCHEMA), pl.DataFrame(schema=ARM_SCHEMA))
    if not line.triggers or after.is_empty():
        return empty
    at = utc_instant(as_of)
    if "step" not in after.columns:
        after = after.with_columns(pl.lit(0, pl.Int32).alias("step"))
    after = after.with_columns(
        pl.lit(None, FIRING_SCHEMA[name]).alias(name) for name in FIRING_STATE_COLUMNS if name not in after.columns
    )
    stored = armed.select(
        pl.col("journey_id").cast(pl.Int64),
        pl.col("trigger").cast(pl.Utf8),
        pl.col("armed").cast(pl.Boolean),
        (pl.col("as_of") if "as_of" in armed.columns else pl.lit(None)).cast(UTC_US),
    )
    done = stored.filter(pl.col("as_of") >= at).select("journey_id", "trigger")
    # A firing is identified by the arm state it consumed, so two runs reading the same state agree on it.
    arm_times = stored.select("journey_id", "trigger", pl.col("as_of").dt.epoch("us").alias("armed_at"))
    state = stored.select("journey_id", "trigger", "armed")
    previous = before.select(
        "journey_id", pl.col("stage").alias("prev_stage"), pl.col("score").cast(pl.Float64).alias("prev_score")
    )
    firings, touched = [], []
    for step in sorted(after["step"].unique().to_list()):
        current = after.filter(pl.col("step") == step).select(
            "journey_id", "lead_key", "stage", pl.col("score").cast(pl.Float64), *FIRING_STATE_COLUMNS
        )
        updates = []
        for trigger in line.triggers:
            watched = current.join(done.filter(pl.col("trigger") == trigger.name), on="journey_id", how="anti")
            rows = _evaluate(line, trigger, watched, previous, state, reached)
            fired = rows.filter(pl.col("fired"))
            if not fired.is_empty():
                crossing = arm_times.filter(pl.col("trigger") == trigger.name).drop("trigger")
                firings.append(
                    fired.join(crossing, on="journey_id", how="left")
                    .join(_actions(trigger), how="cross")
                    .select(
                        "journey_id",
                        "lead_key",
                        pl.lit(trigger.name).alias("trigger"),
                        pl.lit(step).alias("step"),
                        pl.lit(DIRECTION[trigger.kind]).alias("direction"),
                        "action_index",
                        "action",
                        "params",
                        "stage",
                        "score",
                        pl.col("prev_score").alias("score_before"),
                        *FIRING_STATE_COLUMNS,
                        pl.col("armed_at").fill_null(0),
                    )
                )
            # Keep a row only where the next run could not derive it from the journey's stored state:
            # it fired (the watermark stops a re-run), a stored row changed, or a sticky one stays disarmed.
            derivable = pl.col("stored").is_null() & (pl.col("armed_new") == ~pl.col("_holds"))
            keep = pl.col("fired") | ((pl.col("armed_new") != pl.col("stored")).fill_null(True) & ~derivable)
            updates.append(
                rows.filter(keep).select(
                    "journey_id", pl.lit(trigger.name).alias("trigger"), pl.col("armed_new").alias("armed")
                )
            )
        changed = pl.concat(updates)
        touched.append(changed.select("journey_id", "trigger"))
        state = pl.concat([state.join(changed, on=["journey_id", "trigger"], how="anti"), changed])
        previous = pl.concat(
            [
                previous.join(current, on="journey_id", how="anti"),
                current.select("journey_id", pl.col("stage").alias("prev_stage"), pl.col("score").alias("prev_score")),
            ]
        )
    keys = pl.concat(touched).unique()
    new_arm = state.join(keys, on=["journey_id", "trigger"], how="semi").with_columns(at.alias("as_of"))
    result = pl.concat(firings).cast(FIRING_SCHEMA) if firings else empty.firings  # type: ignore[arg-type]
    return Fired(
        firings=result.sort("step", "journey_id", "trigger", "action_index"),
        armed=new_arm.cast(ARM_SCHEMA).sort("journey_id", "trigger"),  # type: ignore[arg-type]
    )


def qualification_milestones(
    line: ProductLine, after: pl.DataFrame, reached: pl.DataFrame, *, as_of: datetime
) -> pl.DataFrame:
    """Each qualification a journey reaches for the first time: ``MILESTONE_SCHEMA`` (plus ``breakdown``
    when ``after`` has it, the breakdown that reached it).

    Sticky: ``reached`` (``journey_id, qualification``) holds the milestones already recorded, which a
    later reset never takes away; that is why this reads them rather than the previous qualification.
    A score that jumps past several thresholds reaches each of them; with several ``step`` rows the
    first step that reaches a threshold is the one recorded.
    """
    schema = dict(MILESTONE_SCHEMA)
    extra = ["breakdown"] if "breakdown" in after.columns else []
    if extra:
        schema["breakdown"] = after.schema["breakdown"]
    if not line.qualifications or after.is_empty():
        return pl.DataFrame(schema=schema)
    if "step" not in after.columns:
        after = after.with_columns(pl.lit(0, pl.Int32).alias("step"))
    thresholds = pl.DataFrame(
        {
            "qualification": [name for name, _ in line.qualifications],
            "threshold": [value for _, value in line.qualifications],
        },
        schema={"qualification": pl.Utf8, "threshold": pl.Float64},
    )
    scored = after.filter(pl.col("score").is_not_null())
    found = (
        scored.select("journey_id", "lead_key", "stage", pl.col("score").cast(pl.Float64), "step")
        .join(thresholds, how="cross")
        .filter(pl.col("score") >= pl.col("threshold"))
        .join(reached.select("journey_id", "qualification"), on=["journey_id", "qualification"], how="anti")
        .sort("step")
        .unique(["journey_id", "qualification"], keep="first", maintain_order=True)
        .with_columns(utc_instant(as_of).alias("reached_at"))
    )
    if extra:  # joined to the milestones found (a step is one row per journey), not carried through the cross join
        breakdowns = scored.select("journey_id", "step", *extra)
        found = found.join(breakdowns, on=["journey_id", "step"], how="left", maintain_order="left")
    return found.select(list(schema)).cast(schema).sort("journey_id", "threshold")  # type: ignore[arg-type]
