"""Copy a prepared SQLite store into a PostgreSQL store, so both databases are measured on the same data.

Generating and ingesting 5M events again would take many minutes and give other random data; this
moves every table's rows as Arrow (ADBC out of SQLite, ``COPY`` into a scratch table of PostgreSQL)
and casts them into the migrated tables, then moves the key sequences past the copied keys.

    .venv/bin/python benchmarks/pgcopy.py /tmp/bench/bench.db 'postgresql+psycopg://…/test?options=-csearch_path%3Dbench'
"""

import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SKIPPED = {"alembic_version", "event_generations", "event_mirror_epoch"}
EVENT_SLICE = 25_000  # lead keys per slice of the events table: bounded memory


def copy_store(sqlite_path: Path, url: str) -> dict[str, int]:
    """Copy every table of ``sqlite_path`` into the (empty, migrated here) store at ``url``; rows per table."""
    import adbc_driver_postgresql.dbapi as adbc_pg
    from sqlalchemy import inspect, text

    from store.db import make_engine
    from store.reader import adbc_uri, read_frame

    source = make_engine(f"sqlite:///{sqlite_path}")
    target = make_engine(url)
    copied: dict[str, int] = {}
    with adbc_pg.connect(adbc_uri(target)) as pg:
        for table in sorted(set(inspect(target).get_table_names()) - SKIPPED):
            columns = _column_types(pg, table)
            shared = [name for name in columns if name in {c["name"] for c in inspect(source).get_columns(table)}]
            select = ", ".join(f'"{name}"' for name in shared)
            if table == "events":
                top = read_frame(source, "SELECT max(lead_key) AS m FROM events")["m"][0] or 0
                slices = [(lo, lo + EVENT_SLICE) for lo in range(0, int(top) + 1, EVENT_SLICE)]
            else:
                slices = [None]
            copied[table] = 0
            for bounds in slices:
                where = "" if bounds is None else f" WHERE lead_key >= {bounds[0]} AND lead_key < {bounds[1]}"
                frame = read_frame(source, f"SELECT {select} FROM {table}{where}")
                if frame.is_empty():
                    continue
                copied[table] += _append(pg, table, frame.to_arrow(), columns)
        pg.commit()
    with target.begin() as conn:
        for table, column in conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND column_default LIKE 'nextval%'"
            )
        ).all():
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), max({column})) FROM {table}")
                if copied.get(table)
                else text("SELECT 1")
            )
        conn.execute(text("ANALYZE"))
    source.dispose()
    target.dispose()
    return copied


def _column_types(pg: object, table: str) -> dict[str, str]:
    with pg.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(
            "SELECT column_name, format_type(a.atttypid, a.atttypmod) FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = CAST(quote_ident(c.table_name) AS regclass) "
            "AND a.attname = c.column_name WHERE c.table_schema = current_schema() AND c.table_name = $1 "
            "ORDER BY c.ordinal_position",
            (table,),
        )
        return dict(cur.fetchall())


def _append(pg: object, table: str, rows: pa.Table, types: dict[str, str]) -> int:
    """``COPY`` into a scratch table with the Arrow types, then one cast-and-insert into ``table``."""
    scratch = f"_copy_{table}"
    rows = pa.table(
        [col.cast(pa.string()) if pa.types.is_null(col.type) else col for col in rows.columns], names=rows.column_names
    )
    with pg.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f"DROP TABLE IF EXISTS {scratch}")
        cur.adbc_ingest(scratch, rows, mode="create", temporary=True)
        names = ", ".join(f'"{name}"' for name in rows.column_names)
        casts = ", ".join(_cast(name, types[name]) for name in rows.column_names)
        cur.execute(f"INSERT INTO {table} ({names}) SELECT {casts} FROM {scratch}")
        cur.execute(f"DROP TABLE {scratch}")
    return rows.num_rows


def _cast(name: str, target: str) -> str:
    if target == "boolean":  # SQLite stores booleans as integers
        return f'CAST(CAST("{name}" AS integer) AS boolean)'
    return f'CAST("{name}" AS {target})'


if __name__ == "__main__":
    started = time.perf_counter()
    counts = copy_store(Path(sys.argv[1]), sys.argv[2])
    print({k: v for k, v in counts.items() if v}, f"{time.perf_counter() - started:.1f} s")
