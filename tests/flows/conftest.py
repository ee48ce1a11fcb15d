"""Real Prefect flow runs: one temporary Prefect server for the whole session (DESIGN §7)."""

import os
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="leadscore-prefect-"))
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # The heartbeat thread costs ~1 s per flow run; None turns it off (the environment cannot say None).
    with prefect_test_harness(server_startup_timeout=60), temporary_settings({"flows.heartbeat_frequency": None}):
        yield
