"""Columnar reads for scoring: SQL results straight into Polars through ADBC (Arrow).

Scoring reads the event log partition by partition. ADBC hands Arrow buffers to Polars without a
Python object per value (5M events: ≈ 2.5 s against ≈ 10 s for ``sqlite3`` ``fetchall``), so this is
the hot read path. Queries are written once with SQLAlchemy-style ``:name`` parameters and rewritten to
the driver's positional style (``?`` for SQLite, ``$n`` for PostgreSQL); values are always bound, never
formatted into the SQL.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from store import pg_connections, sqlite_read_workers
from store.shapes import EVENT_SCHEMA, DataType, empty_frame
from store.tables import PROMOTED_NUMBER_PROPERTIES, PROMOTED_PROPERTIES

T = TypeVar("T")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_search_paths: weakref.WeakKeyDictionary[Engine, str | None] = weakref.WeakKeyDictionary()


def adbc_uri(engine: Engine) -> str:
    """The ADBC connection string for the engine's database (``sqlite:///p`` → ``p``, libpq URI for PG)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError("ADBC reads need a SQLite file; an in-memory database is private to SQLAlchemy")
        return database
    if url.get_backend_name() == "postgresql":
        query = dict(url.query)
        if "options" not in query:
            search_path = _search_path(engine)
            if search_path:
                query["options"] = f"-csearch_path={search_path}"
        libpq = URL.create(
            "postgresql",
            username=url.username,
            password=url.password,
            host=url.host,
            port=url.port,
            database=url.database,
            query=query,
        )
        return libpq.render_as_string(hide_password=False)
    raise NotImplementedError(f"columnar reads support sqlite and postgresql, not {url.get_backend_name()!r}")


def _search_path(engine: Engine) -> str | None:
    """The search_path the engine's sessions use (it may come from ``connect_args``, invisible in the URL)."""
    if engine not in _search_paths:
        with engine.connect() as conn:
            current = conn.execute(text("SHOW search_path")).scalar_one()
        _search_paths[engine] = None if current.replace(" ", "") == '"$user",public' else current
    return _search_paths[engine]


def _positional(sql: str, params: Mapping[str, Any], dialect: str) -> tuple[str, list[Any]]:
    """Rewrite ``:name`` parameters to the driver's positional markers; a list/tuple expands for ``IN``."""
    values: list[Any] = []

    def marker(value: Any) -> str:
        values.append(value)
        return "?" if dialect == "sqlite" else f"${len(values)}"

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            raise KeyError(f"SQL parameter :{name} has no value")
        value = params[name]
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value) if isinstance(value, set | frozenset) else list(value)
            if not items:
                return "NULL"  # ``x IN (NULL)`` matches nothing, like an empty list should
            return ", ".join(marker(item) for item in items)
        return marker(value)

    return _PARAM.sub(replace, sql), values


_read_processes = 2  # SQLite reader processes at most; the process's start-up sets it from its settings


def limit_read_processes(processes: int) -> None:
    """How many SQLite reader processes this process may start (``LEADSCORE_WORKERS``, given at start-up)."""
    global _read_processes
    _read_processes = max(1, processes)


def read_concurrently(reads: Sequence[Callable[[], T]]) -> list[T]:
    """Independent reads, as many in flight as there are reader processes; results in order.

    A bulk read's time is the database's (a scan of a 20M-event table is seconds), spent in a SQLite
    reader process or a PostgreSQL backend: run one after another, a step's reads keep one core busy."""
    if len(reads) <= 1 or _read_processes == 1:
        return [read() for read in reads]
    with ThreadPoolExecutor(max_workers=_read_processes) as pool:
        return list(pool.map(lambda read: read(), reads))


# An engine made with ``row_reads(engine)`` reads through its own pooled DBAPI connections instead.
ROW_READS = "leadscore_row_reads"


def row_reads(engine: Engine) -> Engine:
    """The engine (same pool) whose ``read_frame`` fetches rows through a pooled DBAPI connection.

    For reads of a few rows (one lead's frames, a ``fresh=true`` look-up), the ADBC round trip costs
    more than the rows: a SQLite read goes to a helper process and back (≈ 8 ms), a PostgreSQL one opens
    a connection. The frames are the same (same SQL, same schema casts); bulk reads keep ADBC.

    On PostgreSQL its connections read in autocommit: each statement is its own snapshot anyway (a
    look-up's reads never shared a transaction), and a transaction's ``BEGIN`` and ``ROLLBACK`` were
    two of a look-up's three round trips per read (12 of 18), each costing the client and the server.
    """
    options: dict[str, Any] = {ROW_READS: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return engine.execution_options(**options)


def _fetch_rows(engine: Engine, sql: str, values: Sequence[Any]) -> pa.Table:
    """``sql`` (the driver's positional markers) through a pooled DBAPI connection, as an Arrow table;
    in the engine's isolation level (a transaction PostgreSQL opened ends when the pool takes it back)."""
    with engine.connect() as connection:
        driver: Any = connection.connection.driver_connection
        if engine.dialect.name == "postgresql":
            import psycopg

            cursor: Any = psycopg.RawCursor(driver)  # ``$n`` markers
        else:
            cursor = driver.cursor()
        try:
            cursor.execute(sql, tuple(values))
            names = [column[0] for column in cursor.description]
            rows = cursor.fetchall()
        finally:
            cursor.close()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]  # rows to columns in one pass
    return pa.table({name: pa.array(column) for name, column in zip(names, columns, strict=True)})


def _fetch_arrow(engine: Engine, sql: str, values: Sequence[Any]) -> pa.Table:
    dialect = engine.dialect.name
    if engine.get_execution_options().get(ROW_READS):
        return _fetch_rows(engine, sql, values)
    if dialect == "sqlite":
        return sqlite_read_workers.fetch_arrow(adbc_uri(engine), sql, values, _read_processes)
    if dialect == "postgresql":
        with pg_connections.connection(engine, adbc_uri(engine)) as conn, conn.cursor() as cur:
            cur.execute(sql, tuple(values) if values else None)
            return cur.fetch_arrow_table()
    raise NotImplementedError(f"columnar reads support sqlite and postgresql, not {dialect!r}")


def read_frame(
    engine: Engine,
    sql: str,
    params: Mapping[str, Any] | None = None,
    schema: Mapping[str, pl.DataType] | None = None,
) -> pl.DataFrame:
    """Run ``sql`` (``:name`` parameters) and return a Polars frame.

    With ``schema``, columns are cast to it (and an empty result still has those columns and types),
    which hides the drivers' differences: SQLite booleans are integers, PostgreSQL ``integer`` is Int32,
    an all-NULL SQLite column has no type. Cast JSON columns to text in the SQL (``CAST(x AS TEXT)``).
    """
    positional, values = _positional(sql, params or {}, engine.dialect.name)
    table = _fetch_arrow(engine, positional, values)
    # Drop driver metadata (PostgreSQL type names) and decode extension types such as arrow.json.
    columns = [col.cast(pa.string()) if isinstance(col.type, pa.ExtensionType) else col for col in table.columns]
    table = pa.table(columns, names=table.column_names)
    if schema is None:
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame
    missing = [name for name in schema if name not in table.column_names]
    if missing:
        raise KeyError(f"query returned no column(s) {missing}; expected {list(schema)}")
    if table.num_rows == 0:
        return empty_frame(schema)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(_casts(tuple(schema.items())))


@functools.lru_cache(maxsize=256)
def _casts(columns: tuple[tuple[str, DataType], ...]) -> list[pl.Expr]:
    """``read_frame``'s casts to a schema, built once per schema: ≈ 20 µs of Python each, and a
    ``fresh=true`` look-up casts 35 columns."""
    return [pl.col(name).cast(dtype) for name, dtype in columns]


def read_events(
    engine: Engine,
    lead_key_range: tuple[int, int] | None = None,
    product_line: str | None = None,
    types: Sequence[str] | None = None,
    properties: Sequence[str] | None = None,
    *,
    lead_keys: Sequence[int] | None = None,
    anonymous_ids: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Events of a lead-key partition ``[lo, hi)``, ordered by ``(lead_key, occurred_at, event_id)``.

    With ``product_line``, events of that line *and* events without a line (they count for every
    journey of the lead). ``occurred_at`` is stored as epoch microseconds and cast to UTC here.
    ``properties`` names the event properties the caller needs: the promoted ones come as their own
    typed columns (no JSON parsing); when any other is asked for, the JSON text comes as ``properties``.
    Without ``properties``, the JSON text comes and no promoted column. ``lead_keys`` keeps only those
    leads (the event cache re-reads the leads whose events changed). ``anonymous_ids`` reads those
    visitors' events from ``anonymous_events`` instead, with ``anonymous_id`` in place of ``lead_key``.
    """
    where: list[str] = []
    params: dict[str, Any] = {}
    if lead_key_range is not None:
        where.append("lead_key >= :lo AND lead_key < :hi")
        params["lo"], params["hi"] = int(lead_key_range[0]), int(lead_key_range[1])
    if lead_keys is not None:
        where.append("lead_key IN (:lead_keys)")
        params["lead_keys"] = [int(key) for key in lead_keys]
    if anonymous_ids is not None:
        where.append("anonymous_id IN (:anonymous_ids)")
        params["anonymous_ids"] = list(anonymous_ids)
    if product_line is not None:
        where.append("(product_line = :product_line OR product_line IS NULL)")
        params["product_line"] = product_line
    if types is not None:
        where.append("type IN (:types)")
        params["types"] = list(types)
    schema = dict(EVENT_SCHEMA)
    wanted = list(dict.fromkeys(properties)) if properties is not None else None
    owner, table = ("anonymous_id", "anonymous_events") if anonymous_ids is not None else ("lead_key", "events")
    if anonymous_ids is not None:
        schema = {"anonymous_id": pl.Utf8(), **{k: v for k, v in schema.items() if k != "lead_key"}}
    columns = [owner, "occurred_at", "type", "product_line", "machine"]
    if wanted is None or any(key not in PROMOTED_PROPERTIES for key in wanted):
        columns.append("CAST(properties AS TEXT) AS properties")
    else:
        del schema["properties"]
    for key in wanted or []:
        if key in PROMOTED_PROPERTIES:
            columns.append(key)
            schema[key] = pl.Float64() if key in PROMOTED_NUMBER_PROPERTIES else pl.Utf8()
    sql = (
        f"SELECT {', '.join(columns)} FROM {table}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {owner}, occurred_at, event_id"
    )
    return read_frame(engine, sql, params, schema)
