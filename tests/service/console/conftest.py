"""A console under test: the real service with a session secret over a store holding scored leads, and users of
each role; ``Browser`` signs in over HTTP with the console's own forms (CSRF token included)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.scoring import score_partition
from stages.portfolio import load_portfolio
from store import partitions
from store.scores import finish_run, start_run
from store.users import add_user
from tests.service.conftest import DEMO_PORTFOLIO, Live

SESSION_SECRET = "console-test-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
USERS = {
    "admin@acme.example": ("Ada Admin", "admin"),
    "mia@acme.example": ("Mia Marketing", "marketing"),
    "sam@acme.example": ("Sam Sales", "sales"),
    "sue@acme.example": ("Sue Sales", "sales"),
}
XSS = "<script>alert('x')</script>"
# One day before now: an MQL (SLA 48 h) is not overdue yet, an SQL (8 h) is.
AS_OF = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def _event(event_id: str, lead_id: str, type_: str, days: float, **properties: Any) -> dict[str, Any]:
    occurred = (AS_OF - timedelta(days=days)).isoformat()
    return {"event_id": event_id, "lead_id": lead_id, "type": type_, "occurred_at": occurred, **properties}


def _hot_events(lead_id: str, pages: int) -> list[dict[str, Any]]:
    crm = {"product_line": "crm-suite"}
    events = [
        _event(f"{lead_id}-pv-{n}", lead_id, "page_view", n, url="/pricing" if n % 2 else "/product/crm",
               duration_s=240, **crm)
        for n in range(pages)
    ]  # fmt: skip
    return [
        *events,
        _event(f"{lead_id}-wp", lead_id, "asset_download", 3, asset="white paper"),
        _event(f"{lead_id}-demo", lead_id, "demo_request", 1, **crm),
    ]


def fill(live: Live) -> str:
    """Leads owned by Sam and Sue, their events, one batch run at ``AS_OF``; returns the run id."""
    person = {"industry": "Software", "company_size": 250, "product_interest": "crm-suite"}
    leads = [
        {"lead_id": "CO-HOT", "first_name": "Hana", "last_name": "Hot", "company": "Globex",
         "job_title": "Head of Sales", "email": "hana@globex.example", "owner_email": "sam@acme.example", **person},
        {"lead_id": "CO-WARM", "first_name": "Wes", "last_name": "Warm", "company": "Initech", "job_title": "Director",
         "email": "wes@initech.example", "owner_email": "sam@acme.example", **person},
        {"lead_id": "CO-XSS", "first_name": "<b>Eve</b>", "last_name": "Evil", "company": "=HYPERLINK(1)",
         "job_title": XSS, "email": "eve@evil.example", "owner_email": "sue@acme.example", **person},
        {"lead_id": "CO-COLD", "first_name": "Carl", "last_name": "Cold", "company": "Globex", "job_title": "Intern",
         "company_size": 3, "email": "carl@globex.example", "owner_email": "sam@acme.example",
         "product_interest": "analytics-cloud"},
    ]  # fmt: skip
    assert live.post("/v1/leads", leads).json()["stored"] == len(leads)
    events = _hot_events("CO-HOT", 12) + _hot_events("CO-WARM", 8) + _hot_events("CO-XSS", 12)
    events.append(_event("CO-COLD-pv", "CO-COLD", "page_view", 2, url="/pricing"))
    assert live.post("/v1/events", events).json()["rejected"] == 0
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    run_id = start_run(live.engine, "test", AS_OF)
    token = uuid.uuid4().hex
    for line in portfolio.product_lines:
        score_partition.fn(portfolio, line, (0, 1_000_000), AS_OF, run_id, token, live.url)
    partitions.shared_partition_reads.release(token)
    finish_run(live.engine, run_id, "completed", {})
    for email, (name, role) in USERS.items():
        add_user(live.engine, email, name, role, PASSWORD)
    return run_id


@pytest.fixture(scope="module")
def console(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The service with its console on, over a filled store (one per module and store)."""
    service = Live(store_url, tmp_path_factory.mktemp("console"), session_secret=SESSION_SECRET)
    try:
        fill(service)
        yield service
    finally:
        service.close()


CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Browser:
    """An HTTP client with its own cookie jar, as one person's browser: reads CSRF tokens off the pages."""

    def __init__(self, live: Live) -> None:
        self.client = httpx.Client(base_url=live.base, timeout=30, follow_redirects=False)

    def csrf(self, path: str = "/console/login") -> str:
        page = self.client.get(path)
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        token = self.csrf()
        form = {"csrf": token, "email": email, "password": password, "next": "/console/leads"}
        return self.client.post("/console/login", data=form)

    def post(self, path: str, form: dict[str, str], token_from: str = "/console/leads") -> httpx.Response:
        return self.client.post(path, data={"csrf": self.csrf(token_from), **form})

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def close(self) -> None:
        self.client.close()


def signed_in(live: Live, email: str) -> Browser:
    browser = Browser(live)
    assert browser.sign_in(email).status_code == 303
    return browser


def screenshot_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "docs"
