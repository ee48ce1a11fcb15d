"""Shared fixtures: a fresh database per test, on SQLite and (when configured) on PostgreSQL."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from store.db import make_engine

POSTGRES_ENV = "LEADSCORE_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A store with the schema created: a SQLite file in tmp_path, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        sqlite_engine = make_engine(f"sqlite:///{tmp_path}/t.db")
        yield sqlite_engine
        sqlite_engine.dispose()
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    pg_engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield pg_engine
    finally:
        pg_engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
