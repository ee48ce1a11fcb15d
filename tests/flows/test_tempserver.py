"""A ``leadscore`` process killed with SIGKILL takes Prefect's temporary server with it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.flows.test_daily import DEMO
from tests.store.test_runlock import ROOT, hold


def _uvicorn_children(process: psutil.Process) -> list[psutil.Process]:
    return [child for child in process.children() if "uvicorn" in " ".join(child.cmdline())]


def test_the_temporary_server_dies_with_a_killed_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    holder, _ = hold(url, "", "acme-cloud-demo")  # the CLI's run waits on the lock: the server is up meanwhile
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "LEADSCORE_DATABASE_URL": url,
        "LEADSCORE_RUN_LOCK_WAIT": "600",
    }
    cli = subprocess.Popen(
        [sys.executable, "-c", "from flows.cli import app; app()", "score", "-p", str(DEMO)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        servers: list[psutil.Process] = []
        while not servers and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.5)
            servers = _uvicorn_children(psutil.Process(cli.pid))
        assert servers, "the CLI never started Prefect's temporary server"
        time.sleep(1)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
        gone, alive = psutil.wait_procs(servers, timeout=20)
        assert alive == [] and len(gone) == 1
    finally:
        if cli.poll() is None:
            cli.kill()
        holder.kill()
        holder.wait()
