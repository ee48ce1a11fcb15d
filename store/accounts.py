"""Reads and writes of account scoring: its inputs as frames, the snapshots it writes, its history.

Member scores are read from the lead score history (the last snapshot of each journey at or before
``as_of``), so a replay as of a past date sees the members as that day's run left them.
"""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import Engine, delete

from store.account_tables import AccountFiring, AccountMember, AccountScore, AccountTriggerArm
from store.bulk import insert_ignore, upsert
from store.reader import read_frame
from store.shapes import UTC_US
from store.tables import to_micros

ACCOUNT_COLUMNS = ("account_id", "name", "domain", "industry", "employees", "region", "owner")
_SCORES = AccountScore.__table__
_MEMBERS = AccountMember.__table__
_ARMS = AccountTriggerArm.__table__
_FIRINGS = AccountFiring.__table__
LAST_SCORE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "run_id": pl.Utf8(),
    "as_of": UTC_US,
    "score": pl.Float64(),
    "band": pl.Utf8(),
    "qualifications": pl.List(pl.Utf8()),
    "members": pl.Int64(),
    "metrics": pl.Utf8(),
    "breakdown": pl.Utf8(),
}


def read_account_leads(engine: Engine) -> pl.DataFrame:
    """``lead_key, email, account_id, attributes`` (JSON text) of every lead."""
    return read_frame(
        engine,
        "SELECT key AS lead_key, email, account_id, CAST(attributes AS TEXT) AS attributes FROM leads",
        {},
        {"lead_key": pl.Int64(), "email": pl.Utf8(), "account_id": pl.Utf8(), "attributes": pl.Utf8()},
    )


def read_accounts(engine: Engine) -> pl.DataFrame:
    """The accounts file as stored: the known columns as text (fit rules read text) and ``attributes`` JSON."""
    columns = ", ".join(f"CAST({name} AS TEXT) AS {name}" if name == "employees" else name for name in ACCOUNT_COLUMNS)
    frame = read_frame(
        engine,
        f"SELECT {columns}, CAST(attributes AS TEXT) AS attributes FROM accounts ORDER BY account_id",
        {},
        {**dict.fromkeys(ACCOUNT_COLUMNS, pl.Utf8()), "attributes": pl.Utf8()},
    )
    # SQLite renders 250.0 as "250.0", PostgreSQL as "250": the same text on both for rules that test text.
    return frame.with_columns(pl.col("employees").cast(pl.Float64).cast(pl.Utf8))


def read_member_scores(engine: Engine, product_line: str, as_of: datetime) -> pl.DataFrame:
    """``lead_key, score``: each journey's last snapshot at or before ``as_of`` in ``product_line``."""
    frame = read_frame(
        engine,
        "SELECT lead_key, score, as_of, step, id FROM score_snapshots WHERE product_line = :line AND as_of <= :t",
        {"line": product_line, "t": to_micros(as_of)},
        {"lead_key": pl.Int64(), "score": pl.Float64(), "as_of": pl.Int64(), "step": pl.Int64(), "id": pl.Int64()},
    )
    return frame.sort("as_of", "step", "id").group_by("lead_key").last().select("lead_key", "score")


def read_engaged(engine: Engine, event_types: Sequence[str], within_days: float, as_of: datetime) -> pl.DataFrame:
    """``lead_key`` of the leads with a (non-machine) event of ``event_types`` in ``(as_of − within_days, as_of]``."""
    since = as_of - timedelta(days=within_days)
    return read_frame(
        engine,
        "SELECT DISTINCT lead_key FROM events WHERE occurred_at > :since AND occurred_at <= :t"
        " AND type IN (:types) AND NOT machine",
        {"since": to_micros(since), "t": to_micros(as_of), "types": list(event_types)},
        {"lead_key": pl.Int64()},
    )


def read_last_account_scores(
    engine: Engine, product_line: str, as_of: datetime, account_ids: Sequence[str] | None = None
) -> pl.DataFrame:
    """``LAST_SCORE_SCHEMA``: each account's last snapshot at or before ``as_of`` (its state then)."""
    params: dict[str, Any] = {"line": product_line, "t": to_micros(as_of)}
    only = ""
    if account_ids is not None:
        only, params["ids"] = " AND account_id IN (:ids)", list(account_ids) or [""]
    frame = read_frame(
        engine,
        "SELECT account_id, run_id, as_of, id, score, band, CAST(qualifications AS TEXT) AS qualifications, members,"
        " CAST(metrics AS TEXT) AS metrics, CAST(breakdown AS TEXT) AS breakdown FROM account_scores"
        f" WHERE product_line = :line AND as_of <= :t{only}",
        params,
        {**LAST_SCORE_SCHEMA, "as_of": pl.Int64(), "id": pl.Int64(), "qualifications": pl.Utf8()},
    )
    return (
        frame.sort("as_of", "id")
        .group_by("account_id")
        .last()
        .with_columns(
            pl.col("as_of").cast(UTC_US),
            pl.col("qualifications").str.json_decode(pl.List(pl.Utf8)),
        )
        .select(list(LAST_SCORE_SCHEMA))
        .sort("account_id")
    )


def read_account_arms(engine: Engine, product_line: str) -> pl.DataFrame:
    """``account_id, trigger, armed, as_of``: the stored arm rows of the line's account triggers."""
    frame = read_frame(
        engine,
        "SELECT account_id, trigger, armed, as_of FROM account_trigger_arms WHERE product_line = :line",
        {"line": product_line},
        {"account_id": pl.Utf8(), "trigger": pl.Utf8(), "armed": pl.Boolean(), "as_of": pl.Int64()},
    )
    return frame.with_columns(pl.col("as_of").cast(UTC_US))


def write_members(engine: Engine, members: pl.DataFrame, as_of: datetime) -> int:
    """Replace the membership (``lead_key, account_id, source``) with this run's, in one transaction."""
    rows = [{**row, "as_of": as_of} for row in members.select("lead_key", "account_id", "source").to_dicts()]
    with engine.begin() as conn:
        conn.execute(delete(_MEMBERS))
        return insert_ignore(conn, _MEMBERS, rows)  # type: ignore[arg-type]


def write_account_run(
    engine: Engine,
    *,
    product_line: str,
    run_id: str,
    as_of: datetime,
    snapshots: pl.DataFrame,
    arms: pl.DataFrame,
    firings: list[dict[str, Any]],
) -> int:
    """In one transaction: the changed accounts' snapshots, the arm rows and the firings (unique per
    crossing, so a re-run stores none twice). Returns the snapshots written."""
    metrics = ("members", "max_score", "sum_score", "engaged_members", "seniorities")
    rows = [
        {
            "product_line": product_line,
            "account_id": row["account_id"],
            "run_id": run_id,
            "as_of": as_of,
            "score": row["score"],
            "band": row["band"],
            "qualifications": row["qualifications"],
            "members": row["members"],
            "metrics": {name: row[name] for name in metrics},
            "breakdown": row["breakdown"],
        }
        for row in snapshots.to_dicts()
    ]
    arm_rows = [
        {"product_line": product_line, "account_id": a, "trigger": t, "armed": armed, "as_of": when}
        for a, t, armed, when in arms.select("account_id", "trigger", "armed", "as_of").iter_rows()
    ]
    stamp = {"product_line": product_line, "run_id": run_id, "fired_at": as_of, "status": "pending", "attempts": 0}
    firing_rows = [{**firing, **stamp} for firing in firings]
    with engine.begin() as conn:
        if rows:
            conn.execute(_SCORES.insert(), rows)
        upsert(conn, _ARMS, arm_rows, ["product_line", "account_id", "trigger"], ["armed", "as_of"])  # type: ignore[arg-type]
        insert_ignore(conn, _FIRINGS, firing_rows)  # type: ignore[arg-type]
    return len(rows)


def read_member_details(engine: Engine, product_line: str, account_ids: Sequence[str], as_of: datetime) -> pl.DataFrame:
    """The members of ``account_ids`` with their contact fields and last snapshot in the line (score and
    breakdown JSON; null without a journey there): what an account alert names."""
    if not account_ids:
        return pl.DataFrame()
    people = read_frame(
        engine,
        "SELECT m.account_id, l.key AS lead_key, l.lead_id, l.email, l.first_name, l.last_name,"
        " CAST(l.attributes AS TEXT) AS attributes FROM account_members m JOIN leads l ON l.key = m.lead_key"
        " WHERE m.account_id IN (:ids)",
        {"ids": list(account_ids)},
        {
            "account_id": pl.Utf8(),
            "lead_key": pl.Int64(),
            "lead_id": pl.Utf8(),
            "email": pl.Utf8(),
            "first_name": pl.Utf8(),
            "last_name": pl.Utf8(),
            "attributes": pl.Utf8(),
        },
    )
    snaps = read_frame(
        engine,
        "SELECT s.lead_key, s.score, CAST(s.breakdown AS TEXT) AS breakdown, s.as_of, s.step, s.id"
        " FROM score_snapshots s JOIN account_members m ON m.lead_key = s.lead_key"
        " WHERE s.product_line = :line AND s.as_of <= :t AND m.account_id IN (:ids)",
        {"line": product_line, "t": to_micros(as_of), "ids": list(account_ids)},
        {
            "lead_key": pl.Int64(),
            "score": pl.Float64(),
            "breakdown": pl.Utf8(),
            "as_of": pl.Int64(),
            "step": pl.Int64(),
            "id": pl.Int64(),
        },
    )
    last = snaps.sort("as_of", "step", "id").group_by("lead_key").last().select("lead_key", "score", "breakdown")
    return people.join(last, on="lead_key", how="left").sort("account_id", "lead_key")


def read_open_account_firings(engine: Engine) -> list[dict[str, Any]]:
    """Account firings still to carry out, with the account's name and owner, oldest first."""
    frame = read_frame(
        engine,
        "SELECT f.id, f.run_id, f.product_line, f.account_id, f.trigger, f.direction, f.action,"
        " CAST(f.params AS TEXT) AS params, f.score, f.score_before, f.band,"
        " CAST(f.qualifications AS TEXT) AS qualifications, CAST(f.members AS TEXT) AS members, f.fired_at,"
        " f.attempts, a.name, a.owner FROM account_firings f LEFT JOIN accounts a ON a.account_id = f.account_id"
        " WHERE f.status IN ('pending', 'retry') ORDER BY f.id",
        {},
        {
            "id": pl.Int64(),
            "run_id": pl.Utf8(),
            "product_line": pl.Utf8(),
            "account_id": pl.Utf8(),
            "trigger": pl.Utf8(),
            "direction": pl.Utf8(),
            "action": pl.Utf8(),
            "params": pl.Utf8(),
            "score": pl.Float64(),
            "score_before": pl.Float64(),
            "band": pl.Utf8(),
            "qualifications": pl.Utf8(),
            "members": pl.Utf8(),
            "fired_at": pl.Int64(),
            "attempts": pl.Int64(),
            "name": pl.Utf8(),
            "owner": pl.Utf8(),
        },
    )
    rows = frame.with_columns(pl.col("fired_at").cast(UTC_US)).to_dicts()
    for row in rows:
        for name in ("params", "qualifications", "members"):
            row[name] = json.loads(row[name]) if row[name] else None
    return rows


def read_account_history(engine: Engine, account_id: str, product_line: str | None = None) -> pl.DataFrame:
    """Every snapshot of one account (all lines, or one), oldest first."""
    params = {"id": account_id} | ({} if product_line is None else {"line": product_line})
    frame = read_frame(
        engine,
        "SELECT product_line, run_id, as_of, score, band, CAST(qualifications AS TEXT) AS qualifications, members,"
        " CAST(metrics AS TEXT) AS metrics, CAST(breakdown AS TEXT) AS breakdown FROM account_scores"
        f" WHERE account_id = :id{'' if product_line is None else ' AND product_line = :line'} ORDER BY as_of, id",
        params,
        {
            "product_line": pl.Utf8(),
            "run_id": pl.Utf8(),
            "as_of": pl.Int64(),
            "score": pl.Float64(),
            "band": pl.Utf8(),
            "qualifications": pl.Utf8(),
            "members": pl.Int64(),
            "metrics": pl.Utf8(),
            "breakdown": pl.Utf8(),
        },
    )
    return frame.with_columns(pl.col("as_of").cast(UTC_US))
