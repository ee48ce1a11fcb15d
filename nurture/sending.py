"""When a due email may go: the send window in each lead's own time zone, the frequency cap per lead,
and the daily pacing caps per sender and per recipient domain (oldest due first).

``gate`` splits the due emails (``nurture.steps.plan_steps``' candidates) into those that go now and
those deferred, each with ``why`` and ``_until`` (when it becomes due again); ``pace`` then holds back
what the day's caps leave no room for. Frames: ``sends`` ``lead_key, at, ref, to`` (emails already
sent); ``leads`` ``lead_key, email`` and optionally ``zone``.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from nurture.spec import NurtureSpec
from store.shapes import UTC_US, utc_instant


def gate(
    spec: NurtureSpec,
    zone: ZoneInfo,
    candidates: pl.DataFrame,
    sends: pl.DataFrame,
    leads: pl.DataFrame | None,
    as_of: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split due emails into those that go now and those deferred (``id, why, _until``)."""
    order = {name: position for position, name in enumerate(spec.tracks)}
    candidates = candidates.with_columns(pl.col("track").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
    # The send window is each lead's own (``zone``, from ``nurture.zones``), else the portfolio's.
    if leads is not None and "zone" in leads.columns:
        zoned = candidates.join(leads.select("lead_key", "zone"), on="lead_key", how="left")
    else:
        zoned = candidates.with_columns(pl.lit(None, pl.Utf8).alias("zone"))
    zoned = zoned.with_columns(pl.col("zone").fill_null(zone.key))
    window = spec.send_window
    zones = zoned["zone"].unique().to_list()
    opens = pl.DataFrame(
        {"zone": zones, "_until": [window.next_open(as_of, ZoneInfo(zone)) for zone in zones]},
        schema={"zone": pl.Utf8, "_until": UTC_US},
    )
    zoned = zoned.join(opens, on="zone", how="left")
    closed = zoned.filter(pl.col("_until") > as_of).select("id", pl.lit("send window").alias("why"), "_until")
    candidates = zoned.filter(pl.col("_until") <= as_of).drop("zone", "_until")
    cap = spec.frequency_cap
    if cap is None:
        return candidates, closed
    per = timedelta(days=cap.per_days)
    # A candidate's own message may already be in the outbox (a run that crashed after sending): it is
    # not an earlier email, and delivery will recognise it.
    own = candidates.select(pl.format("enrolment:{}:{}", "id", "step")).to_series()
    prior = (
        sends.filter((pl.col("at") > as_of - per) & (pl.col("at") <= as_of) & ~pl.col("ref").is_in(own.implode()))
        .group_by("lead_key")
        .agg(pl.col("at").sort().alias("_times"), pl.len().cast(pl.Int64).alias("_prior"))
    )
    ranked = (
        candidates.sort("_order", "id")
        .with_columns(pl.int_range(pl.len()).over("lead_key").cast(pl.Int64).alias("_rank"))
        .join(prior, on="lead_key", how="left")
        .with_columns(pl.col("_prior").fill_null(0), pl.col("_times").fill_null(pl.lit([], pl.List(UTC_US))))
        .with_columns((pl.col("_prior") + pl.col("_rank")).alias("_position"))
    )
    send = ranked.filter(pl.col("_position") < cap.emails)
    held = ranked.filter(pl.col("_position") >= cap.emails)
    # The slot this email waits for frees when the k-th oldest email of the window ages out (k = position
    # − cap); this run's own sends count as sent at ``as_of``, after the earlier ones.
    k = pl.col("_position") - cap.emails
    oldest = pl.when(k < pl.col("_prior")).then(pl.col("_times").list.get(k, null_on_oob=True)).otherwise(pl.lit(as_of))
    deferred = held.select("id", pl.lit("frequency cap").alias("why"), (oldest.cast(UTC_US) + per).alias("_until"))
    return send, pl.concat([closed, deferred])


def pace(
    spec: NurtureSpec,
    zone: ZoneInfo,
    send: pl.DataFrame,
    sends: pl.DataFrame,
    leads: pl.DataFrame | None,
    as_of: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold back what the daily caps (per sender, per recipient domain) leave no room for today,
    oldest due first; held emails become due at the next local midnight (``id, why, _until``)."""
    pacing = spec.pacing
    none = pl.DataFrame(schema={"id": pl.Int64, "why": pl.Utf8, "_until": UTC_US})
    if pacing.daily is None and pacing.per_domain_daily is None and not pacing.domains:
        return send, none
    local = as_of.astimezone(zone).date()
    day_start = datetime.combine(local, time(0), zone).astimezone(UTC)
    tomorrow = datetime.combine(local + timedelta(days=1), time(0), zone).astimezone(UTC)
    own = send.select(pl.format("enrolment:{}:{}", "id", "step")).to_series().implode()
    domain = pl.col("email").str.split("@").list.last().str.strip_chars().str.to_lowercase().alias("_domain")
    today = sends.filter((pl.col("at") >= day_start) & (pl.col("at") <= as_of) & ~pl.col("ref").is_in(own))
    used = today.select(pl.col("to").alias("email")).select(domain)
    used = used.group_by("_domain").agg(pl.len().cast(pl.Int64).alias("_used"))
    if leads is None:
        leads = send.select("lead_key", pl.lit(None, pl.Utf8).alias("email"))
    ranked = (
        send.join(leads.select("lead_key", "email").unique("lead_key"), on="lead_key", how="left")
        .with_columns(domain)
        .sort(pl.col("_due").fill_null(as_of), "id")
        .join(used, on="_domain", how="left")
        .with_columns(
            (pl.int_range(pl.len()).over("_domain") + pl.col("_used").fill_null(0)).alias("_in_domain"),
            pl.col("_domain")
            .replace_strict(pacing.domains, default=pacing.per_domain_daily, return_dtype=pl.Int64)
            .alias("_domain_cap"),
        )
    )
    domain_ok = pl.col("_domain_cap").is_null() | (pl.col("_in_domain") < pl.col("_domain_cap"))
    ranked = ranked.with_columns(domain_ok.alias("_domain_ok"))
    overall = pl.col("_domain_ok").cast(pl.Int64).cum_sum() - 1 + today.height
    ranked = ranked.with_columns(
        pl.when(~pl.col("_domain_ok"))
        .then(pl.lit("domain cap: ") + pl.col("_domain").fill_null("?"))
        .when(pl.lit(pacing.daily is not None) & (overall >= (pacing.daily or 0)))
        .then(pl.lit("daily cap"))
        .alias("why")
    )
    held = ranked.filter(pl.col("why").is_not_null()).select("id", "why", utc_instant(tomorrow).alias("_until"))
    return ranked.filter(pl.col("why").is_null()).select(send.columns), held
