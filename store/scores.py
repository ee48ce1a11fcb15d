"""Journeys, score snapshots and runs: the write side of scoring, set-based and transactional per partition."""

import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select, text
from sqlmodel import Session

from store.bulk import insert_rows, placeholder, stage_rows, update_rows
from store.ingest.skeleton import gc_paused
from store.ingest.staging import merge_ignoring_stored
from store.reader import read_frame
from store.runlock import HOST, claim
from store.shapes import LEAD_COLUMNS, UTC_US
from store.tables import Journey, Run, to_micros, utcnow


def open_journeys(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert journeys that do not exist yet (``lead_key``, ``product_line``, ``stage``, ``opened_at``);
    returns how many were opened.

    ``opened_at`` is the time the data gives (the first event of the line, a CRM move, a lead's
    arrival). A journey that exists and never moved since it opened is moved back to an earlier
    ``opened_at`` when one arrives (a lead ingested today, its months-old events tomorrow): its entry
    time comes from the data, not from the day of ingestion.
    """
    if not rows:
        return 0
    for row in rows:
        row.setdefault("stage_entered_at", row["opened_at"])
        row.setdefault("status", "active")
        row.setdefault("entered_by", "opened")
    # A load's last step: millions of new objects (the frame's, the statements' parameters) that the
    # cyclic collector would rescan again and again, as during the load's chunks (``gc_paused``).
    with gc_paused(), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            return _open_staged(conn, rows)
        # Multi-row ``INSERT OR IGNORE`` statements in key order: a leads load opens a journey per line of
        # interest (1.2M for 1M leads), and a statement per row cost most of the load's last step.
        frame = _opened_frame(rows).sort("lead_key", "product_line")
        opened = merge_ignoring_stored(conn, Journey.__table__, frame)
        if opened < len(rows):
            # The parameters from the frame's columns, not converted once more row by row (1.2M rows:
            # 0.15 CPU s against 0.44), in its key order: the order of a journey's rows does not matter
            # (the earliest wins: a later, earlier time moves it back again; an earlier one first stops the rest).
            mark, at = placeholder(conn), frame["opened_at"].to_list()
            conn.exec_driver_sql(
                f"UPDATE journeys SET {_moved_back('', mark)} "
                f"WHERE lead_key = {mark} AND product_line = {mark} AND opened_at > {mark}",
                list(zip(at, at, frame["lead_key"].to_list(), frame["product_line"].to_list(), at, strict=True)),
            )
        return opened


_OPENED = ("lead_key", "product_line", "stage", "status", "entered_by", "opened_at", "stage_entered_at")
_OPENED_TIMES = frozenset({"opened_at", "stage_entered_at"})
_OPENED_NUMBERS = frozenset({"lead_key", *_OPENED_TIMES})


def _opened_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``open_journeys``' rows as the ``_OPENED`` columns in stored form (times in epoch microseconds),
    built column by column, each row's opening time converted once: ``stage_entered_at`` is mostly the
    same object (``open_journeys``' default). 1.2M rows: ≈ 0.5 CPU s less than a tuple per row."""
    opened = [to_micros(row["opened_at"]) for row in rows]
    entered = [
        at if row["stage_entered_at"] is row["opened_at"] else to_micros(row["stage_entered_at"])
        for row, at in zip(rows, opened, strict=True)
    ]
    columns = {name: [row[name] for row in rows] for name in _OPENED if name not in _OPENED_TIMES}
    return pl.DataFrame(
        {**columns, "opened_at": opened, "stage_entered_at": entered},
        schema={name: pl.Int64 if name in _OPENED_NUMBERS else pl.String for name in _OPENED},
    )


def _moved_back(journey: str, at: str) -> str:
    """The SET clause of ``open_journeys``' rule: an earlier opening time ``at`` moves a journey that never
    moved since it opened back to it. ``journey``: the prefix of the journey's columns (an alias and a dot)."""
    return (
        f"stage_entered_at = CASE WHEN {journey}stage_entered_at = {journey}opened_at AND ({journey}entered_by "
        f"IS NULL OR {journey}entered_by = 'opened') THEN {at} ELSE {journey}stage_entered_at END, opened_at = {at}"
    )


def _open_staged(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """``open_journeys`` on PostgreSQL: the rows ``COPY``-ed once into the session's staging table, then one
    ``INSERT … SELECT`` and one ``UPDATE … FROM`` it. The ``executemany`` of one ``UPDATE`` per row was the
    last ≈ 3 minutes of a 20M-event load (1.2M interests, nearly all of journeys the leads opened): 148.6 s,
    26.7 client + ≈ 21 server CPU s against 29.1 s, 2.5 + ≈ 8 (1.2M journeys, load 12–17)."""
    staged = stage_rows(conn, "journeys", _OPENED, _opened_frame(rows))
    names = ", ".join(_OPENED)
    opened = conn.exec_driver_sql(f"INSERT INTO journeys ({names}) SELECT {names} FROM {staged} ON CONFLICT DO NOTHING")
    if opened.rowcount < len(rows):  # the rows just inserted have no earlier time: the UPDATE leaves them
        conn.exec_driver_sql(
            f"UPDATE journeys AS j SET {_moved_back('j.', 's.opened_at')} FROM {staged} AS s "
            "WHERE j.lead_key = s.lead_key AND j.product_line = s.product_line AND j.opened_at > s.opened_at"
        )
    return int(opened.rowcount)


# A journey as a run reads it: its stage, the times that decide what counts, and its current score.
JOURNEY_STATE_SCHEMA = {
    "journey_id": pl.Int64,
    "lead_key": pl.Int64,
    "stage": pl.Utf8,
    "status": pl.Utf8,
    "opened_at": pl.Int64,
    "score_from": pl.Int64,
    "stage_entered_at": pl.Int64,
    "entered_by": pl.Utf8,
    "score": pl.Float64,
    "band": pl.Utf8,
    "qualification": pl.Utf8,
}


def read_journeys(engine: Engine, product_line: str, key_range: tuple[int, int]) -> pl.DataFrame:
    """The journeys of one product line in a lead-key range, with their current score; terminal ones
    too (a CRM update may bring a customer or lost journey back), though they are not scored."""
    sql = (
        "SELECT id AS journey_id, lead_key, stage, status, opened_at, score_from, stage_entered_at, entered_by, "
        "score, band, qualification "
        "FROM journeys WHERE product_line = :line AND lead_key >= :lo AND lead_key < :hi"
    )
    return read_frame(engine, sql, {"line": product_line, "lo": key_range[0], "hi": key_range[1]}, _JOURNEY_READ)


# The stored epoch microseconds cast straight to UTC times by ``read_frame`` (one pass over the frame, not two).
_JOURNEY_READ = {**JOURNEY_STATE_SCHEMA, **dict.fromkeys(("opened_at", "score_from", "stage_entered_at"), UTC_US)}


def read_journeys_as_of(
    engine: Engine, product_line: str, key_range: tuple[int, int], as_of: datetime, first_stage: str
) -> pl.DataFrame:
    """``read_journeys`` as a run at ``as_of`` found them, rebuilt from the logs: journeys opened by then,
    each at the stage, entry time, ``score_from`` and status of its last transition written by a run
    before ``as_of`` (else where it opened: ``first_stage`` at ``opened_at``), with the score, band and
    qualification of its last snapshot before ``as_of``."""
    params = {"line": product_line, "lo": key_range[0], "hi": key_range[1], "t": to_micros(as_of)}
    in_range = "product_line = :line AND lead_key >= :lo AND lead_key < :hi"
    opened = read_frame(
        engine,
        f"SELECT id AS journey_id, lead_key, opened_at FROM journeys WHERE {in_range} AND opened_at <= :t",
        params,
        {"journey_id": pl.Int64, "lead_key": pl.Int64, "opened_at": pl.Int64},
    )
    moves = read_frame(
        engine,
        "SELECT t.journey_id, t.id, t.to_stage, t.at, t.score_from, t.status, t.reason FROM stage_transitions t "
        f"JOIN runs r ON r.run_id = t.run_id WHERE t.{in_range.replace(' AND ', ' AND t.')} AND r.as_of < :t",
        params,
        {
            "journey_id": pl.Int64,
            "id": pl.Int64,
            "to_stage": pl.Utf8,
            "at": pl.Int64,
            "score_from": pl.Int64,
            "status": pl.Utf8,
            "reason": pl.Utf8,
        },
    )
    scores = read_frame(
        engine,
        "SELECT journey_id, as_of, step, id, score, band, qualification FROM score_snapshots "
        f"WHERE {in_range} AND as_of < :t",
        params,
        {
            "journey_id": pl.Int64,
            "as_of": pl.Int64,
            "step": pl.Int64,
            "id": pl.Int64,
            "score": pl.Float64,
            "band": pl.Utf8,
            "qualification": pl.Utf8,
        },
    )
    last_move = moves.sort("id").group_by("journey_id").last()
    last_score = scores.sort("as_of", "step", "id").group_by("journey_id").last()
    moved = pl.col("to_stage").is_not_null()
    return (
        opened.join(last_move, on="journey_id", how="left")
        .join(last_score.select("journey_id", "score", "band", "qualification"), on="journey_id", how="left")
        .select(
            "journey_id",
            "lead_key",
            pl.col("to_stage").fill_null(pl.lit(first_stage)).alias("stage"),
            pl.col("status").fill_null(pl.lit("active")),
            pl.col("opened_at").cast(UTC_US),
            pl.col("score_from").cast(UTC_US),
            pl.when(moved).then(pl.col("at")).otherwise(pl.col("opened_at")).cast(UTC_US).alias("stage_entered_at"),
            pl.when(moved).then(pl.col("reason")).otherwise(pl.lit("opened")).alias("entered_by"),
            "score",
            "band",
            "qualification",
        )
        .sort("journey_id")
    )


def read_leads(
    engine: Engine, key_range: tuple[int, int] | None, attributes: Sequence[str] = (), *, lead_id: str | None = None
) -> pl.DataFrame:
    """Lead attributes for scoring: the standard columns, ``attributes`` as JSON text, and the named
    attributes decoded from it into columns in one pass (rules then read columns, not JSON).

    With ``lead_id`` in place of ``key_range``: that lead only (none if unknown). A ``fresh=true``
    look-up learns the key from the row, one query where it took two (the key, then the range)."""
    if lead_id is not None:
        where, params = "lead_id = :lead_id", {"lead_id": lead_id}
    elif key_range is not None:
        where, params = "key >= :lo AND key < :hi", {"lo": key_range[0], "hi": key_range[1]}
    else:
        raise ValueError("read_leads needs a key range or a lead id")
    sql = (
        f"SELECT key AS lead_key, {', '.join(LEAD_COLUMNS)}, CAST(attributes AS TEXT) AS attributes FROM leads "
        f"WHERE {where}"
    )
    schema = {"lead_key": pl.Int64, **dict.fromkeys(LEAD_COLUMNS, pl.Utf8), "attributes": pl.Utf8}
    frame = read_frame(engine, sql, params, schema)
    wanted = [name for name in attributes if name not in frame.columns and name.isidentifier()]
    if not wanted or frame.is_empty():
        return frame
    decoded = pl.col("attributes").str.json_decode(pl.Struct(dict.fromkeys(wanted, pl.Utf8)))
    try:  # one plan: on one lead (a ``fresh=true`` look-up) each eager step costs more than its row
        return frame.lazy().with_columns(decoded.alias("_decoded")).unnest("_decoded").collect(engine="in-memory")
    except pl.exceptions.ComputeError:  # a nested object or list under a wanted name: rules parse it per value
        return frame


def breakdown_json(breakdown: pl.Expr) -> pl.Expr:
    """Encode a list-of-struct breakdown as JSON text in Polars (no per-row Python)."""
    wrapped = pl.struct(breakdown.alias("b")).struct.json_encode()
    return wrapped.str.slice(5, wrapped.str.len_bytes() - 6)


SNAPSHOT_COLUMNS = (
    "journey_id", "lead_key", "product_line", "stage", "run_id", "step", "as_of", "score", "band", "qualification",
    "breakdown",
)  # fmt: skip


def write_snapshots(
    conn: Connection, *, run_id: str, as_of: datetime, product_line: str, snapshots: pl.DataFrame, current: pl.DataFrame
) -> int:
    """Record a run's score history (``snapshots``: one row per changed state, with its ``step``) and each
    changed journey's new current values (``current``: its final state).

    A re-run of the same run id inserts nothing twice (snapshots are unique per journey, run and step).
    The rows go to the driver as plain tuples (SQLAlchemy's per-row parameter handling would double the
    cost of a first run, where every journey changes), through ``COPY`` on PostgreSQL.
    """
    if snapshots.is_empty():
        return 0
    rows = (
        snapshots.sort("journey_id", "step")
        .select(
            "journey_id",
            "lead_key",
            pl.lit(product_line).alias("product_line"),
            "stage",
            pl.lit(run_id).alias("run_id"),
            pl.col("step").cast(pl.Int64),
            pl.lit(to_micros(as_of)).alias("as_of"),
            "score",
            "band",
            "qualification",
            breakdown_json(pl.col("breakdown")).alias("breakdown"),
        )
        .rows()
    )
    insert_rows(conn, "score_snapshots", SNAPSHOT_COLUMNS, rows, "ON CONFLICT (journey_id, run_id, step) DO NOTHING")
    update_rows(
        conn,
        "journeys",
        ("score", "band", "qualification", "updated_run_id"),
        "id",
        current.select("score", "band", "qualification", pl.lit(run_id), "journey_id").rows(),
    )
    return len(rows)


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


def journey_positions(engine: Engine) -> pl.DataFrame:
    """``lead_key, lead_id, product_line, stage, score, stage_entered_at`` of every journey: where each lead
    stands now, for whoever acts on it from outside (the demo's simulated sales team)."""
    sql = (
        "SELECT j.lead_key, l.lead_id, j.product_line, j.stage, j.score, j.stage_entered_at "
        "FROM journeys j JOIN leads l ON l.key = j.lead_key ORDER BY j.id"
    )
    schema = {
        "lead_key": pl.Int64(),
        "lead_id": pl.Utf8(),
        "product_line": pl.Utf8(),
        "stage": pl.Utf8(),
        "score": pl.Float64(),
        "stage_entered_at": UTC_US,
    }
    return read_frame(engine, sql, {}, schema)


def promoted_and_alerted(engine: Engine) -> tuple[str, str] | None:
    """``(lead_id, product_line)`` of a journey that was promoted by its score and whose owner was alerted
    (the lead the demo's guided tour explains), or None."""
    sql = (
        "SELECT l.lead_id, t.product_line FROM stage_transitions t JOIN leads l ON l.key = t.lead_key "
        "WHERE t.reason = 'threshold' AND EXISTS (SELECT 1 FROM trigger_firings f "
        "WHERE f.journey_id = t.journey_id AND f.action = 'notify_owner' AND f.status = 'done') "
        "ORDER BY t.at, l.lead_id LIMIT 1"
    )
    with engine.connect() as conn:
        row = conn.execute(text(sql)).first()
    return None if row is None else (row[0], row[1])
