"""Nurture track decisions as pure functions over Polars frames: who exits and who enters.

A run at ``as_of`` first ends enrolments (``decide_exits``), then opens new ones (``decide_enrolments``),
then advances every active enrolment whose next step is due (``nurture.steps.plan_steps``): it executes the steps in
order until it reaches a ``wait`` (the next step becomes due ``as_of`` + the wait), an ``email`` or the
end of the track (completed). Audience steps and branches take no time. A due email goes out only inside
the send window and under the frequency cap (counted per lead across all tracks, including this run's
earlier emails, in track declaration order); otherwise the enrolment stays on that step until the window
opens or the cap frees a slot; the daily pacing caps then hold back what has no room today, oldest due
first (``nurture.sending``). After the flow delivered the emails, ``nurture.steps.after_send`` logs them and walks on
from the next step (stopping before any further email: one email per enrolment per run).

Frames (times are ``Datetime("us", "UTC")``):

- journeys: ``journey_id, lead_key, product_line, stage, status, score, band``
- milestones: ``journey_id, qualification`` (sticky: reached once, reached for good)
- leads: ``lead_key, email, email_opt_in, unsubscribed_at, bounced_at`` (and ``excluded``, the exclusion met)
- enrolments: ``store.nurture.ENROLMENT_SCHEMA``
- requests: ``store.nurture.REQUEST_SCHEMA`` (enrol/exit asked for by triggers)
- sends: ``lead_key, at, ref, to``: nurture emails already sent (for the frequency cap and pacing)
- engagement: ``enrolment_id, opened, clicked``: reactions to each enrolment's latest email
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from nurture.spec import NurtureSpec, Reentry, TrackSpec, parse_duration

STEP_SCHEMA: dict[str, pl.DataType] = {
    "track": pl.Utf8(),
    "step": pl.Int64(),
    "kind": pl.Utf8(),
    "arg": pl.Utf8(),
    "then_step": pl.Int64(),
    "else_step": pl.Int64(),
    "wait_us": pl.Int64(),
}


@dataclass(frozen=True)
class Tracks:
    """A validated ``nurture:`` section compiled for the decisions: the steps as one table, and the
    A/B variants of email steps (``track, step, template, lo, hi``: the template's slice of [0, 1))."""

    spec: NurtureSpec
    zone: ZoneInfo
    steps: pl.DataFrame
    variants: pl.DataFrame

    @property
    def names(self) -> list[str]:
        return list(self.spec.tracks)

    @property
    def max_steps(self) -> int:
        return max((len(track.steps) for track in self.spec.tracks.values()), default=0)


def compile_tracks(spec: NurtureSpec, timezone: str) -> Tracks:
    rows = []
    variants: list[dict[str, object]] = []
    for name, track in spec.tracks.items():
        for index, step in enumerate(track.steps):
            total, seen = sum(v.weight for v in step.variants or []), 0.0
            for variant in step.variants or []:
                lo, seen = seen / total, seen + variant.weight
                variants.append(
                    {"track": name, "step": index, "template": variant.template, "lo": lo, "hi": seen / total}
                )
            branch = step.branch
            rows.append(
                {
                    "track": name,
                    "step": index,
                    "kind": step.kind,
                    "arg": branch.if_
                    if branch
                    else (step.templates[:1] or [step.wait or step.audience or step.leave_audience])[0],
                    "then_step": track.target(branch.then) if branch else None,
                    "else_step": track.target(branch.else_) if branch else None,
                    "wait_us": parse_duration(step.wait) // timedelta(microseconds=1) if step.wait else None,
                }
            )
    variant_schema = {"track": pl.Utf8, "step": pl.Int64, "template": pl.Utf8, "lo": pl.Float64, "hi": pl.Float64}
    return Tracks(
        spec=spec,
        zone=ZoneInfo(timezone),
        steps=pl.DataFrame(rows, schema=STEP_SCHEMA),
        variants=pl.DataFrame(variants, schema=variant_schema),
    )


def _eligible(leads: pl.DataFrame) -> pl.DataFrame:
    """``lead_key, suppressed``: why a lead may not be emailed (null when it may). ``excluded``, when
    the frame has it, names the portfolio exclusion the lead meets (``nurture.exclusions``)."""
    if "excluded" not in leads.columns:
        leads = leads.with_columns(pl.lit(None, pl.Utf8).alias("excluded"))
    return leads.select(
        "lead_key",
        pl.when(pl.col("unsubscribed_at").is_not_null())
        .then(pl.lit("unsubscribed"))
        .when(pl.col("bounced_at").is_not_null())
        .then(pl.lit("bounced"))
        .when(~pl.col("email_opt_in").fill_null(False) | pl.col("email").is_null() | (pl.col("email") == ""))
        .then(pl.lit("no_consent"))
        .when(pl.col("excluded").is_not_null())
        .then(pl.lit("excluded: ") + pl.col("excluded"))
        .alias("suppressed"),
    )


def _reached(milestones: pl.DataFrame, qualification: str, name: str) -> pl.DataFrame:
    """``journey_id, <name>``: the journeys that ever reached ``qualification``."""
    return (
        milestones.filter(pl.col("qualification") == qualification)
        .select("journey_id", pl.lit(True).alias(name))
        .unique("journey_id")
    )


def _exit_reason(track: TrackSpec, frame: pl.DataFrame, milestones: pl.DataFrame) -> pl.Series:
    """Why each row (an enrolment or a candidate, joined with its journey and consent) must leave."""
    if track.exit.qualification_reached is not None:
        frame = frame.join(
            _reached(milestones, track.exit.qualification_reached, "_qualified"),
            on="journey_id",
            how="left",
            maintain_order="left",
        )
    rules = pl.when(pl.col("suppressed").is_not_null()).then(pl.col("suppressed"))
    if track.exit.converted:
        rules = rules.when(pl.col("status") == "customer").then(pl.lit("converted"))
    rules = rules.when(pl.col("status") == "lost").then(pl.lit("lost"))
    if track.exit.qualification_reached is not None:
        rules = rules.when(pl.col("_qualified").fill_null(False)).then(
            pl.lit(f"qualification_reached:{track.exit.qualification_reached}")
        )
    if track.exit.score_at_least is not None:
        rules = rules.when(pl.col("score") >= track.exit.score_at_least).then(pl.lit("score_rose"))
    if track.exit.stage_changed:
        rules = rules.when(
            pl.col("enrolled_stage").is_not_null() & (pl.col("journey_stage") != pl.col("enrolled_stage"))
        ).then(pl.lit("stage_changed"))
    return frame.select(rules.otherwise(None).alias("exit_reason")).to_series()


def _with_context(frame: pl.DataFrame, journeys: pl.DataFrame, leads: pl.DataFrame) -> pl.DataFrame:
    """Join rows holding ``journey_id, lead_key`` with their journey's state and the lead's consent."""
    state = journeys.select(
        "journey_id", pl.col("stage").alias("journey_stage"), "status", "score", "band", "product_line"
    )
    return frame.join(state, on="journey_id", how="left", maintain_order="left").join(
        _eligible(leads), on="lead_key", how="left", maintain_order="left"
    )


def decide_exits(
    tracks: Tracks,
    enrolments: pl.DataFrame,
    journeys: pl.DataFrame,
    milestones: pl.DataFrame,
    leads: pl.DataFrame,
    requests: pl.DataFrame,
) -> pl.DataFrame:
    """``id, exit_reason``: active enrolments that end now (suppression first, then requests, then the
    track's exit criteria). Enrolments of tracks no longer declared end with ``track_removed``."""
    active = enrolments.filter(pl.col("status") == "active").rename({"stage": "enrolled_stage"})
    active = _with_context(active, journeys, leads)
    asked = (
        requests.filter(pl.col("action") == "exit")
        .group_by("track", "lead_key")
        .agg(pl.col("reason").sort().first().alias("_asked"))
    )
    active = active.join(asked, on=["track", "lead_key"], how="left")
    parts = [
        active.filter(~pl.col("track").is_in(tracks.names)).select("id", pl.lit("track_removed").alias("exit_reason"))
    ]
    for name, track in tracks.spec.tracks.items():
        rows = active.filter(pl.col("track") == name)
        if rows.is_empty():
            continue
        reason = _exit_reason(track, rows, milestones)
        rows = rows.with_columns(
            pl.when(pl.col("suppressed").is_not_null())
            .then(pl.col("suppressed"))
            .when(pl.col("_asked").is_not_null())
            .then(pl.lit("requested: ") + pl.col("_asked"))
            .otherwise(reason)
            .alias("exit_reason")
        )
        parts.append(rows.filter(pl.col("exit_reason").is_not_null()).select("id", "exit_reason"))
    return pl.concat(parts).sort("id")


def decide_enrolments(
    tracks: Tracks,
    enrolments: pl.DataFrame,
    journeys: pl.DataFrame,
    milestones: pl.DataFrame,
    leads: pl.DataFrame,
    requests: pl.DataFrame,
    as_of: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """New enrolments ``lead_key, journey_id, track, stage, reason`` and the outcome of each enrol
    request ``id, outcome``.

    A journey meeting a track's entry criteria enters it; so does a lead a trigger asked to enrol (the
    entry criteria then do not apply). Either way the lead must be emailable, allowed back in by the
    track's re-entry policy, and not already meeting an exit criterion (it would leave at once).
    ``enrolments`` must include those that ``decide_exits`` just ended (with ``exited_at``).
    """
    history = enrolments.group_by("track", "lead_key").agg(
        (pl.col("status") == "active").any().alias("_active"),
        pl.col("exited_at").max().alias("_last_end"),
    )
    new_parts: list[pl.DataFrame] = []
    outcomes: list[pl.DataFrame] = []
    enrol_requests = requests.filter(pl.col("action") == "enrol")
    for name, track in tracks.spec.tracks.items():
        entry = track.entry
        line = journeys.filter(pl.col("product_line") == entry.product_line)
        auto = line.filter(~pl.col("status").is_in(["customer", "lost"]) & pl.col("score").is_not_null())
        if entry.stages is not None:
            auto = auto.filter(pl.col("stage").is_in(entry.stages))
        if entry.bands is not None:
            auto = auto.filter(pl.col("band").is_in(entry.bands))
        if entry.score_below is not None:
            auto = auto.filter(pl.col("score") < entry.score_below)
        if entry.qualification_not_reached is not None:
            reached = _reached(milestones, entry.qualification_not_reached, "_reached")
            auto = auto.join(reached, on="journey_id", how="anti")
        auto = auto.select(
            "lead_key",
            "journey_id",
            "stage",
            pl.lit("entry").alias("reason"),
            pl.lit(None, pl.Int64).alias("request_id"),
        )
        asked = (
            enrol_requests.filter(pl.col("track") == name)
            .join(line.select("lead_key", "journey_id", "stage"), on="lead_key", how="left")
            .select("lead_key", "journey_id", "stage", pl.col("reason"), pl.col("id").alias("request_id"))
        )
        candidates = pl.concat([asked, auto]).with_columns(
            pl.lit(name).alias("track"), pl.col("stage").alias("enrolled_stage")
        )
        candidates = _with_context(candidates, journeys, leads).join(
            history, on=["track", "lead_key"], how="left", maintain_order="left"
        )
        candidates = candidates.with_columns(
            _exit_reason(track, candidates, milestones).alias("_exit"), _reentry_refusal(track, as_of).alias("_refused")
        )
        verdict = (
            pl.when(pl.col("_exit").is_not_null())
            .then(pl.lit("refused: ") + pl.col("_exit"))
            .when(pl.col("_refused").is_not_null())
            .then(pl.col("_refused"))
            .otherwise(pl.lit("enrolled"))
        )
        candidates = candidates.with_columns(verdict.alias("outcome"))
        accepted = candidates.filter(pl.col("outcome") == "enrolled").unique(
            "lead_key", keep="first", maintain_order=True
        )
        new_parts.append(accepted.select("lead_key", "journey_id", "track", "stage", "reason"))
        requested = candidates.filter(pl.col("request_id").is_not_null())
        first = accepted.select("lead_key", pl.col("request_id").alias("_winner"))
        requested = requested.join(first, on="lead_key", how="left").with_columns(
            pl.when((pl.col("outcome") == "enrolled") & (pl.col("_winner") != pl.col("request_id")))
            .then(pl.lit("duplicate request"))
            .otherwise(pl.col("outcome"))
            .alias("outcome")
        )
        outcomes.append(requested.select(pl.col("request_id").alias("id"), "outcome"))
    unknown = enrol_requests.filter(~pl.col("track").is_in(tracks.names)).select(
        "id", pl.lit("refused: unknown track").alias("outcome")
    )
    new = (
        pl.concat(new_parts)
        if new_parts
        else pl.DataFrame(
            schema={"lead_key": pl.Int64, "journey_id": pl.Int64, "track": pl.Utf8, "stage": pl.Utf8, "reason": pl.Utf8}
        )
    )
    return new.sort("track", "lead_key"), pl.concat([*outcomes, unknown]).sort("id")


def _reentry_refusal(track: TrackSpec, as_of: datetime) -> pl.Expr:
    active = pl.col("_active").fill_null(False)
    before = pl.col("_active").is_not_null()
    refusal = pl.when(active).then(pl.lit("refused: already enrolled"))
    policy = track.reentry
    if policy == "never":
        refusal = refusal.when(before).then(pl.lit("refused: re-entry never"))
    elif isinstance(policy, Reentry):
        earliest = as_of - timedelta(days=policy.after_days)
        refusal = refusal.when(before & (pl.col("_last_end") > earliest)).then(
            pl.lit(f"refused: re-entry after {policy.after_days:g} days")
        )
    return refusal.otherwise(None)
