"""``leadscore users add|list|disable``: the first admin is made on the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.database import engine_for
from store.settings import get_settings
from store.users import check_password


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/users.db"
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    engine_for.cache_clear()


def test_users_are_added_listed_and_disabled(store: str) -> None:
    runner = CliRunner()
    add = ["users", "add", "Ada@Acme.example", "--name", "Ada", "--password-stdin"]
    made = runner.invoke(app, add, input="a long enough password\n")
    assert made.exit_code == 0, made.output
    assert check_password(engine_for(store), "ada@acme.example", "a long enough password").role == "admin"  # type: ignore[union-attr]
    again = runner.invoke(app, add, input="a long enough password\n")
    assert again.exit_code == 2 and "a user 'ada@acme.example' exists already" in again.output
    weak = runner.invoke(
        app, ["users", "add", "bo@acme.example", "--role", "sales", "--password-stdin"], input="short\n"
    )
    assert weak.exit_code == 2 and "at least 10 characters" in weak.output
    listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).output)
    assert [(u["email"], u["name"], u["role"], u["disabled_at"]) for u in listed] == [
        ("ada@acme.example", "Ada", "admin", None)
    ]
    assert runner.invoke(app, ["users", "disable", "ada@acme.example"]).exit_code == 0
    assert check_password(engine_for(store), "ada@acme.example", "a long enough password") is None
    assert "a long enough password" not in json.dumps(listed)
