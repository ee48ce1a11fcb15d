"""A chunk's accepted events in stored form, as Polars columns: worked out in the thread that checks the
next chunk while this one is written, so the writing thread (the load's critical path) only stamps,
filters and appends them."""

from datetime import datetime

import polars as pl

from store.ingest.columns import AcceptedEvents
from store.ingest.machine import MachineDetector
from store.ingest.properties import distinct_objects, stored_properties
from store.tables import to_micros


def stored_columns(accepted: AcceptedEvents, detector: MachineDetector) -> tuple[pl.DataFrame, pl.Series]:
    """Each accepted row's stored columns but ``lead_key`` and ``ingested_at``, in file order, column by
    column, with the machine flag the row gave or the proxy check decides (opens and clicks without a
    message id, which no delivery explains); and which rows the detector must see (``considers``). The
    proxy check and the properties' stored form are worked out once per distinct properties object."""
    explicit = pl.Series(accepted.machine, dtype=pl.Boolean)
    frame = pl.DataFrame(
        {
            "occurred_at": pl.Series(accepted.at, dtype=pl.Int64),
            "event_id": pl.Series(accepted.event_id, dtype=pl.String),
            "type": pl.Series(accepted.type, dtype=pl.String),
            "product_line": pl.Series(accepted.product_line, dtype=pl.String),
            "machine": explicit.fill_null(False),
            "message_id": pl.Series(accepted.message_id, dtype=pl.String),
        }
    )
    with_message, proxy_only = detector.considers(frame["type"], frame["message_id"], explicit.is_not_null())
    distinct, codes = distinct_objects(accepted.properties)
    if proxy_only.any():
        proxy = detector.rule.proxy
        flags = pl.Series([proxy(properties) for properties in distinct], dtype=pl.Boolean)
        if codes is not None:
            flags = flags.gather(codes)
        frame = frame.with_columns(machine=pl.when(proxy_only).then(flags).otherwise(pl.col("machine")))
    return pl.concat([frame, stored_properties(distinct, codes)], how="horizontal"), with_message


def staged(stored: pl.DataFrame, rows: list[int], now: datetime) -> pl.DataFrame:
    """The rows at positions ``rows`` (in position order) of ``stored`` (``stored_columns`` with each
    row's ``lead_key`` and final ``machine``), stamped with ``now``, in clustered-key order: the WITHOUT
    ROWID B-tree (and PostgreSQL's heap and indexes) is appended to. Gathered only when some rows go."""
    if len(rows) < stored.height:  # of the same length, ``rows`` is every position
        stored = stored[rows]
    return (
        stored.select("lead_key", pl.exclude("lead_key"))
        .with_columns(ingested_at=pl.lit(to_micros(now), dtype=pl.Int64))
        .sort("lead_key", "occurred_at", "event_id")
    )
