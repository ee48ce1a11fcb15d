"""One SQLAlchemy engine per database URL and process, shared by the tasks of a run."""

from functools import lru_cache

from sqlalchemy import Engine

from store.db import make_engine


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return make_engine(url)
