"""Load test of the HTTP service on 127.0.0.1: event intake (single and in batches), score look-ups,
``fresh=true`` look-ups; bounded (each phase stops after ``--seconds``) and checked (every accepted
event stored exactly once).

The store gets ``--leads`` leads, each with a scored journey and its snapshot (the look-ups read them),
and one lead with 500 events for ``fresh=true``. The service runs as ``uvicorn service.app:create_app``
in its own process(es); the client is Debian's ``wrk`` (``benchmarks/wrk_load.py``; ``apt-get install wrk``)
or, without it, httpx on asyncio, with ``--concurrency`` requests in flight. Each phase prints the
service's CPU per request (its processes' user + system time from /proc) and the client's, and the load
average: on a shared machine the CPU figures say more than the rates.

    .venv/bin/python benchmarks/api.py                                   # SQLite, 200k leads
    .venv/bin/python benchmarks/api.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import wrk_load  # noqa: E402
from store.api_keys import create_key  # noqa: E402
from store.bulk import insert_ignore  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.tables import Event, Lead  # noqa: E402

PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"
SECRET = "benchmark-unsubscribe-secret-0123456789abc"
NOW = datetime.now(UTC)
PHASES = ("single", "batch", "lookup", "fresh")


def prepare(url: str, leads: int) -> None:
    """``leads`` leads with a scored crm-suite journey and its latest snapshot; one lead with 500 events."""
    engine = make_engine(url)
    chunk = 50_000
    with engine.begin() as conn:
        for start in range(0, leads, chunk):
            rows = [
                {"lead_id": f"B{n}", "email": f"b{n}@client.example", "email_opt_in": True, "ads_opt_in": False,
                 "attributes": {"job_title": "Head of Sales" if n % 3 else "Engineer", "product_interest": "crm-suite"},
                 "created_at": NOW, "updated_at": NOW}
                for n in range(start, min(leads, start + chunk))
            ]  # fmt: skip
            insert_ignore(conn, Lead.__table__, rows)  # type: ignore[arg-type]
        conn.execute(
            text(
                "INSERT INTO journeys (lead_key, product_line, stage, status, opened_at, stage_entered_at, score, "
                "band) SELECT key, 'crm-suite', 'discovery', 'active', :t, :t, key % 100, "
                "CASE WHEN key % 100 < 20 THEN 'cold' WHEN key % 100 < 40 THEN 'warm' ELSE 'hot' END FROM leads"
            ),
            {"t": int(NOW.timestamp() * 1_000_000)},
        )
        conn.execute(
            text(
                "INSERT INTO score_snapshots (journey_id, lead_key, product_line, stage, run_id, as_of, score, band, "
                "breakdown) SELECT id, lead_key, product_line, stage, 'bench', :t, score, band, :b FROM journeys"
            ),
            {"t": int(NOW.timestamp() * 1_000_000), "b": json.dumps([{"rule": "decision maker", "points": 15.0}])},
        )
    engine.dispose()
    give_events(url, "B1")


def give_events(url: str, lead_id: str) -> None:
    """500 more crm-suite events for ``lead_id`` (the ``fresh=true`` lead), over the last three weeks."""
    engine = make_engine(url)
    with engine.begin() as conn:
        key = conn.execute(text("SELECT key FROM leads WHERE lead_id = :l"), {"l": lead_id}).scalar_one()
        events = [
            {"lead_key": key, "occurred_at": NOW - timedelta(hours=n), "event_id": f"fresh-{n}",
             "type": "page_view" if n % 5 else "asset_download", "product_line": "crm-suite", "machine": False,
             "url": "/pricing" if n % 2 else "/product", "properties": {}, "ingested_at": NOW}
            for n in range(500)
        ]  # fmt: skip
        insert_ignore(conn, Event.__table__, events)  # type: ignore[arg-type]
    engine.dispose()


def lead_numbering(url: str) -> tuple[str, int, int]:
    """A prepared store's lead ids as a printf format and their first and last numbers (``LD-%07d``, 1,
    200000 for ``benchmarks/score.py``'s, whose later leads, ``NEW-…``, are left out): the load picks
    leads from them at random."""
    engine = make_engine(url)
    with engine.connect() as conn:
        first_id = conn.execute(text("SELECT lead_id FROM leads ORDER BY key LIMIT 1")).scalar_one()
        prefix = re.sub(r"\d+$", "", first_id)
        low, high, count = conn.execute(
            text("SELECT min(lead_id), max(lead_id), count(*) FROM leads WHERE lead_id LIKE :p"), {"p": prefix + "%"}
        ).one()
    engine.dispose()
    start, end = (re.fullmatch(re.escape(prefix) + r"(\d+)", value) for value in (low, high))
    if start is None or end is None or int(end[1]) - int(start[1]) + 1 != count:
        raise ValueError(f"lead ids {low}…{high} are not one prefix and {count} consecutive numbers")
    return f"{prefix}%0{len(start[1])}d", int(start[1]), int(end[1])


def scored_lead(url: str, prefix: str) -> tuple[str, str]:
    """The first lead (of ``prefix``) whose crm-suite journey is active (scored, not won or lost), and its stage."""
    engine = make_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT l.lead_id, j.stage FROM journeys j JOIN leads l ON l.key = j.lead_key WHERE j.product_line = "
                "'crm-suite' AND j.status = 'active' AND l.lead_id LIKE :p ORDER BY l.key LIMIT 1"
            ),
            {"p": prefix + "%"},
        ).one()
    engine.dispose()
    return found[0], found[1]


def start_service(
    url: str, workers: int, workdir: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The service under uvicorn on a free 127.0.0.1 port, once ``/readyz`` answers (``benchmarks/console.py`` too)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "LEADSCORE_DATABASE_URL": url, "LEADSCORE_PORTFOLIO": str(PORTFOLIO),
           "LEADSCORE_UNSUBSCRIBE_SECRET": SECRET, "LEADSCORE_API_RATE_PER_SECOND": "1000000",
           "LEADSCORE_API_RATE_BURST": "1000000",
           "LEADSCORE_API_RATE_FILE": str(workdir / "rate-buckets"), **(extra_env or {})}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
        cwd=workdir, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the service did not become ready within 120 s")


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the service process and its children (uvicorn's workers), from /proc."""
    return sum(process_cpu(pid, children=True).values())


def process_cpu(pid: int, children: bool = False) -> dict[int, float]:
    """CPU seconds (user + system) per process: ``pid`` and, with ``children``, its descendants (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            below = Path(f"/proc/{current}/task/{current}/children").read_text().split() if children else []
        except FileNotFoundError:  # it ended meanwhile
            continue
        found[current] = (int(fields[11]) + int(fields[12])) / tick
        pids += [int(child) for child in below]
    return found


def database_cpu(engine: Engine) -> dict[int, float]:
    """CPU seconds of the PostgreSQL server processes that serve the store's other connections (the
    service's; the server runs on this machine), by process: compared before and after a phase (a
    connection opened meanwhile counts whole), one that ended meanwhile is left out (so the figure is a
    lower bound). Empty on SQLite."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ).scalars()
        return {pid: cpu for backend in pids for pid, cpu in process_cpu(backend).items()}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def load(base: str, key: str, seconds: float, concurrency: int, make: Any) -> dict[str, Any]:
    """``concurrency`` workers send ``make(n)`` → (method, path, json, items) until ``seconds`` pass."""
    latencies: list[float] = []
    counts = {"requests": 0, "items": 0, "stored": 0, "errors": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60
    ) as client:
        end = time.monotonic() + seconds
        sequence = iter(range(10**12))

        async def worker() -> None:
            while time.monotonic() < end:
                method, path, body, items = make(next(sequence))
                started = time.perf_counter()
                answer = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - started)
                counts["requests"] += 1
                if answer.status_code >= 400 and answer.status_code != 404:
                    counts["errors"] += 1
                    continue
                counts["items"] += items
                if method == "POST":
                    counts["stored"] += answer.json()["stored"]

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return {
        **counts,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(counts["requests"] / elapsed),
        "items_per_s": round(counts["items"] / elapsed),
        "p50_ms": round(_percentile(latencies, 0.5), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "p95_ms": round(_percentile(latencies, 0.95), 1),
        "max_ms": round(_percentile(latencies, 1.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url", help="a PostgreSQL server URL (a throw-away database is made); default SQLite"
    )
    parser.add_argument("--leads", type=int, default=200_000, help="leads of the store made (without --workdir)")
    parser.add_argument(
        "--workdir", type=Path,
        help="a prepared store folder (a copy of benchmarks/score.py's: its bench.db, scored) used instead of "
             "making one; its first lead gets 500 events for fresh=true, the rest are looked up and sent events",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--batch-connections", type=int, default=8,
        help="batches of 500 in flight (each worker's writer merges those that gather into one ingestion call)",
    )  # fmt: skip
    parser.add_argument(
        "--fresh-connections", type=int, default=4,
        help="fresh=true look-ups in flight (1: the latency of one look-up at a time, no queueing)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument(
        "--phases", nargs="+", choices=list(PHASES), default=list(PHASES),
        help="the phases to run (default all; e.g. --phases batch to compare intake changes quickly)",
    )  # fmt: skip
    parser.add_argument(
        "--client", choices=["wrk", "httpx"], default="wrk" if wrk_load.available() else "httpx",
        help="load generator: Debian's wrk (default when installed: a few µs of CPU a request) or httpx",
    )  # fmt: skip
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-api-bench-"))
    database = None
    began = time.monotonic()
    if args.workdir:
        url = f"sqlite:///{workdir}/bench.db"
        lead_format, first, last = lead_numbering(url)
        fresh_lead, stage = scored_lead(url, lead_format.split("%")[0])
        give_events(url, fresh_lead)
        print(f"store: {workdir}/bench.db, leads {lead_format % first}…{lead_format % last}, fresh=true on "
              f"{fresh_lead} (crm-suite {stage}, 500 more events)", flush=True)  # fmt: skip
    elif args.database_url:
        database = f"bench_api_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        url = args.database_url.rsplit("/", 1)[0] + f"/{database}"
    else:
        url = f"sqlite:///{workdir}/bench.db"
    if not args.workdir:
        prepare(url, args.leads)
        lead_format, first, last, fresh_lead = "B%d", 2, args.leads - 1, "B1"
        print(f"store: {args.leads:,} leads with scored journeys, prepared in {time.monotonic() - began:.1f} s")
    engine = make_engine(url)
    key, _ = create_key(engine, "benchmark", ["admin"])
    process, base = start_service(url, args.workers, workdir)
    leads = last - first + 1 if args.workdir else args.leads
    results: dict[str, Any] = {"store": engine.dialect.name, "leads": leads, "workers": args.workers}
    try:
        run = uuid.uuid4().hex[:6]

        def lead(n: int) -> str:
            return lead_format % (first + n % (last - first + 1))

        def single(n: int) -> tuple[str, str, Any, int]:
            event = {"event_id": f"s-{run}-{n}", "lead_id": lead(n), "type": "page_view",
                     "occurred_at": NOW.isoformat(), "url": "/pricing"}  # fmt: skip
            return "POST", "/v1/events", event, 1

        def batch(n: int) -> tuple[str, str, Any, int]:
            events = [
                {"event_id": f"b-{run}-{n}-{i}", "lead_id": lead(n * 500 + i),
                 "type": "page_view", "occurred_at": NOW.isoformat(), "url": "/product"}
                for i in range(500)
            ]  # fmt: skip
            return "POST", "/v1/events", events, 500

        def lookup(n: int) -> tuple[str, str, Any, int]:
            return "GET", f"/v1/leads/{lead(random.randrange(last))}/score", None, 1

        def fresh(n: int) -> tuple[str, str, Any, int]:
            return "GET", f"/v1/leads/{fresh_lead}/score?fresh=true&product_line=crm-suite", None, 1

        phases = [("single events", single, "single", args.concurrency),
                  ("batches of 500", batch, "batch", args.batch_connections),
                  ("score look-ups", lookup, "lookup", args.concurrency),
                  ("fresh=true, 500 events", fresh, "fresh", args.fresh_connections)]  # fmt: skip
        phases = [phase for phase in phases if phase[2] in args.phases]
        prefixes = {"single events": f"s-{run}-", "batches of 500": f"b-{run}-"}
        for name, make, kind, concurrency in phases:
            server, client, load_before = server_cpu(process.pid), time.process_time(), load_average()
            database_before = database_cpu(engine)
            if args.client == "wrk":
                prefix = prefixes.get(name, "x-")
                phase = wrk_load.run(base, key, kind, args.seconds, concurrency, prefix=prefix, now=NOW.isoformat(),
                                     lead_format=lead_format, first=first, last=last, fresh=fresh_lead)  # fmt: skip
            else:
                phase = asyncio.run(load(base, key, args.seconds, concurrency, make))
                phase["accepted"] = phase["stored"]
                phase["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - client) / phase["requests"], 3)
            phase["server_cpu_ms_per_request"] = round(1000 * (server_cpu(process.pid) - server) / phase["requests"], 3)
            if database_before:
                after = database_cpu(engine)
                spent = sum(cpu - database_before.get(pid, 0.0) for pid, cpu in after.items())
                phase["database_cpu_ms_per_request"] = round(1000 * spent / phase["requests"], 3)
            phase["load_average"] = f"{load_before} → {load_average()}"
            if name in prefixes:  # every accepted event stored, none twice
                with engine.connect() as conn:
                    stored, distinct = conn.execute(
                        text("SELECT count(*), count(DISTINCT event_id) FROM events WHERE event_id LIKE :p"),
                        {"p": prefixes[name] + "%"},
                    ).one()
                # wrk stops with requests in flight: the service may store those without anyone hearing back.
                in_flight = concurrency * (500 if kind == "batch" else 1) if args.client == "wrk" else 0
                phase["stored_in_store"] = stored
                phase["exactly_once"] = (
                    stored == distinct and phase["accepted"] <= stored <= phase["accepted"] + in_flight
                )
            results[name] = phase
            print(f"{name}: {json.dumps(phase, ensure_ascii=False)}", flush=True)
        results["exactly_once"] = all(results[name]["exactly_once"] for name in prefixes if name in results)
        print(f"every accepted event stored exactly once: {results['exactly_once']}")
    finally:
        process.terminate()
        process.wait(timeout=30)
        engine.dispose()
        if database:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)  # the 200k-lead SQLite store is ≈ 110 MB
    print(json.dumps(results))


if __name__ == "__main__":
    main()
