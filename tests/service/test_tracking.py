"""Open pixel and click redirect with tracking on: links signed per message and URL, events recorded with
machine activity flagged, no open redirect, nothing served when the portfolio leaves tracking off."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from nurture.mail import Mailer, sample_context
from nurture.messages import compose
from nurture.spec import load_nurture
from nurture.tokens import sign
from nurture.tracking import click_token, open_token
from stages.portfolio import load_portfolio
from store.outbox_tables import OutboxMessage
from tests.service.conftest import DEMO_PORTFOLIO, SECRET, Live

PUBLIC = "https://t.acme-cloud.example"


@pytest.fixture(scope="module")
def tracked(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("tracked")
    shutil.copytree(DEMO_PORTFOLIO.parent, folder, dirs_exist_ok=True)
    portfolio = folder / "portfolio.yaml"
    portfolio.write_text(
        portfolio.read_text().replace("\nnurture:\n", f"\nnurture:\n  tracking: {{base_url: {PUBLIC}}}\n")
    )
    service = Live(store_url, folder, portfolio=portfolio)
    try:
        yield service
    finally:
        service.close()


def _email(live: Live, lead_id: str) -> tuple[str, str]:
    """A nurture email composed with tracking on and recorded as sent to a new lead: (message_id, html)."""
    live.post("/v1/leads", {"lead_id": lead_id, "email": f"{lead_id.lower()}@client.example"})
    portfolio = load_portfolio(Path(live.portfolio))
    mailer = Mailer.for_portfolio(portfolio.path)
    sender = load_nurture(portfolio, mailer).sender.sender()  # type: ignore[union-attr]
    context = sample_context("nurture", sender)
    context["lead"] = {**context["lead"], "lead_id": lead_id}
    out = compose(
        mailer, "nurture_intro", context, kind="nurture", ref=f"enrolment:{lead_id}:0", lead_key=1, run_id="r0",
        to=f"{lead_id.lower()}@client.example", sender=sender, date=datetime.now(UTC), unsubscribe_secret=SECRET,
        tracking_url=PUBLIC,
    )  # fmt: skip
    with live.engine.begin() as conn:
        key = conn.execute(text("SELECT key FROM leads WHERE lead_id = :l"), {"l": lead_id}).scalar_one()
        conn.execute(
            insert(OutboxMessage.__table__).values(  # type: ignore[attr-defined]
                message_id=out.message_id, kind="nurture", ref=out.ref, lead_key=key, run_id="r0", to_address=out.to,
                subject=out.subject, status="sent", created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return out.message_id, out.parsed().get_body(("html",)).get_content()


def _events(live: Live, message_id: str) -> list[tuple[str, bool, str | None]]:
    sql = "SELECT type, machine, url FROM events WHERE message_id = :m ORDER BY occurred_at, event_id"
    with live.engine.connect() as conn:
        return [(kind, bool(machine), url) for kind, machine, url in conn.execute(text(sql), {"m": message_id})]


def test_links_and_pixel_are_signed_and_recorded(tracked: Live) -> None:
    message_id, html = _email(tracked, "TR-1")
    hrefs = re.findall(r'href="([^"]+)"', html)
    tour = "https://acme-cloud.example/sample-line/tour"
    assert f"{PUBLIC}/t/c/{click_token(SECRET, message_id, tour)}" in hrefs
    assert tour not in hrefs  # wrapped
    assert any(href.startswith("https://acme-cloud.example/u/") for href in hrefs)  # the unsubscribe link is kept
    assert f'<img src="{PUBLIC}/t/o/{open_token(SECRET, message_id)}"' in html

    proxy = {"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
    pixel = tracked.client.get(f"/t/o/{open_token(SECRET, message_id)}", headers=proxy)
    assert (pixel.status_code, pixel.headers["content-type"], pixel.content[:6]) == (200, "image/gif", b"GIF89a")
    person = {"User-Agent": "Mozilla/5.0 (Macintosh)"}
    clicked = tracked.client.get(f"/t/c/{click_token(SECRET, message_id, tour)}", headers=person)
    assert (clicked.status_code, clicked.headers["location"]) == (302, tour)
    assert _events(tracked, message_id) == [("email_open", True, None), ("email_click", False, tour)]


def test_no_open_redirect_and_forged_tokens_refused(tracked: Live) -> None:
    message_id, _ = _email(tracked, "TR-2")
    evil = "https://evil.example/phish"
    attempts = [
        click_token("an-attacker-secret-0123456789abcdefgh", message_id, evil),  # signed with another key
        click_token(SECRET, message_id, "https://acme-cloud.example/x").split(".")[0]
        + "."
        + click_token(SECRET, message_id, evil).split(".")[1],  # a genuine tag on a swapped URL
        sign(SECRET, "open", message_id),  # an open token is no click token
        "garbage",
    ]
    for token in attempts:
        answer = tracked.client.get(f"/t/c/{token}")
        assert (answer.status_code, "location" in answer.headers) == (404, False), token
    assert tracked.client.get(f"/t/o/{click_token(SECRET, message_id, evil)}").status_code == 404
    assert _events(tracked, message_id) == []


def test_tracking_off_serves_nothing(live: Live) -> None:
    assert live.client.get(f"/t/o/{open_token(SECRET, 'm@x')}").status_code == 404
    assert live.client.get(f"/t/c/{click_token(SECRET, 'm@x', 'https://acme-cloud.example/')}").status_code == 404
