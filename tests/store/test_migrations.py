"""Alembic migrations: new stores at head, older stores upgraded, pre-migration stores adopted, data kept."""

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlmodel import SQLModel

from store.db import make_engine
from store.migrate import alembic_config, current_revision, head, revisions
from store.tables import to_micros
from tests.postgres import postgres_url, throwaway_schema

STAGE_TABLES = {
    "stage_updates",
    "stage_transitions",
    "qualification_milestones",
    "trigger_arms",
    "trigger_firings",
    "lead_tags",
}
T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@dataclass
class Blank:
    """An empty database: its URL and the connect_args that select it (a PostgreSQL schema)."""

    url: str
    connect_args: dict[str, Any]

    def raw_engine(self) -> Engine:
        """An engine that does not migrate (unlike make_engine)."""
        return create_engine(self.url, connect_args=self.connect_args)

    def make_engine(self) -> Engine:
        return make_engine(self.url, connect_args=self.connect_args) if self.connect_args else make_engine(self.url)


@pytest.fixture(params=["sqlite", "postgresql"])
def blank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blank]:
    if request.param == "sqlite":
        yield Blank(f"sqlite:///{tmp_path}/m.db", {})
        return
    url = postgres_url()
    with throwaway_schema(url, "m") as schema:
        yield Blank(url, {"options": f"-csearch_path={schema}"})


def _migrate_to(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def _insert_revision_1_data(engine: Engine) -> None:
    """Rows in the base schema's tables, written with the base schema's columns."""
    t = to_micros(T0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO leads (key, lead_id, email, email_opt_in, ads_opt_in, attributes, created_at) "
                "VALUES (1, 'L1', 'a@example.com', true, false, '{\"job_title\": \"VP Sales\"}', :t), "
                "(2, 'L2', NULL, false, false, '{}', :t)"
            ),
            {"t": t},
        )
        conn.execute(
            text(
                "INSERT INTO events (lead_key, occurred_at, event_id, type, product_line, machine, url, properties) "
                "VALUES (1, :t, 'e1', 'page_view', 'crm-suite', false, '/pricing', '{\"url\": \"/pricing\"}'), "
                "(2, :t2, 'e2', 'form_submit', NULL, false, NULL, '{}')"
            ),
            {"t": t, "t2": t + 1_000_000},
        )
        conn.execute(
            text(
                "INSERT INTO journeys (id, lead_key, product_line, stage, status, opened_at, score, band) "
                "VALUES (10, 1, 'crm-suite', 'discovery', 'active', :t, 25.5, 'warm')"
            ),
            {"t": t},
        )
        conn.execute(
            text(
                "INSERT INTO score_snapshots (journey_id, lead_key, product_line, stage, run_id, as_of, score, band, "
                "breakdown) VALUES (10, 1, 'crm-suite', 'discovery', 'r1', :t, 25.5, 'warm', "
                '\'[{"rule": "pricing page", "points": 25.5}]\')'
            ),
            {"t": t},
        )
        conn.execute(
            text("INSERT INTO runs (run_id, kind, status, as_of, stats) VALUES ('r1', 'score', 'completed', :t, '{}')"),
            {"t": t},
        )


def _assert_revision_1_data(engine: Engine) -> None:
    with engine.connect() as conn:
        leads = conn.execute(text("SELECT key, lead_id, email, attributes FROM leads ORDER BY key")).all()
        events = conn.execute(text("SELECT event_id, lead_key, occurred_at, url FROM events ORDER BY event_id")).all()
        journeys = conn.execute(text("SELECT id, lead_key, stage, score, band FROM journeys")).all()
        snapshots = conn.execute(text("SELECT journey_id, run_id, score, as_of FROM score_snapshots")).all()
        runs = conn.execute(text("SELECT run_id, status FROM runs")).all()
    assert [(k, i, e) for k, i, e, _ in leads] == [(1, "L1", "a@example.com"), (2, "L2", None)]
    attributes = leads[0][3]
    assert (attributes if isinstance(attributes, dict) else json.loads(attributes)) == {"job_title": "VP Sales"}
    t = to_micros(T0)
    assert [tuple(row) for row in events] == [("e1", 1, t, "/pricing"), ("e2", 2, t + 1_000_000, None)]
    assert [tuple(row) for row in journeys] == [(10, 1, "discovery", 25.5, "warm")]
    assert [tuple(row) for row in snapshots] == [(10, "r1", 25.5, t)]
    assert [tuple(row) for row in runs] == [("r1", "completed")]


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_revisions_are_the_base_schema_then_the_stage_tables_then_nurture_then_stage_history_then_run_safety() -> None:
    assert revisions() == [
        "0001",
        "0002",
        "0003",
        "0006",
        "0007",
        "0008",
        "0009",
        "0010",
        "0011",
        "0012",
        "0013",
        "0015",
        "0016",
        "0018",
        "0019",
        "0022",
        "0023",
        "0024",
        "0025",
        "0026",
        "0027",
    ]
    assert head() == revisions()[-1]


def test_firings_stored_before_run_safety_keep_distinct_crossings(blank: Blank) -> None:
    """Two runs that doubled a firing before 0007 keep both rows: their crossing is unknown (``-id``)."""
    raw = blank.raw_engine()
    _migrate_to(raw, "0006")
    t = to_micros(T0)
    with raw.begin() as conn:
        for firing_id, run in ((1, "r1"), (2, "r2")):
            conn.execute(
                text(
                    "INSERT INTO trigger_firings (id, run_id, journey_id, lead_key, product_line, trigger, step, "
                    "direction, action_index, action, params, stage, fired_at, status, attempts) VALUES "
                    "(:id, :run, 10, 1, 'crm', 'hot', 0, 'up', 0, 'webhook', '{}', 'discovery', :t, 'done', 1)"
                ),
                {"id": firing_id, "run": run, "t": t},
            )
    raw.dispose()
    engine = blank.make_engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, run_id, armed_at FROM trigger_firings ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, "r1", -1), (2, "r2", -2)]
        assert _tables(engine) >= {"run_locks"}
    engine.dispose()


def test_upgrade_from_revision_1_keeps_the_data(blank: Blank) -> None:
    raw = blank.raw_engine()
    _migrate_to(raw, "0001")
    assert _tables(raw) & STAGE_TABLES == set()
    _insert_revision_1_data(raw)
    raw.dispose()

    engine = blank.make_engine()
    with engine.connect() as conn:
        assert current_revision(conn) == head()
    assert _tables(engine) >= STAGE_TABLES
    _assert_revision_1_data(engine)
    # The new tables work alongside the old rows.
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO lead_tags (lead_key, tag, added_at, run_id) VALUES (1, 'vip', :t, 'r2')"),
            {"t": to_micros(T0)},
        )
    engine.dispose()


def test_a_pre_migration_database_is_adopted_then_upgraded(blank: Blank) -> None:
    """A store made by ``create_all`` of the base schema (no alembic_version) is stamped 0001, then upgraded."""
    raw = blank.raw_engine()
    _migrate_to(raw, "0001")
    _insert_revision_1_data(raw)
    with raw.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    raw.dispose()

    engine = blank.make_engine()
    with engine.connect() as conn:
        assert current_revision(conn) == head()
    assert _tables(engine) >= STAGE_TABLES
    _assert_revision_1_data(engine)
    engine.dispose()


def test_a_pre_migration_database_at_head_is_only_stamped(blank: Blank) -> None:
    raw = blank.raw_engine()
    SQLModel.metadata.create_all(raw)
    _insert_revision_1_data(raw)
    raw.dispose()

    engine = blank.make_engine()
    with engine.connect() as conn:
        assert current_revision(conn) == head()
    _assert_revision_1_data(engine)
    engine.dispose()


def test_a_database_matching_no_revision_is_refused(blank: Blank) -> None:
    raw = blank.raw_engine()
    with raw.begin() as conn:
        conn.execute(text("CREATE TABLE journeys (id INTEGER PRIMARY KEY)"))
    raw.dispose()
    with pytest.raises(RuntimeError, match=r"matches no revision \(missing \['events', 'ingest_rejects'"):
        blank.make_engine()


def test_the_models_and_the_migrations_agree(blank: Blank) -> None:
    """Fails when a table or column was added to the models without a revision: see README, "Migrations"."""
    engine = blank.make_engine()
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    engine.dispose()
    assert differences == [], (
        "SQLModel.metadata differs from the migrations' head: add a revision with "
        "`alembic revision --autogenerate` (README, Deployment → Migrations)"
    )


def test_processes_opening_a_new_sqlite_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """A service and a load started together on a new store: one migrates, the others wait for its write
    lock and find the store at head (without the lock, some failed on "table … already exists")."""
    opener = "import sys; from store.db import make_engine; make_engine(sys.argv[1]).dispose()"
    root = Path(__file__).resolve().parents[2]
    for round_ in range(6):
        url = f"sqlite:///{tmp_path}/new{round_}.db"
        openers = [
            subprocess.Popen([sys.executable, "-c", opener, url], cwd=root, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        failures = [error for opened in openers if (error := opened.communicate()[1]) and opened.returncode]
        assert failures == []
        engine = create_engine(url)
        with engine.connect() as conn:
            assert current_revision(conn) == head()
        engine.dispose()


def test_postgresql_counts_distinct_message_ids_as_a_share_of_the_events(engine: Engine) -> None:
    """0024: ``ANALYZE``'s sample guesses far too few distinct message ids; the share set instead makes
    the planner probe the index for the detector's look-ups of given ids."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL statistic")
    query = "SELECT attoptions FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'message_id'"
    with engine.connect() as conn:
        assert "n_distinct=-0.1" in conn.exec_driver_sql(query).scalar_one()


def test_postgresql_leaves_room_in_journeys_pages_for_hot_updates(engine: Engine) -> None:
    """0027: a journey's opening time moved back (no index holds it) is rewritten on its own page."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL storage parameter")
    with engine.connect() as conn:
        options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE oid = 'journeys'::regclass").scalar_one()
    assert options == ["fillfactor=80"]


def _page_size(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    engine.dispose()
    return size


def test_a_new_sqlite_store_has_16_kb_pages_and_an_older_store_keeps_its_own(tmp_path: Path) -> None:
    """The page size is set before a store's first write; a store made with SQLite's 4 KB opens, migrates
    and takes rows with them (a page size cannot change once the file has pages)."""
    make_engine(f"sqlite:///{tmp_path}/new.db").dispose()
    assert _page_size(f"sqlite:///{tmp_path}/new.db") == 16_384
    blank = sqlite3.connect(tmp_path / "old.db")
    blank.execute("PRAGMA page_size=4096")
    blank.execute("VACUUM")  # an empty file with 4 KB pages, as SQLite made stores before
    blank.close()
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    with engine.begin() as conn:
        row = "INSERT INTO leads (lead_id, email_opt_in, ads_opt_in, attributes) VALUES ('L1', 0, 0, '{}')"
        conn.execute(text(row))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT lead_id FROM leads")).scalars().all() == ["L1"]
        assert current_revision(conn) == head()
    engine.dispose()
    assert _page_size(f"sqlite:///{tmp_path}/old.db") == 4_096
