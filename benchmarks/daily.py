"""The daily pipeline on a daily increment (target: ≤ 60 s end to end for a 200k-lead store on SQLite).

Takes the store that ``benchmarks/score.py --workdir DIR`` prepared (200,000 leads, 5,000,000 events, the
demo portfolio), drops a day's increment into an inbox — ``--new-leads`` new leads (2,000) and
``--new-events`` events (50,000), half of them from existing leads, plus a small CRM stage-update file —
and runs ``daily_pipeline`` on it: ingest, score with transitions and triggers, nurture, audiences, report.
Prints the time of each step and the peak memory (this process and its children), on a copy of the store
so the prepared one is left as it was.

    .venv/bin/python benchmarks/score.py --workdir /tmp/bench          # once: generates and ingests
    .venv/bin/python benchmarks/daily.py --workdir /tmp/bench
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo" / "portfolio.yaml"


def increment(inbox: Path, existing: pl.DataFrame, new_leads: int, new_events: int, as_of: datetime) -> None:
    """A day of data: fresh leads (ids that cannot collide with the store's), events of new and old leads."""
    from examples.generate import generate

    scratch = inbox.parent / "increment"
    generate(scratch, leads=new_leads, events=new_events, seed=20261123, as_of=as_of, days=1)
    leads = pl.read_csv(scratch / "leads.csv", infer_schema=False)
    events = pl.read_csv(scratch / "events.csv", infer_schema=False)
    renamed = pl.col("lead_id").str.replace("LD-", "NEW-")
    leads = leads.with_columns(renamed)
    old = existing.sample(n=events.height, with_replacement=True, seed=1)["lead_id"]
    events = events.with_columns(
        ("daily-" + pl.col("event_id")).alias("event_id"),
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(renamed).otherwise(old).alias("lead_id"),
    )
    for kind, frame in (("leads", leads), ("events", events)):
        (inbox / kind).mkdir(parents=True, exist_ok=True)
        frame.write_csv(inbox / kind / f"{kind}-{as_of:%Y%m%d}.csv")
    moved = existing.head(200).with_columns(
        pl.lit("crm-suite").alias("product_line"),
        pl.lit("lost").alias("stage"),
        pl.lit((as_of - timedelta(hours=2)).isoformat()).alias("changed_at"),
        pl.lit("hubspot").alias("source"),
    )
    (inbox / "stage_updates").mkdir(parents=True, exist_ok=True)
    moved.write_csv(inbox / "stage_updates" / f"crm-{as_of:%Y%m%d}.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the --workdir of benchmarks/score.py")
    parser.add_argument("--new-leads", type=int, default=2_000)
    parser.add_argument("--new-events", type=int, default=50_000)
    args = parser.parse_args()
    prepared = args.workdir / "bench.db"
    if not prepared.exists():
        sys.exit(f"{prepared} not found: run benchmarks/score.py --workdir {args.workdir} first")
    scratch = Path(tempfile.mkdtemp(prefix="leadscore-daily-"))
    database = scratch / "leadscore.db"
    shutil.copy(prepared, database)
    os.environ["LEADSCORE_OUTBOX_DIR"] = str(scratch / "outbox")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    url = f"sqlite:///{database}"

    from prefect.settings import temporary_settings

    from flows.daily import daily_pipeline
    from flows.engine import engine_for
    from store.reader import read_frame

    existing = read_frame(engine_for(url), "SELECT lead_id FROM leads", {}, {"lead_id": pl.Utf8})
    as_of = datetime.now(UTC).replace(microsecond=0)
    inbox = scratch / "inbox"
    increment(inbox, existing, args.new_leads, args.new_events, as_of)
    kwargs = {"audiences_dir": str(scratch / "audiences"), "report_path": str(scratch / "report.html")}
    with temporary_settings({"flows.heartbeat_frequency": None}):
        daily_pipeline(str(DEMO), database_url=url, as_of=as_of - timedelta(minutes=5), **kwargs)  # warm-up
        start = time.perf_counter()
        summary = daily_pipeline(str(DEMO), database_url=url, as_of=as_of, inbox=str(inbox), **kwargs)
        total = time.perf_counter() - start
    print(f"store: {len(existing):,} leads; increment: {args.new_leads:,} new leads, {args.new_events:,} events")
    for step, seconds in summary["timings"].items():
        print(f"{step:>10}  {seconds:7.2f} s")
    print(f"{'total':>10}  {total:7.2f} s  (target <= 60 s)")
    score = summary["score"]
    print(f"scored {score['scored']:,} journeys, {score['changed']:,} changed")
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak memory: {self_kb / 1024:,.0f} MB (pipeline process), {children_kb / 1024:,.0f} MB (largest reader)")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
