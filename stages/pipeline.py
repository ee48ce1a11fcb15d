"""One product line's part of a scoring run, in the order of DESIGN §4, as one pure function.

external stage updates → score → promote and rescore (hops) → qualification milestones → triggers.
The flow reads the frames for a lead partition, calls ``run_line``, and stores the outcome in one
transaction; nothing here touches the store, so the whole funnel logic is unit-tested on frames.
"""

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from models.frames import collect_streaming
from models.spec import Scale
from stages.portfolio import ProductLine
from stages.scoring import score_line
from stages.transitions import Advanced, advance, apply_external, apply_transitions
from stages.triggers import Fired, fire, qualification_milestones
from store.shapes import TRANSITION_SCHEMA, UTC_US, utc_instant


@dataclass(frozen=True)
class LineOutcome:
    """What a run does to one product line's journeys of a partition.

    ``journeys``: every journey with its state after the run (stage, ``stage_entered_at``,
    ``score_from``, ``status``, ``entered_by``); ``scored``: the final score of each scored
    (non-terminal) journey (``SCORED_SCHEMA`` + ``breakdown``); ``snapshots``: the score history the
    run adds, ``scored``'s columns plus ``step``: every state a journey went through that differs from
    the one before it (the crossing state, then each new stage's), in step order; ``transitions``:
    external moves then promotions, in order, ``score_after`` filled; ``milestones``: qualifications
    reached for the first time; ``fired``: trigger firings (with the crossing state and ``promoted_to``,
    the stage a promotion of the same run then took the journey to) and arm rows.
    """

    journeys: pl.DataFrame
    scored: pl.DataFrame
    snapshots: pl.DataFrame
    transitions: pl.DataFrame
    milestones: pl.DataFrame
    fired: Fired

    @property
    def moved(self) -> pl.DataFrame:
        """The journeys whose stage, entry or status changed (their new state)."""
        ids = self.transitions["journey_id"].unique().implode()
        return self.journeys.filter(pl.col("journey_id").is_in(ids))

    @property
    def changed(self) -> pl.DataFrame:
        """The final state of each journey the run wrote a snapshot for (its new current values)."""
        ids = self.snapshots["journey_id"].unique().implode()
        return self.scored.filter(pl.col("journey_id").is_in(ids))


HISTORY_COLUMNS = ("stage", "score", "band", "qualification")


def history(before: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """The states of ``steps`` (``Advanced.steps``) that differ from the journey's previous state.

    The previous state of step 0 is ``before`` (the journey as stored: ``HISTORY_COLUMNS``, null when
    never scored); of step k, step k − 1. A promotion always changes the stage, so the state that
    crossed and each stage entered in the run are all kept; an unchanged journey gets no row.
    """
    stored = before.select("journey_id", *(pl.col(name).alias(f"_prev_{name}") for name in HISTORY_COLUMNS))
    ordered = steps.filter(pl.col("score").is_not_null()).sort("journey_id", "step")
    # Sorted by journey then step, the row before is the previous step of the same journey unless the
    # journey changes there: a plain shift, not a window per journey (that cost more than the scoring).
    first = pl.col("journey_id").ne_missing(pl.col("journey_id").shift(1))
    differs = pl.lit(False)
    for name in HISTORY_COLUMNS:
        prev = pl.when(first).then(pl.col(f"_prev_{name}")).otherwise(pl.col(name).shift(1))
        differs = differs | pl.col(name).ne_missing(prev)
    joined = ordered.join(stored, on="journey_id", how="left", maintain_order="left")
    return joined.filter(differs).select(steps.columns)


def score_and_advance(
    line: ProductLine,
    *,
    journeys: pl.DataFrame,
    leads: pl.DataFrame,
    events: pl.DataFrame,
    updates: pl.DataFrame,
    as_of: datetime,
    scale: Scale,
) -> tuple[pl.DataFrame, Advanced]:
    """The part of ``run_line`` that decides the scores: CRM updates applied, then scored, promoted and
    rescored. Returns the external moves and the advanced journeys; a ``fresh=true`` look-up runs only
    this (milestones and triggers change no score), so it scores exactly as the run will."""
    journeys = journeys.join(_last_activity(events, as_of), on="lead_key", how="left", maintain_order="left")
    external = apply_external(line, journeys, updates, as_of=as_of)
    journeys = apply_transitions(journeys, external)

    def rescore(subset: pl.DataFrame) -> pl.DataFrame:
        return score_line(line, journeys=subset, leads=leads, events=events, as_of=as_of, scale=scale)

    return external, advance(line, journeys, rescore(journeys), rescore, as_of)


def run_line(
    line: ProductLine,
    *,
    journeys: pl.DataFrame,
    leads: pl.DataFrame,
    events: pl.DataFrame,
    updates: pl.DataFrame,
    armed: pl.DataFrame,
    reached: pl.DataFrame,
    as_of: datetime,
    scale: Scale,
) -> LineOutcome:
    """Apply CRM updates, score, promote, record milestones and evaluate triggers for ``journeys``.

    ``journeys``: ``journey_id, lead_key, stage, stage_entered_at, score_from, status, score`` (all of
    the line's journeys of the partition, terminal ones included: a CRM update may bring them back);
    ``events`` restricted to the line; ``updates``: pending CRM updates (``lead_key, stage,
    changed_at, source``); ``armed``: stored trigger arm rows; ``reached``: milestones already
    recorded (``journey_id, qualification``).
    """
    before = journeys.select("journey_id", "stage", "score")
    stored = journeys.select(
        "journey_id",
        *(pl.col(name) if name in journeys.columns else pl.lit(None).alias(name) for name in HISTORY_COLUMNS),
    )
    external, advanced = score_and_advance(
        line, journeys=journeys, leads=leads, events=events, updates=updates, as_of=as_of, scale=scale
    )
    first_scores = advanced.steps.filter(pl.col("step") == 0).select("journey_id", pl.col("score").alias("_after"))
    # The journey is scored in the stage of its last CRM move only; earlier moves of a chain have no score after.
    last_move = pl.int_range(pl.len()).over("journey_id") == pl.len().over("journey_id") - 1
    external = (
        external.join(first_scores, on="journey_id", how="left", maintain_order="left")
        .with_columns(pl.when(last_move).then(pl.col("_after")).alias("score_after"))
        .select(list(TRANSITION_SCHEMA))
    )
    # A journey moved into a terminal stage is not scored, but it entered that stage: ``stage_entered``
    # triggers must see it, so it joins the steps with a null score.
    entered_terminal = (
        advanced.journeys.join(external.select("journey_id").unique(), on="journey_id", how="semi")
        .filter(pl.col("stage").is_in([stage.name for stage in line.stages if stage.terminal]))
        .select("journey_id", "lead_key", "stage", pl.lit(0, pl.Int32).alias("step"))
    )
    steps = pl.concat([advanced.steps, entered_terminal], how="diagonal_relaxed")
    milestones = qualification_milestones(line, steps, reached, as_of=as_of)
    fired = fire(line, before, steps, armed, as_of=as_of, reached=reached)
    final = advanced.journeys.select("journey_id", pl.col("stage").alias("_final"))
    firings = fired.firings.join(final, on="journey_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("_final") != pl.col("stage")).then(pl.col("_final")).alias("promoted_to")
    )
    return LineOutcome(
        journeys=advanced.journeys.drop("last_activity"),
        scored=advanced.scored,
        snapshots=history(stored, advanced.steps),
        transitions=pl.concat([external, advanced.transitions]),
        milestones=milestones,
        fired=Fired(firings=firings.drop("_final"), armed=fired.armed),
    )


def _last_activity(events: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Each lead's latest event up to ``as_of`` (``lead_key, last_activity``), machine activity excluded."""
    # Only the two columns it reads: filtering the whole frame would copy every property column first.
    human = events.lazy().select("lead_key", "occurred_at", *(["machine"] if "machine" in events.columns else []))
    human = human.filter(pl.col("occurred_at") <= utc_instant(as_of))
    if "machine" in events.columns:
        human = human.filter(_HUMAN)
    return collect_streaming(human.group_by("lead_key").agg(_LATEST))


_HUMAN = ~pl.col("machine").fill_null(False)
_LATEST = pl.col("occurred_at").max().cast(UTC_US).alias("last_activity")
