"""The nurture run's decisions in one pure function over frames: state in, plan out.

``decide_entries`` takes what a run reads (``State``) and returns who is suppressed by ingested events,
which enrolments end, which open and what each trigger request came to (``Entries``); the flow writes
that, or (a dry run) lays it over the enrolments with ``Entries.provisional``. ``plan_steps`` (in
``nurture.steps``) then plans the due steps, and ``settle`` turns the delivery results into the step
log and the enrolment moves. A dry run and a real run call the same functions on the same frames, so
they decide the same (a test holds them to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from nurture.events import line_optouts, suppressions
from nurture.steps import Plan, after_send
from nurture.tracks import Tracks, decide_enrolments, decide_exits
from nurture.variants import draw
from store.nurture import ENROLMENT_SCHEMA

# The step counts as done: sent, or sent/bounced by an earlier call. ``failed`` stays due; so does
# ``unknown`` (never sent again, until ``leadscore nurture outcomes`` resolves it).
SETTLED = ("sent", "duplicate", "bounced")


@dataclass(frozen=True)
class State:
    """What a run reads. ``events``: ``lead_key, type, product_line, occurred_at, properties`` of the
    unsubscribe, resubscribe, bounce and spam complaint events up to the run (``nurture.events``);
    ``excluded``: ``lead_key, excluded`` (``nurture.exclusions.excluded``)."""

    journeys: pl.DataFrame
    milestones: pl.DataFrame
    leads: pl.DataFrame
    enrolments: pl.DataFrame
    requests: pl.DataFrame
    events: pl.DataFrame
    excluded: pl.DataFrame


@dataclass(frozen=True)
class Entries:
    """``suppressed``: ``lead_key, unsubscribed_at, bounced_at`` newly set by events; ``exits``:
    ``id, exit_reason``; ``new``: ``lead_key, journey_id, track, stage, reason, holdout`` (a held-out
    enrolment is recorded ended at once, exit reason ``holdout``); ``requests``: ``id, outcome``."""

    suppressed: pl.DataFrame
    exits: pl.DataFrame
    new: pl.DataFrame
    requests: pl.DataFrame

    def provisional(self, enrolments: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
        """The enrolments as they will be once written: exits ended, new ones at step 0 with
        provisional negative ids (what a dry run plans the steps of)."""
        at = pl.lit(as_of).cast(ENROLMENT_SCHEMA["enrolled_at"])
        fresh = self.new.with_columns(
            (-pl.int_range(1, pl.len() + 1)).cast(pl.Int64).alias("id"),
            at.alias("enrolled_at"),
            pl.lit(0).cast(pl.Int64).alias("current_step"),
            pl.when(pl.col("holdout")).then(None).otherwise(at).alias("next_step_at"),
            pl.when(pl.col("holdout")).then(pl.lit("exited")).otherwise(pl.lit("active")).alias("status"),
            pl.when(pl.col("holdout")).then(at).alias("exited_at"),
        ).select(list(ENROLMENT_SCHEMA))
        return pl.concat([_ended(enrolments, self.exits, as_of), fresh])


def _ended(enrolments: pl.DataFrame, exits: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    exited = exits["id"].implode()
    return enrolments.with_columns(
        pl.when(pl.col("id").is_in(exited)).then(pl.lit("exited")).otherwise(pl.col("status")).alias("status"),
        pl.when(pl.col("id").is_in(exited))
        .then(pl.lit(as_of).cast(ENROLMENT_SCHEMA["exited_at"]))
        .otherwise(pl.col("exited_at"))
        .alias("exited_at"),
    )


def decide_entries(tracks: Tracks, state: State, as_of: datetime, *, soft_bounces: int) -> Entries:
    """Suppress by events first (they end tracks at once), then decide exits, enrolments and requests.
    A lead that stopped one product line (preference centre) enters none of that line's tracks."""
    suppressed = suppressions(state.leads, state.events, soft_bounces=soft_bounces)
    leads = (
        state.leads.join(suppressed, on="lead_key", how="left", suffix="_new", maintain_order="left")
        .with_columns(
            pl.coalesce("unsubscribed_at", "unsubscribed_at_new").alias("unsubscribed_at"),
            pl.coalesce("bounced_at", "bounced_at_new").alias("bounced_at"),
        )
        .drop("unsubscribed_at_new", "bounced_at_new")
        .join(state.excluded, on="lead_key", how="left", maintain_order="left")
    )
    exits = decide_exits(tracks, state.enrolments, state.journeys, state.milestones, leads, state.requests)
    open_lines = state.journeys.join(line_optouts(state.events), on=["lead_key", "product_line"], how="anti")
    new, enrol_outcomes = decide_enrolments(
        tracks, _ended(state.enrolments, exits, as_of), open_lines, state.milestones, leads, state.requests, as_of
    )
    shares = {name: track.holdout for name, track in tracks.spec.tracks.items()}
    share = pl.col("track").replace_strict(shares, default=0.0, return_dtype=pl.Float64)
    new = new.with_columns((draw(["track", "lead_key"], 29) < share).alias("holdout"))
    exit_outcomes = (
        state.requests.filter(pl.col("action") == "exit")
        .join(
            state.enrolments.filter(pl.col("id").is_in(exits["id"].implode())).select(
                "track", "lead_key", pl.lit("exited").alias("outcome")
            ),
            on=["track", "lead_key"],
            how="left",
        )
        .select("id", pl.col("outcome").fill_null("not enrolled"))
    )
    return Entries(suppressed, exits, new, pl.concat([enrol_outcomes, exit_outcomes]))


@dataclass(frozen=True)
class Settled:
    """After delivery: ``log`` of executed steps, enrolment ``updates`` still active, ``completed`` ids."""

    log: pl.DataFrame
    updates: pl.DataFrame
    completed: list[int]


def settle(tracks: Tracks, plan: Plan, delivered: pl.DataFrame, engagement: pl.DataFrame, as_of: datetime) -> Settled:
    """``delivered``: ``ref, message_id, status`` per delivery result. Emails whose status is in
    ``SETTLED`` are logged and their enrolments walk on; the others stay on their step."""
    done = delivered.filter(pl.col("status").is_in(SETTLED)).select("ref", "message_id")
    sent = (
        plan.emails.with_columns(pl.format("enrolment:{}:{}", "id", "step").alias("ref"))
        .join(done, on="ref", how="inner")
        .drop("ref")
    )
    sent_log, sent_updates = after_send(tracks, sent, engagement, as_of)
    updates = pl.concat([plan.updates, sent_updates]).unique("id", keep="last", maintain_order=True)
    completed = updates.filter(pl.col("status") == "completed")["id"].to_list()
    return Settled(pl.concat([plan.log, sent_log]), updates.filter(pl.col("status") == "active"), completed)
