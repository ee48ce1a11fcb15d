"""Step scheduling: advance the due enrolments through their track's steps up to the next wait, email
or end, within the send window, the frequency cap and the pacing caps (``nurture.sending``).

``plan_steps`` runs before delivery (the emails to send, what was deferred and why); ``after_send`` logs
what went out and walks on from the next step, stopping before any further email (one email per
enrolment per run). Frames are described in ``nurture.tracks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from nurture.sending import gate, pace
from nurture.tracks import Tracks
from nurture.variants import with_variants
from store.shapes import UTC_US, utc_instant

LOG_SCHEMA: dict[str, pl.DataType] = {
    "enrolment_id": pl.Int64(),
    "step": pl.Int64(),
    "action": pl.Utf8(),
    "detail": pl.Utf8(),
    "message_id": pl.Utf8(),
}
UPDATE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "current_step": pl.Int64(),
    "next_step_at": UTC_US,
    "status": pl.Utf8(),  # active | completed
}
EMAIL_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "lead_key": pl.Int64(),
    "journey_id": pl.Int64(),
    "track": pl.Utf8(),
    "step": pl.Int64(),
    "template": pl.Utf8(),
}
_STOP_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "lead_key": pl.Int64(),
    "journey_id": pl.Int64(),
    "track": pl.Utf8(),
    "step": pl.Int64(),
    "stop": pl.Utf8(),
    "template": pl.Utf8(),
    "next_step_at": UTC_US,
}


@dataclass(frozen=True)
class Plan:
    """What a run does to the due enrolments before sending: ``emails`` to send (``EMAIL_SCHEMA``),
    ``log`` of executed steps (``LOG_SCHEMA``), ``updates`` of enrolment positions (``UPDATE_SCHEMA``),
    and ``deferred``: ``id, why, until`` for emails held back by the send window, the cap or pacing."""

    emails: pl.DataFrame
    log: pl.DataFrame
    updates: pl.DataFrame
    deferred: pl.DataFrame


def plan_steps(
    tracks: Tracks,
    enrolments: pl.DataFrame,
    engagement: pl.DataFrame,
    sends: pl.DataFrame,
    as_of: datetime,
    leads: pl.DataFrame | None = None,
) -> Plan:
    """Advance the active enrolments due at ``as_of`` up to their next wait, email or end.
    ``leads`` (``lead_key, email``, optionally ``zone``) gives the recipient domains that per-domain
    pacing caps count and each lead's time zone for the send window."""
    due = enrolments.filter(
        (pl.col("status") == "active")
        & pl.col("track").is_in(tracks.names)
        & (pl.col("next_step_at").is_null() | (pl.col("next_step_at") <= as_of))
    )
    since = due.select("id", pl.col("next_step_at").alias("_due"))
    due = due.select("id", "lead_key", "journey_id", "track", pl.col("current_step").alias("step"))
    stops, log = _walk(tracks, due, engagement, as_of, allow_email=True)
    candidates = stops.filter(pl.col("stop") == "email")
    send, deferred = gate(tracks.spec, tracks.zone, candidates, sends, leads, as_of)
    send, paced = pace(tracks.spec, tracks.zone, send.join(since, on="id", how="left"), sends, leads, as_of)
    deferred = pl.concat([deferred, paced])
    updates = pl.concat(
        [
            _updates(stops.filter(pl.col("stop") != "email")),
            # Every email stop is recorded on its step (a failed delivery leaves it due); deferred ones
            # become due when the window opens or the cap frees a slot.
            candidates.join(deferred.select("id", "_until"), on="id", how="left").select(
                "id",
                pl.col("step").alias("current_step"),
                pl.coalesce("_until", utc_instant(as_of)).alias("next_step_at"),
                pl.lit("active").alias("status"),
            ),
        ]
    )
    return Plan(
        emails=with_variants(tracks.variants, send.select(list(EMAIL_SCHEMA))).sort("track", "id"),
        log=log,
        updates=updates.sort("id"),
        deferred=deferred.select("id", "why", pl.col("_until").alias("until")).sort("id"),
    )


def after_send(
    tracks: Tracks, sent: pl.DataFrame, engagement: pl.DataFrame, as_of: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Log the emails that went out (``sent``: ``EMAIL_SCHEMA`` plus ``message_id``) and walk each of
    their enrolments on from the next step, stopping before another email. Returns (log, updates)."""
    email_log = sent.select(
        pl.col("id").alias("enrolment_id"),
        "step",
        pl.lit("email").alias("action"),
        pl.col("template").alias("detail"),
        "message_id",
    )
    following = sent.select("id", "lead_key", "journey_id", "track", (pl.col("step") + 1).alias("step"))
    stops, log = _walk(tracks, following, engagement, as_of, allow_email=False)
    return pl.concat([email_log.cast(LOG_SCHEMA), log]).sort("enrolment_id", "step"), _updates(stops).sort("id")


def _updates(stops: pl.DataFrame) -> pl.DataFrame:
    return stops.select(
        "id",
        pl.col("step").alias("current_step"),
        "next_step_at",
        pl.when(pl.col("stop") == "end").then(pl.lit("completed")).otherwise(pl.lit("active")).alias("status"),
    ).cast(UPDATE_SCHEMA)


def _walk(
    tracks: Tracks, states: pl.DataFrame, engagement: pl.DataFrame, as_of: datetime, *, allow_email: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Execute zero-time steps (audience, branch) round by round until each enrolment stops at a wait,
    an email or the end. Branches jump forward only, so this takes at most ``max_steps`` rounds."""
    now = utc_instant(as_of)
    stops: list[pl.DataFrame] = []
    logs: list[pl.DataFrame] = [pl.DataFrame(schema=LOG_SCHEMA)]
    pending = states
    for _ in range(tracks.max_steps + 1):
        if pending.is_empty():
            break
        joined = pending.join(tracks.steps, on=["track", "step"], how="left").join(
            engagement.rename({"enrolment_id": "id"}), on="id", how="left"
        )
        kind = pl.col("kind")
        stops.append(
            joined.filter(kind.is_null() | kind.is_in(["wait", "email"])).select(
                "id",
                "lead_key",
                "journey_id",
                "track",
                pl.when(kind == "wait").then(pl.col("step") + 1).otherwise(pl.col("step")).alias("step"),
                pl.when(kind.is_null())
                .then(pl.lit("end"))
                .when(kind == "wait")
                .then(pl.lit("wait"))
                .otherwise(pl.lit("email" if allow_email else "due"))
                .alias("stop"),
                pl.when(kind == "email").then(pl.col("arg")).alias("template"),
                pl.when(kind == "wait")
                .then(now + pl.duration(microseconds=pl.col("wait_us")))
                .when(kind.is_null())
                .then(pl.lit(None, UTC_US))
                .otherwise(now)
                .alias("next_step_at"),
            )
        )
        moving = joined.filter(kind.is_in(["wait", "audience", "leave_audience", "branch"]))
        held = pl.when(pl.col("arg") == "opened").then(pl.col("opened")).otherwise(pl.col("clicked")).fill_null(False)
        taken = pl.when(held).then(pl.lit("then")).otherwise(pl.lit("else"))
        logs.append(
            moving.select(
                pl.col("id").alias("enrolment_id"),
                "step",
                pl.col("kind").alias("action"),
                pl.when(kind == "branch")
                .then(pl.col("arg") + pl.lit(": ") + taken)
                .otherwise(pl.col("arg"))
                .alias("detail"),
                pl.lit(None, pl.Utf8).alias("message_id"),
            )
        )
        pending = moving.filter(kind != "wait").select(
            "id",
            "lead_key",
            "journey_id",
            "track",
            pl.when(kind == "branch")
            .then(pl.when(held).then(pl.col("then_step")).otherwise(pl.col("else_step")))
            .otherwise(pl.col("step") + 1)
            .alias("step"),
        )
    stop_frame = pl.concat([pl.DataFrame(schema=_STOP_SCHEMA), *(s.cast(_STOP_SCHEMA) for s in stops)])
    return stop_frame, pl.concat([log.cast(LOG_SCHEMA) for log in logs]).sort("enrolment_id", "step")


def sent_already(emails: pl.DataFrame, sent: pl.DataFrame) -> pl.DataFrame:
    """The planned ``emails`` whose (lead, track, step) was sent already (``sent``: ``lead_key, track,
    step``, e.g. to a duplicate since merged into the lead): they are settled as ``duplicate``, never sent."""
    return emails.join(sent, on=["lead_key", "track", "step"], how="semi")
