"""Suppression from ingested events: unsubscribes, hard bounces, spam complaints, repeated soft bounces.

Events arrive from files today and from the HTTP service later; either way the next nurture run
suppresses by them before deciding anything, so the lead leaves its tracks in that very run:

- ``unsubscribe`` (of everything: no ``product_line``) and ``spam_complaint`` (e.g. from a feedback
  loop or a provider webhook) set ``unsubscribed_at`` to the first such event since the lead's last
  ``resubscribe`` (the preference centre): what came before a resubscribe no longer counts.
- ``unsubscribe`` of one ``product_line`` suppresses nothing but keeps the lead out of that line's
  tracks (``line_optouts``), until a later ``resubscribe``.
- ``email_bounce`` is hard when its properties say so (``bounce``, as the service's webhooks store
  it, ``type`` or ``bounce_type``: ``hard`` or ``permanent``) or its status code is permanent
  (``status``, ``code`` or ``diagnostic`` starting with 5: ``5.1.1``, ``550 user unknown``); it sets
  ``bounced_at`` to the first one. Any other bounce is soft (a full mailbox, a greylist): the
  ``soft_bounces``-th soft bounce sets ``bounced_at``.

Frames: leads ``lead_key, unsubscribed_at, bounced_at, …``; events ``lead_key, type, product_line,
occurred_at, properties`` (the properties as JSON text).
"""

from __future__ import annotations

import polars as pl

DEFAULT_SOFT_BOUNCES = 3  # soft bounces of one lead, in all time, that count as a hard one
_HARD_WORDS = ("hard", "permanent")


def bounce_kind(properties: pl.Expr) -> pl.Expr:
    """``hard`` or ``soft`` for an ``email_bounce`` event's properties."""

    def field(name: str) -> pl.Expr:
        return properties.str.json_path_match(f"$.{name}").str.strip_chars().str.to_lowercase()

    said = pl.coalesce(field("bounce"), field("type"), field("bounce_type"))
    code = pl.coalesce(field("status"), field("code"), field("diagnostic"))
    hard = said.is_in(_HARD_WORDS).fill_null(False) | code.str.starts_with("5").fill_null(False)
    return pl.when(hard).then(pl.lit("hard")).otherwise(pl.lit("soft"))


def _since_resubscribe(events: pl.DataFrame) -> pl.DataFrame:
    """The unsubscribes and complaints after each lead's last ``resubscribe``, and all bounces (a
    resubscribe does not make an address deliverable again)."""
    last = (
        events.filter(pl.col("type") == "resubscribe")
        .group_by("lead_key")
        .agg(pl.col("occurred_at").max().alias("resubscribed"))
    )
    return events.join(last, on="lead_key", how="left").filter(
        pl.col("type").is_in(["unsubscribe", "spam_complaint"])
        & (pl.col("resubscribed").is_null() | (pl.col("occurred_at") > pl.col("resubscribed")))
        | (pl.col("type") == "email_bounce")
    )


def line_optouts(events: pl.DataFrame) -> pl.DataFrame:
    """``lead_key, product_line``: the lines a lead stopped (``unsubscribe`` of one line) since it last
    resubscribed."""
    return (
        _since_resubscribe(events)
        .filter((pl.col("type") == "unsubscribe") & pl.col("product_line").is_not_null())
        .select("lead_key", "product_line")
        .unique(maintain_order=True)
    )


def suppressions(leads: pl.DataFrame, events: pl.DataFrame, *, soft_bounces: int) -> pl.DataFrame:
    """``lead_key, unsubscribed_at, bounced_at``: the leads whose events suppress them and who are not
    yet suppressed that way (null where nothing changes)."""
    counted = _since_resubscribe(events).filter((pl.col("type") != "unsubscribe") | pl.col("product_line").is_null())
    kinds = counted.with_columns(
        pl.when(pl.col("type") == "email_bounce")
        .then(bounce_kind(pl.col("properties")))
        .otherwise(pl.lit("unsubscribe"))
        .alias("kind")
    )
    soft_rank = pl.int_range(1, pl.len() + 1).over("lead_key", order_by="occurred_at")
    soft = kinds.filter(pl.col("kind") == "soft").with_columns(soft_rank.alias("nth"))
    bounced = pl.concat(
        [
            kinds.filter(pl.col("kind") == "hard").select("lead_key", "occurred_at"),
            soft.filter(pl.col("nth") == soft_bounces).select("lead_key", "occurred_at"),
        ]
    )
    firsts = (
        kinds.filter(pl.col("kind") == "unsubscribe")
        .group_by("lead_key")
        .agg(pl.col("occurred_at").min().alias("unsubscribed"))
        .join(bounced.group_by("lead_key").agg(pl.col("occurred_at").min().alias("bounced")), on="lead_key", how="full")
        .select(pl.coalesce("lead_key", "lead_key_right").alias("lead_key"), "unsubscribed", "bounced")
    )
    return (
        leads.select("lead_key", "unsubscribed_at", "bounced_at")
        .join(firsts, on="lead_key", how="inner")
        .select(
            "lead_key",
            pl.when(pl.col("unsubscribed_at").is_null()).then(pl.col("unsubscribed")).alias("unsubscribed_at"),
            pl.when(pl.col("bounced_at").is_null()).then(pl.col("bounced")).alias("bounced_at"),
        )
        .filter(pl.col("unsubscribed_at").is_not_null() | pl.col("bounced_at").is_not_null())
        .sort("lead_key")
    )
