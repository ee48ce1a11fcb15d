"""Erasure's map of the store, its tombstones, and what a re-ingest of an erased person does (SQLite and PostgreSQL)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, String, Table, select, text
from sqlmodel import SQLModel

from flows.erasure import read_request
from nurture.audiences import hashed_line
from stages.spec import BUILTIN_EVENT_TYPES
from store.account_tables import AccountFiring
from store.erasure import UnlistedTables, erase
from store.ingest import ingest_events, ingest_leads
from store.lead_data import HELD, Held, unlisted
from store.merges import Pair, merge
from store.tables import Lead
from store.tombstones import ERASED_REASON, Erased, ErasureKeyError, TombstoneKey, load_erased
from tests.store.samples import write

KEY = TombstoneKey("s" * 40)
AT = datetime(2026, 12, 1, tzinfo=UTC)
LEADS = (
    "lead_id,email,first_name,phone,email_opt_in,ads_opt_in\n"
    "A1,Ann@Example.com,Ann,+33612345678,yes,yes\nB2,bob@example.com,Bob,,yes,no\n"
)
EVENTS = (
    "event_id,lead_id,type,occurred_at\ne1,A1,page_view,2026-11-01T10:00:00Z\ne2,B2,page_view,2026-11-01T10:00:00Z\n"
)
LEAD_COLUMNS = {"lead_key", "journey_id", "enrolment_id"}


# Tables that hold lead data without a lead column, and one that has a lead column but no lead data.
HELD_OTHERWISE = {"leads", "ingest_rejects", "anonymous_events", "lead_aliases", "account_firings"}
COUNTERS_ONLY = {"event_generations"}


def test_every_table_says_how_it_holds_lead_data() -> None:
    assert unlisted() == []
    for name, table in SQLModel.metadata.tables.items():
        keyed = bool(LEAD_COLUMNS & set(table.c.keys())) and name not in COUNTERS_ONLY
        assert (HELD[name] is Held.NONE) == (not keyed and name not in HELD_OTHERWISE), name


def test_a_merged_person_is_erased_whole_with_their_visits_and_their_names_in_account_alerts(
    engine: Engine, tmp_path: Path
) -> None:
    """Merged leads are one person: erasing either erases both, the visitor linked to them, the merge
    itself, and their entry in an account alert (the alert and the other member stay)."""
    ingest_leads(engine, write(tmp_path, "leads.csv", LEADS + "A9,ann.work@example.com,Ann,,yes,no\n"))
    visits = (
        "event_id,lead_id,anonymous_id,type,occurred_at\n"
        "v1,,anon-1,page_view,2026-11-01T09:00:00Z\nv2,A9,anon-1,page_view,2026-11-02T09:00:00Z\n"
    )
    ingest_events(engine, write(tmp_path, "visits.csv", visits), event_types=set(BUILTIN_EVENT_TYPES))
    merge(engine, [Pair("A1", "A9", "m.csv:2")], at=AT, source="test")
    firing = {
        "run_id": "r", "product_line": "pl", "account_id": "acme", "trigger": "t", "direction": "up",
        "action": "notify_owner", "params": {}, "qualifications": [], "fired_at": AT,
        "members": [{"lead_id": "A9", "email": "ann.work@example.com"}, {"lead_id": "B2", "email": "bob@example.com"}],
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(AccountFiring.__table__.insert().values(**firing))  # type: ignore[attr-defined]

    outcome = erase(engine, ["A1"], key=KEY, actor="t", at=AT, rewrite_line=hashed_line)

    assert outcome.erased == ["A1"] and outcome.tombstones == 4  # two lead ids, two emails
    assert outcome.rows == {
        "leads": 2, "events": 1, "visitor_links": 1, "anonymous_events": 1, "lead_aliases": 1, "account_firings": 1,
    }  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(text("SELECT lead_id FROM leads")).scalars().all() == ["B2"]
        assert conn.execute(text("SELECT count(*) FROM anonymous_events")).scalar() == 0
        members = conn.execute(select(AccountFiring.__table__.c.members)).scalar_one()  # type: ignore[attr-defined]
    assert members == [{"lead_id": "B2", "email": "bob@example.com"}]


@pytest.fixture
def stray_table() -> Iterator[Table]:
    table = Table("lead_notes", SQLModel.metadata, Column("lead_key", Integer), Column("note", String))
    yield table
    SQLModel.metadata.remove(table)


def test_a_new_table_nobody_mapped_stops_erasure(stray_table: Table, tmp_path: Path) -> None:
    from store.db import make_engine

    assert unlisted() == ["lead_notes"]
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    with pytest.raises(UnlistedTables, match=r"\['lead_notes'\] are not in store.lead_data.HELD"):
        erase(engine, ["A1"], key=KEY, actor="t", at=AT, rewrite_line=hashed_line)


def load(engine: Engine, tmp_path: Path) -> None:
    ingest_leads(engine, write(tmp_path, "leads.csv", LEADS))
    ingest_events(engine, write(tmp_path, "events.csv", EVENTS), event_types=set(BUILTIN_EVENT_TYPES))


def test_a_re_ingest_is_refused_without_keeping_the_row(engine: Engine, tmp_path: Path) -> None:
    load(engine, tmp_path)
    outcome = erase(
        engine, ["ann@EXAMPLE.com", "nobody@example.com"], key=KEY, actor="t", at=AT, rewrite_line=hashed_line
    )
    assert (outcome.erased, outcome.not_found, outcome.tombstones) == (["ann@EXAMPLE.com"], ["nobody@example.com"], 2)
    assert outcome.rows == {"leads": 1, "events": 1}
    erased = load_erased(engine, KEY.secret)
    assert erased is not None
    leads = ingest_leads(
        engine, write(tmp_path, "again.csv", LEADS + "C3, ANN@example.com ,Ann,,yes,yes\n"), erased=erased
    )
    assert [(r.line, r.field, r.reason, r.raw) for r in leads.rejects] == [
        (2, "lead_id", ERASED_REASON, {}),
        (4, "email", ERASED_REASON, {}),
    ]
    for row_by_row in (False, True):
        events = ingest_events(
            engine, write(tmp_path, "e.csv", EVENTS), event_types=set(BUILTIN_EVENT_TYPES), erased=erased,
            row_by_row=row_by_row,
        )  # fmt: skip
        assert [(r.line, r.field, r.reason, r.raw) for r in events.rejects] == [(2, "lead_id", ERASED_REASON, {})]
    with engine.connect() as conn:
        assert conn.execute(select(Lead.lead_id).order_by(Lead.lead_id)).scalars().all() == ["B2"]  # type: ignore[arg-type]
        raws = [str(raw) for (raw,) in conn.execute(text("SELECT raw FROM ingest_rejects"))]
    assert raws and all("ann" not in raw.lower() for raw in raws)
    again = erase(engine, ["A1", "ann@example.com"], key=KEY, actor="t", at=AT, rewrite_line=hashed_line)
    assert (again.erased, again.already_erased, again.rows) == ([], ["A1", "ann@example.com"], {})


def test_suppress_keeps_a_returning_person_without_consent(engine: Engine, tmp_path: Path) -> None:
    load(engine, tmp_path)
    erase(engine, ["A1"], key=KEY, actor="t", at=AT, rewrite_line=hashed_line)
    erased = load_erased(engine, KEY.secret, "suppress")
    report = ingest_leads(engine, write(tmp_path, "again.csv", LEADS), erased=erased)
    assert (report.inserted, report.rejected) == (1, 0)
    with engine.connect() as conn:
        row = conn.execute(select(Lead).where(Lead.lead_id == "A1")).one()  # type: ignore[arg-type]
    assert (row.email_opt_in, row.ads_opt_in, row.unsubscribed_at is not None) == (False, False, True)


def test_tombstones_need_the_key_they_were_made_with(engine: Engine, tmp_path: Path) -> None:
    assert load_erased(engine, None) is None  # nobody erased: no key needed
    load(engine, tmp_path)
    erase(engine, ["B2"], key=KEY, actor="t", at=AT, rewrite_line=hashed_line)
    with pytest.raises(ErasureKeyError, match="ingestion needs the erasure key"):
        load_erased(engine, None)
    with pytest.raises(ErasureKeyError, match="differs from the one the stored tombstones were made with"):
        load_erased(engine, "t" * 40)
    with pytest.raises(ErasureKeyError, match="fewer than 32"):
        TombstoneKey("short")
    assert isinstance(load_erased(engine, KEY.secret), Erased)


def test_a_removal_line_keeps_only_the_hashed_cells() -> None:
    h = "a" * 64
    assert hashed_line("meta", f"{h},{h},{h},{h},{h},{h},{h},{h},LD-1") == f"{h},{h},{h},{h},{h},{h},{h},{h},"
    assert hashed_line("google", f"{h},,{h},{h},FR,75001") == f"{h},,{h},{h},,"
    assert hashed_line("linkedin", f'{h},Ann,Lee,"CTO, Acme",Acme,fr,') == f"{h},,,,,,"


def test_a_request_file_refuses_bad_lines_by_number(tmp_path: Path) -> None:
    plain = write(tmp_path, "ids.txt", "# requests of December\nA1\n\nann@example.com\nnot an id\nx@@y\n")
    request = read_request(plain)
    assert request.identifiers == ["A1", "ann@example.com"]
    assert request.refused == [
        f"{plain} line 5: 'not an id' is neither a lead id (no spaces) nor an email",
        f"{plain} line 6: 'x@@y' is not an email address",
    ]
    table = read_request(write(tmp_path, "r.csv", "email,ticket\nAnn@Example.com,7\n,8\n"))
    assert table.identifiers == ["ann@example.com"]
    assert table.refused == [f"{tmp_path / 'r.csv'} line 3, email '': empty email"]
