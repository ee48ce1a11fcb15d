"""The service's hot read: a lead's current scores, one prepared query on a connection the worker keeps.

A look-up answers a website's page view, so its cost is the request's: SQLAlchemy's execution layer and
a pool checkout cost more than the indexed read itself. ``ScoreLookup`` keeps one DBAPI connection per
process (read-only on SQLite, autocommit on PostgreSQL, so it never holds a snapshot or a lock open),
runs one statement that the driver prepares once, and is called straight from the event loop: an
indexed read of a few rows is shorter than a hop to a thread. Writes never go through it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from store.tables import from_micros

# The loop waits for a look-up: a store that stalls it (a lock held by a migration) fails it after this long.
READ_TIMEOUT = 2.0  # seconds

# Each journey of the lead (none: a row of NULLs) with its latest snapshot's time, run and breakdown.
_SQL = (
    "SELECT l.key, j.id, j.product_line, j.stage, j.status, j.score, j.band, j.qualification, j.stage_entered_at, "
    "s.as_of, s.run_id, CAST(s.breakdown AS TEXT) FROM leads l "
    "LEFT JOIN journeys j ON j.lead_key = l.key "
    "LEFT JOIN score_snapshots s ON s.id = (SELECT t.id FROM score_snapshots t WHERE t.journey_id = j.id "
    "ORDER BY t.as_of DESC, t.id DESC LIMIT 1) "
    "WHERE l.lead_id = {marker} ORDER BY j.product_line"
)


class ScoreLookup:
    """``scores(lead_id)``: each journey as the latest run left it; opened at the first call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Any = None
        self.lock = threading.Lock()  # the loop calls it; a thread (the content route's writer) may too
        self.sql = _SQL.format(marker="?" if engine.dialect.name == "sqlite" else "%s")

    def _connect(self) -> Any:
        url = self.engine.url
        if self.engine.dialect.name == "sqlite":
            path = Path(url.database or "").absolute().as_uri()
            return sqlite3.connect(f"{path}?mode=ro", uri=True, check_same_thread=False, timeout=READ_TIMEOUT)
        import psycopg

        args, params = self.engine.dialect.create_connect_args(url)
        conn = psycopg.connect(*args, **params, autocommit=True)
        conn.execute(f"SET statement_timeout = {int(READ_TIMEOUT * 1000)}")
        return conn

    def scores(self, lead_id: str, product_line: str | None = None) -> list[dict[str, Any]] | None:
        """The lead's journeys (only ``product_line``'s when given), ordered by product line; None for an
        unknown lead. A failed connection is dropped and the error raised: the next call reconnects."""
        with self.lock:
            if self.conn is None:
                self.conn = self._connect()
            try:
                cursor = self.conn.execute(self.sql, (lead_id,))
                rows = cursor.fetchall()
            except Exception:
                self.close_unlocked()
                raise
        if not rows:
            return None
        return [
            {
                "product_line": line,
                "stage": stage,
                "status": status,
                "score": score,
                "band": band,
                "qualification": qualification,
                "stage_entered_at": None if entered is None else from_micros(entered),
                "scored_at": None if as_of is None else from_micros(as_of),
                "run_id": run_id,
                "breakdown": orjson.loads(breakdown) if breakdown else [],
            }
            for _, journey, line, stage, status, score, band, qualification, entered, as_of, run_id, breakdown in rows
            if journey is not None and product_line in (None, line)
        ]

    def close_unlocked(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):  # a broken connection may fail to close too: gone either way
                conn.close()

    def close(self) -> None:
        with self.lock:
            self.close_unlocked()
