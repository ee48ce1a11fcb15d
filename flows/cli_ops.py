"""Operations commands: ``leadscore serve`` (scheduled deployments) and ``leadscore report`` (HTML report)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import _load, _t, app, console, fail, portfolio_path


@app.command()
def serve(
    portfolio: Annotated[
        list[Path] | None,
        typer.Option("--portfolio", "-p", help="Portfolio YAML; repeat to serve several (default: as `score`)"),
    ] = None,
) -> None:
    """Serve a deployment per portfolio on a Prefect server: its cron schedule, one run at a time. Ctrl-C stops."""
    from flows.deploy import portfolio_deployment, serve_portfolios

    paths = [portfolio_path(path) for path in portfolio] if portfolio else [portfolio_path(None)]
    for path in paths:
        _load(path)  # a bad portfolio is a usage error (exit 2) before anything starts
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise fail(
            "leadscore serve needs a Prefect server (the temporary one never fires schedules)",
            "start one with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    table = Table("deployment", "schedule", "portfolio", title="serving (Ctrl-C to stop)")
    for path in paths:
        deployment = portfolio_deployment(path)
        when = ", ".join(f"{s.cron} ({s.timezone})" for s in (d.schedule for d in deployment.schedules or []))
        table.add_row(_t(f"{deployment.flow_name}/{deployment.name}"), _t(when or "on demand only"), _t(path))
    console.print(table)
    serve_portfolios(paths)
