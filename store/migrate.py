"""Schema migrations (Alembic, ``store/migrations``): every database is brought to the head revision.

``make_engine`` calls :func:`upgrade`, which handles the three cases a store can be in: new (built by
running every revision), behind (upgraded), or made before migrations existed by ``create_all``
(tables but no ``alembic_version``: stamped with the revision its tables match, then upgraded), so an
existing store keeps its data.
"""

from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlmodel.sql.sqltypes import AutoString

from store.tables import EpochMicros

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works: it only serialises concurrent migrators of one PostgreSQL database.
_PG_LOCK_KEY = 7_461_533_001


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config in code (no ini file needed), optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision."""
    revision = _scripts().get_current_head()
    assert revision is not None, f"no revisions in {MIGRATIONS_DIR}"
    return revision


def revisions() -> list[str]:
    """Every revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render leadscore's column types as plain SQLAlchemy types, so revisions never import the models
    (a revision must keep describing the schema of its day when the models change)."""
    if type_ == "type" and isinstance(obj, EpochMicros):
        return "sa.BigInteger()"
    if type_ == "type" and isinstance(obj, AutoString):
        return "sa.String()" if obj.length is None else f"sa.String(length={obj.length})"
    return False


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the head revision (a no-op when it is there)."""
    target = head()
    with engine.connect() as conn:
        if current_revision(conn) == target:
            return
    with engine.begin() as conn:  # two processes opening a new store: one migrates, the other waits
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        elif conn.dialect.name == "sqlite":  # the write lock first: pysqlite runs DDL outside any transaction
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        current = current_revision(conn)
        if current == target:
            return
        config = alembic_config(conn)
        if current is None:
            existing = set(inspect(conn).get_table_names())
            if existing & tables_at()[target]:
                command.stamp(config, adoptable_revision(existing))
        command.upgrade(config, "head")


@lru_cache
def tables_at() -> dict[str, frozenset[str]]:
    """The tables each revision's schema has, found by running the revisions on a scratch SQLite database."""
    scratch = create_engine("sqlite://")
    found: dict[str, frozenset[str]] = {}
    with scratch.begin() as conn:
        for revision in revisions():
            command.upgrade(alembic_config(conn), revision)
            found[revision] = frozenset(inspect(conn).get_table_names()) - {"alembic_version"}
    scratch.dispose()
    return found


def adoptable_revision(existing: set[str]) -> str:
    """The newest revision whose tables all exist: the schema a pre-migration ``create_all`` made."""
    matching = [revision for revision, tables in tables_at().items() if tables <= existing]
    if not matching:
        first = tables_at()[revisions()[0]]
        raise RuntimeError(
            "the database has leadscore tables but no alembic_version and matches no revision "
            f"(missing {sorted(first - existing)}); repair it or stamp it by hand with `alembic stamp REV`"
        )
    return matching[-1]
