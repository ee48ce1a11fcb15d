"""The run lock of a portfolio on a store, taken by every flow that writes (``store.runlock``)."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from stages.portfolio import Portfolio
from store.runlock import run_lock


@contextmanager
def writing(engine: Engine, portfolio: Portfolio, wait_s: float = 0.0) -> Iterator[str]:
    """Hold the portfolio's run lock, waiting ``wait_s`` at most (``LEADSCORE_RUN_LOCK_WAIT``); yields its scope."""
    scope = portfolio.spec.name
    with run_lock(engine, scope, wait_s=wait_s):
        yield scope
