"""Journeys, score snapshots and runs: the write side of scoring, set-based and transactional per partition."""

import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select
from sqlmodel import Session

from store.bulk import insert_ignore, placeholder
from store.reader import read_frame
from store.runlock import HOST, claim
from store.shapes import LEAD_COLUMNS, UTC_US
from store.tables import Journey, Run, to_micros, utcnow


def open_journeys(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert journeys that do not exist yet (``lead_key``, ``product_line``, ``stage``, ``opened_at``)."""
    if not rows:
        return 0
    for row in rows:
        row.setdefault("stage_entered_at", row["opened_at"])
        row.setdefault("status", "active")
    with engine.begin() as conn:
        return insert_ignore(conn, Journey.__table__, rows)


# A journey as a run reads it: its stage, the times that decide what counts, and its current score.
JOURNEY_STATE_SCHEMA = {
    "journey_id": pl.Int64,
    "lead_key": pl.Int64,
    "stage": pl.Utf8,
    "status": pl.Utf8,
    "opened_at": pl.Int64,
    "score_from": pl.Int64,
    "stage_entered_at": pl.Int64,
    "score": pl.Float64,
    "band": pl.Utf8,
    "qualification": pl.Utf8,
}


def read_journeys(engine: Engine, product_line: str, key_range: tuple[int, int]) -> pl.DataFrame:
    """The journeys of one product line in a lead-key range, with their current score; terminal ones
    too (a CRM update may bring a customer or lost journey back), though they are not scored."""
    sql = (
        "SELECT id AS journey_id, lead_key, stage, status, opened_at, score_from, stage_entered_at, score, band, "
        "qualification "
        "FROM journeys WHERE product_line = :line AND lead_key >= :lo AND lead_key < :hi"
    )
    frame = read_frame(
        engine, sql, {"line": product_line, "lo": key_range[0], "hi": key_range[1]}, JOURNEY_STATE_SCHEMA
    )
    return frame.with_columns(pl.col("opened_at", "score_from", "stage_entered_at").cast(UTC_US))


def read_leads(engine: Engine, key_range: tuple[int, int], attributes: Sequence[str] = ()) -> pl.DataFrame:
    """Lead attributes for scoring: the standard columns, ``attributes`` as JSON text, and the named
    attributes decoded from it into columns in one pass (rules then read columns, not JSON)."""
    sql = (
        f"SELECT key AS lead_key, {', '.join(LEAD_COLUMNS)}, CAST(attributes AS TEXT) AS attributes FROM leads "
        "WHERE key >= :lo AND key < :hi"
    )
    schema = {"lead_key": pl.Int64, **dict.fromkeys(LEAD_COLUMNS, pl.Utf8), "attributes": pl.Utf8}
    frame = read_frame(engine, sql, {"lo": key_range[0], "hi": key_range[1]}, schema)
    wanted = [name for name in attributes if name not in frame.columns and name.isidentifier()]
    if not wanted or frame.is_empty():
        return frame
    decoded = pl.col("attributes").str.json_decode(pl.Struct(dict.fromkeys(wanted, pl.Utf8)))
    try:
        return frame.with_columns(decoded.alias("_decoded")).unnest("_decoded")
    except pl.exceptions.ComputeError:  # a nested object or list under a wanted name: rules parse it per value
        return frame


def changed_scores(scored: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Scored journeys whose stage, score, band or qualification differs from the journey's stored values
    (``current``: the journeys as read at the start of the run)."""
    joined = scored.join(
        current.select(
            "journey_id",
            pl.col("stage").alias("_stage"),
            pl.col("score").alias("_score"),
            pl.col("band").alias("_band"),
            pl.col("qualification").alias("_qual"),
        ),
        on="journey_id",
        how="left",
    )
    differs = (
        pl.col("stage").ne_missing(pl.col("_stage"))
        | pl.col("score").ne_missing(pl.col("_score"))
        | pl.col("band").ne_missing(pl.col("_band"))
        | pl.col("qualification").ne_missing(pl.col("_qual"))
    )
    return joined.filter(differs).drop("_stage", "_score", "_band", "_qual")


def breakdown_json(breakdown: pl.Expr) -> pl.Expr:
    """Encode a list-of-struct breakdown as JSON text in Polars (no per-row Python)."""
    wrapped = pl.struct(breakdown.alias("b")).struct.json_encode()
    return wrapped.str.slice(5, wrapped.str.len_bytes() - 6)


SNAPSHOT_COLUMNS = (
    "journey_id", "lead_key", "product_line", "stage", "run_id", "as_of", "score", "band", "qualification", "breakdown",
)  # fmt: skip


def write_scores(engine: Engine, *, run_id: str, as_of: datetime, product_line: str, changed: pl.DataFrame) -> int:
    """Record changed scores in a transaction of their own (see ``write_snapshots``)."""
    with engine.begin() as conn:
        return write_snapshots(conn, run_id=run_id, as_of=as_of, product_line=product_line, changed=changed)


def write_snapshots(conn: Connection, *, run_id: str, as_of: datetime, product_line: str, changed: pl.DataFrame) -> int:
    """Record changed scores: one snapshot each and the journey's current values.

    A re-run of the same run id inserts nothing twice (snapshots are unique per journey and run). The
    rows go to the driver as plain tuples: SQLAlchemy's per-row parameter handling would double the
    cost of a first run, where every journey changes.
    """
    if changed.is_empty():
        return 0
    snapshots = changed.select(
        "journey_id",
        "lead_key",
        pl.lit(product_line).alias("product_line"),
        "stage",
        pl.lit(run_id).alias("run_id"),
        pl.lit(to_micros(as_of)).alias("as_of"),
        "score",
        "band",
        "qualification",
        breakdown_json(pl.col("breakdown")).alias("breakdown"),
    ).rows()
    journeys = changed.select("score", "band", "qualification", pl.lit(run_id), "journey_id").rows()
    mark = placeholder(conn)
    snapshot_sql = (
        f"INSERT INTO score_snapshots ({', '.join(SNAPSHOT_COLUMNS)}) VALUES ({', '.join([mark] * 10)}) "
        "ON CONFLICT (journey_id, run_id) DO NOTHING"
    )
    journey_sql = (
        f"UPDATE journeys SET score = {mark}, band = {mark}, qualification = {mark}, updated_run_id = {mark} "
        f"WHERE id = {mark}"
    )
    conn.exec_driver_sql(snapshot_sql, snapshots)
    conn.exec_driver_sql(journey_sql, journeys)
    return len(snapshots)


def start_run(engine: Engine, kind: str, as_of: datetime, scope: str | None = None) -> str:
    """Record a ``running`` run with the process running it (so that a killed one is found stale) and
    the run lock ``scope`` it holds."""
    run_id = uuid.uuid4().hex
    with Session(engine) as session:
        session.add(
            Run(run_id=run_id, kind=kind, as_of=as_of, started_at=utcnow(), scope=scope, host=HOST, pid=os.getpid())
        )
        claim(session.connection(), scope, run_id)
        session.commit()
    return run_id


def finish_run(engine: Engine, run_id: str, status: str, stats: dict[str, Any]) -> None:
    with Session(engine) as session:
        run = session.exec(select(Run).where(Run.run_id == run_id)).scalar_one()  # type: ignore[call-overload]
        run.status, run.stats, run.finished_at = status, stats, utcnow()
        session.add(run)
        session.commit()
