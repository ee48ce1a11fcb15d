"""The real service under test: uvicorn started on a free 127.0.0.1 port over a fresh store, spoken to in HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from store.api_keys import create_key
from store.db import make_engine
from tests.postgres import postgres_url, search_path_url, throwaway_schema

ROOT = Path(__file__).resolve().parents[2]
DEMO_PORTFOLIO = ROOT / "examples" / "demo" / "portfolio.yaml"
SECRET = "service-test-unsubscribe-secret-0123456789"
PREVIOUS_SECRET = "service-test-previous-secret-0123456789ab"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Live:
    """A running ``leadscore`` service process, its store (``engine``) and keys for each scope."""

    def __init__(self, url: str, tmp_path: Path, keys: dict[str, str] | None = None, **settings: Any) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        self.keys = keys or {
            scope: create_key(self.engine, f"test {scope}", [scope])[0]
            for scope in ("events:write", "scores:read", "admin")
        }
        self.port = free_port()
        self.portfolio = settings.pop("portfolio", DEMO_PORTFOLIO)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LEADSCORE_DATABASE_URL": url,
            "LEADSCORE_PORTFOLIO": str(self.portfolio),
            "LEADSCORE_UNSUBSCRIBE_SECRET": SECRET,
            "LEADSCORE_UNSUBSCRIBE_SECRET_PREVIOUS": PREVIOUS_SECRET,
            "LEADSCORE_API_KEY_CACHE_SECONDS": "0",
            "LEADSCORE_API_RATE_FILE": str(tmp_path / "rate-buckets"),  # the services of one test share it
            **{f"LEADSCORE_{name.upper()}": str(value) for name, value in settings.items()},
        }
        self.log = (tmp_path / f"service-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log"],
            cwd=tmp_path, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited: {(tmp_path / f'service-{self.port}.log').read_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not answer /healthz within 90 s")
            time.sleep(0.2)

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def post(self, path: str, body: Any, scope: str = "events:write") -> httpx.Response:
        return self.client.post(path, json=body, headers=self.headers(scope))

    def get(self, path: str, scope: str = "scores:read", **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=self.headers(scope))

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite file, or a throw-away PostgreSQL schema (its URL sets the search path); one per test module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store')}/service.db"
        return
    base = postgres_url()
    with throwaway_schema(base, "s") as schema:
        yield search_path_url(base, schema)


@pytest.fixture(scope="module")
def live(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One service per module and store: starting one costs seconds, so a module's tests share it (and
    use their own ids)."""
    service = Live(store_url, tmp_path_factory.mktemp("service"))
    try:
        yield service
    finally:
        service.close()
