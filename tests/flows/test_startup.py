"""Settings are read once, where a flow run starts, and the run's own parameters win over the environment."""

from pathlib import Path

import pytest

from flows.startup import enter_flow
from store.settings import get_settings


def test_a_flow_run_takes_its_parameters_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", "sqlite:///env.db")
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", "env-outbox")
    monkeypatch.setenv("LEADSCORE_MAIL_FROM", "alerts@example.com")
    get_settings.cache_clear()
    try:
        from_env = enter_flow()
        given = enter_flow(database_url="sqlite:///run.db", outbox_dir="run-outbox")
    finally:
        get_settings.cache_clear()
    assert (from_env.database_url, from_env.outbox_dir) == ("sqlite:///env.db", Path("env-outbox"))
    assert (given.database_url, given.outbox_dir, given.mail_from) == (
        "sqlite:///run.db",
        Path("run-outbox"),
        "alerts@example.com",
    )
