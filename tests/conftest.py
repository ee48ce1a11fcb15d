"""Shared fixtures: a fresh database per test, on SQLite and (when configured) on PostgreSQL."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from store.db import make_engine
from tests.postgres import postgres_url, throwaway_schema

# pytest-xdist's workers inherit a COLUMNS that Rich would freeze into the CLI's console when flows.cli is
# first imported; the CLI tests give each call its own width (CliRunner's env), as a user's terminal does.
os.environ.pop("COLUMNS", None)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A store with the schema created: a SQLite file in tmp_path, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        sqlite_engine = make_engine(f"sqlite:///{tmp_path}/t.db")
        yield sqlite_engine
        sqlite_engine.dispose()
        return
    url = postgres_url()
    with throwaway_schema(url, "t") as schema:
        pg_engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            yield pg_engine
        finally:
            pg_engine.dispose()
