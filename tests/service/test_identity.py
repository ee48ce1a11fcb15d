"""POST /v1/leads/merge and /v1/leads/unmerge over the real service: scope, refusals, idempotence, and the
survivor's fresh score counting the merged lead's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from stages.portfolio import load_portfolio
from store.identity import attach, read_identity, visible_journeys
from store.live import lead_identity
from store.reader import read_events
from store.scores import read_journeys
from tests.service.conftest import DEMO_PORTFOLIO, Live

AS_OF = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PERSON = {"job_title": "Head of Sales", "industry": "Software", "company_size": 250, "product_interest": "crm-suite"}


def _fresh(live: Live, lead: str) -> list[dict[str, Any]]:
    answer = live.get(f"/v1/leads/{lead}/score", fresh="true", as_of=AS_OF.isoformat()).json()
    return [{k: v for k, v in s.items() if k not in ("scored_at", "run_id")} for s in answer["scores"]]


def test_merge_over_http_moves_the_events_to_the_survivor_and_unmerge_gives_them_back(live: Live) -> None:
    leads = [{"lead_id": "ID-KEEP", **PERSON}, {"lead_id": "ID-DUP", **PERSON}]
    assert live.post("/v1/leads", leads).json()["stored"] == 2
    at = (AS_OF - timedelta(days=2)).isoformat()
    events = [
        {
            "event_id": "id-1",
            "lead_id": "ID-DUP",
            "type": "demo_request",
            "occurred_at": at,
            "product_line": "crm-suite",
        },
        {"event_id": "id-2", "lead_id": "ID-DUP", "type": "asset_download", "occurred_at": at, "asset": "white paper"},
    ]
    assert live.post("/v1/events", events).json()["rejected"] == 0
    alone, duplicate = _fresh(live, "ID-KEEP"), _fresh(live, "ID-DUP")
    assert duplicate != alone  # its events promoted it (the demo model resets at evaluation)

    pairs = {"pairs": [{"survivor": "ID-KEEP", "merged": "ID-DUP"}]}
    assert live.post("/v1/leads/merge", pairs, scope="scores:read").status_code == 403
    answer = live.post("/v1/leads/merge", pairs, scope="admin")
    assert (answer.status_code, answer.json()) == (200, {"merged": 1, "already": 0})
    assert live.post("/v1/leads/merge", pairs, scope="admin").json() == {"merged": 0, "already": 1}
    # Same attributes, so the survivor now scores exactly what the duplicate scored with its events.
    assert _fresh(live, "ID-KEEP") == duplicate
    assert _fresh(live, "ID-DUP") == []  # an alias has no journey of its own to score
    with live.engine.connect() as conn:
        sources = conn.execute(text("SELECT source, unmerged_at FROM lead_aliases")).all()
    assert len(sources) == 1 and sources[0][0].startswith("api key ") and sources[0][1] is None

    bad = {"pairs": [{"survivor": "ID-KEEP", "merged": "NOBODY"}, {"survivor": "ID-DUP", "merged": "ID-KEEP"}]}
    refused = live.post("/v1/leads/merge", bad, scope="admin")
    assert (refused.status_code, refused.json()["detail"]) == (
        422,
        [
            "pairs[0]: field merged: unknown lead id 'NOBODY'",
            "pairs[1]: field merged: merging 'ID-KEEP' into 'ID-DUP' closes a cycle (ID-KEEP → ID-DUP → ID-KEEP)",
        ],
    )
    back = live.post("/v1/leads/unmerge", {"pairs": [{"merged": "ID-DUP", "survivor": "ID-KEEP"}]}, scope="admin")
    assert back.json() == {"unmerged": 1, "not_merged": 0}
    assert (_fresh(live, "ID-KEEP"), _fresh(live, "ID-DUP")) == (alone, duplicate)


def test_the_merge_endpoints_are_in_the_openapi_schema(live: Live) -> None:
    paths = live.client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/leads/merge"]) == {"post"} and set(paths["/v1/leads/unmerge"]) == {"post"}
    schema = paths["/v1/leads/merge"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/MergeRequest"}


def test_posted_visitor_events_and_an_identify_serve_the_visitor_as_its_lead(live: Live) -> None:
    live.post("/v1/leads", {"lead_id": "ID-VIS", "product_interest": "crm-suite"})
    with live.engine.begin() as conn:
        vis = "(SELECT key FROM leads WHERE lead_id = 'ID-VIS')"
        conn.execute(text(f"UPDATE journeys SET band = 'hot', score = 50 WHERE lead_key = {vis}"))
    at = (AS_OF - timedelta(days=1)).isoformat()
    visit = {"event_id": "vis-1", "anonymous_id": "web-42", "type": "page_view", "occurred_at": at, "url": "/pricing"}
    nobody = {"event_id": "vis-2", "type": "page_view", "occurred_at": at}
    answer = live.post("/v1/events", [visit, nobody]).json()
    assert (answer["stored"], answer["rejected"]) == (1, 1)
    before = live.get("/v1/content/homepage-hero", anonymous_id="web-42").json()
    assert (before["variant"], before["known"]) == ("generic", False)

    identify = {
        "event_id": "vis-3",
        "lead_id": "ID-VIS",
        "anonymous_id": "web-42",
        "type": "identify",
        "occurred_at": at,
    }
    assert live.post("/v1/events", identify).json()["stored"] == 1
    after = live.get("/v1/content/homepage-hero", anonymous_id="web-42").json()
    assert (after["variant"], after["why"], after["known"]) == (
        "crm-demo",
        "first match: crm-suite (stage discovery, band hot)",
        True,
    )
    with live.engine.connect() as conn:
        stored = conn.execute(text("SELECT anonymous_id, url FROM anonymous_events WHERE event_id = 'vis-1'")).one()
    assert tuple(stored) == ("web-42", "/pricing")


def test_one_leads_identity_attaches_and_shows_what_the_whole_mapping_does(live: Live) -> None:
    """``fresh=true`` reads only the merges and links of the lead it scores (``store.live.lead_identity``):
    over that lead's key range it attaches the same events and shows the same journeys as the whole
    mapping a run reads, for a chain of merges, a lead merged away, visitors and a lead outside them."""
    names = ["LI-A", "LI-B", "LI-C", "LI-D", "LI-E"]
    assert live.post("/v1/leads", [{"lead_id": name, **PERSON} for name in names]).json()["rejected"] == 0
    at = (AS_OF - timedelta(days=1)).isoformat()
    events = [
        {"event_id": f"li-{name}", "lead_id": name, "type": "page_view", "occurred_at": at, "url": "/pricing"}
        for name in names
    ]
    events += [
        {"event_id": f"li-v-{name}", "anonymous_id": f"li-web-{name}", "type": "page_view", "occurred_at": at}
        for name in ("LI-A", "LI-B", "LI-D")
    ]
    events += [
        {"event_id": f"li-i-{name}", "lead_id": name, "anonymous_id": f"li-web-{name}", "type": "identify",
         "occurred_at": at}
        for name in ("LI-A", "LI-B", "LI-D")
    ]  # fmt: skip
    assert live.post("/v1/events", events).json()["rejected"] == 0
    merges = [("LI-B", "LI-C"), ("LI-A", "LI-B"), ("LI-D", "LI-E")]  # C → B → A, E → D
    for survivor, merged in merges:
        pairs = {"pairs": [{"survivor": survivor, "merged": merged}]}
        assert live.post("/v1/leads/merge", pairs, scope="admin").json()["merged"] == 1

    portfolio = load_portfolio(DEMO_PORTFOLIO)
    types, properties = portfolio.scored_event_types, portfolio.scored_properties
    whole = read_identity(live.engine)
    with live.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT lead_id, key FROM leads WHERE lead_id LIKE 'LI-%'")).all())
    seen = {}
    for name, key in sorted(keys.items()):
        span = (key, key + 1)
        own = read_events(live.engine, span, None, types, properties)
        one = lead_identity(live.engine, key)
        attached = [attach(live.engine, own, span, identity, types, properties) for identity in (whole, one)]
        assert attached[0].equals(attached[1]), name
        journeys = read_journeys(live.engine, "crm-suite", span)
        assert visible_journeys(journeys, whole).equals(visible_journeys(journeys, one)), name
        seen[name] = (attached[1].height, visible_journeys(journeys, one).height)
    # A sees its own, B's and C's events and the visitors of A and B; B and C are merged away; D has E's.
    assert seen == {"LI-A": (5, 1), "LI-B": (0, 0), "LI-C": (0, 0), "LI-D": (3, 1), "LI-E": (0, 0)}
