"""The one throw-away PostgreSQL schema: every PostgreSQL fixture (and the audience benchmark) runs in
its own schema of the configured database, so concurrent runs never see each other's tables."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ENV = "LEADSCORE_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The configured test database, or skip the test when there is none."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test")
    return url


@contextmanager
def throwaway_schema(url: str, prefix: str) -> Iterator[str]:
    """A fresh schema named ``PREFIX_<random>`` in the database at ``url``, dropped with all it holds
    when the block ends (release connections to it inside the block)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def search_path_url(url: str, schema: str) -> str:
    """``url`` with ``schema`` as the connections' search path (for code that takes URLs, not engines)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
