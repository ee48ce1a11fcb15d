"""Unsubscribe links: RFC 8058 one-click POST, the preference centre clicked through in headless Chromium,
forged tokens refused with a bare 404, a rotated secret's links honoured, and nurture reading the events."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from nurture.events import line_optouts, suppressions
from nurture.tokens import sign, unsubscribe_token
from store import nurture
from store.nurture_tables import NurtureEnrolment
from tests.browser import CHROMIUM, DevTools
from tests.service.conftest import PREVIOUS_SECRET, SECRET, Live

NOW = datetime.now(UTC)


def _lead(live: Live, lead_id: str, tracks: tuple[str, ...] = ()) -> int:
    live.post("/v1/leads", {"lead_id": lead_id, "email": f"{lead_id.lower()}@client.example", "email_opt_in": True})
    with live.engine.begin() as conn:
        key = int(conn.execute(text("SELECT key FROM leads WHERE lead_id = :l"), {"l": lead_id}).scalar_one())
        for track in tracks:
            conn.execute(
                insert(NurtureEnrolment.__table__).values(  # type: ignore[attr-defined]
                    lead_key=key, track=track, enrolled_at=NOW - timedelta(days=1), run_id="r0",
                    next_step_at=NOW + timedelta(days=1),
                )
            )  # fmt: skip
    return key


def _state(live: Live, key: int) -> tuple[bool, dict[str, str]]:
    with live.engine.connect() as conn:
        unsubscribed = conn.execute(text("SELECT unsubscribed_at FROM leads WHERE key = :k"), {"k": key}).scalar()
        tracks = conn.execute(text("SELECT track, status FROM nurture_enrolments WHERE lead_key = :k"), {"k": key})
        return unsubscribed is not None, dict(tracks.all())


def _events(live: Live, key: int) -> list[tuple[str, str | None]]:
    sql = "SELECT type, product_line FROM events WHERE lead_key = :k ORDER BY occurred_at, event_id"
    with live.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), {"k": key})]


def test_one_click_post_as_a_mail_provider_sends_it_suppresses_at_once(live: Live) -> None:
    key = _lead(live, "UC-1", tracks=("crm-warm-up", "analytics-nudge"))
    token = unsubscribe_token("UC-1", SECRET)
    # Gmail's one-click request: a POST of the form body RFC 8058 prescribes, no cookies, no key.
    answer = live.client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (answer.status_code, answer.text) == (200, "unsubscribed\n")
    assert _state(live, key) == (True, {"crm-warm-up": "exited", "analytics-nudge": "exited"})
    assert _events(live, key) == [("unsubscribe", None)]
    with live.engine.connect() as conn:
        channel = conn.execute(text("SELECT properties FROM events WHERE lead_key = :k"), {"k": key}).scalar_one()
    assert (channel if isinstance(channel, dict) else json.loads(channel))["channel"] == "one-click"
    # Repeated by the provider: still 200, still suppressed.
    assert live.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click").status_code == 200


def test_forged_or_foreign_tokens_get_a_bare_404_and_a_get_changes_nothing(live: Live) -> None:
    key = _lead(live, "UC-2")
    genuine = unsubscribe_token("UC-2", SECRET)
    forged = [
        unsubscribe_token("UC-2", "an-attacker-secret-0123456789abcdefgh"),
        genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB"),
        sign(SECRET, "click", "UC-2"),  # a genuine token of another kind
        unsubscribe_token("NO-SUCH-LEAD", SECRET),  # genuine, but nobody
        "garbage",
    ]
    for token in forged:
        for method in ("GET", "POST"):
            answer = live.client.request(method, f"/u/{token}")
            assert (answer.status_code, answer.json()) == (404, {"detail": "not found"}), (token, method)
    page = live.client.get(f"/u/{genuine}")
    assert page.status_code == 200 and "You receive our email." in page.text
    assert _state(live, key) == (False, {}) and _events(live, key) == []  # link scanners GET: nothing happens


def test_links_signed_with_the_previous_secret_work_during_a_rotation(live: Live) -> None:
    key = _lead(live, "UC-3")
    old_link = unsubscribe_token("UC-3", PREVIOUS_SECRET)
    assert live.client.post(f"/u/{old_link}", content=b"List-Unsubscribe=One-Click").status_code == 200
    assert _state(live, key)[0] is True


def test_the_preference_centre_in_headless_chromium(live: Live, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed here (`apt-get install -y chromium`; .ci/run installs it)")
    key = _lead(live, "UC-4", tracks=("crm-warm-up", "analytics-nudge"))
    browser = DevTools(tmp_path / "chromium-profile")
    status = "document.getElementById('status').textContent"
    try:
        browser.load(f"{live.base}/u/{unsubscribe_token('UC-4', SECRET)}")
        assert browser.evaluate("document.title") == "Email preferences"
        assert browser.evaluate(status) == "You receive our email."
        browser.click("#stop-crm-suite")
        assert (
            browser.evaluate("document.getElementById('notice').textContent")
            == "Done: no more email about that product."
        )
        assert browser.evaluate(status) == "You receive our email, except about Acme CRM Suite."
        assert browser.evaluate("document.getElementById('stopped-crm-suite').textContent") == "stopped"
        assert _state(live, key) == (False, {"crm-warm-up": "exited", "analytics-nudge": "active"})
        optouts = line_optouts(nurture.read_suppression_events(live.engine, datetime.now(UTC)))
        assert optouts.filter(optouts["lead_key"] == key).rows() == [(key, "crm-suite")]

        browser.click("#unsubscribe-all")
        assert browser.evaluate(status) == "You are unsubscribed: we send you no more marketing email."
        assert _state(live, key) == (True, {"crm-warm-up": "exited", "analytics-nudge": "exited"})

        browser.click("#resubscribe")
        assert (
            browser.evaluate("document.getElementById('notice').textContent")
            == "Welcome back: you are subscribed again."
        )
        assert browser.evaluate(status) == "You receive our email."
        problems = browser.problems()
    finally:
        browser.close()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
    assert problems == []
    assert _state(live, key)[0] is False
    assert _events(live, key) == [("unsubscribe", "crm-suite"), ("unsubscribe", None), ("resubscribe", None)]
    # The next nurture run neither re-applies the old unsubscribe nor keeps the line stopped.
    later = datetime.now(UTC) + timedelta(seconds=1)
    events = nurture.read_suppression_events(live.engine, later)
    assert sorted(events.filter(events["lead_key"] == key)["type"]) == ["resubscribe", "unsubscribe", "unsubscribe"]
    suppressed = suppressions(nurture.read_consent(live.engine), events, soft_bounces=3)
    assert key not in suppressed["lead_key"].to_list()
    assert key not in line_optouts(events)["lead_key"].to_list()
