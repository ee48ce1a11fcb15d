"""The scoring task runner, chosen by settings: the same flow runs on threads, processes or a Dask cluster.

``LEADSCORE_TASK_RUNNER`` picks it (``threads`` by default), ``LEADSCORE_WORKERS`` sizes it and
``LEADSCORE_DASK_ADDRESS`` points at an existing Dask scheduler (``tcp://host:8786``): a local cluster
per flow run costs ≈ 12 s to start (DESIGN §7), so a long-lived cluster is the way to scale out.
"""

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from store.settings import Settings


def task_runner(settings: Settings) -> TaskRunner:
    """A fresh task runner for one flow run (runners hold pools and clients: never share one between runs)."""
    workers = max(1, settings.workers)
    if settings.task_runner == "threads":
        # Two threads per worker: while one task scores (CPU, Polars), another waits for its partition read.
        return ThreadPoolTaskRunner(max_workers=2 * workers)
    if settings.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner  # imported only when asked for: distributed is slow to import

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "processes": True, "threads_per_worker": 1})
