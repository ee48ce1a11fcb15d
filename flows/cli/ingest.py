"""``leadscore ingest`` and ``leadscore stages ingest``: files into the store, with a progress bar in rows."""

import gzip
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from flows.cli import base
from flows.cli.base import InputFile, JsonOpt, PortfolioOpt, app, console, literal
from store.csvfile import data_suffix
from store.settings import get_settings

InputFiles = Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)]


@app.command()
def ingest(
    kind: Annotated[str, typer.Argument(help="leads | events | accounts")],
    files: InputFiles,
    portfolio: PortfolioOpt = None,
    json_out: JsonOpt = False,
    backfill: Annotated[
        bool,
        typer.Option(
            "--backfill",
            help=(
                "Many files (e.g. DIR/*.csv.gz) as one load: one progress bar, store-wide work once at the end; "
                "on SQLite, events are staged in a file beside the store and merged into it at the end."
            ),
        ),
    ] = False,
) -> None:
    """Validate and store CSV or JSONL files (.gz too); bad rows are kept with their reason, re-ingesting is a no-op."""
    if kind not in ("leads", "events", "accounts"):
        raise typer.BadParameter("leads, events or accounts", param_hint="KIND")
    if len(files) > 1 and not backfill:
        raise typer.BadParameter("several files are one load: add --backfill", param_hint="FILES")
    _ingest(kind, files, portfolio, json_out, staged=backfill)


stages_app = typer.Typer(help="Funnel stages: CRM stage updates.", no_args_is_help=True)
app.add_typer(stages_app, name="stages")


@stages_app.command("ingest")
def stages_ingest(file: InputFile, portfolio: PortfolioOpt = None, json_out: JsonOpt = False) -> None:
    """Store CRM stage updates (lead_id, product_line, stage, changed_at, source) for the next scoring run.

    Moves backwards and into terminal stages (customer, lost) are accepted; bad rows are kept with
    their reason, re-ingesting is a no-op.
    """
    _ingest("stage_updates", [file], portfolio, json_out)


def _ingest(kind: str, files: list[Path], portfolio: Path | None, json_out: bool, staged: bool = False) -> None:
    from flows.ingestion import backfill
    from store.ingest import write_rejects_csv

    loaded = base.load_portfolio_or_fail(portfolio)
    title = f"ingesting {files[0].name}" if len(files) == 1 else f"ingesting {len(files)} files"
    try:
        with _row_progress(title, files, quiet=json_out) as progress:
            settings = get_settings()
            report, reports = backfill(
                loaded,
                kind,
                files,
                settings.database_url,
                progress=progress,
                erasure_secret=settings.erasure_key(),
                staged=staged,
            )
    except ValueError as exc:  # a file-level problem: unsupported type, bad header
        raise base.fail("cannot ingest", exc) from exc
    # Besides the ingest_rejects table, a sidecar file beside each input for whoever fixes the rows.
    for file, file_report in zip(files, reports, strict=False):
        rejects_path = file.with_name(file.name + ".rejects.csv")
        if file_report.rejects:
            write_rejects_csv(file_report, rejects_path)
        else:
            rejects_path.unlink(missing_ok=True)
    if json_out:
        print(base.to_json(report.summary()))
        return
    _print_ingest(report)


def _data_rows(path: Path) -> int:
    """Lines of the file less a CSV header: the progress bar's total (a quoted cell spanning lines makes it
    an overestimate, never a wrong count: the summary counts rows exactly)."""
    with gzip.open(path) if path.suffix.lower() == ".gz" else path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(0, lines - (data_suffix(path) == ".csv"))


class _RowsPerSecond(ProgressColumn):
    """The rate, in rows a second (rich's own speed columns speak of bytes or iterations)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} rows/s")


@contextmanager
def _row_progress(title: str, paths: list[Path], *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """One progress bar in rows over all the files, with rate and time left; on stderr with ``--json``;
    gone when done."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=base.progress_console(quiet), transient=True) as bar:
        task = bar.add_task(literal(title), total=sum(_data_rows(path) for path in paths))
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
