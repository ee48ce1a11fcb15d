"""Nurture persistence: set-based reads into Polars and batched writes (no ORM round-trip per row).

``request_enrolments`` / ``request_exits`` are what trigger actions call: they only record the request;
the next ``run_nurture`` applies it under the consent and re-entry rules, so a trigger can never
enrol a lead that must not be emailed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, bindparam, func, select, update

from store.bulk import insert_ignore
from store.nurture_tables import NurtureEnrolment, NurtureRequest, NurtureStepLog
from store.reader import read_frame
from store.shapes import UTC_US
from store.sparse_events import of_sparse_types
from store.tables import Lead, ScoreSnapshot, to_micros

ENROLMENTS = NurtureEnrolment.__table__  # type: ignore[attr-defined]
STEPS = NurtureStepLog.__table__  # type: ignore[attr-defined]
REQUESTS = NurtureRequest.__table__  # type: ignore[attr-defined]
LEADS = Lead.__table__  # type: ignore[attr-defined]
_CHUNK = 5_000


def request_enrolments(
    engine: Engine, track: str, lead_keys: list[int], *, run_id: str, as_of: datetime, reason: str
) -> int:
    """Ask the next nurture run to enrol ``lead_keys`` in ``track``; returns the requests recorded
    (a repeated request for the same ``as_of`` is recorded once)."""
    return _request(engine, "enrol", track, lead_keys, run_id=run_id, as_of=as_of, reason=reason)


def request_exits(
    engine: Engine, track: str, lead_keys: list[int], *, run_id: str, as_of: datetime, reason: str
) -> int:
    """Ask the next nurture run to end the active enrolments of ``lead_keys`` in ``track``."""
    return _request(engine, "exit", track, lead_keys, run_id=run_id, as_of=as_of, reason=reason)


def _request(
    engine: Engine, action: str, track: str, lead_keys: list[int], *, run_id: str, as_of: datetime, reason: str
) -> int:
    rows = [
        {
            "track": track,
            "lead_key": int(key),
            "action": action,
            "requested_at": as_of,
            "reason": reason,
            "run_id": run_id,
        }
        for key in dict.fromkeys(lead_keys)
    ]
    with engine.begin() as conn:
        return insert_ignore(conn, REQUESTS, rows)


# ── reads ─────────────────────────────────────────────────────────────────────────────────────

ENROLMENT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "lead_key": pl.Int64(),
    "journey_id": pl.Int64(),
    "track": pl.Utf8(),
    "stage": pl.Utf8(),
    "enrolled_at": UTC_US,
    "current_step": pl.Int64(),
    "next_step_at": UTC_US,
    "status": pl.Utf8(),
    "exited_at": UTC_US,
}
REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "track": pl.Utf8(),
    "lead_key": pl.Int64(),
    "action": pl.Utf8(),
    "requested_at": UTC_US,
    "reason": pl.Utf8(),
}
# Where a journey stands (no times): what entry and exit rules test.
JOURNEY_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "journey_id": pl.Int64(),
    "lead_key": pl.Int64(),
    "product_line": pl.Utf8(),
    "stage": pl.Utf8(),
    "status": pl.Utf8(),
    "score": pl.Float64(),
    "band": pl.Utf8(),
    "qualification": pl.Utf8(),
}
CONSENT_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    "email": pl.Utf8(),
    "email_opt_in": pl.Boolean(),
    "unsubscribed_at": UTC_US,
    "bounced_at": UTC_US,
    "country": pl.Utf8(),
    "timezone": pl.Utf8(),
}
ENGAGEMENT_SCHEMA: dict[str, pl.DataType] = {
    "enrolment_id": pl.Int64(),
    "opened": pl.Boolean(),
    "clicked": pl.Boolean(),
}


def read_journeys(engine: Engine, product_lines: Sequence[str]) -> pl.DataFrame:
    """The journeys of ``product_lines`` with their current stage, status, score and band."""
    if not product_lines:
        return pl.DataFrame(schema=JOURNEY_SUMMARY_SCHEMA)
    names = {f"l{i}": name for i, name in enumerate(product_lines)}
    sql = (
        "SELECT id AS journey_id, lead_key, product_line, stage, status, score, band, qualification FROM journeys "
        f"WHERE product_line IN ({', '.join(f':{key}' for key in names)})"
    )
    return read_frame(engine, sql, names, JOURNEY_SUMMARY_SCHEMA)


def read_milestones(engine: Engine) -> pl.DataFrame:
    schema = {"journey_id": pl.Int64(), "qualification": pl.Utf8()}
    return read_frame(engine, "SELECT journey_id, qualification FROM qualification_milestones", {}, schema)


def read_consent(engine: Engine) -> pl.DataFrame:
    """Consent and contact of every lead, with its ``country`` and ``timezone`` attribute (for the
    lead's own send window)."""
    timezone = (
        "attributes->>'timezone'" if engine.dialect.name == "postgresql" else "json_extract(attributes, '$.timezone')"
    )
    sql = (
        'SELECT "key" AS lead_key, email, email_opt_in, unsubscribed_at, bounced_at, country, '
        f"{timezone} AS timezone FROM leads"
    )
    return read_frame(engine, sql, {}, CONSENT_SCHEMA)


def read_lead_facts(engine: Engine, columns: Sequence[str]) -> pl.DataFrame:
    """``lead_key, email, attributes`` (JSON text) and the lead ``columns`` that exclusions test."""
    known = [name for name in dict.fromkeys(columns) if name in LEADS.c and name not in ("email", "attributes")]
    extra = "".join(f', "{name}"' for name in known)
    sql = f'SELECT "key" AS lead_key, email, CAST(attributes AS TEXT) AS attributes{extra} FROM leads'
    schema = {"lead_key": pl.Int64(), "email": pl.Utf8(), "attributes": pl.Utf8()}
    return read_frame(engine, sql, {}, schema | {name: pl.Utf8() for name in known})


def read_enrolments(engine: Engine) -> pl.DataFrame:
    """Every enrolment, active or ended (re-entry rules look at the ended ones)."""
    sql = f"SELECT {', '.join(ENROLMENT_SCHEMA)} FROM nurture_enrolments"
    return read_frame(engine, sql, {}, ENROLMENT_SCHEMA)


def read_open_requests(engine: Engine, as_of: datetime) -> pl.DataFrame:
    sql = (
        f"SELECT {', '.join(REQUEST_SCHEMA)} FROM nurture_requests "
        "WHERE processed_run_id IS NULL AND requested_at <= :as_of"
    )
    return read_frame(engine, sql, {"as_of": to_micros(as_of)}, REQUEST_SCHEMA)


def read_recent_sends(engine: Engine, since: datetime, until: datetime) -> pl.DataFrame:
    """``lead_key, at, ref, to``: nurture emails sent (or with an unknown outcome) in ``(since, until]``."""
    sql = (
        "SELECT lead_key, created_at AS at, ref, to_address AS \"to\" FROM outbox WHERE kind = 'nurture' "
        "AND status IN ('sent', 'intent') AND created_at > :since AND created_at <= :until"
    )
    params = {"since": to_micros(since), "until": to_micros(until)}
    schema = {"lead_key": pl.Int64(), "at": UTC_US, "ref": pl.Utf8(), "to": pl.Utf8()}
    return read_frame(engine, sql, params, schema)


def read_engagement(engine: Engine, as_of: datetime) -> pl.DataFrame:
    """``enrolment_id, opened, clicked`` for the latest email of each active enrolment: a human open or
    click (machine activity excluded) of that very message, up to ``as_of``. A click counts as an open."""
    sql = """
        SELECT s.enrolment_id,
               MAX(CASE WHEN e.type IN ('email_open', 'email_click') THEN 1 ELSE 0 END) AS opened,
               MAX(CASE WHEN e.type = 'email_click' THEN 1 ELSE 0 END) AS clicked
        FROM nurture_steps s
        JOIN nurture_enrolments n ON n.id = s.enrolment_id AND n.status = 'active'
        JOIN events e ON e.message_id = s.message_id
        WHERE s.action = 'email'
          AND s.step = (SELECT MAX(l.step) FROM nurture_steps l
                        WHERE l.enrolment_id = s.enrolment_id AND l.action = 'email')
          AND e.machine = :human AND e.occurred_at <= :as_of
        GROUP BY s.enrolment_id
    """
    return read_frame(engine, sql, {"human": False, "as_of": to_micros(as_of)}, ENGAGEMENT_SCHEMA)


def read_recipients(engine: Engine, lead_keys: Sequence[int], journey_ids: Sequence[int]) -> tuple[dict, dict]:
    """The lead fields (with ``attributes``) of ``lead_keys`` and the latest breakdown of each journey:
    what email templates are personalised with. Only the recipients of this run are read."""
    leads: dict[int, dict[str, Any]] = {}
    breakdowns: dict[int, list[Any]] = {}
    keys, journeys = sorted(set(lead_keys)), sorted({j for j in journey_ids if j is not None})
    with engine.connect() as conn:
        for start in range(0, len(keys), _CHUNK):
            rows = conn.execute(select(LEADS).where(LEADS.c.key.in_(keys[start : start + _CHUNK])))
            leads.update({row.key: dict(row._mapping) for row in rows})
        snapshots = ScoreSnapshot.__table__  # type: ignore[attr-defined]
        for start in range(0, len(journeys), _CHUNK):
            part = journeys[start : start + _CHUNK]
            latest = (
                select(func.max(snapshots.c.id))
                .where(snapshots.c.journey_id.in_(part))
                .group_by(snapshots.c.journey_id)
            )
            rows = conn.execute(select(snapshots.c.journey_id, snapshots.c.breakdown).where(snapshots.c.id.in_(latest)))
            breakdowns.update({row.journey_id: list(row.breakdown or []) for row in rows})
    return leads, breakdowns


def step_log(engine: Engine, enrolment_id: int | None = None) -> list[dict[str, Any]]:
    query = select(STEPS).order_by(STEPS.c.enrolment_id, STEPS.c.step)
    if enrolment_id is not None:
        query = query.where(STEPS.c.enrolment_id == enrolment_id)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def enrolments(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(ENROLMENTS).order_by(ENROLMENTS.c.id))]


# ── writes ────────────────────────────────────────────────────────────────────────────────────


def insert_enrolments(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """New enrolments (``lead_key, journey_id, track, stage, reason``) at step 0, due at once."""
    return insert_ignore(conn, ENROLMENTS, list(rows))


def end_enrolments(conn: Connection, ended: Sequence[dict[str, Any]], *, at: datetime, run_id: str) -> int:
    """``ended``: ``id, exit_reason, status`` (exited | completed); only active enrolments change."""
    if not ended:
        return 0
    stmt = (
        update(ENROLMENTS)
        .where(ENROLMENTS.c.id == bindparam("eid"), ENROLMENTS.c.status == "active")
        .values(
            status=bindparam("new_status"),
            exit_reason=bindparam("why"),
            exited_at=at,
            next_step_at=None,
            updated_run_id=run_id,
        )
    )
    params = [{"eid": row["id"], "new_status": row["status"], "why": row["exit_reason"]} for row in ended]
    return int(conn.execute(stmt, params).rowcount)


def move_enrolments(conn: Connection, moves: Sequence[dict[str, Any]], *, run_id: str) -> None:
    """``moves``: ``id, current_step, next_step_at`` of active enrolments still in their track."""
    if not moves:
        return
    stmt = (
        update(ENROLMENTS)
        .where(ENROLMENTS.c.id == bindparam("eid"), ENROLMENTS.c.status == "active")
        .values(current_step=bindparam("step"), next_step_at=bindparam("due"), updated_run_id=run_id)
    )
    conn.execute(stmt, [{"eid": m["id"], "step": m["current_step"], "due": m["next_step_at"]} for m in moves])


def record_steps(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Executed steps (``enrolment_id, step, action, detail, message_id, at, run_id``); a step already
    logged for an enrolment is left as it is (a re-run logs nothing twice)."""
    return insert_ignore(conn, STEPS, list(rows))


def settle_requests(conn: Connection, outcomes: Sequence[dict[str, Any]], *, run_id: str) -> None:
    if not outcomes:
        return
    stmt = (
        update(REQUESTS)
        .where(REQUESTS.c.id == bindparam("rid"), REQUESTS.c.processed_run_id.is_(None))
        .values(processed_run_id=run_id, outcome=bindparam("result"))
    )
    conn.execute(stmt, [{"rid": row["id"], "result": row["outcome"]} for row in outcomes])


SUPPRESSION_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    "type": pl.Utf8(),
    "product_line": pl.Utf8(),
    "occurred_at": UTC_US,
    "properties": pl.Utf8(),
}


SUPPRESSION_EVENT_TYPES = ("unsubscribe", "resubscribe", "spam_complaint", "email_bounce")


def read_suppression_events(engine: Engine, as_of: datetime) -> pl.DataFrame:
    """Unsubscribe (of everything or one ``product_line``), resubscribe, spam complaint and bounce events
    up to ``as_of`` of leads not yet both unsubscribed and bounced (``nurture.events`` decides what
    they suppress and which lines a lead stopped)."""
    sql = (
        "SELECT e.lead_key, e.type, e.product_line, e.occurred_at, CAST(e.properties AS TEXT) AS properties "
        'FROM events e JOIN leads l ON l."key" = e.lead_key '
        f"WHERE {of_sparse_types(SUPPRESSION_EVENT_TYPES, 'e.')} AND e.occurred_at <= :t "
        "AND (l.unsubscribed_at IS NULL OR l.bounced_at IS NULL)"
    )
    return read_frame(engine, sql, {"t": to_micros(as_of)}, SUPPRESSION_EVENT_SCHEMA)


def apply_suppressions(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Set ``unsubscribed_at`` / ``bounced_at`` (``lead_key`` and either, null for no change) where still
    empty; returns the leads changed."""
    changed = 0
    for column in ("unsubscribed_at", "bounced_at"):
        params = [{"k": row["lead_key"], "at": row[column]} for row in rows if row[column] is not None]
        if params:
            stmt = (
                update(LEADS)
                .where(LEADS.c.key == bindparam("k"), LEADS.c[column].is_(None))
                .values({column: bindparam("at")})
            )
            changed += int(conn.execute(stmt, params).rowcount)
    return changed


def suppress(engine: Engine, lead_keys: Sequence[int], *, at: datetime, run_id: str) -> tuple[int, int]:
    """Unsubscribe ``lead_keys`` now and end all their active enrolments; returns (leads newly
    unsubscribed, enrolments ended). A lead already unsubscribed keeps its first time."""
    keys = sorted(set(lead_keys))
    suppressed = ended = 0
    with engine.begin() as conn:
        for start in range(0, len(keys), _CHUNK):
            part = keys[start : start + _CHUNK]
            suppressed += int(
                conn.execute(
                    update(LEADS)
                    .where(LEADS.c.key.in_(part), LEADS.c.unsubscribed_at.is_(None))
                    .values(unsubscribed_at=at, updated_at=at)
                ).rowcount
            )
            ended += int(
                conn.execute(
                    update(ENROLMENTS)
                    .where(ENROLMENTS.c.lead_key.in_(part), ENROLMENTS.c.status == "active")
                    .values(
                        status="exited",
                        exit_reason="unsubscribed",
                        exited_at=at,
                        next_step_at=None,
                        updated_run_id=run_id,
                    )
                ).rowcount
            )
    return suppressed, ended


def lead_keys_by(engine: Engine, column: str, values: Sequence[str]) -> dict[str, int]:
    """Map ``lead_id`` or (lower-cased) ``email`` values to lead keys."""
    found: dict[str, int] = {}
    target = LEADS.c.lead_id if column == "lead_id" else func.lower(LEADS.c.email)
    unique = sorted(set(values))
    with engine.connect() as conn:
        for start in range(0, len(unique), _CHUNK):
            rows = conn.execute(select(target, LEADS.c.key).where(target.in_(unique[start : start + _CHUNK])))
            for value, key in rows:
                found.setdefault(value, key)
    return found
