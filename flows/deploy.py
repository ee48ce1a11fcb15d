"""Deployments of a portfolio's flows: the portfolio's cron schedule, and never two runs of one at once.

``leadscore serve`` serves them from one long-lived process (Prefect ``serve``); ``prefect.yaml``
describes the same deployments for a work pool and a process worker. The flow is a parameter (it takes
``portfolio_path``): by default the daily pipeline, served with the model review on its own (weekly)
schedule, ``monitoring.schedule``.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Schedule

from stages.portfolio import Portfolio, load_portfolio
from stages.spec import ScheduleSpec

# A run that finds the previous one of its portfolio still going waits for it (ENQUEUE), so a slow
# morning delays the next run instead of overlapping it; runs are idempotent, so a late one is harmless.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def default_flow() -> Flow[..., Any]:
    """The flow deployments run when none is given."""
    from flows.daily import daily_pipeline

    return daily_pipeline


def portfolio_schedules(portfolio: Portfolio, schedule: ScheduleSpec | None = None) -> list[Schedule]:
    """A schedule of the portfolio (by default its ``schedule:``) as Prefect schedules (none: the deployment
    runs only when asked)."""
    schedule = schedule or portfolio.spec.schedule
    if schedule is None:
        return []
    return [Cron(schedule.cron, timezone=schedule.timezone or portfolio.spec.timezone)]


def portfolio_deployment(
    path: Path,
    flow: Flow[..., Any] | None = None,
    parameters: dict[str, Any] | None = None,
    schedule: ScheduleSpec | None = None,
) -> RunnerDeployment:
    """A deployment of ``flow`` for the portfolio at ``path``, named after the portfolio, on ``schedule``
    (by default the portfolio's ``schedule:``).

    The entrypoint is the flow's module path (``flows.daily.daily_pipeline``), so the served runs
    import the installed package whatever the working directory is.
    """
    portfolio = load_portfolio(path)
    flow = flow or default_flow()
    return RunnerDeployment.from_flow(
        flow,
        name=portfolio.spec.name,
        schedules=portfolio_schedules(portfolio, schedule),
        concurrency_limit=ONE_AT_A_TIME,
        parameters={"portfolio_path": str(path.resolve()), **(parameters or {})},
        description=f"{flow.name} for the portfolio {portfolio.spec.name} ({path.resolve()})",
        tags=["leadscore", f"portfolio:{portfolio.spec.name}"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def review_deployment(path: Path) -> RunnerDeployment:
    """The model review of the portfolio at ``path`` on its ``monitoring.schedule`` (weekly by default)."""
    from flows.review import review_models

    return portfolio_deployment(path, review_models, schedule=load_portfolio(path).spec.monitoring.schedule)


def portfolio_deployments(path: Path, flow: Flow[..., Any] | None = None) -> list[RunnerDeployment]:
    """What ``leadscore serve`` serves for a portfolio: ``flow`` (the daily pipeline) and the model review,
    unless the review has no schedule (then it runs only when asked: ``leadscore review``)."""
    deployments = [portfolio_deployment(path, flow)]
    if load_portfolio(path).spec.monitoring.schedule is not None:
        deployments.append(review_deployment(path))
    return deployments


def serve_portfolios(paths: Sequence[Path], flow: Flow[..., Any] | None = None) -> None:
    """Serve each portfolio's deployments until interrupted (the process runs the scheduled flow runs)."""
    serve(*(d for path in paths for d in portfolio_deployments(path, flow)), print_starting_message=False)
