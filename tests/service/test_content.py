"""GET /v1/content/{slot}: the first matching variant by the lead's journeys, the default otherwise, and why;
every variant served to a known lead recorded as an event."""

from __future__ import annotations

import json

from sqlalchemy import text

from tests.service.conftest import Live


def _lead_with(live: Live, lead_id: str, line: str, band: str) -> None:
    live.post("/v1/leads", {"lead_id": lead_id, "product_interest": line})
    with live.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE journeys SET band = :b, score = 50 WHERE lead_key = (SELECT key FROM leads WHERE lead_id = :l)"
            ),
            {"b": band, "l": lead_id},
        )


def test_variants_by_journey_with_the_reason_and_a_record_of_each_view(live: Live) -> None:
    _lead_with(live, "CT-HOT", "crm-suite", "hot")
    _lead_with(live, "CT-AN", "analytics-cloud", "cold")
    _lead_with(live, "CT-WARM", "crm-suite", "warm")
    answers = {
        lead: live.get("/v1/content/homepage-hero", lead_id=lead).json() for lead in ("CT-HOT", "CT-AN", "CT-WARM")
    }
    assert {lead: (a["variant"], a["why"]) for lead, a in answers.items()} == {
        "CT-HOT": ("crm-demo", "first match: crm-suite (stage discovery, band hot)"),
        "CT-AN": ("analytics-trial", "first match: analytics-cloud (stage discovery, band cold)"),
        "CT-WARM": ("generic", "no variant matches: the default"),
    }
    assert answers["CT-HOT"]["content"]["cta"] == "Book a demo"
    anonymous = live.get("/v1/content/homepage-hero", anonymous_id="visitor-7").json()
    assert (anonymous["variant"], anonymous["why"], anonymous["known"]) == (
        "generic",
        "unknown visitor: the default",
        False,
    )
    assert live.get("/v1/content/nowhere", lead_id="CT-HOT").status_code == 404
    sql = (
        "SELECT l.lead_id, e.properties FROM events e JOIN leads l ON l.key = e.lead_key "
        "WHERE e.type = 'content_served' AND l.lead_id LIKE 'CT-%' ORDER BY l.lead_id"
    )
    with live.engine.connect() as conn:
        served = conn.execute(text(sql)).all()

    views = {lead: (p if isinstance(p, dict) else json.loads(p)) for lead, p in served}
    assert {lead: (v["slot"], v["variant"]) for lead, v in views.items()} == {
        "CT-AN": ("homepage-hero", "analytics-trial"), "CT-HOT": ("homepage-hero", "crm-demo"),
        "CT-WARM": ("homepage-hero", "generic"),
    }  # fmt: skip
    assert views["CT-HOT"]["bands"] == {"crm-suite": "hot"}  # which content the hot leads saw
