"""``leadscore demo``: sixty days of the demo portfolio, simulated day by day on the embedded store.

The generator draws the period; each simulated day drops that day's leads, events and CRM stage
updates into the pipeline's drop folder and runs the daily pipeline's steps (``daily_in_process``: the
flow's own steps as plain calls) dated at that day's business hours in the portfolio's time zone (so the
send window opens, nurture emails go to the outbox and owner alerts fire at crossings). Between days,
``examples.simulate`` answers what leadscore did: opens and clicks of the emails sent the day before
(keyed by the Message-IDs the outbox wrote), the visits clicks bring, the late-funnel activity of journeys
past discovery, and the deals sales closes.
"""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from examples.generate import generate
from examples.simulate import World, respond
from flows.daily import daily_in_process
from flows.database import engine_for
from flows.startup import prepare_process
from nurture.context import load_context
from store.outbox import messages
from store.scores import journey_positions, promoted_and_alerted
from store.settings import Settings

DEMO_PORTFOLIO = Path(__file__).resolve().parent.parent / "examples" / "demo" / "portfolio.yaml"
BUSINESS_HOUR = time(10, 0)  # each simulated run: inside the portfolio's send window on weekdays


def run_days(timezone: str, last: date, days: int) -> list[datetime]:
    """The UTC instants of ``days`` daily runs at the business hour, the last one on ``last``."""
    zone = ZoneInfo(timezone)
    return [
        datetime.combine(last - timedelta(days=days - 1 - i), BUSINESS_HOUR, zone).astimezone(UTC) for i in range(days)
    ]


def run_demo(
    workdir: Path,
    *,
    leads: int,
    events: int,
    days: int = 60,
    seed: int = 0,
    as_of: datetime | None = None,
    console: Console | None = None,
    settings: Settings,
) -> dict[str, Any]:
    """Simulate ``days`` days ending on ``as_of``'s day (default today) into ``workdir``; return the last
    day's pipeline summary, with ``days`` (the per-day counts) and ``seconds`` added."""
    console = console or Console(quiet=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # The store, owner alerts and nurture emails are the demo's own unless the settings name others.
    configured = settings.model_fields_set
    outbox = (settings.outbox_dir if "outbox_dir" in configured else workdir / "outbox").resolve()
    outbox.mkdir(parents=True, exist_ok=True)
    database_url = (
        settings.database_url if "database_url" in configured else f"sqlite:///{(workdir / 'leadscore.db').resolve()}"
    )
    ctx = load_context(DEMO_PORTFOLIO)  # the portfolio, its tracks and compiled templates: once for every day
    timezone = ctx.portfolio.spec.timezone
    zone = ZoneInfo(timezone)
    runs = run_days(timezone, (as_of or datetime.now(UTC)).astimezone(zone).date(), days)
    data_dir, inbox = workdir / "demo-data", workdir / "inbox"
    started = datetime.now(UTC)
    with console.status(f"generating {days} days: {leads:,} leads and {events:,} events"):
        generate(data_dir, leads=leads, events=events, seed=seed, as_of=runs[-1], days=days, bad_rows=4)
        world = World.read(data_dir, start=runs[0])
    engine = engine_for(database_url)
    answered: set[str] = set()
    nurtured: set[str] = set()
    per_day: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    settings = settings.model_copy(update={"database_url": database_url, "outbox_dir": outbox})
    prepare_process(settings)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Each day runs the daily pipeline's steps in this process (``daily_in_process``): a flow run per day
    # and per step would cost more than the steps themselves, and the demo keeps no Prefect history.
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("simulating days", total=days)
        for i, run in enumerate(runs):
            bar.update(task, description=f"simulating {run.astimezone(zone):%a %d %b}")
            previous = runs[i - 1] if i else None
            day_leads, day_events = world.arriving(previous, run)
            updates = pl.DataFrame()
            if previous is not None:
                journeys = journey_positions(engine)
                sends = _new_sends(engine, journeys, answered)
                nurtured.update(sends["lead_id"].to_list())
                rng = np.random.default_rng([seed, i])
                answers = respond(world, sends, journeys, nurtured, since=previous, until=run, rng=rng)
                day_events = pl.concat([day_events, answers.events]).sort("occurred_at", maintain_order=True)
                updates = answers.stage_updates
            name = f"{run.astimezone(zone):%Y-%m-%d}.csv"
            for kind, rows in (("leads", day_leads), ("events", day_events), ("stage_updates", updates)):
                if rows.height:
                    (inbox / kind).mkdir(parents=True, exist_ok=True)
                    rows.write_csv(inbox / kind / name)
            report = workdir / "report.html" if run == runs[-1] else None
            summary = daily_in_process(ctx, settings, run, inbox, workdir / "audiences", report)
            per_day.append(_day(run, summary, day_leads.height, day_events.height, updates.height))
            bar.advance(task)
    summary["days"] = per_day
    summary["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    summary["database_url"] = database_url
    summary["outbox"] = str(outbox)
    summary["tour_lead"] = promoted_and_alerted(engine)
    summary["nurtured_lead"] = min(nurtured, default=None)
    return summary


def _new_sends(engine: Engine, journeys: pl.DataFrame, answered: set[str]) -> pl.DataFrame:
    """``lead_id, message_id`` of the nurture emails written since the last look (each is answered once)."""
    fresh = [
        (m["lead_key"], m["message_id"]) for m in messages(engine, kind="nurture") if m["message_id"] not in answered
    ]
    answered.update(message_id for _, message_id in fresh)
    keys = journeys.select("lead_key", "lead_id").unique("lead_key", maintain_order=True)
    frame = pl.DataFrame(fresh, schema={"lead_key": pl.Int64, "message_id": pl.Utf8}, orient="row")
    return frame.join(keys, on="lead_key", how="inner", maintain_order="left").select("lead_id", "message_id")


def _day(run: datetime, summary: dict[str, Any], leads: int, events: int, updates: int) -> dict[str, Any]:
    """What one simulated day brought in and what its run did."""
    score = summary.get("score", {})
    nurture = summary.get("nurture", {})
    return {
        "as_of": run.isoformat(),
        "leads": leads,
        "events": events,
        "stage_updates": updates,
        "transitions": score.get("transitions", {}),
        "firings": score.get("firings", {}),
        "emails": nurture.get("deliveries", {}),
        "timings": summary.get("timings", {}),
        "ingested": [
            {k: r.get(k) for k in ("kind", "read", "inserted", "rejected")} for r in summary.get("ingested", [])
        ],
    }
