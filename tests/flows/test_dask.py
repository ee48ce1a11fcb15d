"""Scale-out: the scoring flow on a local multi-process Dask cluster with PostgreSQL as the shared store
gives the same journeys and score history as the single-process SQLite run."""

import json
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from sqlalchemy import text

from flows.database import engine_for
from flows.runners import task_runner
from flows.scoring import score_partition, score_portfolio
from store.settings import Settings
from tests.flows.ops_demo import AS_OF, demo_portfolio, load_demo

pytestmark = pytest.mark.slow


def _state(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Journeys and snapshots by natural keys (ids and run ids differ between stores)."""
    with engine_for(url).connect() as conn:
        journeys = conn.execute(
            text(
                "SELECT l.lead_id, j.product_line, j.stage, j.status, j.score, j.band, j.qualification "
                "FROM journeys j JOIN leads l ON l.key = j.lead_key ORDER BY l.lead_id, j.product_line"
            )
        ).all()
        snapshots = conn.execute(
            text(
                "SELECT l.lead_id, s.product_line, s.stage, s.as_of, s.score, s.band, s.qualification, "
                "CAST(s.breakdown AS TEXT) FROM score_snapshots s JOIN leads l ON l.key = s.lead_key "
                "ORDER BY l.lead_id, s.product_line, s.as_of, s.step"
            )
        ).all()
    return [tuple(row) for row in journeys], [(*row[:-1], _canonical(row[-1])) for row in snapshots]


def _canonical(breakdown: str) -> list[tuple[str, float]]:
    return [(entry["rule"], round(entry["points"], 9)) for entry in json.loads(breakdown)]


def test_dask_on_postgresql_scores_like_one_process_on_sqlite(tmp_path: Path, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the scale-out comparison runs the Dask side on PostgreSQL")
    cloudpickle.dumps(score_partition)  # shipped by value to Dask workers: its globals must pickle
    portfolio = demo_portfolio(tmp_path / "portfolio", partition_size=1000)
    sqlite_url = f"sqlite:///{tmp_path}/single.db"
    for url in (sqlite_url, database_url):
        load_demo(portfolio, tmp_path / "data", url, leads=2_500, events=30_000)

    single = score_portfolio(str(portfolio), as_of=AS_OF, database_url=sqlite_url)
    dask = task_runner(Settings(task_runner="dask", workers=2))
    assert dask.cluster_kwargs == {"n_workers": 2, "processes": True, "threads_per_worker": 1}
    scaled = score_portfolio.with_options(task_runner=dask)(str(portfolio), as_of=AS_OF, database_url=database_url)

    assert scaled["scored"] == single["scored"] > 2_500  # two product lines: more journeys than leads
    assert scaled["changed"] == single["changed"] == single["scored"]
    assert scaled["bands"] == single["bands"]
    journeys, snapshots = _state(sqlite_url)
    assert len(snapshots) == single["snapshots"] > single["scored"]  # promotions add their crossing states
    assert _state(database_url) == (journeys, snapshots)


def test_the_task_runner_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    monkeypatch.setenv("LEADSCORE_WORKERS", "3")
    threads = task_runner(Settings())
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 6
    monkeypatch.setenv("LEADSCORE_TASK_RUNNER", "processes")
    processes = task_runner(Settings())
    assert isinstance(processes, ProcessPoolTaskRunner) and processes._max_workers == 3
    monkeypatch.setenv("LEADSCORE_TASK_RUNNER", "dask")
    local = task_runner(Settings())
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 3, "processes": True, "threads_per_worker": 1}
    monkeypatch.setenv("LEADSCORE_DASK_ADDRESS", "tcp://scheduler:8786")
    remote = task_runner(Settings())
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler:8786"
    monkeypatch.setenv("LEADSCORE_TASK_RUNNER", "ray")
    with pytest.raises(ValueError, match="task_runner"):
        Settings()
