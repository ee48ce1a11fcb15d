"""The one staging helper (``store.bulk.copy_rows``/``stage_rows``) and the ingestion's merge on top of it:
values survive exactly, whatever their characters, and nothing staged outlives its transaction."""

import json
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, text

from store.bulk import stage_rows
from store.db import make_engine
from store.ingest.staging import SQLITE_ROWS, merge_ignoring_stored
from store.tables import Event
from tests.postgres import postgres_url, throwaway_schema

EVENTS = Event.__table__
ODD = [
    "",
    'tab\there, "quoted", back\\slash',
    "new\nline\r\nand a lone \r",
    "\\N",
    "NULL",
    ",edge,",
    "é ✓ 中文 😀",
]
COLUMNS = ["lead_key", "occurred_at", "event_id", "type", "product_line", "machine", "url", "duration_s", "properties"]
SCHEMA: dict[str, Any] = {
    "lead_key": pl.Int64,
    "occurred_at": pl.Int64,
    "event_id": pl.String,
    "type": pl.String,
    "product_line": pl.String,
    "machine": pl.Boolean,
    "url": pl.String,
    "duration_s": pl.Float64,
    "properties": pl.String,
}
# Epoch microseconds before 1970, around now and at the far end; floats that lose digits when printed short.
TIMES = [-2_208_988_800_000_000, 0, 1_700_000_000_000_001, 253_402_300_799_999_999]
FLOATS = [0.1 + 0.2, -0.0, 1e-300, 12345.678901234567, None]


def odd_rows(prefix: str, count: int) -> list[tuple[Any, ...]]:
    """Rows in ``COLUMNS`` order that cycle through the odd texts, NULLs, times and floats."""
    return [
        (
            n + 1,
            TIMES[n % len(TIMES)],
            f"{prefix}{n}:{ODD[n % len(ODD)]}",
            "page_view",
            None if n % 3 == 0 else ODD[(n + 1) % len(ODD)],
            n % 2 == 0,
            None if n % 4 == 1 else ODD[(n + 2) % len(ODD)],
            FLOATS[n % len(FLOATS)],
            json.dumps({"note": ODD[n % len(ODD)]}, ensure_ascii=False),
        )
        for n in range(count)
    ]


def frame_of(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    """The events table in ``COLUMNS`` order (flags as bools, JSON as its text), by ``event_id``."""
    names = ", ".join("CAST(properties AS TEXT)" if name == "properties" else name for name in COLUMNS)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {names} FROM events ORDER BY lead_key, event_id")).all()
    return [(*row[:5], bool(row[5]), *row[6:]) for row in rows]


def test_a_merge_stores_every_value_exactly(engine: Engine) -> None:
    rows = odd_rows("e", 21)
    with engine.begin() as conn:
        assert merge_ignoring_stored(conn, EVENTS, frame_of(rows), fresh=True) == 21  # type: ignore[arg-type]
    assert stored(engine) == rows


def test_a_merge_stores_nulls_of_text_float_and_integer_columns_as_null(engine: Engine) -> None:
    """SQLite binds such a NULL as NaN (cheaper than ``None``): stored NULL all the same, beside empty
    texts, zeros and values in the same columns."""
    urls, durations, stamps = ["", None, "/a", None], [0.0, None, 1.5, None], [0, None, 7, None]
    frame = frame_of(odd_rows("e", 4)).with_columns(
        url=pl.Series(urls), duration_s=pl.Series(durations), ingested_at=pl.Series(stamps, dtype=pl.Int64)
    )
    with engine.begin() as conn:
        assert merge_ignoring_stored(conn, EVENTS, frame, fresh=True) == 4  # type: ignore[arg-type]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT url, duration_s, ingested_at, url IS NULL AND duration_s IS NULL FROM events ORDER BY lead_key"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (url, duration, stamp, url is None) for url, duration, stamp in zip(urls, durations, stamps, strict=True)
    ]


def test_a_merge_skips_stored_ids_and_keeps_the_first_of_a_repeated_one(engine: Engine) -> None:
    first = odd_rows("e", 3)
    with engine.begin() as conn:
        merge_ignoring_stored(conn, EVENTS, frame_of(first), fresh=True)  # type: ignore[arg-type]
    # "fresh" but one id is stored (under another lead and time): PostgreSQL's COPY is refused, the
    # staged merge skips it and stores the new one.
    stored_again = (99, 5, *first[1][2:])
    new = odd_rows("n", 1)
    with engine.begin() as conn:
        assert merge_ignoring_stored(conn, EVENTS, frame_of([stored_again, *new]), fresh=True) == 1  # type: ignore[arg-type]
    repeated = [
        (7, 1, "r", "page_view", None, True, "first", None, "{}"),
        (3, 2, "r", "email_open", None, False, None, None, "{}"),
    ]
    with engine.begin() as conn:
        assert merge_ignoring_stored(conn, EVENTS, frame_of(repeated)) == 1  # type: ignore[arg-type]
        assert merge_ignoring_stored(conn, EVENTS, frame_of([])) == 0  # type: ignore[arg-type]
    assert stored(engine) == sorted([*first, *new, repeated[0]], key=lambda row: (row[0], row[2]))


def test_a_merge_longer_than_one_statement_stores_every_new_row_once(engine: Engine) -> None:
    """SQLite inserts ``SQLITE_ROWS`` rows a statement: stored rows at the start, new ones across the
    statements' ends and in the last, shorter statement are all counted and stored exactly."""
    rows = odd_rows("e", 2 * SQLITE_ROWS + 7)
    with engine.begin() as conn:
        assert merge_ignoring_stored(conn, EVENTS, frame_of(rows[: SQLITE_ROWS + 1]), fresh=True) == SQLITE_ROWS + 1  # type: ignore[arg-type]
    with engine.begin() as conn:
        assert merge_ignoring_stored(conn, EVENTS, frame_of(rows), fresh=True) == SQLITE_ROWS + 6  # type: ignore[arg-type]
    assert stored(engine) == rows


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    url = postgres_url()
    with throwaway_schema(url, "staging") as schema:
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            yield engine
        finally:
            engine.dispose()


def test_staged_frames_and_tuples_read_back_exactly_in_their_order(pg_engine: Engine) -> None:
    rows = odd_rows("s", 14)
    shuffled = rows[7:] + rows[:7]  # not in any index's order: what comes back is the staged order
    names = ", ".join("CAST(properties AS TEXT)" if name == "properties" else name for name in COLUMNS)
    with pg_engine.begin() as conn:
        from_frame = stage_rows(conn, "events", COLUMNS, frame_of(shuffled))
        assert [
            tuple(row) for row in conn.exec_driver_sql(f"SELECT {names} FROM {from_frame} ORDER BY ctid")
        ] == shuffled
        # The same shape again in the same transaction (tuples this time) replaces what was staged.
        from_tuples = stage_rows(conn, "events", COLUMNS, rows[:5])
        assert from_tuples == from_frame
        assert [tuple(row) for row in conn.exec_driver_sql(f"SELECT {names} FROM {from_tuples} ORDER BY ctid")] == rows[
            :5
        ]
    with pg_engine.connect() as conn:  # the pool's one connection: the staged rows went with the commit
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {from_frame}").scalar_one() == 0


def test_nothing_stays_staged_after_a_rollback(pg_engine: Engine) -> None:
    with pytest.raises(RuntimeError), pg_engine.begin() as conn:
        staged = stage_rows(conn, "events", COLUMNS, frame_of(odd_rows("x", 3)))
        raise RuntimeError("the chunk failed")
    with pg_engine.begin() as conn:
        assert conn.exec_driver_sql(f"SELECT to_regclass('{staged}')").scalar_one() is None  # creation undone
        stage_rows(conn, "events", COLUMNS, odd_rows("y", 2))
    with pytest.raises(RuntimeError), pg_engine.begin() as conn:
        stage_rows(conn, "events", COLUMNS, odd_rows("z", 4))
        raise RuntimeError("the chunk failed")
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {staged}").scalar_one() == 0
