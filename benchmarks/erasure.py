"""Erasure benchmark: erase 1,000 people from a store of 20,000 demo leads and 500,000 events, then re-ingest.

Prints the time to erase (wall and CPU), the rows deleted, and what tombstones cost a later ingestion:
the same leads file re-ingested before the erasure (every row already stored) and after it (the erased
rows refused by their keyed hash). The machine is shared: CPU seconds and the load average are printed
beside wall time.

    .venv/bin/python benchmarks/erasure.py [--leads 20000] [--events 500000] [--erase 1000] [--database-url …]
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"
SECRET = "benchmark-erasure-key-0123456789abcdef"


def cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), cpu_s()
    result = function()
    return result, round(time.perf_counter() - wall, 3), round(cpu_s() - cpu, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--erase", type=int, default=1_000)
    parser.add_argument("--database-url", help="PostgreSQL URL (a throw-away schema is used); default: SQLite")
    args = parser.parse_args()

    from benchmarks.audiences import database
    from examples.generate import generate
    from flows.erasure import erase_leads
    from flows.ingestion import ingest_file
    from stages.portfolio import load_portfolio
    from store.db import make_engine
    from store.tables import Lead
    from store.tombstones import ERASED_REASON

    with tempfile.TemporaryDirectory(prefix="leadscore-erasure-") as tmp, database(args.database_url, tmp) as url:
        data = generate(Path(tmp) / "data", leads=args.leads, events=args.events, seed=1, as_of=AS_OF)
        portfolio = load_portfolio(PORTFOLIO)
        ingest_file(portfolio, "leads", data.leads, url)
        ingest_file(portfolio, "events", data.events, url)
        engine = make_engine(url)
        with engine.connect() as conn:
            step = max(1, args.leads // args.erase)
            ids = [
                lead_id
                for (lead_id,) in conn.execute(Lead.__table__.select().with_only_columns(Lead.__table__.c.lead_id))
            ]  # type: ignore[attr-defined]
        chosen = ids[::step][: args.erase]
        _, before_s, before_cpu = timed(lambda: ingest_file(portfolio, "leads", data.leads, url))
        outcome, erase_s, erase_cpu = timed(
            lambda: erase_leads(engine, portfolio, chosen, secret=SECRET, actor="benchmark")
        )
        after, after_s, after_cpu = timed(
            lambda: ingest_file(portfolio, "leads", data.leads, url, erasure_secret=_secret())
        )
        figures = {
            "database": engine.dialect.name,
            "leads": args.leads,
            "events": args.events,
            "erased": len(outcome.erased),
            "rows_deleted": sum(outcome.rows.values()),
            "events_deleted": outcome.rows.get("events", 0),
            "erase_s": erase_s,
            "erase_cpu_s": erase_cpu,
            "reingest_before_s": before_s,
            "reingest_before_cpu_s": before_cpu,
            "reingest_after_s": after_s,
            "reingest_after_cpu_s": after_cpu,
            "refused_as_erased": sum(r.reason == ERASED_REASON for r in after.report.rejects),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3] if os.path.exists("/proc/loadavg") else None,
        }
    print(json.dumps(figures, indent=2))


def _secret() -> Any:
    from pydantic import SecretStr

    return SecretStr(SECRET)


if __name__ == "__main__":
    main()
