"""Reads for the report: set-based SQL (aggregated in the database where it can be) into Polars frames.

The report's shape of a product line (stage order, outcome stages, band order) is passed in as plain
data by ``flows/``, so ``store/`` never reads the portfolio.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Engine

from store.reader import read_frame
from store.shapes import UTC_US
from store.sparse_events import of_sparse_types
from store.tables import to_micros


@dataclass(frozen=True)
class LineShape:
    """What the report needs to know of one product line."""

    name: str
    stages: Sequence[str]  # funnel then terminal stages, in order
    outcome_stages: Sequence[str]  # reaching one of these is a conversion (opportunity and beyond, customer)
    bands: Sequence[str]  # band names, lowest scores first


def _line_filter(line: str | None, column: str = "product_line") -> tuple[str, dict[str, str]]:
    return (f" AND {column} = :line", {"line": line}) if line else ("", {})


def score_histogram(engine: Engine, lo: float, hi: float, bins: int, line: str | None = None) -> pl.DataFrame:
    """Scored journeys per (product line, stage, bin); ``bins`` equal bins over the scale ``[lo, hi]``."""
    where, params = _line_filter(line)
    width = (hi - lo) / bins
    sql = (
        "SELECT product_line, stage, CAST((score - :lo) / :width AS INTEGER) AS bin, COUNT(*) AS journeys "
        f"FROM journeys WHERE score IS NOT NULL{where} GROUP BY product_line, stage, bin"
    )
    frame = read_frame(
        engine,
        sql,
        {"lo": lo, "width": width, **params},
        {"product_line": pl.Utf8, "stage": pl.Utf8, "bin": pl.Int64, "journeys": pl.Int64},
    )
    # The top of the scale belongs to the last bin (the top band is closed too).
    return (
        frame.with_columns(pl.col("bin").clip(0, bins - 1))
        .group_by("product_line", "stage", "bin")
        .agg(pl.col("journeys").sum())
        .sort("product_line", "stage", "bin")
    )


def qualifications_per_day(engine: Engine, timezone: str, line: str | None = None) -> pl.DataFrame:
    """Qualification milestones reached per (product line, qualification, day in the business time zone)."""
    where, params = _line_filter(line)
    frame = read_frame(
        engine,
        f"SELECT product_line, qualification, reached_at FROM qualification_milestones WHERE 1 = 1{where}",
        params,
        {"product_line": pl.Utf8, "qualification": pl.Utf8, "reached_at": pl.Int64},
    )
    ZoneInfo(timezone)  # an unknown zone fails here with a clear error, not deep inside Polars
    return (
        frame.with_columns(pl.col("reached_at").cast(UTC_US).dt.convert_time_zone(timezone).dt.date().alias("day"))
        .group_by("product_line", "qualification", "day")
        .agg(pl.len().cast(pl.Int64).alias("reached"))
        .sort("product_line", "qualification", "day")
    )


def audience_changes(engine: Engine, timezone: str) -> pl.DataFrame:
    """Per (audience, platform, day in the business time zone): the size after the day's last export and the
    members its exports added and removed that day."""
    frame = read_frame(
        engine,
        "SELECT audience, platform, as_of, created_at, full_count, added_count, removed_count FROM audience_exports",
        None,
        {
            "audience": pl.Utf8,
            "platform": pl.Utf8,
            "as_of": pl.Int64,
            "created_at": pl.Int64,
            "full_count": pl.Int64,
            "added_count": pl.Int64,
            "removed_count": pl.Int64,
        },
    )
    ZoneInfo(timezone)
    return (
        frame.with_columns(pl.col("as_of").cast(UTC_US).dt.convert_time_zone(timezone).dt.date().alias("day"))
        .sort("as_of", "created_at")
        .group_by("audience", "platform", "day")
        .agg(
            pl.col("full_count").last().alias("members"),
            pl.col("added_count").sum().alias("added"),
            pl.col("removed_count").sum().alias("removed"),
        )
        .sort("audience", "platform", "day")
    )


def conversion_by_band(engine: Engine, shapes: Sequence[LineShape]) -> pl.DataFrame:
    """Per (product line, band): scored journeys, how many converted, and the rate (null: no outcomes yet).

    A journey counts in the band it held when it converted: its last snapshot, up to the first time it
    entered an outcome stage, in a stage before it (a run that promotes writes the state that crossed:
    the state that converted, at the transition's time); a journey that has not converted counts in
    its current band.
    """
    frames = []
    for shape in shapes:
        outcomes = list(shape.outcome_stages)
        first_outcome = read_frame(
            engine,
            "SELECT journey_id, MIN(at) AS outcome_at FROM stage_transitions "
            "WHERE product_line = :line AND to_stage IN (:outcomes) GROUP BY journey_id",
            {"line": shape.name, "outcomes": outcomes},
            {"journey_id": pl.Int64, "outcome_at": pl.Int64},
        )
        before = read_frame(
            engine,
            "SELECT s.journey_id, s.as_of, s.step, s.id, s.band FROM score_snapshots s JOIN ("
            "SELECT journey_id, MIN(at) AS outcome_at FROM stage_transitions "
            "WHERE product_line = :line AND to_stage IN (:outcomes) GROUP BY journey_id) o "
            "ON o.journey_id = s.journey_id WHERE s.as_of <= o.outcome_at AND s.stage NOT IN (:outcomes) "
            "AND s.band IS NOT NULL",
            {"line": shape.name, "outcomes": outcomes},
            {"journey_id": pl.Int64, "as_of": pl.Int64, "step": pl.Int64, "id": pl.Int64, "band": pl.Utf8},
        )
        converted = before.sort("journey_id", "as_of", "step", "id").group_by("journey_id").agg(pl.col("band").last())
        current = read_frame(
            engine,
            "SELECT id AS journey_id, band FROM journeys WHERE product_line = :line AND band IS NOT NULL",
            {"line": shape.name},
            {"journey_id": pl.Int64, "band": pl.Utf8},
        ).join(first_outcome, on="journey_id", how="anti")
        counted = pl.concat(
            [converted.with_columns(pl.lit(1).alias("converted")), current.with_columns(pl.lit(0).alias("converted"))]
        )
        any_outcome = first_outcome.height > 0
        order = pl.DataFrame({"band": list(shape.bands), "position": list(range(len(shape.bands)))})
        per_band = (
            counted.group_by("band")
            .agg(pl.len().cast(pl.Int64).alias("journeys"), pl.col("converted").sum().cast(pl.Int64))
            .join(order, on="band", how="full", coalesce=True)
            .with_columns(pl.col("journeys", "converted").fill_null(0))
            .with_columns(
                pl.when(pl.lit(any_outcome) & (pl.col("journeys") > 0))
                .then(pl.col("converted") / pl.col("journeys"))
                .otherwise(None)
                .alias("rate"),
                pl.lit(shape.name).alias("product_line"),
            )
            .sort(pl.col("position").fill_null(len(shape.bands)), "band")
        )
        frames.append(per_band.select("product_line", "band", "journeys", "converted", "rate"))
    schema = {"product_line": pl.Utf8, "band": pl.Utf8, "journeys": pl.Int64, "converted": pl.Int64}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema | {"rate": pl.Float64})


def top_movers(engine: Engine, n: int, line: str | None = None) -> pl.DataFrame:
    """The ``n`` journeys whose score changed most (either way) between their two latest snapshots; a snapshot
    written for a band or qualification change alone moved nobody, so a zero change is no mover."""
    where, params = _line_filter(line, "s.product_line")
    latest_two = read_frame(
        engine,
        "SELECT journey_id, lead_id, product_line, stage, as_of, score, rn FROM ("
        "SELECT s.journey_id, l.lead_id, s.product_line, s.stage, s.as_of, s.score, "
        "ROW_NUMBER() OVER (PARTITION BY s.journey_id ORDER BY s.as_of DESC, s.id DESC) AS rn "
        f"FROM score_snapshots s JOIN leads l ON l.key = s.lead_key WHERE 1 = 1{where}) ranked WHERE rn <= 2",
        params,
        {
            "journey_id": pl.Int64,
            "lead_id": pl.Utf8,
            "product_line": pl.Utf8,
            "stage": pl.Utf8,
            "as_of": pl.Int64,
            "score": pl.Float64,
            "rn": pl.Int64,
        },
    )
    latest = latest_two.filter(pl.col("rn") == 1).drop("rn")
    previous = latest_two.filter(pl.col("rn") == 2).select(
        "journey_id", pl.col("score").alias("previous"), pl.col("stage").alias("previous_stage")
    )
    return (
        latest.join(previous, on="journey_id", how="inner")
        .with_columns((pl.col("score") - pl.col("previous")).alias("change"))
        .with_columns(pl.col("change").round(1))  # as the report shows it: a change that rounds to 0 moved nobody
        .filter(pl.col("change") != 0)
        .with_columns(pl.col("as_of").cast(UTC_US))
        .sort(pl.col("change").abs(), "lead_id", descending=[True, False])
        .head(n)
        .select("lead_id", "product_line", "previous_stage", "stage", "previous", "score", "change", "as_of")
    )


def nurture_performance(engine: Engine) -> pl.DataFrame:
    """Per track: enrolments by outcome, emails sent, and how many of those a person opened or clicked
    (machine opens and clicks excluded; opens and clicks arrive as events carrying the ``message_id``)."""
    enrolments = read_frame(
        engine,
        "SELECT track, COUNT(*) AS enrolled, "
        "SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END) AS active, "
        "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed, "
        "SUM(CASE WHEN status = 'exited' THEN 1 ELSE 0 END) AS exited "
        "FROM nurture_enrolments GROUP BY track",
        {},
        {"track": pl.Utf8, "enrolled": pl.Int64, "active": pl.Int64, "completed": pl.Int64, "exited": pl.Int64},
    )
    emails = read_frame(
        engine,
        "SELECT e.track, COUNT(DISTINCT s.message_id) AS sent, "
        "COUNT(DISTINCT CASE WHEN ev.type = 'email_open' THEN s.message_id END) AS opened, "
        "COUNT(DISTINCT CASE WHEN ev.type = 'email_click' THEN s.message_id END) AS clicked "
        "FROM nurture_steps s JOIN nurture_enrolments e ON e.id = s.enrolment_id "
        "JOIN outbox o ON o.message_id = s.message_id AND o.status IN ('sent', 'intent') "
        "LEFT JOIN events ev ON ev.message_id = s.message_id AND ev.machine = FALSE "
        "AND ev.type IN ('email_open', 'email_click') "
        "WHERE s.action = 'email' GROUP BY e.track",
        {},
        {"track": pl.Utf8, "sent": pl.Int64, "opened": pl.Int64, "clicked": pl.Int64},
    )
    exits = read_frame(
        engine,
        "SELECT track, exit_reason, COUNT(*) AS n FROM nurture_enrolments WHERE status = 'exited' "
        "GROUP BY track, exit_reason ORDER BY track, n DESC, exit_reason",
        {},
        {"track": pl.Utf8, "exit_reason": pl.Utf8, "n": pl.Int64},
    )
    reasons = exits.group_by("track", maintain_order=True).agg(
        pl.format("{}: {}", pl.col("exit_reason").fill_null("unknown"), "n").str.join(", ").alias("exits by reason")
    )
    return (
        enrolments.join(emails, on="track", how="left")
        .join(reasons, on="track", how="left")
        .with_columns(pl.col("sent", "opened", "clicked").fill_null(0), pl.col("exits by reason").fill_null(""))
        .sort("track")
    )


_EMAIL_EVENTS = "('email_delivered', 'email_open', 'email_click', 'unsubscribe', 'email_bounce', 'spam_complaint')"


def nurture_emails(engine: Engine) -> pl.DataFrame:
    """Per track, step and template (an A/B variant is its template): emails sent, delivered, opened
    and clicked by a person, unsubscribes, bounces and complaints they caused (events carrying the
    ``message_id``; machine opens and clicks excluded; a refused send counts as a bounce)."""
    tests = {
        "sent": "o.status IN ('sent', 'intent')",
        "delivered": "ev.type = 'email_delivered'",
        "opened": "ev.type = 'email_open' AND ev.machine = FALSE",
        "clicked": "ev.type = 'email_click' AND ev.machine = FALSE",
        "unsubscribed": "ev.type = 'unsubscribe'",
        "bounced": "o.status = 'bounced' OR ev.type = 'email_bounce'",
        "complained": "ev.type = 'spam_complaint'",
    }
    counted = ", ".join(
        f"COUNT(DISTINCT CASE WHEN {test} THEN s.message_id END) AS {name}" for name, test in tests.items()
    )
    sql = (
        f"SELECT e.track, s.step, s.detail AS template, {counted} "
        "FROM nurture_steps s JOIN nurture_enrolments e ON e.id = s.enrolment_id "
        "JOIN outbox o ON o.message_id = s.message_id "
        f"LEFT JOIN events ev ON ev.message_id = s.message_id AND ev.type IN {_EMAIL_EVENTS} "
        "WHERE s.action = 'email' GROUP BY e.track, s.step, s.detail ORDER BY e.track, s.step, s.detail"
    )
    schema = {"track": pl.Utf8(), "step": pl.Int64(), "template": pl.Utf8(), **dict.fromkeys(tests, pl.Int64())}
    return read_frame(engine, sql, {}, schema)


def nurture_arms(engine: Engine) -> pl.DataFrame:
    """``track, arm, enrolled, converted``: per track the holdout and the treated enrolments, and per
    A/B step each variant's (arm ``<template> (step N)``); converted = the journey reached a
    qualification (MQL…) after the lead entered the track."""
    converted = (
        "SUM(CASE WHEN EXISTS (SELECT 1 FROM qualification_milestones m WHERE m.journey_id = n.journey_id "
        "AND m.reached_at > n.enrolled_at) THEN 1 ELSE 0 END)"
    )
    schema = {"track": pl.Utf8(), "arm": pl.Utf8(), "enrolled": pl.Int64(), "converted": pl.Int64()}
    groups = read_frame(
        engine,
        "SELECT n.track, CASE WHEN n.exit_reason = 'holdout' THEN 'holdout' ELSE 'treated' END AS arm, "
        f"COUNT(*) AS enrolled, {converted} AS converted FROM nurture_enrolments n "
        "GROUP BY n.track, CASE WHEN n.exit_reason = 'holdout' THEN 'holdout' ELSE 'treated' END",
        {},
        schema,
    )
    variants = read_frame(
        engine,
        "SELECT n.track, s.step, s.detail AS template, COUNT(*) AS enrolled, "
        f"{converted} AS converted FROM nurture_enrolments n "
        "JOIN nurture_steps s ON s.enrolment_id = n.id AND s.action = 'email' GROUP BY n.track, s.step, s.detail",
        {},
        {
            "track": pl.Utf8(),
            "step": pl.Int64(),
            "template": pl.Utf8(),
            "enrolled": pl.Int64(),
            "converted": pl.Int64(),
        },
    )
    tested = variants.filter(pl.len().over("track", "step") > 1).select(
        "track", pl.format("{} (step {})", "template", "step").alias("arm"), "enrolled", "converted"
    )
    order = pl.when(pl.col("arm") == "holdout").then(0).when(pl.col("arm") == "treated").then(1).otherwise(2)
    return pl.concat([groups, tested]).sort("track", order, "arm")


def content_served(engine: Engine, lines: Sequence[str], since: datetime) -> pl.DataFrame:
    """Web content served to known leads since ``since`` (``content_served`` events), one row per view and
    product line of the lead: ``lead_key, slot, variant, product_line, band, qualification`` as the
    lead's journey in that line stood when it saw the variant (the service records them with the view)."""
    raw = read_frame(
        engine,
        "SELECT lead_key, CAST(properties AS TEXT) AS properties FROM events "
        f"WHERE {of_sparse_types(['content_served'])} AND occurred_at >= :since",
        {"since": to_micros(since)},
        {"lead_key": pl.Int64, "properties": pl.Utf8},
    )
    per_line = pl.Struct({line: pl.Utf8 for line in lines})
    shape = pl.Struct({"slot": pl.Utf8, "variant": pl.Utf8, "bands": per_line, "qualifications": per_line})
    views = raw.select("lead_key", pl.col("properties").str.json_decode(shape).alias("p")).unnest("p")
    parts = [
        views.select(
            "lead_key",
            "slot",
            "variant",
            pl.lit(line).alias("product_line"),
            pl.col("bands").struct.field(line).alias("band"),
            pl.col("qualifications").struct.field(line).alias("qualification"),
        ).filter(pl.col("band").is_not_null())
        for line in lines
    ]
    schema = {"lead_key": pl.Int64, "slot": pl.Utf8, "variant": pl.Utf8, "product_line": pl.Utf8}
    return pl.concat(parts) if parts else pl.DataFrame(schema={**schema, "band": pl.Utf8, "qualification": pl.Utf8})
