"""Operations commands: ``leadscore serve`` (scheduled deployments) and ``leadscore report`` (HTML report)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import base
from flows.cli.base import JsonOpt, PortfolioOpt, app, console, literal
from store.settings import get_settings


@app.command()
def serve(
    portfolio: Annotated[
        list[Path] | None,
        typer.Option("--portfolio", "-p", help="Portfolio YAML; repeat to serve several (default: as `score`)"),
    ] = None,
) -> None:
    """Serve each portfolio's deployments on a Prefect server: the daily run on its cron schedule and the model
    review on monitoring.schedule (weekly by default), one run of each at a time. Ctrl-C stops."""
    from flows.deploy import portfolio_deployments, serve_portfolios

    paths = [base.portfolio_path(path) for path in portfolio] if portfolio else [base.portfolio_path(None)]
    for path in paths:
        base.load_portfolio_or_fail(path)  # a bad portfolio is a usage error (exit 2) before anything starts
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise base.fail(
            "leadscore serve needs a Prefect server (the temporary one never fires schedules)",
            "start one with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    table = Table("deployment", "schedule", "portfolio", title="serving (Ctrl-C to stop)")
    for path in paths:
        for deployment in portfolio_deployments(path):
            when = ", ".join(f"{s.cron} ({s.timezone})" for s in (d.schedule for d in deployment.schedules or []))
            table.add_row(
                literal(f"{deployment.flow_name}/{deployment.name}"), literal(when or "on demand only"), literal(path)
            )
    console.print(table)
    serve_portfolios(paths)


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write")] = Path("report.html"),
    portfolio: PortfolioOpt = None,
    product_line: Annotated[str | None, typer.Option("--product-line", help="Only this product line")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a self-contained HTML report: distributions, funnel, qualifications, conversion by band, movers."""
    from flows.report import write_report

    path = base.portfolio_path(portfolio)
    loaded = base.load_portfolio_or_fail(path)
    if product_line is not None and product_line not in loaded.product_lines:
        known = ", ".join(sorted(loaded.product_lines))
        raise typer.BadParameter(f"unknown product line {product_line!r}; known: {known}", param_hint="--product-line")
    sections = write_report(path, out, get_settings().database_url, product_line=product_line)
    if json_out:
        print(base.to_json({"out": str(out), "sections": {s.key: s.rows for s in sections}}))
        return
    table = Table("section", "rows", "charts", "note", title=f"report written to {literal(out)}")
    for section in sections:
        table.add_row(
            literal(section.title), str(len(section.rows)), str(len(section.charts)), literal(section.note or "")
        )
    console.print(table)
