"""Audience persistence: explicit members, what each export uploaded, and the export log.

* ``audience_members``: leads put in an audience by nurture track steps. Removal keeps the row (with
  ``removed_at``) so membership can be read as of any time; adding again reopens it.
* ``audience_export_rows``: per (audience, platform), the exact CSV line last uploaded for each lead.
  The next export diffs against it, so adds and removes are exact, and a removal can still be written
  after the lead changed, withdrew consent or was erased. Only the differences are written per export.
* ``audience_exports``: one row per export (run, time, counts, files).

Reads go through ``store.reader.read_frame`` (Arrow, no Python object per row); writes are bulk.
"""

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Column, Engine, Integer, String, and_, delete, select, update
from sqlmodel import Field, Session, SQLModel

from store.bulk import insert_ignore, upsert
from store.reader import read_frame
from store.shapes import AUDIENCE_LEAD_COLUMNS
from store.tables import _time, to_micros, utcnow

CHUNK = 10_000  # keys per IN (…) list: well under SQLite's and PostgreSQL's parameter limits


class AudienceMember(SQLModel, table=True):
    """A lead put in an audience by a track step; ``removed_at`` set when a step or an exit took it out."""

    __tablename__ = "audience_members"

    audience: str = Field(sa_column=Column(String, primary_key=True))
    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    added_at: datetime = _time(nullable=False)
    added_run_id: str
    removed_at: datetime | None = _time()
    removed_run_id: str | None = None


class AudienceExport(SQLModel, table=True):
    """One export of one audience to one platform: counts and the files written."""

    __tablename__ = "audience_exports"

    export_id: str = Field(primary_key=True)
    audience: str = Field(index=True)
    platform: str
    run_id: str
    as_of: datetime = _time(nullable=False)
    created_at: datetime = _time(nullable=False)
    previous_export_id: str | None = None
    members: int  # members in the audience (explicit and by criteria), before consent
    excluded_consent: int  # members left out: no ads consent, unsubscribed
    unmatchable: int  # consenting members with nothing the platform can match on
    full_count: int
    added_count: int
    removed_count: int
    full_path: str
    adds_path: str
    removes_path: str


class AudienceExportRow(SQLModel, table=True):
    """The line last uploaded for a lead to one platform's audience, and the export that uploaded it."""

    __tablename__ = "audience_export_rows"

    audience: str = Field(sa_column=Column(String, primary_key=True))
    platform: str = Field(sa_column=Column(String, primary_key=True))
    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    line: str
    export_id: str


class AudiencePhone(SQLModel, table=True):
    """A lead's phone as last parsed for an export (E.164, or null when unusable): parsing is the slow part.

    Keyed by lead: erasing a lead must delete its row here too.
    """

    __tablename__ = "audience_phones"

    lead_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    phone: str
    region: str | None = None
    e164: str | None = None


MEMBER_TABLE = AudienceMember.__table__  # type: ignore[attr-defined]
EXPORT_TABLE = AudienceExport.__table__  # type: ignore[attr-defined]
ROW_TABLE = AudienceExportRow.__table__  # type: ignore[attr-defined]
PHONE_TABLE = AudiencePhone.__table__  # type: ignore[attr-defined]


def _chunks(keys: Sequence[int]) -> Iterator[list[int]]:
    unique = sorted({int(key) for key in keys})
    for start in range(0, len(unique), CHUNK):
        yield unique[start : start + CHUNK]


def add_members(engine: Engine, audience: str, lead_keys: list[int], *, run_id: str, as_of: datetime) -> int:
    """Put leads in an audience; returns how many were not members yet (a repeat adds nobody)."""
    rows = [
        {
            "audience": audience,
            "lead_key": key,
            "added_at": as_of,
            "added_run_id": run_id,
            "removed_at": None,
            "removed_run_id": None,
        }
        for chunk in _chunks(lead_keys)
        for key in chunk
    ]
    with engine.begin() as conn:
        # Only a missing or removed membership changes: ``removed_at`` is the one column compared.
        return upsert(
            conn,
            MEMBER_TABLE,
            rows,
            key_cols=["audience", "lead_key"],
            update_cols=["added_at", "added_run_id", "removed_at", "removed_run_id"],
            compare_cols=["removed_at"],
        )


def remove_members(engine: Engine, audience: str, lead_keys: list[int], *, run_id: str, as_of: datetime) -> int:
    """Take leads out of an audience; returns how many were members (a repeat removes nobody)."""
    removed = 0
    with engine.begin() as conn:
        for chunk in _chunks(lead_keys):
            stmt = (
                update(MEMBER_TABLE)
                .where(
                    and_(
                        MEMBER_TABLE.c.audience == audience,
                        MEMBER_TABLE.c.removed_at.is_(None),
                        MEMBER_TABLE.c.lead_key.in_(chunk),
                    )
                )
                .values(removed_at=as_of, removed_run_id=run_id)
            )
            removed += int(conn.execute(stmt).rowcount)
    return removed


def member_keys(engine: Engine, audience: str, as_of: datetime) -> list[int]:
    """Explicit members of an audience as of a time (added at or before it, not removed by then)."""
    frame = read_frame(
        engine,
        "SELECT lead_key FROM audience_members WHERE audience = :audience AND added_at <= :t"
        " AND (removed_at IS NULL OR removed_at > :t) ORDER BY lead_key",
        {"audience": audience, "t": to_micros(as_of)},
        {"lead_key": pl.Int64()},
    )
    return frame["lead_key"].to_list()


def _criteria_sql(where: dict[str, Any] | None, params: dict[str, Any]) -> str | None:
    """``SELECT lead_key FROM journeys WHERE …`` for criteria-based membership (None without criteria)."""
    if where is None:
        return None
    clauses = ["product_line = :w_line"]
    params["w_line"] = where["product_line"]
    for key, column in (("stages", "stage"), ("bands", "band"), ("statuses", "status")):
        if where.get(key) is not None:
            clauses.append(f"{column} IN (:w_{key})")
            params[f"w_{key}"] = list(where[key])
    if where.get("score_below") is not None:
        clauses.append("score < :w_below")
        params["w_below"] = float(where["score_below"])
    if where.get("score_at_least") is not None:
        clauses.append("score >= :w_at_least")
        params["w_at_least"] = float(where["score_at_least"])
    return "SELECT lead_key FROM journeys WHERE " + " AND ".join(clauses)


def _accounts_sql(accounts: dict[str, Any] | None, params: dict[str, Any]) -> str | None:
    """``SELECT lead_key …``: the members of the accounts whose last snapshot at or before ``:t`` is in one of
    the bands (or holds one of the qualifications), for account-based membership (None without it)."""
    if accounts is None:
        return None
    params["a_line"] = accounts["product_line"]
    last = (
        "SELECT s.account_id, s.band, CAST(s.qualifications AS TEXT) AS q FROM account_scores s"
        " WHERE s.product_line = :a_line AND s.id = (SELECT MAX(x.id) FROM account_scores x"
        " WHERE x.product_line = s.product_line AND x.account_id = s.account_id AND x.as_of <= :t)"
    )
    tests = []
    if accounts.get("bands") is not None:
        tests.append("a.band IN (:a_bands)")
        params["a_bands"] = list(accounts["bands"])
    for index, name in enumerate(accounts.get("qualifications") or []):
        tests.append(f"a.q LIKE :a_q{index}")
        params[f"a_q{index}"] = "%" + json.dumps(name) + "%"
    return (
        f"SELECT m.lead_key FROM account_members m JOIN ({last}) a ON a.account_id = m.account_id"
        f" WHERE {' OR '.join(tests)}"
    )


def read_audience_leads(
    engine: Engine,
    audience: str,
    as_of: datetime,
    where: dict[str, Any] | None,
    accounts: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """The audience's members with their contact fields and consent: explicit members ∪ matching journeys
    ∪ members of matching accounts.

    Leads that were erased are gone from ``leads`` and so from here. ``consented`` is false for a lead
    without ads consent or that unsubscribed (at any time: consent withdrawn is never replayed away).
    """
    params: dict[str, Any] = {"audience": audience, "t": to_micros(as_of)}
    members = (
        "SELECT lead_key FROM audience_members WHERE audience = :audience AND added_at <= :t"
        " AND (removed_at IS NULL OR removed_at > :t)"
    )
    for criteria in (_criteria_sql(where, params), _accounts_sql(accounts, params)):
        if criteria is not None:
            members += " UNION " + criteria
    sql = (
        f"SELECT l.key AS lead_key, {', '.join(f'l.{name}' for name in AUDIENCE_LEAD_COLUMNS)},"
        " CAST(l.attributes AS TEXT) AS attributes,"
        " CASE WHEN l.ads_opt_in AND l.unsubscribed_at IS NULL THEN 1 ELSE 0 END AS consented,"
        " p.phone AS cached_phone, p.region AS cached_region, p.e164 AS cached_e164"
        " FROM leads l LEFT JOIN audience_phones p ON p.lead_key = l.key"
        f" WHERE l.key IN ({members}) ORDER BY l.key"
    )
    schema = {
        "lead_key": pl.Int64(),
        **{name: pl.Utf8() for name in AUDIENCE_LEAD_COLUMNS},
        "attributes": pl.Utf8(),
        "consented": pl.Boolean(),
        "cached_phone": pl.Utf8(),
        "cached_region": pl.Utf8(),
        "cached_e164": pl.Utf8(),
    }
    frame = read_frame(engine, sql, params, schema)
    job_title = pl.col("attributes").str.json_path_match("$.job_title")
    return frame.with_columns(job_title.alias("job_title")).drop("attributes")


def remember_phones(engine: Engine, parsed: pl.DataFrame) -> int:
    """Store freshly parsed phones (``lead_key, phone, region, e164``) for the next exports."""
    # In key order: two exports of one audience (say Meta and Google, in parallel) lock rows in the same order.
    rows = parsed.select("lead_key", "phone", "region", "e164").sort("lead_key").to_dicts()
    with engine.begin() as conn:
        return upsert(conn, PHONE_TABLE, rows, key_cols=["lead_key"], update_cols=["phone", "region", "e164"])


def read_unparsed_phones(engine: Engine) -> pl.DataFrame:
    """``lead_key, phone, country`` of the leads whose current phone has not been parsed yet."""
    return read_frame(
        engine,
        "SELECT l.key AS lead_key, l.phone, l.country FROM leads l LEFT JOIN audience_phones p ON p.lead_key = l.key"
        " WHERE l.phone IS NOT NULL AND (p.lead_key IS NULL OR p.phone <> l.phone) ORDER BY l.key",
        {},
        {"lead_key": pl.Int64(), "phone": pl.Utf8(), "country": pl.Utf8()},
    )


def read_uploaded(engine: Engine, audience: str, platform: str) -> pl.DataFrame:
    """``lead_key`` and ``line`` as last uploaded to the platform (empty before the first export)."""
    return read_frame(
        engine,
        "SELECT lead_key, line FROM audience_export_rows WHERE audience = :audience AND platform = :platform",
        {"audience": audience, "platform": platform},
        {"lead_key": pl.Int64(), "line": pl.Utf8()},
    )


def last_export(engine: Engine, audience: str, platform: str) -> AudienceExport | None:
    with Session(engine) as session:
        stmt = (
            select(AudienceExport)
            .where(AudienceExport.audience == audience, AudienceExport.platform == platform)
            .order_by(AudienceExport.created_at.desc(), AudienceExport.export_id.desc())  # type: ignore[attr-defined]
            .limit(1)
        )
        return session.execute(stmt).scalars().first()


def record_export(engine: Engine, export: dict[str, Any], adds: pl.DataFrame, removes: pl.DataFrame) -> None:
    """In one transaction: log the export and move the uploaded state by its adds and removes.

    A crash before the commit leaves the previous state, so the next export diffs against what was
    really recorded; files written before the crash are simply superseded.
    """
    audience, platform, export_id = export["audience"], export["platform"], export["export_id"]
    rows = [
        {"audience": audience, "platform": platform, "lead_key": key, "line": line, "export_id": export_id}
        for key, line in adds.select("lead_key", "line").iter_rows()
    ]
    with engine.begin() as conn:
        conn.execute(EXPORT_TABLE.insert().values(created_at=utcnow(), **export))
        # A changed lead is in both: its old line goes, its new line comes.
        for chunk in _chunks(removes["lead_key"].to_list()):
            conn.execute(
                delete(ROW_TABLE).where(
                    and_(
                        ROW_TABLE.c.audience == audience,
                        ROW_TABLE.c.platform == platform,
                        ROW_TABLE.c.lead_key.in_(chunk),
                    )
                )
            )
        insert_ignore(conn, ROW_TABLE, rows)


def exports(engine: Engine, audience: str | None = None, platform: str | None = None) -> list[AudienceExport]:
    """The export log, oldest first."""
    with Session(engine) as session:
        stmt = select(AudienceExport)
        if audience is not None:
            stmt = stmt.where(AudienceExport.audience == audience)
        if platform is not None:
            stmt = stmt.where(AudienceExport.platform == platform)
        stmt = stmt.order_by(AudienceExport.created_at, AudienceExport.export_id)
        return list(session.execute(stmt).scalars())
