"""``leadscore init``, ``demo`` and ``daily``: a starter portfolio, the demo end to end, the daily pipeline now."""

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal
from flows.cli.score import print_summary
from flows.progress import progress_bars
from store.settings import get_settings


@app.command()
def init(directory: Path) -> None:
    """Write a starter portfolio (the demo, commented) into DIRECTORY."""
    if (directory / "portfolio.yaml").exists():
        raise base.fail(f"{directory / 'portfolio.yaml'} exists; not overwriting", code=1)
    if directory.exists() and not directory.is_dir():
        raise base.fail(f"{directory} is a file, not a directory", code=1)
    shutil.copytree(base.DEMO_DIR, directory, dirs_exist_ok=True)
    secrets_file = write_secrets(directory)
    console.print(f"Starter portfolio written to [bold]{literal(directory)}[/bold]: edit portfolio.yaml and models/.")
    console.print(
        f"Secrets (unsubscribe and erasure keys) in {literal(secrets_file)}, git-ignored: "
        f"run leadscore from {literal(directory)}."
    )


def write_secrets(directory: Path) -> Path:
    """Fresh unsubscribe and erasure secrets in DIRECTORY's git-ignored secrets file (a secret already
    there is kept: the erasure key must never change, tombstones are made with it)."""
    import secrets

    from store.settings import SECRETS_FILE

    path = directory / SECRETS_FILE
    if not path.exists():
        path.touch(mode=0o600)
    lines = path.read_text().splitlines()
    for name in ("LEADSCORE_UNSUBSCRIBE_SECRET", "LEADSCORE_ERASURE_SECRET"):
        if not any(line.startswith(f"{name}=") for line in lines):
            lines.append(f"{name}={secrets.token_urlsafe(32)}")
    path.write_text("".join(f"{line}\n" for line in lines))
    ignore = directory / ".gitignore"
    listed = ignore.read_text().splitlines() if ignore.exists() else []
    if SECRETS_FILE not in listed:
        ignore.write_text("".join(f"{line}\n" for line in [*listed, SECRETS_FILE]))
    return path


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="The demo's own folder: its SQLite file, data, outbox, audiences and report")
    ] = Path("demo"),
    days: Annotated[int, typer.Option(min=1, help="Simulated days, ending today")] = 60,
    leads: Annotated[int, typer.Option(min=1, help="Generated leads")] = 3_000,
    events: Annotated[int, typer.Option(min=0, help="Generated events over the days")] = 60_000,
    seed: int = 0,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="The last simulated day (ISO-8601 with a zone; default today): with the same "
            "seed, the same store on any day"
        ),
    ] = None,
) -> None:
    """Simulate DAYS days of the demo portfolio: each day's data in, then the daily pipeline at business hours."""
    from flows.demo import run_demo

    summary = run_demo(
        workdir,
        leads=leads,
        events=events,
        days=days,
        seed=seed,
        as_of=base.parse_time(as_of),
        console=console,
        settings=get_settings(),
    )
    first = summary["days"][0]
    for report in first.get("ingested", []):
        what = f"read {report['read']:,}, inserted {report['inserted']:,}, rejected {report['rejected']}"
        console.print(f"day one, {literal(report['kind'])}: {literal(what)} (kept with reasons)")
    console.print(f"simulated {days} days in {summary['seconds']:.0f} s; the last day's run:")
    print_pipeline(summary)
    print_tour(summary)


def print_tour(summary: dict[str, Any]) -> None:
    """Where to look next: three commands on the demo's store, the report, the outbox, and how to go live."""
    days = summary["days"]
    console.print("\n[bold]What to try next[/bold], on the demo's store:")
    console.print(f"  export LEADSCORE_DATABASE_URL={summary['database_url']}")
    if summary.get("tour_lead"):
        lead, line = summary["tour_lead"]
        console.print(f"  leadscore explain {lead} --product-line {line}   # promoted, its owner alerted: the history")
    console.print(f"  leadscore score --as-of {days[len(days) // 2]['as_of']}   # the scores as they were that day")
    if summary.get("nurtured_lead"):
        lead = summary["nurtured_lead"]
        console.print(f"  leadscore nurture preview {lead}   # the nurture email this lead would get next, rendered")
    console.print(f"  report: {literal(summary['report_path'])}   outbox: {literal(summary['outbox'])}")
    console.print("  go live: `leadscore serve` runs the portfolio's `schedule:` on a Prefect server (README, Deploy)")
    from flows.cli.api import print_service_hint

    lead = summary["tour_lead"][0] if summary.get("tour_lead") else "LEAD_ID"
    print_service_hint(summary["database_url"], base.DEMO_DIR / "portfolio.yaml", lead)


@app.command()
def daily(
    portfolio: PortfolioOpt = None,
    inbox: Annotated[
        Path | None, typer.Option(help="Drop folder (default: the portfolio's ingest.drop_folder)")
    ] = None,
    audiences_dir: Annotated[Path, typer.Option(help="Where audience files go")] = Path("audiences"),
    report: Annotated[Path, typer.Option(help="The HTML report to write")] = Path("report.html"),
    json_out: JsonOpt = False,
) -> None:
    """The daily pipeline now: ingest the drop folder, score (transitions, triggers), nurture, audiences, report."""
    from flows.daily import daily_pipeline

    path = base.portfolio_path(portfolio)
    base.load_portfolio_or_fail(path)
    try:
        with progress_bars(base.progress_console(json_out)):
            summary = daily_pipeline(
                str(path),
                inbox=None if inbox is None else str(inbox),
                audiences_dir=str(audiences_dir),
                report_path=str(report),
            )
    except RuntimeError as exc:
        raise base.fail("the daily pipeline failed", exc, code=1) from exc
    if json_out:
        print(base.to_json(summary))
        return
    print_pipeline(summary)


def print_pipeline(summary: dict[str, Any]) -> None:
    """The daily pipeline's summary: files ingested, the scoring run, nurture, audiences, the report."""
    for report in summary.get("ingested", []):
        what = (
            report.get("error")
            or f"read {report['read']:,}, inserted {report['inserted']:,}, rejected {report['rejected']}"
        )
        console.print(f"ingested {literal(report['kind'])} {literal(Path(report['file']).name)}: {literal(what)}")
    print_summary(summary["score"])
    nurture = summary.get("nurture", {})
    if nurture:
        console.print(
            "nurture: enrolled "
            + literal(json.dumps(nurture.get("enrolled", {})))
            + ", emails "
            + literal(json.dumps(nurture.get("deliveries", {})))
            + ", exits "
            + literal(json.dumps(nurture.get("exits", {})))
        )
        for why, count in nurture.get("deferred", {}).items():
            until = nurture.get("deferred_until", {}).get(why, "?")
            console.print(f"nurture deferred {count:,} emails ({literal(why)}) until {literal(until)}")
        for note in nurture.get("notes", []):
            console.print(f"[yellow]note:[/yellow] {literal(note)}")
    for export in summary.get("audiences", []):
        console.print(
            f"audience {literal(export['audience'])} → {literal(export['platform'])}: {export['full']:,} leads "
            f"(+{export['added']:,} / -{export['removed']:,})"
        )
    if "report_path" in summary:
        console.print(f"report: {literal(summary['report_path'])}")
