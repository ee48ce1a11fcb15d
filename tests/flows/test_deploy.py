"""Deployments on a REAL Prefect server: `leadscore serve` registers the portfolio's deployment (cron in
its time zone, one run at a time) and `prefect.yaml` deploys to a process work pool; runs triggered
through the API complete and score the store."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.flows.ops_demo import AS_OF, demo_portfolio, load_demo

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, with its children (its own session), gracefully first."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait(what: str, check: Any, timeout: float, process: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what}: not after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` with its own PREFECT_HOME and SQLite database on a free port."""
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and not k.startswith("LEADSCORE_")} | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait("prefect server health", lambda: _get(f"{api}/health") is True, 120, server, log)
        yield api, env | {"PREFECT_API_URL": api}
    finally:
        _stop(server)


def _start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _run_flow(api: str, deployment_id: str) -> str:
    # The server answers 503 while its SQLite database is busy (a loaded machine): ask again, briefly.
    for _ in range(10):
        response = httpx.post(
            f"{api}/deployments/{deployment_id}/create_flow_run",
            json={"parameters": {"as_of": AS_OF.isoformat()}},
            timeout=10,
        )
        if response.status_code != 503:
            break
        time.sleep(1)
    response.raise_for_status()
    return response.json()["id"]


def _finished(api: str, runs: list[str]) -> Any:
    def check() -> list[dict[str, Any]] | None:
        states = [_get(f"{api}/flow_runs/{run}") for run in runs]
        if any(s is None or s["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED") for s in states):
            return None
        return states

    return check


def _store_state(store: str) -> tuple[list[tuple[str, dict[str, Any]]], int, int, int]:
    engine = create_engine(store)
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT status, stats FROM runs WHERE kind = 'score' ORDER BY started_at")).all()
        scored = conn.execute(text("SELECT COUNT(*) FROM journeys WHERE score IS NOT NULL")).scalar_one()
        journeys = conn.execute(text("SELECT COUNT(*) FROM journeys")).scalar_one()
        snapshots = conn.execute(text("SELECT COUNT(*) FROM score_snapshots")).scalar_one()
    engine.dispose()
    stats = [(status, s if isinstance(s, dict) else json.loads(s)) for status, s in runs]
    return stats, scored, journeys, snapshots


def _get(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_served_deployment_runs_score_the_store_one_at_a_time(
    tmp_path: Path, prefect_server: tuple[str, dict[str, str]]
) -> None:
    api, env = prefect_server
    portfolio = demo_portfolio(tmp_path / "portfolio", partition_size=1000)
    # The demo portfolio carries its `schedule:` (weekdays 07:00 in its time zone), as `leadscore init` copies it.
    store = f"sqlite:///{tmp_path}/store.db"
    load_demo(portfolio, tmp_path / "data", store, leads=1_200, events=15_000)

    log = tmp_path / "serve.log"
    serve_env = env | {"LEADSCORE_DATABASE_URL": store}
    served = _start([str(BIN / "leadscore"), "serve", "--portfolio", str(portfolio)], serve_env, tmp_path, log)
    try:
        name = "daily-pipeline/acme-cloud-demo"
        deployment = _wait("deployment registered", lambda: _get(f"{api}/deployments/name/{name}"), 120, served, log)
        assert deployment["entrypoint"] == "flows.daily.daily_pipeline"
        assert deployment["parameters"] == {"portfolio_path": str(portfolio.resolve())}
        [schedule] = deployment["schedules"]
        assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == ("0 7 * * 1-5", "Europe/Paris")
        assert schedule["active"] is True
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        review = _wait(  # served beside it, weekly; `serve` registers its deployments one after the other
            "review deployment registered",
            lambda: _get(f"{api}/deployments/name/review-models/acme-cloud-demo"),
            120,
            served,
            log,
        )
        assert review["entrypoint"] == "flows.review.review_models"
        [weekly] = review["schedules"]
        assert (weekly["schedule"]["cron"], weekly["schedule"]["timezone"]) == ("0 7 * * 1", "Europe/Paris")

        runs = [_run_flow(api, deployment["id"]) for _ in range(2)]
        done = _wait("both flow runs finished", _finished(api, runs), 300, served, log)
        assert [run["state"]["type"] for run in done] == ["COMPLETED", "COMPLETED"], log.read_text()[-3000:]
        # The concurrency limit held: the second run started after the first ended (never overlapping).
        first, second = sorted(done, key=lambda run: run["start_time"])
        assert datetime.fromisoformat(second["start_time"]) >= datetime.fromisoformat(first["end_time"])
    finally:
        _stop(served)

    stats, scored, journeys, snapshots = _store_state(store)
    assert [status for status, _ in stats] == ["completed", "completed"]
    assert scored == journeys > 1_200
    # Scores are derived: the second run (same as_of) recomputed every journey and changed none.
    assert [(s["scored"], s["changed"]) for _, s in stats] == [(journeys, journeys), (journeys, 0)]
    # One snapshot per journey, plus the state that crossed for each journey a promotion moved on.
    assert snapshots == stats[0][1]["snapshots"] > journeys


def test_prefect_yaml_deploys_to_a_process_work_pool(
    tmp_path: Path, prefect_server: tuple[str, dict[str, str]]
) -> None:
    """A fresh clone: prefect.yaml and the flows, with no portfolio.yaml of its own (it runs the bundled demo's)."""
    api, env = prefect_server
    project = tmp_path / "project"
    demo_portfolio(project / "examples" / "demo", partition_size=1000)
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    (project / "flows").symlink_to(REPO / "flows")
    store = f"sqlite:///{tmp_path}/store.db"
    load_demo(project / "examples" / "demo" / "portfolio.yaml", tmp_path / "data", store, leads=1_200, events=15_000)

    project_env = env | {"PWD": str(project), "LEADSCORE_DATABASE_URL": store}
    for args in (["work-pool", "create", "leadscore", "--type", "process"], ["--no-prompt", "deploy", "--all"]):
        done = subprocess.run(
            [str(BIN / "prefect"), *args], env=project_env, cwd=project, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
    deployment = _get(f"{api}/deployments/name/daily-pipeline/daily")
    assert deployment["work_pool_name"] == "leadscore"
    assert deployment["entrypoint"] == "flows/daily.py:daily_pipeline"
    assert not (project / "portfolio.yaml").exists()
    assert deployment["parameters"] == {"portfolio_path": "examples/demo/portfolio.yaml"}
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}
    ]
    [schedule] = deployment["schedules"]
    assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == ("0 7 * * 1-5", "Europe/Paris")
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    review = _get(f"{api}/deployments/name/review-models/review")
    assert (review["entrypoint"], review["work_pool_name"]) == ("flows/review.py:review_models", "leadscore")
    assert review["parameters"] == {"portfolio_path": "examples/demo/portfolio.yaml"}
    [weekly] = review["schedules"]
    assert (weekly["schedule"]["cron"], weekly["schedule"]["timezone"]) == ("0 7 * * 1", "Europe/Paris")

    log = tmp_path / "worker.log"
    worker = _start([str(BIN / "prefect"), "worker", "start", "--pool", "leadscore"], project_env, project, log)
    try:
        run = _run_flow(api, deployment["id"])
        [done] = _wait("the worker's flow run finished", _finished(api, [run]), 300, worker, log)
        assert done["state"]["type"] == "COMPLETED", log.read_text()[-3000:]
    finally:
        _stop(worker)
    stats, scored, journeys, snapshots = _store_state(store)
    assert [(status, s["changed"]) for status, s in stats] == [("completed", journeys)]
    assert scored == journeys > 1_200
    assert snapshots == stats[0][1]["snapshots"] > journeys  # the crossing states of the promotions too
