"""``leadscore api keys create|list|revoke`` and ``leadscore init``'s git-ignored secrets file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.pipeline import write_secrets
from flows.database import engine_for
from store.api_keys import check_key
from store.settings import SECRETS_FILE, Settings, get_settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    engine_for.cache_clear()


def test_keys_are_created_listed_and_revoked(store: str) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["api", "keys", "create", "website", "-s", "scores:read", "--json"])
    assert created.exit_code == 0, created.output
    made = json.loads(created.output)
    assert made["scopes"] == ["scores:read"] and made["key"].startswith(f"lsk_{made['key_id']}_")
    assert check_key(engine_for(store), made["key"]).name == "website"
    listed = json.loads(runner.invoke(app, ["api", "keys", "list", "--json"]).output)
    assert [(k["key_id"], k["name"], k["revoked_at"]) for k in listed] == [(made["key_id"], "website", None)]
    assert made["key"].split("_", 2)[2] not in json.dumps(listed)  # the secret is never shown again
    assert runner.invoke(app, ["api", "keys", "revoke", made["key_id"]]).exit_code == 0
    assert check_key(engine_for(store), made["key"]) is None
    again = runner.invoke(app, ["api", "keys", "revoke", made["key_id"]])
    assert again.exit_code == 1 and f"no live key {made['key_id']}" in again.output
    bad = runner.invoke(app, ["api", "keys", "create", "x", "-s", "scores:write"])
    assert bad.exit_code == 2 and "unknown or no scopes ['scores:write']" in bad.output


def test_the_service_refuses_to_start_without_the_secret(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSCORE_UNSUBSCRIBE_SECRET", raising=False)
    refused = CliRunner().invoke(app, ["api"])
    assert refused.exit_code == 2 and "LEADSCORE_UNSUBSCRIBE_SECRET is not set" in refused.output


def test_init_writes_a_git_ignored_secret_that_settings_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "acme"
    assert CliRunner().invoke(app, ["init", str(target)]).exit_code == 0
    secrets_file = target / SECRETS_FILE
    line, erasure = secrets_file.read_text().splitlines()
    assert line.startswith("LEADSCORE_UNSUBSCRIBE_SECRET=") and len(line.strip().split("=", 1)[1]) == 43
    assert erasure.startswith("LEADSCORE_ERASURE_SECRET=") and len(erasure.split("=", 1)[1]) == 43
    assert stat.S_IMODE(os.stat(secrets_file).st_mode) == 0o600
    assert (target / ".gitignore").read_text().splitlines()[-1] == SECRETS_FILE
    monkeypatch.chdir(target)
    monkeypatch.delenv("LEADSCORE_UNSUBSCRIBE_SECRET", raising=False)
    monkeypatch.delenv("LEADSCORE_ERASURE_SECRET", raising=False)
    assert Settings().unsubscribe_secret.get_secret_value() == line.strip().split("=", 1)[1]  # type: ignore[union-attr]
    assert Settings().erasure_key().get_secret_value() == erasure.split("=", 1)[1]  # type: ignore[union-attr]
    secrets_file.write_text(line + "\n")  # a store made before erasure existed gains its key, the other kept
    write_secrets(target)
    kept, added = secrets_file.read_text().splitlines()
    assert kept == line and added.startswith("LEADSCORE_ERASURE_SECRET=") and added != erasure
    write_secrets(target)
    assert secrets_file.read_text().splitlines() == [kept, added]
