"""Deployments on a REAL Prefect server: `leadscore serve` registers the portfolio's deployment (cron in
its time zone, one run at a time); runs triggered through the API complete and score the store."""

import json
import os
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
SCHEDULE = '\nschedule: {cron: "0 6 * * *", timezone: Europe/Paris}\n'


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


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` with its own PREFECT_HOME and SQLite database on a free port."""
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
    portfolio.write_text(portfolio.read_text() + SCHEDULE)
    store = f"sqlite:///{tmp_path}/store.db"
    load_demo(portfolio, tmp_path / "data", store, leads=1_200, events=15_000)

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        served = subprocess.Popen(
            [str(BIN / "leadscore"), "serve", "--portfolio", str(portfolio)],
            env=env | {"LEADSCORE_DATABASE_URL": store, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        name = "score-portfolio/acme-cloud-demo"
        deployment = _wait("deployment registered", lambda: _get(f"{api}/deployments/name/{name}"), 120, served, log)
        assert deployment["entrypoint"] == "flows.scoring.score_portfolio"
        assert deployment["parameters"] == {"portfolio_path": str(portfolio.resolve())}
        [schedule] = deployment["schedules"]
        assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == ("0 6 * * *", "Europe/Paris")
        assert schedule["active"] is True
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"

        runs = [
            httpx.post(
                f"{api}/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": {"as_of": AS_OF.isoformat()}},
                timeout=10,
            ).json()["id"]
            for _ in range(2)
        ]

        def finished() -> list[dict[str, Any]] | None:
            states = [_get(f"{api}/flow_runs/{run}") for run in runs]
            if any(s is None or s["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED") for s in states):
                return None
            return states

        done = _wait("both flow runs finished", finished, 300, served, log)
        assert [run["state"]["type"] for run in done] == ["COMPLETED", "COMPLETED"], log.read_text()[-3000:]
        # The concurrency limit held: the second run started after the first ended (never overlapping).
        first, second = sorted(done, key=lambda run: run["start_time"])
        assert datetime.fromisoformat(second["start_time"]) >= datetime.fromisoformat(first["end_time"])
    finally:
        _stop(served)

    engine = create_engine(store)
    with engine.connect() as conn:
        runs_in_store = conn.execute(text("SELECT status, stats FROM runs ORDER BY started_at")).all()
        scored = conn.execute(text("SELECT COUNT(*) FROM journeys WHERE score IS NOT NULL")).scalar_one()
        journeys = conn.execute(text("SELECT COUNT(*) FROM journeys")).scalar_one()
        snapshots = conn.execute(text("SELECT COUNT(*) FROM score_snapshots")).scalar_one()
    engine.dispose()
    assert [status for status, _ in runs_in_store] == ["completed", "completed"]
    assert scored == journeys > 1_200
    # Scores are derived: the second run (same as_of) recomputed every journey and changed none.
    stats = [s if isinstance(s, dict) else json.loads(s) for _, s in runs_in_store]
    assert [(s["scored"], s["changed"]) for s in stats] == [(journeys, journeys), (journeys, 0)]
    assert snapshots == journeys
