"""The ``leadscore`` command line: short human summaries (rich), ``--json`` where scripts read it."""

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from models.files import SpecError

app = typer.Typer(help="Lead scoring pipelines: ingest, score, explain, adjust.", no_args_is_help=True)
console = Console()
DEMO_DIR = Path(__file__).resolve().parent.parent / "examples" / "demo"

PortfolioOpt = Annotated[
    Path | None,
    typer.Option(
        "--portfolio", "-p", help="Portfolio YAML (default: $LEADSCORE_PORTFOLIO, ./portfolio.yaml, the demo)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]


def portfolio_path(explicit: Path | None) -> Path:
    """The portfolio to use: the option, the environment, ./portfolio.yaml, else the bundled demo."""
    from store.settings import get_settings

    for candidate in (explicit, get_settings().portfolio, Path("portfolio.yaml")):
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
        if candidate is explicit and explicit is not None:
            raise typer.BadParameter(f"portfolio file {explicit} not found", param_hint="--portfolio")
    return DEMO_DIR / "portfolio.yaml"


def _load(path: Path | None) -> Any:
    from stages.portfolio import load_portfolio

    try:
        return load_portfolio(portfolio_path(path))
    except SpecError as exc:
        console.print(f"[red]invalid portfolio[/red]\n{exc}")
        raise typer.Exit(2) from exc


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no time zone; add Z or +HH:MM", param_hint="--as-of")
    return parsed.astimezone(UTC)


@app.command()
def init(directory: Path) -> None:
    """Write a starter portfolio (the demo, commented) into DIRECTORY."""
    if (directory / "portfolio.yaml").exists():
        console.print(f"[red]{directory / 'portfolio.yaml'} exists; not overwriting[/red]")
        raise typer.Exit(1)
    shutil.copytree(DEMO_DIR, directory, dirs_exist_ok=True)
    console.print(f"Starter portfolio written to [bold]{directory}[/bold]: edit portfolio.yaml and models/.")


@app.command()
def ingest(
    kind: Annotated[str, typer.Argument(help="leads | events")],
    file: Path,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate and store a CSV or JSONL file; bad rows are kept with their reason, re-ingesting is a no-op."""
    from flows.ingestion import ingest_file

    if kind not in ("leads", "events"):
        raise typer.BadParameter("leads or events", param_hint="KIND")
    report = ingest_file(_load(portfolio), kind, file)
    if json_out:
        print(json.dumps(report.summary(), default=str))
        return
    _print_ingest(report)


def _print_ingest(report: Any) -> None:
    s = report.summary()
    console.print(
        f"[bold]{s['kind']}[/bold] {s['source']}: read {s['read']}, inserted {s['inserted']}, "
        f"updated {s['updated']}, rejected {s['rejected']}, journeys opened {s['journeys_opened']}"
    )
    if report.rejects:
        table = Table("line", "field", "reason", title=f"rejected rows ({len(report.rejects)})")
        for reject in report.rejects[:10]:
            table.add_row(str(reject.line), reject.field or "", reject.reason)
        console.print(table)


@app.command()
def score(
    portfolio: PortfolioOpt = None,
    as_of: Annotated[str | None, typer.Option(help="Replay as of this time (ISO-8601 with zone); read-only")] = None,
    write: Annotated[bool, typer.Option(help="With --as-of: store the replayed scores")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Score every active journey of every product line (a Prefect flow run)."""
    from flows.scoring import score_portfolio

    path = portfolio_path(portfolio)
    _load(path)
    when = _time(as_of)
    summary = score_portfolio(str(path), as_of=when, write=write or when is None)
    if json_out:
        print(json.dumps(summary, default=str))
        return
    print_summary(summary)


def print_summary(summary: dict[str, Any]) -> None:
    console.print(
        f"scored [bold]{summary['scored']}[/bold] journeys as of {summary['as_of']}, "
        f"{summary['changed']} changed" + ("" if summary["run_id"] else " (read-only replay)")
    )
    for line, counts in summary["bands"].items():
        table = Table("stage", "band", "journeys", title=f"{line}: score distribution")
        for key, n in sorted(counts.items()):
            stage, band = key.split("/")
            table.add_row(stage, band, str(n))
        console.print(table)
    for where, rows in summary["top"].items():
        table = Table("lead", "score", "band", "top reasons", title=f"top leads: {where}")
        for row in rows[:5]:
            table.add_row(row["lead_id"], f"{row['score']:.1f}", row["band"], row["reasons"])
        console.print(table)


@app.command()
def explain(
    lead_id: str,
    product_line: Annotated[str | None, typer.Option("--product-line")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A lead's current score per product line and stage, the breakdown, and its score history."""
    from flows.engine import engine_for
    from store.queries import lead_history

    history = lead_history(engine_for(), lead_id, product_line)
    if history is None:
        console.print(f"[red]unknown lead {lead_id!r}[/red]")
        raise typer.Exit(1)
    if json_out:
        print(json.dumps(history, default=str))
        return
    for journey in history["journeys"]:
        console.print(
            f"[bold]{lead_id}[/bold] · {journey['product_line']} · stage [bold]{journey['stage']}[/bold]: "
            f"score {journey['score']} ({journey['band']}), qualification {journey['qualification'] or '—'}"
        )
        table = Table("rule", "points", title="breakdown")
        for entry in journey["breakdown"]:
            table.add_row(entry["rule"], f"{entry['points']:+g}")
        console.print(table)
        hist = Table("as of", "stage", "score", "band", "qualification", "run", title="history")
        for snap in journey["history"]:
            hist.add_row(
                str(snap["as_of"]),
                snap["stage"],
                f"{snap['score']:g}",
                snap["band"] or "",
                snap["qualification"] or "",
                snap["run_id"][:8],
            )
        console.print(hist)


@app.command()
def adjust(
    lead_id: str,
    product_line: Annotated[str, typer.Option("--product-line")],
    points: Annotated[float, typer.Option()],
    reason: Annotated[str, typer.Option()],
    author: Annotated[str, typer.Option()] = "cli",
    portfolio: PortfolioOpt = None,
) -> None:
    """Add or remove points by hand: an audited ``manual_adjustment`` event; the journey is rescored now."""
    from flows.engine import engine_for
    from flows.scoring import rescore_lead
    from store.queries import add_manual_adjustment

    loaded = _load(portfolio)
    loaded.line(product_line)
    engine = engine_for()
    event_id = f"adj-{uuid.uuid4().hex}"
    if not add_manual_adjustment(engine, lead_id, product_line, points, reason, author, event_id):
        console.print(f"[red]unknown lead {lead_id!r}[/red]")
        raise typer.Exit(1)
    result = rescore_lead(loaded, lead_id, product_line)
    console.print(f"{lead_id}: {points:+g} ({reason}) recorded as {event_id}; {product_line} score now {result}")


@app.command("score-file")
def score_file(
    model: Path,
    leads: Path,
    out: Annotated[Path, typer.Option("--out")],
    events: Annotated[Path | None, typer.Option("--events")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score a plain CSV of leads with one model file; keeps every column, adds score, band, top_rules."""
    from models.scorefile import score_csv
    from stages.portfolio import load_model

    try:
        spec = load_model(model)
    except SpecError as exc:
        console.print(f"[red]invalid model[/red]\n{exc}")
        raise typer.Exit(2) from exc
    result = score_csv(spec, leads, as_of=_time(as_of) or datetime.now(UTC), events_path=events)
    result.scored.write_csv(out)
    rejects_path = out.with_suffix(".rejects.csv")
    if result.rejects.height:
        result.rejects.write_csv(rejects_path)
    summary = {
        "scored": result.scored.height,
        "rejected": result.rejects.height,
        "out": str(out),
        "rejects": str(rejects_path) if result.rejects.height else None,
    }
    if json_out:
        print(json.dumps(summary))
        return
    console.print(
        f"scored {summary['scored']} rows → {out}; rejected {summary['rejected']}"
        + (f" → {rejects_path}" if result.rejects.height else "")
    )


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the SQLite file, the data and the outbox go")] = Path("."),
    leads: Annotated[int, typer.Option(help="Generated leads")] = 5_000,
    events: Annotated[int, typer.Option(help="Generated events")] = 100_000,
    seed: int = 0,
) -> None:
    """Generate the demo portfolio's data, ingest it and score it end to end on the embedded store."""
    from flows.demo import run_demo

    summary = run_demo(workdir, leads=leads, events=events, seed=seed, console=console)
    print_summary(summary)


def main() -> None:
    app()
