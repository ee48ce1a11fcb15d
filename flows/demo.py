"""``leadscore demo``: generate the demo portfolio's data, ingest it and score it, all on the embedded store."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console

from examples.generate import generate
from flows.daily import daily_pipeline
from flows.ingestion import ingest_file
from flows.progress import progress_bars
from nurture.spec import load_nurture
from stages.portfolio import load_portfolio
from store.settings import Settings

DEMO_PORTFOLIO = Path(__file__).resolve().parent.parent / "examples" / "demo" / "portfolio.yaml"


def run_demo(
    workdir: Path,
    *,
    leads: int,
    events: int,
    seed: int = 0,
    as_of: datetime | None = None,
    console: Console | None = None,
    settings: Settings,
) -> dict[str, Any]:
    """The main job end to end: generate (once), ingest, then the daily pipeline. Returns its summary.
    Re-running reuses the generated files and changes nothing in the store."""
    console = console or Console(quiet=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # The store, owner alerts and nurture emails are the demo's own unless the settings name others.
    configured = settings.model_fields_set
    outbox = (settings.outbox_dir if "outbox_dir" in configured else workdir / "outbox").resolve()
    outbox.mkdir(parents=True, exist_ok=True)
    database_url = (
        settings.database_url if "database_url" in configured else f"sqlite:///{(workdir / 'leadscore.db').resolve()}"
    )
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    if as_of is None:  # dated inside the nurture send window, so that the demo shows its emails any time
        now = datetime.now(UTC).replace(microsecond=0)
        as_of = load_nurture(portfolio).send_window.last_open(now, ZoneInfo(portfolio.spec.timezone))
        if as_of != now:
            console.print(f"dated {as_of.isoformat()}: the last minute of the nurture send window before now")
    data_dir = workdir / "demo-data"
    if not (data_dir / "events.csv").exists():
        with console.status(f"generating {leads:,} leads and {events:,} events"):
            generate(data_dir, leads=leads, events=events, seed=seed, as_of=as_of, bad_rows=4)
    for kind in ("leads", "events"):
        with console.status(f"ingesting {kind}"):
            outcome = ingest_file(portfolio, kind, data_dir / f"{kind}.csv", database_url)
        s = outcome.summary()
        console.print(
            f"ingested {kind}: read {s['read']:,}, inserted {s['inserted']:,}, rejected {s['rejected']} "
            f"(kept with reasons), journeys opened {s['journeys_opened']:,}"
        )
        for reject in outcome.rejects[:5]:
            console.print(f"  [yellow]rejected[/yellow] line {reject.line}, {reject.field or 'row'}: {reject.reason}")
    console.print("daily pipeline: score, transitions, triggers, nurture, audiences, report (a Prefect flow run)")
    with progress_bars(console):
        summary = daily_pipeline(
            str(DEMO_PORTFOLIO),
            database_url=database_url,
            as_of=as_of,
            audiences_dir=str(workdir / "audiences"),
            report_path=str(workdir / "report.html"),
            outbox_dir=str(outbox),
        )
    console.print(f"store: {database_url}")
    return {**summary, "store": database_url}
