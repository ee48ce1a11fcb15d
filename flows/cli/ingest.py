"""``leadscore ingest`` and ``leadscore stages ingest``: files into the store, with a progress bar in rows."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flows.cli import base
from flows.cli.base import InputFile, JsonOpt, PortfolioOpt, app, console, literal
from store.settings import get_settings


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

    loaded = base.load_portfolio_or_fail(portfolio)
    try:
        with _row_progress(f"ingesting {file.name}", file, quiet=json_out) as progress:
            report = ingest_file(loaded, kind, file, get_settings().database_url, progress=progress)
    except ValueError as exc:  # a file-level problem: unsupported type, bad header
        raise base.fail(f"cannot ingest {file}", exc) from exc
    # Besides the ingest_rejects table, a sidecar file beside the input for whoever fixes the rows.
    rejects_path = file.with_name(file.name + ".rejects.csv")
    if report.rejects:
        write_rejects_csv(report.report, rejects_path)
    else:
        rejects_path.unlink(missing_ok=True)
    if json_out:
        print(base.to_json(report.summary()))
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
    with Progress(*columns, console=base.progress_console(quiet), transient=True) as bar:
        task = bar.add_task(literal(title), total=_data_rows(path))
        yield lambda done: bar.update(task, completed=done)


def _print_ingest(report: Any) -> None:
    s = report.summary()
    console.print(
        f"[bold]{s['kind']}[/bold] {literal(s['source'])}: read {s['read']}, inserted {s['inserted']}, "
        f"updated {s['updated']}, rejected {s['rejected']}, journeys opened {s['journeys_opened']}"
    )
    for note in s["notes"]:
        console.print(f"[yellow]note:[/yellow] {literal(note)}")
    if report.rejects:
        table = Table("line", "field", "reason", title=f"rejected rows ({len(report.rejects)})")
        for reject in report.rejects[:10]:
            table.add_row(str(reject.line), literal(reject.field), literal(reject.reason))
        console.print(table)
