"""The console's search indexes on leads (``lower(field)``, ``store.console_tables``): left out of a first
bulk load of leads and built once after it.

Each lead of a load adds an entry at a random place in each of the four, which cost a first load of 1M demo
leads more than the rest of its inserts (PostgreSQL's ``COPY``: 15.2 s with them against 4.2 without, and
3.1 s to build them after; SQLite: 16.5 CPU s against 7.1, and 4.1 after). A load killed in between leaves
them dropped, and searches slow but right, until the next load of leads builds them first.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, Index, text
from sqlalchemy.schema import CreateIndex, DropIndex

from store.console_tables import LEAD_SEARCH_INDEXES

BULK_BYTES = 16 << 20
"""A file at least this large (≈ 75,000 demo leads) into an empty leads table is a first bulk load."""


@contextmanager
def search_indexes_deferred(engine: Engine, source: Path | None) -> Iterator[bool]:
    """Around a load of leads from ``source`` (None: records, never deferred): drop the search indexes when
    the file is a first bulk load, build them again afterwards, even when the load fails; yields whether
    they were dropped. A file's load builds any that a killed load left dropped first (records, the service's
    batches, need no index to be stored and skip the catalog read)."""
    if source is None:
        yield False
        return
    build_search_indexes(engine)
    if source.stat().st_size < BULK_BYTES or not _no_leads(engine):
        yield False
        return
    with engine.begin() as conn:
        for index in LEAD_SEARCH_INDEXES:
            conn.execute(DropIndex(index, if_exists=True))
    try:
        yield True
    finally:
        build_search_indexes(engine)


def build_search_indexes(engine: Engine) -> None:
    """Build the search indexes that do not exist (none to build: a catalog read, no lock on ``leads``)."""
    with engine.begin() as conn:
        for index in _missing(conn):
            conn.execute(CreateIndex(index, if_not_exists=True))  # another load may have built it meanwhile


def missing_search_indexes(engine: Engine) -> list[str]:
    """The names of the search indexes the store lacks (read from its catalog: SQLAlchemy's inspector does
    not list SQLite's indexes on expressions)."""
    with engine.connect() as conn:
        return [str(index.name) for index in _missing(conn)]


def _missing(conn: Connection) -> list[Index]:
    if conn.dialect.name == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'leads'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'leads'"
    present = set(conn.execute(text(sql)).scalars())
    return [index for index in LEAD_SEARCH_INDEXES if index.name not in present]


def _no_leads(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT NOT EXISTS (SELECT 1 FROM leads)")).scalar_one())
