"""The ``leadscore`` command line: short human summaries (rich), ``--json`` where scripts read it."""

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

# Prefect's temporary server otherwise tries to phone home on every CLI run (and logs an error offline).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flows.progress import progress_bars
from models.files import SpecError

app = typer.Typer(help="Lead scoring pipelines: ingest, score, explain, adjust.", no_args_is_help=True)
console = Console()
# Problems go to stderr (so ``--json`` output stays parseable), unwrapped, and never read as rich markup:
# a message quoting a regular expression such as '[a-z]+' must print as written.
errors = Console(stderr=True, soft_wrap=True, highlight=False)
DEMO_DIR = Path(__file__).resolve().parent.parent / "examples" / "demo"

PortfolioOpt = Annotated[
    Path | None,
    typer.Option(
        "--portfolio", "-p", help="Portfolio YAML (default: $LEADSCORE_PORTFOLIO, ./portfolio.yaml, the demo)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
InputFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def fail(title: str, detail: object = None, code: int = 2) -> typer.Exit:
    """Print a problem to stderr (``detail`` verbatim) and return the ``Exit`` to raise."""
    errors.print(title, style="red", markup=False)
    if detail is not None:
        errors.print(str(detail), markup=False)
    return typer.Exit(code)


def _t(value: object) -> str:
    """A value shown as written: rich would read '[vip]' in a reason or rule name as a style tag and drop it."""
    return escape("" if value is None else str(value))


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def portfolio_path(explicit: Path | None) -> Path:
    """The portfolio to use: the option, else $LEADSCORE_PORTFOLIO, else ./portfolio.yaml, else the bundled demo.

    A portfolio that is named (option or environment) but missing is an error, never a silent fallback.
    """
    from store.settings import get_settings

    if explicit is not None:
        if not explicit.is_file():
            raise typer.BadParameter(f"portfolio file {explicit} not found", param_hint="--portfolio")
        return explicit
    configured = get_settings().portfolio
    if configured is not None:
        if not Path(configured).is_file():
            raise typer.BadParameter(f"portfolio file {configured} not found", param_hint="LEADSCORE_PORTFOLIO")
        return Path(configured)
    if Path("portfolio.yaml").is_file():
        return Path("portfolio.yaml")
    return DEMO_DIR / "portfolio.yaml"


def _load(path: Path | None) -> Any:
    from stages.portfolio import load_portfolio

    try:
        return load_portfolio(portfolio_path(path))
    except SpecError as exc:
        raise fail("invalid portfolio", exc) from exc


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint="--as-of") from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no time zone; add Z or +HH:MM", param_hint="--as-of")
    return parsed.astimezone(UTC)


@app.command()
def init(directory: Path) -> None:
    """Write a starter portfolio (the demo, commented) into DIRECTORY."""
    if (directory / "portfolio.yaml").exists():
        raise fail(f"{directory / 'portfolio.yaml'} exists; not overwriting", code=1)
    if directory.exists() and not directory.is_dir():
        raise fail(f"{directory} is a file, not a directory", code=1)
    shutil.copytree(DEMO_DIR, directory, dirs_exist_ok=True)
    console.print(f"Starter portfolio written to [bold]{_t(directory)}[/bold]: edit portfolio.yaml and models/.")


@app.command()
def ingest(
    kind: Annotated[str, typer.Argument(help="leads | events")],
    file: InputFile,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate and store a CSV or JSONL file; bad rows are kept with their reason, re-ingesting is a no-op."""
    if kind not in ("leads", "events"):
        raise typer.BadParameter("leads or events", param_hint="KIND")
    _ingest(kind, file, portfolio, json_out)


stages_app = typer.Typer(help="Funnel stages: CRM stage updates.", no_args_is_help=True)
app.add_typer(stages_app, name="stages")


@stages_app.command("ingest")
def stages_ingest(file: InputFile, portfolio: PortfolioOpt = None, json_out: JsonOpt = False) -> None:
    """Store CRM stage updates (lead_id, product_line, stage, changed_at, source) for the next scoring run.

    Moves backwards and into terminal stages (customer, lost) are accepted; bad rows are kept with
    their reason, re-ingesting is a no-op.
    """
    _ingest("stage_updates", file, portfolio, json_out)


def _ingest(kind: str, file: Path, portfolio: Path | None, json_out: bool) -> None:
    from flows.ingestion import ingest_file
    from store.ingest import write_rejects_csv

    loaded = _load(portfolio)
    try:
        with _row_progress(f"ingesting {file.name}", file, quiet=json_out) as progress:
            report = ingest_file(loaded, kind, file, progress=progress)
    except ValueError as exc:  # a file-level problem: unsupported type, bad header
        raise fail(f"cannot ingest {file}", exc) from exc
    # Besides the ingest_rejects table, a sidecar file beside the input for whoever fixes the rows.
    rejects_path = file.with_name(file.name + ".rejects.csv")
    if report.rejects:
        write_rejects_csv(report.report, rejects_path)
    else:
        rejects_path.unlink(missing_ok=True)
    if json_out:
        print(_json(report.summary()))
        return
    _print_ingest(report)


def _data_rows(path: Path) -> int:
    """Lines of the file less a CSV header: the progress bar's total (a quoted cell spanning lines makes it
    an overestimate, never a wrong count: the summary counts rows exactly)."""
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(0, lines - (path.suffix.lower() == ".csv"))


@contextmanager
def _row_progress(title: str, path: Path, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar in rows, with rate and time left; on stderr with ``--json``; gone when done."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors if quiet else console, transient=True) as bar:
        task = bar.add_task(_t(title), total=_data_rows(path))
        yield lambda done: bar.update(task, completed=done)


def _print_ingest(report: Any) -> None:
    s = report.summary()
    console.print(
        f"[bold]{s['kind']}[/bold] {_t(s['source'])}: read {s['read']}, inserted {s['inserted']}, "
        f"updated {s['updated']}, rejected {s['rejected']}, journeys opened {s['journeys_opened']}"
    )
    if report.rejects:
        table = Table("line", "field", "reason", title=f"rejected rows ({len(report.rejects)})")
        for reject in report.rejects[:10]:
            table.add_row(str(reject.line), _t(reject.field), _t(reject.reason))
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
    with progress_bars(errors if json_out else console):
        summary = score_portfolio(str(path), as_of=when, write=write or when is None)
    if json_out:
        print(_json(summary))
        return
    print_summary(summary)


def print_summary(summary: dict[str, Any]) -> None:
    console.print(
        f"scored [bold]{summary['scored']}[/bold] journeys as of {summary['as_of']}, "
        f"{summary['changed']} changed" + ("" if summary["run_id"] else " (read-only replay)")
    )
    for line, counts in summary["bands"].items():
        table = Table("stage", "band", "journeys", title=f"{_t(line)}: score distribution")
        for key, n in sorted(counts.items()):
            stage, band = key.split("/")
            table.add_row(_t(stage), _t(band), str(n))
        console.print(table)
    for where, rows in summary["top"].items():
        table = Table("lead", "score", "band", "top reasons", title=f"top leads: {_t(where)}")
        for row in rows[:5]:
            table.add_row(_t(row["lead_id"]), f"{row['score']:.1f}", _t(row["band"]), _t(row["reasons"]))
        console.print(table)
    changes = Table("product line", "what", "journeys", title="funnel: transitions, qualifications, trigger firings")
    for kind in ("transitions", "milestones", "firings"):
        for line, counts in summary.get(kind, {}).items():
            for key, n in counts.items():
                changes.add_row(_t(line), _t(key if kind != "milestones" else f"reached {key}"), str(n))
    if changes.row_count:
        console.print(changes)
    for action, statuses in summary.get("actions", {}).items():
        console.print(f"{_t(action)}: " + ", ".join(f"{n} {_t(status)}" for status, n in sorted(statuses.items())))


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
        raise fail(f"unknown lead {lead_id!r}", code=1)
    if json_out:
        print(_json(history))
        return
    if not history["journeys"]:
        where = f" in {product_line}" if product_line else ""
        console.print(f"{_t(lead_id)} has no journey{_t(where)} yet (one opens when the lead shows interest in a line)")
    for journey in history["journeys"]:
        scored = (
            f"score {journey['score']} ({_t(journey['band'])})"
            if journey["score"] is not None
            else "not scored yet (run leadscore score)"
        )
        console.print(
            f"[bold]{_t(lead_id)}[/bold] · {_t(journey['product_line'])} · stage [bold]{_t(journey['stage'])}[/bold]: "
            f"{scored}, qualification {_t(journey['qualification'] or '—')}"
        )
        table = Table("rule", "points", title="breakdown")
        for entry in journey["breakdown"]:
            table.add_row(_t(entry["rule"]), f"{entry['points']:+g}")
        console.print(table)
        hist = Table("as of", "stage", "score", "band", "qualification", "run", title="history")
        for snap in journey["history"]:
            hist.add_row(
                str(snap["as_of"]),
                _t(snap["stage"]),
                f"{snap['score']:g}",
                _t(snap["band"]),
                _t(snap["qualification"]),
                snap["run_id"][:8],
            )
        console.print(hist)
        if journey["transitions"]:
            moves = Table("at", "from", "to", "reason", "score before", "score after", title="stage history")
            for move in journey["transitions"]:
                reason = move["reason"] + (f" ({move['source']})" if move["source"] else "")
                moves.add_row(
                    str(move["at"]),
                    _t(move["from_stage"]),
                    _t(move["to_stage"]),
                    _t(reason),
                    _number(move["score_before"]),
                    _number(move["score_after"]),
                )
            console.print(moves)
        if journey["qualifications"]:
            reached = Table("qualification", "reached at", "stage", "score", "top reasons", title="qualifications")
            for milestone in journey["qualifications"]:
                top = sorted(milestone["breakdown"], key=lambda e: -abs(e["points"]))[:3]
                reached.add_row(
                    _t(milestone["qualification"]),
                    str(milestone["reached_at"]),
                    _t(milestone["stage"]),
                    f"{milestone['score']:g}",
                    _t("; ".join(f"{e['rule']}:{e['points']:+g}" for e in top)),
                )
            console.print(reached)
    if history["tags"]:
        console.print(f"tags: {_t(', '.join(history['tags']))}")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


@app.command()
def adjust(
    lead_id: str,
    product_line: Annotated[str, typer.Option("--product-line")],
    points: Annotated[float, typer.Option()],
    reason: Annotated[str, typer.Option()],
    author: Annotated[str, typer.Option()] = "cli",
    portfolio: PortfolioOpt = None,
) -> None:
    """Add or remove points by hand: an audited ``manual_adjustment`` event; the journey is rescored now.

    Like any event tagged with a product line, the adjustment opens the lead's journey in that line if needed.
    """
    from sqlmodel import Session

    from flows.engine import engine_for
    from flows.scoring import rescore_lead
    from stages.journeys import new_journeys
    from store.queries import add_manual_adjustment, lead_key_of
    from store.scores import open_journeys

    loaded = _load(portfolio)
    if product_line not in loaded.product_lines:
        known = ", ".join(sorted(loaded.product_lines))
        raise typer.BadParameter(f"unknown product line {product_line!r}; known: {known}", param_hint="--product-line")
    if not reason.strip():
        raise typer.BadParameter("a reason is required (it is the audit trail)", param_hint="--reason")
    engine = engine_for()
    event_id = f"adj-{uuid.uuid4().hex}"
    if not add_manual_adjustment(engine, lead_id, product_line, points, reason, author, event_id):
        raise fail(f"unknown lead {lead_id!r}", code=1)
    with Session(engine) as session:
        key = lead_key_of(session, lead_id)
    open_journeys(engine, new_journeys(loaded, [(key, product_line, datetime.now(UTC))]))
    result = rescore_lead(loaded, lead_id, product_line)
    console.print(
        f"{_t(lead_id)}: {points:+g} ({_t(reason)}) recorded as {event_id}; {_t(product_line)} score now {result}"
    )


@app.command("score-file")
def score_file(
    model: InputFile,
    leads: InputFile,
    out: Annotated[Path, typer.Option("--out")],
    events: Annotated[Path | None, typer.Option("--events", exists=True, dir_okay=False, readable=True)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score a plain CSV of leads with one model file; keeps every column, adds score, band, top_rules."""
    from models.scorefile import score_csv
    from stages.portfolio import load_model

    try:
        spec = load_model(model)
    except SpecError as exc:
        raise fail("invalid model", exc) from exc
    when = _time(as_of) or datetime.now(UTC)
    try:
        result = score_csv(spec, leads, as_of=when, events_path=events)
    except ValueError as exc:  # a file-level problem: a missing column, a bad header
        raise fail("cannot score the file", exc) from exc
    result.scored.write_csv(out)
    rejects_path = out.with_suffix(".rejects.csv")
    if result.rejects.height:
        result.rejects.write_csv(rejects_path)
    else:
        rejects_path.unlink(missing_ok=True)  # a previous run's rejects would read as this run's
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
        f"scored {summary['scored']} rows → {_t(out)}; rejected {summary['rejected']}"
        + (f" → {_t(rejects_path)}" if result.rejects.height else "")
    )


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the SQLite file, the data and the outbox go")] = Path("."),
    leads: Annotated[int, typer.Option(help="Generated leads")] = 5_000,
    events: Annotated[int, typer.Option(help="Generated events")] = 100_000,
    seed: int = 0,
) -> None:
    """Generate the demo portfolio's data, ingest it and run the daily pipeline on the embedded store."""
    from flows.demo import run_demo

    summary = run_demo(workdir, leads=leads, events=events, seed=seed, console=console)
    print_pipeline(summary)


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

    path = portfolio_path(portfolio)
    _load(path)
    try:
        with progress_bars(errors if json_out else console):
            summary = daily_pipeline(
                str(path),
                inbox=None if inbox is None else str(inbox),
                audiences_dir=str(audiences_dir),
                report_path=str(report),
            )
    except RuntimeError as exc:
        raise fail("the daily pipeline failed", exc, code=1) from exc
    if json_out:
        print(_json(summary))
        return
    print_pipeline(summary)


def print_pipeline(summary: dict[str, Any]) -> None:
    """The daily pipeline's summary: files ingested, the scoring run, nurture, audiences, the report."""
    for report in summary.get("ingested", []):
        what = (
            report.get("error")
            or f"read {report['read']:,}, inserted {report['inserted']:,}, rejected {report['rejected']}"
        )
        console.print(f"ingested {_t(report['kind'])} {_t(Path(report['file']).name)}: {_t(what)}")
    print_summary(summary["score"])
    nurture = summary.get("nurture", {})
    if nurture:
        console.print(
            "nurture: enrolled "
            + _t(json.dumps(nurture.get("enrolled", {})))
            + ", emails "
            + _t(json.dumps(nurture.get("deliveries", {})))
            + ", exits "
            + _t(json.dumps(nurture.get("exits", {})))
        )
    for export in summary.get("audiences", []):
        console.print(
            f"audience {_t(export['audience'])} → {_t(export['platform'])}: {export['full']:,} leads "
            f"(+{export['added']:,} / -{export['removed']:,})"
        )
    if "report_path" in summary:
        console.print(f"report: {_t(summary['report_path'])}")


def main() -> None:
    app()


from flows import cli_audiences, cli_learn, cli_nurture, cli_ops  # noqa: E402,F401  (register their commands)
