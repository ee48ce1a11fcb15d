"""Ingestion benchmark: events/s and leads/s through ``store.ingest``, against a bare insert of the same
rows in the same run (the floor: this machine is shared, so only ratios measured together compare).

Plain events (page views, downloads, email events) are generated as CSV; the bare insert reads the same
CSV with ``csv.reader`` and ``executemany``s the tuples into a table with a primary key (SQLite), or
``COPY``s the file into one (PostgreSQL). ``--demo`` adds the demo's richer events (message ids and
machine-activity detection) from ``examples/generate.py``; ``--reference`` the row-by-row events path and
the same events as JSON Lines; ``--tracked`` installs the change log's triggers on ``events`` before the
events are loaded (a store that has been scored has them: PostgreSQL's statement triggers then run once
per ``COPY``); ``--no-sqlite`` measures PostgreSQL alone. Wall times inflate on a loaded machine: CPU
seconds are printed beside them, with the load average.

    .venv/bin/python benchmarks/ingest.py --events 1000000 [--demo 1000000] [--reference] [--tracked]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test [--no-sqlite]]
"""

import argparse
import csv
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine  # noqa: E402

from benchmarks.score import _backends, _own_ports  # noqa: E402
from stages.portfolio import BUILTIN_EVENT_TYPES  # noqa: E402
from store.change_log import ensure_tracking  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.ingest import ingest_events, ingest_leads  # noqa: E402

PLAIN_TYPES = ["page_view", "asset_download", "email_delivered", "email_open", "email_click"]
LINES = {"crm", "analytics"}
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def plain_files(workdir: Path, leads: int, events: int) -> tuple[Path, Path]:
    """Leads and plain events as CSV, from a fixed seed."""
    rng = np.random.default_rng(1)
    lead_ids = [f"L{n:07d}" for n in range(leads)]
    pl.DataFrame(
        {
            "lead_id": lead_ids,
            "email": [f"{i.lower()}@example.com" for i in lead_ids],
            "first_name": pl.Series(["Ann", "Bo", "Cy"]).gather(rng.integers(0, 3, leads)),
            "email_opt_in": pl.Series(["true", "false", ""]).gather(rng.integers(0, 3, leads)),
            "job_title": pl.Series(["Head of IT", "CTO", ""]).gather(rng.integers(0, 3, leads)),
            "product_interest": pl.Series(["crm", "", "crm;analytics"]).gather(rng.integers(0, 3, leads)),
        }
    ).write_csv(workdir / "leads.csv")
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    millis = np.sort(rng.integers(start, start + 300 * 86_400_000, events))
    frame = pl.DataFrame(
        {
            "event_id": [f"E{n}" for n in range(events)],
            "lead_id": pl.Series(lead_ids).gather(rng.integers(0, leads, events)),
            "type": pl.Series(PLAIN_TYPES).gather(rng.integers(0, len(PLAIN_TYPES), events)),
            "occurred_at": pl.Series(millis).cast(pl.Datetime("ms", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
            "product_line": pl.Series(["", "crm", "analytics"]).gather(rng.integers(0, 3, events)),
            "properties": pl.Series([f'{{"url":"/p/{n}"}}' for n in range(1000)]).gather(rng.integers(0, 1000, events)),
        }
    )
    frame.write_csv(workdir / "events.csv")
    return workdir / "leads.csv", workdir / "events.csv"


def timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``work`` (CPU is steadier than wall on a loaded machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measured(engine: Engine, work: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """``timed`` plus, on PostgreSQL, the CPU seconds of the server backends serving this process (the
    other half of a ``COPY``'s work; 0 on SQLite, whose work is in this process's). Read before and after
    (the engine's pool keeps its connections), not by ``ServerCpu``'s sampling thread, whose /proc scans
    would count as this process's CPU."""
    if engine.dialect.name != "postgresql":
        wall, cpu, result = timed(work)
        return wall, cpu, 0.0, result
    before = _backends(_own_ports())
    wall, cpu, result = timed(work)
    after = _backends(_own_ports())
    return wall, cpu, sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items()), result


def server_note(engine: Engine, seconds: float) -> str:
    return f", server {seconds:.1f} CPU s" if engine.dialect.name == "postgresql" else ""


def bare_sqlite(path: Path, db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE bare (event_id TEXT PRIMARY KEY, lead_id TEXT, type TEXT, occurred_at TEXT,"
        " product_line TEXT, properties TEXT)"
    )
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows)
        conn.executemany("INSERT INTO bare VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    count = conn.execute("SELECT count(*) FROM bare").fetchone()[0]
    conn.close()
    return int(count)


def bare_postgres(path: Path, url: str, schema: str) -> tuple[int, float]:
    """The ``COPY`` floor: rows copied and the CPU seconds of the server backend that took them."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), options=f"-csearch_path={schema}") as conn:
        started = backend_cpu(conn.info.backend_pid)
        conn.execute(
            "CREATE TABLE bare (event_id text PRIMARY KEY, lead_id text, type text, occurred_at text,"
            " product_line text, properties text)"
        )
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY bare FROM STDIN (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as handle,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        conn.commit()
        count = int(conn.execute("SELECT count(*) FROM bare").fetchone()[0])  # type: ignore[index]
        return count, backend_cpu(conn.info.backend_pid) - started


def backend_cpu(pid: int) -> float:
    """User and system CPU seconds of a local process (a PostgreSQL backend) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    name: str,
    url: str,
    leads: Path,
    events: Path,
    bare: Callable[[], tuple[int, float]],
    reference: bool,
    tracked: bool = False,
) -> None:
    """``bare``: the floor's rows and its server CPU seconds (0 on SQLite); ``tracked``: the change log's
    triggers are installed before the events are loaded."""
    engine = make_engine(url)
    if tracked:
        ensure_tracking(engine)
    bare_wall, bare_cpu, (count, bare_server) = timed(bare)
    triggers = ", change-log triggers installed" if tracked else ""
    print(f"\n== {name}: {count:,} plain events{triggers}  (load average {os.getloadavg()[0]:.1f})")
    print(
        f"bare insert         {bare_wall:8.1f} s  {count / bare_wall:>10,.0f} rows/s  "
        f"({bare_cpu:.1f} CPU s{server_note(engine, bare_server)})"
    )
    leads_figures(engine, leads, reference)
    options: dict[str, Any] = {"event_types": BUILTIN_EVENT_TYPES, "product_lines": LINES}
    wall, cpu, server, report = measured(engine, lambda: ingest_events(engine, events, **options))
    assert report.inserted == count, report.summary()
    print(
        f"ingest events       {wall:8.1f} s  {count / wall:>10,.0f} events/s  "
        f"({cpu:.1f} CPU s, {count / cpu:,.0f}/CPU s{server_note(engine, server)})  = {wall / bare_wall:.1f}x the "
        f"bare insert's wall, {(cpu + server) / (bare_cpu + bare_server):.1f}x its CPU (target <= 6)"
    )
    again_wall, again_cpu, server, again = measured(engine, lambda: ingest_events(engine, events, **options))
    print(
        f"re-ingest (no-op)   {again_wall:8.1f} s  ({again_cpu:.1f} CPU s = {again_cpu / cpu:.2f}x the first load's"
        f"{server_note(engine, server)})"
        f"  inserted {again.inserted}"
    )
    if reference:  # the same store emptied of events, then of leads
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM events")
        wall, cpu, report = timed(lambda: ingest_events(engine, events, row_by_row=True, **options))
        print(f"events row by row   {wall:8.1f} s  {count / wall:>10,.0f} events/s  ({cpu:.1f} CPU s) (reference)")
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM events")
        jsonl = events.with_suffix(".jsonl")
        pl.read_csv(events, infer_schema=False).write_ndjson(jsonl)
        wall, cpu, report = timed(lambda: ingest_events(engine, jsonl, **options))
        print(f"events from JSONL   {wall:8.1f} s  {count / wall:>10,.0f} events/s  ({cpu:.1f} CPU s)")
    engine.dispose()


def bare_leads_sqlite(path: Path, db: Path) -> int:
    """The floor for leads: the CSV's rows as tuples ``executemany``d into the store's own leads table
    (its unique and search indexes), without checks."""
    engine = make_engine(f"sqlite:///{db}")
    engine.dispose()
    conn = sqlite3.connect(db)
    stamp = int(time.time() * 1e6)
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows)
        conn.executemany(
            "INSERT INTO leads (lead_id, email, first_name, email_opt_in, ads_opt_in, attributes, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
            ((r[0], r[1], r[2], r[3] == "true", f'{{"job_title":"{r[4]}"}}', stamp, stamp) for r in rows),
        )
    conn.commit()
    count = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
    conn.close()
    return int(count)


def leads_figures(engine: Engine, leads: Path, reference: bool) -> None:
    """Leads through the columnar path, its re-ingest (every lead stored: merged, nothing changes) and with
    ``reference`` the row-by-row path into a second store; on SQLite beside the bare insert's floor."""
    if engine.dialect.name == "sqlite":
        db = Path(str(engine.url.database)).with_name("bare_leads.db")
        wall, cpu, count = timed(lambda: bare_leads_sqlite(leads, db))
        per_cpu = f"{count / cpu:,.0f}/CPU s"
        print(f"bare leads insert   {wall:8.1f} s  {count / wall:>10,.0f} rows/s  ({cpu:.1f} CPU s, {per_cpu})")
    wall, cpu, server, report = measured(engine, lambda: ingest_leads(engine, leads, product_lines=LINES))
    rows = report.inserted
    print(
        f"ingest leads        {wall:8.1f} s  {rows / wall:>10,.0f} rows/s  ({cpu:.1f} CPU s, "
        f"{rows / cpu:,.0f}/CPU s{server_note(engine, server)})"
    )
    wall, cpu, server, again = measured(engine, lambda: ingest_leads(engine, leads, product_lines=LINES))
    changed = f"{again.updated} updated"
    rate = f"{again.read / wall:>10,.0f} rows/s"
    print(f"leads re-ingest     {wall:8.1f} s  {rate}  ({cpu:.1f} CPU s{server_note(engine, server)}), {changed}")
    if reference and engine.dialect.name == "sqlite":
        slow = make_engine(f"sqlite:///{Path(str(engine.url.database)).with_name('leads_reference.db')}")
        wall, cpu, report = timed(lambda: ingest_leads(slow, leads, product_lines=LINES, row_by_row=True))
        print(f"leads row by row    {wall:8.1f} s  {rows / wall:>10,.0f} rows/s  ({cpu:.1f} CPU s) (reference)")
        slow.dispose()


def demo(workdir: Path, url: str, events: int) -> None:
    """The demo's events: message ids, machine-activity detection, richer properties."""
    from examples.generate import generate
    from flows.ingestion import ingest_file
    from stages.portfolio import load_portfolio

    data = generate(workdir / "demo", leads=max(1000, events // 25), events=events, seed=1, as_of=AS_OF)
    portfolio = load_portfolio(ROOT / "examples" / "demo" / "portfolio.yaml")
    ingest_file(portfolio, "leads", data.leads, url)
    wall, cpu, outcome = timed(lambda: ingest_file(portfolio, "events", data.events, url))
    inserted = outcome.report.inserted
    print(
        f"demo events         {wall:8.1f} s  {inserted / wall:>10,.0f} events/s  ({cpu:.1f} CPU s, "
        f"{inserted / cpu:,.0f}/CPU s; load {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--demo", type=int, default=0, help="also load this many demo events")
    parser.add_argument("--reference", action="store_true", help="also time the row-by-row reference path")
    parser.add_argument("--postgres", help="also run on this PostgreSQL database (in a throw-away schema)")
    parser.add_argument("--no-sqlite", action="store_true", help="with --postgres: measure PostgreSQL alone")
    parser.add_argument("--tracked", action="store_true", help="install the change log's triggers before the events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadscore-ingest-") as tmp:
        workdir = Path(tmp)
        leads, events = plain_files(workdir, args.leads, args.events)
        print(f"load average {os.getloadavg()[0]:.1f} (2 cores: above 2, wall times are inflated)")
        if not (args.no_sqlite and args.postgres):
            url = f"sqlite:///{workdir / 'bench.db'}"
            floor = workdir / "bare.db"
            run("SQLite", url, leads, events, lambda: (bare_sqlite(events, floor), 0.0), args.reference, args.tracked)
            if args.demo:
                demo(workdir, f"sqlite:///{workdir / 'demo.db'}", args.demo)
        if args.postgres:
            _postgres(args.postgres, leads, events, args.reference, args.tracked)


def _postgres(url: str, leads: Path, events: Path, reference: bool, tracked: bool) -> None:
    from sqlalchemy import create_engine

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
        run("PostgreSQL", scoped, leads, events, lambda: bare_postgres(events, url, schema), reference, tracked)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
