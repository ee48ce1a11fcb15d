"""Deployments of a portfolio's flow: the portfolio's cron schedule, and never two runs of it at once.

``leadscore serve`` serves them from one long-lived process (Prefect ``serve``); ``prefect.yaml``
describes the same deployment for a work pool and a process worker. The flow is a parameter (it takes
``portfolio_path``): by default the daily pipeline.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Schedule

from stages.portfolio import Portfolio, load_portfolio

# A run that finds the previous one of its portfolio still going waits for it (ENQUEUE), so a slow
# morning delays the next run instead of overlapping it; runs are idempotent, so a late one is harmless.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def default_flow() -> Flow[..., Any]:
    """The flow deployments run when none is given."""
    from flows.daily import daily_pipeline

    return daily_pipeline


def portfolio_schedules(portfolio: Portfolio) -> list[Schedule]:
    """The portfolio's ``schedule:`` as Prefect schedules (none: the deployment runs only when asked)."""
    schedule = portfolio.spec.schedule
    if schedule is None:
        return []
    return [Cron(schedule.cron, timezone=schedule.timezone or portfolio.spec.timezone)]


def portfolio_deployment(
    path: Path, flow: Flow[..., Any] | None = None, parameters: dict[str, Any] | None = None
) -> RunnerDeployment:
    """A deployment of ``flow`` for the portfolio at ``path``, named after the portfolio.

    The entrypoint is the flow's module path (``flows.daily.daily_pipeline``), so the served runs
    import the installed package whatever the working directory is.
    """
    portfolio = load_portfolio(path)
    flow = flow or default_flow()
    return RunnerDeployment.from_flow(
        flow,
        name=portfolio.spec.name,
        schedules=portfolio_schedules(portfolio),
        concurrency_limit=ONE_AT_A_TIME,
        parameters={"portfolio_path": str(path.resolve()), **(parameters or {})},
        description=f"{flow.name} for the portfolio {portfolio.spec.name} ({path.resolve()})",
        tags=["leadscore", f"portfolio:{portfolio.spec.name}"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_portfolios(paths: Sequence[Path], flow: Flow[..., Any] | None = None) -> None:
    """Serve one deployment per portfolio until interrupted (the process runs the scheduled flow runs)."""
    serve(*(portfolio_deployment(path, flow) for path in paths), print_starting_message=False)
