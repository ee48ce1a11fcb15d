"""Audience export benchmark: 100,000 demo leads in one audience, exported to each platform.

Every lead is given ads consent so that all of them are exported. Prints, per platform, the first
export (every lead is an add: normalise, hash, write the files and the uploaded state) and a
re-export with nothing changed (the daily steady state), plus the time to ingest the leads and to add
the members. Lead ingestion parses the phones (``flows.ingestion.parse_phones``, timed again on its
own as ``parse_phones_s``), so an export only re-parses a phone whose lead changed; ``--cold-phones``
forgets them before each first export, to time the worst case. Target: each export of 100,000 leads within 5 s.

    .venv/bin/python benchmarks/audiences.py [--leads 100000] [--database-url postgresql+psycopg://…]
"""

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"


@contextmanager
def database(url: str | None, tmp: str) -> Iterator[str]:
    """A SQLite file in ``tmp``, or a throw-away schema of the PostgreSQL database (dropped afterwards)."""
    if url is None:
        yield f"sqlite:///{tmp}/bench.db"
        return
    from tests.postgres import search_path_url, throwaway_schema

    with throwaway_schema(url, "bench") as schema:
        yield search_path_url(url, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--database-url", help="PostgreSQL URL (a throw-away schema is used); default: SQLite")
    parser.add_argument("--cold-phones", action="store_true", help="parse every phone again in each first export")
    args = parser.parse_args()

    from sqlalchemy import delete, select, update

    from examples.generate import generate
    from flows.audiences import export_audience
    from flows.ingestion import ingest_file, parse_phones
    from nurture.audiences import PLATFORMS, AudienceSpec
    from stages.portfolio import load_portfolio
    from store.audiences import PHONE_TABLE, add_members
    from store.db import make_engine
    from store.tables import Lead

    with tempfile.TemporaryDirectory(prefix="leadscore-audiences-") as tmp, database(args.database_url, tmp) as url:
        workdir = Path(tmp)
        data = generate(workdir / "data", leads=args.leads, events=1_000, seed=1, as_of=AS_OF)
        portfolio = load_portfolio(PORTFOLIO)
        started = time.perf_counter()
        ingest_file(portfolio, "leads", data.leads, url)
        ingest_s = time.perf_counter() - started
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(delete(PHONE_TABLE))
        started = time.perf_counter()
        parse_phones(portfolio, engine)
        parse_s = time.perf_counter() - started
        with engine.begin() as conn:
            conn.execute(update(Lead.__table__).values(ads_opt_in=True, unsubscribed_at=None))  # type: ignore[attr-defined]
            keys = [key for (key,) in conn.execute(select(Lead.key))]  # type: ignore[arg-type]
        started = time.perf_counter()
        added = add_members(engine, "bench", keys, run_id="bench", as_of=AS_OF)
        figures: dict[str, object] = {
            "leads": len(keys),
            "ingest_leads_s": round(ingest_s, 3),
            "parse_phones_s": round(parse_s, 3),
            "add_members_s": round(time.perf_counter() - started, 3),
        }
        spec = AudienceSpec(platforms=list(PLATFORMS), default_country="US")
        for step, platform in enumerate(PLATFORMS):
            for attempt in ("first", "again"):
                when = AS_OF + timedelta(hours=2 * step + (attempt == "again") + 1)
                if args.cold_phones and attempt == "first":
                    with engine.begin() as conn:
                        conn.execute(delete(PHONE_TABLE))
                started = time.perf_counter()
                result = export_audience(
                    engine, "bench", spec, platform, out_dir=workdir / "out", as_of=when, run_id=f"bench-{attempt}"
                )
                elapsed = time.perf_counter() - started
                figures[f"{platform}_{attempt}_s"] = round(elapsed, 3)
                figures[f"{platform}_{attempt}_rows"] = {"full": result.full, "added": result.added}
        figures["members_added"] = added
        figures["database"] = engine.dialect.name
        engine.dispose()
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
