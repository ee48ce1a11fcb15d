"""A first run's score indexes: dropped while its partitions write every journey's score, then built again."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, String, cast, inspect, select, text, update

from store.tables import Run

DEFER_SHARE = 0.5
"""A run defers the score indexes when at least this share of the journeys was never written by a run (a first run)."""
DEFER_MIN_JOURNEYS = 20_000
"""…and there are at least this many: below, keeping the indexes up to date costs less than rebuilding them."""
_DEFERRED = "deferred_indexes"  # the run's stats key that holds the dropped indexes' definitions


class DeferredIndexes:
    """The score indexes a run dropped (true when it deferred them; ``definitions`` None when it did not), to be
    built again once its writes are done.

    ``build_behind()`` starts that build in a thread of its own, so that the run's remaining steps (its
    actions: alerts rendered and sent, requests written) go on meanwhile; on SQLite the build runs in the
    library with the GIL released, and a write of those steps waits for it as for any other writer. The
    context that made it waits for the build (or runs it, when it was not started) before leaving.
    """

    def __init__(self, engine: Engine, run_id: str, definitions: dict[str, str] | None) -> None:
        self.engine, self.run_id, self.definitions = engine, run_id, definitions
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __bool__(self) -> bool:
        return self.definitions is not None

    def build_behind(self) -> None:
        """Start building the dropped indexes in a background thread (once; nothing to do when none was deferred)."""
        if self.definitions is not None and self._thread is None:
            self._thread = threading.Thread(target=self._build, name="score-indexes")
            self._thread.start()

    def _build(self) -> None:
        assert self.definitions is not None
        try:
            _rebuild(self.engine, self.run_id, self.definitions)
        except BaseException as exc:  # raised again by ``wait``, in the run's thread
            self._error = exc

    def wait(self) -> None:
        """The indexes built: by the background build, else here."""
        if self.definitions is None:
            return
        if self._thread is None:
            _rebuild(self.engine, self.run_id, self.definitions)
            return
        self._thread.join()
        if self._error is not None:
            raise self._error


@contextmanager
def deferred_score_indexes(
    engine: Engine, run_id: str, min_journeys: int = DEFER_MIN_JOURNEYS
) -> Iterator[DeferredIndexes]:
    """Around a run's partition writes: drop the indexes of ``journeys`` on ``score`` (the console's) when most
    journeys were never written by a run, and build them again afterwards; yields them (false when it did
    not), to start that build early with ``build_behind``.

    A first run changes every journey's score, and each changed row moves an entry in each of those
    indexes at a random place: at 240,000 journeys that is ≈ 7 CPU s on SQLite against ≈ 1 s for the
    update without them, and one sorted build of each costs a fraction of a second. The definitions are
    read from the catalog and kept in the run's row (``runs.stats``) in the transaction that drops them,
    so a run killed before building them again leaves them to the next run, which builds them first.
    The run's row is finished after this context: the build clears that key of its ``stats``.
    """
    _rebuild_abandoned(engine)
    if not _mostly_new(engine, min_journeys):
        yield DeferredIndexes(engine, run_id, None)
        return
    with engine.begin() as conn:
        definitions = _score_index_definitions(conn)
        runs = Run.__table__  # type: ignore[attr-defined]
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(stats={_DEFERRED: definitions}))
        for name in definitions:
            conn.exec_driver_sql(f"DROP INDEX {name}")
    deferred = DeferredIndexes(engine, run_id, definitions)
    try:
        yield deferred
    finally:
        deferred.wait()


def _mostly_new(engine: Engine, min_journeys: int) -> bool:
    """At least ``min_journeys`` journeys, ``DEFER_SHARE`` of them never written by a run. The journeys
    without a score are counted first, from the score index: few of them (every run but a first) settle it
    without the full scan that counts the unwritten ones (a terminal journey may stay unscored for good)."""
    with engine.connect() as conn:
        unscored = conn.execute(text("SELECT COUNT(*) FROM journeys WHERE score IS NULL")).scalar_one()
        if unscored < DEFER_SHARE * min_journeys:
            return False
        total, written = conn.execute(text("SELECT COUNT(*), COUNT(updated_run_id) FROM journeys")).one()
    return bool(total >= min_journeys and total - written >= DEFER_SHARE * total)


def _score_index_definitions(conn: Connection) -> dict[str, str]:
    """``name → CREATE INDEX statement`` of the plain indexes of ``journeys`` that hold ``score``."""
    names = [
        index["name"]
        for index in inspect(conn).get_indexes("journeys")
        if "score" in index["column_names"] and not index["unique"] and index["name"]
    ]
    if not names:
        return {}
    if conn.dialect.name == "postgresql":
        sql = (
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'journeys'"
        )
    else:
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'journeys'"
    found = {name: ddl for name, ddl in conn.exec_driver_sql(sql) if name in names and ddl}
    return {name: found[name] for name in names if name in found}


def _rebuild(engine: Engine, run_id: str, definitions: dict[str, str]) -> None:
    """Build the deferred indexes (those that do not exist) and forget them in the run's row."""
    with engine.begin() as conn:
        for ddl in definitions.values():
            conn.exec_driver_sql(ddl.replace("INDEX ", "INDEX IF NOT EXISTS ", 1))
        runs = Run.__table__  # type: ignore[attr-defined]
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(stats={}))


def _rebuild_abandoned(engine: Engine) -> None:
    """Build the indexes a killed run deferred and never built again."""
    runs = Run.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        kept = conn.execute(
            select(runs.c.run_id, runs.c.stats).where(cast(runs.c.stats, String).like(f'%"{_DEFERRED}"%'))
        ).all()
    for run_id, stats in kept:
        _rebuild(engine, run_id, stats[_DEFERRED])
