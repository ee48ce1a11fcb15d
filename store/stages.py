"""The funnel's side of a scoring run: pending CRM updates, trigger arm state and milestones in; transitions,
milestones, firings, tags and the journeys' new stages out, in the same transaction as the snapshots."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import polars as pl
from sqlalchemy import Connection, Engine

from store.bulk import insert_rows, placeholder, update_rows
from store.reader import read_frame
from store.scores import breakdown_json, write_snapshots
from store.shapes import ARM_SCHEMA, LEAD_CONTACT_COLUMNS, STAGE_UPDATE_SCHEMA, UTC_US, utc_instant
from store.tables import to_micros

# Answered by the (product_line, lead_key) index: a narrow key range (one lead, a fresh=true look-up) reads
# a few rows, a partition one range of the line.
_RANGE = "j.product_line = :line AND j.lead_key >= :lo AND j.lead_key < :hi"


def _params(product_line: str, key_range: tuple[int, int]) -> dict[str, object]:
    return {"line": product_line, "lo": key_range[0], "hi": key_range[1]}


def read_pending_updates(
    engine: Engine, product_line: str, key_range: tuple[int, int], replay_at: datetime | None = None
) -> pl.DataFrame:
    """CRM updates not yet applied by a run: ``id`` and the ``STAGE_UPDATE_SCHEMA`` columns.

    With ``replay_at``: those a run at that time had to apply, i.e. dated by then and not applied by a
    run before it."""
    columns = "u.id, u.lead_key, u.stage, u.changed_at, u.source FROM stage_updates u"
    in_range = "u.product_line = :line AND u.lead_key >= :lo AND u.lead_key < :hi"
    params: dict[str, object] = _params(product_line, key_range)
    if replay_at is None:
        sql = f"SELECT {columns} WHERE {in_range} AND u.applied_run_id IS NULL"
    else:
        params["t"] = to_micros(replay_at)
        sql = (
            f"SELECT {columns} LEFT JOIN runs r ON r.run_id = u.applied_run_id WHERE {in_range} "
            "AND u.changed_at <= :t AND (r.as_of IS NULL OR r.as_of >= :t)"
        )
    return read_frame(engine, sql, params, {"id": pl.Int64, **STAGE_UPDATE_SCHEMA})


def read_trigger_arms(
    engine: Engine, product_line: str, key_range: tuple[int, int], replay_at: datetime | None = None
) -> pl.DataFrame:
    """Stored arm rows of the line's journeys in the range (``ARM_SCHEMA``); with ``replay_at``, each
    pair's last row of the arm log written before that time."""
    params = _params(product_line, key_range)
    if replay_at is None:
        sql = (
            "SELECT a.journey_id, a.trigger, a.armed, a.as_of FROM trigger_arms a "
            f"JOIN journeys j ON j.id = a.journey_id WHERE {_RANGE}"
        )
        return read_frame(engine, sql, params, ARM_SCHEMA)
    sql = (
        "SELECT a.journey_id, a.trigger, a.armed, a.as_of FROM trigger_arm_log a "
        f"JOIN journeys j ON j.id = a.journey_id WHERE {_RANGE} AND a.as_of < :t"
    )
    logged = read_frame(engine, sql, params | {"t": to_micros(replay_at)}, ARM_SCHEMA)
    return logged.sort("as_of").group_by("journey_id", "trigger", maintain_order=True).last()


def read_reached(
    engine: Engine, product_line: str, key_range: tuple[int, int], replay_at: datetime | None = None
) -> pl.DataFrame:
    """Qualifications already reached (``journey_id, qualification``): milestones are sticky. With
    ``replay_at``, those reached before that time."""
    sql = (
        "SELECT m.journey_id, m.qualification FROM qualification_milestones m "
        f"JOIN journeys j ON j.id = m.journey_id WHERE {_RANGE}"
    )
    params = _params(product_line, key_range)
    if replay_at is not None:
        sql += " AND m.reached_at < :t"
        params["t"] = to_micros(replay_at)
    return read_frame(engine, sql, params, {"journey_id": pl.Int64, "qualification": pl.Utf8})


@dataclass(frozen=True)
class FunnelWrite:
    """Everything one (product line, partition) of a run stores, beside its changed scores."""

    moved: pl.DataFrame  # journey_id, stage, stage_entered_at, score_from, status, entered_by
    transitions: pl.DataFrame  # TRANSITION_SCHEMA
    milestones: pl.DataFrame  # MILESTONE_SCHEMA (+ breakdown)
    arms: pl.DataFrame  # ARM_SCHEMA
    firings: pl.DataFrame  # FIRING_SCHEMA
    applied_updates: Sequence[int]  # stage_updates ids this run has taken into account


# Actions that only change the store are carried out in the scoring transaction itself.
IN_STORE_ACTIONS = ("tag", "untag")


def write_partition(
    engine: Engine,
    *,
    run_id: str,
    as_of: datetime,
    product_line: str,
    snapshots: pl.DataFrame,
    current: pl.DataFrame,
    funnel: FunnelWrite,
) -> int:
    """Store a partition's run outcome in one transaction, so a crash leaves it all or nothing.

    ``snapshots`` and ``current`` are ``store.scores.write_snapshots``'s. Every insert is keyed on a
    natural key (snapshot per journey, run and step, transition per journey, time and target, milestone
    per journey and qualification, firing per crossing: journey, trigger, step, action and arm time), so
    writing the same outcome again, even from another run, changes nothing. Returns the snapshots written.
    """
    with engine.begin() as conn:
        written = write_snapshots(
            conn, run_id=run_id, as_of=as_of, product_line=product_line, snapshots=snapshots, current=current
        )
        _move_journeys(conn, funnel.moved, run_id)
        _insert(conn, "stage_transitions", _transition_rows(funnel.transitions, product_line, run_id))
        _insert(conn, "qualification_milestones", _milestone_rows(funnel.milestones, product_line, run_id))
        _upsert_arms(conn, funnel.arms)
        _insert(conn, "trigger_arm_log", funnel.arms.select("journey_id", "trigger", _micros("as_of"), "armed"))
        _insert(conn, "trigger_firings", _firing_rows(funnel.firings, product_line, run_id, as_of))
        _apply_tags(conn, funnel.firings, run_id, as_of)
        applied = [(run_id, update_id) for update_id in funnel.applied_updates]
        update_rows(conn, "stage_updates", ("applied_run_id",), "id", applied)
    return written


def _micros(name: str) -> pl.Expr:
    return pl.col(name).cast(UTC_US).dt.epoch("us")


def _insert(conn: Connection, table: str, frame: pl.DataFrame) -> None:
    insert_rows(conn, table, frame.columns, frame.rows())


def _move_journeys(conn: Connection, moved: pl.DataFrame, run_id: str) -> None:
    rows = moved.select(
        "stage",
        _micros("stage_entered_at"),
        _micros("score_from"),
        "status",
        "entered_by",
        pl.lit(run_id),
        "journey_id",
    ).rows()
    columns = ("stage", "stage_entered_at", "score_from", "status", "entered_by", "updated_run_id")
    update_rows(conn, "journeys", columns, "id", rows)


def _transition_rows(transitions: pl.DataFrame, product_line: str, run_id: str) -> pl.DataFrame:
    return transitions.select(
        "journey_id",
        "lead_key",
        pl.lit(product_line).alias("product_line"),
        "from_stage",
        "to_stage",
        _micros("at").alias("at"),
        "reason",
        "source",
        "score_before",
        "score_after",
        _micros("score_from").alias("score_from"),
        "status",
        pl.lit(run_id).alias("run_id"),
    )


def _milestone_rows(milestones: pl.DataFrame, product_line: str, run_id: str) -> pl.DataFrame:
    breakdown = breakdown_json(pl.col("breakdown")) if "breakdown" in milestones.columns else pl.lit("[]")
    return milestones.select(
        "journey_id",
        "lead_key",
        pl.lit(product_line).alias("product_line"),
        "qualification",
        "threshold",
        _micros("reached_at").alias("reached_at"),
        "stage",
        "score",
        pl.lit(run_id).alias("run_id"),
        breakdown.alias("breakdown"),
    )


def _firing_rows(firings: pl.DataFrame, product_line: str, run_id: str, as_of: datetime) -> pl.DataFrame:
    done = pl.col("action").is_in(IN_STORE_ACTIONS)
    return firings.select(
        pl.lit(run_id).alias("run_id"),
        "journey_id",
        "lead_key",
        pl.lit(product_line).alias("product_line"),
        "trigger",
        "step",
        "direction",
        "action_index",
        "action",
        "params",
        "stage",
        "score",
        "score_before",
        "band",
        "qualification",
        breakdown_json(pl.col("breakdown")).alias("breakdown"),
        "promoted_to",
        utc_instant(as_of).dt.epoch("us").alias("fired_at"),
        "armed_at",
        pl.when(done).then(pl.lit("done")).otherwise(pl.lit("pending")).alias("status"),
        done.cast(pl.Int32).alias("attempts"),
        pl.when(done).then(utc_instant(as_of).dt.epoch("us")).alias("completed_at"),
    )


def _upsert_arms(conn: Connection, arms: pl.DataFrame) -> None:
    # Each pair once, its last row: what one upsert per row in order would leave.
    last = arms.unique(["journey_id", "trigger"], keep="last", maintain_order=True)
    insert_rows(
        conn,
        "trigger_arms",
        ("journey_id", "trigger", "armed", "as_of"),
        last.select("journey_id", "trigger", "armed", _micros("as_of")).rows(),
        "ON CONFLICT (journey_id, trigger) DO UPDATE SET armed = excluded.armed, as_of = excluded.as_of",
    )


def _apply_tags(conn: Connection, firings: pl.DataFrame, run_id: str, as_of: datetime) -> None:
    """Tag and untag actions, in firing order (a later untag of the same tag wins)."""
    tagging = firings.filter(pl.col("action").is_in(IN_STORE_ACTIONS))
    if tagging.is_empty():
        return
    last = (
        tagging.with_columns(pl.col("params").str.json_path_match("$.tag").alias("tag"))
        .sort("step", "journey_id", "action_index")
        .group_by("lead_key", "tag", maintain_order=True)
        .last()
    )
    mark = placeholder(conn)
    added = last.filter(pl.col("action") == "tag")
    insert_rows(
        conn,
        "lead_tags",
        ("lead_key", "tag", "added_at", "run_id"),
        added.select(
            "lead_key", "tag", utc_instant(as_of).dt.epoch("us").alias("at"), pl.lit(run_id).alias("run")
        ).rows(),
    )
    removed = last.filter(pl.col("action") == "untag")
    if not removed.is_empty():
        conn.exec_driver_sql(
            f"DELETE FROM lead_tags WHERE lead_key = {mark} AND tag = {mark}", removed.select("lead_key", "tag").rows()
        )


OPEN_FIRING_STATUSES = ("pending", "retry")
# A stored firing still to carry out, with what its action says about the lead and the journey.
OPEN_FIRING_SCHEMA = {
    "id": pl.Int64,
    "run_id": pl.Utf8,
    "journey_id": pl.Int64,
    "lead_key": pl.Int64,
    "product_line": pl.Utf8,
    "trigger": pl.Utf8,
    "direction": pl.Utf8,
    "action": pl.Utf8,
    "params": pl.Utf8,
    "stage": pl.Utf8,
    "score": pl.Float64,
    "score_before": pl.Float64,
    "fired_at": pl.Int64,
    "attempts": pl.Int64,
    **dict.fromkeys(LEAD_CONTACT_COLUMNS, pl.Utf8),
    "band": pl.Utf8,
    "qualification": pl.Utf8,
    "breakdown": pl.Utf8,
    "promoted_to": pl.Utf8,
}


def read_open_firings(engine: Engine, actions: Sequence[str]) -> pl.DataFrame:
    """Firings of ``actions`` still to carry out (pending, or retried after a temporary failure), with
    the lead's contact fields and the state that crossed (band, qualification, breakdown as JSON text,
    the stage a promotion then took the journey to), oldest first."""
    if not actions:
        return pl.DataFrame(schema=OPEN_FIRING_SCHEMA)
    names = ", ".join(f"'{name}'" for name in actions if name.isidentifier())
    statuses = ", ".join(f"'{name}'" for name in OPEN_FIRING_STATUSES)
    open_firing = f"f.status IN ({statuses}) AND f.action IN ({names})"
    sql = (
        "SELECT f.id, f.run_id, f.journey_id, f.lead_key, f.product_line, f.trigger, f.direction, f.action, "
        "CAST(f.params AS TEXT) AS params, f.stage, f.score, f.score_before, f.fired_at, f.attempts, "
        f"{', '.join(f'l.{name}' for name in LEAD_CONTACT_COLUMNS)}, f.band, f.qualification, "
        "CAST(f.breakdown AS TEXT) AS breakdown, f.promoted_to "
        "FROM trigger_firings f JOIN leads l ON l.key = f.lead_key "
        f"WHERE {open_firing} ORDER BY f.id"
    )
    frame = read_frame(engine, sql, {}, OPEN_FIRING_SCHEMA)
    return frame.with_columns(pl.col("fired_at").cast(UTC_US))


def record_firing_outcomes(
    engine: Engine,
    outcomes: Sequence[tuple[int, str, int, str, datetime | None]],
    table: Literal["trigger_firings", "account_firings"] = "trigger_firings",
) -> None:
    """Store ``(firing id, status, attempts made now, outcome, completed_at)`` for each carried-out action
    of lead triggers (or of account triggers: ``account_firings``)."""
    if not outcomes:
        return
    with engine.begin() as conn:
        mark = placeholder(conn)
        conn.exec_driver_sql(
            f"UPDATE {table} SET status = {mark}, attempts = attempts + {mark}, outcome = {mark}, "
            f"completed_at = {mark} WHERE id = {mark}",
            [
                (status, attempts, outcome, None if done is None else to_micros(done), firing_id)
                for firing_id, status, attempts, outcome, done in outcomes
            ],
        )


def firing_summary(engine: Engine, run_id: str) -> list[dict[str, object]]:
    """The run's firings counted per trigger, action and status (what the run's artifact shows)."""
    sql = (
        "SELECT trigger, action, status, COUNT(*) AS firings FROM trigger_firings WHERE run_id = :run "
        "GROUP BY trigger, action, status ORDER BY trigger, action, status"
    )
    schema = {"trigger": pl.Utf8, "action": pl.Utf8, "status": pl.Utf8, "firings": pl.Int64}
    return read_frame(engine, sql, {"run": run_id}, schema).to_dicts()
